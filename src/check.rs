//! Offline check: validates pickup files without a store and without moving anything, and
//! reports each file's problems as its result file would list them.
//!
//! Owns: the `bulkload check` report: a summary for people on a terminal (file, records,
//! problems, problems by field) or ONE JSON document (`--format json`); the configuration it
//! checks against (the operator's config and a lender, or a lender's downloaded `lookups/`
//! folder, which holds no secret: `lookups_context`); and what one file shows offline beyond a
//! record's own rules: the same ExternalId / IdNumber / LoanNumber created twice, the same account
//! email given to two records, the same relation pair added twice (`Dupes`). Reads each file
//! twice (once for well-formedness, so a file-level error is known before any problem is
//! reported; once to validate); memory holds the ids of the file for the duplicate checks only.
//! Must not: open the store, or write or move any file; word a refusal or a problem itself (the
//! messages are `input::FileError`'s and `problem::Problem`'s, as in a result file), except the
//! within-file duplicates, which only the check finds.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::path::Path;

use crate::config::{Division, Lender, LookupEntry, Lookups};
use crate::input::json::{self, JsonReader};
use crate::input::{Bounds, FileError, Format, ReadError, RecordReader};
use crate::layout::{self, FileClass};
use crate::problem::{Code, Problem};
use crate::records::{self, Ctx, Kind, Mode, Record, Shape};

/// What the store-dependent checks are, for the report's `Skipped` note.
pub const SKIPPED: &str = "Checks that need the store were skipped: uniqueness of ExternalId, IdNumber, LoanNumber and Email against records already sent; existence of the records that updates and relations name.";

/// How the report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// For people: per file its records, problems and problems by field.
    Text,
    /// One JSON document: `{"Files": [...], "Problems": N, "Skipped": "..."}`.
    Json,
}

/// Builds the configuration half of the checks from a lender's downloaded `lookups/` folder:
/// `divisions.json`, `positions.json` and the six platform tables. No secret is needed.
pub fn lookups_context(dir: &Path) -> io::Result<(Lender, Lookups)> {
    let read = |name: &str| -> io::Result<Vec<serde_json::Value>> {
        let path = dir.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    };
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let positions = read("positions")?;
    let divisions = read("divisions")?
        .iter()
        .map(|d| {
            let id = s(d, "DivisionThreadId").to_ascii_lowercase();
            Division {
                positions: positions
                    .iter()
                    .filter(|p| s(p, "DivisionThreadId").eq_ignore_ascii_case(&id))
                    .map(|p| s(p, "Name"))
                    .collect(),
                thread_id: id,
                system_name: s(d, "SystemName"),
                editable_name: s(d, "EditableName"),
            }
        })
        .collect();
    let table = |name: &str| -> io::Result<Vec<LookupEntry>> {
        Ok(read(name)?
            .iter()
            .map(|e| LookupEntry {
                id: e["Id"].as_i64().unwrap_or_default(),
                name: s(e, "Name"),
            })
            .collect())
    };
    let lookups = Lookups {
        loan_purposes: table("loan_purposes")?,
        loan_occupancies: table("loan_occupancies")?,
        loan_statuses: table("loan_statuses")?,
        loan_types: table("loan_types")?,
        agencies: table("agencies")?,
        structure_types: table("structure_types")?,
    };
    let lender = Lender {
        id: "lookups".into(),
        password_hash: None,
        authorized_keys: None,
        divisions,
        partner_dedupe: false,
        webhooks: Vec::new(),
        notify_email: Vec::new(),
        users: Vec::new(),
        api_clients: Vec::new(),
        daily_record_limit: None,
        monthly_record_limit: None,
    };
    Ok((lender, lookups))
}

/// What one file shows offline about itself: ids created twice, an email given to two
/// records, a relation pair added twice. Holds the file's ids (not its records).
#[derive(Default)]
struct Dupes {
    created: HashMap<String, u64>,
    emails: HashMap<String, (u64, String)>,
    pairs: HashMap<String, u64>,
}

impl Dupes {
    fn check(&mut self, index: u64, r: &Record) -> Vec<Problem> {
        let mut out = Vec::new();
        let kind = r.kind;
        if let Shape::Entity { lender_id } = kind.spec().shape {
            let identity = r.identity();
            let who = identity
                .lender_id
                .clone()
                .or(identity.thread_id.clone())
                .unwrap_or_default();
            if r.mode == Mode::Create && kind != Kind::Partners {
                if let Some(id) = r.str(lender_id) {
                    if let Some(first) = self.created.get(id) {
                        out.push(Problem::field(
                            lender_id,
                            Code::Taken,
                            format!("\"{id}\" is also created by record {first} of this file; only the first create can succeed."),
                        ));
                    } else {
                        self.created.insert(id.to_string(), index);
                    }
                }
            }
            // Account emails are unique (brokers: the owner account's); a borrower create may
            // share a borrower's, and a partner's email is its identity.
            let accounts = matches!(kind, Kind::Employees | Kind::BrokerAccounts | Kind::Brokers);
            if accounts && kind.fields().iter().any(|f| f.name == "Email") {
                if let Some(email) = r.str("Email") {
                    let key = email.to_lowercase();
                    match self.emails.get(&key) {
                        Some((first, other)) if *other != who => out.push(Problem::field(
                            "Email",
                            Code::Taken,
                            format!("\"{email}\" is also given to record {first} of this file; account emails must be unique."),
                        )),
                        Some(_) => {}
                        None => {
                            self.emails.insert(key, (index, who));
                        }
                    }
                }
            }
        } else if r.mode == Mode::Add && kind != Kind::LoanBrokers {
            let key: Vec<String> = kind
                .fields()
                .iter()
                .filter(|f| f.name != "Mode")
                .map(|f| r.str(f.name).unwrap_or_default().to_lowercase())
                .collect();
            let key = key.join("\u{1f}");
            if let Some(first) = self.pairs.get(&key) {
                out.push(Problem::sentence(
                    None,
                    Code::Conflict,
                    format!("The same pair is also added by record {first} of this file."),
                ));
            } else {
                self.pairs.insert(key, index);
            }
        }
        out
    }
}

