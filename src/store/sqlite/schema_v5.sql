-- bulkload store, schema version 5: the Bulk Web API (issue 11).

-- A load submitted over the API, from the moment its body is spooled until forever (its
-- idempotency key stays taken). Its number is reserved here, so the API can answer with the
-- load's Id before the single writer reaches it; `begin` of the load with this claim takes it.
CREATE TABLE api_submissions (
    claim            TEXT PRIMARY KEY,         -- the load's key (bulk_loads.claim once begun)
    lender           TEXT NOT NULL,
    number           INTEGER NOT NULL,         -- the load's Id
    kind             TEXT NOT NULL,            -- the record type's file prefix
    idempotency_key  TEXT,
    body_sha256      TEXT NOT NULL,            -- a repeat with another body is refused
    submitted_at     TEXT NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX api_submissions_key ON api_submissions (lender, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX api_submissions_number ON api_submissions (lender, number);
-- Listing a lender's loads newest first, with paging; loads since a time (the `since` filter,
-- quotas).
CREATE INDEX bulk_loads_lender_number ON bulk_loads (lender, number);
CREATE INDEX bulk_loads_lender_started ON bulk_loads (lender, started_at);
