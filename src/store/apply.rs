//! Applying one validated record: identity, uniqueness, email, division, position and relation
//! rules that need the store (DESIGN.md, "Records").
//!
//! Owns: the SQL of each record type and mode, and the user-facing messages of store-level
//! failures. Runs inside the caller's savepoint, so a failure part-way leaves nothing behind.
//! Must not: commit, or reveal in a message which lender or record holds an email address.

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, ErrorCode, OptionalExtension};

use super::ApplyError;
use crate::config::Lender;
use crate::records::{Kind, Mode, Pair, Record, Ref, Slot, Val};

/// What applying a record did; decides which success counter it lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Added,
    Deleted,
}

pub(super) struct Applier<'a> {
    pub conn: &'a Connection,
    pub lender: &'a Lender,
    pub load_id: i64,
}

fn reject<T>(msg: String) -> Result<T, ApplyError> {
    Err(ApplyError::Rejected(vec![msg]))
}

fn new_thread_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

fn account_kind(kind: Kind) -> &'static str {
    match kind {
        Kind::Employees => "employee",
        Kind::Borrowers => "borrower",
        _ => "broker_account",
    }
}

fn kind_noun(db_kind: &str) -> &'static str {
    match db_kind {
        "employee" => "an employee",
        "borrower" => "a borrower",
        _ => "a broker account",
    }
}

fn to_value(slot: &Slot) -> Value {
    match slot {
        Slot::Set(Val::Str(s) | Val::Dec(s) | Val::Date(s)) => Value::Text(s.clone()),
        Slot::Set(Val::Int(i)) => Value::Integer(*i),
        _ => Value::Null,
    }
}

fn email_key(slot: &Slot) -> Value {
    match slot {
        Slot::Set(Val::Str(s)) => Value::Text(s.to_lowercase()),
        _ => Value::Null,
    }
}

/// Splits "Thomas Fakeman" into ("Thomas", "Fakeman") for a broker's owner account.
fn split_owner(name: Option<&str>) -> (Option<String>, Option<String>) {
    match name.map(str::trim) {
        None | Some("") => (None, None),
        Some(n) => match n.rsplit_once(char::is_whitespace) {
            Some((first, last)) => (Some(first.trim().to_string()), Some(last.to_string())),
            None => (None, Some(n.to_string())),
        },
    }
}

/// A found entity row.
struct Found {
    id: i64,
    /// For loans, the division; for accounts, the kind.
    extra: String,
    /// For accounts, the current `email_key` (saves an update a second lookup).
    email_key: Option<String>,
}

/// True when applying `r` runs at most one writing statement and refuses it (`Rejected`) only
/// before that statement or because that statement failed, so SQLite's statement atomicity
/// alone makes the record all-or-nothing and the caller may skip its savepoint. Keep this in step
/// with the code below: any record that can write twice, or write and then be rejected, must
/// answer false.
pub(super) fn single_write(r: &Record) -> bool {
    match r.kind {
        // create: email check, one INSERT; update: one UPDATE (the email check reads only).
        Kind::Borrowers | Kind::BrokerAccounts | Kind::Loans => true,
        // update without divisions: one UPDATE. A create also writes its divisions.
        Kind::Employees => {
            r.mode == Mode::Update && matches!(r.slot("DivisionThreadIds"), Slot::Absent)
        }
        // one INSERT OR IGNORE, or one DELETE.
        Kind::LoanPositions | Kind::LoanBorrowers => true,
        // owner account, divisions, contacts.
        Kind::Brokers | Kind::LoanBrokers => false,
    }
}

