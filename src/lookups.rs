//! Lookup files: the reference tables a lender needs to fill in ids, written as `.csv` and
//! `.json` into `lookups/` of each lender and environment, atomically, at every pass.
//!
//! Owns: the names, columns and JSON keys of the eight lookups (DESIGN.md, "Lookups").
//! Must not: read the store; rewrite a file whose content has not changed.

use serde_json::json;
use std::io;
use std::path::Path;

use crate::config::{Config, Lender};
use crate::fsutil::write_atomic;

/// One lookup: its file name stem, its columns, and its rows.
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [&'static str],
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// The eight lookups of a lender, in a fixed order.
pub fn tables(cfg: &Config, lender: &Lender) -> Vec<Table> {
    let mut out = vec![
        Table {
            name: "divisions",
            columns: &["DivisionThreadId", "SystemName", "EditableName"],
            rows: lender
                .divisions
                .iter()
                .map(|d| {
                    vec![
                        json!(d.thread_id),
                        json!(d.system_name),
                        json!(d.editable_name),
                    ]
                })
                .collect(),
        },
        Table {
            name: "positions",
            columns: &["DivisionThreadId", "Name"],
            rows: lender
                .divisions
                .iter()
                .flat_map(|d| {
                    d.positions
                        .iter()
                        .map(move |p| vec![json!(d.thread_id), json!(p)])
                })
                .collect(),
        },
    ];
    for (name, entries) in cfg.lookups.tables() {
        out.push(Table {
            name,
            columns: &["Id", "Name"],
            rows: entries
                .iter()
                .map(|e| vec![json!(e.id), json!(e.name)])
                .collect(),
        });
    }
    out
}

fn csv_field(v: &serde_json::Value) -> String {
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

pub fn to_csv(t: &Table) -> String {
    let mut out = t.columns.join(",");
    out.push_str("\r\n");
    for row in &t.rows {
        let cells: Vec<String> = row.iter().map(csv_field).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

pub fn to_json(t: &Table) -> String {
    let rows: Vec<serde_json::Value> = t
        .rows
        .iter()
        .map(|row| {
            let mut m = serde_json::Map::new();
            for (c, v) in t.columns.iter().zip(row) {
                m.insert((*c).to_string(), v.clone());
            }
            serde_json::Value::Object(m)
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}

/// Writes `content` to `path` unless it holds it already.
fn write_if_changed(path: &Path, content: &str) -> io::Result<()> {
    if std::fs::read(path).ok().as_deref() == Some(content.as_bytes()) {
        return Ok(());
    }
    write_atomic(path, content.as_bytes())
}

/// Writes every lookup of `lender` into `dir`, and the templates (`templates/<type>.csv`,
/// `templates/<type>.example.json`) and schemas (`schemas/<type>.schema.json`) of every record
/// type, skipping files already up to date.
pub fn write_all(cfg: &Config, lender: &Lender, dir: &Path) -> io::Result<()> {
    for t in tables(cfg, lender) {
        for (ext, content) in [("csv", to_csv(&t)), ("json", to_json(&t))] {
            write_if_changed(&dir.join(format!("{}.{ext}", t.name)), &content)?;
        }
    }
    let (templates, schemas) = (dir.join("templates"), dir.join("schemas"));
    for d in [&templates, &schemas] {
        std::fs::create_dir_all(d)?;
        crate::fsutil::remove_stale_temps(d)?;
    }
    for kind in crate::records::Kind::ALL {
        let p = kind.prefix();
        use crate::templates as t;
        write_generated(&templates.join(format!("{p}.csv")), &t::template_csv(kind))?;
        write_generated(
            &templates.join(format!("{p}.example.json")),
            &t::example_json(kind),
        )?;
        write_generated(
            &schemas.join(format!("{p}.schema.json")),
            &t::schema_text(kind),
        )?;
    }
    Ok(())
}

/// Writes a generated file (a template or schema) unless it holds `content` already: atomically
/// (a temporary name, then a rename) but without fsync. They are derived from the code and
/// rewritten by any pass that finds them different, so a crash costs a rewrite at most, and the
/// first pass of an install does not wait for 27 fsyncs per lender and environment.
fn write_generated(path: &Path, content: &str) -> io::Result<()> {
    if std::fs::read(path).ok().as_deref() == Some(content.as_bytes()) {
        return Ok(());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_json() {
        let cfg = Config::embedded().unwrap();
        let t = tables(&cfg, &cfg.lenders[0]);
        assert_eq!(t.len(), 8);
        assert_eq!(
            to_csv(&t[0]),
            "DivisionThreadId,SystemName,EditableName\r\n0123456789abcdef0123456789abcdef,main,Main Division\r\n"
        );
        let j: serde_json::Value = serde_json::from_str(&to_json(&t[2])).unwrap();
        assert_eq!(j[0]["Id"], 1);
        assert_eq!(j[0]["Name"], "Purchase");
        assert_eq!(csv_field(&json!("a,\"b\"")), "\"a,\"\"b\"\"\"");
    }
}
