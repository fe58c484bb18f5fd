//! Store: one SQLite database per environment (all lenders), behind a narrow interface.
//!
//! Owns: opening (WAL, foreign keys, synchronous as configured), embedded migrations keyed by
//! `PRAGMA user_version`, the `bulk_loads` bookkeeping that makes a file exactly-once, and applying
//! validated records (`apply`). The batch engine talks to it only through `Store` and `LoadTx`:
//! begin a load, apply records, note problems, complete (one commit), then finish.
//! Must not: read pickup files, write result files or move files; log record contents.

mod apply;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;

use crate::config::{Lender, StoreConfig, Synchronous};
use crate::records::{Kind, Record, Ref};
use crate::result::Counts;

pub use apply::Outcome;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("store {path} has schema version {found}, newer than this bulkload knows ({known}); upgrade bulkload")]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// Embedded migrations; the n-th brings the schema to version n+1.
const MIGRATIONS: &[&str] = &[include_str!("schema_v1.sql")];

pub struct Store {
    conn: Connection,
}

/// A load as `bulk_loads` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadRow {
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
}

/// Why a record was not applied: the lender's problem, or the store's.
#[derive(Debug)]
pub enum ApplyError {
    /// Precise messages for the result file.
    Rejected(Vec<String>),
    /// The store failed (disk full, I/O): the file's transaction must be abandoned.
    Store(rusqlite::Error),
}

impl From<rusqlite::Error> for ApplyError {
    fn from(e: rusqlite::Error) -> Self {
        ApplyError::Store(e)
    }
}

const LOAD_COLUMNS: &str = "id, lender, pickup_name, claim, source, started_at, ended_at, stamp, error_message, \
     num_create_success, num_update_success, num_add_success, num_delete_success, \
     num_create_failure, num_update_failure, num_add_failure, num_delete_failure, num_mode_failure, state";

fn load_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LoadRow> {
    Ok(LoadRow {
        id: r.get(0)?,
        lender: r.get(1)?,
        pickup_name: r.get(2)?,
        claim: r.get(3)?,
        source: r.get(4)?,
        started_at: r.get(5)?,
        ended_at: r.get(6)?,
        stamp: r.get(7)?,
        error_message: r.get(8)?,
        counts: Counts {
            create_success: r.get(9)?,
            update_success: r.get(10)?,
            add_success: r.get(11)?,
            delete_success: r.get(12)?,
            create_failure: r.get(13)?,
            update_failure: r.get(14)?,
            add_failure: r.get(15)?,
            delete_failure: r.get(16)?,
            mode_failure: r.get(17)?,
        },
        finished: r.get::<_, String>(18)? == "finished",
    })
}

impl Store {
    /// Opens (creating when missing) and migrates the store at `path`.
    pub fn open(path: &Path, cfg: StoreConfig) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
        }
        let mut conn = Connection::open(path).map_err(open_err)?;
        let sync = match cfg.synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        let cache_kib = cfg.cache_mib.max(1) * 1024;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = {sync};
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 10000;
             PRAGMA cache_size = -{cache_kib};
             PRAGMA temp_store = MEMORY;"
        ))
        .map_err(open_err)?;
        conn.set_prepared_statement_cache_capacity(128);
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                path: path.display().to_string(),
                found: version,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(open_err)?;
            tx.execute_batch(sql).map_err(open_err)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)
                .map_err(open_err)?;
            tx.commit().map_err(open_err)?;
        }
        Ok(Store { conn })
    }

    /// Starts the one transaction that will hold a file's records and its `bulk_loads` row.
    pub fn begin<'s>(
        &'s mut self,
        lender: &'s Lender,
        pickup_name: &str,
        claim: &str,
        started_at: &str,
    ) -> Result<LoadTx<'s>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO bulk_loads (lender, pickup_name, claim, started_at, ended_at, stamp, state)
             VALUES (?1, ?2, ?3, ?4, ?4, '', 'applied')",
            params![lender.id, pickup_name, claim, started_at],
        )?;
        let id = tx.last_insert_rowid();
        Ok(LoadTx {
            tx,
            lender,
            id,
            problems: 0,
        })
    }

    pub fn load_by_claim(&self, claim: &str) -> Result<Option<LoadRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {LOAD_COLUMNS} FROM bulk_loads WHERE claim = ?1"),
                [claim],
                load_row,
            )
            .optional()?)
    }

    pub fn load(&self, id: i64) -> Result<Option<LoadRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {LOAD_COLUMNS} FROM bulk_loads WHERE id = ?1"),
                [id],
                load_row,
            )
            .optional()?)
    }

    /// Loads of a lender whose result file or processed move may be missing.
    pub fn unfinished(&self, lender: &str) -> Result<Vec<LoadRow>, StoreError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {LOAD_COLUMNS} FROM bulk_loads WHERE state = 'applied' AND lender = ?1 ORDER BY id"
        ))?;
        let rows = st.query_map([lender], load_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The stamp of the newest load of the same supplied name before `id`: the timestamped name
    /// the current `.last` file gets when this load's file takes its place.
    pub fn previous_stamp(
        &self,
        lender: &str,
        pickup_name: &str,
        id: i64,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT stamp FROM bulk_loads WHERE lender = ?1 AND pickup_name = ?2 AND id < ?3
                 ORDER BY id DESC LIMIT 1",
                params![lender, pickup_name, id],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn mark_finished(&self, id: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE bulk_loads SET state = 'finished' WHERE id = ?1",
            [id],
        )?;
        Ok(())
    }

    /// Calls `f(index, message)` for each problem of a load, in order.
    pub fn for_each_problem(
        &self,
        id: i64,
        f: &mut dyn FnMut(i64, &str) -> std::io::Result<()>,
    ) -> Result<(), std::io::Error> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT idx, message FROM load_problems WHERE load_id = ?1 ORDER BY seq",
            )
            .map_err(std::io::Error::other)?;
        let mut rows = st.query([id]).map_err(std::io::Error::other)?;
        while let Some(r) = rows.next().map_err(std::io::Error::other)? {
            let idx: i64 = r.get(0).map_err(std::io::Error::other)?;
            let msg: String = r.get(1).map_err(std::io::Error::other)?;
            f(idx, &msg)?;
        }
        Ok(())
    }

    /// Read access for tests and tools (`bulkload` never writes through it).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// One file's transaction. Dropping it without `complete` rolls everything back.
