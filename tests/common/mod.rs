//! Helpers shared by the end-to-end tests: a fresh data dir with a config, running the real
//! binary, and a normalised snapshot of everything a pass produces (result files, folder
//! listings, store contents) so runs can be compared.
#![allow(dead_code)]

use rusqlite::Connection;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// The store's contents as text: every table in a fixed order, thread ids replaced by T1, T2, ...
/// in order of first appearance, and load times, stamps and claims normalised.
pub fn store_dump(data: &Path) -> String {
    let mut out = String::new();
    for env in names(&data.join("db")) {
        if !env.ends_with(".sqlite3") {
            continue;
        }
        let conn = Connection::open(data.join("db").join(&env)).unwrap();
        let mut tids: HashMap<String, String> = HashMap::new();
        let tables = [
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
        for (t, order) in tables {
            out.push_str(&format!("== {env} {t}\n"));
            let mut st = conn
                .prepare(&format!("SELECT * FROM {t} ORDER BY {order}"))
                .unwrap();
            let cols: Vec<String> = st.column_names().iter().map(|s| s.to_string()).collect();
            let mut rows = st.query([]).unwrap();
            while let Some(r) = rows.next().unwrap() {
                let mut cells = Vec::new();
                for (i, c) in cols.iter().enumerate() {
                    let v: rusqlite::types::Value = r.get(i).unwrap();
                    let s = match v {
                        rusqlite::types::Value::Null => "NULL".to_string(),
                        rusqlite::types::Value::Integer(i) => i.to_string(),
                        rusqlite::types::Value::Real(f) => f.to_string(),
                        rusqlite::types::Value::Text(s) => s,
                        rusqlite::types::Value::Blob(_) => "BLOB".into(),
                    };
                    let s = match c.as_str() {
                        "thread_id" => {
                            let n = tids.len() + 1;
                            tids.entry(s).or_insert_with(|| format!("T{n}")).clone()
                        }
                        "started_at" | "ended_at" => "TIME".into(),
                        "claim" => "CLAIM".into(),
                        "stamp" => norm_stamps(&s),
                        _ => s,
                    };
                    cells.push(format!("{c}={s}"));
                }
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

pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
