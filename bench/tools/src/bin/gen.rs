//! Writes realistic pickup files.
//!
//! ```text
//! gen bench <dir> <n> [bad_pct]     the benchmark's phases (see bench/run.sh), n records each
//! gen mixed <dir> <n> [bad_pct]     all eight types, linked, ~bad_pct % bad records (default 5)
//! gen size  <file> <bytes> [bad_pct] one borrowers file of about <bytes> bytes (creates)
//! gen employees <file> <n>           the employee-create case: n full employee creates (issue 10)
//! ```
//! Bad records rotate through every kind DESIGN.md names (unknown and repeated fields, too long,
//! wrong type, NUL, bad or missing mode, missing or malformed ids, bad email, an email in use, an
//! unknown reference, bad dates, divisions and lookup ids, out-of-range numbers, non-objects).

use bulkload_bench_tools::*;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

type Rec = Vec<(String, String)>;

fn s(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn kv(k: &str, v: String) -> (String, String) {
    (k.to_string(), v)
}

#[derive(Clone, Copy, PartialEq)]
enum K {
    Employees,
    Borrowers,
    Brokers,
    BrokerAccounts,
    Loans,
    LoanPositions,
    LoanBorrowers,
    LoanBrokers,
}

impl K {
    fn id_field(self) -> &'static str {
        match self {
            K::Brokers => "IdNumber",
            K::Loans => "LoanNumber",
            K::LoanPositions | K::LoanBorrowers | K::LoanBrokers => "Loan_Number",
            _ => "ExternalId",
        }
    }
    fn text_field(self) -> &'static str {
        match self {
            K::LoanPositions | K::LoanBorrowers => "Account_ExternalId",
            K::LoanBrokers => "Broker_IdNumber",
            _ => "City",
        }
    }
    fn is_relation(self) -> bool {
        matches!(self, K::LoanPositions | K::LoanBorrowers | K::LoanBrokers)
    }
}

fn account_rec(mode: &str, tag: char, a: &Account, division: bool) -> Rec {
    let mut r = vec![kv("Mode", s(mode)), kv("ExternalId", s(&a.external_id))];
    if division {
        r.push(kv("DivisionThreadIds", format!("[{}]", s(DIVISION))));
    }
    r.extend([
        kv("FirstName", s(&a.first_name)),
        kv("LastName", s(&a.last_name)),
        kv("Email", s(&a.email)),
        kv("Address1", s(&a.address1)),
        kv("City", s(&a.city)),
        kv("StateCode", s(&a.state_code)),
        kv("ZipCode", s(&a.zip_code)),
        kv("PhonePrimary", s(&a.phone_primary)),
    ]);
    let _ = tag;
    r
}

fn loan_rec(mode: &str, l: &Loan) -> Rec {
    vec![
        kv("Mode", s(mode)),
        kv("LoanNumber", s(&l.loan_number)),
        kv("DivisionThreadId", s(DIVISION)),
        kv("Address1", s(&l.address1)),
        kv("City", s(&l.city)),
        kv("StateCode", s(&l.state_code)),
        kv("ZipCode", s(&l.zip_code)),
        kv("LoanTypeId", l.loan_type_id.to_string()),
        kv("ClosingDate", s(&l.closing_date)),
        kv("TotalLoanAmount", l.total_loan_amount.clone()),
        kv("LoanPurposeId", l.loan_purpose_id.to_string()),
        kv("CompletionDate", "null".into()),
    ]
}

fn set(r: &mut Rec, k: &str, v: String) {
    match r.iter_mut().find(|(n, _)| n == k) {
        Some(e) => e.1 = v,
        None => r.push((k.to_string(), v)),
    }
}

