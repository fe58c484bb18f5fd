//! Writing: the rules every record type shares when it is applied, above the store traits.
//!
//! Owns: `Writer` (a load's transaction, the lender and its options), `Outcome`, `ApplyError`,
//! and the shared rules: finding an entity by thread id or lender id, the email policy
//! (environment-wide, case-insensitive, with the borrower exception), a taken lender id,
//! resolving references to accounts, loans and brokers (both fields must agree), relations
//! (`add` is idempotent, `delete` of a missing pair fails), contacts and divisions. Every message
//! of a store-level failure is written here or in the type's module.
//! Must not: speak SQL, commit, or say which lender or record holds an email address.

use super::{Kind, Mode, Pair, Record, Ref, Slot, Val};
use crate::config::Lender;
use crate::problem::{Code, Problem, Problems};
use crate::store::{
    AccountKind, Found, Key, Link, LoadTx, RowId, StoreError, Table, Value, Written,
};

/// What applying a record did; decides which success counter it lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Added,
    Deleted,
}

/// Why a record was not applied: the lender's problem, or the store's.
#[derive(Debug)]
pub enum ApplyError {
    /// Problems for the result file.
    Rejected(Problems),
    /// The store failed (disk full, I/O): the load's transaction must be abandoned.
    Store(StoreError),
}

impl From<StoreError> for ApplyError {
    fn from(e: StoreError) -> Self {
        ApplyError::Store(e)
    }
}

pub type Applied = Result<Outcome, ApplyError>;

/// A refusal with one problem.
pub fn reject<T>(p: Problem) -> Result<T, ApplyError> {
    Err(ApplyError::Rejected(p.into()))
}

/// A refusal whose text is one sentence.
pub fn refuse<T>(field: Option<&str>, code: Code, text: String) -> Result<T, ApplyError> {
    reject(Problem::sentence(field, code, text))
}

/// Applies records of one lender inside one load's transaction.
pub struct Writer<'a> {
    pub tx: &'a mut dyn LoadTx,
    pub lender: &'a Lender,
    /// Loans and brokers relation records named, by how they were named (see `Found`).
    found: super::found::FoundCache,
    /// The entity being updated was found by the record's own lender id (no ThreadId given), so
    /// its lender-id column already holds that value and the update leaves it out (setting an
    /// indexed column, even to its own value, makes the store rewrite its index entries:
    /// bench/README.md "Issue 10: unchanged indexed columns").
    by_lender_id: bool,
    /// The column sets this load's creates bound (bitmasks over the type's fields), at most
    /// `CREATE_SHAPES`: see `create_columns`.
    create_shapes: Vec<u128>,
    /// The last upsert this load applied in one statement created its account: the next one
    /// tries its create first (`account::update_in_place`).
    pub(super) upsert_created: bool,
}

/// Distinct column sets a load's creates may bind before they bind every column: each is a
/// prepared statement of the load, so their number must not follow the input.
const CREATE_SHAPES: usize = 32;

/// What the relation cache (`found::FoundCache`) keeps of a found loan or broker.
#[derive(Clone, Copy)]
pub(super) struct Hit {
    pub id: RowId,
    /// A loan's division: its index in the lender's divisions.
    pub division: Option<u16>,
}

impl<'a> Writer<'a> {
    pub fn new(tx: &'a mut dyn LoadTx, lender: &'a Lender) -> Self {
        Writer {
            tx,
            lender,
            found: Default::default(),
            by_lender_id: false,
            create_shapes: Vec::new(),
            upsert_created: false,
        }
    }
}

/// A new thread id: 32 lower-case hexadecimal characters of a random (v4) UUID, on the stack (a
/// `String` per created row was an allocation and a free on the store thread).
pub fn new_thread_id() -> ThreadIdBuf {
    let mut b = [0u8; 32];
    uuid::Uuid::new_v4().simple().encode_lower(&mut b);
    ThreadIdBuf(b)
}

/// See `new_thread_id`; reads as a `&str`.
pub struct ThreadIdBuf([u8; 32]);

