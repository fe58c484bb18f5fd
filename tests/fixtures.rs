//! The fixture scenario: `fixtures/scenario/passN/<lender>/` are pickup files of every record
//! type with accepted and rejected records (each rule of DESIGN.md at least once) and bad files.
//! Each pass runs the real binary; its result files, folder listings and (at the end) the store
//! are compared with `fixtures/scenario/expected/`, times, stamps and thread ids normalised.
//! `UPDATE_FIXTURES=1 cargo test --test fixtures` rewrites the expected files (review the diff).

mod common;

use common::*;
use std::fs;
use std::path::Path;

fn compare_or_update(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(path)
        .unwrap_or_else(|_| panic!("missing {}; run with UPDATE_FIXTURES=1", path.display()));
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(10)
            .map(|(i, (a, b))| format!("line {}:\n  expected: {a}\n  actual:   {b}", i + 1))
            .collect();
        panic!(
            "{} differs ({} vs {} lines):\n{}",
            path.display(),
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

#[test]
fn fixture_scenario_matches_expected_results_names_and_store() {
    scenario(Backend::Sqlite);
}

/// The same scenario on PostgreSQL: the same results, names and store (issue 14).
#[test]
fn fixture_scenario_on_postgres_matches_the_same_expected_files() {
    scenario(Backend::Postgres);
}

fn scenario(backend: Backend) {
    if backend == Backend::Postgres && std::env::var_os("UPDATE_FIXTURES").is_some() {
        return; // the expected files come from the SQLite run; PostgreSQL must match them
    }
    let scenario = repo().join("fixtures/scenario");
    let home = Home::with_backend(&repo().join("fixtures/config.toml"), backend);
    let expected = scenario.join("expected");
    let mut pass_dirs = names(&scenario);
    pass_dirs.retain(|n| n.starts_with("pass"));
    assert!(pass_dirs.len() >= 2);
    let mut seen = std::collections::BTreeSet::new();
    for pass in &pass_dirs {
        for lender in names(&scenario.join(pass)) {
            copy_dir(
                &scenario.join(pass).join(&lender),
                &home.pickup(&lender, "sandbox"),
            );
        }
        let out = home.run();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("pass complete"), "{stdout}");

        compare_or_update(
            &expected.join(format!("{pass}.listing.txt")),
            &listing(&home.data),
        );
        // The result files this pass wrote, in name order.
        let mut text = String::new();
        for (name, v) in results(&home.data) {
            if seen.insert(name.clone()) {
                text.push_str(&format!(
                    "## {}\n{}\n",
                    norm_stamps(&name),
                    serde_json::to_string_pretty(&v).unwrap()
                ));
            }
        }
        compare_or_update(&expected.join(format!("{pass}.results.txt")), &text);
    }
    compare_or_update(&expected.join("store.txt"), &store_dump(&home.data));

    // Lookups were written for every lender and environment.
    for lender in ["acme", "beta"] {
        for env in ["sandbox", "production"] {
            let l = names(&home.import(lender, env).join("lookups"));
            // 16 lookup files, and the templates/ and schemas/ folders (9 types each).
            assert_eq!(l.len(), 18, "{lender}/{env}: {l:?}");
            let lookups = home.import(lender, env).join("lookups");
            assert_eq!(names(&lookups.join("templates")).len(), 18);
            assert_eq!(names(&lookups.join("schemas")).len(), 9);
        }
    }
    let div =
        fs::read_to_string(home.import("acme", "sandbox").join("lookups/divisions.csv")).unwrap();
    assert_eq!(
        div,
        "DivisionThreadId,SystemName,EditableName\r\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa,retail,Retail Lending\r\nbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb,wholesale,\"Wholesale, \"\"Broker\"\" Channel\"\r\n"
    );
    // Sandbox data never touches production.
    assert!(store_dump(&home.data)
        .contains("== production.sqlite3 accounts\n== production.sqlite3 account_divisions"));
}