/// Checks files and writes the report; returns the number of problems (a file-level error
/// counts as one).
pub fn check_files(
    paths: &[&Path],
    ctx: Option<Ctx<'_>>,
    bounds: Bounds,
    format: ReportFormat,
    out: &mut dyn Write,
) -> io::Result<u64> {
    let js = |v: &str| serde_json::to_string(v).map_err(io::Error::other);
    let skipped = if ctx.is_some() {
        SKIPPED.to_string()
    } else {
        format!("{SKIPPED} Division, lookup and position checks were skipped too (no --lookups, or --config and --lender).")
    };
    if format == ReportFormat::Json {
        write!(out, "{{\n  \"Files\": [")?;
    }
    let mut total = 0;
    for (i, path) in paths.iter().enumerate() {
        if format == ReportFormat::Json {
            write!(out, "{}", if i == 0 { "\n" } else { ",\n" })?;
        }
        total += check_file(path, ctx, bounds, format, out)?;
    }
    match format {
        ReportFormat::Json => writeln!(
            out,
            "\n  ],\n  \"Problems\": {total},\n  \"Skipped\": {}\n}}",
            js(&skipped)?
        )?,
        ReportFormat::Text => writeln!(
            out,
            "{total} problem(s) in {} file(s). {skipped}",
            paths.len()
        )?,
    }
    Ok(total)
}

/// Checks one file and writes its part of the report.
fn check_file(
    path: &Path,
    ctx: Option<Ctx<'_>>,
    bounds: Bounds,
    format: ReportFormat,
    out: &mut dyn Write,
) -> io::Result<u64> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let shown = path.display().to_string();
    let js = |v: &str| serde_json::to_string(v).map_err(io::Error::other);
    let file_error = |out: &mut dyn Write, msg: &str| -> io::Result<u64> {
        match format {
            ReportFormat::Json => write!(
                out,
                "    {{\n      \"File\": {},\n      \"ErrorMessage\": {},\n      \"Records\": 0,\n      \"Problems\": [],\n      \"ProblemsByField\": {{}}\n    }}",
                js(&shown)?,
                js(msg)?
            )?,
            ReportFormat::Text => writeln!(out, "{shown}: refused: {msg}")?,
        }
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
    let reader = |path: &Path| -> io::Result<Box<dyn RecordReader>> {
        let file = crate::fsutil::open_nofollow(path)?;
        Ok(match Format::of_name(&name) {
            Some(Format::Csv) => Box::new(crate::files::csv_reader(file, bounds, kind)),
            _ => Box::new(JsonReader::new(file, bounds)),
        })
    };
    // First read: is it well-formed at all?
    if let Err(ReadError::File(e)) = reader(path)?.read(&mut |_, _| Ok(())) {
        return file_error(out, &e.to_string());
    }
    if format == ReportFormat::Json {
        write!(
            out,
            "    {{\n      \"File\": {},\n      \"ErrorMessage\": null,\n      \"Problems\": [",
            js(&shown)?
        )?;
    }
    let mut problems = 0u64;
    let mut by_field: BTreeMap<String, u64> = BTreeMap::new();
    let mut io_failure = None;
    let mut dupes = Dupes::default();
    let records = reader(path)?.read(&mut |index, element| {
        let line = element.line();
        let found: Vec<Problem> = match records::validate(kind, element, ctx) {
            Ok(record) => dupes.check(index, &record),
            Err(rej) => rej.problems.0,
        };
        for p in found {
            let p = match line {
                Some(l) => p.at_csv_line(l),
                None => p,
            };
            problems += 1;
            *by_field
                .entry(p.field.clone().unwrap_or_else(|| "(record)".into()))
                .or_default() += 1;
            let written = match format {
                ReportFormat::Json => write!(out, "{}", if problems == 1 { "\n" } else { ",\n" })
                    .and_then(|_| crate::problem::write_json(out, 8, index as i64, &p.message())),
                ReportFormat::Text => writeln!(out, "{shown}: record {index}: {}", p.message()),
            };
            if let Err(e) = written {
                io_failure = Some(e);
                return Err(crate::input::Stopped);
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
    match format {
        ReportFormat::Json => {
            if problems == 0 {
                write!(out, "],")?;
            } else {
                write!(out, "\n      ],")?;
            }
            let fields = serde_json::to_string(&by_field).map_err(io::Error::other)?;
            write!(
                out,
                "\n      \"Records\": {n},\n      \"ProblemsByField\": {fields}\n    }}"
            )?;
        }
        ReportFormat::Text => {
            let fields: Vec<String> = by_field.iter().map(|(f, c)| format!("{f} {c}")).collect();
            let by = if fields.is_empty() {
                String::new()
            } else {
                format!("; by field: {}", fields.join(", "))
            };
            writeln!(out, "{shown}: {n} record(s), {problems} problem(s){by}")?;
        }
    }
    Ok(problems)
}