impl std::ops::Deref for ThreadIdBuf {
    type Target = str;
    fn deref(&self) -> &str {
        // Always ASCII hexadecimal (encode_lower wrote every byte).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The value a slot stores (absent, null and invalid store nothing).
pub fn to_value(slot: &Slot) -> Value<'_> {
    match slot {
        Slot::Set(Val::Str(s) | Val::Dec(s) | Val::Date(s)) => Value::Text(s.as_str().into()),
        Slot::Set(Val::Int(i)) => Value::Int(*i),
        _ => Value::Null,
    }
}

/// The key emails are compared by: lower case.
pub fn email_key(slot: &Slot) -> Option<String> {
    match slot {
        Slot::Set(Val::Str(s)) => Some(s.to_lowercase()),
        _ => None,
    }
}

pub fn key_value(k: Option<String>) -> Value<'static> {
    k.map_or(Value::Null, |k| Value::Text(k.into()))
}

/// "an employee", "a borrower", "a broker account".
pub fn account_noun(k: AccountKind) -> &'static str {
    match k {
        AccountKind::Employee => "an employee",
        AccountKind::Borrower => "a borrower",
        AccountKind::BrokerAccount => "a broker account",
    }
}

/// Leaves `column` (and its value) out, if it is there.
pub fn drop_column(cols: &mut Vec<&'static str>, vals: &mut Vec<Value>, column: &str) {
    if let Some(i) = cols.iter().position(|c| *c == column) {
        cols.remove(i);
        vals.remove(i);
    }
}

/// The columns and values of a record's own fields: every column on create, only the supplied
/// ones on update.
pub fn columns(r: &Record, only_supplied: bool) -> (Vec<&'static str>, Vec<Value<'_>>) {
    // Sized once, with room for the few columns callers add (growing them was ~4% of an
    // employee create's store work in realloc).
    let n = r.kind.fields().len() + 4;
    let mut cols = Vec::with_capacity(n);
    let mut vals = Vec::with_capacity(n);
    for (field, slot) in r.columns() {
        if only_supplied && matches!(slot, Slot::Absent | Slot::Invalid) {
            continue;
        }
        cols.push(field.column);
        vals.push(to_value(slot));
    }
    (cols, vals)
}

