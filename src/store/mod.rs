//! Store: the traits every backend implements, and the values that cross them.
//!
//! Owns: `Store` (loads: begin, find, finish, problems) and `LoadTx` (one load's transaction:
//! find, insert, update, link and unlink rows, savepoints, problems, complete), the neutral
//! `Value`, `StoreError`, `LoadRow`, and opening the configured backend (`open`).
//! Must not: hold a business rule. Which email clashes, which record a reference names, what a
//! broker's owner account is, and every message a lender reads live in `records`, above these
//! traits, so that a second backend writes only its SQL. Backends live in submodules (`sqlite`).

pub mod migrate;
pub mod postgres;
pub mod sqlite;

use std::path::Path;

use crate::config::{Config, StoreConfig};
use crate::problem::Problem;
use crate::result::Counts;

/// A row's id inside the store (never shown to a lender).
pub type RowId = i64;

/// A column value, as every backend can store it. Text is borrowed where it can be (a record's
/// own fields: copying each into the statement's values was 4-10% of a store thread, bench/README
/// "Issue 10, fourth round"), owned where it is made (keys, defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Text(std::borrow::Cow<'a, str>),
}

impl Value<'_> {
    /// The same value, owning its text (for a value kept past the record it came from).
    pub fn to_static(&self) -> Value<'static> {
        match self {
            Value::Null => Value::Null,
            Value::Int(i) => Value::Int(*i),
            Value::Text(s) => Value::Text(std::borrow::Cow::Owned(s.to_string())),
        }
    }
}

/// The entity tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Employees, borrowers and broker accounts (and a broker's owner account).
    Accounts,
    Brokers,
    Loans,
    Partners,
}

/// The three kinds of account rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    Employee,
    Borrower,
    BrokerAccount,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Employee => "employee",
            AccountKind::Borrower => "borrower",
            AccountKind::BrokerAccount => "broker_account",
        }
    }
    pub fn parse(s: &str) -> Option<AccountKind> {
        [
            AccountKind::Employee,
            AccountKind::Borrower,
            AccountKind::BrokerAccount,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// How an entity row of the transaction's lender is found.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    ThreadId(&'a str),
    /// The lender's own id: `external_id` of accounts, `id_number` of brokers, `loan_number` of
    /// loans, `email_key` of partners.
    LenderId(&'a str),
    /// Any other indexed column of the table (`license_key` of partners, `email_key` of
    /// accounts of this lender).
    Column(&'static str, &'a str),
}

/// A found entity row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: RowId,
    /// Accounts: which kind.
    pub kind: Option<AccountKind>,
    /// Loans: the division thread id.
    pub division: Option<String>,
    /// Accounts and partners: the stored email key.
    pub email_key: Option<String>,
}

/// The link tables: an owner row and what it is linked to (key columns in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// (account, division thread id)
    AccountDivisions,
    /// (broker, division thread id)
    BrokerDivisions,
    /// (broker, account, position)
    BrokerContacts,
    /// (loan, account, position)
    LoanPositions,
    /// (loan, account)
    LoanBorrowers,
    /// (loan, account, position)
    LoanBrokerContacts,
}

/// The outcome of an insert or update that may hit a unique index on the lender's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Row(RowId),
    /// Another row of the lender already has this lender id; nothing was written.
    Duplicate,
}

/// Where a load came from: its result's `Source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Sftp,
    Api,
    /// A web console upload (issue 15): a file, applied by a pass like a pickup file.
    Web,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Sftp => "SFTP",
            Source::Api => "API",
            Source::Web => "Web",
        }
    }
}

/// What makes a load unique: its key (for a file, the claim name in `work/`) and the name the
/// lender supplied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadKey {
    pub key: String,
    pub supplied_name: String,
}

/// A load as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadRow {
    /// The store's own id (internal).
    pub row: RowId,
    /// The load's `Id` as the lender sees it: numbered per lender and environment, so it says
    /// nothing about other lenders' volume.
    pub id: i64,
    pub lender: String,
    pub pickup_name: String,
    pub claim: String,
    pub source: String,
    pub started_at: String,
    pub ended_at: String,
    pub stamp: String,
    pub error_message: Option<String>,
    pub counts: Counts,
    pub finished: bool,
    /// A dry run: its records were rolled back (schema v3).
    pub dry_run: bool,
}

