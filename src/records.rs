//! Records: one declarative field table per record type, and the validation it drives.
//!
//! Owns: the eight record types (`Kind`), their documented fields with type and maximum length
//! (`Field`), modes, and turning one parsed JSON element into a validated `Record` or a list of
//! precise problems. Rules that need only the lender's configuration (divisions, lookup ids,
//! enabled positions) are checked here when a `Ctx` is given; rules that need the store
//! (uniqueness, existence, relations) belong to `store`.
//! Must not: touch the store or the file system.

use crate::config::{Lender, Lookups};
use crate::json::Json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Employees,
    Borrowers,
    Brokers,
    BrokerAccounts,
    Loans,
    LoanPositions,
    LoanBorrowers,
    LoanBrokers,
}

impl Kind {
    /// Dependency order: the order a pass applies files in.
    pub const ALL: [Kind; 8] = [
        Kind::Employees,
        Kind::Borrowers,
        Kind::Brokers,
        Kind::BrokerAccounts,
        Kind::Loans,
        Kind::LoanPositions,
        Kind::LoanBorrowers,
        Kind::LoanBrokers,
    ];

    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Employees => "employees",
            Kind::Borrowers => "borrowers",
            Kind::Brokers => "brokers",
            Kind::BrokerAccounts => "broker_accounts",
            Kind::Loans => "loans",
            Kind::LoanPositions => "loan_positions",
            Kind::LoanBorrowers => "loan_borrowers",
            Kind::LoanBrokers => "loan_brokers",
        }
    }

    /// The singular noun used in messages ("No borrower for supplied ExternalId exists.").
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Employees => "employee",
            Kind::Borrowers => "borrower",
            Kind::Brokers => "broker",
            Kind::BrokerAccounts => "broker account",
            Kind::Loans => "loan",
            Kind::LoanPositions => "loan position",
            Kind::LoanBorrowers => "loan borrower",
            Kind::LoanBrokers => "loan broker",
        }
    }

    /// The noun with its article ("an employee", "a loan").
    pub fn article_noun(self) -> String {
        let n = self.noun();
        let article = if n.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        format!("{article} {n}")
    }

    pub fn order(self) -> usize {
        Kind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }

    pub fn is_relation(self) -> bool {
        matches!(
            self,
            Kind::LoanPositions | Kind::LoanBorrowers | Kind::LoanBrokers
        )
    }

    /// The lender's own identifier field of an entity type.
    pub fn lender_id_field(self) -> &'static str {
        match self {
            Kind::Brokers => "IdNumber",
            Kind::Loans => "LoanNumber",
            _ => "ExternalId",
        }
    }

    pub fn fields(self) -> &'static [Field] {
        match self {
            Kind::Employees => EMPLOYEE_FIELDS,
            Kind::Borrowers | Kind::BrokerAccounts => ACCOUNT_FIELDS,
            Kind::Brokers => BROKER_FIELDS,
            Kind::Loans => LOAN_FIELDS,
            Kind::LoanPositions => LOAN_POSITION_FIELDS,
            Kind::LoanBorrowers => LOAN_BORROWER_FIELDS,
            Kind::LoanBrokers => LOAN_BROKER_FIELDS,
        }
    }

    pub fn modes(self) -> &'static [Mode] {
        if self.is_relation() {
            &[Mode::Add, Mode::Delete]
        } else {
            &[Mode::Create, Mode::Update, Mode::Upsert]
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Create,
    Update,
    Upsert,
    Add,
    Delete,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Create => "create",
            Mode::Update => "update",
            Mode::Upsert => "upsert",
            Mode::Add => "add",
            Mode::Delete => "delete",
        }
    }
    fn parse(s: &str) -> Option<Mode> {
        [
            Mode::Create,
            Mode::Update,
            Mode::Upsert,
            Mode::Add,
            Mode::Delete,
        ]
        .into_iter()
        .find(|m| m.name().eq_ignore_ascii_case(s))
    }
}

/// A documented field's type, with its maximum length where it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Str(usize),
    Int,
    Decimal,
    DateTime,
    /// Array of String(n).
    StrList(usize),
    /// Array of BrokerAccountPositionPair.
    Pairs,
}

impl Ty {
    pub fn describe(self) -> String {
        match self {
            Ty::Str(n) => format!("String({n})"),
            Ty::Int => "Integer".into(),
            Ty::Decimal => "Decimal".into(),
            Ty::DateTime => "DateTime".into(),
            Ty::StrList(n) => format!("Array of String({n})"),
            Ty::Pairs => "Array of BrokerAccountPositionPair".into(),
        }
    }
}

/// A field as documented, and the store column it lands in ("" when it has none of its own).
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub column: &'static str,
}

const fn f(name: &'static str, ty: Ty, column: &'static str) -> Field {
    Field { name, ty, column }
}

