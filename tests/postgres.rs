//! The PostgreSQL store beyond the shared scenarios (issue 14): `bulkload migrate` moves a SQLite
//! store into PostgreSQL whole, and a daemon pointed at the result carries on where it was; the
//! Bulk Web API's and the web console's store queries answer the same on both backends.

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

/// Values as text, thread ids (random per run) left out.
fn without_thread_ids(vals: &[bulkload::store::Value]) -> String {
    let kept: Vec<String> = vals
        .iter()
        .map(|v| format!("{v:?}"))
        .filter(|v| {
            let t = v.trim_start_matches("Text(\"").trim_end_matches("\")");
            !(t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .collect();
    kept.join(", ")
}

/// What the store queries of the Bulk Web API and the web console answer after the fixture
/// scenario, as text without what differs between runs (row ids, thread ids, times).
fn query_answers(home: &Home) -> String {
    use bulkload::store::{
        self, AccountKind, ApiSubmission, ApiSubmissionKey, LoadKey, LoadQuery, LoanRelation,
        RecordQuery, Source, Table,
    };
    let cfg = bulkload::config::Config::load(&home.config).unwrap();
    let mut out = String::new();
    for env in &cfg.environments {
        let mut st = store::open_env(&cfg, env).unwrap();
        for lender in &cfg.lenders {
            let l = lender.id.as_str();
            out.push_str(&format!("== {env} {l}\n"));
            let all = LoadQuery {
                offset: 0,
                limit: 1000,
                ..Default::default()
            };
            let page = st.list_loads(l, &all).unwrap();
            out.push_str(&format!("loads {}\n", page.total));
            for load in &page.loads {
                assert_eq!(st.load_by_number(l, load.id).unwrap().as_ref(), Some(load));
                let (n, problems) = st.console_problems(load.row, "", 0, 1000).unwrap();
                assert_eq!(n, st.problem_count(load.row).unwrap());
                let (m, filtered) = st.console_problems(load.row, "EMAIL", 1, 2).unwrap();
                out.push_str(&format!(
                    "{} {} {} {:?} {:?} finished={} dry_run={} problems={n} {problems:?} email={m} {filtered:?}\n",
                    load.id,
                    load.pickup_name,
                    load.source,
                    load.error_message,
                    load.counts,
                    load.finished,
                    load.dry_run
                ));
            }
            let typed = LoadQuery {
                kind_prefix: Some("employees"),
                since: Some("2000-01-01T00:00:00Z"),
                ..all.clone()
            };
            let ids: Vec<i64> = st
                .list_loads(l, &typed)
                .unwrap()
                .loads
                .iter()
                .map(|x| x.id)
                .collect();
            let (n, found) = st.console_loads(l, "JSON", 1, 3).unwrap();
            let found: Vec<i64> = found.iter().map(|x| x.id).collect();
            out.push_str(&format!(
                "employees loads {ids:?}; console 'JSON' {n} {found:?}\n"
            ));
            fn q<'a>(equals: &'a [(&'static str, String, bool)]) -> RecordQuery<'a> {
                RecordQuery {
                    table: Table::Accounts,
                    account_kind: Some(AccountKind::Employee),
                    columns: &["external_id", "email", "first_name", "last_name"],
                    equals,
                    updated_since: None,
                    offset: 0,
                    limit: 1000,
                }
            }
            let recs = st.records_page(l, &q(&[])).unwrap();
            let mut rows: Vec<String> = recs.rows.iter().map(|r| format!("{:?}", r.1)).collect();
            rows.sort();
            out.push_str(&format!("employees {} {rows:?}\n", recs.total));
            let one = st
                .records_page(l, &q(&[("email", "E1@ACME.TEST".into(), true)]))
                .unwrap();
            out.push_str(&format!(
                "by email {} {:?}\n",
                one.total,
                one.rows.first().map(|r| &r.1)
            ));
            let loans = st
                .records_page(
                    l,
                    &RecordQuery {
                        table: Table::Loans,
                        account_kind: None,
                        columns: &["loan_number", "loan_type_id", "city"],
                        equals: &[],
                        updated_since: Some("2000-01-01T00:00:00Z"),
                        offset: 0,
                        limit: 1000,
                    },
                )
                .unwrap();
            let mut rows: Vec<String> = loans.rows.iter().map(|r| format!("{:?}", r.1)).collect();
            rows.sort();
            out.push_str(&format!("loans {} {rows:?}\n", loans.total));
            for which in [
                LoanRelation::Positions,
                LoanRelation::Borrowers,
                LoanRelation::Broker,
            ] {
                for number in ["L1", "L2", "nope"] {
                    let page = st.loan_relations(l, which, number, 0, 1000).unwrap();
                    let page = page.map(|p| {
                        let mut vals: Vec<String> =
                            p.rows.iter().map(|r| without_thread_ids(&r.1)).collect();
                        vals.sort();
                        (p.total, vals)
                    });
                    out.push_str(&format!("{which:?} of {number}: {page:?}\n"));
                }
            }
            out.push_str(&format!(
                "records since 2000: {}\n",
                st.records_submitted_since(l, "2000-01-01T00:00:00Z")
                    .unwrap()
            ));
            // An API submission reserves the next number; a repeat of its key returns it;
            // its load takes it, and the next load comes after it.
            let next = page.loads.iter().map(|x| x.id).max().unwrap_or(0) + 1;
            let sub = ApiSubmission {
                claim: format!("api-{l}"),
                lender: l.to_string(),
                number: 0,
                kind: "employees".into(),
                idempotency_key: Some("key-1".into()),
                body_sha256: "00".into(),
                submitted_at: "2026-01-01T00:00:00Z".into(),
            };
            let got = st.submit_api_load(&sub).unwrap();
            assert_eq!(got.number, next);
            let again = st
                .submit_api_load(&ApiSubmission {
                    claim: format!("api-{l}-again"),
                    ..sub.clone()
                })
                .unwrap();
            assert_eq!(again, got);
            assert_eq!(
                st.api_submission(l, ApiSubmissionKey::Number(next))
                    .unwrap(),
                Some(got.clone())
            );
            let other = st
                .submit_api_load(&ApiSubmission {
                    claim: format!("api-{l}-2"),
                    idempotency_key: None,
                    ..sub.clone()
                })
                .unwrap();
            assert_eq!(other.number, next + 1);
            for (claim, want) in [
                (format!("api-{l}-2"), next + 1),
                (format!("sftp-{l}"), next + 2),
            ] {
                let key = LoadKey {
                    key: claim.clone(),
                    supplied_name: "employees.json".into(),
                };
                let tx = st
                    .begin(l, &key, Source::Api, "2026-01-01T00:00:00Z")
                    .unwrap();
                tx.complete(
                    "2026-01-01T00:00:01Z",
                    "20260101000001000",
                    None,
                    &Default::default(),
                )
                .unwrap();
                assert_eq!(st.load_by_key(l, &claim).unwrap().unwrap().id, want);
            }
        }
        let mut hours: Vec<String> = st
            .hourly_activity("2000-01-01T00:00:00Z")
            .unwrap()
            .iter()
            .map(|h| format!("{} {} {} {}", h.lender, h.loads, h.failed, h.records))
            .collect();
        hours.sort();
        out.push_str(&format!("activity {hours:?}\n"));
        out.push_str(&format!(
            "failed deliveries {}\n",
            st.failed_deliveries(100).unwrap().len()
        ));
    }
    out
}

#[test]
fn api_and_console_queries_answer_the_same_on_both_backends() {
    let mut answers = Vec::new();
    for backend in Backend::ALL {
        let home = Home::with_backend(&repo().join("fixtures/config.toml"), backend);
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
        // `bulkload status` reads the same from either store (times aside).
        let out = Command::new(bin())
            .args(["status", "--json", "--config"])
            .arg(&home.config)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let mut status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for l in status["lenders"].as_array_mut().unwrap() {
            if let Some(last) = l["last_load"].as_object_mut() {
                last.remove("ended_at");
            }
        }
        let status = format!("{} {}\n", status["lenders"], status["errors"]);
        answers.push(status + &query_answers(&home));
    }
    assert!(
        answers[0].contains("== sandbox acme\nloads "),
        "{}",
        answers[0]
    );
    assert_eq!(answers[0], answers[1]);
}

/// One batch of records that look up what earlier records of the same batch wrote (the
/// PostgreSQL store answers a batch's lookups from one prefetch, `LoadTx::prefetch`): a create
/// then an update and upserts of the same ExternalId, two records with one email, an email
/// changed by one record and reused by the next, a taken ExternalId, borrowers sharing an address
/// and a broker whose owner account takes an email. Every result file and the store must equal
/// SQLite's.
#[test]
fn one_batch_that_reads_its_own_writes_gives_the_same_results_on_both_backends() {
    let employees = r#"[
      {"Mode": "create", "ExternalId": "E1", "Email": "one@x.test", "FirstName": "A", "DivisionThreadIds": ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]},
      {"Mode": "update", "ExternalId": "E1", "FirstName": "B"},
      {"Mode": "upsert", "ExternalId": "E1", "LastName": "C"},
      {"Mode": "create", "ExternalId": "E2", "Email": "ONE@x.test", "DivisionThreadIds": ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]},
      {"Mode": "create", "ExternalId": "E3", "Email": "two@x.test", "DivisionThreadIds": ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]},
      {"Mode": "update", "ExternalId": "E3", "Email": "three@x.test"},
      {"Mode": "create", "ExternalId": "E4", "Email": "two@x.test", "DivisionThreadIds": ["bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"]},
      {"Mode": "create", "ExternalId": "E5", "Email": "three@x.test", "DivisionThreadIds": ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]},
      {"Mode": "upsert", "ExternalId": "E6", "Email": "six@x.test", "DivisionThreadIds": ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]},
      {"Mode": "upsert", "ExternalId": "E6", "Email": "seven@x.test"},
      {"Mode": "create", "ExternalId": "E7", "Email": "six@x.test", "DivisionThreadIds": ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]},
      {"Mode": "update", "ExternalId": "E6", "FirstName": "Renamed"},
      {"Mode": "upsert", "ExternalId": "E6", "Email": "again@x.test", "DivisionThreadIds": ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]},
      {"Mode": "create", "ExternalId": "E1", "Email": "fresh@x.test", "DivisionThreadIds": ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]},
      {"Mode": "update", "ExternalId": "E9", "FirstName": "Nobody"},
      {"Mode": "upsert", "ExternalId": "E10", "Email": "one@x.test"},
      {"Mode": "create", "ExternalId": "E11", "Email": "e11@x.test", "DivisionThreadIds": ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]},
      {"Mode": "update", "ExternalId": "E11", "DivisionThreadIds": ["bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"]}
    ]"#;
    let borrowers = r#"[
      {"Mode": "create", "ExternalId": "B1", "Email": "home@x.test"},
      {"Mode": "create", "ExternalId": "B2", "Email": "HOME@x.test"},
      {"Mode": "create", "ExternalId": "B3", "Email": "one@x.test"},
      {"Mode": "update", "ExternalId": "B2", "Email": "two@x.test"},
      {"Mode": "update", "ExternalId": "B2", "Email": "mine@x.test"},
      {"Mode": "create", "ExternalId": "E4", "Email": "b4@x.test"},
      {"Mode": "upsert", "ExternalId": "B1", "Email": "mine@x.test"},
      {"Mode": "upsert", "ExternalId": "B1", "Email": "home2@x.test"}
    ]"#;
    // Links are written a batch at a time on PostgreSQL: an add then a delete of one pair, a
    // repeated add, a delete of a missing pair, in one batch.
    let loans =
        std::fs::read_to_string(repo().join("fixtures/scenario/pass1/acme/loans.json")).unwrap();
    let loan_borrowers = r#"[
      {"Mode": "add", "Loan_Number": "L1", "Account_ExternalId": "B1"},
      {"Mode": "add", "Loan_Number": "L1", "Account_ExternalId": "B1"},
      {"Mode": "delete", "Loan_Number": "L1", "Account_ExternalId": "B1"},
      {"Mode": "delete", "Loan_Number": "L1", "Account_ExternalId": "B1"},
      {"Mode": "add", "Loan_Number": "L1", "Account_ExternalId": "B2"},
      {"Mode": "add", "Loan_Number": "L1", "Account_ExternalId": "E4"}
    ]"#;
    let brokers = r#"[
      {"Mode": "create", "IdNumber": "K1", "CompanyName": "Broker One", "Email": "k1@x.test", "OwnerName": "Kay One", "DivisionThreadIds": ["cccccccccccccccccccccccccccccccc"]},
      {"Mode": "create", "IdNumber": "K2", "CompanyName": "Broker Two", "Email": "k2@x.test", "OwnerName": "Kay Two", "DivisionThreadIds": ["cccccccccccccccccccccccccccccccc"]},
      {"Mode": "update", "IdNumber": "K2", "Email": "k3@x.test"},
      {"Mode": "create", "IdNumber": "K3", "CompanyName": "Broker Three", "Email": "k2@x.test", "OwnerName": "Kay Three", "DivisionThreadIds": ["cccccccccccccccccccccccccccccccc"]},
      {"Mode": "create", "IdNumber": "K4", "CompanyName": "Broker Four", "Email": "k3@x.test", "OwnerName": "Kay Four", "DivisionThreadIds": ["cccccccccccccccccccccccccccccccc"]}
    ]"#;
    let mut seen = Vec::new();
    for backend in Backend::ALL {
        let home = Home::with_backend(&repo().join("fixtures/config.toml"), backend);
        fs::write(
            home.pickup("acme", "sandbox").join("employees.json"),
            employees,
        )
        .unwrap();
        fs::write(
            home.pickup("acme", "sandbox").join("borrowers.json"),
            borrowers,
        )
        .unwrap();
        fs::write(home.pickup("beta", "sandbox").join("brokers.json"), brokers).unwrap();
        fs::write(home.pickup("acme", "sandbox").join("loans.json"), &loans).unwrap();
        fs::write(
            home.pickup("acme", "sandbox").join("loan_borrowers.json"),
            loan_borrowers,
        )
        .unwrap();
        home.run();
        let mut text = String::new();
        for (name, v) in results(&home.data) {
            text.push_str(&format!(
                "## {}\n{}\n",
                norm_stamps(&name),
                serde_json::to_string_pretty(&v).unwrap()
            ));
        }
        seen.push((text, store_dump_by_lender(&home.data)));
    }
    let (results_sqlite, store_sqlite) = &seen[0];
    // What SQLite gives, as the rules say (a few spot checks that the batch did what it reads).
    for want in [
        "is already in use",
        "\"E1\\\" is already used by an employee of this lender",
        "No employee for supplied ExternalId exists.",
        "\"NumAddSuccess\": 3",
        "\"NumDeleteFailure\": 1",
    ] {
        assert!(results_sqlite.contains(want), "{want}\n{results_sqlite}");
    }
    assert!(store_sqlite.contains("first_name=B"), "{store_sqlite}");
    assert!(
        store_sqlite.contains("first_name=Renamed"),
        "{store_sqlite}"
    );
    assert_eq!(seen[0].0, seen[1].0, "result files differ between backends");
    assert_eq!(seen[0].1, seen[1].1, "stores differ between backends");
}

