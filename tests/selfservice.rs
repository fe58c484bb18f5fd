//! Lender self-service (issue 12), end to end with the real binary:
//! - every fixture JSON file of the scenario, as CSV (`fixtures/csv/`, generated from the JSON
//!   by the column convention; `UPDATE_FIXTURES=1` rewrites them), gives the same results and
//!   store as the same records in JSON;
//! - a dry run in `validate/` reports store-level problems and changes neither the store nor
//!   `processed/`;
//! - a failed-records file, corrected and uploaded again, applies cleanly (JSON and CSV);
//! - the JSON Schemas accept the fixtures' accepted records and reject the rejected ones where
//!   the rule is expressible in a schema;
//! - `bulkload schema` / `bulkload template` print what `lookups/` holds.

mod common;

use bulkload::input::Value;
use bulkload::records::{Kind, Ty};
use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

fn kind_of(name: &str) -> Option<Kind> {
    match bulkload::layout::classify(name) {
        bulkload::layout::FileClass::Records(k) => Some(k),
        _ => None,
    }
}

/// A JSON record as CSV cells (canonical column name → text), or `None` when the record cannot
/// be written as a CSV row (not an object, a name twice or unknown, a JSON type CSV has no
/// way to say, `#NULL` as text...).
fn csv_cells(kind: Kind, v: &Value) -> Option<BTreeMap<String, String>> {
    let Value::Object(members) = v else {
        return None;
    };
    if members.is_empty() {
        return None;
    }
    let text = |v: &Value| -> Option<String> {
        match v {
            Value::Null => Some("#NULL".into()),
            Value::String(s) if s.contains('\0') || s.trim().eq_ignore_ascii_case("#NULL") => None,
            Value::String(s) if s.trim().is_empty() => Some("#NULL".into()),
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    };
    let mut out = BTreeMap::new();
    for (name, value) in members {
        let f = kind
            .fields()
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))?;
        if out
            .keys()
            .any(|k: &String| k == f.name || k.starts_with(&format!("{}.", f.name)))
        {
            return None;
        }
        match (f.ty, value) {
            (_, Value::Null) => {
                out.insert(f.name.to_string(), "#NULL".into());
            }
            (Ty::Int | Ty::Decimal, Value::Number(n)) => {
                out.insert(f.name.to_string(), n.to_string());
            }
            (Ty::Str(_) | Ty::DateTime, Value::String(_)) => {
                out.insert(f.name.to_string(), text(value)?);
            }
            (Ty::StrList(_), Value::Array(items)) => {
                if items.is_empty() {
                    out.insert(f.name.to_string(), "#NULL".into());
                }
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) if !s.trim().is_empty() && !s.contains('\0') => {
                            out.insert(format!("{}.{}", f.name, i + 1), s.clone());
                        }
                        _ => return None,
                    }
                }
            }
            (Ty::Pairs, Value::Array(items)) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    let Value::Object(pm) = item else {
                        return None;
                    };
                    if pm.is_empty() {
                        return None;
                    }
                    for (pn, pv) in pm {
                        let pf = bulkload::records::convert::PAIR_FIELDS
                            .iter()
                            .find(|f| f.name.eq_ignore_ascii_case(pn))?;
                        let col = format!("{}.{}.{}", f.name, i + 1, pf.name);
                        if out.contains_key(&col) {
                            return None;
                        }
                        out.insert(col, text(pv)?);
                    }
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The CSV form of a JSON fixture file: (the records CSV can express, as JSON; the same as CSV),
/// or `None` for a file that is not a JSON array of some type.
fn to_csv(name: &str, bytes: &[u8]) -> Option<(String, String)> {
    let kind = kind_of(name)?;
    if !name.ends_with(".json") {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let Ok(Value::Array(items)) =
        bulkload::input::json::parse_one(text.trim_start_matches('\u{feff}'))
    else {
        return None;
    };
    let mut kept = Vec::new();
    for item in items {
        if let Some(cells) = csv_cells(kind, &item) {
            kept.push((item, cells));
        }
    }
    if kept.is_empty() {
        return None;
    }
    // Columns in field-table order, then item and member order.
    let order = |c: &str| {
        let mut parts = c.split('.');
        let base = parts.next().unwrap();
        let fi = kind.fields().iter().position(|f| f.name == base).unwrap();
        let item: u32 = parts.next().map_or(0, |n| n.parse().unwrap());
        let member = parts.next().map_or(0, |m| {
            bulkload::records::convert::PAIR_FIELDS
                .iter()
                .position(|f| f.name == m)
                .unwrap()
                + 1
        });
        (fi, item, member)
    };
    let mut cols: Vec<String> = kept.iter().flat_map(|(_, c)| c.keys().cloned()).collect();
    cols.sort_by_key(|c| order(c));
    cols.dedup();
    let mut w = bulkload::input::csv::writer(Vec::new());
    w.write_record(&cols).unwrap();
    let mut json = String::from("[\n");
    for (i, (item, cells)) in kept.iter().enumerate() {
        let row: Vec<&str> = cols
            .iter()
            .map(|c| cells.get(c).map_or("", String::as_str))
            .collect();
        w.write_record(&row).unwrap();
        let mut out = Vec::new();
        item.write_json(&mut out, &[]).unwrap();
        json.push_str(&String::from_utf8(out).unwrap());
        json.push_str(if i + 1 < kept.len() { ",\n" } else { "\n" });
    }
    json.push_str("]\n");
    Some((json, String::from_utf8(w.into_inner().unwrap()).unwrap()))
}

fn strip_lines(s: &str) -> String {
    // " (CSV line N)" names the line; the JSON run has none.
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(" (CSV line ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 11..];
        let j = after.find(')').unwrap();
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    // File names (not the lookups/ a message points to).
    out.replace(".csv\"", ".json\"")
        .replace(".csv |", ".json |")
        .replace(".csv\n", ".json\n")
}

#[test]
fn csv_files_give_the_same_results_and_store_as_json() {
    let scenario = repo().join("fixtures/scenario");
    let csv_dir = repo().join("fixtures/csv");
    let update = std::env::var_os("UPDATE_FIXTURES").is_some();
    let config = repo().join("fixtures/config.toml");
    let (as_json, as_csv) = (Home::new(&config), Home::new(&config));
    let mut kinds = std::collections::BTreeSet::new();
    for pass in ["pass1", "pass2"] {
        for lender in names(&scenario.join(pass)) {
            for name in names(&scenario.join(pass).join(&lender)) {
                let bytes = fs::read(scenario.join(pass).join(&lender).join(&name)).unwrap();
                let Some((json, csv)) = to_csv(&name, &bytes) else {
                    continue;
                };
                kinds.insert(kind_of(&name).unwrap().prefix());
                let dir = csv_dir.join(pass).join(&lender);
                let csv_name = name.replace(".json", ".csv");
                if update {
                    fs::create_dir_all(&dir).unwrap();
                    fs::write(dir.join(&name), &json).unwrap();
                    fs::write(dir.join(&csv_name), &csv).unwrap();
                } else {
                    assert_eq!(
                        fs::read_to_string(dir.join(&csv_name)).unwrap_or_default(),
                        csv,
                        "fixtures/csv/{pass}/{lender}/{csv_name} is stale; run with UPDATE_FIXTURES=1"
                    );
                    assert_eq!(fs::read_to_string(dir.join(&name)).unwrap(), json);
                }
                fs::write(as_json.pickup(&lender, "sandbox").join(&name), &json).unwrap();
                fs::write(as_csv.pickup(&lender, "sandbox").join(&csv_name), &csv).unwrap();
            }
        }
        as_json.run();
        as_csv.run();
    }
    assert_eq!(
        kinds.len(),
        Kind::ALL.len(),
        "every type has a CSV fixture: {kinds:?}"
    );
    let results = |h: &Home| {
        results(&h.data)
            .into_iter()
            .filter(|(n, _)| !n.contains(".failed."))
            .map(|(n, v)| {
                format!(
                    "## {}\n{}\n",
                    norm_stamps(&n),
                    serde_json::to_string_pretty(&v).unwrap()
                )
            })
            .collect::<String>()
    };
    let (j, c) = (results(&as_json), results(&as_csv));
    assert!(c.contains("(CSV line "), "CSV problems name their line");
    assert_eq!(strip_lines(&c), j);
    assert_eq!(
        strip_lines(&store_dump(&as_csv.data)),
        store_dump(&as_json.data)
    );
}

fn write(dir: &Path, name: &str, text: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), text).unwrap();
}

