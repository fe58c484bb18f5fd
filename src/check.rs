//! Offline check: validates pickup files without a store and without moving anything, and
//! prints each file's problems as its result file would list them.
//!
//! Owns: the `bulkload check` report. Reads each file twice (once for well-formedness, so a
//! file-level error is known before any problem is printed; once to validate), in constant memory.
//! Must not: open the store, or write or move any file; word a refusal or a problem itself (the
//! messages are `input::FileError`'s and `problem::Problem`'s, as in a result file).

use std::io::{self, Write};
use std::path::Path;

use crate::config::{Config, Lender};
use crate::input::json::{self, JsonReader};
use crate::input::{Bounds, FileError, ReadError, RecordReader};
use crate::layout::{self, FileClass};
use crate::records::{self, Ctx, Kind};

/// What the store-dependent checks are, for the report's `Skipped` note.
pub const SKIPPED: &str = "Checks that need the store were skipped: uniqueness of ExternalId, IdNumber, LoanNumber and Email; existence of the records that updates and relations name.";

/// Checks one file; writes its report to `out`. Returns the number of problems (file-level
/// error counts as one).
pub fn check_file(
    path: &Path,
    cfg: Option<(&Config, &Lender)>,
    out: &mut dyn Write,
) -> io::Result<u64> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let limits = cfg.map(|(c, _)| c.limits).unwrap_or_default();
    let bounds = Bounds {
        max_record_bytes: limits.max_record_bytes,
        max_records: limits.max_records,
    };
    let js = |v: &str| serde_json::to_string(v).map_err(io::Error::other);
    let skipped = if cfg.is_some() {
        SKIPPED.to_string()
    } else {
        format!("{SKIPPED} Division, lookup and position checks were skipped too (no --config and --lender).")
    };
    let file_error = |out: &mut dyn Write, msg: &str| -> io::Result<u64> {
        writeln!(
            out,
            "{{\n  \"File\": {},\n  \"ErrorMessage\": {},\n  \"Records\": 0,\n  \"Problems\": [],\n  \"Skipped\": {}\n}}",
            js(&path.display().to_string())?,
            js(msg)?,
            js(&skipped)?
        )?;
        Ok(1)
    };
    let kind = match layout::classify(&name) {
        FileClass::Records(k) => k,
        FileClass::UnknownType => {
            let e = FileError::UnknownType {
                name,
                known: Kind::ALL.map(Kind::prefix).join(", "),
            };
            return file_error(out, &e.to_string());
        }
        FileClass::NotJson(k) => {
            let e = FileError::NotJson {
                name,
                noun: k.noun(),
                prefix: k.prefix(),
            };
            return file_error(out, &e.to_string());
        }
    };
    if name.len() > layout::MAX_PICKUP_NAME_BYTES {
        let e = FileError::NameTooLong {
            limit: layout::MAX_PICKUP_NAME_BYTES,
        };
        return file_error(out, &e.to_string());
    }
    if crate::fsutil::open_nofollow(path).and_then(json::is_blank)? {
        return file_error(
            out,
            "The file is blank; a pass would discard it without a result.",
        );
    }
    // First read: is it a well-formed array at all?
    let mut first = JsonReader::new(crate::fsutil::open_nofollow(path)?, bounds);
    if let Err(ReadError::File(e)) = first.read(&mut |_, _| Ok(())) {
        return file_error(out, &e.to_string());
    }
    let ctx = cfg.map(|(c, l)| Ctx {
        lender: l,
        lookups: &c.lookups,
    });
    writeln!(
        out,
        "{{\n  \"File\": {},\n  \"ErrorMessage\": null,",
        js(&path.display().to_string())?
    )?;
    write!(out, "  \"Problems\": [")?;
    let mut problems = 0u64;
    let mut io_failure = None;
    let mut second = JsonReader::new(crate::fsutil::open_nofollow(path)?, bounds);
    let records = second.read(&mut |index, element| {
        if let Err(rej) = records::validate(kind, element, ctx) {
            for p in rej.problems.iter() {
                let sep = if problems == 0 { "\n" } else { ",\n" };
                problems += 1;
                let line = write!(out, "{sep}")
                    .and_then(|_| crate::problem::write_json(out, 4, index as i64, &p.message()));
                if let Err(e) = line {
                    io_failure = Some(e);
                    return Err(crate::input::Stopped);
                }
            }
        }
        Ok(())
    });
    if let Some(e) = io_failure {
        return Err(e);
    }
    let n = match records {
        Ok(n) => n,
        Err(_) => {
            return Err(io::Error::other(
                "the file changed while it was being checked",
            ))
        }
    };
    if problems == 0 {
        writeln!(out, "],")?;
    } else {
        writeln!(out, "\n  ],")?;
    }
    writeln!(
        out,
        "  \"Records\": {n},\n  \"Skipped\": {}\n}}",
        js(&skipped)?
    )?;
    Ok(problems)
}
