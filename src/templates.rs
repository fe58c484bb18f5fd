//! Templates and JSON Schemas of the record types, generated from their field tables.
//!
//! Owns: the CSV columns of a type (the column convention of `records::convert`), one example
//! record per type, `templates/<type>.csv` (header + the example row),
//! `templates/<type>.example.json`, and `schemas/<type>.schema.json` (JSON Schema 2020-12 of one
//! record). `lookups` writes them into every lender's `lookups/`; `bulkload schema` and
//! `bulkload template` print the same text.
//! Must not: hold a rule of its own: everything comes from `Kind::spec()`.

use serde_json::{json, Map, Value};

use crate::records::convert::{PAIR_FIELDS, PROBLEMS_MEMBER};
use crate::records::{Field, Kind, Shape, Ty, BROKER_POSITIONS};

const THREAD_ID: &str = "^[0-9A-Fa-f]{32}$";
const EXAMPLE_THREAD_ID: &str = "0123456789abcdef0123456789abcdef";

fn is_thread_field(name: &str) -> bool {
    name == "ThreadId"
        || name.ends_with("_ThreadId")
        || name.ends_with("AccountThreadId")
        || name == "DivisionThreadId"
}

/// `^[Mm][Oo][Dd][Ee]$`: a name or word matched ignoring case, in a pattern every JSON Schema
/// validator reads (ECMA 262 has no inline flags).
fn ignoring_case(words: &[&str]) -> String {
    let alt: Vec<String> = words
        .iter()
        .map(|w| {
            w.chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
                    } else if c.is_ascii_alphanumeric() || c == '_' {
                        c.to_string()
                    } else {
                        format!("\\{c}")
                    }
                })
                .collect()
        })
        .collect();
    format!("^({})$", alt.join("|"))
}

fn field_schema(f: &Field) -> Value {
    let mut s = match f.ty {
        Ty::Str(n) => json!({"type": ["string", "null"], "maxLength": n}),
        // Integral numbers: 1.0 and 1e3 are accepted, as bulkload reads them.
        Ty::Int => json!({"type": ["number", "null"], "multipleOf": 1}),
        Ty::Decimal => json!({"type": ["number", "null"]}),
        Ty::DateTime => json!({"type": ["string", "null"],
            "description": "ISO 8601 date, or date and time (no zone means UTC)"}),
        Ty::StrList(n) => json!({"type": ["array", "null"],
            "items": {"type": "string", "maxLength": n, "pattern": THREAD_ID}}),
        Ty::Pairs => json!({"type": ["array", "null"], "items": pair_schema()}),
    };
    if is_thread_field(f.name) {
        s["pattern"] = json!(THREAD_ID);
    }
    s["title"] = json!(format!("{} ({})", f.name, f.ty.describe()));
    s
}

fn pair_schema() -> Value {
    let mut props = Map::new();
    for f in PAIR_FIELDS {
        let mut s = field_schema(f);
        match f.name {
            "Mode" => s["pattern"] = json!(ignoring_case(&["add", "delete"])),
            "PositionName" => s["pattern"] = json!(ignoring_case(&BROKER_POSITIONS)),
            _ => {}
        }
        props.insert(f.name.to_string(), s);
    }
    json!({
        "type": "object",
        "title": "BrokerAccountPositionPair",
        "properties": props,
        "required": ["Mode"],
        "additionalProperties": false
    })
}

/// "Some member's name matches `pattern`": what `required` says, for names matched ignoring case.
fn has_member(name: &str) -> Value {
    json!({"not": {"propertyNames": {"not": {"pattern": ignoring_case(&[name])}}}})
}

/// The JSON Schema (2020-12) of one record of `kind`.
pub fn schema(kind: Kind) -> Value {
    let spec = kind.spec();
    let mut props = Map::new();
    let mut patterns = Map::new();
    for f in spec.fields {
        let mut s = field_schema(f);
        if f.name == "Mode" {
            let modes: Vec<&str> = kind.modes().iter().map(|m| m.name()).collect();
            s["pattern"] = json!(ignoring_case(&modes));
            s["type"] = json!("string");
        }
        patterns.insert(ignoring_case(&[f.name]), s.clone());
        props.insert(f.name.to_string(), s);
    }
    props.insert(
        PROBLEMS_MEMBER.to_string(),
        json!({"description": "What a failed-records file adds; ignored on input."}),
    );
    patterns.insert(ignoring_case(&[PROBLEMS_MEMBER]), json!({}));
    let mut all_of = vec![has_member("Mode")];
    let mut description = format!(
        "One {} record of a bulkload {} file (JSON array element, or CSV row). Field names match ignoring case; a name given twice (in any case) is refused.",
        spec.noun,
        spec.prefix
    );
    if let Shape::Entity { lender_id } = spec.shape {
        // create: the lender's id is required and ThreadId must not be given.
        all_of.push(json!({
            "if": {"patternProperties": {ignoring_case(&["Mode"]): {"pattern": ignoring_case(&["create"])}}},
            "then": {"allOf": [
                has_member(lender_id),
                {"propertyNames": {"not": {"pattern": ignoring_case(&["ThreadId"])}}}
            ]}
        }));
        description.push_str(&format!(
            " Required for create: {lender_id}{}. update and upsert need ThreadId or {lender_id}.",
            spec.division_field
                .map(|d| format!(" (and {d} unless the lender has one division)"))
                .unwrap_or_default()
        ));
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("https://bulkload.invalid/schemas/{}.schema.json", spec.prefix),
        "title": format!("{} record", spec.prefix),
        "description": description,
        "type": "object",
        "properties": props,
        "patternProperties": patterns,
        "additionalProperties": false,
        "x-requiredForCreate": match spec.shape {
            Shape::Entity { lender_id } => json!([lender_id]),
            Shape::Relation => json!([]),
        },
        "allOf": all_of
    })
}

