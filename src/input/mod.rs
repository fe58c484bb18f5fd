//! Input: readers that turn a file (or a request body) into format-neutral records.
//!
//! Owns: `Value` (one input value; objects keep their members in order *including repeated
//! names*, so a repeat can be refused rather than silently resolved), `Bounds`, `FileError` (every
//! reason a whole input is refused, each with its one message, used by a pass, `bulkload check`
//! and any later intake alike), and the `RecordReader` trait. `json` is the first reader.
//! Must not: know about record types, fields or the store.

pub mod csv;
pub mod json;

/// A parsed input value with object members in source order, repeats kept.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
    /// One CSV row: the header's names with this row's cell text (a short row's missing cells
    /// are empty), and the line the row starts on. `records::convert` types the text.
    Row {
        line: u64,
        cells: Vec<(String, String)>,
    },
}

impl Value {
    /// Bytes of string data (keys and strings) held, plus one per value: a cheap measure of the
    /// memory a value takes, for bounding how many are in flight.
    pub fn text_len(&self) -> usize {
        match self {
            Value::String(s) => s.len() + 1,
            Value::Array(v) => v.iter().map(Value::text_len).sum::<usize>() + 1,
            Value::Object(m) => m.iter().map(|(k, v)| k.len() + v.text_len()).sum::<usize>() + 1,
            Value::Row { cells, .. } => {
                cells
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 1)
                    .sum::<usize>()
                    + 1
            }
            _ => 1,
        }
    }

    /// The CSV line a row starts on (`None` for JSON values).
    pub fn line(&self) -> Option<u64> {
        match self {
            Value::Row { line, .. } => Some(*line),
            _ => None,
        }
    }

    /// Writes the value as compact JSON, members in order and repeats kept (a row as an object
    /// of its cells' text). `extra` members are appended to an object or a row.
    pub fn write_json(
        &self,
        out: &mut dyn std::io::Write,
        extra: &[(&str, &Value)],
    ) -> std::io::Result<()> {
        let js = |s: &str| serde_json::to_string(s).map_err(std::io::Error::other);
        match self {
            Value::Null => out.write_all(b"null"),
            Value::Bool(b) => write!(out, "{b}"),
            Value::Number(n) => write!(out, "{n}"),
            Value::String(s) => out.write_all(js(s)?.as_bytes()),
            Value::Array(items) => {
                out.write_all(b"[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    v.write_json(out, &[])?;
                }
                out.write_all(b"]")
            }
            Value::Object(members) => {
                out.write_all(b"{")?;
                let all = members
                    .iter()
                    .map(|(k, v)| (k.as_str(), v))
                    .chain(extra.iter().copied());
                for (i, (k, v)) in all.enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    write!(out, "{}:", js(k)?)?;
                    v.write_json(out, &[])?;
                }
                out.write_all(b"}")
            }
            Value::Row { cells, .. } => {
                let members = cells
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                Value::Object(members).write_json(out, extra)
            }
        }
    }
}

/// Bounds on one input.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_record_bytes: u64,
    pub max_records: u64,
}

/// Why a whole input was refused. The message is what the result's `ErrorMessage` says; nothing
/// of a refused input is applied.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FileError {
    #[error("The file name \"{name}\" does not start with a known record type ({known}); nothing was applied.")]
    UnknownType { name: String, known: String },
    #[error("The file is a symbolic link; links are not followed. Nothing was applied.")]
    Symlink,
    #[error("The file is {len} bytes, larger than the limit of {limit} bytes; nothing was applied. Split it into smaller files.")]
    FileTooLarge { len: u64, limit: u64 },
    #[error("The file name is longer than the limit of {limit} bytes (the name above is its shortened form); nothing was applied. Send it again under a shorter name.")]
    NameTooLong { limit: usize },
    #[error("The file is {0}; pickup files must be UTF-8 JSON.")]
    Encoding(String),
    #[error("The file is not a well-formed JSON array: {0}.")]
    Malformed(String),
    #[error("The file ends before its JSON array is complete (truncated?): {0}.")]
    Truncated(String),
    #[error("Record {index} is larger than the limit of {limit} bytes; nothing in this file was applied.")]
    RecordTooLarge { index: u64, limit: u64 },
    #[error("The file holds more than {limit} records; nothing in this file was applied. Split it into smaller files.")]
    TooManyRecords { limit: u64 },
    #[error("The file name \"{name}\" names {noun} records but does not end in .json or .csv; pickup files must be JSON or CSV files named like {prefix}.json or {prefix}.csv. Nothing was applied.")]
    NotJson {
        name: String,
        noun: &'static str,
        prefix: &'static str,
    },
    #[error("The file is {0}; CSV files must be UTF-8 (with or without a byte order mark). Nothing was applied.")]
    CsvEncoding(String),
    #[error("The file is not well-formed CSV: {0}. Nothing was applied.")]
    CsvMalformed(String),
    #[error("The CSV header {0}. Nothing was applied.")]
    CsvHeader(String),
    #[error("Reading the file failed: {0}.")]
    Io(String),
}

/// Why reading stopped before the end.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The input is refused as a whole.
    File(FileError),
    /// The sink asked to stop (its own reason is the caller's to keep).
    Stopped,
}

/// What a sink answers for each record: go on, or stop.
pub type Flow = Result<(), Stopped>;

/// A sink's request to stop reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// A source of records in one format. Streams: at most one record is held at a time.
/// The formats records arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

impl Format {
    /// The format a file name's extension says (`None`: neither).
    pub fn of_name(name: &str) -> Option<Format> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".json") {
            Some(Format::Json)
        } else if lower.ends_with(".csv") {
            Some(Format::Csv)
        } else {
            None
        }
    }
    pub fn ext(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }
}

pub trait RecordReader: Send {
    /// Calls `sink(index, record)` for each record, in order, and returns how many there were.
    /// A refusal of the whole input comes back as `ReadError::File`, whatever the sink saw.
    fn read(&mut self, sink: &mut dyn FnMut(u64, Value) -> Flow) -> Result<u64, ReadError>;
}