/// Record tables only (a dry run adds a load row and its problems, nothing else).
fn records_dump(data: &Path) -> String {
    let dump = store_dump(data);
    let mut out = String::new();
    let mut keep = true;
    for line in dump.lines() {
        if let Some(h) = line.strip_prefix("== ") {
            keep = !h.ends_with(" bulk_loads") && !h.ends_with(" load_problems");
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn a_dry_run_reports_store_level_problems_and_changes_nothing() {
    let home = Home::new(&repo().join("fixtures/config.toml"));
    write(
        &home.pickup("beta", "sandbox"),
        "employees.json",
        r#"[{"Mode":"create","ExternalId":"B-E1","Email":"shared@example.test"}]"#,
    );
    write(
        &home.pickup("acme", "sandbox"),
        "loans.json",
        r#"[{"Mode":"create","LoanNumber":"L1","DivisionThreadId":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}]"#,
    );
    home.run();
    let before = records_dump(&home.data);
    let acme = home.import("acme", "sandbox");
    let processed = names(&acme.join("processed"));

    write(
        &acme.join("validate"),
        "employees.csv",
        "Mode,ExternalId,Email,DivisionThreadIds.1\r\n\
         create,A-E1,SHARED@example.test,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\
         create,A-E2,a-e2@example.test,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\
         create,A-E2,a-e3@example.test,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
    );
    write(
        &acme.join("validate"),
        "loan_borrowers.json",
        r#"[{"Mode":"add","Loan_Number":"NOPE","Account_ExternalId":"X"}]"#,
    );
    let out = home.run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("dry run"), "{stdout}");

    let results = acme.join("results");
    let emp: Vec<String> = names(&results)
        .into_iter()
        .filter(|n| n.starts_with("employees.") && n.ends_with(".validate.json"))
        .collect();
    assert_eq!(emp.len(), 1, "{:?}", names(&results));
    let r: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(results.join(&emp[0])).unwrap()).unwrap();
    assert_eq!(r["DryRun"], true);
    assert_eq!(r["ProcessedName"], serde_json::Value::Null);
    assert_eq!(r["NumCreateSuccess"], 1);
    assert_eq!(r["NumCreateFailure"], 2);
    let msgs: Vec<&str> = r["Problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Message"].as_str().unwrap())
        .collect();
    assert!(
        msgs[0].starts_with("Email: \"SHARED@example.test\" is already in use"),
        "{msgs:?}"
    );
    assert!(msgs[0].ends_with("(CSV line 2)"), "{msgs:?}");
    // Within the dry run, the earlier record counts: the second A-E2 is taken.
    assert!(
        msgs[1].starts_with("ExternalId: \"A-E2\" is already used"),
        "{msgs:?}"
    );
    assert!(msgs[1].ends_with("(CSV line 4)"), "{msgs:?}");

    let lbs: Vec<String> = names(&results)
        .into_iter()
        .filter(|n| n.starts_with("loan_borrowers.") && n.ends_with(".validate.json"))
        .collect();
    let r: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(results.join(&lbs[0])).unwrap()).unwrap();
    assert_eq!(r["DryRun"], true);
    assert_eq!(r["NumAddFailure"], 1);
    assert!(r["Problems"][0]["Message"]
        .as_str()
        .unwrap()
        .contains("No loan for supplied Loan_Number exists"));

    // Failed records of a dry run too, in the input's format.
    let failed =
        fs::read_to_string(results.join(emp[0].replace(".validate.json", ".failed.csv"))).unwrap();
    assert!(
        failed.starts_with("Mode,ExternalId,Email,DivisionThreadIds.1,_problems\r\n"),
        "{failed}"
    );
    assert_eq!(failed.matches("\r\ncreate,").count(), 2, "{failed}");

    // Nothing applied, nothing rotated, validate/ emptied.
    assert_eq!(records_dump(&home.data), before);
    assert_eq!(names(&acme.join("processed")), processed);
    assert!(names(&acme.join("validate")).is_empty());
}

