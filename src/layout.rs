//! Layout: every path under `data_dir` and every file-naming rule.
//!
//! Owns: the folder tree of a lender and environment, the private work folder a pass claims files
//! into, store paths, which pickup names are ignored, the record type named by a file's prefix,
//! the processed / result names with their `yyyyMMddHHmmssfff` timestamps, and the longest pickup
//! name (`MAX_PICKUP_NAME_BYTES`) for which every name derived from it fits the file system.
//! Must not: read or write files (beyond `ensure_tree`), or know anything about records' content.

use chrono::{DateTime, Utc};
use std::io;
use std::path::{Path, PathBuf};

use crate::records::Kind;

/// The locations of `{environment}/import/{location}`.
pub const LOCATIONS: [&str; 5] = ["pickup", "processed", "results", "lookups", "validate"];

/// Paths of one lender in one environment.
#[derive(Debug, Clone)]
pub struct LenderDirs {
    /// `data_dir/lenders/<lender>`: what an SFTP login sees as `/`.
    pub home: PathBuf,
    pub pickup: PathBuf,
    pub processed: PathBuf,
    pub results: PathBuf,
    pub lookups: PathBuf,
    /// Dry runs: a lender uploads here (as into `pickup/`) to have a file checked, not applied.
    pub validate: PathBuf,
    /// `data_dir/work/<environment>/<lender>`: where a pass claims the file it applies. Outside
    /// the lender's home, on the same file system as `pickup` (claiming is a rename).
    pub work: PathBuf,
}

pub fn lender_home(data_dir: &Path, lender: &str) -> PathBuf {
    data_dir.join("lenders").join(lender)
}

pub fn lender_dirs(data_dir: &Path, lender: &str, env: &str) -> LenderDirs {
    let home = lender_home(data_dir, lender);
    let import = home.join(env).join("import");
    LenderDirs {
        pickup: import.join("pickup"),
        processed: import.join("processed"),
        results: import.join("results"),
        lookups: import.join("lookups"),
        validate: import.join("validate"),
        work: data_dir.join("work").join(env).join(lender),
        home,
    }
}

impl LenderDirs {
    /// Creates the folder tree when missing.
    pub fn ensure_tree(&self) -> io::Result<()> {
        for d in [
            &self.pickup,
            &self.processed,
            &self.results,
            &self.lookups,
            &self.validate,
            &self.work,
        ] {
            std::fs::create_dir_all(d)?;
        }
        Ok(())
    }
}

pub fn store_path(data_dir: &Path, env: &str) -> PathBuf {
    data_dir.join("db").join(format!("{env}.sqlite3"))
}

/// The lock file that keeps two passes (a `serve` and a cron `run`, say) from overlapping.
pub fn pass_lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join("pass.lock")
}

/// Longest name a file system allows, in bytes.
pub const MAX_FS_NAME_BYTES: usize = 255;
/// Bytes of a `yyyyMMddHHmmssfff` stamp.
pub const STAMP_BYTES: usize = 17;
/// Bytes a pass puts before a name when it claims it: `<stamp>-<8 hex>__<name>`.
pub const CLAIM_PREFIX_BYTES: usize = STAMP_BYTES + 1 + 8 + 2;
/// What a result name adds to a stem: `.<stamp>.result.json`.
pub const RESULT_SUFFIX_BYTES: usize = 1 + STAMP_BYTES + ".result.json".len();
/// What `fsutil::write_atomic_with`'s temporary name adds to a name: `.<name>.<pid>.tmp`, a
/// pid having at most 10 digits.
pub const ATOMIC_TEMP_BYTES: usize = 1 + 1 + 10 + ".tmp".len();
/// Longest pickup name an upload (or a rename in pickup) may have, in bytes of UTF-8, so that
/// every name a pass derives from it fits in `MAX_FS_NAME_BYTES`: the claim
/// (`CLAIM_PREFIX_BYTES` more), the processed names (`.last` or `.<stamp>` more) and the
/// result name written through a temporary name (`RESULT_SUFFIX_BYTES` +
/// `ATOMIC_TEMP_BYTES` more, the longest: 46 bytes, so 209).
pub const MAX_PICKUP_NAME_BYTES: usize = MAX_FS_NAME_BYTES - max_derived_overhead();

