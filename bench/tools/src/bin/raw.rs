//! The machine's raw limit for the benchmark: the same rows `gen bench` writes, inserted into the
//! same schema and indexes as the store (its migrations in order: `src/store/sqlite/schema_v1.sql`,
//! then `schema_v2.sql`, which among others adds the `accounts (lender, email_key)` index, and
//! `schema_v6.sql`, the accounts' kind check as comparisons; v3-v5 touch no table written here) by a
//! minimal prepared-statement loop, one transaction per phase, with the store's own pragmas (WAL,
//! synchronous, cache).
//!
//! ```text
//! raw <db> <n> <synchronous FULL|NORMAL> <cache_mib> [employees]
//! ```
//! With `employees`, only the employee-create case (issue 10): `n` records of `gen employees`,
//! every account column, each linked to the lender's one division.
//! Prints one line per phase: `raw <phase> <records> <seconds>`.

use bulkload_bench_tools::*;
use rusqlite::{params, Connection};
use std::time::Instant;

/// The store's migrations, applied in order as `store::sqlite` does (`PRAGMA user_version` after
/// each), so every index the pass maintains is maintained here too.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../../src/store/sqlite/schema_v1.sql"),
    include_str!("../../../../src/store/sqlite/schema_v2.sql"),
    include_str!("../../../../src/store/sqlite/schema_v6.sql"),
];

fn thread_id(tag: u64, i: u64) -> String {
    format!("{:016x}{:016x}", mix(tag), mix(i ^ (tag << 48)))
}