macro_rules! account_fields {
    ($($extra:expr),*) => {
        &[
            f("Mode", Ty::Str(6), ""),
            f("ExternalId", Ty::Str(200), "external_id"),
            f("ThreadId", Ty::Str(32), ""),
            $($extra,)*
            f("FirstName", Ty::Str(200), "first_name"),
            f("LastName", Ty::Str(200), "last_name"),
            f("MiddleInit", Ty::Str(20), "middle_init"),
            f("NameSuffix", Ty::Str(50), "name_suffix"),
            f("Email", Ty::Str(200), "email"),
            f("Address1", Ty::Str(200), "address1"),
            f("Address2", Ty::Str(200), "address2"),
            f("City", Ty::Str(100), "city"),
            f("StateCode", Ty::Str(2), "state_code"),
            f("ZipCode", Ty::Str(10), "zip_code"),
            f("PhonePrimary", Ty::Str(10), "phone_primary"),
            f("PhoneSecondary", Ty::Str(10), "phone_secondary"),
        ]
    };
}

pub static ACCOUNT_FIELDS: &[Field] = account_fields!();
pub static EMPLOYEE_FIELDS: &[Field] = account_fields!(f("DivisionThreadIds", Ty::StrList(32), ""));

pub static BROKER_FIELDS: &[Field] = &[
    f("Mode", Ty::Str(6), ""),
    f("IdNumber", Ty::Str(64), "id_number"),
    f("ThreadId", Ty::Str(32), ""),
    f("BrokerDivisionThreadIds", Ty::StrList(32), ""),
    f("Email", Ty::Str(200), "email"),
    f("NmlsNumber", Ty::Str(64), "nmls_number"),
    f("CompanyName", Ty::Str(200), "company_name"),
    f("OwnerName", Ty::Str(500), "owner_name"),
    f("PhoneNumber", Ty::Str(200), "phone_number"),
    f("WebsiteUrl", Ty::Str(2000), "website_url"),
    f("Address1", Ty::Str(200), "address1"),
    f("Address2", Ty::Str(200), "address2"),
    f("City", Ty::Str(100), "city"),
    f("StateCode", Ty::Str(2), "state_code"),
    f("ZipCode", Ty::Str(10), "zip_code"),
    f("Contacts", Ty::Pairs, ""),
];

pub static LOAN_FIELDS: &[Field] = &[
    f("Mode", Ty::Str(6), ""),
    f("LoanNumber", Ty::Str(50), "loan_number"),
    f("ThreadId", Ty::Str(32), ""),
    f("DivisionThreadId", Ty::Str(32), "division_thread_id"),
    f("Address1", Ty::Str(200), "address1"),
    f("Address2", Ty::Str(200), "address2"),
    f("City", Ty::Str(100), "city"),
    f("StateCode", Ty::Str(2), "state_code"),
    f("ZipCode", Ty::Str(10), "zip_code"),
    f("LoanTypeId", Ty::Int, "loan_type_id"),
    f("AgencyId", Ty::Int, "agency_id"),
    f("ClosingDate", Ty::DateTime, "closing_date"),
    f("CompletionDate", Ty::DateTime, "completion_date"),
    f("FHACaseNumber", Ty::Str(50), "fha_case_number"),
    f("BuildTerm", Ty::Str(50), "build_term"),
    f("ExternalLoanOfficer", Ty::Str(100), "external_loan_officer"),
    f("BranchNumber", Ty::Str(50), "branch_number"),
    f("FundedDate", Ty::DateTime, "funded_date"),
    f(
        "ClosedOutWithInvestor",
        Ty::DateTime,
        "closed_out_with_investor",
    ),
    f(
        "FinalTitleUpdateDate",
        Ty::DateTime,
        "final_title_update_date",
    ),
    f("TotalLoanAmount", Ty::Decimal, "total_loan_amount"),
    f("LoanPurposeId", Ty::Int, "loan_purpose_id"),
    f("LoanOccupancyId", Ty::Int, "loan_occupancy_id"),
    f("StructureTypeId", Ty::Int, "structure_type_id"),
    f("LoanStatusId", Ty::Int, "loan_status_id"),
    f("WorkOrderDate", Ty::DateTime, "work_order_date"),
    f("SorDate", Ty::DateTime, "sor_date"),
    f("EstCompletionDate", Ty::DateTime, "est_completion_date"),
    f(
        "EscrowReasonRepairType",
        Ty::Str(50),
        "escrow_reason_repair_type",
    ),
    f(
        "EscrowFinalAppraisal",
        Ty::Str(50),
        "escrow_final_appraisal",
    ),
    f(
        "EscrowAppraisalMgmtCompany",
        Ty::Str(200),
        "escrow_appraisal_mgmt_company",
    ),
];

pub static LOAN_POSITION_FIELDS: &[Field] = &[
    f("Mode", Ty::Str(6), ""),
    f("Loan_ThreadId", Ty::Str(32), ""),
    f("Loan_Number", Ty::Str(50), ""),
    f("Account_ThreadId", Ty::Str(32), ""),
    f("Account_ExternalId", Ty::Str(200), ""),
    f("PositionName", Ty::Str(50), ""),
];

