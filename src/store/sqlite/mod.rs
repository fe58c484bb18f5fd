//! The SQLite backend: one database file per environment, all lenders.
//!
//! Owns: opening (WAL, foreign keys, synchronous and cache as configured), the embedded
//! migrations keyed by `PRAGMA user_version`, and the SQL of every `Store` / `LoadTx` operation.
//! Must not: decide anything a lender reads (messages, which email clashes, defaults): it runs
//! what `records` asks for, scoped to the transaction's lender.

use rusqlite::types::Value as SqlValue;
use rusqlite::{
    params, params_from_iter, Connection, ErrorCode, OptionalExtension, TransactionBehavior,
};
use std::path::Path;

mod bound;
use bound::Arg;
mod emails;

/// Process-wide SQLite settings, before the library's first use (later they cannot change, and
/// this does nothing). Memory statistics off: with them on, every SQLite allocation takes a
/// global mutex (`pthread_mutex_lock` was 3-4% of an update's or relation add's store thread,
/// bench/README.md "Issue 10"), and nothing here reads them.
pub fn configure_library() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config takes the op and one int for SQLITE_CONFIG_MEMSTATUS; called
        // once, before any connection of this process is opened (else it answers SQLITE_MISUSE
        // and changes nothing).
        let _ = unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS,
                0 as std::os::raw::c_int,
            )
        };
    });
}

use super::{
    lender_id_column, link_table, table_name, AccountKind, ApiSubmission, ApiSubmissionKey,
    Attempt, Delivery, FailedDelivery, Found, HourActivity, Key, Link, LoadKey, LoadPage,
    LoadQuery, LoadRow, LoadTx, LoanRelation, RecordPage, RecordQuery, RowId, Source, Store,
    StoreError, Table, Value, Written,
};
use crate::config::{StoreConfig, Synchronous};
use crate::problem::Problem;
use crate::result::Counts;

/// Embedded migrations; the n-th brings the schema to version n+1.
const MIGRATIONS: &[&str] = &[
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5.sql"),
    include_str!("schema_v6.sql"),
];

/// Whether the store at `path` exists with every migration applied: the notification sender
/// opens only such a store, so it never migrates one a pass is creating (issue 13).
pub fn is_current(path: &Path) -> bool {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)))
        .is_ok_and(|v| v == MIGRATIONS.len() as i64)
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

pub struct SqliteStore {
    conn: Connection,
}

const LOAD_COLUMNS: &str = "id, number, lender, pickup_name, claim, source, started_at, ended_at, stamp, error_message, \
     num_create_success, num_update_success, num_add_success, num_delete_success, \
     num_create_failure, num_update_failure, num_add_failure, num_delete_failure, num_mode_failure, state, dry_run";

/// How many columns `LOAD_COLUMNS` names.
const LOAD_COLUMN_COUNT: usize = 21;

fn load_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LoadRow> {
    load_row_at(r, 0)
}

/// A load row whose `LOAD_COLUMNS` start at column `o` of `r`.
fn load_row_at(r: &rusqlite::Row<'_>, o: usize) -> rusqlite::Result<LoadRow> {
    Ok(LoadRow {
        row: r.get(o)?,
        id: r.get(o + 1)?,
        lender: r.get(o + 2)?,
        pickup_name: r.get(o + 3)?,
        claim: r.get(o + 4)?,
        source: r.get(o + 5)?,
        started_at: r.get(o + 6)?,
        ended_at: r.get(o + 7)?,
        stamp: r.get(o + 8)?,
        error_message: r.get(o + 9)?,
        counts: Counts {
            create_success: r.get(o + 10)?,
            update_success: r.get(o + 11)?,
            add_success: r.get(o + 12)?,
            delete_success: r.get(o + 13)?,
            create_failure: r.get(o + 14)?,
            update_failure: r.get(o + 15)?,
            add_failure: r.get(o + 16)?,
            delete_failure: r.get(o + 17)?,
            mode_failure: r.get(o + 18)?,
        },
        finished: r.get::<_, String>(o + 19)? == "finished",
        dry_run: r.get::<_, i64>(o + 20)? != 0,
    })
}

impl SqliteStore {
    /// Opens (creating when missing) and migrates the store at `path`.
    pub fn open(path: &Path, cfg: StoreConfig) -> Result<SqliteStore, StoreError> {
        let shown = path.display().to_string();
        let open_err = |e: rusqlite::Error| StoreError::Open {
            path: shown.clone(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let mut conn = Connection::open(path).map_err(open_err)?;
        let sync = match cfg.synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        let cache_kib = cfg.cache_mib.max(1) * 1024;
        let pragmas = format!(
            "PRAGMA busy_timeout = 10000;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = {sync};
             PRAGMA foreign_keys = ON;
             PRAGMA cache_size = -{cache_kib};
             PRAGMA temp_store = MEMORY;"
        );
        // Switching a new store to WAL needs its exclusive lock, and SQLite answers "database is
        // locked" at once rather than wait (the busy handler is skipped where waiting could
        // deadlock) when another connection opens it at the same moment: asked again for up to
        // the busy timeout.
        let mut tries = 0;
        loop {
            match conn.execute_batch(&pragmas) {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                        && tries < 1000 =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(open_err(e)),
            }
        }
        conn.set_prepared_statement_cache_capacity(128);
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                path: shown,
                found: version,
                known,
            });
        }
        let mut version = version;
        while version < known {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(open_err)?;
            // Read again under the write lock: another connection opening the same store at
            // the same moment (the daemon's first pass and an API request, two processes) may
            // have migrated it since; running a migration twice failed ("table already exists").
            version = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(open_err)?;
            let Some(sql) = usize::try_from(version)
                .ok()
                .and_then(|v| MIGRATIONS.get(v))
            else {
                break;
            };
            tx.execute_batch(sql).map_err(open_err)?;
            if sql.contains("writable_schema") {
                // A migration that edits a table's SQL text in place: every connection must
                // read the schema again (the documented procedure bumps schema_version).
                let v: i64 = tx
                    .query_row("PRAGMA schema_version", [], |r| r.get(0))
                    .map_err(open_err)?;
                tx.pragma_update(None, "schema_version", v + 1)
                    .map_err(open_err)?;
            }
            tx.pragma_update(None, "user_version", version + 1)
                .map_err(open_err)?;
            tx.commit().map_err(open_err)?;
            version += 1;
        }
        Ok(SqliteStore { conn })
    }

    /// Read access for tests and tools (`bulkload` never writes through it).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

