-- bulkload store, schema version 1. One database per environment, all lenders.

CREATE TABLE bulk_loads (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    lender           TEXT NOT NULL,
    pickup_name      TEXT NOT NULL,
    -- the name of the claimed file in work/ ("<claim>__<pickup name>"): ties a committed load to
    -- the file it came from, so an interrupted finish can be completed exactly once.
    claim            TEXT NOT NULL UNIQUE,
    source           TEXT NOT NULL DEFAULT 'SFTP',
    started_at       TEXT NOT NULL,
    ended_at         TEXT NOT NULL,
    stamp            TEXT NOT NULL,           -- yyyyMMddHHmmssfff of ProcessedName / result name
    error_message    TEXT,
    num_create_success INTEGER NOT NULL DEFAULT 0,
    num_update_success INTEGER NOT NULL DEFAULT 0,
    num_add_success    INTEGER NOT NULL DEFAULT 0,
    num_delete_success INTEGER NOT NULL DEFAULT 0,
    num_create_failure INTEGER NOT NULL DEFAULT 0,
    num_update_failure INTEGER NOT NULL DEFAULT 0,
    num_add_failure    INTEGER NOT NULL DEFAULT 0,
    num_delete_failure INTEGER NOT NULL DEFAULT 0,
    num_mode_failure   INTEGER NOT NULL DEFAULT 0,
    -- 'applied': records committed, result file / processed move may be missing.
    -- 'finished': result written and file moved.
    state            TEXT NOT NULL CHECK (state IN ('applied', 'finished'))
);
CREATE INDEX bulk_loads_name ON bulk_loads (lender, pickup_name, id);
CREATE INDEX bulk_loads_state ON bulk_loads (state) WHERE state = 'applied';

CREATE TABLE load_problems (
    load_id  INTEGER NOT NULL REFERENCES bulk_loads (id),
    seq      INTEGER NOT NULL,
    idx      INTEGER NOT NULL,
    message  TEXT NOT NULL,
    PRIMARY KEY (load_id, seq)
) WITHOUT ROWID;

-- Employees, borrowers and broker accounts (and a broker's owner account).
CREATE TABLE accounts (
    id              INTEGER PRIMARY KEY,
    lender          TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('employee', 'borrower', 'broker_account')),
    thread_id       TEXT NOT NULL UNIQUE,
    external_id     TEXT,
    email           TEXT,
    email_key       TEXT,                      -- lower-case email, for uniqueness
    first_name      TEXT,
    last_name       TEXT,
    middle_init     TEXT,
    name_suffix     TEXT,
    address1        TEXT,
    address2        TEXT,
    city            TEXT,
    state_code      TEXT,
    zip_code        TEXT,
    phone_primary   TEXT,
    phone_secondary TEXT,
    created_load    INTEGER NOT NULL,
    updated_load    INTEGER NOT NULL
);
CREATE UNIQUE INDEX accounts_external_id ON accounts (lender, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX accounts_email ON accounts (email_key) WHERE email_key IS NOT NULL;

CREATE TABLE account_divisions (
    account_id          INTEGER NOT NULL REFERENCES accounts (id),
    division_thread_id  TEXT NOT NULL,
    PRIMARY KEY (account_id, division_thread_id)
) WITHOUT ROWID;

CREATE TABLE brokers (
    id               INTEGER PRIMARY KEY,
    lender           TEXT NOT NULL,
    thread_id        TEXT NOT NULL UNIQUE,
    id_number        TEXT NOT NULL,
    owner_account_id INTEGER NOT NULL REFERENCES accounts (id),
    email            TEXT,
    nmls_number      TEXT,
    company_name     TEXT,
    owner_name       TEXT,
    phone_number     TEXT,
    website_url      TEXT,
    address1         TEXT,
    address2         TEXT,
    city             TEXT,
    state_code       TEXT,
    zip_code         TEXT,
    created_load     INTEGER NOT NULL,
    updated_load     INTEGER NOT NULL
);
CREATE UNIQUE INDEX brokers_id_number ON brokers (lender, id_number);

CREATE TABLE broker_divisions (
    broker_id           INTEGER NOT NULL REFERENCES brokers (id),
    division_thread_id  TEXT NOT NULL,
    PRIMARY KEY (broker_id, division_thread_id)
) WITHOUT ROWID;

CREATE TABLE broker_contacts (
    broker_id   INTEGER NOT NULL REFERENCES brokers (id),
    account_id  INTEGER NOT NULL REFERENCES accounts (id),
    position    TEXT NOT NULL,
    PRIMARY KEY (broker_id, account_id, position)
) WITHOUT ROWID;

CREATE TABLE loans (
    id                            INTEGER PRIMARY KEY,
    lender                        TEXT NOT NULL,
    thread_id                     TEXT NOT NULL UNIQUE,
    loan_number                   TEXT NOT NULL,
    division_thread_id            TEXT NOT NULL,
    address1                      TEXT,
    address2                      TEXT,
    city                          TEXT,
    state_code                    TEXT,
    zip_code                      TEXT,
    loan_type_id                  INTEGER,
    agency_id                     INTEGER,
    closing_date                  TEXT,
    completion_date               TEXT,
    fha_case_number               TEXT,
    build_term                    TEXT,
    external_loan_officer         TEXT,
    branch_number                 TEXT,
    funded_date                   TEXT,
    closed_out_with_investor      TEXT,
    final_title_update_date       TEXT,
    total_loan_amount             TEXT,
    loan_purpose_id               INTEGER,
    loan_occupancy_id             INTEGER,
    structure_type_id             INTEGER,
    loan_status_id                INTEGER,
    work_order_date               TEXT,
    sor_date                      TEXT,
    est_completion_date           TEXT,
    escrow_reason_repair_type     TEXT,
    escrow_final_appraisal        TEXT,
    escrow_appraisal_mgmt_company TEXT,
    created_load                  INTEGER NOT NULL,
    updated_load                  INTEGER NOT NULL
);
CREATE UNIQUE INDEX loans_loan_number ON loans (lender, loan_number);

CREATE TABLE loan_positions (
    loan_id     INTEGER NOT NULL REFERENCES loans (id),
    account_id  INTEGER NOT NULL REFERENCES accounts (id),
    position    TEXT NOT NULL,
    PRIMARY KEY (loan_id, account_id, position)
) WITHOUT ROWID;

CREATE TABLE loan_borrowers (
    loan_id     INTEGER NOT NULL REFERENCES loans (id),
    account_id  INTEGER NOT NULL REFERENCES accounts (id),
    PRIMARY KEY (loan_id, account_id)
) WITHOUT ROWID;

CREATE TABLE loan_brokers (
    loan_id                  INTEGER PRIMARY KEY REFERENCES loans (id),
    broker_id                INTEGER NOT NULL REFERENCES brokers (id),
    loan_officer_account_id  INTEGER REFERENCES accounts (id)
);

CREATE TABLE loan_broker_contacts (
    loan_id     INTEGER NOT NULL REFERENCES loans (id),
    account_id  INTEGER NOT NULL REFERENCES accounts (id),
    position    TEXT NOT NULL,
    PRIMARY KEY (loan_id, account_id, position)
) WITHOUT ROWID;
