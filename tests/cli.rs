//! The command line as a user meets it: `check` output and exit codes, `run`'s summary lines and
//! its refusals (bad config, unusable data dir), all through the real binary.

mod common;

use common::*;
use std::fs;
use std::process::Command;

fn check(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin())
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
fn check_prints_problems_as_a_result_file_would_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("borrowers.json");
    fs::write(
        &f,
        r#"[{"Mode":"create","ExternalId":"B1"},{"Mode":"create","ExternalId":"B2","StateCode":"KSS","Emial":"x"},7]"#,
    )
    .unwrap();
    let (code, out) = check(&[f.to_str().unwrap()]);
    assert_eq!(code, 1);
    // One JSON document; its files under "Files".
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let v = &doc["Files"][0];
    assert_eq!(v["ErrorMessage"], serde_json::Value::Null);
    assert_eq!(v["Records"], 3);
    assert_eq!(
        v["Problems"],
        serde_json::json!([
            {"Index": 1, "Message": "StateCode: 3 characters exceeds the maximum length of 2."},
            {"Index": 1, "Message": "Emial: unknown field; the closest documented field is \"Email\"."},
            {"Index": 2, "Message": "Record is not a JSON object (found a number)."}
        ])
    );
    assert!(doc["Skipped"].as_str().unwrap().contains("need the store"));
    // Nothing was moved.
    assert!(f.exists());
}

#[test]
fn check_of_clean_files_exits_0_and_uses_the_config_when_given() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("loans_1.json");
    fs::write(
        &f,
        r#"[{"Mode":"create","LoanNumber":"L1","LoanTypeId":1}]"#,
    )
    .unwrap();
    let (code, _) = check(&[f.to_str().unwrap()]);
    assert_eq!(code, 0);
    // With the fixture config, lender acme has two divisions: the division is required.
    let cfg = repo().join("fixtures/config.toml");
    let (code, out) = check(&[
        "--config",
        cfg.to_str().unwrap(),
        "--lender",
        "acme",
        f.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "DivisionThreadId: required for create, as this lender has more than one division."
        ),
        "{out}"
    );
}

#[test]
fn check_reports_file_level_errors() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("employees.json");
    fs::write(&f, "[{\"Mode\":\"create\"},").unwrap();
    let (code, out) = check(&[f.to_str().unwrap()]);
    assert_eq!(code, 1);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let v = &doc["Files"][0];
    assert!(
        v["ErrorMessage"]
            .as_str()
            .unwrap()
            .starts_with("The file ends before its JSON array is complete"),
        "{out}"
    );
    assert_eq!(v["Problems"], serde_json::json!([]));
}

#[test]
fn run_prints_a_line_per_file_and_refuses_bad_configs() {
    let home = Home::new(&repo().join("fixtures/config.toml"));
    fs::write(
        home.pickup("beta", "production").join("borrowers.json"),
        r#"[{"Mode":"create","ExternalId":"P1"}]"#,
    )
    .unwrap();
    let out = home.run();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("production/beta borrowers.json: load 1 1 created, 0 updated, 0 added, 0 deleted, 0 failed -> processed/borrowers."),
        "{stdout}"
    );
    assert!(
        stdout.contains("pass complete: 1 file(s) processed"),
        "{stdout}"
    );

    let bad = home.dir.path().join("bad.toml");
    fs::write(&bad, "data_dirr = \"x\"\n").unwrap();
    let out = Command::new(bin())
        .args(["run", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unknown field `data_dirr`"), "{err}");

    let file_as_dir = home.dir.path().join("plain-file");
    fs::write(&file_as_dir, "x").unwrap();
    let cfg = home.dir.path().join("file-dir.toml");
    fs::write(&cfg, format!("data_dir = {:?}\n", file_as_dir.join("data"))).unwrap();
    let out = Command::new(bin())
        .args(["run", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot create data dir"), "{err}");
}

#[test]
fn a_newer_file_of_the_same_name_rotates_the_older_to_its_timestamped_name() {
    let home = Home::new(&repo().join("fixtures/config.toml"));
    let pickup = home.pickup("beta", "sandbox");
    fs::write(
        pickup.join("borrowers.json"),
        r#"[{"Mode":"create","ExternalId":"R1"}]"#,
    )
    .unwrap();
    home.run();
    fs::write(
        pickup.join("borrowers.json"),
        r#"[{"Mode":"update","ExternalId":"R1","City":"X"}]"#,
    )
    .unwrap();
    home.run();
    let processed = names(&home.import("beta", "sandbox").join("processed"));
    let results = names(&home.import("beta", "sandbox").join("results"));
    assert_eq!(processed.len(), 2, "{processed:?}");
    assert_eq!(processed[1], "borrowers.last.json");
    let first_result: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(
            home.import("beta", "sandbox")
                .join("results")
                .join(&results[0]),
        )
        .unwrap(),
    )
    .unwrap();
    // The older file now carries the name its result announced.
    assert_eq!(first_result["ProcessedName"], processed[0].as_str());
    assert_eq!(
        fs::read_to_string(
            home.import("beta", "sandbox")
                .join("processed")
                .join(&processed[0])
        )
        .unwrap(),
        r#"[{"Mode":"create","ExternalId":"R1"}]"#
    );
    assert_eq!(results[0], processed[0].replace(".json", ".result.json"));
}
