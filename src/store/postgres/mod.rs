//! The PostgreSQL backend: one database for every environment, a schema per environment
//! (`bulkload_<env>`), all lenders.
//!
//! Owns: connecting (`[store] url`, the password from `password_file` or the environment, never
//! logged), the embedded migrations (`schema_vN.sql` beside this file, the same steps as SQLite's,
//! in PostgreSQL's dialect, recorded in `<schema>.schema_version`), the SQL of every `Store` /
//! `LoadTx` operation, and the lender leases several daemons coordinate through (`leases`).
//! Must not: decide anything a lender reads (messages, which email clashes, defaults): it runs
//! what `records` asks for, scoped to the transaction's lender, exactly as `store::sqlite` does.
//!
//! Adding a method: one SQL statement per operation, run through `PgStore::query` /
//! `PgStore::exec` (prepared once per connection and cached by text). Adding a migration: a file
//! `schema_vN.sql` here and its line in `MIGRATIONS`, mirroring SQLite's `schema_vN.sql`.

pub mod leases;
mod prefetch;

use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{Client, NoTls, Row, Statement};
use std::cell::RefCell;
use std::collections::HashMap;

use super::{
    lender_id_column, link_table, table_name, AccountKind, ApiSubmission, ApiSubmissionKey,
    Attempt, Delivery, FailedDelivery, Found, HourActivity, Key, Link, LoadKey, LoadPage,
    LoadQuery, LoadRow, LoadTx, LoanRelation, Prefetch, ProblemRow, RecordPage, RecordQuery, RowId,
    Source, Store, StoreError, Table, Value, Written,
};
use crate::config::PgConfig;
use crate::problem::Problem;
use crate::result::Counts;

/// Embedded migrations; the n-th brings an environment's schema to version n+1. Keep them in
/// step with `store::sqlite`'s: the same tables and columns, in the same order.
const MIGRATIONS: &[&str] = &[
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5.sql"),
    include_str!("schema_v6.sql"),
];

/// Statements a connection keeps prepared at most (see `PgStore::statement`).
const MAX_STATEMENTS: usize = 256;

/// The advisory lock key every migration takes (several daemons may start at once).
const MIGRATION_LOCK: i64 = 0x0062_756c_6b6d_6967;

/// The advisory lock (two-key form: a space of its own) that orders the numbering of one
/// lender's loads: a load's `begin` holds it until the load ends, an API submission while it
/// reserves its number, so neither takes a number the other holds uncommitted.
const NUMBER_LOCK: i32 = 0x626c_6e6f;

/// Seconds a notification taken by `due_deliveries` stays with the daemon that took it: its try
/// is recorded long before (`[notify] timeout_seconds`); past it (the daemon died), any daemon
/// tries again, with the same `webhook-id`.
const DELIVERY_CLAIM: f64 = 300.0;

/// The columns of an API submission, in `submission`'s order.
const SUBMISSION_COLUMNS: &str =
    "claim, lender, number, kind, idempotency_key, body_sha256, submitted_at";

/// The schema holding an environment's tables.
pub fn schema_name(env: &str) -> String {
    format!("bulkload_{env}")
}

/// The server's own message (the client's `Display` says only "db error"), or the client's
/// with its causes ("error connecting to server: Connection refused").
pub(crate) fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("PostgreSQL: {db}");
    }
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        msg.push_str(&format!(": {c}"));
        cause = c.source();
    }
    msg
}

fn backend(e: postgres::Error) -> StoreError {
    StoreError::Backend(describe(&e))
}

/// Connects to the database as configured (no schema chosen yet).
pub fn connect(cfg: &PgConfig) -> Result<Client, StoreError> {
    let mut pc: postgres::Config =
        cfg.url
            .parse()
            .map_err(|e: postgres::Error| StoreError::Open {
                path: cfg.shown(),
                reason: describe(&e),
            })?;
    if let Some(p) = &cfg.password {
        pc.password(p.expose());
    }
    pc.application_name("bulkload");
    pc.connect_timeout(std::time::Duration::from_secs(10));
    // A dead peer's session (and its leases' row locks) goes away within a minute.
    pc.keepalives(true);
    pc.keepalives_idle(std::time::Duration::from_secs(20));
    pc.connect(NoTls).map_err(|e| StoreError::Open {
        path: cfg.shown(),
        reason: describe(&e),
    })
}

/// The statements of one hash of (operation, table, columns), with their columns.
type Shapes = Vec<(Box<[String]>, Statement)>;

pub struct PgStore {
    conn: RefCell<Client>,
    statements: RefCell<HashMap<String, Statement>>,
    /// Inserts and updates by their shape (`shaped`): a record's statement is found without
    /// formatting its text anew.
    shapes: RefCell<HashMap<u64, Shapes>>,
    /// The lease this store's loads are fenced by (`leases`), when several daemons share it.
    pub(crate) lease: Option<leases::Held>,
    ttl: std::time::Duration,
}

const LOAD_COLUMNS: &str = "id, number, lender, pickup_name, claim, source, started_at, ended_at, stamp, error_message, \
     num_create_success, num_update_success, num_add_success, num_delete_success, \
     num_create_failure, num_update_failure, num_add_failure, num_delete_failure, num_mode_failure, state, dry_run";

fn load_row_at(r: &Row, o: usize) -> Result<LoadRow, postgres::Error> {
    Ok(LoadRow {
        row: r.try_get(o)?,
        id: r.try_get(o + 1)?,
        lender: r.try_get(o + 2)?,
        pickup_name: r.try_get(o + 3)?,
        claim: r.try_get(o + 4)?,
        source: r.try_get(o + 5)?,
        started_at: r.try_get(o + 6)?,
        ended_at: r.try_get(o + 7)?,
        stamp: r.try_get(o + 8)?,
        error_message: r.try_get(o + 9)?,
        counts: Counts {
            create_success: r.try_get(o + 10)?,
            update_success: r.try_get(o + 11)?,
            add_success: r.try_get(o + 12)?,
            delete_success: r.try_get(o + 13)?,
            create_failure: r.try_get(o + 14)?,
            update_failure: r.try_get(o + 15)?,
            add_failure: r.try_get(o + 16)?,
            delete_failure: r.try_get(o + 17)?,
            mode_failure: r.try_get(o + 18)?,
        },
        finished: r.try_get::<_, String>(o + 19)? == "finished",
        dry_run: r.try_get::<_, i64>(o + 20)? != 0,
    })
}