impl<'a> Writer<'a> {
    /// The columns and values of a create: only the fields it sets (an absent or null field is
    /// the column's NULL either way, and binding a loan's ~80 columns for its ~12 set ones was
    /// most of its insert: bench/README.md "Issue 10: creates bind what they set"), while the
    /// load has used at most `CREATE_SHAPES` column sets; then every column, as one statement.
    pub fn create_columns<'r>(&mut self, r: &'r Record) -> (Vec<&'static str>, Vec<Value<'r>>) {
        let Some(mask) = r.set_mask else {
            return columns(r, false);
        };
        if !self.create_shapes.contains(&mask) {
            if self.create_shapes.len() >= CREATE_SHAPES {
                return columns(r, false);
            }
            self.create_shapes.push(mask);
        }
        // The set fields, in the type's order (as `columns` gives them), from the mask's bits.
        let fields = r.kind.fields();
        let n = mask.count_ones() as usize + 4;
        let (mut cols, mut vals) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut bits = mask;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if let (Some(field), Some(slot)) = (fields.get(i), r.slots.get(i)) {
                if !field.column.is_empty() {
                    cols.push(field.column);
                    vals.push(to_value(slot));
                }
            }
        }
        (cols, vals)
    }

    /// Finds an entity of the record's type by thread id if given, else by the lender's id.
    pub fn locate(
        &mut self,
        table: Table,
        kind: Option<AccountKind>,
        id: &Ref,
    ) -> Result<Option<Found>, StoreError> {
        match (&id.thread_id, &id.lender_id) {
            (Some(t), _) => self.tx.find(table, Key::ThreadId(t), kind),
            // A partner's lender id is its email, compared ignoring case.
            (None, Some(l)) if table == Table::Partners => {
                self.tx.find(table, Key::LenderId(&l.to_lowercase()), kind)
            }
            (None, Some(l)) => self.tx.find(table, Key::LenderId(l), kind),
            (None, None) => Ok(None),
        }
    }

    /// The create / update / upsert decision of an entity: update finds by thread id or lender
    /// id; upsert creates when nothing is found and no thread id was given.
    pub fn entity(
        &mut self,
        r: &Record,
        table: Table,
        kind: Option<AccountKind>,
        create: fn(&mut Self, &Record) -> Applied,
        update: fn(&mut Self, &Record, &Found) -> Applied,
    ) -> Applied {
        if r.mode == Mode::Create {
            // A create finds nothing first (and needs no copy of its identity).
            return create(self, r);
        }
        let id = r.identity();
        let found = self.locate(table, kind, &id)?;
        match (r.mode, found) {
            (Mode::Update | Mode::Upsert, Some(f)) => {
                self.by_lender_id = id.thread_id.is_none();
                let applied = update(self, r, &f);
                self.by_lender_id = false;
                applied
            }
            (Mode::Upsert, None) if id.thread_id.is_none() => create(self, r),
            _ => {
                let by = if id.thread_id.is_some() {
                    "ThreadId"
                } else {
                    r.kind.lender_id_field().unwrap_or("ThreadId")
                };
                refuse(
                    Some(by),
                    Code::NotFound,
                    format!("No {} for supplied {by} exists.", r.kind.noun()),
                )
            }
        }
    }

    /// Whether the record an upsert names exists (to count its failure as create or update).
    pub fn exists(&mut self, kind: Kind, id: &Ref) -> Result<bool, StoreError> {
        let (table, account) = entity_table(kind);
        Ok(self.locate(table, account, id)?.is_some())
    }

    /// Inserts an entity row; a taken lender id becomes the record's problem.
    pub fn insert(
        &mut self,
        r: &Record,
        table: Table,
        cols: &[&str],
        vals: &[Value],
    ) -> Result<RowId, ApplyError> {
        match self.tx.insert(table, &new_thread_id(), cols, vals)? {
            Written::Row(id) => Ok(id),
            Written::Duplicate => Err(self.taken(r)?),
        }
    }

    /// Updates an entity row; a taken lender id becomes the record's problem. The lender-id
    /// column is left out when the row was found by it (it holds that value already).
    pub fn update(
        &mut self,
        r: &Record,
        table: Table,
        id: RowId,
        mut cols: Vec<&'static str>,
        mut vals: Vec<Value>,
    ) -> Result<(), ApplyError> {
        if self.by_lender_id {
            drop_column(&mut cols, &mut vals, crate::store::lender_id_column(table));
        }
        match self.tx.update(table, id, &cols, &vals)? {
            Written::Row(_) => Ok(()),
            Written::Duplicate => Err(self.taken(r)?),
        }
    }

    /// The problem of a lender id another record of the lender holds.
    fn taken(&mut self, r: &Record) -> Result<ApplyError, StoreError> {
        let field = r.kind.lender_id_field().unwrap_or("ThreadId");
        let value = r.str(field).unwrap_or_default().to_string();
        let (table, account) = entity_table(r.kind);
        let detail = match (table, account) {
            (Table::Accounts, _) => {
                let holder = self
                    .tx
                    .find(Table::Accounts, Key::LenderId(&value), None)?
                    .and_then(|f| f.kind);
                let who = holder.map(account_noun).unwrap_or("another account");
                format!("\"{value}\" is already used by {who} of this lender; ExternalId must be unique across employees, borrowers and broker accounts.")
            }
            (Table::Brokers | Table::Loans | Table::Partners, _) => format!(
                "\"{value}\" is already used by another {} of this lender.",
                r.kind.noun()
            ),
        };
        Ok(ApplyError::Rejected(
            Problem::field(field, Code::Taken, detail).into(),
        ))
    }

    /// Refuses an email held by another account of the environment (any lender). A borrower
    /// create may share a borrower's address. The message never says who holds it.
    pub fn check_email(
        &mut self,
        email: &Slot,
        self_id: Option<RowId>,
        borrower_create: bool,
    ) -> Result<(), ApplyError> {
        let Some(key) = email_key(email) else {
            return Ok(());
        };
        if self.tx.email_in_use(&key, self_id, borrower_create)? {
            let shown = match email {
                Slot::Set(Val::Str(s)) => s.as_str(),
                _ => "",
            };
            let why = if borrower_create {
                "emails must be unique (only borrowers may share one, and only with other borrowers)"
            } else {
                "account emails must be unique across the whole system"
            };
            return reject(Problem::field(
                "Email",
                Code::Taken,
                format!("\"{shown}\" is already in use; {why}."),
            ));
        }
        Ok(())
    }

    /// A record's divisions, or the single division by default (an upsert that creates),
    /// borrowed from the record or the lender (a copy of each per create was an allocation or
    /// two on the store thread).
    pub fn divisions_or_default<'r>(
        &self,
        r: &'r Record,
        field: &str,
    ) -> Result<&'r [String], ApplyError>
    where
        'a: 'r,
    {
        let lender: &'a Lender = self.lender;
        match r.divisions(field).or_else(|| {
            lender
                .only_division()
                .map(|d| std::slice::from_ref(&d.thread_id))
        }) {
            Some(d) => Ok(d),
            None => reject(Problem::field(
                field,
                Code::Required,
                super::DIVISION_REQUIRED,
            )),
        }
    }

    /// Links a row to its divisions; `replace` clears the old ones first.
    pub fn set_divisions(
        &mut self,
        link: Link,
        id: RowId,
        divisions: &[String],
        replace: bool,
    ) -> Result<(), StoreError> {
        if replace {
            self.tx.unlink_all(link, id)?;
        }
        for d in divisions {
            self.tx
                .link(link, &[Value::Int(id), Value::Text(d.as_str().into())])?;
        }
        Ok(())
    }

    /// Resolves an account of `want` named by a pair of fields; both given must agree.
    pub fn account(
        &mut self,
        want: AccountKind,
        noun: &str,
        r: &Ref,
        thread_field: &str,
        lender_field: &str,
    ) -> Result<RowId, ApplyError> {
        let by_thread = match &r.thread_id {
            Some(t) => Some((
                thread_field,
                self.tx.find(Table::Accounts, Key::ThreadId(t), None)?,
            )),
            None => None,
        };
        let by_lender = match &r.lender_id {
            Some(l) => Some((
                lender_field,
                self.tx.find(Table::Accounts, Key::LenderId(l), None)?,
            )),
            None => None,
        };
        if let (Some((_, Some(a))), Some((_, Some(b)))) = (&by_thread, &by_lender) {
            if a.id != b.id {
                return refuse(
                    Some(thread_field),
                    Code::Conflict,
                    format!("{thread_field} and {lender_field} name different accounts."),
                );
            }
        }
        let (field, hit) = match (by_thread, by_lender) {
            (Some((f, h)), _) if h.is_some() => (f, h),
            (_, Some((f, h))) => (f, h),
            (Some((f, h)), None) => (f, h),
            (None, None) => {
                return reject(Problem::field(
                    format!("{thread_field} or {lender_field}"),
                    Code::Required,
                    "one of them is required.",
                ))
            }
        };
        match hit {
            Some(Found {
                id, kind: Some(k), ..
            }) if k == want => Ok(id),
            Some(Found { kind, .. }) => reject(Problem::field(
                field,
                Code::Conflict,
                format!(
                    "the account is {}, not {}.",
                    kind.map(account_noun).unwrap_or("another kind"),
                    account_noun(want)
                ),
            )),
            None => refuse(
                Some(field),
                Code::NotFound,
                format!("No {noun} for supplied {field} exists."),
            ),
        }
    }

    /// A relation add naming its account by lender id alone, in one statement when the account
    /// exists, is of the kind wanted and the link is new (the common case of a relation file):
    /// `Some(Added)`. `None` when anything else holds: the caller resolves and links the
    /// ordinary way, which gives every refusal its message.
    pub fn add_account_link(
        &mut self,
        mode: Mode,
        link: Link,
        owner: RowId,
        want: AccountKind,
        account: &Ref,
        rest: &[Value],
    ) -> Result<Option<Outcome>, StoreError> {
        match (mode, &account.thread_id, &account.lender_id) {
            (Mode::Add, None, Some(external_id))
                if self.tx.link_account(link, owner, want, external_id, rest)? =>
            {
                Ok(Some(Outcome::Added))
            }
            _ => Ok(None),
        }
    }

    /// Resolves a loan or broker named by a pair of fields; both given must agree.
    pub fn named(
        &mut self,
        kind: Kind,
        r: &Ref,
        thread_field: &str,
        lender_field: &str,
    ) -> Result<Found, ApplyError> {
        let (table, _) = entity_table(kind);
        let by_thread = match &r.thread_id {
            Some(t) => self.find_named(table, true, t)?,
            None => None,
        };
        let by_lender = match &r.lender_id {
            Some(l) => self.find_named(table, false, l)?,
            None => None,
        };
        match (r.thread_id.is_some(), by_thread, by_lender) {
            (_, Some(a), Some(b)) if a.id != b.id => refuse(
                Some(thread_field),
                Code::Conflict,
                format!(
                    "{thread_field} and {lender_field} name different {}s.",
                    kind.noun()
                ),
            ),
            (_, Some(a), _) => Ok(a),
            (_, None, Some(b)) => Ok(b),
            (true, None, None) => refuse(
                Some(thread_field),
                Code::NotFound,
                format!("No {} for supplied {thread_field} exists.", kind.noun()),
            ),
            _ => refuse(
                Some(lender_field),
                Code::NotFound,
                format!("No {} for supplied {lender_field} exists.", kind.noun()),
            ),
        }
    }

    /// A loan or broker a relation record names, through the load's `FoundCache`.
    fn find_named(
        &mut self,
        table: Table,
        by_thread: bool,
        id: &str,
    ) -> Result<Option<Found>, StoreError> {
        let key = if by_thread {
            Key::ThreadId(id)
        } else {
            Key::LenderId(id)
        };
        let slot = match table {
            Table::Loans => 0,
            Table::Brokers => 2,
            Table::Accounts | Table::Partners => return self.tx.find(table, key, None),
        } + usize::from(!by_thread);
        let divisions = &self.lender.divisions;
        if let Some(hit) = self.found.get(slot, id) {
            return Ok(hit.map(|h| Found {
                id: h.id,
                kind: None,
                division: h
                    .division
                    .and_then(|i| divisions.get(usize::from(i)))
                    .map(|d| d.thread_id.clone()),
                email_key: None,
            }));
        }
        let found = self.tx.find(table, key, None)?;
        let hit = match &found {
            None => Some(None),
            Some(f) => match &f.division {
                None => Some(Some(Hit {
                    id: f.id,
                    division: None,
                })),
                // A division the lender no longer configures is not kept (asked again).
                Some(d) => divisions
                    .iter()
                    .position(|x| x.thread_id.eq_ignore_ascii_case(d))
                    .and_then(|i| u16::try_from(i).ok())
                    .map(|i| {
                        Some(Hit {
                            id: f.id,
                            division: Some(i),
                        })
                    }),
            },
        };
        if let Some(hit) = hit {
            self.found.insert(slot, id, hit);
        }
        Ok(found)
    }

    /// The loan a relation record names.
    pub fn loan(&mut self, r: &Record) -> Result<Found, ApplyError> {
        self.named(
            Kind::Loans,
            &r.reference("Loan_ThreadId", "Loan_Number"),
            "Loan_ThreadId",
            "Loan_Number",
        )
    }

    /// `add` inserts when missing (an existing pair is a success that changes nothing);
    /// `delete` of a missing pair is a failure.
    pub fn relation(
        &mut self,
        mode: Mode,
        link: Link,
        keys: &[Value],
        missing: impl FnOnce() -> Problem,
    ) -> Applied {
        if mode == Mode::Add {
            self.tx.link(link, keys)?;
            Ok(Outcome::Added)
        } else if self.tx.unlink(link, keys)? {
            Ok(Outcome::Deleted)
        } else {
            reject(missing())
        }
    }

    /// Applies BrokerAccountPositionPairs to a contact link of `owner`.
    pub fn contacts(
        &mut self,
        owner: RowId,
        pairs: &[Pair],
        field: &str,
        link: Link,
    ) -> Result<(), ApplyError> {
        for (i, p) in pairs.iter().enumerate() {
            let at = format!("{field}[{i}]");
            let account = self.account(
                AccountKind::BrokerAccount,
                Kind::BrokerAccounts.noun(),
                &p.account,
                &format!("{at}.Account_ThreadId"),
                &format!("{at}.Account_ExternalId"),
            )?;
            let mode = if p.add { Mode::Add } else { Mode::Delete };
            let position = p.position;
            self.relation(
                mode,
                link,
                &[
                    Value::Int(owner),
                    Value::Int(account),
                    Value::Text(position.into()),
                ],
                || {
                    Problem::field(
                        at.clone(),
                        Code::NotFound,
                        format!(
                            "the account is not a \"{position}\" contact here; nothing to delete."
                        ),
                    )
                },
            )?;
        }
        Ok(())
    }
}

/// The table (and account kind) an entity type's rows live in. Relations have none; an upsert
/// never names one, so they answer with their loan's table.
pub fn entity_table(kind: Kind) -> (Table, Option<AccountKind>) {
    kind.spec().table.unwrap_or((Table::Loans, None))
}

#[cfg(test)]
mod tests {
    #[test]
    fn new_thread_ids_are_32_lower_hex_characters_and_differ() {
        let a = super::new_thread_id();
        let b = super::new_thread_id();
        for t in [&*a, &*b] {
            assert_eq!(t.len(), 32, "{t}");
            assert!(
                t.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
                "{t}"
            );
        }
        assert_ne!(&*a, &*b);
    }
}