impl Store for SqliteStore {
    fn begin<'s>(
        &'s mut self,
        lender: &'s str,
        key: &LoadKey,
        source: Source,
        started_at: &str,
    ) -> Result<Box<dyn LoadTx + 's>, StoreError> {
        let conn = &self.conn;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut tx = SqliteTx {
            conn,
            open: true,
            lender,
            id: 0,
            problems: 0,
            stmts: Prepared::default(),
            hot: Prepared::default(),
            emails: emails::EmailFilter::default(),
        };
        // Numbered per lender: one writer at a time (IMMEDIATE), so max + 1 is free; an API
        // load takes the number reserved at its submission (schema v5), and no load takes a
        // reserved one.
        tx.conn.execute(
            "INSERT INTO bulk_loads (number, lender, pickup_name, claim, source, started_at, ended_at, stamp, state)
             VALUES (coalesce((SELECT number FROM api_submissions WHERE claim = ?3 AND lender = ?1),
                              max((SELECT coalesce(max(number), 0) FROM bulk_loads WHERE lender = ?1),
                                  (SELECT coalesce(max(number), 0) FROM api_submissions WHERE lender = ?1)) + 1),
                     ?1, ?2, ?3, ?4, ?5, ?5, '', 'applied')",
            params![lender, key.supplied_name, key.key, source.as_str(), started_at],
        )?;
        tx.id = tx.conn.last_insert_rowid();
        Ok(Box::new(tx))
    }

    fn load_by_key(&self, lender: &str, key: &str) -> Result<Option<LoadRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {LOAD_COLUMNS} FROM bulk_loads WHERE claim = ?1 AND lender = ?2"),
                params![key, lender],
                load_row,
            )
            .optional()?)
    }

    fn load(&self, row: RowId) -> Result<Option<LoadRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {LOAD_COLUMNS} FROM bulk_loads WHERE id = ?1"),
                [row],
                load_row,
            )
            .optional()?)
    }

    fn unfinished(&self, lender: &str) -> Result<Vec<LoadRow>, StoreError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {LOAD_COLUMNS} FROM bulk_loads WHERE state = 'applied' AND lender = ?1 ORDER BY id"
        ))?;
        let rows = st.query_map([lender], load_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn previous_stamp(
        &self,
        lender: &str,
        pickup_name: &str,
        row: RowId,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT stamp FROM bulk_loads WHERE lender = ?1 AND pickup_name = ?2 AND id < ?3
                 AND dry_run = 0 ORDER BY id DESC LIMIT 1",
                params![lender, pickup_name, row],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn mark_finished(&self, row: RowId) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE bulk_loads SET state = 'finished' WHERE id = ?1",
            [row],
        )?;
        Ok(())
    }

    fn problems_page(
        &self,
        row: RowId,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<(i64, i64, String)>, StoreError> {
        Ok(self.problems_page_sql(row, after_seq, limit)?)
    }

    fn console_loads(
        &self,
        lender: &str,
        filter: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<LoadRow>), StoreError> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {LOAD_COLUMNS}, count(*) OVER () FROM bulk_loads
             WHERE lender = ?1 AND (?2 = '' OR instr(lower(pickup_name), lower(?2)) > 0
                                   OR instr(lower(coalesce(error_message, '')), lower(?2)) > 0)
             ORDER BY id DESC LIMIT ?3 OFFSET ?4"
        ))?;
        let mut total = 0;
        let rows = st
            .query_map(params![lender, filter, limit, offset], |r| {
                Ok((load_row(r)?, r.get::<_, i64>(LOAD_COLUMN_COUNT)?))
            })?
            .map(|x| {
                x.map(|(row, n)| {
                    total = n;
                    row
                })
            })
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if rows.is_empty() && offset > 0 {
            // Past the end: still say how many there are.
            total = self.conn.query_row(
                "SELECT count(*) FROM bulk_loads WHERE lender = ?1 AND (?2 = ''
                   OR instr(lower(pickup_name), lower(?2)) > 0
                   OR instr(lower(coalesce(error_message, '')), lower(?2)) > 0)",
                params![lender, filter],
                |r| r.get(0),
            )?;
        }
        Ok((total, rows))
    }

    fn console_problems(
        &self,
        row: RowId,
        filter: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<super::ProblemRow>), StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT seq, idx, message, count(*) OVER () FROM load_problems
             WHERE load_id = ?1 AND (?2 = '' OR instr(lower(message), lower(?2)) > 0)
             ORDER BY seq LIMIT ?3 OFFSET ?4",
        )?;
        let mut total = 0;
        let rows = st
            .query_map(params![row, filter, limit, offset], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)?))
            })?
            .map(|x| {
                x.map(|(a, b, c, n)| {
                    total = n;
                    (a, b, c)
                })
            })
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((total, rows))
    }

    fn hourly_activity(&self, since: &str) -> Result<Vec<HourActivity>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT lender, substr(started_at, 1, 13) AS hour,
                    sum(CASE WHEN dry_run = 0 THEN 1 ELSE 0 END),
                    sum(CASE WHEN dry_run = 0 AND (error_message IS NOT NULL
                        OR num_create_failure + num_update_failure + num_add_failure
                           + num_delete_failure + num_mode_failure > 0) THEN 1 ELSE 0 END),
                    sum(CASE WHEN dry_run = 0 THEN num_create_success + num_update_success
                        + num_add_success + num_delete_success + num_create_failure
                        + num_update_failure + num_add_failure + num_delete_failure
                        + num_mode_failure ELSE 0 END)
             FROM bulk_loads WHERE started_at >= ?1
             GROUP BY lender, hour ORDER BY lender, hour",
        )?;
        let rows = st.query_map([since], |r| {
            Ok(HourActivity {
                lender: r.get(0)?,
                hour: r.get(1)?,
                loads: r.get(2)?,
                failed: r.get(3)?,
                records: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn failed_deliveries(&self, limit: i64) -> Result<Vec<FailedDelivery>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT o.lender, l.number, o.channel, o.target, o.attempts, o.last_error, o.created_at
             FROM outbox o JOIN bulk_loads l ON l.id = o.load_id
             WHERE o.state = 'failed' ORDER BY o.id DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit], |r| {
            Ok(FailedDelivery {
                lender: r.get(0)?,
                load: r.get(1)?,
                channel: r.get(2)?,
                target: r.get(3)?,
                attempts: r.get(4)?,
                last_error: r.get(5)?,
                created_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn due_deliveries(&self, now: f64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        self.ops_due(now, limit)
    }

    fn record_attempt(&self, id: i64, attempt: &Attempt) -> Result<(), StoreError> {
        match attempt {
            Attempt::Delivered => self.conn.execute(
                "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, last_error = NULL WHERE id = ?1",
                [id],
            )?,
            Attempt::Retry { next_at, error } => self.conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3 WHERE id = ?1",
                params![id, next_at, error],
            )?,
            Attempt::Failed { error } => self.conn.execute(
                "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
                params![id, error],
            )?,
        };
        Ok(())
    }

    fn pending_deliveries(&self, lender: &str) -> Result<i64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM outbox WHERE lender = ?1 AND state = 'pending'",
            [lender],
            |r| r.get(0),
        )?)
    }

    fn last_load(&self, lender: &str) -> Result<Option<LoadRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {LOAD_COLUMNS} FROM bulk_loads WHERE lender = ?1 ORDER BY id DESC LIMIT 1"),
                [lender],
                load_row,
            )
            .optional()?)
    }

    fn prune_problems(&self, ended_before: &str) -> Result<u64, StoreError> {
        Ok(self.conn.execute(
            "DELETE FROM load_problems WHERE load_id IN
               (SELECT id FROM bulk_loads WHERE state = 'finished' AND ended_at < ?1)",
            [ended_before],
        )? as u64)
    }

    fn submit_api_load(&self, s: &ApiSubmission) -> Result<ApiSubmission, StoreError> {
        // One statement: the number is the lender's next free one (loads and reservations),
        // and a taken claim or idempotency key inserts nothing (the existing one is returned).
        self.conn.execute(
            "INSERT INTO api_submissions (claim, lender, number, kind, idempotency_key, body_sha256, submitted_at)
             VALUES (?1, ?2,
                     max((SELECT coalesce(max(number), 0) FROM bulk_loads WHERE lender = ?2),
                         (SELECT coalesce(max(number), 0) FROM api_submissions WHERE lender = ?2)) + 1,
                     ?3, ?4, ?5, ?6)
             ON CONFLICT DO NOTHING",
            params![s.claim, s.lender, s.kind, s.idempotency_key, s.body_sha256, s.submitted_at],
        )?;
        let found = match &s.idempotency_key {
            Some(k) => self.api_submission_where("idempotency_key = ?2", &s.lender, k)?,
            None => self.api_submission_where("claim = ?2", &s.lender, &s.claim)?,
        };
        found.ok_or_else(|| StoreError::Backend(format!("api submission {} vanished", s.claim)))
    }

    fn api_submission(
        &self,
        lender: &str,
        by: ApiSubmissionKey<'_>,
    ) -> Result<Option<ApiSubmission>, StoreError> {
        match by {
            ApiSubmissionKey::Claim(c) => self.api_submission_where("claim = ?2", lender, &c),
            ApiSubmissionKey::Number(n) => self.api_submission_where("number = ?2", lender, &n),
            ApiSubmissionKey::IdempotencyKey(k) => {
                self.api_submission_where("idempotency_key = ?2", lender, &k)
            }
        }
    }

    fn load_by_number(&self, lender: &str, number: i64) -> Result<Option<LoadRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {LOAD_COLUMNS} FROM bulk_loads WHERE lender = ?1 AND number = ?2"),
                params![lender, number],
                load_row,
            )
            .optional()?)
    }

    fn list_loads(&self, lender: &str, q: &LoadQuery<'_>) -> Result<LoadPage, StoreError> {
        // Newest first. `kind`: the pickup name starts with the type's prefix and a '.' or '_'
        // follows it (so "borrowers" does not match "loan_borrowers...": prefixes are whole).
        let filter = "lender = ?1
             AND (?2 IS NULL OR pickup_name LIKE ?2 || '.%' OR pickup_name LIKE ?2 || '-%'
                  OR pickup_name LIKE ?2 || '\\_%' ESCAPE '\\')
             AND (?3 IS NULL OR started_at >= ?3)";
        let total: i64 = self.conn.query_row(
            &format!("SELECT count(*) FROM bulk_loads WHERE {filter}"),
            params![lender, q.kind_prefix, q.since],
            |r| r.get(0),
        )?;
        let mut st = self.conn.prepare(&format!(
            "SELECT {LOAD_COLUMNS} FROM bulk_loads WHERE {filter} ORDER BY number DESC LIMIT ?4 OFFSET ?5"
        ))?;
        let loads = st
            .query_map(
                params![lender, q.kind_prefix, q.since, q.limit, q.offset],
                load_row,
            )?
            .collect::<Result<_, _>>()?;
        Ok(LoadPage { loads, total })
    }

    fn records_page(&self, lender: &str, q: &RecordQuery<'_>) -> Result<RecordPage, StoreError> {
        // Column names come from the records' static field tables, never from a request.
        let table = table_name(q.table);
        let mut cond = String::from("t.lender = ?1");
        let mut args: Vec<SqlValue> = vec![SqlValue::Text(lender.to_string())];
        if let Some(k) = q.account_kind {
            args.push(SqlValue::Text(k.as_str().to_string()));
            cond.push_str(&format!(" AND t.kind = ?{}", args.len()));
        }
        for (col, v, nocase) in q.equals {
            args.push(SqlValue::Text(v.clone()));
            if *nocase {
                cond.push_str(&format!(" AND lower(t.{col}) = lower(?{})", args.len()));
            } else {
                cond.push_str(&format!(" AND t.{col} = ?{}", args.len()));
            }
        }
        if let Some(since) = q.updated_since {
            args.push(SqlValue::Text(since.to_string()));
            cond.push_str(&format!(
                " AND (SELECT ended_at FROM bulk_loads b WHERE b.id = t.updated_load) >= ?{}",
                args.len()
            ));
        }
        let total: i64 = self.conn.query_row(
            &format!("SELECT count(*) FROM {table} t WHERE {cond}"),
            params_from_iter(args.iter()),
            |r| r.get(0),
        )?;
        let cols: String = q.columns.iter().map(|c| format!(", t.{c}")).collect();
        args.push(SqlValue::Integer(q.limit));
        args.push(SqlValue::Integer(q.offset));
        let n = args.len();
        let mut st = self.conn.prepare(&format!(
            "SELECT t.thread_id{cols} FROM {table} t WHERE {cond} ORDER BY t.thread_id LIMIT ?{} OFFSET ?{n}",
            n - 1
        ))?;
        let width = q.columns.len();
        let rows = st
            .query_map(params_from_iter(args.iter()), |r| {
                let mut vals = Vec::with_capacity(width);
                for i in 0..width {
                    vals.push(match r.get::<_, SqlValue>(i + 1)? {
                        SqlValue::Integer(n) => Value::Int(n),
                        SqlValue::Text(t) => Value::Text(t.into()),
                        SqlValue::Real(f) => Value::Text(f.to_string().into()),
                        _ => Value::Null,
                    });
                }
                Ok((r.get::<_, String>(0)?, vals))
            })?
            .collect::<Result<_, _>>()?;
        Ok(RecordPage { rows, total })
    }

    fn records_submitted_since(&self, lender: &str, since: &str) -> Result<i64, StoreError> {
        Ok(records_submitted_since(&self.conn, lender, since)?)
    }

    fn loan_relations(
        &self,
        lender: &str,
        which: LoanRelation,
        loan_number: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Option<RecordPage>, StoreError> {
        let Some((loan_id, loan_thread)) = self
            .conn
            .query_row(
                "SELECT id, thread_id FROM loans WHERE lender = ?1 AND loan_number = ?2",
                params![lender, loan_number],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()?
        else {
            return Ok(None);
        };
        let (from, cols) = match which {
            LoanRelation::Positions => (
                "loan_positions l JOIN accounts a ON a.id = l.account_id",
                "a.thread_id, a.external_id, l.position",
            ),
            LoanRelation::Borrowers => (
                "loan_borrowers l JOIN accounts a ON a.id = l.account_id",
                "a.thread_id, a.external_id",
            ),
            LoanRelation::Broker => (
                "loan_brokers l JOIN brokers b ON b.id = l.broker_id
                 LEFT JOIN accounts o ON o.id = l.loan_officer_account_id",
                "b.thread_id, b.id_number, o.thread_id, o.external_id",
            ),
        };
        let total: i64 = self.conn.query_row(
            &format!("SELECT count(*) FROM {from} WHERE l.loan_id = ?1"),
            [loan_id],
            |r| r.get(0),
        )?;
        let width = cols.split(',').count();
        let mut st = self.conn.prepare(&format!(
            "SELECT {cols} FROM {from} WHERE l.loan_id = ?1 ORDER BY 1, {width} LIMIT ?2 OFFSET ?3"
        ))?;
        let rows = st
            .query_map(params![loan_id, limit, offset], |r| {
                let mut vals = Vec::with_capacity(width);
                for i in 0..width {
                    vals.push(match r.get::<_, Option<String>>(i)? {
                        Some(t) => Value::Text(t.into()),
                        None => Value::Null,
                    });
                }
                Ok((loan_thread.clone(), vals))
            })?
            .collect::<Result<_, _>>()?;
        Ok(Some(RecordPage { rows, total }))
    }

    fn problem_count(&self, row: RowId) -> Result<i64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM load_problems WHERE load_id = ?1",
            [row],
            |r| r.get(0),
        )?)
    }

    fn for_each_problem(
        &self,
        row: RowId,
        f: &mut dyn FnMut(i64, &str) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT idx, message FROM load_problems WHERE load_id = ?1 ORDER BY seq",
            )
            .map_err(std::io::Error::other)?;
        let mut rows = st.query([row]).map_err(std::io::Error::other)?;
        while let Some(r) = rows.next().map_err(std::io::Error::other)? {
            let idx: i64 = r.get(0).map_err(std::io::Error::other)?;
            let msg: String = r.get(1).map_err(std::io::Error::other)?;
            f(idx, &msg)?;
        }
        Ok(())
    }
}

