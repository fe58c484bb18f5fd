//! Exactly once under SIGKILL: a pass over a multi-file pickup is killed at many points (every
//! crash point of the batch engine, and at timed instants across the pass), then rerun. The
//! store, the result files and the processed folder must equal those of a pass never killed.

mod common;

use common::*;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Stage A (a clean pass) then stage B (the pass under test): the fixture scenario's two passes,
/// plus a larger employees file so that timed kills land inside a file.
fn stage_a(home: &Home) {
    let scenario = repo().join("fixtures/scenario/pass1");
    for lender in names(&scenario) {
        copy_dir(&scenario.join(&lender), &home.pickup(&lender, "sandbox"));
    }
    home.run();
}

fn stage_b_pickup(home: &Home) {
    let scenario = repo().join("fixtures/scenario/pass2");
    for lender in names(&scenario) {
        copy_dir(&scenario.join(&lender), &home.pickup(&lender, "sandbox"));
    }
    let mut big = String::from("[\n");
    for i in 0..4000 {
        if i > 0 {
            big.push_str(",\n");
        }
        // Every 50th record is refused (an invalid email), so problems are part of the state.
        let email = if i % 50 == 7 {
            "broken".to_string()
        } else {
            format!("big{i}@acme.test")
        };
        big.push_str(&format!(
            r#"{{"Mode": "upsert", "ExternalId": "BIG{i}", "DivisionThreadIds": ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"], "FirstName": "Big {i}", "Email": "{email}"}}"#
        ));
    }
    big.push_str("\n]\n");
    fs::write(
        home.pickup("acme", "sandbox").join("employees_big.json"),
        big,
    )
    .unwrap();
    fs::write(
        home.pickup("beta", "sandbox").join("employees.json"),
        r#"[{"Mode": "update", "ExternalId": "E1", "FirstName": "Again"}]"#,
    )
    .unwrap();
}

fn reference(backend: Backend) -> (String, Duration) {
    let home = Home::with_backend(&repo().join("fixtures/config.toml"), backend);
    stage_a(&home);
    stage_b_pickup(&home);
    let t = Instant::now();
    home.run();
    (state(&home, backend), t.elapsed())
}

/// What a run left. PostgreSQL: the store grouped by lender, since a rerun after a kill
/// applies the other lenders while it waits out the killed pass's lease on one.
fn state(home: &Home, backend: Backend) -> String {
    match backend {
        Backend::Sqlite => snapshot(&home.data),
        Backend::Postgres => snapshot_by_lender(&home.data),
    }
}

fn assert_same(reference: &str, got: &str, what: &str) {
    if reference != got {
        let first = reference
            .lines()
            .zip(got.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("line {}:\n  reference: {a}\n  after kill: {b}", i + 1))
            .unwrap_or_else(|| "one is a prefix of the other".into());
        panic!("{what}: state differs from the never-killed pass\n{first}");
    }
}

#[test]
fn killed_at_every_crash_point_then_rerun_equals_uninterrupted_pass() {
    crash_points(Backend::Sqlite);
}

#[test]
fn on_postgres_killed_at_every_crash_point_then_rerun_equals_uninterrupted_pass() {
    crash_points(Backend::Postgres);
}

fn crash_points(backend: Backend) {
    let (want, _) = reference(backend);
    let points = [
        "claimed@1",
        "claimed@4",
        "record@1",
        "record@1500",
        "committed@1",
        "committed@3",
        "result@1",
        "result@2",
        "rotated@1",
        "rotated@3",
        "moved@1",
        "moved@5",
    ];
    // PostgreSQL: every other point (each rerun after a kill waits out the killed pass's
    // lender lease, 2 s in the tests); the engine's crash points are the same code.
    let step = if backend == Backend::Postgres { 3 } else { 1 };
    for point in points.into_iter().step_by(step) {
        let home = Home::with_backend(&repo().join("fixtures/config.toml"), backend);
        stage_a(&home);
        stage_b_pickup(&home);
        let out = home
            .run_command()
            .env("BULKLOAD_FAILPOINT", point)
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{point}: the pass was expected to die by SIGKILL: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        home.run();
        assert_same(&want, &state(&home, backend), point);
    }
}

#[test]
fn killed_at_timed_instants_then_rerun_equals_uninterrupted_pass() {
    timed_kills(Backend::Sqlite);
}

#[test]
fn on_postgres_killed_at_timed_instants_then_rerun_equals_uninterrupted_pass() {
    timed_kills(Backend::Postgres);
}

fn timed_kills(backend: Backend) {
    let (want, took) = reference(backend);
    let kills = if backend == Backend::Postgres {
        3u32
    } else {
        8
    };
    for k in 0..kills {
        let home = Home::with_backend(&repo().join("fixtures/config.toml"), backend);
        stage_a(&home);
        stage_b_pickup(&home);
        // Kill once at an instant spread over the pass, then again early in the recovery run.
        for delay in [took * (k + 1) / (kills + 1), took / 20 * (k % 3)] {
            let mut child = home
                .run_command()
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(delay);
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
        home.run();
        assert_same(&want, &state(&home, backend), &format!("timed kill {k}"));
    }
}