fn phase(conn: &mut Connection, name: &str, f: impl FnOnce(&rusqlite::Transaction) -> u64) {
    let t = Instant::now();
    let tx = conn.transaction().unwrap();
    let n = f(&tx);
    tx.commit().unwrap();
    println!("raw {name} {n} {:.3}", t.elapsed().as_secs_f64());
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (db, n, sync, cache) = (
        &a[1],
        a[2].parse::<u64>().unwrap(),
        &a[3],
        a[4].parse::<u64>().unwrap(),
    );
    let _ = std::fs::remove_file(db);
    let mut conn = Connection::open(db).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -{}; PRAGMA temp_store = MEMORY;",
        cache * 1024
    ))
    .unwrap();
    for (i, m) in MIGRATIONS.iter().enumerate() {
        conn.execute_batch(m).unwrap();
        if m.contains("writable_schema") {
            // As the store does after a migration that edits a table's SQL text.
            let v: i64 = conn
                .query_row("PRAGMA schema_version", [], |r| r.get(0))
                .unwrap();
            conn.pragma_update(None, "schema_version", v + 1).unwrap();
        }
        conn.pragma_update(None, "user_version", i as i64 + 1).unwrap();
    }
    conn.execute(
        "INSERT INTO bulk_loads (lender, pickup_name, claim, started_at, ended_at, stamp, state, number)
         VALUES ('demo', 'x', 'x', '', '', '', 'finished', 1)",
        [],
    )
    .unwrap();
    if a.get(5).map(String::as_str) == Some("employees") {
        phase(&mut conn, "employees", |tx| {
            let mut ins = tx
                .prepare(
                    "INSERT INTO accounts (lender, kind, thread_id, external_id, email, email_key, first_name,
                     last_name, middle_init, name_suffix, address1, address2, city, state_code, zip_code,
                     phone_primary, phone_secondary, created_load, updated_load)
                     VALUES (?1, 'employee', ?2, ?3, ?4, lower(?4), ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
                     ?14, ?15, 1, 1)",
                )
                .unwrap();
            let mut div = tx
                .prepare(
                    "INSERT INTO account_divisions (account_id, division_thread_id) VALUES (?1, ?2)",
                )
                .unwrap();
            for i in 0..n {
                let e = full_employee(i);
                ins.execute(params![
                    LENDER,
                    thread_id(0xEE, i),
                    e.external_id,
                    e.email,
                    e.first_name,
                    e.last_name,
                    e.middle_init,
                    e.name_suffix,
                    e.address1,
                    e.address2,
                    e.city,
                    e.state_code,
                    e.zip_code,
                    e.phone_primary,
                    e.phone_secondary
                ])
                .unwrap();
                div.execute(params![tx.last_insert_rowid(), DIVISION])
                    .unwrap();
            }
            n
        });
        return;
    }
    let plan = Plan { n };

    phase(&mut conn, "creates", |tx| {
        let mut ins = tx
            .prepare(
                "INSERT INTO accounts (lender, kind, thread_id, external_id, email, email_key, first_name,
                 last_name, address1, city, state_code, zip_code, phone_primary, created_load, updated_load)
                 VALUES (?1, ?2, ?3, ?4, ?5, lower(?5), ?6, ?7, ?8, ?9, ?10, ?11, ?12, 1, 1)",
            )
            .unwrap();
        let mut div = tx
            .prepare(
                "INSERT INTO account_divisions (account_id, division_thread_id) VALUES (?1, ?2)",
            )
            .unwrap();
        let mut count = 0;
        for (tag, kind, total) in [
            ('E', "employee", plan.employees()),
            ('B', "borrower", plan.borrowers()),
        ] {
            for i in 0..total {
                let x = account(tag, i, 0);
                ins.execute(params![
                    LENDER,
                    kind,
                    thread_id(tag as u64, i),
                    x.external_id,
                    x.email,
                    x.first_name,
                    x.last_name,
                    x.address1,
                    x.city,
                    x.state_code,
                    x.zip_code,
                    x.phone_primary
                ])
                .unwrap();
                if tag == 'E' {
                    div.execute(params![tx.last_insert_rowid(), DIVISION])
                        .unwrap();
                }
                count += 1;
            }
        }
        count
    });

    phase(&mut conn, "updates", |tx| {
        let mut up = tx
            .prepare(
                "UPDATE accounts SET first_name = ?3, last_name = ?4, email = ?5, email_key = lower(?5),
                 address1 = ?6, city = ?7, state_code = ?8, zip_code = ?9, phone_primary = ?10, updated_load = 1
                 WHERE lender = ?1 AND external_id = ?2",
            )
            .unwrap();
        let mut count = 0;
        for (tag, total) in [('E', plan.employees()), ('B', plan.borrowers())] {
            for i in 0..total {
                let x = account(tag, i, 1);
                up.execute(params![
                    LENDER,
                    x.external_id,
                    x.first_name,
                    x.last_name,
                    x.email,
                    x.address1,
                    x.city,
                    x.state_code,
                    x.zip_code,
                    x.phone_primary
                ])
                .unwrap();
                count += 1;
            }
        }
        count
    });

    phase(&mut conn, "upserts", |tx| {
        let mut up = tx
            .prepare(
                "INSERT INTO accounts (lender, kind, thread_id, external_id, email, email_key, first_name,
                 last_name, address1, city, state_code, zip_code, phone_primary, created_load, updated_load)
                 VALUES (?1, 'borrower', ?2, ?3, ?4, lower(?4), ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1, 1)
                 ON CONFLICT (lender, external_id) WHERE external_id IS NOT NULL DO UPDATE SET
                 email = excluded.email, email_key = excluded.email_key, first_name = excluded.first_name,
                 last_name = excluded.last_name, address1 = excluded.address1, city = excluded.city,
                 state_code = excluded.state_code, zip_code = excluded.zip_code,
                 phone_primary = excluded.phone_primary, updated_load = 1",
            )
            .unwrap();
        let mut count = 0;
        for i in plan.upserts() {
            let x = account('B', i, 2);
            up.execute(params![
                LENDER,
                thread_id(0xB2, i),
                x.external_id,
                x.email,
                x.first_name,
                x.last_name,
                x.address1,
                x.city,
                x.state_code,
                x.zip_code,
                x.phone_primary
            ])
            .unwrap();
            count += 1;
        }
        count
    });

    phase(&mut conn, "loans", |tx| {
        let mut ins = tx
            .prepare(
                "INSERT INTO loans (lender, thread_id, loan_number, division_thread_id, address1, city,
                 state_code, zip_code, loan_type_id, closing_date, total_loan_amount, loan_purpose_id,
                 created_load, updated_load)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 1, 1)",
            )
            .unwrap();
        for i in 0..plan.loans() {
            let l = loan(i);
            ins.execute(params![
                LENDER,
                thread_id(0x10, i),
                l.loan_number,
                DIVISION,
                l.address1,
                l.city,
                l.state_code,
                l.zip_code,
                l.loan_type_id,
                l.closing_date,
                l.total_loan_amount,
                l.loan_purpose_id
            ])
            .unwrap();
        }
        plan.loans()
    });

    phase(&mut conn, "relations", |tx| {
        let mut lb = tx
            .prepare(
                "INSERT OR IGNORE INTO loan_borrowers (loan_id, account_id)
                 SELECT l.id, a.id FROM loans l, accounts a
                 WHERE l.lender = ?1 AND l.loan_number = ?2 AND a.lender = ?1 AND a.external_id = ?3",
            )
            .unwrap();
        let mut lp = tx
            .prepare(
                "INSERT OR IGNORE INTO loan_positions (loan_id, account_id, position)
                 SELECT l.id, a.id, ?4 FROM loans l, accounts a
                 WHERE l.lender = ?1 AND l.loan_number = ?2 AND a.lender = ?1 AND a.external_id = ?3",
            )
            .unwrap();
        let (nb, ne) = plan.relations();
        let loans = plan.loans();
        for i in 0..nb {
            lb.execute(params![LENDER, loan_number(i % loans), external_id('B', i)])
                .unwrap();
        }
        for i in 0..ne {
            lp.execute(params![
                LENDER,
                loan_number(i % loans),
                external_id('E', i),
                POSITIONS[(i % 3) as usize]
            ])
            .unwrap();
        }
        nb + ne
    });
}
