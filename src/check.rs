//! Offline check: validates pickup files without a store and without moving anything, and
//! prints each file's problems as its result file would list them.
//!
//! Owns: the `bulkload check` report. Reads each file twice (once for well-formedness, so a
//! file-level error is known before any problem is printed; once to validate), in constant memory.
//! Must not: open the store, or write or move any file.

use std::io::{self, Write};
use std::path::Path;

use crate::config::{Config, Lender};
use crate::json::{self, Bounds, StreamError};
use crate::layout::{self, FileClass};
use crate::records::{self, Ctx};

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
            return file_error(out, &format!("The file name \"{name}\" does not start with a known record type; nothing would be applied."))
        }
        FileClass::NotJson(_) => {
            return file_error(out, &format!("The file name \"{name}\" does not end in .json; nothing would be applied."))
        }
    };
    if crate::fsutil::open_nofollow(path).and_then(json::is_blank)? {
        return file_error(
            out,
            "The file is blank; a pass would discard it without a result.",
        );
    }
    // First read: is it a well-formed array at all?
    let first = json::stream_array::<_, _, ()>(
        crate::fsutil::open_nofollow(path)?,
        bounds,
        None,
        |_, _| Ok(()),
    );
    if let Err(e) = first {
        let msg = match e {
            StreamError::File(f) => f.to_string(),
            StreamError::Callback(()) => String::new(),
        };
        return file_error(out, &msg);
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
    let records = json::stream_array::<_, _, ()>(
        crate::fsutil::open_nofollow(path)?,
        bounds,
        None,
        |index, element| {
            if let Err(rej) = records::validate(kind, element, ctx) {
                for m in rej.messages {
                    let sep = if problems == 0 { "\n" } else { ",\n" };
                    problems += 1;
                    let line = js(&m).and_then(|m| {
                    write!(out, "{sep}    {{\n      \"Index\": {index},\n      \"Message\": {m}\n    }}")
                });
                    if let Err(e) = line {
                        io_failure = Some(e);
                        return Err(());
                    }
                }
            }
            Ok(())
        },
    );
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