fn load_rows(rows: Vec<Row>) -> Result<Vec<LoadRow>, StoreError> {
    rows.iter()
        .map(|r| load_row_at(r, 0).map_err(backend))
        .collect()
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

fn submission(r: &Row) -> Result<ApiSubmission, postgres::Error> {
    Ok(ApiSubmission {
        claim: r.try_get(0)?,
        lender: r.try_get(1)?,
        number: r.try_get(2)?,
        kind: r.try_get(3)?,
        idempotency_key: r.try_get(4)?,
        body_sha256: r.try_get(5)?,
        submitted_at: r.try_get(6)?,
    })
}

/// A cell of an entity row as the neutral `Value` (the tables hold BIGINT and TEXT).
fn cell(r: &Row, i: usize) -> Result<Value<'static>, postgres::Error> {
    Ok(match *r.columns()[i].type_() {
        Type::INT8 => r
            .try_get::<_, Option<i64>>(i)?
            .map_or(Value::Null, Value::Int),
        Type::INT4 => r
            .try_get::<_, Option<i32>>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into())),
        Type::FLOAT8 => r
            .try_get::<_, Option<f64>>(i)?
            .map_or(Value::Null, |v| Value::Text(v.to_string().into())),
        _ => r
            .try_get::<_, Option<String>>(i)?
            .map_or(Value::Null, |v| Value::Text(v.into())),
    })
}

impl PgStore {
    /// Connects and migrates the schema of environment `env`.
    pub fn open(cfg: &PgConfig, env: &str) -> Result<PgStore, StoreError> {
        let mut conn = connect(cfg)?;
        let schema = schema_name(env);
        let open_err = |e: postgres::Error| StoreError::Open {
            path: format!("{} schema {schema}", cfg.shown()),
            reason: describe(&e),
        };
        let mut tx = conn.transaction().map_err(open_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(open_err)?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
             SET LOCAL search_path TO \"{schema}\";
             CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL);"
        ))
        .map_err(open_err)?;
        let version: i64 = tx
            .query_opt("SELECT version FROM schema_version", &[])
            .map_err(open_err)?
            .map(|r| r.get(0))
            .unwrap_or(0);
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                path: format!("{} schema {schema}", cfg.shown()),
                found: version,
                known,
            });
        }
        for sql in MIGRATIONS.iter().skip(version as usize) {
            tx.batch_execute(sql).map_err(open_err)?;
        }
        if version < known {
            tx.execute("DELETE FROM schema_version", &[])
                .map_err(open_err)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&known],
            )
            .map_err(open_err)?;
            tracing::info!(schema = %schema, from = version, to = known, "store migrated");
        }
        tx.batch_execute(leases::DDL).map_err(open_err)?;
        tx.batch_execute(leases::EMAIL_CLAIMS_DDL)
            .map_err(open_err)?;
        tx.commit().map_err(open_err)?;
        conn.batch_execute(&format!("SET search_path TO \"{schema}\""))
            .map_err(open_err)?;
        Ok(PgStore {
            conn: RefCell::new(conn),
            statements: RefCell::new(HashMap::new()),
            shapes: RefCell::new(HashMap::new()),
            lease: None,
            ttl: cfg.lease,
        })
    }

    fn statement(&self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let st = self.conn.borrow_mut().prepare(sql).map_err(backend)?;
        let mut cached = self.statements.borrow_mut();
        // Bounded: the texts of updates follow the column sets records supply, so a file could
        // make the connection prepare a statement per record. Past the bound every statement
        // is forgotten (closed) and prepared again when next used.
        if cached.len() >= MAX_STATEMENTS {
            cached.clear();
            self.shapes.borrow_mut().clear();
        }
        cached.insert(sql.to_string(), st.clone());
        Ok(st)
    }

    /// The prepared statement of an insert or update (`op`) of `table` writing `cols`; `sql`
    /// makes its text the first time.
    fn shaped(
        &self,
        op: &str,
        table: Table,
        cols: &[&str],
        sql: impl FnOnce() -> String,
    ) -> Result<Statement, StoreError> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (op, table_name(table), cols).hash(&mut h);
        let key = h.finish();
        if let Some(v) = self.shapes.borrow().get(&key) {
            if let Some((_, st)) = v
                .iter()
                .find(|(c, _)| c.iter().map(String::as_str).eq(cols.iter().copied()))
            {
                return Ok(st.clone());
            }
        }
        let st = self.statement(&sql())?;
        self.shapes
            .borrow_mut()
            .entry(key)
            .or_default()
            .push((cols.iter().map(|c| c.to_string()).collect(), st.clone()));
        Ok(st)
    }

    /// Runs one query (prepared once, cached by its text).
    pub(crate) fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let st = self.statement(sql)?;
        self.conn.borrow_mut().query(&st, params).map_err(backend)
    }

    pub(crate) fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs one statement; returns the rows it changed.
    pub(crate) fn exec(&self, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
        let st = self.statement(sql)?;
        self.conn.borrow_mut().execute(&st, params).map_err(backend)
    }

    pub(crate) fn batch(&self, sql: &str) -> Result<(), StoreError> {
        self.conn.borrow_mut().batch_execute(sql).map_err(backend)
    }

    fn one_load(&self, sql: &str, params: Params<'_>) -> Result<Option<LoadRow>, StoreError> {
        Ok(load_rows(self.query(sql, params)?)?.into_iter().next())
    }

    /// Takes the lender's numbering lock (`NUMBER_LOCK`) until the transaction ends.
    fn lock_numbers(&self, lender: &str) -> Result<(), StoreError> {
        self.query(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&NUMBER_LOCK, &lender],
        )?;
        Ok(())
    }

    /// The API submission of `lender` whose `col` equals `value`.
    fn api_submission_where(
        &self,
        col: &str,
        lender: &str,
        value: &(dyn ToSql + Sync),
    ) -> Result<Option<ApiSubmission>, StoreError> {
        self.query_opt(
            &format!(
                "SELECT {SUBMISSION_COLUMNS} FROM api_submissions WHERE lender = $1 AND {col} = $2"
            ),
            &[&lender, value],
        )?
        .map(|r| submission(&r).map_err(backend))
        .transpose()
    }
}

/// The filter of `console_loads`: the lender's loads whose pickup name or error holds `$2`.
const CONSOLE_LOADS_FILTER: &str = "lender = $1 AND ($2 = ''
     OR strpos(lower(pickup_name), lower($2)) > 0
     OR strpos(lower(coalesce(error_message, '')), lower($2)) > 0)";

/// The filter of `list_loads`: the lender's loads of one record type (`$2`: its prefix,
/// followed by '.', '-' or '_' so that prefixes are whole) started at or after `$3`.
const LIST_LOADS_FILTER: &str = "lender = $1
     AND ($2::text IS NULL OR pickup_name LIKE $2 || '.%' OR pickup_name LIKE $2 || '-%'
          OR pickup_name LIKE $2 || '\\_%')
     AND ($3::text IS NULL OR started_at >= $3)";

