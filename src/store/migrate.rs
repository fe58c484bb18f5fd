//! `bulkload migrate --from sqlite:PATH --to postgres://…`: moves SQLite stores into PostgreSQL.
//!
//! Owns: reading every table of a SQLite store (brought to the current schema first), copying
//! its rows with `COPY` into the environment's schema (brought to the same version) in one
//! transaction, moving the identity sequences past the copied ids, and checking the row counts.
//! Must not: touch a non-empty target (refused: nothing is merged or overwritten), or change the
//! SQLite file beyond its own migrations. Run it with the daemons stopped.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::postgres::{connect, schema_name, PgStore};
use super::sqlite::SqliteStore;
use super::StoreError;
use crate::config::{PgConfig, StoreConfig};

/// What was copied for one environment: (table, rows).
#[derive(Debug)]
pub struct Moved {
    pub env: String,
    pub tables: Vec<(String, u64)>,
}

/// The SQLite files `from` names: one file (`<env>.sqlite3`), or every `*.sqlite3` in a folder
/// (`data_dir/db`), with their environments.
pub fn sources(from: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let env_of = |p: &Path| -> Option<String> {
        let name = p.file_name()?.to_str()?;
        name.strip_suffix(".sqlite3").map(str::to_string)
    };
    if from.is_dir() {
        let mut out = Vec::new();
        let rd = std::fs::read_dir(from).map_err(|e| StoreError::Open {
            path: from.display().to_string(),
            reason: e.to_string(),
        })?;
        for e in rd.flatten() {
            if let Some(env) = env_of(&e.path()) {
                out.push((env, e.path()));
            }
        }
        out.sort();
        return Ok(out);
    }
    if !from.is_file() {
        return Err(StoreError::Open {
            path: from.display().to_string(),
            reason: "no such SQLite file or folder".into(),
        });
    }
    match env_of(from) {
        Some(env) => Ok(vec![(env, from.to_path_buf())]),
        None => Err(StoreError::Open {
            path: from.display().to_string(),
            reason: "expected <environment>.sqlite3 (or give --environment)".into(),
        }),
    }
}

/// Copies the SQLite store at `path` into environment `env`'s schema.
pub fn migrate(path: &Path, pg: &PgConfig, env: &str) -> Result<Moved, StoreError> {
    let sqlite = SqliteStore::open(path, StoreConfig::default())?;
    let src = sqlite.connection();
    // The target schema at the current version, and empty.
    drop(PgStore::open(pg, env)?);
    let schema = schema_name(env);
    let mut client = connect(pg)?;
    let be = |e: postgres::Error| StoreError::Backend(e.to_string());
    let sq = |e: rusqlite::Error| StoreError::Backend(e.to_string());
    let mut tx = client.transaction().map_err(be)?;
    tx.batch_execute(&format!("SET LOCAL search_path TO \"{schema}\""))
        .map_err(be)?;
    let used: i64 = tx
        .query_one("SELECT count(*) FROM bulk_loads", &[])
        .map_err(be)?
        .get(0);
    if used > 0 {
        return Err(StoreError::Backend(format!(
            "schema {schema} already holds {used} loads; migrate only into an empty store"
        )));
    }
    // Tables in creation order: every table after those it refers to.
    let tables: Vec<String> = {
        let mut st = src
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
            )
            .map_err(sq)?;
        let rows = st.query_map([], |r| r.get::<_, String>(0)).map_err(sq)?;
        rows.collect::<Result<_, _>>().map_err(sq)?
    };
    let mut moved = Moved {
        env: env.to_string(),
        tables: Vec::new(),
    };
    for table in tables {
        let cols: Vec<String> = tx
            .query(
                "SELECT column_name::text FROM information_schema.columns
                 WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                &[&schema, &table],
            )
            .map_err(be)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if cols.is_empty() {
            return Err(StoreError::Backend(format!(
                "table {table} of the SQLite store has no counterpart in PostgreSQL (is this bulkload older than the store?)"
            )));
        }
        let list = cols.join(", ");
        let mut st = src
            .prepare(&format!("SELECT {list} FROM {table}"))
            .map_err(sq)?;
        let mut rows = st.query([]).map_err(sq)?;
        let mut w = tx
            .copy_in(&format!("COPY {table} ({list}) FROM STDIN"))
            .map_err(be)?;
        let mut n = 0u64;
        let mut line = String::new();
        while let Some(r) = rows.next().map_err(sq)? {
            line.clear();
            for i in 0..cols.len() {
                if i > 0 {
                    line.push('\t');
                }
                use rusqlite::types::ValueRef;
                match r.get_ref(i).map_err(sq)? {
                    ValueRef::Null => line.push_str("\\N"),
                    ValueRef::Integer(v) => line.push_str(&v.to_string()),
                    ValueRef::Real(v) => line.push_str(&v.to_string()),
                    ValueRef::Text(t) => escape(&String::from_utf8_lossy(t), &mut line),
                    ValueRef::Blob(_) => {
                        return Err(StoreError::Backend(format!(
                            "table {table}: a BLOB value, which no bulkload table holds"
                        )))
                    }
                }
            }
            line.push('\n');
            w.write_all(line.as_bytes())
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            n += 1;
        }
        w.finish().map_err(be)?;
        // Identity columns continue after the copied ids.
        if cols.iter().any(|c| c == "id") {
            tx.execute(
                &format!(
                    "SELECT setval(s, (SELECT coalesce(max(id), 0) + 1 FROM {table}), false)
                     FROM pg_get_serial_sequence('{table}', 'id') s WHERE s IS NOT NULL"
                ),
                &[],
            )
            .map_err(be)?;
        }
        let there: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .map_err(be)?
            .get(0);
        if there as u64 != n {
            return Err(StoreError::Backend(format!(
                "table {table}: copied {n} rows but {there} arrived"
            )));
        }
        moved.tables.push((table, n));
    }
    tx.commit().map_err(be)?;
    Ok(moved)
}

/// COPY's text format: backslash, tab, newline and carriage return escaped.
fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_text_escapes() {
        let mut s = String::new();
        super::escape("a\\b\tc\nd\re", &mut s);
        assert_eq!(s, "a\\\\b\\tc\\nd\\re");
    }
}