#[test]
fn failed_records_corrected_and_sent_again_apply_cleanly() {
    let home = Home::new(&repo().join("fixtures/config.toml"));
    let pickup = home.pickup("acme", "sandbox");
    write(
        &pickup,
        "employees.csv",
        "Mode,ExternalId,FirstName,Email,DivisionThreadIds.1\n\
         create,C1,Ann,c1@example.test,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\
         create,C2,\"Bob, Jr.\",not-an-email,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\
         create,C3,Cy,c3@example.test,\n",
    );
    write(
        &pickup,
        "borrowers.json",
        r#"[{"Mode":"create","ExternalId":"J1","Email":"j1@example.test"},
            {"Mode":"create","ExternalId":"J2","Email":"j2@","Phone":"1"},
            {"Mode":"create","ExternalId":"J3","FirstName":"Dee","Email":"j3@example.test"}]"#,
    );
    home.run();
    let results = home.import("acme", "sandbox").join("results");
    let find = |suffix: &str| -> String {
        let n: Vec<String> = names(&results)
            .into_iter()
            .filter(|n| n.ends_with(suffix))
            .collect();
        assert_eq!(n.len(), 1, "{suffix}: {:?}", names(&results));
        fs::read_to_string(results.join(&n[0])).unwrap()
    };
    let csv = find(".failed.csv");
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.contains("\"Bob, Jr.\""), "{csv}");
    assert!(!csv.contains("C1"), "{csv}");
    // The lender fixes the cells and sends the file back, _problems column and all.
    let fixed = csv.replace("not-an-email", "c2@example.test").replace(
        "c3@example.test,,",
        "c3@example.test,bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb,",
    );
    write(&pickup, "employees_fixed.csv", &fixed);

    let json: serde_json::Value = serde_json::from_str(&find(".failed.json")).unwrap();
    let records = json.as_array().unwrap();
    assert_eq!(records.len(), 1, "{json}");
    assert_eq!(records[0]["ExternalId"], "J2");
    assert_eq!(
        records[0]["_problems"].as_array().unwrap().len(),
        2,
        "{json}"
    );
    let mut fixed = records[0].clone();
    fixed["Email"] = "j2@example.test".into();
    let phone = fixed.as_object_mut().unwrap().remove("Phone").unwrap();
    fixed["PhonePrimary"] = phone;
    write(
        &pickup,
        "borrowers_fixed.json",
        &serde_json::to_string_pretty(&serde_json::json!([fixed])).unwrap(),
    );
    home.run();
    for name in ["employees_fixed", "borrowers_fixed"] {
        let n: Vec<String> = names(&results)
            .into_iter()
            .filter(|n| n.starts_with(&format!("{name}.")) && n.ends_with(".result.json"))
            .collect();
        let r: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(results.join(&n[0])).unwrap()).unwrap();
        assert_eq!(r["Problems"], serde_json::json!([]), "{name}: {r}");
        assert!(r["NumCreateSuccess"].as_i64().unwrap() >= 1, "{name}: {r}");
        assert!(!names(&results)
            .iter()
            .any(|n| n.starts_with(&format!("{name}.")) && n.contains(".failed.")));
    }
}