impl Store for PgStore {
    fn begin<'s>(
        &'s mut self,
        lender: &'s str,
        key: &LoadKey,
        source: Source,
        started_at: &str,
    ) -> Result<Box<dyn LoadTx + 's>, StoreError> {
        // Seq scans priced out for the load: its statements are prepared once and their generic
        // plans kept, and a plan made while a table was small (the first load into an empty
        // store) scanned it whole for every batch's prefetch as it grew: 31 ms a batch at 10k
        // accounts, a third of a create load (bench/README.md "Issue 14", pg_stat_statements).
        // Every lookup of a load has its index; a query without one still runs.
        self.batch("BEGIN; SET LOCAL enable_seqscan = off")?;
        let mut tx = PgTx {
            store: self,
            lender,
            id: 0,
            problems: 0,
            pending: PendingProblems::default(),
            open: true,
            cache: None,
            links: Vec::new(),
        };
        // Fenced by the lender's lease when several daemons share the store: the lease row
        // stays locked until this transaction ends, so no other daemon takes the lender over
        // while a load of it is being applied.
        if let Some(held) = &tx.store.lease {
            leases::fence(tx.store, held, lender)?;
        }
        // Numbered per lender: the lender's numbering lock, held until the load ends, orders
        // it after every committed load and API reservation of the lender, so max + 1 is free;
        // an API load takes the number reserved at its submission (schema v5), and no load
        // takes a reserved one. The unique index (lender, number) refuses a second.
        tx.store.lock_numbers(lender)?;
        let row = tx.store.query_opt(
            "INSERT INTO bulk_loads (number, lender, pickup_name, claim, source, started_at, ended_at, stamp, state)
             VALUES (coalesce((SELECT number FROM api_submissions WHERE claim = $3 AND lender = $1),
                              greatest((SELECT coalesce(max(number), 0) FROM bulk_loads WHERE lender = $1),
                                       (SELECT coalesce(max(number), 0) FROM api_submissions WHERE lender = $1)) + 1),
                     $1, $2, $3, $4, $5, $5, '', 'applied')
             RETURNING id",
            &[&lender, &key.supplied_name, &key.key, &source.as_str(), &started_at],
        )?;
        tx.id = row
            .map(|r| r.get::<_, i64>(0))
            .ok_or_else(|| StoreError::Backend("no load row returned".into()))?;
        Ok(Box::new(tx))
    }

    fn load_by_key(&self, lender: &str, key: &str) -> Result<Option<LoadRow>, StoreError> {
        self.one_load(
            &format!("SELECT {LOAD_COLUMNS} FROM bulk_loads WHERE claim = $1 AND lender = $2"),
            &[&key, &lender],
        )
    }

    fn load(&self, row: RowId) -> Result<Option<LoadRow>, StoreError> {
        self.one_load(
            &format!("SELECT {LOAD_COLUMNS} FROM bulk_loads WHERE id = $1"),
            &[&row],
        )
    }

    fn unfinished(&self, lender: &str) -> Result<Vec<LoadRow>, StoreError> {
        load_rows(self.query(
            &format!("SELECT {LOAD_COLUMNS} FROM bulk_loads WHERE state = 'applied' AND lender = $1 ORDER BY id"),
            &[&lender],
        )?)
    }

    fn previous_stamp(
        &self,
        lender: &str,
        pickup_name: &str,
        row: RowId,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .query_opt(
                "SELECT stamp FROM bulk_loads WHERE lender = $1 AND pickup_name = $2 AND id < $3
                 AND dry_run = 0 ORDER BY id DESC LIMIT 1",
                &[&lender, &pickup_name, &row],
            )?
            .map(|r| r.get(0)))
    }

    fn mark_finished(&self, row: RowId) -> Result<(), StoreError> {
        self.exec(
            "UPDATE bulk_loads SET state = 'finished' WHERE id = $1",
            &[&row],
        )?;
        Ok(())
    }

    fn problems_page(
        &self,
        row: RowId,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<(i64, i64, String)>, StoreError> {
        Ok(self
            .query(
                "SELECT seq, idx, message FROM load_problems WHERE load_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&row, &after_seq, &limit],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    fn due_deliveries(&self, now: f64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let cols = LOAD_COLUMNS
            .split(',')
            .map(|c| format!("l.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        // Several daemons poll one outbox: the rows returned are claimed (due again only after
        // `DELIVERY_CLAIM`, when the try was never recorded: its daemon died), and rows another
        // daemon is claiming are skipped, so a notification is tried by one daemon at a time.
        let rows = self.query(
            &format!(
                "WITH due AS (
                     SELECT o.id, o.next_at AS was FROM outbox o JOIN bulk_loads l ON l.id = o.load_id
                     WHERE o.state = 'pending' AND o.next_at <= $1 AND l.state = 'finished'
                     ORDER BY o.next_at, o.id LIMIT $2
                     FOR UPDATE OF o SKIP LOCKED),
                 taken AS (
                     UPDATE outbox o SET next_at = $1 + $3 FROM due WHERE o.id = due.id
                     RETURNING o.id, o.msg_id, o.event, o.channel, o.target, o.created_at, o.attempts, o.load_id)
                 SELECT t.id, t.msg_id, t.event, t.channel, t.target, t.created_at, t.attempts, {cols}
                 FROM taken t JOIN due d ON d.id = t.id JOIN bulk_loads l ON l.id = t.load_id
                 ORDER BY d.was, t.id"
            ),
            &[&now, &(limit as i64), &DELIVERY_CLAIM],
        )?;
        rows.iter()
            .map(|r| {
                Ok(Delivery {
                    id: r.try_get(0)?,
                    msg_id: r.try_get(1)?,
                    event: r.try_get(2)?,
                    channel: r.try_get(3)?,
                    target: r.try_get(4)?,
                    created_at: r.try_get(5)?,
                    attempts: r.try_get(6)?,
                    load: load_row_at(r, 7)?,
                })
            })
            .collect::<Result<_, postgres::Error>>()
            .map_err(backend)
    }

    fn record_attempt(&self, id: i64, attempt: &Attempt) -> Result<(), StoreError> {
        match attempt {
            Attempt::Delivered => self.exec(
                "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, last_error = NULL WHERE id = $1",
                &[&id],
            )?,
            Attempt::Retry { next_at, error } => self.exec(
                "UPDATE outbox SET attempts = attempts + 1, next_at = $2, last_error = $3 WHERE id = $1",
                &[&id, next_at, error],
            )?,
            Attempt::Failed { error } => self.exec(
                "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = $2 WHERE id = $1",
                &[&id, error],
            )?,
        };
        Ok(())
    }

    fn pending_deliveries(&self, lender: &str) -> Result<i64, StoreError> {
        Ok(self
            .query_opt(
                "SELECT count(*) FROM outbox WHERE lender = $1 AND state = 'pending'",
                &[&lender],
            )?
            .map(|r| r.get(0))
            .unwrap_or(0))
    }

    fn last_load(&self, lender: &str) -> Result<Option<LoadRow>, StoreError> {
        self.one_load(
            &format!(
                "SELECT {LOAD_COLUMNS} FROM bulk_loads WHERE lender = $1 ORDER BY id DESC LIMIT 1"
            ),
            &[&lender],
        )
    }

    fn prune_problems(&self, ended_before: &str) -> Result<u64, StoreError> {
        self.exec(
            "DELETE FROM load_problems WHERE load_id IN
               (SELECT id FROM bulk_loads WHERE state = 'finished' AND ended_at < $1)",
            &[&ended_before],
        )
    }

    fn submit_api_load(&self, s: &ApiSubmission) -> Result<ApiSubmission, StoreError> {
        // Under the lender's numbering lock: the number is the lender's next free one (loads
        // and reservations), and a taken claim or idempotency key inserts nothing (the existing
        // submission is returned). A load of the lender holds the lock while it runs: waited
        // for up to 10 s, as SQLite's busy timeout, then an error (the API answers 503 with
        // Retry-After and keeps nothing).
        self.batch("BEGIN; SET LOCAL lock_timeout = '10s'")?;
        let inserted = self.lock_numbers(&s.lender).and_then(|()| {
            self.exec(
                "INSERT INTO api_submissions (claim, lender, number, kind, idempotency_key, body_sha256, submitted_at)
                 VALUES ($1, $2,
                         greatest((SELECT coalesce(max(number), 0) FROM bulk_loads WHERE lender = $2),
                                  (SELECT coalesce(max(number), 0) FROM api_submissions WHERE lender = $2)) + 1,
                         $3, $4, $5, $6)
                 ON CONFLICT DO NOTHING",
                &[&s.claim, &s.lender, &s.kind, &s.idempotency_key, &s.body_sha256, &s.submitted_at],
            )
        });
        match inserted {
            Ok(_) => self.batch("COMMIT")?,
            Err(e) => {
                if let Err(r) = self.batch("ROLLBACK") {
                    tracing::warn!(error = %r, "store: rollback failed (the connection ends the transaction)");
                }
                return Err(e);
            }
        }
        let found = match &s.idempotency_key {
            Some(k) => self.api_submission_where("idempotency_key", &s.lender, k)?,
            None => self.api_submission_where("claim", &s.lender, &s.claim)?,
        };
        found.ok_or_else(|| StoreError::Backend(format!("api submission {} vanished", s.claim)))
    }

    fn api_submission(
        &self,
        lender: &str,
        by: ApiSubmissionKey<'_>,
    ) -> Result<Option<ApiSubmission>, StoreError> {
        match by {
            ApiSubmissionKey::Claim(c) => self.api_submission_where("claim", lender, &c),
            ApiSubmissionKey::Number(n) => self.api_submission_where("number", lender, &n),
            ApiSubmissionKey::IdempotencyKey(k) => {
                self.api_submission_where("idempotency_key", lender, &k)
            }
        }
    }

    fn load_by_number(&self, lender: &str, number: i64) -> Result<Option<LoadRow>, StoreError> {
        self.one_load(
            &format!("SELECT {LOAD_COLUMNS} FROM bulk_loads WHERE lender = $1 AND number = $2"),
            &[&lender, &number],
        )
    }

    fn list_loads(&self, lender: &str, q: &LoadQuery<'_>) -> Result<LoadPage, StoreError> {
        let total: i64 = self
            .query_opt(
                &format!("SELECT count(*) FROM bulk_loads WHERE {LIST_LOADS_FILTER}"),
                &[&lender, &q.kind_prefix, &q.since],
            )?
            .map_or(0, |r| r.get(0));
        let loads = load_rows(self.query(
            &format!(
                "SELECT {LOAD_COLUMNS} FROM bulk_loads WHERE {LIST_LOADS_FILTER}
                 ORDER BY number DESC LIMIT $4 OFFSET $5"
            ),
            &[&lender, &q.kind_prefix, &q.since, &q.limit, &q.offset],
        )?)?;
        Ok(LoadPage { loads, total })
    }

    fn records_page(&self, lender: &str, q: &RecordQuery<'_>) -> Result<RecordPage, StoreError> {
        // Column names come from the records' static field tables, never from a request.
        // Compared as text: what a lender filters by is text, whatever the column's type.
        let table = table_name(q.table);
        let kind = q.account_kind.map(AccountKind::as_str);
        let mut args: Vec<&(dyn ToSql + Sync)> = vec![&lender];
        let mut cond = String::from("t.lender = $1");
        if let Some(k) = &kind {
            args.push(k);
            cond.push_str(&format!(" AND t.kind = ${}", args.len()));
        }
        for (col, v, nocase) in q.equals {
            args.push(v);
            if *nocase {
                cond.push_str(&format!(
                    " AND lower(t.{col}::text) = lower(${})",
                    args.len()
                ));
            } else {
                cond.push_str(&format!(" AND t.{col}::text = ${}", args.len()));
            }
        }
        if let Some(since) = &q.updated_since {
            args.push(since);
            cond.push_str(&format!(
                " AND (SELECT ended_at FROM bulk_loads b WHERE b.id = t.updated_load) >= ${}",
                args.len()
            ));
        }
        let total: i64 = self
            .query_opt(
                &format!("SELECT count(*) FROM {table} t WHERE {cond}"),
                &args,
            )?
            .map_or(0, |r| r.get(0));
        let cols: String = q.columns.iter().map(|c| format!(", t.{c}")).collect();
        args.push(&q.limit);
        args.push(&q.offset);
        let n = args.len();
        let rows = self.query(
            &format!(
                "SELECT t.thread_id{cols} FROM {table} t WHERE {cond} ORDER BY t.thread_id LIMIT ${} OFFSET ${n}",
                n - 1
            ),
            &args,
        )?;
        let rows = rows
            .iter()
            .map(|r| {
                let vals = (1..=q.columns.len())
                    .map(|i| cell(r, i))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((r.try_get::<_, String>(0)?, vals))
            })
            .collect::<Result<_, postgres::Error>>()
            .map_err(backend)?;
        Ok(RecordPage { rows, total })
    }

    fn records_submitted_since(&self, lender: &str, since: &str) -> Result<i64, StoreError> {
        Ok(self
            .query_opt(
                "SELECT coalesce(sum(num_create_success + num_update_success + num_add_success
                            + num_delete_success + num_create_failure + num_update_failure
                            + num_add_failure + num_delete_failure + num_mode_failure), 0)::bigint
                 FROM bulk_loads
                 WHERE lender = $1 AND started_at >= $2 AND dry_run = 0 AND error_message IS NULL",
                &[&lender, &since],
            )?
            .map_or(0, |r| r.get(0)))
    }

    fn loan_relations(
        &self,
        lender: &str,
        which: LoanRelation,
        loan_number: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Option<RecordPage>, StoreError> {
        let Some(loan) = self.query_opt(
            "SELECT id, thread_id FROM loans WHERE lender = $1 AND loan_number = $2",
            &[&lender, &loan_number],
        )?
        else {
            return Ok(None);
        };
        let (loan_id, loan_thread): (i64, String) = (loan.get(0), loan.get(1));
        // (from, columns, order): ordered by the first and last column, as SQLite does.
        let (from, cols, order) = match which {
            LoanRelation::Positions => (
                "loan_positions l JOIN accounts a ON a.id = l.account_id",
                "a.thread_id, a.external_id, l.position",
                "a.thread_id, l.position",
            ),
            LoanRelation::Borrowers => (
                "loan_borrowers l JOIN accounts a ON a.id = l.account_id",
                "a.thread_id, a.external_id",
                "a.thread_id, a.external_id",
            ),
            LoanRelation::Broker => (
                "loan_brokers l JOIN brokers b ON b.id = l.broker_id
                 LEFT JOIN accounts o ON o.id = l.loan_officer_account_id",
                "b.thread_id, b.id_number, o.thread_id, o.external_id",
                "b.thread_id, o.external_id",
            ),
        };
        let total: i64 = self
            .query_opt(
                &format!("SELECT count(*) FROM {from} WHERE l.loan_id = $1"),
                &[&loan_id],
            )?
            .map_or(0, |r| r.get(0));
        let rows = self.query(
            &format!(
                "SELECT {cols} FROM {from} WHERE l.loan_id = $1 ORDER BY {order} LIMIT $2 OFFSET $3"
            ),
            &[&loan_id, &limit, &offset],
        )?;
        let rows = rows
            .iter()
            .map(|r| {
                let vals = (0..r.len())
                    .map(|i| cell(r, i))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((loan_thread.clone(), vals))
            })
            .collect::<Result<_, postgres::Error>>()
            .map_err(backend)?;
        Ok(Some(RecordPage { rows, total }))
    }

    fn problem_count(&self, row: RowId) -> Result<i64, StoreError> {
        Ok(self
            .query_opt(
                "SELECT count(*) FROM load_problems WHERE load_id = $1",
                &[&row],
            )?
            .map_or(0, |r| r.get(0)))
    }

    fn console_loads(
        &self,
        lender: &str,
        filter: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<LoadRow>), StoreError> {
        let total: i64 = self
            .query_opt(
                &format!("SELECT count(*) FROM bulk_loads WHERE {CONSOLE_LOADS_FILTER}"),
                &[&lender, &filter],
            )?
            .map_or(0, |r| r.get(0));
        let loads = load_rows(self.query(
            &format!(
                "SELECT {LOAD_COLUMNS} FROM bulk_loads WHERE {CONSOLE_LOADS_FILTER}
                 ORDER BY id DESC LIMIT $3 OFFSET $4"
            ),
            &[&lender, &filter, &limit, &offset],
        )?)?;
        Ok((total, loads))
    }

    fn console_problems(
        &self,
        row: RowId,
        filter: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<ProblemRow>), StoreError> {
        let rows = self.query(
            "SELECT seq, idx, message, count(*) OVER () FROM load_problems
             WHERE load_id = $1 AND ($2 = '' OR strpos(lower(message), lower($2)) > 0)
             ORDER BY seq LIMIT $3 OFFSET $4",
            &[&row, &filter, &limit, &offset],
        )?;
        let total = rows.first().map_or(0, |r| r.get::<_, i64>(3));
        Ok((
            total,
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
        ))
    }

    fn hourly_activity(&self, since: &str) -> Result<Vec<HourActivity>, StoreError> {
        let rows = self.query(
            "SELECT lender, substr(started_at, 1, 13) AS hour,
                    count(*) FILTER (WHERE dry_run = 0),
                    count(*) FILTER (WHERE dry_run = 0 AND (error_message IS NOT NULL
                        OR num_create_failure + num_update_failure + num_add_failure
                           + num_delete_failure + num_mode_failure > 0)),
                    coalesce(sum(num_create_success + num_update_success + num_add_success
                        + num_delete_success + num_create_failure + num_update_failure
                        + num_add_failure + num_delete_failure + num_mode_failure)
                        FILTER (WHERE dry_run = 0), 0)::bigint
             FROM bulk_loads WHERE started_at >= $1
             GROUP BY lender, hour ORDER BY lender, hour",
            &[&since],
        )?;
        rows.iter()
            .map(|r| {
                Ok(HourActivity {
                    lender: r.try_get(0)?,
                    hour: r.try_get(1)?,
                    loads: r.try_get(2)?,
                    failed: r.try_get(3)?,
                    records: r.try_get(4)?,
                })
            })
            .collect::<Result<_, postgres::Error>>()
            .map_err(backend)
    }

    fn failed_deliveries(&self, limit: i64) -> Result<Vec<FailedDelivery>, StoreError> {
        let rows = self.query(
            "SELECT o.lender, l.number, o.channel, o.target, o.attempts, o.last_error, o.created_at
             FROM outbox o JOIN bulk_loads l ON l.id = o.load_id
             WHERE o.state = 'failed' ORDER BY o.id DESC LIMIT $1",
            &[&limit],
        )?;
        rows.iter()
            .map(|r| {
                Ok(FailedDelivery {
                    lender: r.try_get(0)?,
                    load: r.try_get(1)?,
                    channel: r.try_get(2)?,
                    target: r.try_get(3)?,
                    attempts: r.try_get(4)?,
                    last_error: r.try_get(5)?,
                    created_at: r.try_get(6)?,
                })
            })
            .collect::<Result<_, postgres::Error>>()
            .map_err(backend)
    }

    fn take_lease(&mut self, lender: &str) -> Result<bool, StoreError> {
        if let Some(old) = self.lease.take() {
            leases::release(self, &old)?;
        }
        self.lease = leases::take(self, lender, self.ttl)?;
        Ok(self.lease.is_some())
    }

    fn renew_lease(&mut self) -> Result<bool, StoreError> {
        match &self.lease {
            Some(held) => leases::renew(self, held),
            None => Ok(false),
        }
    }

    fn release_lease(&mut self) -> Result<(), StoreError> {
        match self.lease.take() {
            Some(held) => leases::release(self, &held),
            None => Ok(()),
        }
    }

    fn for_each_problem(
        &self,
        row: RowId,
        f: &mut dyn FnMut(i64, &str) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        // A page at a time: memory stays bounded however many problems a load has.
        let mut after = 0;
        loop {
            let page = self
                .problems_page(row, after, 1000)
                .map_err(std::io::Error::other)?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.0;
            for (_, idx, msg) in &page {
                f(*idx, msg)?;
            }
        }
    }
}

/// Values bind as the column's type asks (SQLite takes either everywhere; PostgreSQL does not).
impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                _ => i.to_string().to_sql(ty, out),
            },
            Value::Text(s) => match *ty {
                Type::INT8 => s.parse::<i64>()?.to_sql(ty, out),
                Type::INT4 => s.parse::<i32>()?.to_sql(ty, out),
                Type::FLOAT8 => s.parse::<f64>()?.to_sql(ty, out),
                _ => s.as_ref().to_sql(ty, out),
            },
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8 | Type::INT4 | Type::FLOAT8 | Type::TEXT | Type::VARCHAR
        )
    }

    to_sql_checked!();
}

