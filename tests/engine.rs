//! The engine and the file intake through the real binary: defects found when the engine was
//! restructured (blank files decided after the claim, a store folder error named as such, load ids
//! per lender), and a pass that a bad file or a bad lender never stops.

mod common;

use common::*;
use std::fs;
use std::process::Command;

fn results_of(home: &Home, lender: &str) -> Vec<serde_json::Value> {
    let dir = home.import(lender, "sandbox").join("results");
    names(&dir)
        .iter()
        .map(|n| serde_json::from_str(&fs::read_to_string(dir.join(n)).unwrap()).unwrap())
        .collect()
}

/// Engine issue: "A blank pickup file is tested and deleted before it is claimed: an upload
/// renamed onto that name in between is deleted unread." Now the file is claimed first: a pass
/// killed right after claiming a blank file leaves the pickup name free, a new upload of that
/// name is a new file, and the next pass discards only the claimed blank one.
#[test]
fn a_blank_file_is_decided_after_its_claim_and_a_new_upload_of_its_name_survives() {
    let home = Home::new(&repo().join("fixtures/config.toml"));
    let pickup = home.pickup("beta", "sandbox");
    fs::write(pickup.join("borrowers.json"), "  \n").unwrap();
    let out = home
        .run_command()
        .env("BULKLOAD_FAILPOINT", "claimed")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the failpoint kills the pass");
    // The blank file is claimed (out of pickup/), not yet deleted.
    assert!(!pickup.join("borrowers.json").exists());
    // An upload of the same name arrives.
    fs::write(
        pickup.join("borrowers.json"),
        r#"[{"Mode":"create","ExternalId":"NEW1"}]"#,
    )
    .unwrap();
    let out = home.run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("blank file discarded"), "{stdout}");
    let results = results_of(&home, "beta");
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0]["NumCreateSuccess"], 1);
    assert_eq!(results[0]["PickupName"], "borrowers.json");
    assert!(names(&home.data.join("work/sandbox/beta")).is_empty());
}

/// Hardening issue, item 1: a name too long for the derived names (placed by other means than
/// the SFTP server, which refuses it) becomes that file's result; the pass goes on with the
/// other files and lenders and exits 0, and nothing is left in work/.
#[test]
fn a_too_long_name_is_refused_in_its_own_result_and_the_pass_goes_on() {
    let home = Home::new(&repo().join("fixtures/config.toml"));
    let long = format!("borrowers_{}.json", "x".repeat(235));
    assert!(long.len() > 240 && long.len() <= 255);
    let pickup = home.pickup("acme", "sandbox");
    fs::write(
        pickup.join(&long),
        r#"[{"Mode":"create","ExternalId":"L1"}]"#,
    )
    .unwrap();
    fs::write(
        pickup.join("borrowers.json"),
        r#"[{"Mode":"create","ExternalId":"OK1"}]"#,
    )
    .unwrap();
    fs::write(
        home.pickup("beta", "sandbox").join("borrowers.json"),
        r#"[{"Mode":"create","ExternalId":"OK2"}]"#,
    )
    .unwrap();
    home.run();
    let acme = results_of(&home, "acme");
    assert_eq!(acme.len(), 2, "{acme:?}");
    let refused: Vec<_> = acme
        .iter()
        .filter(|r| !r["ErrorMessage"].is_null())
        .collect();
    assert_eq!(refused.len(), 1);
    let msg = refused[0]["ErrorMessage"].as_str().unwrap();
    assert!(msg.contains("longer than the limit of 209 bytes"), "{msg}");
    assert!(refused[0]["PickupName"]
        .as_str()
        .unwrap()
        .ends_with("~name-too-long"));
    assert_eq!(results_of(&home, "beta")[0]["NumCreateSuccess"], 1);
    assert!(names(&home.data.join("work/sandbox/acme")).is_empty());
    assert!(names(&pickup).is_empty());
    // A second pass has nothing left to do.
    let out = home.run();
    assert!(String::from_utf8_lossy(&out.stdout).contains("pass complete: 0 file(s)"));
}

/// Hardening issue, item 1: one lender's folders failing never stops the others; the pass
/// reports the skip and exits 0, and the lender is served once its folders are right.
#[test]
fn a_lender_whose_folders_fail_is_skipped_and_the_others_are_served() {
    let home = Home::new(&repo().join("fixtures/config.toml"));
    let acme_pickup = home.pickup("acme", "sandbox");
    fs::write(
        acme_pickup.join("borrowers.json"),
        r#"[{"Mode":"create","ExternalId":"A1"}]"#,
    )
    .unwrap();
    fs::write(
        home.pickup("beta", "sandbox").join("borrowers.json"),
        r#"[{"Mode":"create","ExternalId":"B1"}]"#,
    )
    .unwrap();
    // acme's results folder is a file: its tree cannot be made.
    let results = home.import("acme", "sandbox").join("results");
    fs::write(&results, "in the way").unwrap();
    let out = home.run_command().output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a pass that skipped something exits 1"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("sandbox/acme (all files): skipped"),
        "{stdout}"
    );
    assert!(stdout.contains("1 skipped"), "{stdout}");
    assert_eq!(results_of(&home, "beta").len(), 1);
    assert!(
        acme_pickup.join("borrowers.json").exists(),
        "left for the next pass"
    );
    fs::remove_file(&results).unwrap();
    home.run();
    assert_eq!(results_of(&home, "acme")[0]["NumCreateSuccess"], 1);
}

/// Engine issue: load ids are numbered per lender, so a lender's ids say nothing about the
/// others' volume.
#[test]
fn load_ids_are_numbered_per_lender() {
    let home = Home::new(&repo().join("fixtures/config.toml"));
    for (lender, n) in [("acme", 3), ("beta", 2)] {
        let pickup = home.pickup(lender, "sandbox");
        for i in 0..n {
            fs::write(
                pickup.join(format!("borrowers_{i}.json")),
                format!(r#"[{{"Mode":"create","ExternalId":"{lender}{i}"}}]"#),
            )
            .unwrap();
        }
    }
    home.run();
    for (lender, n) in [("acme", 3), ("beta", 2)] {
        let mut ids: Vec<i64> = results_of(&home, lender)
            .iter()
            .map(|r| r["Id"].as_i64().unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, (1..=n).collect::<Vec<_>>(), "{lender}");
    }
}

/// Engine issue: "An I/O error is reported as ToSqlConversionFailure": a store folder that
/// cannot be made is named as such.
#[test]
fn a_store_folder_that_cannot_be_made_is_named() {
    let home = Home::new(&repo().join("fixtures/config.toml"));
    fs::create_dir_all(&home.data).unwrap();
    fs::write(home.data.join("db"), "not a folder").unwrap();
    let out = Command::new(bin())
        .args(["run", "--config", home.config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot create the store's folder"), "{err}");
    assert!(!err.contains("ToSqlConversion"), "{err}");
}
