//! Retention: each pass first prunes what is older than `[retention]` keeps (days; 0 keeps
//! forever): stamped files in `processed/` (never a `.last` file: the newest copy of a name),
//! result files in `results/`, and the problems of old finished loads in the store. Every
//! removal is logged.
//!
//! Must not: touch `pickup/`, `work/`, `lookups/`, a `.last` file, or anything not a regular file.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::config::{Config, Retention};
use crate::layout::LenderDirs;
use crate::store::{Store, StoreError};

const DAY: u64 = 86_400;

/// Removed counts of one lender and environment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub processed: u64,
    pub results: u64,
}

fn is_last(name: &str) -> bool {
    // `<stem>.last.<ext>` or `<stem>.last` (no extension).
    name.contains(".last.") || name.ends_with(".last")
}

fn prune_dir(dir: &Path, days: u64, keep: &dyn Fn(&str) -> bool, env: &str, lender: &str) -> u64 {
    if days == 0 {
        return 0;
    }
    let Some(cutoff) = SystemTime::now().checked_sub(Duration::from_secs(days * DAY)) else {
        return 0;
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if keep(&name) || name.starts_with('.') {
            continue;
        }
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        if !meta.is_file() || meta.modified().map_or(true, |m| m >= cutoff) {
            continue;
        }
        match fs::remove_file(e.path()) {
            Ok(()) => {
                removed += 1;
                tracing::info!(env, lender, file = %e.path().display(), days, "retention: removed");
            }
            Err(err) => {
                tracing::warn!(env, lender, file = %e.path().display(), error = %err, "retention: cannot remove")
            }
        }
    }
    removed
}

/// Prunes one lender's processed and result files.
pub fn prune_files(r: &Retention, dirs: &LenderDirs, env: &str, lender: &str) -> Pruned {
    Pruned {
        processed: prune_dir(&dirs.processed, r.processed_days, &is_last, env, lender),
        results: prune_dir(&dirs.results, r.results_days, &|_| false, env, lender),
    }
}

/// Prunes the problems of finished loads of one store.
pub fn prune_problems(cfg: &Config, env: &str, store: &dyn Store) -> Result<u64, StoreError> {
    let days = cfg.retention.problems_days;
    if days == 0 {
        return Ok(0);
    }
    let before = chrono::Utc::now() - chrono::Duration::seconds((days * DAY) as i64);
    let n = store.prune_problems(&crate::result::iso(before))?;
    if n > 0 {
        tracing::info!(
            env,
            problems = n,
            days,
            "retention: removed the problems of old loads"
        );
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_names_are_recognised() {
        assert!(is_last("loans.last.json"));
        assert!(is_last("loans.last"));
        assert!(!is_last("loans.20240101000000000.json"));
    }
}