/// The columns `find` reads after the id: (kind or division, email key).
fn found_columns(table: Table) -> (&'static str, &'static str) {
    match table {
        Table::Accounts => ("kind", "email_key"),
        Table::Loans => ("division_thread_id", "NULL::text"),
        Table::Partners => ("NULL::text", "email_key"),
        Table::Brokers => ("NULL::text", "NULL::text"),
    }
}

/// A `Found` from a row of (id, `found_columns`...).
fn found_at(table: Table, r: &Row) -> Result<Found, postgres::Error> {
    let extra: Option<String> = r.try_get(1)?;
    let (kind, division) = match table {
        Table::Accounts => (extra.as_deref().and_then(AccountKind::parse), None),
        _ => (None, extra),
    };
    Ok(Found {
        id: r.try_get(0)?,
        kind,
        division,
        email_key: r.try_get(2)?,
    })
}

/// `$1, $2, ...` from `from`.
fn marks(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Problems are written this many at a time (one statement): a file whose every record fails
/// would otherwise cost a round trip per problem.
const PROBLEM_BATCH: usize = 1000;

/// Problems kept and not yet written, column by column.
#[derive(Default)]
struct PendingProblems {
    seq: Vec<i64>,
    idx: Vec<i64>,
    message: Vec<String>,
    field: Vec<Option<String>>,
    code: Vec<String>,
}

/// Links are written this many at a time at most.
const LINK_BATCH: usize = 1000;

/// The SQL array type of a link table's key column.
fn link_column_type(col: &str) -> &'static str {
    if col.ends_with("_id") && col != "division_thread_id" {
        "bigint[]"
    } else {
        "text[]"
    }
}