#[test]
fn schemas_accept_accepted_records_and_reject_rejected_ones_where_expressible() {
    let scenario = repo().join("fixtures/scenario");
    let home = Home::new(&repo().join("fixtures/config.toml"));
    let mut files = Vec::new();
    for pass in ["pass1", "pass2"] {
        for lender in names(&scenario.join(pass)) {
            copy_dir(
                &scenario.join(pass).join(&lender),
                &home.pickup(&lender, "sandbox"),
            );
            for name in names(&scenario.join(pass).join(&lender)) {
                files.push((pass, lender.clone(), name));
            }
        }
        home.run();
    }
    // Problems per (lender, pickup name, load in order) from the result files.
    let mut loads: BTreeMap<(String, String), Vec<serde_json::Value>> = BTreeMap::new();
    for (n, v) in results(&home.data) {
        if n.contains(".result.json") {
            let lender = n.split('/').next().unwrap().to_string();
            let pickup = v["PickupName"].as_str().unwrap().to_string();
            loads.entry((lender, pickup)).or_default().push(v);
        }
    }
    let mut seen = BTreeMap::<(String, String), usize>::new();
    let (mut accepted, mut rejected) = (0, 0);
    for (pass, lender, name) in files {
        let Some(kind) = kind_of(&name) else { continue };
        if !name.ends_with(".json") {
            continue;
        }
        let text =
            fs::read_to_string(scenario.join(pass).join(&lender).join(&name)).unwrap_or_default();
        let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(&text)
        else {
            continue;
        };
        let key = (lender.clone(), name.clone());
        let i = seen.entry(key.clone()).or_default();
        let result = &loads[&key][*i];
        *i += 1;
        let schema = bulkload::templates::schema(kind);
        let validator = jsonschema::draft202012::new(&schema).unwrap();
        for (index, item) in items.iter().enumerate() {
            let msgs: Vec<String> = result["Problems"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["Index"] == index)
                .map(|p| p["Message"].as_str().unwrap().to_string())
                .collect();
            let valid = validator.is_valid(item);
            if msgs.is_empty() {
                accepted += 1;
                assert!(
                    valid,
                    "{lender}/{name}[{index}] accepted but the schema refuses it: {item}\n{:?}",
                    validator
                        .iter_errors(item)
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                );
            } else if msgs.iter().any(|m| expressible(kind, m)) {
                rejected += 1;
                assert!(!valid, "{lender}/{name}[{index}] rejected ({msgs:?}) but the schema accepts it: {item}");
            }
        }
    }
    assert!(
        accepted > 30 && rejected > 10,
        "{accepted} accepted, {rejected} rejected"
    );
}

