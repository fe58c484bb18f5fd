-- bulkload store (PostgreSQL, one schema per environment), schema version 3.

-- Dry runs (a lender's file in validate/): the load row and its problems commit, its records
-- never do. A dry run is not a processed file: rotation of processed/ ignores it.
ALTER TABLE bulk_loads ADD COLUMN dry_run BIGINT NOT NULL DEFAULT 0;