/// Quotas (issue 11): records of a lender's loads since `since`; also read by `bulkload status`
/// on its read-only connection.
pub fn records_submitted_since(
    conn: &Connection,
    lender: &str,
    since: &str,
) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT coalesce(sum(num_create_success + num_update_success + num_add_success
                    + num_delete_success + num_create_failure + num_update_failure
                    + num_add_failure + num_delete_failure + num_mode_failure), 0)
         FROM bulk_loads
         WHERE lender = ?1 AND started_at >= ?2 AND dry_run = 0 AND error_message IS NULL",
        params![lender, since],
        |r| r.get(0),
    )
}

// The Bulk Web API (issue 11).
impl SqliteStore {
    fn api_submission_where(
        &self,
        cond: &str,
        lender: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<Option<ApiSubmission>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT claim, lender, number, kind, idempotency_key, body_sha256, submitted_at
                     FROM api_submissions WHERE lender = ?1 AND {cond}"
                ),
                params![lender, value],
                |r| {
                    Ok(ApiSubmission {
                        claim: r.get(0)?,
                        lender: r.get(1)?,
                        number: r.get(2)?,
                        kind: r.get(3)?,
                        idempotency_key: r.get(4)?,
                        body_sha256: r.get(5)?,
                        submitted_at: r.get(6)?,
                    })
                },
            )
            .optional()?)
    }
}