pub static LOAN_BORROWER_FIELDS: &[Field] = &[
    f("Mode", Ty::Str(6), ""),
    f("Loan_ThreadId", Ty::Str(32), ""),
    f("Loan_Number", Ty::Str(50), ""),
    f("Account_ThreadId", Ty::Str(32), ""),
    f("Account_ExternalId", Ty::Str(200), ""),
];

pub static LOAN_BROKER_FIELDS: &[Field] = &[
    f("Mode", Ty::Str(6), ""),
    f("Loan_ThreadId", Ty::Str(32), ""),
    f("Loan_Number", Ty::Str(50), ""),
    f("Broker_ThreadId", Ty::Str(32), ""),
    f("Broker_IdNumber", Ty::Str(64), ""),
    f("LoanOfficer_AccountThreadId", Ty::Str(32), ""),
    f("LoanOfficer_AccountExternalId", Ty::Str(200), ""),
    f("AdditionalContacts", Ty::Pairs, ""),
];

/// BrokerAccountPositionPair. The interface documents `Account_ThreadId` as String(6), a typo:
/// thread ids are 32 characters everywhere else, so 32 is enforced (docs/decisions.md).
pub static PAIR_FIELDS: &[Field] = &[
    f("Mode", Ty::Str(50), ""),
    f("Account_ThreadId", Ty::Str(32), ""),
    f("Account_ExternalId", Ty::Str(200), ""),
    f("PositionName", Ty::Str(32), ""),
];

/// Broker-specific positions of a BrokerAccountPositionPair.
pub const BROKER_POSITIONS: [&str; 3] = ["Owner", "Loan Officer", "Processor"];

/// A validated field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Int(i64),
    /// The JSON number as written by serde_json (shortest round-trip form).
    Dec(String),
    /// Normalised to UTC, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    Date(String),
    List(Vec<String>),
    Pairs(Vec<Pair>),
}

/// Absent, `null` (clears on update), or a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    Absent,
    Null,
    Set(Val),
}

/// How a record or pair names an account, broker or loan: by thread id, by the lender's id, or both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ref {
    pub thread_id: Option<String>,
    pub lender_id: Option<String>,
}

impl Ref {
    pub fn is_empty(&self) -> bool {
        self.thread_id.is_none() && self.lender_id.is_none()
    }
}

/// One BrokerAccountPositionPair.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub add: bool,
    pub account: Ref,
    /// One of `BROKER_POSITIONS`, canonical spelling.
    pub position: &'static str,
}

/// A record that passed every check this module can make.
#[derive(Debug, Clone)]
pub struct Record {
    pub kind: Kind,
    pub mode: Mode,
    slots: Vec<Slot>,
}

impl Record {
    fn index(&self, name: &str) -> Option<usize> {
        self.kind.fields().iter().position(|f| f.name == name)
    }
    pub fn slot(&self, name: &str) -> &Slot {
        match self.index(name) {
            Some(i) => &self.slots[i],
            None => &Slot::Absent,
        }
    }
    pub fn str(&self, name: &str) -> Option<&str> {
        match self.slot(name) {
            Slot::Set(Val::Str(s)) => Some(s),
            _ => None,
        }
    }
    pub fn list(&self, name: &str) -> Option<&[String]> {
        match self.slot(name) {
            Slot::Set(Val::List(v)) => Some(v),
            _ => None,
        }
    }
    pub fn pairs(&self, name: &str) -> &[Pair] {
        match self.slot(name) {
            Slot::Set(Val::Pairs(v)) => v,
            _ => &[],
        }
    }
    /// The (field, slot) pairs of the fields that have a column of their own.
    pub fn columns(&self) -> impl Iterator<Item = (&'static Field, &Slot)> {
        self.kind
            .fields()
            .iter()
            .zip(self.slots.iter())
            .filter(|(f, _)| !f.column.is_empty())
    }
    /// The record's own identity: `ThreadId` and the lender's id.
    pub fn identity(&self) -> Ref {
        Ref {
            thread_id: self.str("ThreadId").map(str::to_string),
            lender_id: self.str(self.kind.lender_id_field()).map(str::to_string),
        }
    }
    pub fn reference(&self, thread_field: &str, lender_field: &str) -> Ref {
        Ref {
            thread_id: self.str(thread_field).map(str::to_string),
            lender_id: self.str(lender_field).map(str::to_string),
        }
    }
    /// Replaces a slot; used for defaults (a single-division lender's division).
    fn set(&mut self, name: &str, slot: Slot) {
        if let Some(i) = self.index(name) {
            self.slots[i] = slot;
        }
    }
}

/// Why a record was refused before the store saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The mode, when it could be read; `None` counts as a mode failure.
    pub mode: Option<Mode>,
    /// For an upsert: the identity, when readable, so the failure can be counted as create or
    /// update by whether the record exists.
    pub identity: Option<Ref>,
    pub messages: Vec<String>,
}

/// The configuration-dependent half of validation.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub lender: &'a Lender,
    pub lookups: &'a Lookups,
}

fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Finds the documented field a supplied name means: exact first, then ignoring case.
fn match_field<'f>(fields: &'f [Field], name: &str) -> Option<(usize, &'f Field)> {
    fields
        .iter()
        .enumerate()
        .find(|(_, f)| f.name == name)
        .or_else(|| {
            fields
                .iter()
                .enumerate()
                .find(|(_, f)| f.name.eq_ignore_ascii_case(name))
        })
}

/// Longest supplied text a message repeats; longer text is cut (a record may be 1 MiB).
const SHOWN_CHARS: usize = 64;

/// `s` as a message repeats it: whole when short, else its start, an ellipsis and its length.
fn shown(s: &str) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(SHOWN_CHARS) {
        None => s.into(),
        Some((cut, _)) => format!("{}… ({} characters)", &s[..cut], s.chars().count()).into(),
    }
}

fn closest(fields: &[Field], name: &str) -> &'static str {
    // Field names are short: a longer name is compared by its start, which keeps this cheap.
    let cut = name
        .char_indices()
        .nth(SHOWN_CHARS)
        .map_or(name.len(), |(i, _)| i);
    let lower = name[..cut].to_ascii_lowercase();
    fields
        .iter()
        .map(|f| {
            (
                strsim::damerau_levenshtein(&lower, &f.name.to_ascii_lowercase()),
                f.name,
            )
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
        .unwrap_or("")
}

pub fn is_thread_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A deliberately plain address check: one `@`, a non-empty local part, a dotted domain, no
/// spaces or control characters. Deliverability is the lender's business.
pub fn is_plausible_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Parses the DateTime forms DESIGN.md accepts: ISO 8601 with or without a zone (no zone means
/// UTC) and with or without a time. Returns the UTC form `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn parse_datetime(s: &str) -> Option<String> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    let out = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(out(t.with_timezone(&Utc)));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(out(t.and_utc()));
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(out(t.with_timezone(&Utc)));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| out(t.and_utc()));
    }
    None
}

/// Converts one JSON value to a field's type. `path` names the field in messages.
#[allow(clippy::collapsible_match)] // clippy 1.95; the nested form reads better
fn convert(path: &str, ty: Ty, v: Json, msgs: &mut Vec<String>) -> Slot {
    let wrong = |msgs: &mut Vec<String>, want: &str, v: &Json| {
        msgs.push(format!("{path}: expected {want}, found {}.", json_type(v)));
        Slot::Absent
    };
    if let Json::Null = v {
        return Slot::Null;
    }
    match ty {
        Ty::Str(max) => match v {
            Json::String(s) => {
                let t = s.trim();
                let n = t.chars().count();
                if n > max {
                    msgs.push(format!(
                        "{path}: {n} characters exceeds the maximum length of {max}."
                    ));
                    Slot::Absent
                } else if t.is_empty() {
                    Slot::Null
                } else if t.contains('\0') {
                    msgs.push(format!("{path}: contains a NUL character."));
                    Slot::Absent
                } else if t.len() == s.len() {
                    Slot::Set(Val::Str(s))
                } else {
                    Slot::Set(Val::Str(t.to_string()))
                }
            }
            other => wrong(msgs, "a string", &other),
        },
        Ty::Int => match v {
            Json::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Slot::Set(Val::Int(i))
                } else if n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) {
                    msgs.push(format!(
                        "{path}: {n} is out of range (from {} to {}).",
                        i64::MIN,
                        i64::MAX
                    ));
                    Slot::Absent
                } else {
                    msgs.push(format!("{path}: expected an integer, found {n}."));
                    Slot::Absent
                }
            }
            other => wrong(msgs, "an integer", &other),
        },
        Ty::Decimal => match v {
            Json::Number(n) => Slot::Set(Val::Dec(n.to_string())),
            other => wrong(msgs, "a number", &other),
        },
        Ty::DateTime => match v {
            Json::String(s) => {
                let t = s.trim();
                if t.is_empty() {
                    Slot::Null
                } else if let Some(d) = parse_datetime(t) {
                    Slot::Set(Val::Date(d))
                } else {
                    msgs.push(format!(
                        "{path}: {:?} is not an ISO 8601 date or date and time (e.g. \"2023-12-30\" or \"2023-12-30T14:00:00Z\").",
                        shown(t)
                    ));
                    Slot::Absent
                }
            }
            other => wrong(msgs, "an ISO 8601 date string", &other),
        },
        Ty::StrList(max) => match v {
            Json::Array(items) => {
                let mut out: Vec<String> = Vec::with_capacity(items.len());
                let before = msgs.len();
                for (i, item) in items.into_iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    match convert(&p, Ty::Str(max), item, msgs) {
                        #[allow(clippy::collapsible_match)] // newer clippy lint; kept readable
                        Slot::Set(Val::Str(s)) => {
                            if !out.iter().any(|o| o.eq_ignore_ascii_case(&s)) {
                                out.push(s)
                            }
                        }
                        Slot::Null => msgs.push(format!("{p}: must not be empty or null.")),
                        _ => {}
                    }
                }
                if msgs.len() > before {
                    Slot::Absent
                } else if out.is_empty() {
                    Slot::Null
                } else {
                    Slot::Set(Val::List(out))
                }
            }
            other => wrong(msgs, "an array of strings", &other),
        },
        Ty::Pairs => match v {
            Json::Array(items) => {
                let before = msgs.len();
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    if let Some(p) = convert_pair(&format!("{path}[{i}]"), item, msgs) {
                        out.push(p);
                    }
                }
                if msgs.len() > before {
                    Slot::Absent
                } else {
                    Slot::Set(Val::Pairs(out))
                }
            }
            other => wrong(msgs, "an array of objects", &other),
        },
    }
}