const fn max_derived_overhead() -> usize {
    let claim = CLAIM_PREFIX_BYTES;
    let processed = 1 + STAMP_BYTES;
    let result = RESULT_SUFFIX_BYTES + ATOMIC_TEMP_BYTES;
    let mut m = claim;
    if processed > m {
        m = processed;
    }
    if result > m {
        m = result;
    }
    m
}

/// Names a pass never picks up: hidden names and the usual partial-upload suffixes (`.partial`:
/// rclone's temporary names).
pub fn is_ignored_name(name: &str) -> bool {
    name.starts_with('.')
        || [".part", ".tmp", ".filepart", ".partial"]
            .iter()
            .any(|s| name.to_ascii_lowercase().ends_with(s))
}

/// Splits a supplied name into stem and extension: `borrowers.json` → (`borrowers`, `json`);
/// a name without a dot has an empty extension.
pub fn split_name(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i + 1..]),
        _ => (name, ""),
    }
}

fn join(stem: &str, middle: &str, ext: &str) -> String {
    if ext.is_empty() {
        format!("{stem}.{middle}")
    } else {
        format!("{stem}.{middle}.{ext}")
    }
}

/// `<stem>.last.<ext>`: the newest processed file of a supplied name.
pub fn processed_last_name(pickup_name: &str) -> String {
    let (stem, ext) = split_name(pickup_name);
    join(stem, "last", ext)
}

/// `<stem>.<timestamp>.<ext>`: a processed file once a newer one of its name arrived.
pub fn processed_stamped_name(pickup_name: &str, stamp: &str) -> String {
    let (stem, ext) = split_name(pickup_name);
    join(stem, stamp, ext)
}

/// `<stem>.<timestamp>.result.json`.
pub fn result_name(pickup_name: &str, stamp: &str) -> String {
    let (stem, _) = split_name(pickup_name);
    format!("{stem}.{stamp}.result.json")
}

/// `yyyyMMddHHmmssfff`, UTC.
pub fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%d%H%M%S%3f").to_string()
}

/// The stamp one millisecond after `s` (same 17-digit form).
pub fn next_stamp(s: &str) -> String {
    chrono::NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%S%3f")
        .map(|t| stamp(t.and_utc() + chrono::Duration::milliseconds(1)))
        .unwrap_or_else(|_| stamp(Utc::now()))
}

/// What a pickup file's name says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileClass {
    Records(Kind),
    /// No known prefix: answered with a result file and moved to processed.
    UnknownType,
    /// A known prefix but not `.json`.
    NotJson(Kind),
}

/// A file's type is its name's prefix (`borrowers.json`, `borrowers_20231219.json`,
/// `borrowers-20231219T0100.json`), compared ignoring case; the longest matching prefix wins and
/// must be followed by `.`, `_` or `-`.
pub fn classify(name: &str) -> FileClass {
    let lower = name.to_ascii_lowercase();
    let mut best: Option<Kind> = None;
    for kind in Kind::ALL {
        let p = kind.prefix();
        if let Some(rest) = lower.strip_prefix(p) {
            if matches!(rest.bytes().next(), Some(b'.' | b'_' | b'-'))
                && best.is_none_or(|b| b.prefix().len() < p.len())
            {
                best = Some(kind);
            }
        }
    }
    match best {
        None => FileClass::UnknownType,
        Some(k) if lower.ends_with(".json") => FileClass::Records(k),
        Some(k) => FileClass::NotJson(k),
    }
}

