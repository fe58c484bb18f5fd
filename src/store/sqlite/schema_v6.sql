-- bulkload store, schema version 6: the accounts' kind check written as comparisons (issue 10).
--
-- SQLite checks `kind IN ('employee', 'borrower', 'broker_account')` (a list of more than two
-- values) by building a temporary index for every row it inserts into accounts: a B-tree
-- created, its pages zeroed, filled and dropped, a fifth of an upsert file's store thread
-- (bench/README "Issue 10, third round"). `kind = ... OR ...` accepts exactly the same values
-- and compares in place. Only the table's SQL text changes, rows and indexes stay as they are:
-- the documented way to change a CHECK constraint without rebuilding the table
-- (sqlite.org/lang_altertable.html, "Making Other Kinds Of Table Schema Changes"); the store
-- then bumps schema_version so that every connection reads the schema again.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql,
                     'CHECK (kind IN (''employee'', ''borrower'', ''broker_account''))',
                     'CHECK (kind = ''employee'' OR kind = ''borrower'' OR kind = ''broker_account'')')
 WHERE type = 'table' AND name = 'accounts';
PRAGMA writable_schema = OFF;