/// Spoils a good record in one of the ways DESIGN.md names. Returns `None` for a non-object.
fn spoil(kind: K, mut r: Rec, variant: u64) -> Option<Rec> {
    let idf = kind.id_field();
    match variant % 16 {
        0 => r.push(kv("Nickname", s("Bud"))),
        1 => set(&mut r, kind.text_field(), s(&"x".repeat(260))),
        2 => set(&mut r, idf, "12345".into()),
        3 => {
            let v = r.iter().find(|(n, _)| n == idf).map(|e| e.1.clone());
            r.push((idf.to_ascii_lowercase(), v.unwrap_or_else(|| s("dup"))));
        }
        4 => set(&mut r, "Mode", s("insert")),
        5 => r.retain(|(n, _)| n != "Mode"),
        6 => r.retain(|(n, _)| n != idf),
        7 => {
            let f = if kind.is_relation() {
                "Loan_ThreadId"
            } else {
                "ThreadId"
            };
            set(&mut r, f, s("not-a-thread-id"));
        }
        8 => return None,
        9 => set(&mut r, kind.text_field(), s("A\u{0}B")),
        10 if !kind.is_relation() && kind != K::Loans => set(&mut r, "Email", s("not-an-email")),
        11 if !kind.is_relation() && kind != K::Loans => {
            set(&mut r, "Email", s("e0@employee.test"))
        }
        12 if kind == K::Loans => set(&mut r, "ClosingDate", s("12/30/2023")),
        13 if kind == K::Loans => set(&mut r, "LoanTypeId", "99".into()),
        14 if kind == K::Loans => set(&mut r, "LoanTypeId", "100000000000000000000".into()),
        12..=15 if kind == K::Employees => set(
            &mut r,
            "DivisionThreadIds",
            format!("[{}]", s(&"f".repeat(32))),
        ),
        _ if kind.is_relation() => set(&mut r, kind.text_field(), s("NO-SUCH-THING")),
        _ => {
            // An update of a record that does not exist.
            set(&mut r, "Mode", s("update"));
            set(&mut r, idf, s("NO-SUCH-RECORD"));
        }
    }
    Some(r)
}

struct Out {
    w: BufWriter<File>,
    first: bool,
    bytes: u64,
    records: u64,
    bad: u64,
}

impl Out {
    fn create(path: &Path) -> Out {
        if let Some(d) = path.parent() {
            fs::create_dir_all(d).expect("create folder");
        }
        let mut w = BufWriter::with_capacity(1 << 20, File::create(path).expect("create file"));
        w.write_all(b"[\n").unwrap();
        Out {
            w,
            first: true,
            bytes: 2,
            records: 0,
            bad: 0,
        }
    }
    fn raw(&mut self, text: &str) {
        if !self.first {
            self.w.write_all(b",\n").unwrap();
            self.bytes += 2;
        }
        self.first = false;
        self.w.write_all(text.as_bytes()).unwrap();
        self.bytes += text.len() as u64;
        self.records += 1;
    }
    /// Writes record `i` of `kind`, spoiled when its dice say so.
    fn rec(&mut self, kind: K, i: u64, r: Rec, bad_pct: u64) {
        let dice = mix(i ^ 0x5eed ^ ((kind as u64) << 40));
        let r = if dice % 1000 < bad_pct * 10 {
            self.bad += 1;
            spoil(kind, r, dice >> 16)
        } else {
            Some(r)
        };
        let text = match r {
            None => s("not a record"),
            Some(r) => {
                let body: Vec<String> = r.iter().map(|(k, v)| format!("{}:{v}", s(k))).collect();
                format!("{{{}}}", body.join(","))
            }
        };
        self.raw(&text);
    }
    fn done(mut self, path: &Path) {
        self.w.write_all(b"\n]\n").unwrap();
        self.w.flush().unwrap();
        eprintln!(
            "gen: {} ({} records, {} bad, {} bytes)",
            path.display(),
            self.records,
            self.bad,
            self.bytes + 3
        );
    }
}

fn accounts_file(
    path: PathBuf,
    tag: char,
    kind: K,
    range: std::ops::Range<u64>,
    mode: &str,
    version: u64,
    bad: u64,
) {
    let mut o = Out::create(&path);
    for i in range {
        let a = account(tag, i, version);
        o.rec(
            kind,
            i,
            account_rec(mode, tag, &a, tag == 'E' && version == 0),
            bad,
        );
    }
    o.done(&path);
}

