-- bulkload store, schema version 2.

-- Load ids a lender sees are numbered per lender (and environment: one store each), so they say
-- nothing about other lenders' volume. The row id stays the store's own key.
ALTER TABLE bulk_loads ADD COLUMN number INTEGER;
UPDATE bulk_loads SET number =
    (SELECT count(*) FROM bulk_loads b WHERE b.lender = bulk_loads.lender AND b.id <= bulk_loads.id);
CREATE UNIQUE INDEX bulk_loads_number ON bulk_loads (lender, number);

-- Structured problems: the field a problem is about and its rule's stable code.
ALTER TABLE load_problems ADD COLUMN field TEXT;
ALTER TABLE load_problems ADD COLUMN code TEXT;

-- Partners (the ninth record type): a lender's referral partners, each assigned to an employee.
CREATE TABLE partners (
    id                                   INTEGER PRIMARY KEY,
    lender                               TEXT NOT NULL,
    thread_id                            TEXT NOT NULL UNIQUE,
    email                                TEXT NOT NULL,
    email_key                            TEXT NOT NULL,     -- lower-case email: the partner's identity
    license_key                          TEXT,              -- lower-case LicenseId, for dedupe
    assignee_account_id                  INTEGER NOT NULL REFERENCES accounts (id),
    first_name                           TEXT,
    last_name                            TEXT,
    external_contact_type_id             TEXT,
    license_id                           TEXT,
    mobile_phone                         TEXT,
    work_phone                           TEXT,
    ext                                  TEXT,
    website                              TEXT,
    address1                             TEXT,
    city                                 TEXT,
    state                                TEXT,
    postal_code                          TEXT,
    external_identifier                  TEXT,
    branch_association                   TEXT,
    campaign_id                          INTEGER,
    user_title                           TEXT,
    approval_status_id                   INTEGER,
    entity_id                            TEXT,
    notes                                TEXT,
    avatar_url                           TEXT,
    branch_name                          TEXT,
    branch_phone                         TEXT,
    branch_website                       TEXT,
    branch_city                          TEXT,
    branch_state                         TEXT,
    branch_branch_association            TEXT,
    company_name                         TEXT,
    company_website                      TEXT,
    company_external_contact_company_id  TEXT,
    company_org_id                       TEXT,
    company_user_id                      TEXT,
    company_tpo_id                       TEXT,
    company_code                         TEXT,
    company_owner_name                   TEXT,
    company_phone                        TEXT,
    company_fax                          TEXT,
    company_email                        TEXT,
    company_website_url                  TEXT,
    company_nmls_id                      TEXT,
    company_sales_representative_user_id TEXT,
    company_city                         TEXT,
    company_state_id                     TEXT,
    company_address1                     TEXT,
    company_postal_code                  TEXT,
    company_branch_association           TEXT,
    company_loan_product_types           TEXT,
    company_loan_purpose_types           TEXT,
    company_channel_types                TEXT,
    company_approval_status_id           INTEGER,
    other1                               TEXT,
    other2                               TEXT,
    other3                               TEXT,
    other4                               TEXT,
    other5                               TEXT,
    other6                               TEXT,
    email1                               TEXT,
    email2                               TEXT,
    created_load                         INTEGER NOT NULL,
    updated_load                         INTEGER NOT NULL
);
CREATE UNIQUE INDEX partners_email ON partners (lender, email_key);
CREATE INDEX partners_license ON partners (lender, license_key) WHERE license_key IS NOT NULL;