/// Several daemons poll one outbox: a notification `due_deliveries` returns is claimed, so
/// another daemon polling at the same time does not send it too; a claim whose try was never
/// recorded (its daemon died) expires and the row is due again.
#[test]
fn a_due_notification_goes_to_one_daemon_at_a_time() {
    let home = Home::with_backend(&repo().join("fixtures/config.toml"), Backend::Postgres);
    let text = fs::read_to_string(&home.config).unwrap();
    // The last lender (beta) gets a webhook nobody answers: its load's row stays pending.
    fs::write(
        &home.config,
        format!("{text}\n[[lenders.webhooks]]\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"),
    )
    .unwrap();
    fs::write(
        home.pickup("beta", "sandbox").join("employees.json"),
        r#"[{"Mode": "create", "ExternalId": "E1", "Email": "e1@beta.test"}]"#,
    )
    .unwrap();
    home.run();
    let cfg = bulkload::config::Config::load(&home.config).unwrap();
    let one = bulkload::store::open_env(&cfg, "sandbox").unwrap();
    let two = bulkload::store::open_env(&cfg, "sandbox").unwrap();
    assert_eq!(one.pending_deliveries("beta").unwrap(), 1);
    let later = 4e9; // past any retry time
    let got = one.due_deliveries(later, 10).unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(two.due_deliveries(later, 10).unwrap().is_empty());
    assert!(one.due_deliveries(later, 10).unwrap().is_empty());
    // Never recorded: due again once the claim has run out, with the same webhook-id.
    let again = two.due_deliveries(later + 301.0, 10).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].msg_id, got[0].msg_id);
}
