-- bulkload store, schema version 4: the notification outbox (issue 13).

-- One row per notification of a load (a webhook URL, or the e-mail to a lender's addresses),
-- written in the load's own transaction, so a committed load always has its notifications and a
-- rolled-back one never has. The sender delivers rows whose load is finished (result written),
-- retrying with backoff until delivered or given up.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY,
    msg_id       TEXT NOT NULL UNIQUE,                    -- webhook-id: the same on every retry
    load_id      INTEGER NOT NULL REFERENCES bulk_loads (id),
    lender       TEXT NOT NULL,
    event        TEXT NOT NULL,                           -- 'load.finished'
    channel      TEXT NOT NULL,                           -- 'webhook' | 'email'
    target       TEXT NOT NULL,                           -- the URL, or the addresses (comma-separated)
    created_at   REAL NOT NULL,                           -- unix seconds
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      REAL NOT NULL,                           -- unix seconds of the next try
    state        TEXT NOT NULL DEFAULT 'pending',         -- 'pending' | 'delivered' | 'failed'
    last_error   TEXT
);
CREATE INDEX outbox_due ON outbox (state, next_at);