fn loans_file(path: PathBuf, count: u64, bad: u64) {
    let mut o = Out::create(&path);
    for i in 0..count {
        o.rec(K::Loans, i, loan_rec("create", &loan(i)), bad);
    }
    o.done(&path);
}

fn relations(dir: &Path, plan: Plan, bad: u64) {
    let loans = plan.loans();
    let (nb, ne) = plan.relations();
    let p = dir.join("loan_borrowers_bench.json");
    let mut o = Out::create(&p);
    for i in 0..nb {
        let r = vec![
            kv("Mode", s("add")),
            kv("Loan_Number", s(&loan_number(i % loans))),
            kv("Account_ExternalId", s(&external_id('B', i))),
        ];
        o.rec(K::LoanBorrowers, i, r, bad);
    }
    o.done(&p);
    let p = dir.join("loan_positions_bench.json");
    let mut o = Out::create(&p);
    for i in 0..ne {
        let r = vec![
            kv("Mode", s("add")),
            kv("Loan_Number", s(&loan_number(i % loans))),
            kv("Account_ExternalId", s(&external_id('E', i))),
            kv("PositionName", s(POSITIONS[(i % 3) as usize])),
        ];
        o.rec(K::LoanPositions, i, r, bad);
    }
    o.done(&p);
}

fn bench(dir: &Path, n: u64, bad: u64) {
    let plan = Plan { n };
    let d = dir.join("1-creates");
    accounts_file(
        d.join("employees_bench.json"),
        'E',
        K::Employees,
        0..plan.employees(),
        "create",
        0,
        bad,
    );
    accounts_file(
        d.join("borrowers_bench.json"),
        'B',
        K::Borrowers,
        0..plan.borrowers(),
        "create",
        0,
        bad,
    );
    let d = dir.join("2-updates");
    accounts_file(
        d.join("employees_bench.json"),
        'E',
        K::Employees,
        0..plan.employees(),
        "update",
        1,
        bad,
    );
    accounts_file(
        d.join("borrowers_bench.json"),
        'B',
        K::Borrowers,
        0..plan.borrowers(),
        "update",
        1,
        bad,
    );
    let d = dir.join("3-upserts");
    accounts_file(
        d.join("borrowers_upsert.json"),
        'B',
        K::Borrowers,
        plan.upserts(),
        "upsert",
        2,
        bad,
    );
    loans_file(
        dir.join("4-loans").join("loans_bench.json"),
        plan.loans(),
        bad,
    );
    relations(&dir.join("5-relations"), plan, bad);
}

