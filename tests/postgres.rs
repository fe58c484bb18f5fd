//! The PostgreSQL store beyond the shared scenarios (issue 14): `bulkload migrate` moves a SQLite
//! store into PostgreSQL whole, and a daemon pointed at the result carries on where it was.

mod common;

use common::*;
use std::fs;
use std::process::Command;

#[test]
fn migrate_moves_a_sqlite_store_whole_and_work_carries_on() {
    let home = Home::new(&repo().join("fixtures/config.toml"));
    let scenario = repo().join("fixtures/scenario");
    for pass in ["pass1", "pass2"] {
        for lender in names(&scenario.join(pass)) {
            copy_dir(
                &scenario.join(pass).join(&lender),
                &home.pickup(&lender, "sandbox"),
            );
        }
        home.run();
    }
    let before = store_dump(&home.data);

    let url = pg_database();
    let out = Command::new(bin())
        .args(["migrate", "--from"])
        .arg(format!("sqlite:{}", home.data.join("db").display()))
        .args(["--to", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("sandbox: moved to schema bulkload_sandbox: bulk_loads "),
        "{said}"
    );
    assert!(
        said.contains("production: moved to schema bulkload_production"),
        "{said}"
    );

    // The same store, read from PostgreSQL.
    let text = fs::read_to_string(&home.config).unwrap();
    fs::write(
        &home.config,
        format!("{text}\n\n[store]\nurl = \"{url}\"\nlease_seconds = 2\nparallel_lenders = 1\n"),
    )
    .unwrap();
    assert_eq!(before, store_dump(&home.data));

    // A second migration into a store that holds loads is refused; nothing changes.
    let again = Command::new(bin())
        .args(["migrate", "--from"])
        .arg(format!(
            "sqlite:{}",
            home.data.join("db/sandbox.sqlite3").display()
        ))
        .args(["--to", &url])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("migrate only into an empty store"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(before, store_dump(&home.data));

    // Passes go on against PostgreSQL: load ids continue, updates find the moved rows.
    let last: i64 = {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.query_one(
            "SELECT max(number) FROM bulkload_sandbox.bulk_loads WHERE lender = 'beta'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    fs::write(
        home.pickup("beta", "sandbox").join("employees.json"),
        r#"[{"Mode": "update", "ExternalId": "E1", "FirstName": "Moved"}]"#,
    )
    .unwrap();
    home.run();
    let results = results(&home.data);
    let (_, newest) = results
        .iter()
        .filter(|(n, _)| {
            n.starts_with("beta/sandbox/results/employees.") && n.ends_with(".result.json")
        })
        .max_by_key(|(_, v)| v["Id"].as_i64())
        .unwrap();
    assert_eq!(newest["Id"].as_i64(), Some(last + 1));
    assert_eq!(newest["NumUpdateSuccess"].as_i64(), Some(1), "{newest}");
    assert!(store_dump(&home.data).contains("first_name=Moved"));
}