/// The schema as `schemas/<type>.schema.json` holds it.
pub fn schema_text(kind: Kind) -> String {
    let mut s = serde_json::to_string_pretty(&schema(kind)).unwrap_or_default();
    s.push('\n');
    s
}

fn example_text(f: &Field) -> String {
    let n = f.name;
    let lower = n.to_ascii_lowercase();
    let max = match f.ty {
        Ty::Str(m) | Ty::StrList(m) => m,
        _ => 64,
    };
    let text = if lower.contains("email") {
        "jane.doe@example.com".to_string()
    } else if is_thread_field(n) || lower.contains("threadid") {
        EXAMPLE_THREAD_ID.to_string()
    } else if lower.contains("website") || lower.ends_with("url") {
        "https://www.example.com".to_string()
    } else if lower.contains("phone") || lower.contains("fax") {
        "555-0100".to_string()
    } else if lower == "statecode" || lower == "state" || lower.ends_with("state") {
        "CA".to_string()
    } else if lower.contains("zip") || lower.contains("postal") {
        "94105".to_string()
    } else if lower == "positionname" {
        "Loan Officer".to_string()
    } else {
        format!("{n}-1")
    };
    text.chars().take(max).collect()
}

/// One example record of `kind`: every field but `ThreadId` (a create names the record by the
/// lender's id), arrays with one item.
pub fn example(kind: Kind) -> Value {
    let mut m = Map::new();
    for f in kind.fields() {
        let v = match (f.name, f.ty) {
            ("Mode", _) => json!(kind.modes()[0].name()),
            ("ThreadId", _) => continue,
            (_, Ty::Int) => json!(1),
            (_, Ty::Decimal) => json!(250000.5),
            (_, Ty::DateTime) => json!("2024-01-15"),
            (_, Ty::StrList(_)) => json!([EXAMPLE_THREAD_ID]),
            (_, Ty::Pairs) => {
                json!([{"Mode": "add", "Account_ExternalId": "BA-1", "PositionName": "Loan Officer"}])
            }
            (_, Ty::Str(_)) => json!(example_text(f)),
        };
        m.insert(f.name.to_string(), v);
    }
    Value::Object(m)
}

/// `templates/<type>.example.json`: a JSON array holding the example record.
pub fn example_json(kind: Kind) -> String {
    let mut s = serde_json::to_string_pretty(&json!([example(kind)])).unwrap_or_default();
    s.push('\n');
    s
}

/// The CSV columns of `kind`: a field's name; `Field.1` for an array of strings; `Field.1.Mode`,
/// `Field.1.Account_ThreadId`... for an array of objects (one item; add `.2`, `.3` for more).
pub fn csv_columns(kind: Kind) -> Vec<String> {
    let mut cols = Vec::new();
    for f in kind.fields() {
        match f.ty {
            Ty::StrList(_) => cols.push(format!("{}.1", f.name)),
            Ty::Pairs => {
                for p in PAIR_FIELDS {
                    cols.push(format!("{}.1.{}", f.name, p.name));
                }
            }
            _ => cols.push(f.name.to_string()),
        }
    }
    cols
}

/// `templates/<type>.csv`: the header row and the example as one row.
pub fn template_csv(kind: Kind) -> String {
    let ex = example(kind);
    let mut row = Vec::new();
    for f in kind.fields() {
        let v = &ex[f.name];
        match f.ty {
            Ty::StrList(_) => row.push(v[0].as_str().unwrap_or("").to_string()),
            Ty::Pairs => {
                for p in PAIR_FIELDS {
                    row.push(v[0][p.name].as_str().unwrap_or("").to_string());
                }
            }
            _ => row.push(match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            }),
        }
    }
    let mut w = crate::input::csv::writer(Vec::new());
    let cols = csv_columns(kind);
    let _ = w.write_record(&cols);
    let _ = w.write_record(&row);
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::csv::CsvReader;
    use crate::input::{Bounds, RecordReader};

    #[test]
    fn templates_read_back_as_their_example() {
        let b = Bounds {
            max_record_bytes: 1 << 20,
            max_records: 10,
        };
        for kind in Kind::ALL {
            let text = template_csv(kind);
            let mut rows = Vec::new();
            let n = crate::files::csv_reader(text.as_bytes(), b, kind)
                .read(&mut |_, v| {
                    rows.push(v);
                    Ok(())
                })
                .unwrap();
            assert_eq!(n, 1, "{kind:?}");
            let mut problems = crate::problem::Problems::default();
            let crate::input::Value::Row { cells, .. } = rows.pop().unwrap() else {
                panic!()
            };
            let members = crate::records::convert::csv_members(kind.fields(), cells, &mut problems);
            assert!(problems.is_empty(), "{kind:?}: {problems:?}");
            // Same members as the JSON example.
            let json = crate::input::json::parse_one(&example(kind).to_string()).unwrap();
            let crate::input::Value::Object(mut want) = json else {
                panic!()
            };
            let mut got = members;
            want.sort_by(|a, b| a.0.cmp(&b.0));
            got.sort_by(|a, b| a.0.cmp(&b.0));
            let norm = |v: &[(String, crate::input::Value)]| {
                let mut out = Vec::new();
                crate::input::Value::Object(v.to_vec())
                    .write_json(&mut out, &[])
                    .unwrap();
                serde_json::from_slice::<serde_json::Value>(&out).unwrap()
            };
            // Numbers are text in CSV: compare after JSON rendering.
            assert_eq!(norm(&got), norm(&want), "{kind:?}");
            let _ = CsvReader::new(&b""[..], b);
        }
    }
}
