//! The load's hot statements, bound without copying their text.
//!
//! rusqlite binds every text parameter with `SQLITE_TRANSIENT`: SQLite copies each string into
//! memory of its own (a malloc, a memcpy and a free a parameter), and checks the parameter count
//! and dispatches `ToSql` per parameter on every execution: `bind_parameters` was 16-18% of an
//! upsert file's store thread, 15.5% of a loans file's (bench/README.md "Issue 10, fourth
//! round"). A `BoundStmt` binds with `SQLITE_STATIC` instead, which is sound because every call
//! binds, steps to the end, resets and clears its bindings before it returns: SQLite never holds a
//! pointer into the caller's strings past the call that lent them.
//!
//! Owns: the `unsafe` of that (prepare, bind, step, reset, clear, finalize), behind `execute`
//! (rows changed) and `exists` (whether the statement yields a row), with SQLite's errors as
//! rusqlite's (`Error::SqliteFailure` with the extended code and message, so a unique violation
//! reads as one). Must not: return rows' contents, keep a binding past a call, or outlive the
//! connection it was prepared on (the lifetime ties it to it).

use rusqlite::{ffi, Connection};
use std::marker::PhantomData;
use std::os::raw::c_int;
use std::ptr::NonNull;

use crate::store::Value;

/// One parameter, borrowed for the call.
#[derive(Clone, Copy)]
pub(super) enum Arg<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

impl<'a> From<&'a Value<'_>> for Arg<'a> {
    fn from(v: &'a Value) -> Self {
        match v {
            Value::Null => Arg::Null,
            Value::Int(i) => Arg::Int(*i),
            Value::Text(s) => Arg::Text(s),
        }
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Text(s)
    }
}

impl From<i64> for Arg<'_> {
    fn from(i: i64) -> Self {
        Arg::Int(i)
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(s: Option<&'a str>) -> Self {
        s.map_or(Arg::Null, Arg::Text)
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(i: Option<i64>) -> Self {
        i.map_or(Arg::Null, Arg::Int)
    }
}

/// A prepared statement of one connection, run with borrowed parameters.
pub(super) struct BoundStmt<'c> {
    stmt: NonNull<ffi::sqlite3_stmt>,
    db: *mut ffi::sqlite3,
    _conn: PhantomData<&'c Connection>,
}

/// SQLite's error for `rc` on `db`, as rusqlite reports it.
fn error(db: *mut ffi::sqlite3, rc: c_int) -> rusqlite::Error {
    // SAFETY: `db` is the live connection the failing call ran on; sqlite3_errmsg returns a
    // NUL-terminated string owned by SQLite, valid until the next call on it, copied here.
    let msg = unsafe {
        let m = ffi::sqlite3_errmsg(db);
        (!m.is_null()).then(|| std::ffi::CStr::from_ptr(m).to_string_lossy().into_owned())
    };
    rusqlite::Error::SqliteFailure(ffi::Error::new(rc), msg)
}

impl<'c> BoundStmt<'c> {
    /// Prepares `sql` (one statement) on `conn`.
    pub(super) fn prepare(conn: &'c Connection, sql: &str) -> rusqlite::Result<BoundStmt<'c>> {
        let len = c_int::try_from(sql.len()).map_err(|_| {
            rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_TOOBIG), None)
        })?;
        // SAFETY: the handle is the connection's, alive for 'c; `sql` is valid for `len` bytes
        // (SQLite copies what it needs); `stmt` receives a statement we own and finalize in Drop.
        unsafe {
            let db = conn.handle();
            let mut stmt = std::ptr::null_mut();
            let rc = ffi::sqlite3_prepare_v3(
                db,
                sql.as_ptr().cast(),
                len,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                std::ptr::null_mut(),
            );
            if rc != ffi::SQLITE_OK {
                return Err(error(db, rc));
            }
            match NonNull::new(stmt) {
                Some(stmt) => Ok(BoundStmt {
                    stmt,
                    db,
                    _conn: PhantomData,
                }),
                // Only whitespace or a comment: nothing to run, a caller's mistake.
                None => Err(rusqlite::Error::InvalidQuery),
            }
        }
    }

    /// Binds `args` in order (their number must be the statement's), runs the statement to its
    /// end and answers the rows it changed.
    pub(super) fn execute<'a>(
        &mut self,
        args: impl IntoIterator<Item = Arg<'a>>,
    ) -> rusqlite::Result<usize> {
        self.run(args, false).map(|_| {
            // SAFETY: the connection is alive ('c); reads its last statement's change count.
            let n = unsafe { ffi::sqlite3_changes64(self.db) };
            usize::try_from(n).unwrap_or(0)
        })
    }

    /// Binds `args` and answers whether the statement yields a row (a query's first step).
    pub(super) fn exists<'a>(
        &mut self,
        args: impl IntoIterator<Item = Arg<'a>>,
    ) -> rusqlite::Result<bool> {
        self.run(args, true)
    }

    /// Binds, steps (once when `first_row`, else to the end), then resets and clears the
    /// bindings whatever happened: no pointer into `args` survives the call.
    fn run<'a>(
        &mut self,
        args: impl IntoIterator<Item = Arg<'a>>,
        first_row: bool,
    ) -> rusqlite::Result<bool> {
        let outcome = self.bind_and_step(args, first_row);
        // SAFETY: our live statement; reset ends the run (its error, if any, was the step's and
        // is reported from there), clear_bindings drops every borrowed pointer.
        unsafe {
            ffi::sqlite3_reset(self.stmt.as_ptr());
            ffi::sqlite3_clear_bindings(self.stmt.as_ptr());
        }
        outcome
    }

    fn bind_and_step<'a>(
        &mut self,
        args: impl IntoIterator<Item = Arg<'a>>,
        first_row: bool,
    ) -> rusqlite::Result<bool> {
        let p = self.stmt.as_ptr();
        // SAFETY: `p` is our live statement. Each text is bound SQLITE_STATIC with its length:
        // SQLite reads it in place (never past `len`, never writes it) until `run` clears the
        // bindings, before the borrow of `args` ends.
        unsafe {
            let want = ffi::sqlite3_bind_parameter_count(p);
            let mut n: c_int = 0;
            for a in args {
                n += 1;
                if n > want {
                    return Err(rusqlite::Error::InvalidParameterCount(
                        n as usize,
                        want as usize,
                    ));
                }
                let rc = match a {
                    Arg::Null => ffi::sqlite3_bind_null(p, n),
                    Arg::Int(i) => ffi::sqlite3_bind_int64(p, n, i),
                    Arg::Text(s) => match c_int::try_from(s.len()) {
                        Ok(len) => ffi::sqlite3_bind_text(
                            p,
                            n,
                            s.as_ptr().cast(),
                            len,
                            ffi::SQLITE_STATIC(),
                        ),
                        Err(_) => ffi::SQLITE_TOOBIG,
                    },
                };
                if rc != ffi::SQLITE_OK {
                    return Err(error(self.db, rc));
                }
            }
            if n != want {
                return Err(rusqlite::Error::InvalidParameterCount(
                    n as usize,
                    want as usize,
                ));
            }
            loop {
                match ffi::sqlite3_step(p) {
                    ffi::SQLITE_ROW if first_row => return Ok(true),
                    ffi::SQLITE_ROW => continue,
                    ffi::SQLITE_DONE => return Ok(false),
                    rc => return Err(error(self.db, rc)),
                }
            }
        }
    }
}

