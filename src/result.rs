//! Result files: the documented JSON shape, written in a streaming way so a file with a million
//! problems needs no more memory than one with none.
//!
//! Owns: `Counts` (the ten counters), `ResultHeader` (everything but the problems), the exact
//! field names and order of the interface, and the `Problem` rendering.
//! Must not: decide counts or messages (`batch` and `records` do), or choose file names (`layout`).

use serde::Serialize;
use std::io::{self, Write};

/// The result file's counters, in the interface's order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub create_success: i64,
    pub update_success: i64,
    pub add_success: i64,
    pub delete_success: i64,
    pub create_failure: i64,
    pub update_failure: i64,
    pub add_failure: i64,
    pub delete_failure: i64,
    pub mode_failure: i64,
}

impl Counts {
    pub fn successes(&self) -> i64 {
        self.create_success + self.update_success + self.add_success + self.delete_success
    }
    pub fn failures(&self) -> i64 {
        self.create_failure
            + self.update_failure
            + self.add_failure
            + self.delete_failure
            + self.mode_failure
    }
    /// Field names as the result file spells them, with their values.
    pub fn named(&self) -> [(&'static str, i64); 9] {
        [
            ("NumCreateSuccess", self.create_success),
            ("NumUpdateSuccess", self.update_success),
            ("NumAddSuccess", self.add_success),
            ("NumDeleteSuccess", self.delete_success),
            ("NumCreateFailure", self.create_failure),
            ("NumUpdateFailure", self.update_failure),
            ("NumAddFailure", self.add_failure),
            ("NumDeleteFailure", self.delete_failure),
            ("NumModeFailure", self.mode_failure),
        ]
    }
}

/// Everything in a result file except its problems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultHeader {
    pub id: i64,
    pub pickup_name: String,
    pub processed_name: String,
    pub source: String,
    pub started_at: String,
    pub ended_at: String,
    pub error_message: Option<String>,
    pub counts: Counts,
    /// A dry run (a file in `validate/`): `"DryRun": true` after `Source`, and no processed
    /// name (`null`), since nothing was applied or moved.
    pub dry_run: bool,
}

fn js<T: Serialize + ?Sized>(v: &T) -> io::Result<String> {
    serde_json::to_string(v).map_err(io::Error::other)
}

/// Writes the result JSON: header, then each problem from `problems`, pretty-printed with two
/// spaces as in the interface's example.
#[allow(clippy::type_complexity)]
pub fn write_result<W: Write + ?Sized>(
    out: &mut W,
    h: &ResultHeader,
    problems: &mut dyn FnMut(&mut dyn FnMut(i64, &str) -> io::Result<()>) -> io::Result<()>,
) -> io::Result<()> {
    writeln!(out, "{{")?;
    writeln!(out, "  \"Id\": {},", h.id)?;
    writeln!(out, "  \"PickupName\": {},", js(&h.pickup_name)?)?;
    if h.dry_run {
        writeln!(out, "  \"ProcessedName\": null,")?;
    } else {
        writeln!(out, "  \"ProcessedName\": {},", js(&h.processed_name)?)?;
    }
    writeln!(out, "  \"Source\": {},", js(&h.source)?)?;
    if h.dry_run {
        writeln!(out, "  \"DryRun\": true,")?;
    }
    writeln!(out, "  \"StartedAt\": {},", js(&h.started_at)?)?;
    writeln!(out, "  \"EndedAt\": {},", js(&h.ended_at)?)?;
    writeln!(out, "  \"ErrorMessage\": {},", js(&h.error_message)?)?;
    for (name, v) in h.counts.named() {
        writeln!(out, "  \"{name}\": {v},")?;
    }
    write!(out, "  \"Problems\": [")?;
    let mut first = true;
    problems(&mut |index, message| {
        let sep = if first { "\n" } else { ",\n" };
        first = false;
        write!(out, "{sep}")?;
        crate::problem::write_json(out, 4, index, message)
    })?;
    if first {
        writeln!(out, "]")?;
    } else {
        writeln!(out, "\n  ]")?;
    }
    writeln!(out, "}}")?;
    Ok(())
}

/// Time as result files write it: UTC, ISO 8601, milliseconds, `Z`.
pub fn iso(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_matches_the_interface_example() {
        let h = ResultHeader {
            id: 123,
            pickup_name: "borrowers.json".into(),
            processed_name: "borrowers.20231220023000161.json".into(),
            source: "SFTP".into(),
            started_at: "2023-12-20T02:30:00.161Z".into(),
            ended_at: "2023-12-20T02:30:02.770Z".into(),
            error_message: None,
            counts: Counts {
                create_success: 20,
                update_success: 2,
                update_failure: 1,
                ..Counts::default()
            },
            dry_run: false,
        };
        let mut out = Vec::new();
        write_result(&mut out, &h, &mut |emit| {
            emit(1, "No borrower for supplied ExternalId exists.")
        })
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("  \""))
            .map(|l| l.split('"').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "Id",
                "PickupName",
                "ProcessedName",
                "Source",
                "StartedAt",
                "EndedAt",
                "ErrorMessage",
                "NumCreateSuccess",
                "NumUpdateSuccess",
                "NumAddSuccess",
                "NumDeleteSuccess",
                "NumCreateFailure",
                "NumUpdateFailure",
                "NumAddFailure",
                "NumDeleteFailure",
                "NumModeFailure",
                "Problems"
            ]
        );
        assert_eq!(v["Problems"][0]["Index"], 1);
        assert_eq!(v["ErrorMessage"], serde_json::Value::Null);

        let mut out = Vec::new();
        write_result(&mut out, &h, &mut |_| Ok(())).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["Problems"], serde_json::json!([]));
    }
}