impl SqliteStore {
    fn problems_page_sql(
        &self,
        row: RowId,
        after_seq: i64,
        limit: i64,
    ) -> rusqlite::Result<Vec<(i64, i64, String)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT seq, idx, message FROM load_problems WHERE load_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = st.query_map(params![row, after_seq, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        rows.collect()
    }
}

// The outbox and housekeeping (issue 13).
impl SqliteStore {
    fn ops_due(&self, now: f64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let cols = LOAD_COLUMNS
            .split(',')
            .map(|c| format!("l.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut st = self.conn.prepare(&format!(
            "SELECT o.id, o.msg_id, o.event, o.channel, o.target, o.created_at, o.attempts, {cols}
             FROM outbox o JOIN bulk_loads l ON l.id = o.load_id
             WHERE o.state = 'pending' AND o.next_at <= ?1 AND l.state = 'finished'
             ORDER BY o.next_at, o.id LIMIT ?2"
        ))?;
        let rows = st.query_map(params![now, limit as i64], |r| {
            // The load's columns follow the outbox's seven.
            let load = load_row_at(r, 7)?;
            Ok(Delivery {
                id: r.get(0)?,
                msg_id: r.get(1)?,
                event: r.get(2)?,
                channel: r.get(3)?,
                target: r.get(4)?,
                created_at: r.get(5)?,
                attempts: r.get(6)?,
                load,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// One load's transaction: `BEGIN IMMEDIATE` on the store's connection, rolled back on drop
/// unless completed. It holds its own prepared statements (`stmts`) for the load's life, so a
/// record's statements are neither looked up in rusqlite's statement cache (hashing the SQL text
/// twice per use: 6% of an employee create's store work, 14% of a relation add's) nor re-prepared.
struct SqliteTx<'s> {
    conn: &'s Connection,
    /// Still to be committed or rolled back.
    open: bool,
    lender: &'s str,
    id: i64,
    problems: i64,
    /// Prepared statements (rusqlite's), by what they do.
    stmts: Prepared<rusqlite::Statement<'s>>,
    /// The per-record writes and probes, bound without copies (`bound`), likewise.
    hot: Prepared<bound::BoundStmt<'s>>,
    /// Email keys known free without a probe (`emails`): every write of `accounts.email_key`
    /// notes its key there first (`note_email`).
    emails: emails::EmailFilter,
}

/// A load's prepared statements of one kind, with their SQL texts built once per load (building
/// them per record was 4-7% of a phase). Bounded: update texts follow the column sets the
/// records supply, so a file could otherwise prepare a statement per record; before a new one
/// past `MAX_LOAD_STATEMENTS`, every statement is finalized and the cache starts over (each is
/// prepared again when next used; an index is never kept across calls).
struct Prepared<T> {
    sqls: SqlCache,
    /// By the index `sqls` gives.
    stmts: Vec<T>,
}

impl<T> Default for Prepared<T> {
    fn default() -> Self {
        Prepared {
            sqls: SqlCache::default(),
            stmts: Vec::new(),
        }
    }
}

impl<T> Prepared<T> {
    /// The statement for (op, cols): `build` makes its text and `prepare` prepares it, both on
    /// first use only.
    fn get(
        &mut self,
        op: u8,
        cols: &[&str],
        build: impl FnOnce() -> String,
        prepare: impl FnOnce(&str) -> rusqlite::Result<T>,
    ) -> Result<&mut T, StoreError> {
        if self.stmts.len() >= MAX_LOAD_STATEMENTS && !self.sqls.contains(op, cols) {
            self.clear();
        }
        let (i, new) = self.sqls.get(op, cols, build);
        if let Some(sql) = new {
            debug_assert_eq!(i, self.stmts.len());
            self.stmts.push(prepare(sql)?);
        }
        Ok(&mut self.stmts[i])
    }

    /// Finalizes every statement.
    fn clear(&mut self) {
        self.stmts.clear();
        self.sqls = SqlCache::default();
    }
}

impl Drop for SqliteTx<'_> {
    fn drop(&mut self) {
        if self.open {
            // As rusqlite's Transaction does: an abandoned load leaves nothing behind. A failure
            // here leaves the transaction to the connection's next BEGIN, which fails loudly.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// One cached statement: its operation code, its columns, the text, its index in `stmts`.
type SqlEntry = (u8, Vec<String>, String, usize);

/// Statement texts by what they do, the table and the columns involved.
#[derive(Default)]
struct SqlCache {
    map: std::collections::HashMap<u64, Vec<SqlEntry>>,
    next: usize,
}

/// Statements of a kind a load keeps prepared at most (see `Prepared`).
const MAX_LOAD_STATEMENTS: usize = 128;

impl SqlCache {
    /// Over the op and where the column names are, not their bytes: the names come from the
    /// field tables and literals, so the same set comes at the same addresses, and hashing every
    /// name's bytes was 3% of a loans file's store thread. Only the bucket depends on it: `same`
    /// compares the names themselves, so a set that came from elsewhere (same names at other
    /// addresses) gets an entry of its own with the same text, never another set's statement.
    fn hash(op: u8, cols: &[&str]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(op);
        for c in cols {
            for w in [c.as_ptr() as u64, c.len() as u64] {
                h = (h ^ w).wrapping_mul(0x100_0000_01b3);
            }
        }
        h ^ h >> 29
    }

    fn same(e: &SqlEntry, op: u8, cols: &[&str]) -> bool {
        e.0 == op && e.1.len() == cols.len() && e.1.iter().zip(cols).all(|(a, b)| a == b)
    }

    /// Whether (op, cols) has its statement already.
    fn contains(&self, op: u8, cols: &[&str]) -> bool {
        self.map
            .get(&Self::hash(op, cols))
            .is_some_and(|b| b.iter().any(|e| Self::same(e, op, cols)))
    }

    /// The index of the statement for (op, cols), and its text when it is new (to prepare).
    fn get(
        &mut self,
        op: u8,
        cols: &[&str],
        build: impl FnOnce() -> String,
    ) -> (usize, Option<&str>) {
        let bucket = self.map.entry(Self::hash(op, cols)).or_default();
        match bucket.iter().position(|e| Self::same(e, op, cols)) {
            Some(i) => (bucket[i].3, None),
            None => {
                let index = self.next;
                self.next += 1;
                bucket.push((
                    op,
                    cols.iter().map(|c| c.to_string()).collect(),
                    build(),
                    index,
                ));
                let text = bucket.last().map(|e| e.2.as_str());
                (index, text)
            }
        }
    }
}

/// Operation codes of the SQL cache: the op in the high bits, the table or link in the low ones.
fn op(kind: u8, which: u8) -> u8 {
    kind << 4 | which
}

/// Values bind as they are (rusqlite hands SQLite a copy of the text; the hot statements bind
/// in place instead: `bound`).
impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

impl<'s> SqliteTx<'s> {
    /// The load's prepared statement for (op, cols), prepared on first use.
    fn stmt(
        &mut self,
        op: u8,
        cols: &[&str],
        build: impl FnOnce() -> String,
    ) -> Result<&mut rusqlite::Statement<'s>, StoreError> {
        let conn = self.conn;
        self.stmts.get(op, cols, build, |sql| conn.prepare(sql))
    }
    /// A fixed statement (its op code names it).
    fn fixed(
        &mut self,
        op: u8,
        sql: &'static str,
    ) -> Result<&mut rusqlite::Statement<'s>, StoreError> {
        self.stmt(op, &[], || sql.to_string())
    }
    fn run(&mut self, op: u8, sql: &'static str) -> Result<(), StoreError> {
        self.fixed(op, sql)?.execute([])?;
        Ok(())
    }
    /// Inserts an entity row: `cols` / `vals`, then the lender, thread id and load columns, and
    /// `tail` after the values (an ON CONFLICT clause). The statement's answer (rows written, or
    /// SQLite's error: a unique violation is the caller's to read) inside a preparation failure.
    fn insert_row(
        &mut self,
        op: u8,
        table: Table,
        thread_id: &str,
        cols: &[&str],
        vals: &[Value],
        tail: &str,
    ) -> Result<rusqlite::Result<usize>, StoreError> {
        self.note_email(table, cols, vals)?;
        let n = vals.len() + 4;
        let (lender, id) = (self.lender, self.id);
        let st = self.hot(op, cols, || {
            let mut names = cols.join(", ");
            if !names.is_empty() {
                names.push_str(", ");
            }
            let marks = vec!["?"; n].join(", ");
            format!(
                "INSERT INTO {} ({names}lender, thread_id, created_load, updated_load) VALUES ({marks}){tail}",
                table_name(table)
            )
        })?;
        let tail = [
            Arg::Text(lender),
            Arg::Text(thread_id),
            Arg::Int(id),
            Arg::Int(id),
        ];
        Ok(st.execute(vals.iter().map(Arg::from).chain(tail)))
    }
    /// Tells the email filter of a write of `accounts.email_key` (the value `cols` names it
    /// with), before the write runs.
    fn note_email(
        &mut self,
        table: Table,
        cols: &[&str],
        vals: &[Value],
    ) -> Result<(), StoreError> {
        if table != Table::Accounts {
            return Ok(());
        }
        if let Some(Value::Text(key)) = cols
            .iter()
            .position(|c| *c == "email_key")
            .and_then(|i| vals.get(i))
        {
            self.emails.note(self.conn, key)?;
        }
        Ok(())
    }
    /// The hot statement for (op, cols), prepared on first use.
    fn hot(
        &mut self,
        op: u8,
        cols: &[&str],
        build: impl FnOnce() -> String,
    ) -> Result<&mut bound::BoundStmt<'s>, StoreError> {
        let conn = self.conn;
        self.hot
            .get(op, cols, build, |sql| bound::BoundStmt::prepare(conn, sql))
    }
}

/// Op codes of the fixed statements (kinds 9 to 15 in the high bits; see `op`).
const OP_EMAIL: u8 = 9 << 4;
const OP_SAVEPOINT: u8 = 10 << 4;
const OP_RELEASE: u8 = 10 << 4 | 1;
const OP_ROLLBACK_TO: u8 = 10 << 4 | 2;
const OP_PROBLEM: u8 = 11 << 4;

impl LoadTx for SqliteTx<'_> {
    fn row(&self) -> RowId {
        self.id
    }

    fn lender(&self) -> &str {
        self.lender
    }

    fn find(
        &mut self,
        table: Table,
        key: Key<'_>,
        kind: Option<AccountKind>,
    ) -> Result<Option<Found>, StoreError> {
        let (extra, email) = match table {
            Table::Accounts => ("kind", "email_key"),
            Table::Loans => ("division_thread_id", "NULL"),
            Table::Partners => ("NULL", "email_key"),
            Table::Brokers => ("NULL", "NULL"),
        };
        let (col, val) = match key {
            Key::ThreadId(t) => ("thread_id", t),
            Key::LenderId(l) => (lender_id_column(table), l),
            Key::Column(c, v) => (c, v),
        };
        let filter = if kind.is_some() { " AND kind = ?3" } else { "" };
        let lender = self.lender;
        let st = self.stmt(op(1 + kind.is_some() as u8, table as u8), &[col], || {
            format!(
                "SELECT id, {extra}, {email} FROM {} WHERE {col} = ?1 AND lender = ?2{filter} LIMIT 1",
                table_name(table)
            )
        })?;
        let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<Found> {
            let extra: Option<String> = r.get(1)?;
            let (kind, division) = match table {
                Table::Accounts => (extra.as_deref().and_then(AccountKind::parse), None),
                _ => (None, extra),
            };
            Ok(Found {
                id: r.get(0)?,
                kind,
                division,
                email_key: r.get(2)?,
            })
        };
        let row = match kind {
            Some(k) => st.query_row(params![val, lender, k.as_str()], map),
            None => st.query_row(params![val, lender], map),
        };
        Ok(row.optional()?)
    }

    fn email_in_use(
        &mut self,
        email_key: &str,
        except: Option<RowId>,
        ignore_borrowers: bool,
    ) -> Result<bool, StoreError> {
        if self.emails.surely_free(self.conn, email_key)? {
            return Ok(false);
        }
        let st = self.hot(OP_EMAIL, &[], || {
            "SELECT 1 FROM accounts WHERE email_key = ?1 AND id IS NOT ?2
             AND (?3 = 0 OR kind <> 'borrower') LIMIT 1"
                .to_string()
        })?;
        Ok(st.exists([
            Arg::Text(email_key),
            except.into(),
            Arg::Int(i64::from(ignore_borrowers)),
        ])?)
    }

    fn insert(
        &mut self,
        table: Table,
        thread_id: &str,
        cols: &[&str],
        vals: &[Value],
    ) -> Result<Written, StoreError> {
        match self.insert_row(op(3, table as u8), table, thread_id, cols, vals, "")? {
            Ok(_) => Ok(Written::Row(self.conn.last_insert_rowid())),
            Err(e) if is_unique_violation(&e) => Ok(Written::Duplicate),
            Err(e) => Err(e.into()),
        }
    }

    fn update(
        &mut self,
        table: Table,
        id: RowId,
        cols: &[&str],
        vals: &[Value],
    ) -> Result<Written, StoreError> {
        self.note_email(table, cols, vals)?;
        let load = self.id;
        let st = self.hot(op(4, table as u8), cols, || {
            let mut sets: Vec<String> = cols.iter().map(|c| format!("{c} = ?")).collect();
            sets.push("updated_load = ?".into());
            format!(
                "UPDATE {} SET {} WHERE id = ?",
                table_name(table),
                sets.join(", ")
            )
        })?;
        let tail = [Arg::Int(load), Arg::Int(id)];
        let written = match st.execute(vals.iter().map(Arg::from).chain(tail)) {
            Ok(_) => Written::Row(id),
            Err(e) if is_unique_violation(&e) => Written::Duplicate,
            Err(e) => return Err(e.into()),
        };
        match written {
            Written::Row(_) => Ok(Written::Row(id)),
            Written::Duplicate => Ok(Written::Duplicate),
        }
    }

    fn get(&mut self, table: Table, id: RowId, col: &str) -> Result<Value<'static>, StoreError> {
        let v: SqlValue = self
            .stmt(op(8, table as u8), &[col], || {
                format!("SELECT {col} FROM {} WHERE id = ?1", table_name(table))
            })?
            .query_row([id], |r| r.get(0))?;
        Ok(match v {
            SqlValue::Integer(i) => Value::Int(i),
            SqlValue::Text(s) => Value::Text(s.into()),
            _ => Value::Null,
        })
    }

    fn link(&mut self, link: Link, keys: &[Value]) -> Result<bool, StoreError> {
        let (table, cols) = link_table(link);
        let n = self
            .hot(op(5, link as u8), &[], || {
                let marks = vec!["?"; cols.len()].join(", ");
                format!(
                    "INSERT OR IGNORE INTO {table} ({}) VALUES ({marks})",
                    cols.join(", ")
                )
            })?
            .execute(keys.iter().map(Arg::from))?;
        Ok(n > 0)
    }

    fn insert_new_account(
        &mut self,
        thread_id: &str,
        cols: &[&str],
        vals: &[Value],
        email_key: Option<&str>,
        ignore_borrowers: bool,
    ) -> Result<Option<RowId>, StoreError> {
        if let Some(key) = email_key {
            if self.email_in_use(key, None, ignore_borrowers)? {
                return Ok(None);
            }
        }
        let tail = " ON CONFLICT (lender, external_id) WHERE external_id IS NOT NULL DO NOTHING";
        let table = Table::Accounts;
        match self.insert_row(op(14, table as u8), table, thread_id, cols, vals, tail)? {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(self.conn.last_insert_rowid())),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn update_in_place(
        &mut self,
        table: Table,
        kind: Option<AccountKind>,
        lender_id: &str,
        email_key: Option<Option<&str>>,
        cols: &[&str],
        vals: &[Value],
    ) -> Result<bool, StoreError> {
        self.note_email(table, cols, vals)?;
        let which =
            table as u8 | u8::from(kind.is_some()) << 2 | u8::from(email_key.is_some()) << 3;
        let (load, lender) = (self.id, self.lender);
        let st = self.hot(op(13, which), cols, || {
            let mut sets: Vec<String> = cols.iter().map(|c| format!("{c} = ?")).collect();
            sets.push("updated_load = ?".into());
            let mut wh = format!("lender = ? AND {} = ?", lender_id_column(table));
            if kind.is_some() {
                wh.push_str(" AND kind = ?");
            }
            if email_key.is_some() {
                wh.push_str(" AND email_key IS ?");
            }
            // The row by its id, found by a subquery: SQLite does not take the partial unique
            // index on the lender id for "one row", so `WHERE lender = ? AND <id> = ?` made a
            // loop that may write several rows, with a statement journal (a savepoint) per
            // execution; a rowid equality is written in one pass (bench/README.md "Issue 10,
            // fourth round").
            let t = table_name(table);
            format!(
                "UPDATE {t} SET {} WHERE id = (SELECT id FROM {t} WHERE {wh})",
                sets.join(", ")
            )
        })?;
        let tail = [Arg::Int(load), Arg::Text(lender), Arg::Text(lender_id)]
            .into_iter()
            .chain(kind.map(|k| Arg::Text(k.as_str())))
            .chain(email_key.map(Arg::from));
        // Not RETURNING: it made the statement cost more than a find and an update together.
        Ok(st.execute(vals.iter().map(Arg::from).chain(tail))? > 0)
    }

    fn link_account(
        &mut self,
        link: Link,
        owner: RowId,
        kind: AccountKind,
        external_id: &str,
        rest: &[Value],
    ) -> Result<bool, StoreError> {
        let (table, cols) = link_table(link);
        let lender = self.lender;
        let kind = kind.as_str();
        // The account is the link's second key; the rest follow it. One row of VALUES, not
        // INSERT ... SELECT: SQLite gives a statement that may write several rows its own
        // statement journal (a savepoint per execution, 5% of a relation file's store thread);
        // a missing account (or one of another kind) is a NULL, which the NOT NULL column
        // refuses and OR IGNORE skips, as it skips a link already there.
        let st = self.hot(op(12, link as u8), &[], || {
            let tail: String = (0..cols.len().saturating_sub(2))
                .map(|i| format!(", ?{}", i + 5))
                .collect();
            format!(
                "INSERT OR IGNORE INTO {table} ({}) VALUES (?1, (SELECT a.id FROM accounts a
                 WHERE a.lender = ?2 AND a.external_id = ?3 AND a.kind = ?4){tail})",
                cols.join(", ")
            )
        })?;
        let keys = [
            Arg::Int(owner),
            Arg::Text(lender),
            Arg::Text(external_id),
            Arg::Text(kind),
        ];
        Ok(st.execute(keys.into_iter().chain(rest.iter().map(Arg::from)))? > 0)
    }

    fn unlink(&mut self, link: Link, keys: &[Value]) -> Result<bool, StoreError> {
        let (table, cols) = link_table(link);
        let n = self
            .stmt(op(6, link as u8), &[], || {
                let wh: Vec<String> = cols.iter().map(|c| format!("{c} = ?")).collect();
                format!("DELETE FROM {table} WHERE {}", wh.join(" AND "))
            })?
            .execute(params_from_iter(keys.iter()))?;
        Ok(n > 0)
    }

    fn unlink_all(&mut self, link: Link, owner: RowId) -> Result<(), StoreError> {
        let (table, cols) = link_table(link);
        self.stmt(op(7, link as u8), &[], || {
            format!("DELETE FROM {table} WHERE {} = ?1", cols[0])
        })?
        .execute([owner])?;
        Ok(())
    }

    fn loan_broker(&mut self, loan: RowId) -> Result<Option<(RowId, String)>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT lb.broker_id, b.id_number FROM loan_brokers lb JOIN brokers b ON b.id = lb.broker_id
                 WHERE lb.loan_id = ?1",
            )?
            .query_row([loan], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    fn insert_loan_broker(
        &mut self,
        loan: RowId,
        broker: RowId,
        officer: Option<RowId>,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT INTO loan_brokers (loan_id, broker_id, loan_officer_account_id) VALUES (?1, ?2, ?3)")?
            .execute(params![loan, broker, officer])?;
        Ok(())
    }

    fn set_loan_officer(&mut self, loan: RowId, officer: RowId) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE loan_brokers SET loan_officer_account_id = ?2 WHERE loan_id = ?1",
            )?
            .execute(params![loan, officer])?;
        Ok(())
    }