impl Applier<'_> {
    pub fn apply(&self, r: &Record) -> Result<Outcome, ApplyError> {
        match r.kind {
            Kind::Employees | Kind::Borrowers | Kind::BrokerAccounts => self.entity(r),
            Kind::Brokers | Kind::Loans => self.entity(r),
            Kind::LoanPositions => self.loan_position(r),
            Kind::LoanBorrowers => self.loan_borrower(r),
            Kind::LoanBrokers => self.loan_broker(r),
        }
    }

    pub fn exists(&self, kind: Kind, id: &Ref) -> Result<bool, rusqlite::Error> {
        Ok(self.locate(kind, id)?.is_some())
    }

    // -----------------------------------------------------------------------------------------
    // Entities: create / update / upsert.

    fn table(kind: Kind) -> &'static str {
        match kind {
            Kind::Brokers => "brokers",
            Kind::Loans => "loans",
            _ => "accounts",
        }
    }

    /// Finds an entity of `kind` by thread id if given, else by the lender's id.
    fn locate(&self, kind: Kind, id: &Ref) -> Result<Option<Found>, rusqlite::Error> {
        let table = Self::table(kind);
        let (extra, kind_filter) = match kind {
            Kind::Loans => ("division_thread_id, NULL", ""),
            Kind::Brokers => ("'', NULL", ""),
            _ => ("kind, email_key", " AND kind = ?3"),
        };
        let lid_col = match kind {
            Kind::Brokers => "id_number",
            Kind::Loans => "loan_number",
            _ => "external_id",
        };
        let (col, val) = match (&id.thread_id, &id.lender_id) {
            (Some(t), _) => ("thread_id", t),
            (None, Some(l)) => (lid_col, l),
            (None, None) => return Ok(None),
        };
        let sql = format!(
            "SELECT id, {extra} FROM {table} WHERE {col} = ?1 AND lender = ?2{kind_filter}"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let row = if kind_filter.is_empty() {
            st.query_row(params![val, self.lender.id], |r| {
                Ok(Found {
                    id: r.get(0)?,
                    extra: r.get(1)?,
                    email_key: r.get(2)?,
                })
            })
        } else {
            st.query_row(params![val, self.lender.id, account_kind(kind)], |r| {
                Ok(Found {
                    id: r.get(0)?,
                    extra: r.get(1)?,
                    email_key: r.get(2)?,
                })
            })
        };
        row.optional()
    }

    fn entity(&self, r: &Record) -> Result<Outcome, ApplyError> {
        let id = r.identity();
        let found = match r.mode {
            Mode::Create => None,
            _ => self.locate(r.kind, &id)?,
        };
        match (r.mode, found) {
            (Mode::Create, _) => self.create(r),
            (Mode::Update | Mode::Upsert, Some(f)) => self.update(r, &f),
            (Mode::Upsert, None) if id.thread_id.is_none() => self.create(r),
            _ => {
                let by = if id.thread_id.is_some() {
                    "ThreadId"
                } else {
                    r.kind.lender_id_field()
                };
                reject(format!("No {} for supplied {by} exists.", r.kind.noun()))
            }
        }
    }

    /// Runs the INSERT or UPDATE of an entity row; a unique-index violation (the lender's id is
    /// taken) becomes the record's problem.
    fn write_row(&self, sql: &str, vals: &[Value], r: &Record) -> Result<(), ApplyError> {
        match self
            .conn
            .prepare_cached(sql)?
            .execute(params_from_iter(vals.iter()))
        {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(self.taken(r)?),
            Err(e) => Err(e.into()),
        }
    }

    /// The error for a unique index on the lender's id.
    fn taken(&self, r: &Record) -> Result<ApplyError, rusqlite::Error> {
        let field = r.kind.lender_id_field();
        let value = r.str(field).unwrap_or_default();
        let msg = match r.kind {
            Kind::Brokers => {
                format!("IdNumber: \"{value}\" is already used by another broker of this lender.")
            }
            Kind::Loans => {
                format!("LoanNumber: \"{value}\" is already used by another loan of this lender.")
            }
            _ => {
                let holder: Option<String> = self
                    .conn
                    .prepare_cached(
                        "SELECT kind FROM accounts WHERE lender = ?1 AND external_id = ?2",
                    )?
                    .query_row(params![self.lender.id, value], |row| row.get(0))
                    .optional()?;
                let who = holder
                    .as_deref()
                    .map(kind_noun)
                    .unwrap_or("another account");
                format!("ExternalId: \"{value}\" is already used by {who} of this lender; ExternalId must be unique across employees, borrowers and broker accounts.")
            }
        };
        Ok(ApplyError::Rejected(vec![msg]))
    }

    /// Refuses an email held by another account of the environment (any lender). A borrower
    /// create may share a borrower's address.
    fn check_email(
        &self,
        email: &Slot,
        self_id: Option<i64>,
        borrower_create: bool,
    ) -> Result<(), ApplyError> {
        let Value::Text(key) = email_key(email) else {
            return Ok(());
        };
        let clash: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT 1 FROM accounts WHERE email_key = ?1 AND id IS NOT ?2
                 AND (?3 = 0 OR kind <> 'borrower') LIMIT 1",
            )?
            .query_row(params![key, self_id, borrower_create as i64], |row| {
                row.get(0)
            })
            .optional()?;
        if clash.is_some() {
            let shown = match email {
                Slot::Set(Val::Str(s)) => s.as_str(),
                _ => "",
            };
            let why = if borrower_create {
                "emails must be unique (only borrowers may share one, and only with other borrowers)"
            } else {
                "account emails must be unique across the whole system"
            };
            return reject(format!("Email: \"{shown}\" is already in use; {why}."));
        }
        Ok(())
    }

    fn default_division(&self) -> Option<&str> {
        match self.lender.divisions.as_slice() {
            [only] => Some(&only.thread_id),
            _ => None,
        }
    }

    fn create(&self, r: &Record) -> Result<Outcome, ApplyError> {
        let kind = r.kind;
        let table = Self::table(kind);
        let is_account = table == "accounts";
        if is_account || kind == Kind::Brokers {
            self.check_email(r.slot("Email"), None, kind == Kind::Borrowers)?;
        }
        let mut cols: Vec<&str> = Vec::new();
        let mut vals: Vec<Value> = Vec::new();
        for (field, slot) in r.columns() {
            cols.push(field.column);
            vals.push(to_value(slot));
        }
        if kind == Kind::Loans {
            // An upsert that creates takes the single division when none was given.
            let i = cols.iter().position(|c| *c == "division_thread_id");
            if let Some(i) = i {
                if vals[i] == Value::Null {
                    match self.default_division() {
                        Some(d) => vals[i] = Value::Text(d.to_string()),
                        None => return reject("DivisionThreadId: required for create, as this lender has more than one division.".into()),
                    }
                }
            }
        }
        if is_account {
            cols.push("kind");
            vals.push(Value::Text(account_kind(kind).into()));
            cols.push("email_key");
            vals.push(email_key(r.slot("Email")));
        }
        let mut owner_id = None;
        if kind == Kind::Brokers {
            owner_id = Some(self.create_owner_account(r)?);
            cols.push("owner_account_id");
            vals.push(Value::Integer(owner_id.unwrap_or_default()));
        }
        cols.extend(["lender", "thread_id", "created_load", "updated_load"]);
        vals.push(Value::Text(self.lender.id.clone()));
        vals.push(Value::Text(new_thread_id()));
        vals.push(Value::Integer(self.load_id));
        vals.push(Value::Integer(self.load_id));
        let marks = vec!["?"; cols.len()].join(", ");
        let sql = format!("INSERT INTO {table} ({}) VALUES ({marks})", cols.join(", "));
        self.write_row(&sql, &vals, r)?;
        let id = self.conn.last_insert_rowid();
        match kind {
            Kind::Employees => {
                let divs = r
                    .list("DivisionThreadIds")
                    .map(<[String]>::to_vec)
                    .or_else(|| self.default_division().map(|d| vec![d.to_string()]));
                match divs {
                    Some(d) => self.add_divisions("account_divisions", "account_id", id, &d)?,
                    None => return reject("DivisionThreadIds: required for create, as this lender has more than one division.".into()),
                }
            }
            Kind::Brokers => {
                let divs = r
                    .list("BrokerDivisionThreadIds")
                    .map(<[String]>::to_vec)
                    .or_else(|| self.default_division().map(|d| vec![d.to_string()]));
                match divs {
                    Some(d) => self.add_divisions("broker_divisions", "broker_id", id, &d)?,
                    None => return reject("BrokerDivisionThreadIds: required for create, as this lender has more than one division.".into()),
                }
                if let Some(owner) = owner_id {
                    self.conn
                        .prepare_cached("INSERT INTO broker_contacts (broker_id, account_id, position) VALUES (?1, ?2, 'Owner')")?
                        .execute(params![id, owner])?;
                }
                self.contacts(
                    id,
                    r.pairs("Contacts"),
                    "Contacts",
                    "broker_contacts",
                    "broker_id",
                )?;
            }
            _ => {}
        }
        Ok(Outcome::Created)
    }

    /// A new broker's owner account: a broker account with the broker's email, owner name and
    /// address, and no ExternalId.
    fn create_owner_account(&self, r: &Record) -> Result<i64, ApplyError> {
        let (first, last) = split_owner(r.str("OwnerName"));
        let s = |n: &str| r.str(n).map(str::to_string);
        self.conn
            .prepare_cached(
                "INSERT INTO accounts (lender, kind, thread_id, email, email_key, first_name, last_name,
                    address1, address2, city, state_code, zip_code, created_load, updated_load)
                 VALUES (?1, 'broker_account', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
            )?
            .execute(params![
                self.lender.id,
                new_thread_id(),
                s("Email"),
                email_key(r.slot("Email")),
                first,
                last,
                s("Address1"),
                s("Address2"),
                s("City"),
                s("StateCode"),
                s("ZipCode"),
                self.load_id
            ])?;
        Ok(self.conn.last_insert_rowid())
    }

    fn set_divisions(
        &self,
        table: &str,
        key: &str,
        id: i64,
        divisions: &[String],
    ) -> Result<(), rusqlite::Error> {
        self.conn
            .prepare_cached(&format!("DELETE FROM {table} WHERE {key} = ?1"))?
            .execute([id])?;
        self.add_divisions(table, key, id, divisions)
    }

    /// A new row's divisions: nothing to clear first.
    fn add_divisions(
        &self,
        table: &str,
        key: &str,
        id: i64,
        divisions: &[String],
    ) -> Result<(), rusqlite::Error> {
        let mut ins = self.conn.prepare_cached(&format!(
            "INSERT OR IGNORE INTO {table} ({key}, division_thread_id) VALUES (?1, ?2)"
        ))?;
        for d in divisions {
            ins.execute(params![id, d])?;
        }
        Ok(())
    }

    fn update(&self, r: &Record, found: &Found) -> Result<Outcome, ApplyError> {
        let kind = r.kind;
        let table = Self::table(kind);
        let is_account = table == "accounts";
        let email = r.slot("Email");
        // Email: only a change is checked (a borrower may keep an address it shares).
        let email_target = if is_account {
            Some(found.id)
        } else if kind == Kind::Brokers {
            Some(
                self.conn
                    .prepare_cached("SELECT owner_account_id FROM brokers WHERE id = ?1")?
                    .query_row([found.id], |row| row.get::<_, i64>(0))?,
            )
        } else {
            None
        };
        let mut email_changed = false;
        if let (Some(target), false) = (email_target, matches!(email, Slot::Absent)) {
            let current: Option<String> = if is_account {
                found.email_key.clone()
            } else {
                self.conn
                    .prepare_cached("SELECT email_key FROM accounts WHERE id = ?1")?
                    .query_row([target], |row| row.get(0))?
            };
            let new = match email_key(email) {
                Value::Text(k) => Some(k),
                _ => None,
            };
            if new != current {
                email_changed = true;
                self.check_email(email, Some(target), false)?;
            }
        }
        let mut sets: Vec<String> = Vec::new();
        let mut vals: Vec<Value> = Vec::new();
        for (field, slot) in r.columns() {
            if matches!(slot, Slot::Absent) {
                continue;
            }
            if field.column == "division_thread_id" && matches!(slot, Slot::Null) {
                continue; // validation refused or defaulted it; never clear a loan's division
            }
            sets.push(format!("{} = ?", field.column));
            vals.push(to_value(slot));
        }
        if is_account && !matches!(email, Slot::Absent) {
            sets.push("email_key = ?".into());
            vals.push(email_key(email));
        }
        sets.push("updated_load = ?".into());
        vals.push(Value::Integer(self.load_id));
        vals.push(Value::Integer(found.id));
        let sql = format!("UPDATE {table} SET {} WHERE id = ?", sets.join(", "));
        self.write_row(&sql, &vals, r)?;
        if kind == Kind::Brokers && email_changed {
            if let Some(owner) = email_target {
                self.conn
                    .prepare_cached(
                        "UPDATE accounts SET email = ?1, email_key = ?2, updated_load = ?3 WHERE id = ?4",
                    )?
                    .execute(params![to_value(email), email_key(email), self.load_id, owner])?;
            }
        }
        match kind {
            Kind::Employees => {
                if let Some(d) = r.list("DivisionThreadIds") {
                    self.set_divisions("account_divisions", "account_id", found.id, d)?;
                }
            }
            Kind::Brokers => {
                if let Some(d) = r.list("BrokerDivisionThreadIds") {
                    self.set_divisions("broker_divisions", "broker_id", found.id, d)?;
                }
                self.contacts(
                    found.id,
                    r.pairs("Contacts"),
                    "Contacts",
                    "broker_contacts",
                    "broker_id",
                )?;
            }
            _ => {}
        }
        Ok(Outcome::Updated)
    }

    // -----------------------------------------------------------------------------------------
    // References and relations.

    /// Resolves an account of `kind` named by a pair of fields; both given must agree.
    fn account(
        &self,
        kind: Kind,
        r: &Ref,
        thread_field: &str,
        lender_field: &str,
    ) -> Result<i64, ApplyError> {
        let want = account_kind(kind);
        let lookup = |col: &str, v: &str| -> Result<Option<(i64, String)>, rusqlite::Error> {
            self.conn
                .prepare_cached(&format!(
                    "SELECT id, kind FROM accounts WHERE {col} = ?1 AND lender = ?2"
                ))?
                .query_row(params![v, self.lender.id], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()
        };
        let by_thread = match &r.thread_id {
            Some(t) => Some((thread_field, lookup("thread_id", t)?)),
            None => None,
        };
        let by_lender = match &r.lender_id {
            Some(l) => Some((lender_field, lookup("external_id", l)?)),
            None => None,
        };
        if let (Some((_, a)), Some((_, b))) = (&by_thread, &by_lender) {
            if a.is_some() && b.is_some() && a.as_ref().map(|x| x.0) != b.as_ref().map(|x| x.0) {
                return reject(format!(
                    "{thread_field} and {lender_field} name different accounts."
                ));
            }
        }
        let (field, hit) = match (by_thread, by_lender) {
            (Some((f, h)), _) if h.is_some() => (f, h),
            (_, Some((f, h))) => (f, h),
            (Some((f, h)), None) => (f, h),
            (None, None) => {
                return reject(format!(
                    "{thread_field} or {lender_field}: one of them is required."
                ))
            }
        };
        match hit {
            Some((id, k)) if k == want => Ok(id),
            Some((_, k)) => reject(format!(
                "{field}: the account is {}, not {}.",
                kind_noun(&k),
                kind_noun(want)
            )),
            None => reject(format!("No {} for supplied {field} exists.", kind.noun())),
        }
    }

    /// Resolves an entity (loan or broker) named by a pair of fields; both given must agree.
    fn named(
        &self,
        kind: Kind,
        r: &Ref,
        thread_field: &str,
        lender_field: &str,
    ) -> Result<Found, ApplyError> {
        let by_thread = match &r.thread_id {
            Some(t) => self.locate(
                kind,
                &Ref {
                    thread_id: Some(t.clone()),
                    lender_id: None,
                },
            )?,
            None => None,
        };
        let by_lender = match &r.lender_id {
            Some(l) => self.locate(
                kind,
                &Ref {
                    thread_id: None,
                    lender_id: Some(l.clone()),
                },
            )?,
            None => None,
        };
        match (
            r.thread_id.is_some(),
            by_thread,
            r.lender_id.is_some(),
            by_lender,
        ) {
            (_, Some(a), _, Some(b)) if a.id != b.id => reject(format!(
                "{thread_field} and {lender_field} name different {}s.",
                kind.noun()
            )),
            (_, Some(a), _, _) => Ok(a),
            (_, None, _, Some(b)) => Ok(b),
            (true, None, _, None) => reject(format!(
                "No {} for supplied {thread_field} exists.",
                kind.noun()
            )),
            _ => reject(format!(
                "No {} for supplied {lender_field} exists.",
                kind.noun()
            )),
        }
    }

    fn loan(&self, r: &Record) -> Result<Found, ApplyError> {
        self.named(
            Kind::Loans,
            &r.reference("Loan_ThreadId", "Loan_Number"),
            "Loan_ThreadId",
            "Loan_Number",
        )
    }

    fn loan_position(&self, r: &Record) -> Result<Outcome, ApplyError> {
        let loan = self.loan(r)?;
        let asked = r.str("PositionName").unwrap_or_default();
        let division = self.lender.division(&loan.extra);
        let position = division
            .and_then(|d| d.positions.iter().find(|p| p.eq_ignore_ascii_case(asked)))
            .cloned();
        let Some(position) = position else {
            let dname = division.map(|d| d.system_name.as_str()).unwrap_or("?");
            return reject(format!(
                "PositionName: \"{asked}\" is not enabled for the loan's division \"{dname}\" (see lookups/positions.csv)."
            ));
        };
        let account = self.account(
            Kind::Employees,
            &r.reference("Account_ThreadId", "Account_ExternalId"),
            "Account_ThreadId",
            "Account_ExternalId",
        )?;
        self.relation(
            r.mode,
            "loan_positions",
            "loan_id = ?1 AND account_id = ?2 AND position = ?3",
            "(loan_id, account_id, position) VALUES (?1, ?2, ?3)",
            params![loan.id, account, position],
            || format!("The employee does not hold position \"{position}\" on this loan; nothing to delete."),
        )
    }

    fn loan_borrower(&self, r: &Record) -> Result<Outcome, ApplyError> {
        let loan = self.loan(r)?;
        let account = self.account(
            Kind::Borrowers,
            &r.reference("Account_ThreadId", "Account_ExternalId"),
            "Account_ThreadId",
            "Account_ExternalId",
        )?;
        self.relation(
            r.mode,
            "loan_borrowers",
            "loan_id = ?1 AND account_id = ?2",
            "(loan_id, account_id) VALUES (?1, ?2)",
            params![loan.id, account],
            || "The borrower is not on this loan; nothing to delete.".to_string(),
        )
    }

    /// `add` inserts when missing (an existing pair is a success that changes nothing);
    /// `delete` of a missing pair is a failure.
    fn relation(
        &self,
        mode: Mode,
        table: &str,
        key: &str,
        insert: &str,
        p: &[&dyn rusqlite::ToSql],
        missing: impl FnOnce() -> String,
    ) -> Result<Outcome, ApplyError> {
        if mode == Mode::Add {
            self.conn
                .prepare_cached(&format!("INSERT OR IGNORE INTO {table} {insert}"))?
                .execute(p)?;
            Ok(Outcome::Added)
        } else {
            let n = self
                .conn
                .prepare_cached(&format!("DELETE FROM {table} WHERE {key}"))?
                .execute(p)?;
            if n == 0 {
                reject(missing())
            } else {
                Ok(Outcome::Deleted)
            }
        }
    }

    fn loan_broker(&self, r: &Record) -> Result<Outcome, ApplyError> {
        let loan = self.loan(r)?;
        let broker = self.named(
            Kind::Brokers,
            &r.reference("Broker_ThreadId", "Broker_IdNumber"),
            "Broker_ThreadId",
            "Broker_IdNumber",
        )?;
        let current: Option<(i64, String)> = self
            .conn
            .prepare_cached(
                "SELECT lb.broker_id, b.id_number FROM loan_brokers lb JOIN brokers b ON b.id = lb.broker_id
                 WHERE lb.loan_id = ?1",
            )?
            .query_row([loan.id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        if r.mode == Mode::Delete {
            return match current {
                Some((b, _)) if b == broker.id => {
                    self.conn
                        .prepare_cached("DELETE FROM loan_broker_contacts WHERE loan_id = ?1")?
                        .execute([loan.id])?;
                    self.conn
                        .prepare_cached("DELETE FROM loan_brokers WHERE loan_id = ?1")?
                        .execute([loan.id])?;
                    Ok(Outcome::Deleted)
                }
                _ => reject("The broker is not this loan's broker; nothing to delete.".into()),
            };
        }
        if let Some((b, number)) = &current {
            if *b != broker.id {
                return reject(format!(
                    "The loan already has a broker (Broker_IdNumber \"{number}\"); a loan has at most one broker: delete it first with a \"delete\" record."
                ));
            }
        }
        let officer_ref = r.reference(
            "LoanOfficer_AccountThreadId",
            "LoanOfficer_AccountExternalId",
        );
        let officer = if officer_ref.is_empty() {
            None
        } else {
            Some(self.account(
                Kind::BrokerAccounts,
                &officer_ref,
                "LoanOfficer_AccountThreadId",
                "LoanOfficer_AccountExternalId",
            )?)
        };
        if current.is_none() {
            self.conn
                .prepare_cached("INSERT INTO loan_brokers (loan_id, broker_id, loan_officer_account_id) VALUES (?1, ?2, ?3)")?
                .execute(params![loan.id, broker.id, officer])?;
        } else if let Some(o) = officer {
            self.conn
                .prepare_cached(
                    "UPDATE loan_brokers SET loan_officer_account_id = ?2 WHERE loan_id = ?1",
                )?
                .execute(params![loan.id, o])?;
        }
        self.contacts(
            loan.id,
            r.pairs("AdditionalContacts"),
            "AdditionalContacts",
            "loan_broker_contacts",
            "loan_id",
        )?;
        Ok(Outcome::Added)
    }

    /// Applies BrokerAccountPositionPairs to a contact table keyed by `key`.
    fn contacts(
        &self,
        owner: i64,
        pairs: &[Pair],
        field: &str,
        table: &str,
        key: &str,
    ) -> Result<(), ApplyError> {
        for (i, p) in pairs.iter().enumerate() {
            let at = format!("{field}[{i}]");
            let account = self.account(
                Kind::BrokerAccounts,
                &p.account,
                &format!("{at}.Account_ThreadId"),
                &format!("{at}.Account_ExternalId"),
            )?;
            let mode = if p.add { Mode::Add } else { Mode::Delete };
            let position = p.position;
            self.relation(
                mode,
                table,
                &format!("{key} = ?1 AND account_id = ?2 AND position = ?3"),
                &format!("({key}, account_id, position) VALUES (?1, ?2, ?3)"),
                params![owner, account, position],
                || format!("{at}: the account is not a \"{position}\" contact here; nothing to delete."),
            )?;
        }
        Ok(())
    }
}
