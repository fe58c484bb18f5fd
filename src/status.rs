//! `bulkload status` and `bulkload config check`.
//!
//! Owns: what waits in pickup/ (count, oldest age), the last load per lender and environment,
//! notifications not delivered yet, the next scheduled pass, whether a process holds the pass
//! lock; the warnings of `config check` (what will surprise later).
//! Must not: write anything: status opens the stores read-only and never takes the pass lock
//! for longer than a try.

use std::fs::{self, File};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::config::Config;
use crate::layout;

/// Files waiting in one pickup folder.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Waiting {
    pub files: u64,
    pub oldest_age_seconds: Option<u64>,
}

/// Counts the pickup files a pass would consider (ignored names and folders left out).
pub fn waiting(cfg: &Config, env: &str, lender: &str) -> Waiting {
    let dir = layout::lender_dirs(&cfg.data_dir, lender, env).pickup;
    let mut w = Waiting::default();
    let Ok(entries) = fs::read_dir(&dir) else {
        return w;
    };
    let now = SystemTime::now();
    for e in entries.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if layout::is_ignored_name(&name) {
            continue;
        }
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            continue;
        }
        w.files += 1;
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or(Duration::ZERO)
            .as_secs();
        w.oldest_age_seconds = Some(w.oldest_age_seconds.map_or(age, |o| o.max(age)));
    }
    w
}