/// Reads an object's members against a field table: unknown and repeated names are problems.
fn read_object(
    path: &str,
    fields: &[Field],
    members: Vec<(String, Json)>,
    msgs: &mut Vec<String>,
) -> Vec<Slot> {
    let mut slots = vec![Slot::Absent; fields.len()];
    let mut seen: Vec<Option<String>> = vec![None; fields.len()];
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}.")
    };
    for (name, value) in members {
        match match_field(fields, &name) {
            None => msgs.push(format!(
                "{prefix}{}: unknown field; the closest documented field is \"{}\".",
                shown(&name),
                closest(fields, &name)
            )),
            Some((i, field)) => {
                if let Some(first) = &seen[i] {
                    msgs.push(format!(
                        "{prefix}{}: supplied more than once (as \"{first}\" and \"{name}\"); which value is meant is unknown.",
                        field.name
                    ));
                    slots[i] = Slot::Absent;
                    continue;
                }
                let p = format!("{prefix}{}", field.name);
                slots[i] = convert(&p, field.ty, value, msgs);
                seen[i] = Some(name);
            }
        }
    }
    slots
}

fn slot_str(slots: &[Slot], fields: &[Field], name: &str) -> Option<String> {
    let i = fields.iter().position(|f| f.name == name)?;
    match &slots[i] {
        Slot::Set(Val::Str(s)) => Some(s.clone()),
        _ => None,
    }
}

fn convert_pair(path: &str, v: Json, msgs: &mut Vec<String>) -> Option<Pair> {
    let members = match v {
        Json::Object(m) => m,
        other => {
            msgs.push(format!(
                "{path}: expected an object, found {}.",
                json_type(&other)
            ));
            return None;
        }
    };
    let before = msgs.len();
    let slots = read_object(path, PAIR_FIELDS, members, msgs);
    let get = |n: &str| slot_str(&slots, PAIR_FIELDS, n);
    let add = match get("Mode") {
        None => {
            msgs.push(format!("{path}.Mode: required; use \"add\" or \"delete\"."));
            false
        }
        Some(m) => match Mode::parse(&m) {
            Some(Mode::Add) => true,
            Some(Mode::Delete) => false,
            _ => {
                msgs.push(format!(
                    "{path}.Mode: \"{m}\" is not valid; use \"add\" or \"delete\"."
                ));
                false
            }
        },
    };
    let account = Ref {
        thread_id: get("Account_ThreadId").map(|s| s.to_ascii_lowercase()),
        lender_id: get("Account_ExternalId"),
    };
    check_ref(
        msgs,
        &format!("{path}.Account_ThreadId"),
        &format!("{path}.Account_ExternalId"),
        &account,
    );
    let position = match get("PositionName") {
        None => {
            msgs.push(format!(
                "{path}.PositionName: required; use \"Owner\", \"Loan Officer\" or \"Processor\"."
            ));
            ""
        }
        Some(p) => match BROKER_POSITIONS.iter().find(|b| b.eq_ignore_ascii_case(&p)) {
            Some(b) => b,
            None => {
                msgs.push(format!(
                    "{path}.PositionName: \"{p}\" is not a broker position; use \"Owner\", \"Loan Officer\" or \"Processor\"."
                ));
                ""
            }
        },
    };
    if msgs.len() > before {
        None
    } else {
        Some(Pair {
            add,
            account,
            position,
        })
    }
}

/// A reference needs at least one of its two fields, and a thread id must look like one.
fn check_ref(msgs: &mut Vec<String>, thread_field: &str, lender_field: &str, r: &Ref) {
    if r.is_empty() {
        msgs.push(format!(
            "{thread_field} or {lender_field}: one of them is required."
        ));
    }
    if let Some(t) = &r.thread_id {
        if !is_thread_id(t) {
            msgs.push(format!(
                "{thread_field}: \"{t}\" is not a thread id (32 hexadecimal characters)."
            ));
        }
    }
}

/// The division field of each entity type.
fn division_field(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Employees => Some("DivisionThreadIds"),
        Kind::Brokers => Some("BrokerDivisionThreadIds"),
        Kind::Loans => Some("DivisionThreadId"),
        _ => None,
    }
}

