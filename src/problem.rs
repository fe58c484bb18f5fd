//! Problems: what is wrong with one record, as data, and its one rendering to text.
//!
//! Owns: `Problem` (the record's index, the field it is about, a stable `Code`, and the detail),
//! `Problems` (the collector validation and the write rules push into), the text of a problem as
//! the result file, `bulkload check` and the API print it, and the JSON object of one problem.
//! Must not: decide what is a problem (that is `records`) or where problems are kept (`store`).

use std::borrow::Cow;
use std::io::{self, Write};

/// Which rule a problem breaks. Stable: stored beside the message and meant for programs
/// (filters, the API); the message is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The element is not a JSON object (or a pair is not one).
    NotAnObject,
    /// A field name that no documented field matches.
    UnknownField,
    /// A field given twice (in any case).
    RepeatedField,
    /// The JSON type is not the documented one.
    WrongType,
    /// Longer than the documented maximum.
    TooLong,
    /// A number outside the type's range.
    OutOfRange,
    /// A value of the right type in the wrong form (a date, a thread id, an email, a URL, an
    /// enumerated name, a NUL character).
    InvalidValue,
    /// A required field (or one of two) is missing.
    Required,
    /// A field that must not be given (in this mode).
    NotAllowed,
    /// A reference to reference data (a division, a lookup id, a position) that does not exist.
    UnknownReference,
    /// The record, or a record it names, does not exist.
    NotFound,
    /// A lender id, license or email that another record holds.
    Taken,
    /// Two fields name different records, or a relation the store's state refuses.
    Conflict,
}

impl Code {
    pub const ALL: [Code; 13] = [
        Code::NotAnObject,
        Code::UnknownField,
        Code::RepeatedField,
        Code::WrongType,
        Code::TooLong,
        Code::OutOfRange,
        Code::InvalidValue,
        Code::Required,
        Code::NotAllowed,
        Code::UnknownReference,
        Code::NotFound,
        Code::Taken,
        Code::Conflict,
    ];

    /// The code of a stable name.
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The stable name stored with the problem.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::NotAnObject => "not_an_object",
            Code::UnknownField => "unknown_field",
            Code::RepeatedField => "repeated_field",
            Code::WrongType => "wrong_type",
            Code::TooLong => "too_long",
            Code::OutOfRange => "out_of_range",
            Code::InvalidValue => "invalid_value",
            Code::Required => "required",
            Code::NotAllowed => "not_allowed",
            Code::UnknownReference => "unknown_reference",
            Code::NotFound => "not_found",
            Code::Taken => "taken",
            Code::Conflict => "conflict",
        }
    }
}

/// One problem of one record, without its index (the engine adds that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field (path) the problem is about: `Email`, `Contacts[1].Mode`, or two alternatives
    /// (`Loan_ThreadId or Loan_Number`). `None` for the record as a whole.
    pub field: Option<String>,
    pub code: Code,
    /// What is wrong, after the field: `required for create.`
    pub detail: String,
    /// Whether the text starts with the field (`Email: …`) or is a sentence of its own that
    /// names the field itself (`No loan for supplied Loan_Number exists.`).
    prefixed: bool,
}

impl Problem {
    /// A problem of a field, rendered `<field>: <detail>`.
    pub fn field(field: impl Into<String>, code: Code, detail: impl Into<String>) -> Problem {
        Problem {
            field: Some(field.into()),
            code,
            detail: detail.into(),
            prefixed: true,
        }
    }

    /// A problem whose text is one sentence, about `field` when given (for filters) but not
    /// prefixed with it.
    pub fn sentence(field: Option<&str>, code: Code, text: impl Into<String>) -> Problem {
        Problem {
            field: field.map(str::to_string),
            code,
            detail: text.into(),
            prefixed: false,
        }
    }

    /// Whether the text starts with the field.
    pub fn is_prefixed(&self) -> bool {
        self.prefixed
    }

    /// The same problem naming the CSV line its record starts on.
    pub fn at_csv_line(&self, line: u64) -> Problem {
        let mut p = self.clone();
        p.detail = format!("{} (CSV line {line})", p.detail.trim_end());
        p
    }

    /// The one rendering of a problem to text.
    pub fn message(&self) -> Cow<'_, str> {
        match (&self.field, self.prefixed) {
            (Some(f), true) => format!("{f}: {}", self.detail).into(),
            _ => Cow::Borrowed(&self.detail),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

/// The problems of one record, in the order they were found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, p: Problem) {
        self.0.push(p);
    }
    /// Shorthand for `push(Problem::field(..))`.
    pub fn at(&mut self, field: impl Into<String>, code: Code, detail: impl Into<String>) {
        self.0.push(Problem::field(field, code, detail));
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn iter(&self) -> std::slice::Iter<'_, Problem> {
        self.0.iter()
    }
    /// The rendered messages (tests and tools).
    pub fn messages(&self) -> Vec<String> {
        self.0.iter().map(|p| p.message().into_owned()).collect()
    }
}

impl From<Problem> for Problems {
    fn from(p: Problem) -> Self {
        Problems(vec![p])
    }
}

/// Writes one problem as the result file lists it (`{"Index": …, "Message": …}`), indented by
/// `indent` spaces, pretty-printed with two spaces as in the interface's example.
pub fn write_json<W: Write + ?Sized>(
    out: &mut W,
    indent: usize,
    index: i64,
    message: &str,
) -> io::Result<()> {
    let pad = " ".repeat(indent);
    let m = serde_json::to_string(message).map_err(io::Error::other)?;
    write!(
        out,
        "{pad}{{\n{pad}  \"Index\": {index},\n{pad}  \"Message\": {m}\n{pad}}}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_once() {
        let p = Problem::field("Email", Code::Required, "required for create.");
        assert_eq!(p.message(), "Email: required for create.");
        let s = Problem::sentence(
            Some("Loan_Number"),
            Code::NotFound,
            "No loan for supplied Loan_Number exists.",
        );
        assert_eq!(s.message(), "No loan for supplied Loan_Number exists.");
        assert_eq!(s.field.as_deref(), Some("Loan_Number"));
        let mut out = Vec::new();
        write_json(&mut out, 4, 3, "a \"b\"").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "    {\n      \"Index\": 3,\n      \"Message\": \"a \\\"b\\\"\"\n    }"
        );
    }
}