impl Drop for BoundStmt<'_> {
    fn drop(&mut self) {
        // SAFETY: the statement is ours and finalized once; the connection outlives it ('c).
        unsafe {
            ffi::sqlite3_finalize(self.stmt.as_ptr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, v TEXT, n INTEGER)",
        )
        .unwrap();
        c
    }

    #[test]
    fn binds_in_place_and_counts_changes() {
        let c = db();
        let mut ins =
            BoundStmt::prepare(&c, "INSERT INTO t (k, v, n) VALUES (?1, ?2, ?3)").unwrap();
        for i in 0..100i64 {
            // A fresh string each time, dropped right after the call: SQLite must have copied
            // what it stored, not kept the pointer.
            let k = format!("key-{i}");
            let v = if i % 2 == 0 {
                Some(format!("é{i}"))
            } else {
                None
            };
            let args = [Arg::Text(&k), v.as_deref().into(), Arg::Int(i)];
            assert_eq!(ins.execute(args).unwrap(), 1);
        }
        let mut up = BoundStmt::prepare(&c, "UPDATE t SET v = ?1 WHERE n < ?2").unwrap();
        assert_eq!(up.execute([Arg::Text(""), Arg::Int(10)]).unwrap(), 10);
        let (count, empty, text): (i64, i64, String) = c
            .query_row(
                "SELECT count(*), sum(v = ''), (SELECT v FROM t WHERE k = 'key-42') FROM t",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((count, empty, text.as_str()), (100, 10, "é42"));
        let mut ex = BoundStmt::prepare(&c, "SELECT 1 FROM t WHERE k = ?1").unwrap();
        assert!(ex.exists([Arg::Text("key-7")]).unwrap());
        assert!(!ex.exists([Arg::Text("key-700")]).unwrap());
    }

    #[test]
    fn errors_are_rusqlite_errors_and_leave_the_statement_usable() {
        let c = db();
        let mut ins = BoundStmt::prepare(&c, "INSERT INTO t (k) VALUES (?1)").unwrap();
        ins.execute([Arg::Text("a")]).unwrap();
        match ins.execute([Arg::Text("a")]) {
            Err(rusqlite::Error::SqliteFailure(e, Some(msg))) => {
                assert_eq!(e.code, rusqlite::ErrorCode::ConstraintViolation);
                assert!(msg.contains("UNIQUE"), "{msg}");
            }
            other => panic!("not a unique violation: {other:?}"),
        }
        assert!(matches!(
            ins.execute([Arg::Null]),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation
        ));
        // Too few and too many parameters are refused before the statement runs.
        assert!(matches!(
            ins.execute(std::iter::empty()),
            Err(rusqlite::Error::InvalidParameterCount(0, 1))
        ));
        assert!(matches!(
            ins.execute([Arg::Text("b"), Arg::Text("c")]),
            Err(rusqlite::Error::InvalidParameterCount(2, 1))
        ));
        assert_eq!(ins.execute([Arg::Text("b")]).unwrap(), 1);
        assert!(BoundStmt::prepare(&c, "INSERT INTO nowhere VALUES (1)").is_err());
        let n: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
    }
}