/// Validates one element of a pickup file. `ctx` adds the configuration checks (divisions,
/// lookups, positions); without it those are skipped (offline `check`).
pub fn validate(kind: Kind, element: Json, ctx: Option<Ctx<'_>>) -> Result<Record, Rejection> {
    let members = match element {
        Json::Object(m) => m,
        other => {
            return Err(Rejection {
                mode: None,
                identity: None,
                messages: vec![format!(
                    "Record is not a JSON object (found {}).",
                    json_type(&other)
                )],
            })
        }
    };
    let fields = kind.fields();
    let mut msgs = Vec::new();
    let mut slots = read_object("", fields, members, &mut msgs);

    // Mode first: it decides how a failure is counted.
    let allowed = kind.modes();
    let allowed_text = match allowed {
        [a, b] => format!("\"{}\" or \"{}\"", a.name(), b.name()),
        _ => "\"create\", \"update\" or \"upsert\"".to_string(),
    };
    let mode = match &slots[0] {
        Slot::Set(Val::Str(m)) => match Mode::parse(m) {
            Some(m) if allowed.contains(&m) => Some(m),
            _ => {
                msgs.push(format!(
                    "Mode: \"{m}\" is not valid for {}; use {allowed_text}.",
                    kind.prefix()
                ));
                None
            }
        },
        Slot::Absent if msgs.iter().any(|m| m.starts_with("Mode:")) => None,
        _ => {
            msgs.push(format!("Mode: required; use {allowed_text}."));
            None
        }
    };

    // Thread ids look like thread ids; stored lower-case.
    for (i, field) in fields.iter().enumerate() {
        let is_tid = field.name == "ThreadId"
            || field.name.ends_with("_ThreadId")
            || field.name.ends_with("AccountThreadId")
            || field.name == "DivisionThreadId";
        if let (true, Slot::Set(Val::Str(s))) = (is_tid, &mut slots[i]) {
            if is_thread_id(s) {
                s.make_ascii_lowercase();
            } else {
                msgs.push(format!(
                    "{}: \"{s}\" is not a thread id (32 hexadecimal characters).",
                    field.name
                ));
            }
        }
        if let (Ty::StrList(_), Slot::Set(Val::List(ids))) = (field.ty, &mut slots[i]) {
            for (j, s) in ids.iter_mut().enumerate() {
                if is_thread_id(s) {
                    s.make_ascii_lowercase();
                } else {
                    msgs.push(format!(
                        "{}[{j}]: \"{s}\" is not a division thread id (32 hexadecimal characters).",
                        field.name
                    ));
                }
            }
        }
    }

    let mut record = Record {
        kind,
        mode: mode.unwrap_or(Mode::Create),
        slots,
    };

    if let Some(email) = record.str("Email") {
        if !is_plausible_email(email) {
            msgs.push(format!("Email: \"{email}\" is not an email address."));
        }
    }
    if kind == Kind::Brokers {
        if let Some(url) = record.str("WebsiteUrl") {
            let l = url.to_ascii_lowercase();
            if !(l.starts_with("https://") || l.starts_with("http://")) {
                msgs.push(format!(
                    "WebsiteUrl: \"{url}\" must start with https:// or http://."
                ));
            }
        }
    }

    if let Some(mode) = mode {
        identity_rules(&record, mode, &mut msgs);
    }
    if let (Some(ctx), Some(_)) = (ctx, mode) {
        config_rules(&mut record, ctx, &mut msgs);
    }

    if msgs.is_empty() && mode.is_some() {
        Ok(record)
    } else {
        let identity = match mode {
            Some(Mode::Upsert) => Some(record.identity()),
            _ => None,
        };
        Err(Rejection {
            mode,
            identity,
            messages: msgs,
        })
    }
}

fn identity_rules(r: &Record, mode: Mode, msgs: &mut Vec<String>) {
    let kind = r.kind;
    let lid = kind.lender_id_field();
    match kind {
        Kind::LoanPositions | Kind::LoanBorrowers | Kind::LoanBrokers => {
            let loan = r.reference("Loan_ThreadId", "Loan_Number");
            if loan.is_empty() {
                msgs.push("Loan_ThreadId or Loan_Number: one of them is required.".into());
            }
            if kind == Kind::LoanBrokers {
                if r.reference("Broker_ThreadId", "Broker_IdNumber").is_empty() {
                    msgs.push(
                        "Broker_ThreadId or Broker_IdNumber: one of them is required.".into(),
                    );
                }
                if mode == Mode::Delete {
                    if !matches!(r.slot("AdditionalContacts"), Slot::Absent | Slot::Null) {
                        msgs.push(
                            "AdditionalContacts: must not be supplied with \"delete\" mode.".into(),
                        );
                    }
                    if !r
                        .reference(
                            "LoanOfficer_AccountThreadId",
                            "LoanOfficer_AccountExternalId",
                        )
                        .is_empty()
                    {
                        msgs.push("LoanOfficer_AccountThreadId / LoanOfficer_AccountExternalId: must not be supplied with \"delete\" mode.".into());
                    }
                }
            } else {
                if r.reference("Account_ThreadId", "Account_ExternalId")
                    .is_empty()
                {
                    msgs.push(
                        "Account_ThreadId or Account_ExternalId: one of them is required.".into(),
                    );
                }
                if kind == Kind::LoanPositions && r.str("PositionName").is_none() {
                    msgs.push(
                        "PositionName: required; see lookups/positions.csv for valid values."
                            .into(),
                    );
                }
            }
        }
        _ => {
            let id = r.identity();
            match mode {
                Mode::Create => {
                    if id.lender_id.is_none() {
                        msgs.push(format!("{lid}: required for create."));
                    }
                    if !matches!(r.slot("ThreadId"), Slot::Absent | Slot::Null) {
                        msgs.push("ThreadId: must not be supplied for create; a new record gets its thread id from RLS.".into());
                    }
                }
                _ => {
                    if id.is_empty() {
                        msgs.push(format!(
                            "ThreadId or {lid}: one of them is required for {}.",
                            mode.name()
                        ));
                    }
                    if matches!(r.slot(lid), Slot::Null) && id.thread_id.is_some() {
                        msgs.push(format!("{lid}: cannot be cleared."));
                    }
                }
            }
        }
    }
}