/// Position of a file in a pass: dependency order, unknown types last, then by name.
pub fn order_key(name: &str) -> (usize, String) {
    let rank = match classify(name) {
        FileClass::Records(k) | FileClass::NotJson(k) => k.order(),
        FileClass::UnknownType => Kind::ALL.len(),
    };
    (rank, name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn classify_prefixes() {
        assert_eq!(
            classify("borrowers.json"),
            FileClass::Records(Kind::Borrowers)
        );
        assert_eq!(
            classify("borrowers_20231219.json"),
            FileClass::Records(Kind::Borrowers)
        );
        assert_eq!(
            classify("Borrowers-20231219T0100.JSON"),
            FileClass::Records(Kind::Borrowers)
        );
        assert_eq!(classify("loans.json"), FileClass::Records(Kind::Loans));
        assert_eq!(
            classify("loan_positions.json"),
            FileClass::Records(Kind::LoanPositions)
        );
        assert_eq!(
            classify("broker_accounts_1.json"),
            FileClass::Records(Kind::BrokerAccounts)
        );
        assert_eq!(classify("brokers.json"), FileClass::Records(Kind::Brokers));
        assert_eq!(classify("borrowersx.json"), FileClass::UnknownType);
        assert_eq!(classify("notes.txt"), FileClass::UnknownType);
        assert_eq!(classify("loans.csv"), FileClass::NotJson(Kind::Loans));
    }

    #[test]
    fn names() {
        assert_eq!(processed_last_name("borrowers.json"), "borrowers.last.json");
        assert_eq!(
            processed_stamped_name("borrowers.json", "20231222070016329"),
            "borrowers.20231222070016329.json"
        );
        assert_eq!(processed_last_name("README"), "README.last");
        assert_eq!(
            result_name("loans_1.json", "20231222070016329"),
            "loans_1.20231222070016329.result.json"
        );
        let t = Utc.with_ymd_and_hms(2023, 12, 22, 7, 0, 16).unwrap()
            + chrono::Duration::milliseconds(329);
        assert_eq!(stamp(t), "20231222070016329");
    }

    /// Every name a pass derives from a pickup name, as files.rs and fsutil.rs build them.
    fn derived(name: &str) -> Vec<String> {
        let stamp = "20231222070016329";
        let result = result_name(name, stamp);
        vec![
            format!("{stamp}-0123abcd__{name}"),
            processed_last_name(name),
            processed_stamped_name(name, stamp),
            format!(".{}.{}.tmp", processed_last_name(name), u32::MAX),
            format!(".{result}.{}.tmp", u32::MAX),
            result,
        ]
    }

    #[test]
    fn every_derived_name_of_a_longest_pickup_name_fits() {
        assert_eq!(MAX_PICKUP_NAME_BYTES, 209);
        let n = MAX_PICKUP_NAME_BYTES;
        let longest = [
            "a".repeat(n),
            format!("{}.json", "b".repeat(n - 5)),
            format!("loans_{}", "é".repeat((n - 6) / 2)),
            format!("{}.x", "c".repeat(n - 2)),
        ];
        for name in &longest {
            assert!(name.len() <= n);
            for d in derived(name) {
                assert!(d.len() <= MAX_FS_NAME_BYTES, "{} bytes: {d}", d.len());
            }
        }
        // One byte more and some derived name would not fit.
        let over = "a".repeat(n + 1);
        assert!(derived(&over).iter().any(|d| d.len() > MAX_FS_NAME_BYTES));
    }

    #[test]
    fn ignored() {
        assert!(is_ignored_name(".hidden.json"));
        assert!(is_ignored_name("loans.json.part"));
        assert!(is_ignored_name("loans.json.FILEPART"));
        assert!(is_ignored_name("loans.json.3f2a9c1b.partial"));
        assert!(!is_ignored_name("loans.json"));
    }

    #[test]
    fn order() {
        let mut v = vec![
            "zzz.txt",
            "loan_brokers.json",
            "employees_b.json",
            "employees_a.json",
        ];
        v.sort_by_key(|n| order_key(n));
        assert_eq!(
            v,
            vec![
                "employees_a.json",
                "employees_b.json",
                "loan_brokers.json",
                "zzz.txt"
            ]
        );
    }
}