#[derive(Debug, Serialize)]
pub struct LastLoad {
    pub id: i64,
    pub pickup_name: String,
    pub ended_at: String,
    pub finished: bool,
    pub counts: serde_json::Map<String, serde_json::Value>,
    pub error_message: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LenderStatus {
    pub environment: String,
    pub lender: String,
    pub waiting: Waiting,
    pub last_load: Option<LastLoad>,
    pub pending_notifications: i64,
    /// Quotas (issue 11): each limit with what is used and left (empty without limits).
    pub quotas: Vec<crate::quota::Window>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub next_pass: Option<String>,
    pub pass_lock_held: bool,
    pub lenders: Vec<LenderStatus>,
    /// Stores that could not be read (missing stores are not listed: nothing ran yet).
    pub errors: Vec<String>,
}

/// The next time `[schedule] cron` fires after `after`, if ever.
pub fn next_pass(cron: &str, after: chrono::DateTime<chrono::Utc>) -> Option<String> {
    let c = crate::config::parse_cron(cron).ok()?;
    use chrono::Timelike;
    let after = after.with_nanosecond(0).unwrap_or(after);
    c.find_next_occurrence(&after, false)
        .ok()
        .map(crate::result::iso)
}

/// Whether another process holds `data_dir/pass.lock` (a pass is running).
pub fn pass_lock_held(data_dir: &Path) -> bool {
    let Ok(f) = File::options()
        .read(true)
        .write(true)
        .open(layout::pass_lock_path(data_dir))
    else {
        return false;
    };
    matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

pub fn collect(cfg: &Config) -> Status {
    let mut lenders = Vec::new();
    let mut errors = Vec::new();
    for env in &cfg.environments {
        if cfg.store.postgres.is_some() {
            collect_shared(cfg, env, &mut lenders, &mut errors);
            continue;
        }
        let path = layout::store_path(&cfg.data_dir, env);
        let conn = if path.exists() {
            match rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            ) {
                Ok(c) => Some(c),
                Err(e) => {
                    errors.push(format!("store {}: {e}", path.display()));
                    None
                }
            }
        } else {
            None
        };
        for l in &cfg.lenders {
            let (last_load, pending) = match &conn {
                Some(c) => read_store(c, &l.id).unwrap_or_else(|e| {
                    errors.push(format!("store {}: {e}", path.display()));
                    (None, 0)
                }),
                None => (None, 0),
            };
            let quotas = match &conn {
                Some(c) => crate::quota::quotas_with(l, chrono::Utc::now(), &mut |since| {
                    Ok(crate::store::sqlite::records_submitted_since(c, &l.id, since).unwrap_or(0))
                })
                .map(|q| q.windows)
                .unwrap_or_default(),
                None => crate::quota::quotas_with(l, chrono::Utc::now(), &mut |_| Ok(0))
                    .map(|q| q.windows)
                    .unwrap_or_default(),
            };
            lenders.push(LenderStatus {
                environment: env.clone(),
                lender: l.id.clone(),
                waiting: waiting(cfg, env, &l.id),
                last_load,
                pending_notifications: pending,
                quotas,
            });
        }
    }
    Status {
        next_pass: next_pass(&cfg.schedule.cron, chrono::Utc::now()),
        pass_lock_held: pass_lock_held(&cfg.data_dir),
        lenders,
        errors,
    }
}

/// One environment of a PostgreSQL store (issue 14), read through the store's own queries
/// (opening it brings its schema to the current version, as any daemon would).
fn collect_shared(
    cfg: &Config,
    env: &str,
    lenders: &mut Vec<LenderStatus>,
    errors: &mut Vec<String>,
) {
    let store = crate::store::open_env(cfg, env)
        .map_err(|e| errors.push(e.to_string()))
        .ok();
    for l in &cfg.lenders {
        let read = || -> Result<(Option<LastLoad>, i64), crate::store::StoreError> {
            let Some(st) = &store else {
                return Ok((None, 0));
            };
            let last = st.last_load(&l.id)?.map(|r| LastLoad {
                id: r.id,
                pickup_name: r.pickup_name,
                ended_at: r.ended_at,
                finished: r.finished,
                counts: r
                    .counts
                    .named()
                    .iter()
                    .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                    .collect(),
                error_message: r.error_message,
            });
            Ok((last, st.pending_deliveries(&l.id)?))
        };
        let (last_load, pending) = read().unwrap_or_else(|e| {
            errors.push(e.to_string());
            (None, 0)
        });
        let quotas = crate::quota::quotas_with(l, chrono::Utc::now(), &mut |since| match &store {
            Some(st) => st.records_submitted_since(&l.id, since),
            None => Ok(0),
        })
        .map(|q| q.windows)
        .unwrap_or_default();
        lenders.push(LenderStatus {
            environment: env.to_string(),
            lender: l.id.clone(),
            waiting: waiting(cfg, env, &l.id),
            last_load,
            pending_notifications: pending,
            quotas,
        });
    }
}

fn read_store(c: &rusqlite::Connection, lender: &str) -> rusqlite::Result<(Option<LastLoad>, i64)> {
    use rusqlite::OptionalExtension;
    let last = c
        .query_row(
            "SELECT number, pickup_name, ended_at, state, error_message,
                    num_create_success, num_update_success, num_add_success, num_delete_success,
                    num_create_failure, num_update_failure, num_add_failure, num_delete_failure,
                    num_mode_failure
             FROM bulk_loads WHERE lender = ?1 ORDER BY id DESC LIMIT 1",
            [lender],
            |r| {
                let c = crate::result::Counts {
                    create_success: r.get(5)?,
                    update_success: r.get(6)?,
                    add_success: r.get(7)?,
                    delete_success: r.get(8)?,
                    create_failure: r.get(9)?,
                    update_failure: r.get(10)?,
                    add_failure: r.get(11)?,
                    delete_failure: r.get(12)?,
                    mode_failure: r.get(13)?,
                };
                Ok(LastLoad {
                    id: r.get(0)?,
                    pickup_name: r.get(1)?,
                    ended_at: r.get(2)?,
                    finished: r.get::<_, String>(3)? == "finished",
                    error_message: r.get(4)?,
                    counts: c
                        .named()
                        .iter()
                        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                        .collect(),
                })
            },
        )
        .optional()?;
    // A store from before the outbox has no such table: nothing pending.
    let pending = c
        .query_row(
            "SELECT count(*) FROM outbox WHERE lender = ?1 AND state = 'pending'",
            [lender],
            |r| r.get(0),
        )
        .unwrap_or(0);
    Ok((last, pending))
}

fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// The human table.
pub fn render_table(s: &Status) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "next scheduled pass: {}\npass running (lock held): {}\n\n",
        s.next_pass.as_deref().unwrap_or("never"),
        if s.pass_lock_held { "yes" } else { "no" }
    ));
    let header = [
        "ENV",
        "LENDER",
        "WAITING",
        "OLDEST",
        "LAST LOAD",
        "ENDED",
        "OK",
        "FAILED",
        "ERROR",
        "NOTIFY",
        "QUOTA LEFT",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for l in &s.lenders {
        let (id, ended, ok, failed, err) = match &l.last_load {
            Some(ll) => {
                let n = |k: &str| ll.counts.get(k).and_then(|v| v.as_i64()).unwrap_or(0);
                let ok = n("NumCreateSuccess")
                    + n("NumUpdateSuccess")
                    + n("NumAddSuccess")
                    + n("NumDeleteSuccess");
                let failed = n("NumCreateFailure")
                    + n("NumUpdateFailure")
                    + n("NumAddFailure")
                    + n("NumDeleteFailure")
                    + n("NumModeFailure");
                (
                    format!("{} {}", ll.id, ll.pickup_name),
                    ll.ended_at.clone(),
                    ok.to_string(),
                    failed.to_string(),
                    ll.error_message.clone().unwrap_or_else(|| "-".into()),
                )
            }
            None => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into()),
        };
        rows.push(vec![
            l.environment.clone(),
            l.lender.clone(),
            l.waiting.files.to_string(),
            l.waiting
                .oldest_age_seconds
                .map(age)
                .unwrap_or_else(|| "-".into()),
            id,
            ended,
            ok,
            failed,
            err,
            if l.pending_notifications > 0 {
                format!("{} pending", l.pending_notifications)
            } else {
                "-".into()
            },
            if l.quotas.is_empty() {
                "-".into()
            } else {
                l.quotas
                    .iter()
                    .map(|w| {
                        let what = if w.name.starts_with("daily") {
                            "day"
                        } else {
                            "month"
                        };
                        format!("{what} {}/{}", w.remaining, w.limit)
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for e in &s.errors {
        out.push_str(&format!("error: {e}\n"));
    }
    out
}

/// What `bulkload config check` warns about: valid, but likely to surprise later.
pub fn config_warnings(cfg: &Config) -> Vec<String> {
    let mut w = Vec::new();
    for l in &cfg.lenders {
        if l.password_hash.is_none() && l.authorized_keys.is_none() {
            w.push(format!(
                "lender {:?} has neither password_hash nor authorized_keys: it cannot log in",
                l.id
            ));
        }
        if let Some(k) = &l.authorized_keys {
            if !k.exists() {
                w.push(format!(
                    "lender {:?}: authorized_keys file {} does not exist: its key logins will fail",
                    l.id,
                    k.display()
                ));
            }
        }
        for h in &l.webhooks {
            if h.url.starts_with("http://") {
                w.push(format!(
                    "lender {:?}: webhook {} is plain http: events travel unencrypted",
                    l.id, h.url
                ));
            }
        }
    }
    let s = &cfg.schedule;
    if s.on_upload && s.settle_seconds as f64 > s.on_upload_delay_seconds {
        w.push(format!(
            "[schedule] settle_seconds ({}) is longer than on_upload_delay_seconds ({}): files placed by means other than SFTP wait for a later pass",
            s.settle_seconds, s.on_upload_delay_seconds
        ));
    }
    if next_pass(&s.cron, chrono::Utc::now()).is_none() {
        w.push(format!(
            "[schedule] cron {:?} never fires: passes run only at start{}",
            s.cron,
            if s.on_upload {
                " and after uploads"
            } else {
                ""
            }
        ));
    }
    if let Some(smtp) = &cfg.smtp {
        if smtp.tls == crate::config::SmtpTls::None && smtp.username.is_some() {
            w.push(
                "[smtp] tls = \"none\" with a username: the password travels unencrypted".into(),
            );
        }
        if let Some(p) = &smtp.password_file {
            if !p.exists() {
                w.push(format!(
                    "[smtp] password_file {} does not exist",
                    p.display()
                ));
            }
        }
    }
    let r = &cfg.retention;
    if r.results_days != 0 && r.problems_days != 0 && r.results_days < r.problems_days {
        w.push(format!(
            "[retention] results_days ({}) is shorter than problems_days ({}): problems are kept with no result file to show them",
            r.results_days, r.problems_days
        ));
    }
    w
}

/// Whether the data folder can be written: creates it when missing, and a file in it.
pub fn check_data_dir(data_dir: &Path) -> Result<(), String> {
    fs::create_dir_all(data_dir)
        .map_err(|e| format!("data_dir {}: cannot create it: {e}", data_dir.display()))?;
    let probe = data_dir.join(format!(".bulkload-write-check-{}", std::process::id()));
    File::create(&probe)
        .map_err(|e| format!("data_dir {}: cannot write in it: {e}", data_dir.display()))?;
    let _ = fs::remove_file(&probe);
    Ok(())
}