/// A load submitted over the Bulk Web API (issue 11), from its spooling on: its reserved
/// number (the load's `Id`), idempotency key and body hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSubmission {
    /// The load's key (`LoadKey::key`, `LoadRow::claim` once begun).
    pub claim: String,
    pub lender: String,
    /// The load's `Id` (set by the store; ignored on submit).
    pub number: i64,
    /// The record type's file prefix.
    pub kind: String,
    pub idempotency_key: Option<String>,
    pub body_sha256: String,
    pub submitted_at: String,
}

/// How an API submission is found (always within one lender).
#[derive(Debug, Clone, Copy)]
pub enum ApiSubmissionKey<'a> {
    Claim(&'a str),
    Number(i64),
    IdempotencyKey(&'a str),
}

/// A page of a lender's loads (issue 11).
#[derive(Debug, Clone, Default)]
pub struct LoadQuery<'a> {
    pub offset: i64,
    pub limit: i64,
    /// Only loads of this record type (its file prefix).
    pub kind_prefix: Option<&'a str>,
    /// Only loads started at or after this ISO 8601 time (as `iso` writes it).
    pub since: Option<&'a str>,
}

#[derive(Debug, Clone, Default)]
pub struct LoadPage {
    /// Newest first.
    pub loads: Vec<LoadRow>,
    /// How many loads match in all.
    pub total: i64,
}

/// A page of a lender's entity rows (issue 11, inquiry).
#[derive(Debug, Clone)]
pub struct RecordQuery<'a> {
    pub table: Table,
    /// For accounts: which kind.
    pub account_kind: Option<AccountKind>,
    /// Columns to read (from the records' field tables), after the thread id.
    pub columns: &'a [&'static str],
    /// Column equals value; `true`: compared ignoring ASCII case (emails).
    pub equals: &'a [(&'static str, String, bool)],
    /// Only rows last written by a load that ended at or after this ISO 8601 time.
    pub updated_since: Option<&'a str>,
    pub offset: i64,
    pub limit: i64,
}

#[derive(Debug, Clone, Default)]
pub struct RecordPage {
    /// (thread id, the query's columns in order), by thread id.
    pub rows: Vec<(String, Vec<Value<'static>>)>,
    pub total: i64,
}

/// A loan's relations of one type (issue 11, inquiry of relation types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoanRelation {
    /// (Account_ThreadId, Account_ExternalId, PositionName) per link.
    Positions,
    /// (Account_ThreadId, Account_ExternalId) per link.
    Borrowers,
    /// (Broker_ThreadId, Broker_IdNumber, LoanOfficer_AccountThreadId,
    /// LoanOfficer_AccountExternalId): at most one.
    Broker,
}

/// One queued notification with its load (issue 13).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    /// The `webhook-id`: the same on every try.
    pub msg_id: String,
    pub event: String,
    /// `webhook` or `email`.
    pub channel: String,
    /// The URL, or the comma-separated addresses.
    pub target: String,
    /// Unix seconds.
    pub created_at: f64,
    pub attempts: i64,
    pub load: LoadRow,
}

/// One problem of a load: (seq, index, message).
pub type ProblemRow = (i64, i64, String);

/// One lender's loads in one hour (the operator page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourActivity {
    pub lender: String,
    /// `yyyy-mm-ddThh` (UTC).
    pub hour: String,
    /// Loads applied (dry runs not counted).
    pub loads: i64,
    /// Loads refused whole or with at least one failed record (dry runs not counted).
    pub failed: i64,
    /// Records processed (successes and failures; dry runs not counted).
    pub records: i64,
}

/// A notification given up on (the operator page).
#[derive(Debug, Clone)]
pub struct FailedDelivery {
    pub lender: String,
    /// The load's number as its lender sees it.
    pub load: i64,
    pub channel: String,
    pub target: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// Unix seconds.
    pub created_at: f64,
}