fn mixed(dir: &Path, n: u64, bad: u64) {
    let (brokers, baccts) = ((n / 10).max(1), (n / 2).max(1));
    accounts_file(
        dir.join("employees_mixed.json"),
        'E',
        K::Employees,
        0..n,
        "create",
        0,
        bad,
    );
    accounts_file(
        dir.join("borrowers_mixed.json"),
        'B',
        K::Borrowers,
        0..n,
        "create",
        0,
        bad,
    );
    accounts_file(
        dir.join("broker_accounts_mixed.json"),
        'A',
        K::BrokerAccounts,
        0..baccts,
        "create",
        0,
        bad,
    );
    let p = dir.join("brokers_mixed.json");
    let mut o = Out::create(&p);
    for i in 0..brokers {
        let a = account('A', i, 0);
        let r = vec![
            kv("Mode", s("create")),
            kv("IdNumber", s(&format!("BR{i:07}"))),
            kv("Email", s(&format!("owner{i}@brokerage.test"))),
            kv("CompanyName", s(&format!("{} Mortgage {i}", a.last_name))),
            kv("OwnerName", s(&format!("{} {}", a.first_name, a.last_name))),
            kv("WebsiteUrl", s(&format!("https://broker{i}.test"))),
            kv("City", s(&a.city)),
            kv("StateCode", s(&a.state_code)),
            kv(
                "Contacts",
                format!(
                    "[{{\"Mode\":\"add\",\"Account_ExternalId\":{},\"PositionName\":\"loan officer\"}}]",
                    s(&external_id('A', i % baccts))
                ),
            ),
        ];
        o.rec(K::Brokers, i, r, bad);
    }
    o.done(&p);
    loans_file(dir.join("loans_mixed.json"), n, bad);
    let p = dir.join("loan_borrowers_mixed.json");
    let mut o = Out::create(&p);
    for i in 0..n {
        let r = vec![
            kv("Mode", s("add")),
            kv("Loan_Number", s(&loan_number(i))),
            kv("Account_ExternalId", s(&external_id('B', i))),
        ];
        o.rec(K::LoanBorrowers, i, r, bad);
    }
    o.done(&p);
    let p = dir.join("loan_positions_mixed.json");
    let mut o = Out::create(&p);
    for i in 0..n {
        let r = vec![
            kv("Mode", s("add")),
            kv("Loan_Number", s(&loan_number(i))),
            kv("Account_ExternalId", s(&external_id('E', (i * 7) % n))),
            kv("PositionName", s(POSITIONS[(i % 3) as usize])),
        ];
        o.rec(K::LoanPositions, i, r, bad);
    }
    o.done(&p);
    let p = dir.join("loan_brokers_mixed.json");
    let mut o = Out::create(&p);
    for i in 0..n / 2 {
        let r = vec![
            kv("Mode", s("add")),
            kv("Loan_Number", s(&loan_number(i))),
            kv("Broker_IdNumber", s(&format!("BR{:07}", i % brokers))),
            kv(
                "LoanOfficer_AccountExternalId",
                s(&external_id('A', i % baccts)),
            ),
        ];
        o.rec(K::LoanBrokers, i, r, bad);
    }
    o.done(&p);
}

fn size(path: &Path, bytes: u64, bad: u64) {
    let mut o = Out::create(path);
    let mut i = 0;
    while o.bytes < bytes {
        let a = account('B', i, 0);
        o.rec(K::Borrowers, i, account_rec("create", 'B', &a, false), bad);
        i += 1;
    }
    o.done(path);
}

fn employees(path: &Path, n: u64) {
    let mut o = Out::create(path);
    for i in 0..n {
        let e = full_employee(i);
        let r = vec![
            kv("Mode", s("create")),
            kv("ExternalId", s(&e.external_id)),
            kv("FirstName", s(&e.first_name)),
            kv("LastName", s(&e.last_name)),
            kv("MiddleInit", s(&e.middle_init)),
            kv("NameSuffix", s(&e.name_suffix)),
            kv("Email", s(&e.email)),
            kv("Address1", s(&e.address1)),
            kv("Address2", s(&e.address2)),
            kv("City", s(&e.city)),
            kv("StateCode", s(&e.state_code)),
            kv("ZipCode", s(&e.zip_code)),
            kv("PhonePrimary", s(&e.phone_primary)),
            kv("PhoneSecondary", s(&e.phone_secondary)),
        ];
        o.rec(K::Employees, i, r, 0);
    }
    o.done(path);
}

fn parse_bytes(t: &str) -> u64 {
    let (num, mul) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<u64>().expect("a size such as 10M or 1G") * mul
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let usage = "usage: gen bench|mixed <dir> <n> [bad_pct] | gen size <file> <bytes> [bad_pct] | gen employees <file> <n>";
    if a.len() < 4 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let bad: u64 = a.get(4).map(|b| b.parse().expect("bad_pct")).unwrap_or(5);
    let p = Path::new(&a[2]);
    match a[1].as_str() {
        "bench" => bench(
            p,
            a[3].parse().expect("n"),
            a.get(4).map(|b| b.parse().expect("bad_pct")).unwrap_or(0),
        ),
        "mixed" => mixed(p, a[3].parse().expect("n"), bad),
        "size" => size(p, parse_bytes(&a[3]), bad),
        "employees" => employees(p, a[3].parse().expect("n")),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