    fn delete_loan_broker(&mut self, loan: RowId) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM loan_brokers WHERE loan_id = ?1")?
            .execute([loan])?;
        Ok(())
    }

    // Savepoints through cached statements: `Transaction::savepoint` parses its SQL afresh
    // each time, and savepoints were a quarter of a pass's time.
    fn savepoint(&mut self) -> Result<(), StoreError> {
        self.run(OP_SAVEPOINT, "SAVEPOINT record")
    }

    fn release(&mut self) -> Result<(), StoreError> {
        self.run(OP_RELEASE, "RELEASE record")
    }

    fn rollback(&mut self) -> Result<(), StoreError> {
        self.run(OP_ROLLBACK_TO, "ROLLBACK TO record")?;
        self.run(OP_RELEASE, "RELEASE record")
    }

    fn problem(&mut self, index: u64, p: &Problem) -> Result<(), StoreError> {
        self.problems += 1;
        let (id, seq) = (self.id, self.problems);
        self.fixed(
                OP_PROBLEM,
                "INSERT INTO load_problems (load_id, seq, idx, message, field, code) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                id,
                seq,
                index as i64,
                p.message(),
                p.field,
                p.code.as_str()
            ])?;
        Ok(())
    }

    fn set_dry_run(&mut self) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE bulk_loads SET dry_run = 1 WHERE id = ?1")?
            .execute([self.id])?;
        Ok(())
    }

    fn latest_stamp(&mut self, pickup_name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT max(stamp) FROM bulk_loads WHERE lender = ?1 AND pickup_name = ?2 AND id <> ?3",
                params![self.lender, pickup_name, self.id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    fn enqueue(
        &mut self,
        event: &str,
        targets: &[(&str, String)],
        now: f64,
    ) -> Result<(), StoreError> {
        for (channel, target) in targets {
            self.conn.execute(
                "INSERT INTO outbox (msg_id, load_id, lender, event, channel, target, created_at, next_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                params![
                    format!("msg_{}", uuid::Uuid::new_v4().simple()),
                    self.id,
                    self.lender,
                    event,
                    channel,
                    target,
                    now
                ],
            )?;
        }
        Ok(())
    }

    fn complete(
        self: Box<Self>,
        ended_at: &str,
        stamp: &str,
        error_message: Option<&str>,
        c: &Counts,
    ) -> Result<RowId, StoreError> {
        self.conn.execute(
            "UPDATE bulk_loads SET ended_at = ?2, stamp = ?3, error_message = ?4,
                num_create_success = ?5, num_update_success = ?6, num_add_success = ?7,
                num_delete_success = ?8, num_create_failure = ?9, num_update_failure = ?10,
                num_add_failure = ?11, num_delete_failure = ?12, num_mode_failure = ?13
             WHERE id = ?1",
            params![
                self.id,
                ended_at,
                stamp,
                error_message,
                c.create_success,
                c.update_success,
                c.add_success,
                c.delete_success,
                c.create_failure,
                c.update_failure,
                c.add_failure,
                c.delete_failure,
                c.mode_failure
            ],
        )?;
        let id = self.id;
        // Statements are finalized before the commit (none may be running at COMMIT).
        let mut this = self;
        this.stmts.clear();
        this.hot.clear();
        this.conn.execute_batch("COMMIT")?;
        this.open = false;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statement cache's buckets follow where the column names are, its answers what they
    /// say: a set is found again, the same names from another allocation get the same text
    /// (their own entry or the first one), and no other set or op ever gets a set's statement.
    #[test]
    fn sql_cache_answers_by_the_column_names() {
        let mut c = SqlCache::default();
        let (i, t) = c.get(1, &["a", "b"], || "AB".into());
        assert_eq!(t, Some("AB"));
        let (j, t) = c.get(1, &["a", "b"], || unreachable!());
        assert_eq!((j, t), (i, None));
        let owned = [String::from("a"), String::from("b")];
        let elsewhere: Vec<&str> = owned.iter().map(String::as_str).collect();
        let (k, t) = c.get(1, &elsewhere, || "AB".into());
        assert!(t == Some("AB") || (k == i && t.is_none()));
        for (op, cols, text) in [
            (1, &["a", "c"][..], "AC"),
            (1, &["a"][..], "A"),
            (2, &["a", "b"][..], "AB2"),
        ] {
            let (n, t) = c.get(op, cols, || text.into());
            assert_eq!(t, Some(text));
            assert_ne!(n, i);
        }
    }

    /// Schema v6: the accounts' kind CHECK is comparisons (no temporary index per inserted row)
    /// and still refuses an unknown kind; a store made at v5 is migrated in place, its rows kept,
    /// and a connection opened before the migration sees the new schema.
    #[test]
    fn the_kind_check_is_comparisons_and_still_refuses_other_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite3");
        {
            // A v5 store with one account, as an older bulkload left it.
            let c = rusqlite::Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..5] {
                c.execute_batch(sql).unwrap();
            }
            c.pragma_update(None, "user_version", 5).unwrap();
            c.execute(
                "INSERT INTO accounts (lender, kind, thread_id, created_load, updated_load)
                 VALUES ('l', 'borrower', 't0', 1, 1)",
                [],
            )
            .unwrap();
        }
        let before = rusqlite::Connection::open(&path).unwrap();
        let store = SqliteStore::open(&path, StoreConfig::default()).unwrap();
        let c = store.connection();
        let sql: String = c
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'accounts'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            sql.contains(
                "CHECK (kind = 'employee' OR kind = 'borrower' OR kind = 'broker_account')"
            ),
            "{sql}"
        );
        let ok: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        let plan: Vec<String> = c
            .prepare("EXPLAIN INSERT INTO accounts (lender, kind, thread_id, created_load, updated_load) VALUES (?1, ?2, ?3, 1, 1)")
            .unwrap()
            .query_map(params!["l", "borrower", "t"], |r| r.get::<_, String>(1))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert!(plan.iter().any(|op| op == "Insert"), "{plan:?}");
        assert!(plan.iter().all(|op| op != "OpenEphemeral"), "{plan:?}");
        for (kind, ok) in [
            ("employee", true),
            ("borrower", true),
            ("broker_account", true),
            ("lender", false),
            ("Borrower", false),
        ] {
            let r = c.execute(
                "INSERT INTO accounts (lender, kind, thread_id, created_load, updated_load) VALUES ('l', ?1, ?2, 1, 1)",
                params![kind, format!("t-{kind}")],
            );
            assert_eq!(r.is_ok(), ok, "{kind}: {r:?}");
        }
        // The connection opened before the migration reads the new schema too.
        let r = before.execute(
            "INSERT INTO accounts (lender, kind, thread_id, created_load, updated_load) VALUES ('l', 'x', 't-x', 1, 1)",
            [],
        );
        assert!(r.is_err());
        let n: i64 = c
            .query_row("SELECT count(*) FROM accounts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 4);
    }

    /// Several connections opening a new store at once (a daemon's first pass, an API request,
    /// `bulkload run`): each must find it migrated once, none may run a migration twice.
    #[test]
    fn concurrent_opens_of_a_new_store_migrate_it_once() {
        for round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("s{round}.sqlite3"));
            let barrier = std::sync::Barrier::new(8);
            std::thread::scope(|s| {
                let opened: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            SqliteStore::open(&path, StoreConfig::default()).map(|_| ())
                        })
                    })
                    .collect();
                for o in opened {
                    o.join().unwrap().unwrap();
                }
            });
            let store = SqliteStore::open(&path, StoreConfig::default()).unwrap();
            let v: i64 = store
                .connection()
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(v, MIGRATIONS.len() as i64);
        }
    }
}
