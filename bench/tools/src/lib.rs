//! The deterministic data model shared by `gen` (which writes it as pickup JSON) and `raw` (which
//! inserts the same rows straight into SQLite), so both sides of a benchmark handle identical rows.

pub const DIVISION: &str = "0123456789abcdef0123456789abcdef";
pub const LENDER: &str = "demo";
pub const POSITIONS: [&str; 3] = ["AEA", "Processor", "Underwriter"];

const FIRST: [&str; 16] = [
    "Ada", "Bea", "Cal", "Dee", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jon", "Kim", "Lou", "Max",
    "Ned", "Ora", "Pat",
];
const LAST: [&str; 16] = [
    "Smith", "Jones", "Brown", "Miller", "Davis", "Garcia", "Wilson", "Moore", "Taylor", "Lee",
    "Clark", "Lewis", "Young", "Hall", "Allen", "King",
];
const CITIES: [(&str, &str); 8] = [
    ("Dodge City", "KS"),
    ("Olathe", "KS"),
    ("Gering", "NE"),
    ("Ponca City", "OK"),
    ("Dickinson", "ND"),
    ("Tulsa", "OK"),
    ("Omaha", "NE"),
    ("Wichita", "KS"),
];

/// Spreads `i` over 64 bits so names and cities do not march in step with the index.
pub fn mix(i: u64) -> u64 {
    let mut x = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Employee (`'E'`), borrower (`'B'`) or broker account (`'A'`).
#[derive(Debug, Clone)]
pub struct Account {
    pub external_id: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub address1: String,
    pub city: String,
    pub state_code: String,
    pub zip_code: String,
    pub phone_primary: String,
}

pub fn external_id(tag: char, i: u64) -> String {
    format!("{tag}{i:09}")
}

/// The account `i` of a kind; `version` 0 is the create, 1 the update (other names, city, phone).
pub fn account(tag: char, i: u64, version: u64) -> Account {
    let m = mix(i ^ (version << 56));
    let (city, state) = CITIES[(m >> 8) as usize % CITIES.len()];
    let domain = match tag {
        'E' => "employee.test",
        'B' => "borrower.test",
        _ => "broker.test",
    };
    Account {
        external_id: external_id(tag, i),
        first_name: FIRST[(m % 16) as usize].to_string(),
        last_name: LAST[((m >> 4) % 16) as usize].to_string(),
        email: format!("{}{i}@{domain}", tag.to_ascii_lowercase()),
        address1: format!("{} Elm St", 100 + (m >> 12) % 9000),
        city: city.to_string(),
        state_code: state.to_string(),
        zip_code: format!("{:05}", 10000 + (m >> 20) % 89999),
        phone_primary: format!("555{:07}", (m >> 32) % 10_000_000),
    }
}

#[derive(Debug, Clone)]
pub struct Loan {
    pub loan_number: String,
    pub address1: String,
    pub city: String,
    pub state_code: String,
    pub zip_code: String,
    pub loan_type_id: i64,
    pub closing_date: String,
    pub total_loan_amount: String,
    pub loan_purpose_id: i64,
}

pub fn loan_number(i: u64) -> String {
    format!("L{i:09}")
}

pub fn loan(i: u64) -> Loan {
    let m = mix(i ^ 0xA5A5);
    let (city, state) = CITIES[(m >> 8) as usize % CITIES.len()];
    Loan {
        loan_number: loan_number(i),
        address1: format!("{} Wood Ct", 100 + (m >> 12) % 9000),
        city: city.to_string(),
        state_code: state.to_string(),
        zip_code: format!("{:05}", 10000 + (m >> 20) % 89999),
        loan_type_id: 1 + (m % 5) as i64,
        closing_date: format!("2024-{:02}-{:02}", 1 + (m >> 40) % 12, 1 + (m >> 44) % 28),
        total_loan_amount: format!("{}.{:02}", 50_000 + (m >> 24) % 900_000, (m >> 50) % 100),
        loan_purpose_id: 1 + ((m >> 4) % 4) as i64,
    }
}

/// The benchmark's sizes, all derived from `n` (the records of each measured phase).
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub n: u64,
}

impl Plan {
    /// Creates: `n/2` employees and `n/2` borrowers.
    pub fn employees(&self) -> u64 {
        self.n / 2
    }
    pub fn borrowers(&self) -> u64 {
        self.n - self.n / 2
    }
    /// Upserts: borrowers `0..n`; the first half exist (updates), the rest are new (creates).
    pub fn upserts(&self) -> std::ops::Range<u64> {
        0..self.n
    }
    /// Loans made (untimed setup) before the relation phase.
    pub fn loans(&self) -> u64 {
        (self.n / 10).max(1)
    }
    /// Relation adds: `n/2` loan borrowers and `n/2` loan positions, every pair distinct.
    /// Pair `i`: loan `i % loans`, borrower / employee `i`.
    pub fn relations(&self) -> (u64, u64) {
        (self.borrowers(), self.employees())
    }
}

/// One record of the employee-create case (issue 10): every account field filled, a random
/// ExternalId and email (not in index order), no DivisionThreadIds (the lender has one division,
/// which every record defaults to). About 300 bytes of JSON each.
#[derive(Debug, Clone)]
pub struct FullEmployee {
    pub external_id: String,
    pub first_name: String,
    pub last_name: String,
    pub middle_init: String,
    pub name_suffix: String,
    pub email: String,
    pub address1: String,
    pub address2: String,
    pub city: String,
    pub state_code: String,
    pub zip_code: String,
    pub phone_primary: String,
    pub phone_secondary: String,
}

const SUFFIXES: [&str; 4] = ["Jr.", "Sr.", "II", "III"];

pub fn full_employee(i: u64) -> FullEmployee {
    let m = mix(i ^ 0xE3_0000_0000);
    let r = mix(m);
    let (city, state) = CITIES[(m >> 8) as usize % CITIES.len()];
    let first = FIRST[(m % 16) as usize];
    let last = LAST[((m >> 4) % 16) as usize];
    FullEmployee {
        // mix is a bijection: distinct for every i.
        external_id: format!("{:016x}", mix(i ^ 0xE1)),
        first_name: first.to_string(),
        last_name: last.to_string(),
        middle_init: ((b'A' + (m >> 16) as u8 % 26) as char).to_string(),
        name_suffix: SUFFIXES[((m >> 18) % 4) as usize].to_string(),
        // Unique too: the index in hex after a random prefix.
        email: format!("{first}.{last}{:04x}{i:x}@example.com", r >> 48),
        address1: format!("{} Elm St", 100 + (m >> 12) % 9000),
        address2: format!("Suite {}", 1 + (m >> 28) % 900),
        city: city.to_string(),
        state_code: state.to_string(),
        zip_code: format!("{:05}", 10000 + (m >> 20) % 89999),
        phone_primary: format!("555{:07}", (m >> 32) % 10_000_000),
        phone_secondary: format!("556{:07}", (m >> 40) % 10_000_000),
    }
}