impl PgTx<'_> {
    /// Writes the pending links: one statement per link table (duplicates write nothing, as
    /// one at a time).
    fn flush_links(&mut self) -> Result<(), StoreError> {
        if self.links.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.links);
        for link in [
            Link::AccountDivisions,
            Link::BrokerDivisions,
            Link::BrokerContacts,
            Link::LoanPositions,
            Link::LoanBorrowers,
            Link::LoanBrokerContacts,
        ] {
            let (table, cols) = link_table(link);
            let mut columns: Vec<Vec<Value>> = vec![Vec::new(); cols.len()];
            for (_, keys) in pending.iter().filter(|(l, _)| *l == link) {
                for (c, v) in columns.iter_mut().zip(keys) {
                    c.push(v.clone());
                }
            }
            if columns[0].is_empty() {
                continue;
            }
            let arrays: Vec<String> = cols
                .iter()
                .enumerate()
                .map(|(i, c)| format!("${}::{}", i + 1, link_column_type(c)))
                .collect();
            let sql = format!(
                "INSERT INTO {table} ({}) SELECT * FROM unnest({}) ON CONFLICT DO NOTHING",
                cols.join(", "),
                arrays.join(", ")
            );
            let p: Vec<&(dyn ToSql + Sync)> =
                columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
            self.store.exec(&sql, &p)?;
        }
        Ok(())
    }

    fn flush_problems(&mut self) -> Result<(), StoreError> {
        if self.pending.seq.is_empty() {
            return Ok(());
        }
        let b = std::mem::take(&mut self.pending);
        self.store.exec(
            "INSERT INTO load_problems (load_id, seq, idx, message, field, code)
             SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[])",
            &[&self.id, &b.seq, &b.idx, &b.message, &b.field, &b.code],
        )?;
        Ok(())
    }
}

