//! Helpers shared by the end-to-end tests: a fresh data dir with a config, running the real
//! binary, and a normalised snapshot of everything a pass produces (result files, folder
//! listings, store contents) so runs can be compared.
#![allow(dead_code)]

use rusqlite::Connection;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Which store a test's daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];
}

/// A PostgreSQL server for the tests: `BULKLOAD_TEST_PG_URL` (a URL whose user may create
/// databases), else a throwaway cluster this test process starts (initdb + pg_ctl in a temp
/// folder, as the `postgres` user when running as root; stopped when the process exits). A
/// missing PostgreSQL is a failure, never a skip: CI installs it.
pub fn pg_server() -> String {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| match std::env::var("BULKLOAD_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => start_cluster(),
    })
    .clone()
}

/// The folder holding initdb and pg_ctl: Debian's newest `/usr/lib/postgresql/<ver>/bin`,
/// else the PATH.
fn pg_bin(tool: &str) -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                    Some((v, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    match versions.pop() {
        Some((_, dir)) if dir.join(tool).exists() => dir.join(tool),
        _ => PathBuf::from(tool),
    }
}

static CLUSTER: std::sync::Mutex<Option<(PathBuf, bool)>> = std::sync::Mutex::new(None);

extern "C" fn stop_cluster() {
    if let Some((dir, as_postgres)) = CLUSTER.lock().ok().and_then(|mut g| g.take()) {
        let _ = pg_command(as_postgres, &pg_bin("pg_ctl"))
            .arg("-D")
            .arg(dir.join("db"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = fs::remove_dir_all(&dir);
    }
}

fn pg_command(as_postgres: bool, tool: &Path) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(tool);
        c
    } else {
        Command::new(tool)
    }
}

fn start_cluster() -> String {
    let as_postgres = unsafe { libc::geteuid() } == 0;
    let dir = std::env::temp_dir().join(format!("bulkload-test-pg-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    if as_postgres {
        let ok = Command::new("chown")
            .args(["postgres:", dir.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(
            ok.success(),
            "chown of {} to postgres failed",
            dir.display()
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = pg_command(as_postgres, &pg_bin("initdb"))
        .arg("-D")
        .arg(dir.join("db"))
        .args([
            "-A",
            "trust",
            "-U",
            "bulkload",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("initdb not runnable (is PostgreSQL installed? .ci/run installs it): {e}")
        });
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    *CLUSTER.lock().unwrap() = Some((dir.clone(), as_postgres));
    unsafe { libc::atexit(stop_cluster) };
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
        dir.display()
    );
    let out = pg_command(as_postgres, &pg_bin("pg_ctl"))
        .arg("-D")
        .arg(dir.join("db"))
        .args(["-o", &opts, "-l"])
        .arg(dir.join("log"))
        .args(["-w", "start"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_ctl start failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        fs::read_to_string(dir.join("log")).unwrap_or_default()
    );
    format!("postgres://bulkload@127.0.0.1:{port}/postgres")
}

/// A fresh, empty database on the test server; its URL.
pub fn pg_database() -> String {
    let server = pg_server();
    let mut c = postgres::Client::connect(&server, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL {server}: {e}"));
    let name = format!("t_{}", uuid_hex());
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let base = server.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

fn uuid_hex() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let c = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{:x}_{}_{c}", n, std::process::id())
}

/// The `[store] url` of the home whose data folder is `data` (its config.toml beside it).
pub fn home_pg_url(data: &Path) -> Option<String> {
    let text = fs::read_to_string(data.parent()?.join("config.toml")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("url = \"postgres://"))
        .map(|rest| format!("postgres://{}", rest.trim_end_matches('"')))
}

/// `sftp -b <batch>` as `user` on 127.0.0.1:`port`, logging in with `key` alone and taking the
/// server's host key unchecked; `extra` options (`-o` pairs) go before the login.
pub fn sftp_key_batch(batch: &Path, key: &Path, port: u16, user: &str, extra: &[&str]) -> Command {
    let mut c = Command::new("sftp");
    c.arg("-b")
        .arg(batch)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .args(extra)
        .arg("-i")
        .arg(key)
        .args(["-P", &port.to_string()])
        .arg(format!("{user}@127.0.0.1"))
        .stdin(std::process::Stdio::null());
    c
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bulkload"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary home: `dir/config.toml` (from `config_src`, with `data_dir` pointed at
/// `dir/data`) and `dir/data`.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub data: PathBuf,
}

impl Home {
    pub fn new(config_src: &Path) -> Home {
        Home::with_backend(config_src, Backend::Sqlite)
    }

    /// A home whose store is `backend` (PostgreSQL: a fresh database, `[store] url` appended).
    pub fn with_backend(config_src: &Path, backend: Backend) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let text = fs::read_to_string(config_src).unwrap();
        let text = text
            .lines()
            .map(|l| {
                if l.starts_with("data_dir") {
                    format!("data_dir = {:?}", data.display().to_string())
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let text = match backend {
            Backend::Sqlite => text,
            Backend::Postgres => format!(
                "{text}\n\n[store]\nurl = \"{}\"\nlease_seconds = 2\nparallel_lenders = 1\n",
                pg_database()
            ),
        };
        let config = dir.path().join("config.toml");
        fs::write(&config, text).unwrap();
        Home { dir, config, data }
    }

    pub fn import(&self, lender: &str, env: &str) -> PathBuf {
        self.data
            .join("lenders")
            .join(lender)
            .join(env)
            .join("import")
    }

    pub fn pickup(&self, lender: &str, env: &str) -> PathBuf {
        let p = self.import(lender, env).join("pickup");
        fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn run_command(&self) -> Command {
        let mut c = Command::new(bin());
        c.arg("run")
            .arg("--config")
            .arg(&self.config)
            .arg("--settle-seconds")
            .arg("0");
        c
    }

    pub fn run(&self) -> Output {
        let out = self.run_command().output().unwrap();
        assert!(
            out.status.success(),
            "bulkload run failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// Replaces every run of exactly 17 digits (a `yyyyMMddHHmmssfff` stamp) with `STAMP`.
pub fn norm_stamps(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let j = (i..b.len())
                .find(|&k| !b[k].is_ascii_digit())
                .unwrap_or(b.len());
            if j - i == 17 {
                out.push_str("STAMP");
            } else {
                out.push_str(&s[i..j]);
            }
            i = j;
        } else {
            let c = s[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// A result file with its times and stamps normalised.
pub fn norm_result(text: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
    for k in ["StartedAt", "EndedAt"] {
        let t = v[k].as_str().unwrap().to_string();
        assert!(
            t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{k} is not ISO 8601 UTC with milliseconds: {t}"
        );
        v[k] = serde_json::Value::String("TIME".into());
    }
    // A dry run's result has no processed name.
    if let Some(p) = v["ProcessedName"].as_str().map(str::to_string) {
        v["ProcessedName"] = serde_json::Value::String(norm_stamps(&p));
    }
    v
}

pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Folder listings of every lender and environment, stamps normalised.
pub fn listing(data: &Path) -> String {
    let mut out = String::new();
    for lender in names(&data.join("lenders")) {
        for env in names(&data.join("lenders").join(&lender)) {
            let import = data.join("lenders").join(&lender).join(&env).join("import");
            for loc in ["pickup", "processed", "results", "validate"] {
                let mut n: Vec<String> = names(&import.join(loc))
                    .iter()
                    .map(|s| norm_stamps(s))
                    .collect();
                n.sort();
                out.push_str(&format!("{lender}/{env}/{loc}: {}\n", n.join(" ")));
            }
        }
    }
    out
}

/// A result file's problems as (record index, message), in order.
pub fn result_problems(r: &serde_json::Value) -> Vec<(u64, String)> {
    r["Problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["Index"].as_u64().unwrap(),
                p["Message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every result file, normalised, keyed by lender/env/file name (raw), in name order.
pub fn results(data: &Path) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for lender in names(&data.join("lenders")) {
        for env in names(&data.join("lenders").join(&lender)) {
            let dir = data
                .join("lenders")
                .join(&lender)
                .join(&env)
                .join("import/results");
            for n in names(&dir) {
                let text = fs::read_to_string(dir.join(&n)).unwrap();
                // Failed-records files: JSON as is, CSV as its text.
                let v = if n.contains(".failed.") {
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
                } else {
                    norm_result(&text)
                };
                out.push((format!("{lender}/{env}/results/{n}"), v));
            }
        }
    }
    out
}

/// The tables of a store dump, in a fixed order, with the columns rows are ordered by.
const DUMP_TABLES: [(&str, &str); 13] = [
    ("bulk_loads", "id"),
    ("load_problems", "load_id, seq"),
    ("accounts", "id"),
    ("account_divisions", "account_id, division_thread_id"),
    ("brokers", "id"),
    ("broker_divisions", "broker_id, division_thread_id"),
    ("broker_contacts", "broker_id, account_id, position"),
    ("loans", "id"),
    ("loan_positions", "loan_id, account_id, position"),
    ("loan_borrowers", "loan_id, account_id"),
    ("loan_brokers", "loan_id"),
    ("loan_broker_contacts", "loan_id, account_id, position"),
    ("partners", "id"),
];

/// One table as read: column names and rows of cells (`None`: NULL).
type RawTable = (Vec<String>, Vec<Vec<Option<String>>>);

/// The table a column's row id points into (`id` itself: its own table).
fn id_table(table: &str, col: &str) -> Option<&'static str> {
    Some(match col {
        "id" => return DUMP_TABLES.iter().map(|t| t.0).find(|t| *t == table),
        "load_id" | "created_load" | "updated_load" => "bulk_loads",
        "account_id" | "owner_account_id" | "assignee_account_id" | "loan_officer_account_id" => {
            "accounts"
        }
        "broker_id" => "brokers",
        "loan_id" => "loans",
        _ => return None,
    })
}

/// Every environment's tables: `(label, tables)`. SQLite: the files in `data/db/`; PostgreSQL
/// (the home's `[store] url`): the `bulkload_<env>` schemas, labelled as the SQLite file would
/// be, so that both backends' dumps compare equal.
fn read_store(data: &Path) -> Vec<(String, HashMap<String, RawTable>)> {
    let mut out = Vec::new();
    if let Some(url) = home_pg_url(data) {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let schemas: Vec<String> = c
            .query(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bulkload\\_%' ORDER BY nspname",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        for schema in schemas {
            let env = schema.trim_start_matches("bulkload_").to_string();
            let mut tables = HashMap::new();
            for (t, order) in DUMP_TABLES {
                let rows = c
                    .query(
                        &format!("SELECT * FROM \"{schema}\".{t} ORDER BY {order}"),
                        &[],
                    )
                    .unwrap();
                let st = c
                    .prepare(&format!("SELECT * FROM \"{schema}\".{t}"))
                    .unwrap();
                let cols: Vec<String> = st.columns().iter().map(|c| c.name().to_string()).collect();
                let mut cells = Vec::new();
                for r in &rows {
                    let mut row = Vec::new();
                    for (i, col) in r.columns().iter().enumerate() {
                        use postgres::types::Type;
                        let v = match *col.type_() {
                            Type::INT8 => r.get::<_, Option<i64>>(i).map(|v| v.to_string()),
                            Type::FLOAT8 => r.get::<_, Option<f64>>(i).map(|v| v.to_string()),
                            _ => r.get::<_, Option<String>>(i),
                        };
                        row.push(v);
                    }
                    cells.push(row);
                }
                tables.insert(t.to_string(), (cols, cells));
            }
            out.push((format!("{env}.sqlite3"), tables));
        }
        return out;
    }
    for env in names(&data.join("db")) {
        if !env.ends_with(".sqlite3") {
            continue;
        }
        let conn = Connection::open(data.join("db").join(&env)).unwrap();
        let mut tables = HashMap::new();
        for (t, order) in DUMP_TABLES {
            let mut st = conn
                .prepare(&format!("SELECT * FROM {t} ORDER BY {order}"))
                .unwrap();
            let cols: Vec<String> = st.column_names().iter().map(|s| s.to_string()).collect();
            let mut rows = st.query([]).unwrap();
            let mut cells = Vec::new();
            while let Some(r) = rows.next().unwrap() {
                let mut row = Vec::new();
                for i in 0..cols.len() {
                    let v: rusqlite::types::Value = r.get(i).unwrap();
                    row.push(match v {
                        rusqlite::types::Value::Null => None,
                        rusqlite::types::Value::Integer(i) => Some(i.to_string()),
                        rusqlite::types::Value::Real(f) => Some(f.to_string()),
                        rusqlite::types::Value::Text(s) => Some(s),
                        rusqlite::types::Value::Blob(_) => Some("BLOB".into()),
                    });
                }
                cells.push(row);
            }
            tables.insert(t.to_string(), (cols, cells));
        }
        out.push((env, tables));
    }
    out
}

/// The store's contents as text: every table in a fixed order, thread ids replaced by T1, T2, ...
/// in order of first appearance, row ids by their rank in their table (so a backend whose ids
/// have gaps, PostgreSQL's sequences after a rollback, dumps the same), and load times, stamps
/// and claims normalised.
pub fn store_dump(data: &Path) -> String {
    dump(data, false)
}

/// `store_dump` with each table's rows grouped by lender (in id order within a lender): the
/// same text whatever order different lenders' loads ran in (several daemons, parallel lenders).
pub fn store_dump_by_lender(data: &Path) -> String {
    dump(data, true)
}

fn dump(data: &Path, by_lender: bool) -> String {
    let mut out = String::new();
    // Row order of link tables: mapped ids, then numbers as numbers, then text.
    type SortKey = Vec<(Option<usize>, Option<i64>, String)>;
    for (env, mut tables) in read_store(data) {
        // Order rows, then rank ids (entity tables and loads first: links refer to them).
        let mut ranks: HashMap<&str, HashMap<String, usize>> = HashMap::new();
        for (t, _) in DUMP_TABLES {
            let (cols, rows) = tables.get_mut(t).unwrap();
            let lender = cols.iter().position(|c| c == "lender");
            if let (true, Some(l), Some(idc)) =
                (by_lender, lender, cols.iter().position(|c| c == "id"))
            {
                rows.sort_by_key(|r| {
                    (
                        r[l].clone(),
                        r[idc].as_ref().and_then(|v| v.parse::<i64>().ok()),
                    )
                });
            }
            if let Some(idc) = cols.iter().position(|c| c == "id") {
                let m = ranks.entry(t).or_default();
                for r in rows.iter() {
                    if let Some(id) = &r[idc] {
                        let n = m.len() + 1;
                        m.entry(id.clone()).or_insert(n);
                    }
                }
            }
        }
        let mut tids: HashMap<String, String> = HashMap::new();
        for (t, _) in DUMP_TABLES {
            out.push_str(&format!("== {env} {t}\n"));
            let (cols, rows) = &tables[t];
            let mut lines: Vec<(SortKey, Vec<String>)> = Vec::new();
            for r in rows {
                let mut key = Vec::new();
                let mut cells = Vec::new();
                for (i, c) in cols.iter().enumerate() {
                    let raw = r[i].clone();
                    let mapped = id_table(t, c)
                        .and_then(|it| ranks.get(it))
                        .and_then(|m| raw.as_ref().and_then(|v| m.get(v)))
                        .copied();
                    key.push((
                        mapped,
                        raw.as_ref().and_then(|v| v.parse::<i64>().ok()),
                        raw.clone().unwrap_or_default(),
                    ));
                    let s = raw.unwrap_or_else(|| "NULL".into());
                    let s = match (c.as_str(), mapped) {
                        (_, Some(n)) => n.to_string(),
                        ("thread_id", _) => {
                            let n = tids.len() + 1;
                            tids.entry(s).or_insert_with(|| format!("T{n}")).clone()
                        }
                        ("started_at" | "ended_at", _) => "TIME".into(),
                        ("claim", _) => "CLAIM".into(),
                        ("stamp", _) => norm_stamps(&s),
                        _ => s,
                    };
                    cells.push(format!("{c}={s}"));
                }
                lines.push((key, cells));
            }
            // Link tables (no id of their own): in the order of their mapped keys.
            if !cols.iter().any(|c| c == "id") {
                lines.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
            }
            for (_, cells) in lines {
                out.push_str(&cells.join(" | "));
                out.push('\n');
            }
        }
    }
    out
}

/// Everything a pass produced, normalised: listings, results, store.
pub fn snapshot(data: &Path) -> String {
    let mut s = listing(data);
    for (name, v) in results(data) {
        s.push_str(&format!(
            "## {}\n{}\n",
            norm_stamps(&name),
            serde_json::to_string_pretty(&v).unwrap()
        ));
    }
    s.push_str(&store_dump(data));
    s
}

/// `snapshot` with the store grouped by lender (`store_dump_by_lender`): for runs where
/// lenders may be applied in another order (several daemons, parallel lenders, a lender whose
/// lease a killed pass held waiting until it expires).
pub fn snapshot_by_lender(data: &Path) -> String {
    let mut s = listing(data);
    for (name, v) in results(data) {
        s.push_str(&format!(
            "## {}\n{}\n",
            norm_stamps(&name),
            serde_json::to_string_pretty(&v).unwrap()
        ));
    }
    s.push_str(&store_dump_by_lender(data));
    s
}

pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