pub struct LoadTx<'s> {
    tx: rusqlite::Transaction<'s>,
    lender: &'s Lender,
    id: i64,
    problems: i64,
}

impl LoadTx<'_> {
    /// The `bulk_loads` id this file will have (its result's `Id`).
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Applies one record atomically (a savepoint): all of it or none of it.
    /// A record that writes with a single statement needs no savepoint (SQLite makes each
    /// statement atomic; see `apply::single_write`); the others get one, through cached
    /// statements (`Transaction::savepoint` parses its SQL afresh each time). Savepoints were a
    /// quarter of a pass's time.
    pub fn apply(&mut self, record: &Record) -> Result<Outcome, ApplyError> {
        if apply::single_write(record) {
            return apply::Applier {
                conn: &self.tx,
                lender: self.lender,
                load_id: self.id,
            }
            .apply(record);
        }
        let run = |sql: &str| self.tx.prepare_cached(sql)?.execute([]).map(drop);
        run("SAVEPOINT record")?;
        let out = apply::Applier {
            conn: &self.tx,
            lender: self.lender,
            load_id: self.id,
        }
        .apply(record);
        match out {
            Ok(o) => {
                run("RELEASE record")?;
                Ok(o)
            }
            Err(e) => {
                let undone = run("ROLLBACK TO record").and_then(|_| run("RELEASE record"));
                match (e, undone) {
                    // A store failure is reported as such even if the undo failed too.
                    (e @ ApplyError::Store(_), _) => Err(e),
                    (_, Err(u)) => Err(u.into()),
                    (e, Ok(())) => Err(e),
                }
            }
        }
    }

    /// Whether the record an upsert names exists (to count its failure as create or update).
    pub fn exists(&mut self, kind: Kind, identity: &Ref) -> Result<bool, StoreError> {
        Ok(apply::Applier {
            conn: &self.tx,
            lender: self.lender,
            load_id: self.id,
        }
        .exists(kind, identity)?)
    }

    pub fn problem(&mut self, index: u64, message: &str) -> Result<(), StoreError> {
        self.problems += 1;
        self.tx
            .prepare_cached(
                "INSERT INTO load_problems (load_id, seq, idx, message) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![self.id, self.problems, index as i64, message])?;
        Ok(())
    }

    /// Records the outcome and commits: from here on the file counts as applied.
    pub fn complete(
        self,
        ended_at: &str,
        stamp: &str,
        error_message: Option<&str>,
        c: &Counts,
    ) -> Result<i64, StoreError> {
        self.tx.execute(
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
        self.tx.commit()?;
        Ok(self.id)
    }

    /// The newest stamp used for this supplied name, so a new one can be made strictly later.
    pub fn latest_stamp(&self, pickup_name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .tx
            .query_row(
                "SELECT max(stamp) FROM bulk_loads WHERE lender = ?1 AND pickup_name = ?2 AND id <> ?3",
                params![self.lender.id, pickup_name, self.id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }
}