struct PgTx<'s> {
    store: &'s mut PgStore,
    lender: &'s str,
    id: i64,
    problems: i64,
    pending: PendingProblems,
    /// Still open: dropping it rolls back.
    open: bool,
    /// The current batch's prefetched answers (`prefetch`).
    cache: Option<prefetch::BatchCache>,
    /// Links not yet written (`link`), in order.
    links: Vec<(Link, Vec<Value<'static>>)>,
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        if self.open {
            if let Err(e) = self.store.batch("ROLLBACK") {
                tracing::warn!(error = %e, "store: rollback failed (the connection ends the transaction)");
            }
        }
    }
}

impl LoadTx for PgTx<'_> {
    fn row(&self) -> RowId {
        self.id
    }

    fn lender(&self) -> &str {
        self.lender
    }

    fn wants_prefetch(&self) -> bool {
        true
    }

    /// The batch's lookups in at most four statements: its emails claimed (as `email_in_use`
    /// claims one: first the claim, then the check, so a concurrent load's commit is seen)
    /// and their holders read, and its rows by thread id and lender id.
    fn prefetch(&mut self, keys: &Prefetch) -> Result<(), StoreError> {
        self.cache = None;
        if keys.is_empty() {
            return Ok(());
        }
        let mut holders = Vec::new();
        if !keys.email_keys.is_empty() {
            // In sorted order (the keys are): two loads claiming overlapping batches wait on
            // each other in one order.
            self.store.exec(
                "INSERT INTO email_claims (email_key, load_id)
                 SELECT k, $2 FROM unnest($1::text[]) AS k ON CONFLICT DO NOTHING",
                &[&keys.email_keys, &self.id],
            )?;
            // At most two holders of each key per side of the borrower exception: enough for
            // any `except` (one row) to leave the answer true when it is.
            for r in self.store.query(
                "SELECT email_key, id, kind FROM (
                     SELECT email_key, id, kind,
                            row_number() OVER (PARTITION BY email_key, kind = 'borrower' ORDER BY id) AS n
                     FROM accounts WHERE email_key = ANY($1::text[])) h
                 WHERE n <= 2",
                &[&keys.email_keys],
            )? {
                let kind: Option<String> = r.get(2);
                holders.push((r.get(0), r.get(1), kind.as_deref().and_then(AccountKind::parse)));
            }
        }
        let mut found = Vec::new();
        if let Some(table) = keys.table {
            if !keys.thread_ids.is_empty() || !keys.lender_ids.is_empty() {
                let (extra, email) = found_columns(table);
                let lid = lender_id_column(table);
                let sql = format!(
                    "SELECT id, {extra}, {email}, thread_id, {lid} FROM {} WHERE lender = $1
                     AND ({lid} = ANY($2::text[]) OR thread_id = ANY($3::text[]))",
                    table_name(table)
                );
                for r in self
                    .store
                    .query(&sql, &[&self.lender, &keys.lender_ids, &keys.thread_ids])?
                {
                    let f = found_at(table, &r).map_err(backend)?;
                    found.push((f, r.get(3), r.get(4)));
                }
            }
        }
        self.cache = Some(prefetch::BatchCache::new(
            keys.table,
            &keys.thread_ids,
            &keys.lender_ids,
            found,
            &keys.email_keys,
            holders,
        ));
        Ok(())
    }

    fn find(
        &mut self,
        table: Table,
        key: Key<'_>,
        kind: Option<AccountKind>,
    ) -> Result<Option<Found>, StoreError> {
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.find(table, &key, kind)) {
            return Ok(hit);
        }
        let (extra, email) = found_columns(table);
        let (col, val) = match key {
            Key::ThreadId(t) => ("thread_id", t),
            Key::LenderId(l) => (lender_id_column(table), l),
            Key::Column(c, v) => (c, v),
        };
        let filter = if kind.is_some() { " AND kind = $3" } else { "" };
        let sql = format!(
            "SELECT id, {extra}, {email} FROM {} WHERE {col} = $1 AND lender = $2{filter} LIMIT 1",
            table_name(table)
        );
        let row = match kind {
            Some(k) => self
                .store
                .query_opt(&sql, &[&val, &self.lender, &k.as_str()])?,
            None => self.store.query_opt(&sql, &[&val, &self.lender])?,
        };
        row.map(|r| found_at(table, &r))
            .transpose()
            .map_err(backend)
    }

    fn email_in_use(
        &mut self,
        email_key: &str,
        except: Option<RowId>,
        ignore_borrowers: bool,
    ) -> Result<bool, StoreError> {
        if let Some(hit) = self
            .cache
            .as_ref()
            .and_then(|c| c.email_in_use(email_key, except, ignore_borrowers))
        {
            return Ok(hit);
        }
        // Emails are unique across lenders, whose loads may run at once (several daemons,
        // parallel lenders): the load claims the email first. A claim another running load
        // holds makes this insert wait for that load to end (its claims go with its commit),
        // then the check below sees what it committed. Row locks, not the lock table: a load
        // may check millions of emails.
        self.store.exec(
            "INSERT INTO email_claims (email_key, load_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&email_key, &self.id],
        )?;
        Ok(self
            .store
            .query_opt(
                "SELECT 1 FROM accounts WHERE email_key = $1 AND id IS DISTINCT FROM $2
                 AND (NOT $3 OR kind <> 'borrower') LIMIT 1",
                &[&email_key, &except, &ignore_borrowers],
            )?
            .is_some())
    }

    fn insert(
        &mut self,
        table: Table,
        thread_id: &str,
        cols: &[&str],
        vals: &[Value],
    ) -> Result<Written, StoreError> {
        let mut all: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(vals.len() + 4);
        all.extend(vals.iter().map(|v| v as &(dyn ToSql + Sync)));
        all.extend([
            &self.lender as &(dyn ToSql + Sync),
            &thread_id,
            &self.id,
            &self.id,
        ]);
        let n = all.len();
        let st = self.store.shaped("insert", table, cols, || {
            let mut names = cols.join(", ");
            if !names.is_empty() {
                names.push_str(", ");
            }
            // A taken lender id (a unique index) writes nothing: no row comes back. ON CONFLICT
            // keeps the transaction usable, where a failed statement would abort it.
            format!(
                "INSERT INTO {} ({names}lender, thread_id, created_load, updated_load) VALUES ({})
                 ON CONFLICT DO NOTHING RETURNING id",
                table_name(table),
                marks(1, n)
            )
        })?;
        let row = self
            .store
            .conn
            .borrow_mut()
            .query_opt(&st, &all)
            .map_err(backend)?;
        Ok(match row {
            Some(r) => {
                let id = r.get(0);
                if let Some(c) = &mut self.cache {
                    c.wrote(table, Some(id), Some(thread_id), cols, vals);
                }
                Written::Row(id)
            }
            None => Written::Duplicate,
        })
    }

    fn update(
        &mut self,
        table: Table,
        id: RowId,
        cols: &[&str],
        vals: &[Value],
    ) -> Result<Written, StoreError> {
        let st = self.store.shaped("update", table, cols, || {
            let mut sets: Vec<String> = cols
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c} = ${}", i + 1))
                .collect();
            let n = cols.len();
            sets.push(format!("updated_load = ${}", n + 1));
            let t = table_name(table);
            // The lender's id taken by another row of the lender: nothing is written (a unique
            // violation would abort the whole transaction in PostgreSQL).
            let lid = lender_id_column(table);
            let guard = match cols.iter().position(|c| *c == lid) {
                Some(i) => format!(
                    " AND NOT EXISTS (SELECT 1 FROM {t} o WHERE o.lender = {t}.lender AND o.{lid} = ${} AND o.id <> {t}.id)",
                    i + 1
                ),
                None => String::new(),
            };
            format!(
                "UPDATE {t} SET {} WHERE id = ${}{guard}",
                sets.join(", "),
                n + 2
            )
        })?;
        if let Some(c) = &mut self.cache {
            c.wrote(table, Some(id), None, cols, vals);
        }
        let mut all: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(vals.len() + 2);
        all.extend(vals.iter().map(|v| v as &(dyn ToSql + Sync)));
        all.push(&self.id);
        all.push(&id);
        let changed = self
            .store
            .conn
            .borrow_mut()
            .execute(&st, &all)
            .map_err(backend)?;
        Ok(match changed {
            0 => Written::Duplicate,
            _ => Written::Row(id),
        })
    }

    fn get(&mut self, table: Table, id: RowId, col: &str) -> Result<Value<'static>, StoreError> {
        let sql = format!("SELECT {col} FROM {} WHERE id = $1", table_name(table));
        let row = self.store.query_opt(&sql, &[&id])?.ok_or_else(|| {
            StoreError::Backend(format!("{} row {id} not found", table_name(table)))
        })?;
        let int = matches!(*row.columns()[0].type_(), Type::INT8);
        Ok(if int {
            row.get::<_, Option<i64>>(0).map_or(Value::Null, Value::Int)
        } else {
            row.get::<_, Option<String>>(0)
                .map_or(Value::Null, |v| Value::Text(v.into()))
        })
    }

    /// Deferred: links are written a batch at a time (`flush_links`), before anything that
    /// could see them. The answer is therefore always true (no caller uses it).
    fn link(&mut self, link: Link, keys: &[Value]) -> Result<bool, StoreError> {
        self.links
            .push((link, keys.iter().map(Value::to_static).collect()));
        if self.links.len() >= LINK_BATCH {
            self.flush_links()?;
        }
        Ok(true)
    }

    fn unlink(&mut self, link: Link, keys: &[Value]) -> Result<bool, StoreError> {
        self.flush_links()?;
        let (table, cols) = link_table(link);
        let wh: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} = ${}", i + 1))
            .collect();
        let sql = format!("DELETE FROM {table} WHERE {}", wh.join(" AND "));
        let p: Vec<&(dyn ToSql + Sync)> = keys.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        Ok(self.store.exec(&sql, &p)? > 0)
    }

    fn unlink_all(&mut self, link: Link, owner: RowId) -> Result<(), StoreError> {
        self.flush_links()?;
        let (table, cols) = link_table(link);
        self.store.exec(
            &format!("DELETE FROM {table} WHERE {} = $1", cols[0]),
            &[&owner],
        )?;
        Ok(())
    }

    fn loan_broker(&mut self, loan: RowId) -> Result<Option<(RowId, String)>, StoreError> {
        self.flush_links()?;
        Ok(self
            .store
            .query_opt(
                "SELECT lb.broker_id, b.id_number FROM loan_brokers lb JOIN brokers b ON b.id = lb.broker_id
                 WHERE lb.loan_id = $1",
                &[&loan],
            )?
            .map(|r| (r.get(0), r.get(1))))
    }

    fn insert_loan_broker(
        &mut self,
        loan: RowId,
        broker: RowId,
        officer: Option<RowId>,
    ) -> Result<(), StoreError> {
        self.flush_links()?;
        self.store.exec(
            "INSERT INTO loan_brokers (loan_id, broker_id, loan_officer_account_id) VALUES ($1, $2, $3)",
            &[&loan, &broker, &officer],
        )?;
        Ok(())
    }

    fn set_loan_officer(&mut self, loan: RowId, officer: RowId) -> Result<(), StoreError> {
        self.flush_links()?;
        self.store.exec(
            "UPDATE loan_brokers SET loan_officer_account_id = $2 WHERE loan_id = $1",
            &[&loan, &officer],
        )?;
        Ok(())
    }

    fn delete_loan_broker(&mut self, loan: RowId) -> Result<(), StoreError> {
        self.flush_links()?;
        self.store
            .exec("DELETE FROM loan_brokers WHERE loan_id = $1", &[&loan])?;
        Ok(())
    }

    fn savepoint(&mut self) -> Result<(), StoreError> {
        // Problems and links kept so far belong before the savepoint: a rollback to it must
        // keep them.
        self.flush_problems()?;
        self.flush_links()?;
        self.store.batch("SAVEPOINT record")
    }

    fn release(&mut self) -> Result<(), StoreError> {
        self.store.batch("RELEASE SAVEPOINT record")
    }

    fn rollback(&mut self) -> Result<(), StoreError> {
        // Links kept since the savepoint (it flushed the earlier ones) are undone with it.
        self.links.clear();
        self.store
            .batch("ROLLBACK TO SAVEPOINT record; RELEASE SAVEPOINT record")
    }

    fn problem(&mut self, index: u64, p: &Problem) -> Result<(), StoreError> {
        self.problems += 1;
        let b = &mut self.pending;
        b.seq.push(self.problems);
        b.idx.push(index as i64);
        b.message.push(p.message().into_owned());
        b.field.push(p.field.clone());
        b.code.push(p.code.as_str().to_string());
        if b.seq.len() >= PROBLEM_BATCH {
            self.flush_problems()?;
        }
        Ok(())
    }

    fn set_dry_run(&mut self) -> Result<(), StoreError> {
        self.store.exec(
            "UPDATE bulk_loads SET dry_run = 1 WHERE id = $1",
            &[&self.id],
        )?;
        Ok(())
    }

    fn latest_stamp(&mut self, pickup_name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .store
            .query_opt(
                "SELECT max(stamp) FROM bulk_loads WHERE lender = $1 AND pickup_name = $2 AND id <> $3",
                &[&self.lender, &pickup_name, &self.id],
            )?
            .and_then(|r| r.get(0)))
    }

    fn enqueue(
        &mut self,
        event: &str,
        targets: &[(&str, String)],
        now: f64,
    ) -> Result<(), StoreError> {
        for (channel, target) in targets {
            self.store.exec(
                "INSERT INTO outbox (msg_id, load_id, lender, event, channel, target, created_at, next_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                &[
                    &format!("msg_{}", uuid::Uuid::new_v4().simple()),
                    &self.id,
                    &self.lender,
                    &event,
                    channel,
                    target,
                    &now,
                ],
            )?;
        }
        Ok(())
    }

    fn complete(
        mut self: Box<Self>,
        ended_at: &str,
        stamp: &str,
        error_message: Option<&str>,
        c: &Counts,
    ) -> Result<RowId, StoreError> {
        self.flush_problems()?;
        self.flush_links()?;
        self.store
            .exec("DELETE FROM email_claims WHERE load_id = $1", &[&self.id])?;
        self.store.exec(
            "UPDATE bulk_loads SET ended_at = $2, stamp = $3, error_message = $4,
                num_create_success = $5, num_update_success = $6, num_add_success = $7,
                num_delete_success = $8, num_create_failure = $9, num_update_failure = $10,
                num_add_failure = $11, num_delete_failure = $12, num_mode_failure = $13
             WHERE id = $1",
            &[
                &self.id,
                &ended_at,
                &stamp,
                &error_message,
                &c.create_success,
                &c.update_success,
                &c.add_success,
                &c.delete_success,
                &c.create_failure,
                &c.update_failure,
                &c.add_failure,
                &c.delete_failure,
                &c.mode_failure,
            ],
        )?;
        if let Some(held) = &self.store.lease {
            leases::extend(self.store, held)?;
        }
        self.open = false;
        self.store.batch("COMMIT")?;
        Ok(self.id)
    }
}