fn config_rules(r: &mut Record, ctx: Ctx<'_>, msgs: &mut Vec<String>) {
    let lender = ctx.lender;
    if let Some(field) = division_field(r.kind) {
        let single = lender.divisions.len() == 1;
        let has_problem = msgs.iter().any(|m| m.starts_with(field));
        let given: Vec<String> = match r.slot(field) {
            Slot::Set(Val::Str(s)) => vec![s.clone()],
            Slot::Set(Val::List(v)) => v.clone(),
            _ => Vec::new(),
        };
        for id in &given {
            if lender.division(id).is_none() && is_thread_id(id) {
                msgs.push(format!(
                    "{field}: division \"{id}\" does not exist for this lender (see lookups/divisions.csv)."
                ));
            }
        }
        let default = || {
            let id = lender.divisions[0].thread_id.clone();
            if r.kind == Kind::Loans {
                Slot::Set(Val::Str(id))
            } else {
                Slot::Set(Val::List(vec![id]))
            }
        };
        match r.slot(field) {
            Slot::Absent if single && r.mode == Mode::Create => r.set(field, default()),
            Slot::Null if single => r.set(field, default()),
            Slot::Absent if r.mode == Mode::Create && !single && !has_problem => msgs.push(
                format!("{field}: required for create, as this lender has more than one division."),
            ),
            Slot::Null => msgs.push(format!(
                "{field}: cannot be cleared; {} needs a division.",
                r.kind.article_noun()
            )),
            _ => {}
        }
        // An upsert that ends up creating takes the single division by default (store::apply).
    }
    if r.kind == Kind::Loans {
        let tables = [
            (
                "LoanTypeId",
                "loan type",
                "loan_types",
                &ctx.lookups.loan_types,
            ),
            ("AgencyId", "agency", "agencies", &ctx.lookups.agencies),
            (
                "LoanPurposeId",
                "loan purpose",
                "loan_purposes",
                &ctx.lookups.loan_purposes,
            ),
            (
                "LoanOccupancyId",
                "loan occupancy",
                "loan_occupancies",
                &ctx.lookups.loan_occupancies,
            ),
            (
                "StructureTypeId",
                "structure type",
                "structure_types",
                &ctx.lookups.structure_types,
            ),
            (
                "LoanStatusId",
                "loan status",
                "loan_statuses",
                &ctx.lookups.loan_statuses,
            ),
        ];
        for (field, noun, file, table) in tables {
            if let Slot::Set(Val::Int(id)) = r.slot(field) {
                if !table.iter().any(|e| e.id == *id) {
                    msgs.push(format!(
                        "{field}: {id} is not a {noun} id (see lookups/{file}.csv)."
                    ));
                }
            }
        }
    }
    if r.kind == Kind::LoanPositions {
        if let Some(p) = r.str("PositionName") {
            if !lender
                .divisions
                .iter()
                .any(|d| d.positions.iter().any(|q| q.eq_ignore_ascii_case(p)))
            {
                msgs.push(format!(
                    "PositionName: \"{p}\" is not a position enabled for this lender (see lookups/positions.csv)."
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn obj(text: &str) -> Json {
        crate::json::parse_one(text).unwrap()
    }

    fn ctx_cfg() -> Config {
        Config::embedded().unwrap()
    }

    #[test]
    fn accepts_the_interface_borrower_example() {
        let r = validate(
            Kind::Borrowers,
            obj(r#"{"Mode":"create","ExternalId":"B1","FirstName":"Example","MiddleInit":"","Email":"a@b.test","PhoneSecondary":null}"#),
            None,
        )
        .unwrap();
        assert_eq!(r.mode, Mode::Create);
        assert_eq!(r.str("FirstName"), Some("Example"));
        assert_eq!(r.slot("MiddleInit"), &Slot::Null);
    }

    #[test]
    fn case_insensitive_names_and_unknown_fields() {
        let r = validate(
            Kind::Loans,
            obj(r#"{"Mode":"Create","LoanNumber":"L1","SORDate":null,"NMLSNumber":"x"}"#),
            None,
        )
        .unwrap_err();
        assert_eq!(
            r.messages,
            vec!["NMLSNumber: unknown field; the closest documented field is \"LoanNumber\"."]
        );
    }

    #[test]
    fn duplicate_names_reject() {
        let r = validate(
            Kind::Borrowers,
            obj(r#"{"Mode":"create","ExternalId":"a","externalid":"b"}"#),
            None,
        )
        .unwrap_err();
        assert!(r.messages[0].contains("supplied more than once"), "{r:?}");
    }

    #[test]
    fn too_long_and_wrong_type() {
        let r = validate(
            Kind::Borrowers,
            obj(r#"{"Mode":"update","ExternalId":"a","StateCode":"KSS","ZipCode":67801}"#),
            None,
        )
        .unwrap_err();
        assert_eq!(
            r.messages,
            vec![
                "StateCode: 3 characters exceeds the maximum length of 2.",
                "ZipCode: expected a string, found a number."
            ]
        );
        assert_eq!(r.mode, Some(Mode::Update));
    }

    #[test]
    fn trimming_happens_before_length() {
        let r = validate(
            Kind::Borrowers,
            obj(r#"{"Mode":"create","ExternalId":"a","StateCode":" KS "}"#),
            None,
        )
        .unwrap();
        assert_eq!(r.str("StateCode"), Some("KS"));
    }

    #[test]
    fn modes() {
        let r = validate(
            Kind::Borrowers,
            obj(r#"{"Mode":"add","ExternalId":"a"}"#),
            None,
        )
        .unwrap_err();
        assert_eq!(r.mode, None);
        let r = validate(Kind::LoanBorrowers, obj(r#"{"Loan_Number":"a"}"#), None).unwrap_err();
        assert_eq!(r.mode, None);
        assert!(r.messages[0].starts_with("Mode: required"));
    }

    #[test]
    fn create_rules() {
        let r = validate(
            Kind::Employees,
            obj(r#"{"Mode":"create","ThreadId":"0123456789abcdef0123456789abcdef"}"#),
            None,
        )
        .unwrap_err();
        assert_eq!(r.messages.len(), 2, "{r:?}");
    }

    #[test]
    fn single_division_defaults() {
        let cfg = ctx_cfg();
        let ctx = Ctx {
            lender: &cfg.lenders[0],
            lookups: &cfg.lookups,
        };
        let r = validate(
            Kind::Employees,
            obj(r#"{"Mode":"create","ExternalId":"e"}"#),
            Some(ctx),
        )
        .unwrap();
        assert_eq!(
            r.list("DivisionThreadIds").unwrap(),
            &["0123456789abcdef0123456789abcdef".to_string()]
        );
        let r = validate(
            Kind::Loans,
            obj(r#"{"Mode":"create","LoanNumber":"l","LoanTypeId":99}"#),
            Some(ctx),
        )
        .unwrap_err();
        assert_eq!(
            r.messages,
            vec!["LoanTypeId: 99 is not a loan type id (see lookups/loan_types.csv)."]
        );
    }

    #[test]
    fn huge_unknown_name_and_date_are_cut_in_messages() {
        let name = "Q".repeat(1_000_000);
        let date = "9".repeat(100_000);
        let text =
            format!(r#"{{"Mode":"create","LoanNumber":"L","{name}":1,"ClosingDate":"{date}"}}"#);
        let r = validate(Kind::Loans, obj(&text), None).unwrap_err();
        assert_eq!(r.messages.len(), 2, "{r:?}");
        let q64 = "Q".repeat(64);
        assert_eq!(
            r.messages[0],
            format!("{q64}… (1000000 characters): unknown field; the closest documented field is \"Mode\".")
        );
        assert!(
            r.messages[1].starts_with(&format!(
                "ClosingDate: \"{}… (100000 characters)\" is not",
                "9".repeat(64)
            )),
            "{}",
            r.messages[1]
        );
    }

    #[test]
    fn dates() {
        assert_eq!(
            parse_datetime("2023-12-30T00:00:00").unwrap(),
            "2023-12-30T00:00:00.000Z"
        );
        assert_eq!(
            parse_datetime("2023-12-30").unwrap(),
            "2023-12-30T00:00:00.000Z"
        );
        assert_eq!(
            parse_datetime("2023-12-30T02:00:00+02:00").unwrap(),
            "2023-12-30T00:00:00.000Z"
        );
        assert!(parse_datetime("12/30/2023").is_none());
    }

    #[test]
    fn pairs() {
        let r = validate(
            Kind::LoanBrokers,
            obj(r#"{"Mode":"add","Loan_Number":"L","Broker_IdNumber":"B","AdditionalContacts":[{"Mode":"add","Account_ExternalId":"x","PositionName":"processor"},{"Mode":"zap","PositionName":"Chief"}]}"#),
            None,
        )
        .unwrap_err();
        assert_eq!(
            r.messages,
            vec![
                "AdditionalContacts[1].Mode: \"zap\" is not valid; use \"add\" or \"delete\".",
                "AdditionalContacts[1].Account_ThreadId or AdditionalContacts[1].Account_ExternalId: one of them is required.",
                "AdditionalContacts[1].PositionName: \"Chief\" is not a broker position; use \"Owner\", \"Loan Officer\" or \"Processor\"."
            ]
        );
    }
}