/// Whether a problem's rule is one a JSON Schema of one record can say.
fn expressible(kind: Kind, m: &str) -> bool {
    let lid = kind.lender_id_field().unwrap_or("-");
    (m.contains(": unknown field;") && !m.contains('['))
        || m.contains(": expected ")
        || m.contains("exceeds the maximum length")
        || m.contains("is not a thread id")
        || m.contains("is not a division thread id")
        || m.starts_with("Mode: required")
        || (m.starts_with("Mode: \"") && m.contains("is not valid for"))
        || m.starts_with(&format!("{lid}: required for create"))
        || m.starts_with("ThreadId: must not be supplied for create")
        || m.starts_with("Record is not a JSON object")
}

#[test]
fn schema_and_template_commands_print_what_lookups_hold() {
    let home = Home::new(&repo().join("fixtures/config.toml"));
    home.run();
    let lookups = home.import("acme", "sandbox").join("lookups");
    for kind in Kind::ALL {
        let p = kind.prefix();
        let run = |args: &[&str]| {
            let out = std::process::Command::new(bin())
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(
            run(&["schema", p]),
            fs::read_to_string(lookups.join(format!("schemas/{p}.schema.json"))).unwrap()
        );
        assert_eq!(
            run(&["template", p]),
            fs::read_to_string(lookups.join(format!("templates/{p}.example.json"))).unwrap()
        );
        assert_eq!(
            run(&["template", p, "--csv"]),
            fs::read_to_string(lookups.join(format!("templates/{p}.csv"))).unwrap()
        );
    }
    let out = std::process::Command::new(bin())
        .args(["schema", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn check(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(bin())
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn check_with_a_downloaded_lookups_folder_finds_what_one_file_shows() {
    let home = Home::new(&repo().join("fixtures/config.toml"));
    home.run();
    // What a lender downloads: acme's lookups/ (two divisions), no config, no secret.
    let lookups = home.import("acme", "sandbox").join("lookups");
    let dir = tempfile::tempdir().unwrap();
    let emp = dir.path().join("employees.csv");
    fs::write(
        &emp,
        "Mode,ExternalId,Email,DivisionThreadIds.1\n\
         create,E1,a@example.test,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\
         create,E1,b@example.test,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\
         create,E2,A@example.test,dddddddddddddddddddddddddddddddd\n\
         update,E1,a@example.test,\n",
    )
    .unwrap();
    let pos = dir.path().join("loan_positions.json");
    fs::write(
        &pos,
        r#"[{"Mode":"add","Loan_Number":"L1","Account_ExternalId":"E1","PositionName":"AEA"},
            {"Mode":"add","Loan_Number":"L1","Account_ExternalId":"E1","PositionName":"AEA"},
            {"Mode":"add","Loan_Number":"L1","Account_ExternalId":"E1","PositionName":"Nope"}]"#,
    )
    .unwrap();
    let (code, out) = check(&[
        "--lookups",
        lookups.to_str().unwrap(),
        "--format",
        "json",
        emp.to_str().unwrap(),
        pos.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    // ONE JSON document, whatever the number of files.
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let messages = |i: usize| -> Vec<String> {
        doc["Files"][i]["Problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{} {}", p["Index"], p["Message"].as_str().unwrap()))
            .collect()
    };
    assert_eq!(
        messages(0),
        vec![
            "1 ExternalId: \"E1\" is also created by record 0 of this file; only the first create can succeed. (CSV line 3)",
            "2 DivisionThreadIds: division \"dddddddddddddddddddddddddddddddd\" does not exist for this lender (see lookups/divisions.csv). (CSV line 4)",
        ]
    );
    assert_eq!(doc["Files"][0]["Records"], 4);
    assert_eq!(doc["Files"][0]["ProblemsByField"]["ExternalId"], 1);
    let m = messages(1);
    assert_eq!(
        m[0],
        "1 The same pair is also added by record 0 of this file."
    );
    assert!(m[1].starts_with("2 PositionName: \"Nope\""), "{m:?}");
    assert_eq!(doc["Problems"], 4);
    assert!(!doc["Skipped"]
        .as_str()
        .unwrap()
        .contains("Division, lookup"));

    // Two records giving one account email.
    let ba = dir.path().join("broker_accounts.json");
    fs::write(
        &ba,
        r#"[{"Mode":"create","ExternalId":"X1","Email":"same@example.test"},
            {"Mode":"create","ExternalId":"X2","Email":"SAME@example.test"}]"#,
    )
    .unwrap();
    let (_, out) = check(&["--format", "text", ba.to_str().unwrap()]);
    assert!(
        out.contains(
            "record 1: Email: \"SAME@example.test\" is also given to record 0 of this file"
        ),
        "{out}"
    );
    assert!(
        out.contains("2 record(s), 1 problem(s); by field: Email 1"),
        "{out}"
    );
}

#[test]
fn a_dry_run_killed_at_every_crash_point_then_rerun_equals_an_uninterrupted_one() {
    let setup = || {
        let home = Home::new(&repo().join("fixtures/config.toml"));
        write(
            &home.pickup("beta", "sandbox"),
            "employees.json",
            r#"[{"Mode":"create","ExternalId":"B-E1","Email":"shared@example.test"}]"#,
        );
        home.run();
        write(
            &home.import("acme", "sandbox").join("validate"),
            "employees.csv",
            "Mode,ExternalId,Email,DivisionThreadIds.1\n\
             create,A-E1,shared@example.test,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\
             create,A-E2,a-e2@example.test,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
        );
        home
    };
    let clean = setup();
    clean.run();
    let want = snapshot(&clean.data);
    assert!(want.contains(".validate.json"), "{want}");
    for point in ["claimed", "record", "committed", "result"] {
        let home = setup();
        let out = home
            .run_command()
            .env("BULKLOAD_FAILPOINT", point)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{point}: not killed");
        home.run();
        assert_eq!(snapshot(&home.data), want, "killed at {point}");
    }
}