/// What one try of a notification did.
#[derive(Debug, Clone)]
pub enum Attempt {
    Delivered,
    Retry { next_at: f64, error: String },
    Failed { error: String },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("store {path} has schema version {found}, newer than this bulkload knows ({known}); upgrade bulkload")]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("cannot create the store's folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Backend(String),
    #[error("store: load {0} not found")]
    MissingLoad(RowId),
    /// Several daemons (PostgreSQL): this pass's lease on the lender expired and another
    /// daemon took it over; the lender is left to it.
    #[error("store: the lease on lender {0} was lost to another daemon")]
    LeaseLost(String),
}

/// One store: loads and their bookkeeping.
pub trait Store: Send {
    /// Starts the one transaction that will hold a load's records and its load row.
    fn begin<'s>(
        &'s mut self,
        lender: &'s str,
        key: &LoadKey,
        source: Source,
        started_at: &str,
    ) -> Result<Box<dyn LoadTx + 's>, StoreError>;
    fn load_by_key(&self, lender: &str, key: &str) -> Result<Option<LoadRow>, StoreError>;
    fn load(&self, row: RowId) -> Result<Option<LoadRow>, StoreError>;
    /// Loads of a lender committed but not finished (result or move may be missing).
    fn unfinished(&self, lender: &str) -> Result<Vec<LoadRow>, StoreError>;
    /// The stamp of the newest load of the same supplied name before `row`.
    fn previous_stamp(
        &self,
        lender: &str,
        pickup_name: &str,
        row: RowId,
    ) -> Result<Option<String>, StoreError>;
    fn mark_finished(&self, row: RowId) -> Result<(), StoreError>;
    /// Up to `limit` problems of a load after sequence number `after_seq`, in order, as
    /// (seq, index, message): for reading them alongside the input, a page at a time.
    fn problems_page(
        &self,
        row: RowId,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<(i64, i64, String)>, StoreError>;
    /// Outbox (issue 13): pending notifications due at `now` (unix seconds) whose load is
    /// finished, soonest first.
    fn due_deliveries(&self, now: f64, limit: usize) -> Result<Vec<Delivery>, StoreError>;
    /// Records one try of a notification.
    fn record_attempt(&self, id: i64, attempt: &Attempt) -> Result<(), StoreError>;
    /// Notifications of a lender not delivered yet (for `bulkload status`).
    fn pending_deliveries(&self, lender: &str) -> Result<i64, StoreError>;
    /// The newest load of a lender.
    fn last_load(&self, lender: &str) -> Result<Option<LoadRow>, StoreError>;
    /// Retention: removes the problems of finished loads that ended before `ended_before`
    /// (ISO 8601); returns how many.
    fn prune_problems(&self, ended_before: &str) -> Result<u64, StoreError>;
    /// Bulk Web API (issue 11): records a submission, reserving the lender's next load number
    /// for it; a submission with a taken idempotency key (or claim) is not inserted and the
    /// existing one is returned instead (compare `claim` to tell).
    fn submit_api_load(&self, s: &ApiSubmission) -> Result<ApiSubmission, StoreError>;
    /// One API submission of a lender.
    fn api_submission(
        &self,
        lender: &str,
        by: ApiSubmissionKey<'_>,
    ) -> Result<Option<ApiSubmission>, StoreError>;
    /// A lender's load by its `Id`.
    fn load_by_number(&self, lender: &str, number: i64) -> Result<Option<LoadRow>, StoreError>;
    /// A page of a lender's loads, newest first, with the total matching.
    fn list_loads(&self, lender: &str, q: &LoadQuery<'_>) -> Result<LoadPage, StoreError>;
    /// A page of a lender's entity rows with the total matching (issue 11, inquiry).
    fn records_page(&self, lender: &str, q: &RecordQuery<'_>) -> Result<RecordPage, StoreError>;
    /// Quotas (issue 11): records of the lender's loads started at or after `since` (ISO 8601),
    /// refused loads and dry runs excepted.
    fn records_submitted_since(&self, lender: &str, since: &str) -> Result<i64, StoreError>;
    /// The relations of one loan of the lender (by its Loan_Number), paged, with the total; rows
    /// carry the loan's thread id and the values `LoanRelation` lists. `None`: no such loan.
    fn loan_relations(
        &self,
        lender: &str,
        which: LoanRelation,
        loan_number: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Option<RecordPage>, StoreError>;
    /// How many problems a load has (pages of `problems_page` are by sequence number, 1..).
    fn problem_count(&self, row: RowId) -> Result<i64, StoreError>;
    /// Calls `f(index, message)` for each problem of a load, in order.
    #[allow(clippy::type_complexity)]
    fn for_each_problem(
        &self,
        row: RowId,
        f: &mut dyn FnMut(i64, &str) -> std::io::Result<()>,
    ) -> std::io::Result<()>;

    /// Several daemons (issue 14): takes this store's lease on a lender for a pass over its
    /// files; false when another pass holds it. Loads begun afterwards are fenced by it. A store
    /// one process owns (SQLite, under the pass lock) always grants it.
    fn take_lease(&mut self, _lender: &str) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Keeps the lease alive between files; false when it was lost.
    fn renew_lease(&mut self) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Gives the lease back at the end of the lender's pass.
    fn release_lease(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    // Web console (issue 15).
    /// A lender's loads, newest first: `limit` from `offset` of those whose pickup name or
    /// error contains `filter` (case-insensitive; empty: all), with how many match in all.
    fn console_loads(
        &self,
        lender: &str,
        filter: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<LoadRow>), StoreError>;
    /// `limit` problems of a load from `offset`, in order, whose message contains `filter`
    /// (case-insensitive; empty: all) as (seq, index, message), with how many match in all.
    fn console_problems(
        &self,
        row: RowId,
        filter: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<ProblemRow>), StoreError>;
    /// Loads started at or after `since` (ISO 8601), per lender and hour (`yyyy-mm-ddThh`).
    fn hourly_activity(&self, since: &str) -> Result<Vec<HourActivity>, StoreError>;
    /// Notifications given up on (state `failed`), newest first.
    fn failed_deliveries(&self, limit: i64) -> Result<Vec<FailedDelivery>, StoreError>;
}

/// The keys one batch of a load's records will look up, collected before the batch is applied
/// (`records::prefetch`), so that a backend with a round trip per statement may fetch them in a
/// few statements (`LoadTx::prefetch`). A hint only: every key a batch looks up need not be here,
/// and a backend may ignore it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Prefetch {
    /// The entity table the batch's records are found in; `None`: no rows to fetch.
    pub table: Option<Table>,
    /// Thread ids the records name (found with `Key::ThreadId`).
    pub thread_ids: Vec<String>,
    /// Lender ids the records name, as `Key::LenderId` is given them (partners: lower case).
    pub lender_ids: Vec<String>,
    /// Email keys `email_in_use` may be asked about.
    pub email_keys: Vec<String>,
}

impl Prefetch {
    pub fn is_empty(&self) -> bool {
        self.thread_ids.is_empty() && self.lender_ids.is_empty() && self.email_keys.is_empty()
    }
}

/// One load's transaction, scoped to one lender. Dropping it without `complete` rolls
/// everything back.
pub trait LoadTx {
    /// The load's store id (what `created_load` / `updated_load` columns hold).
    fn row(&self) -> RowId;
    fn lender(&self) -> &str;
    /// A hint before a batch of records is applied: the keys they will look up. A backend may
    /// fetch them at once and answer `find` / `email_in_use` from what it fetched, as long as
    /// every answer stays what asking at that moment would give (writes of the transaction
    /// since the fetch included). The default ignores it.
    fn prefetch(&mut self, _keys: &Prefetch) -> Result<(), StoreError> {
        Ok(())
    }
    /// Whether `prefetch` does anything (collecting a batch's keys is skipped otherwise).
    fn wants_prefetch(&self) -> bool {
        false
    }
    /// One entity row of the lender (of `kind`, for accounts, when given).
    fn find(
        &mut self,
        table: Table,
        key: Key<'_>,
        kind: Option<AccountKind>,
    ) -> Result<Option<Found>, StoreError>;
    /// Whether an account of any lender of the environment other than `except` has this email
    /// key; borrowers are not counted when `ignore_borrowers`.
    fn email_in_use(
        &mut self,
        email_key: &str,
        except: Option<RowId>,
        ignore_borrowers: bool,
    ) -> Result<bool, StoreError>;
    /// Inserts an entity row; `lender`, `thread_id`, `created_load`, `updated_load` are set by
    /// the backend. Returns the new row, or `Duplicate` for a taken lender id.
    fn insert(
        &mut self,
        table: Table,
        thread_id: &str,
        cols: &[&str],
        vals: &[Value],
    ) -> Result<Written, StoreError>;
    /// Updates columns of an entity row (and its `updated_load`).
    fn update(
        &mut self,
        table: Table,
        id: RowId,
        cols: &[&str],
        vals: &[Value],
    ) -> Result<Written, StoreError>;
    /// Reads one column of an entity row.
    fn get(&mut self, table: Table, id: RowId, col: &str) -> Result<Value<'static>, StoreError>;
    /// Adds a link; false when it was there already. A backend that writes links a batch at a
    /// time (PostgreSQL) answers true: no caller depends on the answer.
    fn link(&mut self, link: Link, keys: &[Value]) -> Result<bool, StoreError>;
    /// Updates, in one statement, the row of `table` (of account `kind` when given) whose lender
    /// id is `lender_id`, provided its email key is the one given (`Some(key)`, `Some(None)` for
    /// none; `None`: whatever it is): `true` when a row was updated, `false` when none matched,
    /// and the caller then goes the ordinary way (find, check, update). `cols` hold neither the
    /// lender id nor the email key, so no unique index is touched. The default matches nothing,
    /// so that every backend is correct without it (bench/README.md "Issue 10: updates in one
    /// statement").
    fn update_in_place(
        &mut self,
        _table: Table,
        _kind: Option<AccountKind>,
        _lender_id: &str,
        _email_key: Option<Option<&str>>,
        _cols: &[&str],
        _vals: &[Value],
    ) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// An upsert's create of an account whose ExternalId (among `cols`) is new: unless
    /// `email_in_use(email_key, None, ignore_borrowers)` would say the email is taken, inserts the
    /// row if no account of the lender has that ExternalId, and answers its id. `None` when it
    /// wrote nothing (the email taken, the ExternalId there already): the caller goes the
    /// ordinary way. The default writes nothing.
    fn insert_new_account(
        &mut self,
        _thread_id: &str,
        _cols: &[&str],
        _vals: &[Value],
        _email_key: Option<&str>,
        _ignore_borrowers: bool,
    ) -> Result<Option<RowId>, StoreError> {
        Ok(None)
    }
    /// Links `owner` to the account of `kind` whose lender id is `external_id`, in one
    /// statement: `rest` are the link's keys after the account (a position). `true` when the
    /// link was written; `false` says only that nothing was (no such account, another kind, or
    /// the link exists), and the caller finds out which the ordinary way. The default writes
    /// nothing, so that every backend is correct without it (a relation add is then a find and
    /// a link: bench/README.md "Issue 10: relation adds in one statement").
    fn link_account(
        &mut self,
        _link: Link,
        _owner: RowId,
        _kind: AccountKind,
        _external_id: &str,
        _rest: &[Value],
    ) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// Removes a link; false when there was none.
    fn unlink(&mut self, link: Link, keys: &[Value]) -> Result<bool, StoreError>;
    /// Removes every link of an owner row.
    fn unlink_all(&mut self, link: Link, owner: RowId) -> Result<(), StoreError>;
    /// A loan's broker: (broker row, its IdNumber).
    fn loan_broker(&mut self, loan: RowId) -> Result<Option<(RowId, String)>, StoreError>;
    /// Sets a loan's broker (a loan without one) and loan officer.
    fn insert_loan_broker(
        &mut self,
        loan: RowId,
        broker: RowId,
        officer: Option<RowId>,
    ) -> Result<(), StoreError>;
    fn set_loan_officer(&mut self, loan: RowId, officer: RowId) -> Result<(), StoreError>;
    fn delete_loan_broker(&mut self, loan: RowId) -> Result<(), StoreError>;
    /// A savepoint around one record; `release` keeps it, `rollback` undoes it.
    fn savepoint(&mut self) -> Result<(), StoreError>;
    fn release(&mut self) -> Result<(), StoreError>;
    fn rollback(&mut self) -> Result<(), StoreError>;
    /// Keeps a problem of record `index` for the result.
    fn problem(&mut self, index: u64, problem: &Problem) -> Result<(), StoreError>;
    /// Marks the load a dry run (its records are not part of it).
    fn set_dry_run(&mut self) -> Result<(), StoreError>;
    /// The newest stamp used for this supplied name by another load of the lender.
    fn latest_stamp(&mut self, pickup_name: &str) -> Result<Option<String>, StoreError>;
    /// Outbox (issue 13): queues the notifications of this load (`(channel, target)`), committed
    /// with it.
    fn enqueue(
        &mut self,
        event: &str,
        targets: &[(&str, String)],
        now: f64,
    ) -> Result<(), StoreError>;
    /// Records the outcome and commits: from here on the load counts as applied.
    fn complete(
        self: Box<Self>,
        ended_at: &str,
        stamp: &str,
        error_message: Option<&str>,
        counts: &Counts,
    ) -> Result<RowId, StoreError>;
}

/// Opens a SQLite store at `path`.
pub fn open(path: &Path, cfg: StoreConfig) -> Result<Box<dyn Store>, StoreError> {
    Ok(Box::new(sqlite::SqliteStore::open(path, cfg)?))
}

/// Opens the store of one environment as configured: PostgreSQL when `[store] url` is set
/// (the environment's schema), else the SQLite file in `data_dir/db/`.
pub fn open_env(cfg: &Config, env: &str) -> Result<Box<dyn Store>, StoreError> {
    match &cfg.store.postgres {
        Some(pg) => Ok(Box::new(postgres::PgStore::open(pg, env)?)),
        None => open(
            &crate::layout::store_path(&cfg.data_dir, env),
            cfg.store.clone(),
        ),
    }
}

/// The store of one environment when it exists (`None`: a SQLite file no load has created
/// yet); for readers that must not create one. PostgreSQL's schema always exists once opened.
pub fn open_existing_env(cfg: &Config, env: &str) -> Result<Option<Box<dyn Store>>, StoreError> {
    if cfg.store.postgres.is_none() && !crate::layout::store_path(&cfg.data_dir, env).exists() {
        return Ok(None);
    }
    open_env(cfg, env).map(Some)
}

/// Whether the environment's store exists with every migration applied (the notification
/// sender opens only such a store). PostgreSQL: the schema is migrated by whoever opens it
/// first, under a lock, so it is always usable.
pub fn is_current_env(cfg: &Config, env: &str) -> bool {
    match &cfg.store.postgres {
        Some(_) => true,
        None => sqlite::is_current(&crate::layout::store_path(&cfg.data_dir, env)),
    }
}

// The schema's names, shared by every backend (the migrations of each create the same tables).

/// The SQL table of an entity table.
pub(crate) fn table_name(t: Table) -> &'static str {
    match t {
        Table::Accounts => "accounts",
        Table::Brokers => "brokers",
        Table::Loans => "loans",
        Table::Partners => "partners",
    }
}

pub fn lender_id_column(t: Table) -> &'static str {
    match t {
        Table::Accounts => "external_id",
        Table::Brokers => "id_number",
        Table::Loans => "loan_number",
        Table::Partners => "email_key",
    }
}

/// Table and key columns of a link.
pub(crate) fn link_table(l: Link) -> (&'static str, &'static [&'static str]) {
    match l {
        Link::AccountDivisions => ("account_divisions", &["account_id", "division_thread_id"]),
        Link::BrokerDivisions => ("broker_divisions", &["broker_id", "division_thread_id"]),
        Link::BrokerContacts => ("broker_contacts", &["broker_id", "account_id", "position"]),
        Link::LoanPositions => ("loan_positions", &["loan_id", "account_id", "position"]),
        Link::LoanBorrowers => ("loan_borrowers", &["loan_id", "account_id"]),
        Link::LoanBrokerContacts => (
            "loan_broker_contacts",
            &["loan_id", "account_id", "position"],
        ),
    }
}
