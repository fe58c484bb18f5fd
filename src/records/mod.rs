//! Records: the nine record types, each in a module of its own, and the validation they share.
//!
//! Owns: `Kind` and its one registration point (`Kind::spec`), modes, the typed validation state
//! of a record (`Slot`: absent, null, a value, or invalid), the generic rules every type follows
//! (mode, thread ids, identity, divisions), and `validate`, which turns one format-neutral input
//! record into a `Record` or its `Problems`. Each type's module holds its field table, its own
//! rules and what it writes (through `write::Writer`, above the store traits), with its tests.
//! Must not: touch the store directly (only through `store::LoadTx`), the file system, or read a
//! problem's text to decide anything.
//!
//! Adding a record type: see ARCHITECTURE.md, "Adding a record type".

mod account;
mod borrowers;
mod broker_accounts;
mod brokers;
pub mod convert;
mod employees;
mod found;
pub mod hints;
mod loan_borrowers;
mod loan_brokers;
mod loan_positions;
mod loans;
mod partners;
pub mod prefetch;
pub mod write;

use crate::config::{Lender, Lookups};
use crate::input::Value;
use crate::problem::{Code, Problem, Problems};

pub use convert::{is_plausible_email, is_thread_id};
pub use write::{ApplyError, Outcome, Writer};

/// The record types, in dependency order (the order a pass applies files in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Employees,
    Partners,
    Borrowers,
    Brokers,
    BrokerAccounts,
    Loans,
    LoanPositions,
    LoanBorrowers,
    LoanBrokers,
}

/// Whether a type is an entity (found by thread id or the lender's own id) or a relation
/// between entities (added and deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The field holding the lender's own id (`ExternalId`, `IdNumber`, `LoanNumber`, `Email`).
    Entity {
        lender_id: &'static str,
    },
    Relation,
}

/// Everything the engine needs to know of one record type. Each type's module defines one.
pub struct Spec {
    pub kind: Kind,
    /// The file-name prefix (`borrowers`), also the type's name in messages about files.
    pub prefix: &'static str,
    /// The singular noun used in messages ("No borrower for supplied ExternalId exists.").
    pub noun: &'static str,
    pub fields: &'static [Field],
    pub shape: Shape,
    /// Where an entity type's rows live (`None` for relations).
    pub table: Option<(crate::store::Table, Option<crate::store::AccountKind>)>,
    /// The field naming the record's division(s), for types that have one.
    pub division_field: Option<&'static str>,
    /// Names lenders use for documented fields (`Phone` → `PhonePrimary`…), lower case, for
    /// "did you mean" hints.
    pub aliases: &'static [&'static [hints::Alias]],
    /// The type's own rules, after the generic ones; `ctx` is `None` offline.
    pub rules: fn(&mut Record, Option<Ctx<'_>>, &mut Problems),
    /// Applies a valid record through the store traits.
    pub write: fn(&Record, &mut Writer<'_>) -> Result<Outcome, ApplyError>,
    /// True when `write` refuses the record only before its first writing statement or because
    /// that statement failed (writing nothing), so that every later write can only fail the
    /// store: the record needs no savepoint of its own (see `write`).
    pub single_write: fn(&Record) -> bool,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Employees,
        Kind::Partners,
        Kind::Borrowers,
        Kind::Brokers,
        Kind::BrokerAccounts,
        Kind::Loans,
        Kind::LoanPositions,
        Kind::LoanBorrowers,
        Kind::LoanBrokers,
    ];

    /// The one registration point of the record types.
    pub fn spec(self) -> &'static Spec {
        match self {
            Kind::Employees => &employees::SPEC,
            Kind::Partners => &partners::SPEC,
            Kind::Borrowers => &borrowers::SPEC,
            Kind::Brokers => &brokers::SPEC,
            Kind::BrokerAccounts => &broker_accounts::SPEC,
            Kind::Loans => &loans::SPEC,
            Kind::LoanPositions => &loan_positions::SPEC,
            Kind::LoanBorrowers => &loan_borrowers::SPEC,
            Kind::LoanBrokers => &loan_brokers::SPEC,
        }
    }

    pub fn prefix(self) -> &'static str {
        self.spec().prefix
    }

    pub fn noun(self) -> &'static str {
        self.spec().noun
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
        Kind::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or(Kind::ALL.len())
    }

    pub fn is_relation(self) -> bool {
        self.spec().shape == Shape::Relation
    }

    /// The lender's own identifier field of an entity type (`None` for relations).
    pub fn lender_id_field(self) -> Option<&'static str> {
        match self.spec().shape {
            Shape::Entity { lender_id } => Some(lender_id),
            Shape::Relation => None,
        }
    }

    pub fn fields(self) -> &'static [Field] {
        self.spec().fields
    }

    pub fn modes(self) -> &'static [Mode] {
        match self.spec().shape {
            Shape::Relation => &[Mode::Add, Mode::Delete],
            Shape::Entity { .. } => &[Mode::Create, Mode::Update, Mode::Upsert],
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
    pub fn parse(s: &str) -> Option<Mode> {
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

pub const fn f(name: &'static str, ty: Ty, column: &'static str) -> Field {
    Field { name, ty, column }
}

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

/// The validation state of one field.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    /// Not supplied: left unchanged on update.
    Absent,
    /// `null` (or an empty string): clears on update.
    Null,
    Set(Val),
    /// Supplied but refused; its problem is already recorded. Rules that would report the
    /// field's absence stay quiet about it.
    Invalid,
}

impl Slot {
    /// Supplied at all (a value, null, or something refused).
    pub fn is_supplied(&self) -> bool {
        !matches!(self, Slot::Absent)
    }
    /// The integer it holds, if it holds one.
    pub fn int(&self) -> Option<i64> {
        match self {
            Slot::Set(Val::Int(i)) => Some(*i),
            _ => None,
        }
    }
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

/// Broker-specific positions of a BrokerAccountPositionPair.
pub const BROKER_POSITIONS: [&str; 3] = ["Owner", "Loan Officer", "Processor"];

/// A record that passed every check this module can make (or, inside validation, one being
/// checked).
#[derive(Debug, Clone)]
pub struct Record {
    pub kind: Kind,
    pub mode: Mode,
    slots: Vec<Slot>,
    /// Bit i is set when slot i is `Slot::Set`: worked out once the record is valid, on the
    /// parser's thread, so that a create binds its set fields without going over every field of
    /// its type on the store's (`Writer::create_columns`: 7.6% of a loans file's store thread).
    /// `None` for a type of more than 128 fields.
    set_mask: Option<u128>,
}

impl Record {
    fn index(&self, name: &str) -> Option<usize> {
        let i = self.kind.fields().iter().position(|f| f.name == name);
        // A name that is not in the table is a bug of the caller, not an absent field.
        debug_assert!(i.is_some(), "{:?} has no field {name}", self.kind);
        i
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
    pub fn int(&self, name: &str) -> Option<i64> {
        self.slot(name).int()
    }
    pub fn list(&self, name: &str) -> Option<&[String]> {
        match self.slot(name) {
            Slot::Set(Val::List(v)) => Some(v),
            _ => None,
        }
    }
    /// The division thread ids a division field holds (one for a loan, a list otherwise), if
    /// any, borrowed.
    pub fn divisions(&self, name: &str) -> Option<&[String]> {
        match self.slot(name) {
            Slot::Set(Val::Str(s)) => Some(std::slice::from_ref(s)),
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
    /// The record's own identity: `ThreadId` and the lender's id (empty for relations).
    pub fn identity(&self) -> Ref {
        match self.kind.lender_id_field() {
            Some(lid) => self.reference("ThreadId", lid),
            None => Ref::default(),
        }
    }
    pub fn reference(&self, thread_field: &str, lender_field: &str) -> Ref {
        Ref {
            thread_id: self.str(thread_field).map(str::to_string),
            lender_id: self.str(lender_field).map(str::to_string),
        }
    }
    /// Replaces a slot; used for defaults (a single-division lender's division).
    pub fn set(&mut self, name: &str, slot: Slot) {
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
    pub problems: Problems,
}

impl Rejection {
    /// The rendered messages (tests and tools).
    pub fn messages(&self) -> Vec<String> {
        self.problems.messages()
    }
}

/// The configuration-dependent half of validation.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub lender: &'a Lender,
    pub lookups: &'a Lookups,
}

/// Validates one input record. `ctx` adds the configuration checks (divisions, lookups,
/// positions); without it those are skipped (offline `check`).
pub fn validate(kind: Kind, element: Value, ctx: Option<Ctx<'_>>) -> Result<Record, Rejection> {
    let spec = kind.spec();
    let mut problems = Problems::default();
    let members = match element {
        Value::Object(m) => m,
        Value::Row { cells, .. } => convert::csv_members(spec.fields, cells, &mut problems),
        other => {
            return Err(Rejection {
                mode: None,
                identity: None,
                problems: Problem::sentence(
                    None,
                    Code::NotAnObject,
                    format!(
                        "Record is not a JSON object (found {}).",
                        convert::json_type(&other)
                    ),
                )
                .into(),
            })
        }
    };
    let mut slots = convert::read_object("", spec.fields, spec.aliases, members, &mut problems);

    // Mode first: it decides how a failure is counted. It is a field of every table; it is
    // taken out of the slots so no rule reads it by position.
    let allowed = kind.modes();
    // Built only for a message (a text per record was a malloc and a free per record).
    let allowed_text = || match allowed {
        [a, b] => format!("\"{}\" or \"{}\"", a.name(), b.name()),
        _ => "\"create\", \"update\" or \"upsert\"".to_string(),
    };
    let mode_at = spec.fields.iter().position(|f| f.name == "Mode");
    let mode_slot = mode_at.map_or(Slot::Absent, |i| {
        std::mem::replace(&mut slots[i], Slot::Absent)
    });
    let mode = match mode_slot {
        Slot::Set(Val::Str(m)) => match Mode::parse(&m) {
            Some(m) if allowed.contains(&m) => Some(m),
            _ => {
                problems.at(
                    "Mode",
                    Code::InvalidValue,
                    format!(
                        "\"{m}\" is not valid for {}; use {}.",
                        kind.prefix(),
                        allowed_text()
                    ),
                );
                None
            }
        },
        Slot::Invalid => None,
        _ => {
            problems.at(
                "Mode",
                Code::Required,
                format!("required; use {}.", allowed_text()),
            );
            None
        }
    };

    // Thread ids look like thread ids; stored lower-case.
    for (i, field) in spec.fields.iter().enumerate() {
        // Only a supplied text or list can be a thread id: most of a loan's ~80 slots are empty,
        // and naming the field for each was 3% of a loans file's parser thread.
        if !matches!(slots[i], Slot::Set(Val::Str(_) | Val::List(_))) {
            continue;
        }
        let is_tid = field.name == "ThreadId"
            || field.name.ends_with("_ThreadId")
            || field.name.ends_with("AccountThreadId")
            || field.name == "DivisionThreadId";
        if let (true, Slot::Set(Val::Str(s))) = (is_tid, &mut slots[i]) {
            if is_thread_id(s) {
                s.make_ascii_lowercase();
            } else {
                problems.at(
                    field.name,
                    Code::InvalidValue,
                    format!("\"{s}\" is not a thread id (32 hexadecimal characters)."),
                );
                slots[i] = Slot::Invalid;
            }
        }
        if let (Ty::StrList(_), Slot::Set(Val::List(ids))) = (field.ty, &mut slots[i]) {
            let mut bad = false;
            for (j, s) in ids.iter_mut().enumerate() {
                if is_thread_id(s) {
                    s.make_ascii_lowercase();
                } else {
                    bad = true;
                    problems.at(
                        format!("{}[{j}]", field.name),
                        Code::InvalidValue,
                        format!("\"{s}\" is not a division thread id (32 hexadecimal characters)."),
                    );
                }
            }
            if bad {
                slots[i] = Slot::Invalid;
            }
        }
    }

    let mut record = Record {
        kind,
        mode: mode.unwrap_or(Mode::Create),
        slots,
        set_mask: None,
    };

    if spec.fields.iter().any(|f| f.name == "Email") {
        if let Some(email) = record.str("Email") {
            if !is_plausible_email(email) {
                let p = format!("\"{email}\" is not an email address.");
                problems.at("Email", Code::InvalidValue, p);
                record.set("Email", Slot::Invalid);
            }
        }
    }

    if let Some(mode) = mode {
        identity_rules(&record, mode, &mut problems);
        if let (Some(ctx), Some(field)) = (ctx, spec.division_field) {
            division_rules(&mut record, field, ctx, &mut problems);
        }
        (spec.rules)(&mut record, ctx, &mut problems);
    }

    if problems.is_empty() && mode.is_some() {
        record.set_mask = (record.slots.len() <= 128).then(|| {
            let set = record.slots.iter().enumerate();
            set.fold(0, |m, (i, s)| {
                m | u128::from(matches!(s, Slot::Set(_))) << i
            })
        });
        Ok(record)
    } else {
        let identity = match mode {
            Some(Mode::Upsert) => Some(record.identity()),
            _ => None,
        };
        Err(Rejection {
            mode,
            identity,
            problems,
        })
    }
}

/// An entity's identity rules: create needs the lender's id and no thread id; update and upsert
/// need one of the two. Relations check their references in their own rules.
fn identity_rules(r: &Record, mode: Mode, problems: &mut Problems) {
    let Some(lid) = r.kind.lender_id_field() else {
        return;
    };
    let supplied = |name: &str| r.slot(name).is_supplied() && *r.slot(name) != Slot::Null;
    match mode {
        Mode::Create => {
            if !supplied(lid) {
                problems.at(lid, Code::Required, "required for create.");
            }
            if supplied("ThreadId") {
                problems.at(
                    "ThreadId",
                    Code::NotAllowed,
                    "must not be supplied for create; a new record gets its thread id from RLS.",
                );
            }
        }
        _ => {
            if !supplied(lid) && !supplied("ThreadId") {
                problems.at(
                    format!("ThreadId or {lid}"),
                    Code::Required,
                    format!("one of them is required for {}.", mode.name()),
                );
            }
            if matches!(r.slot(lid), Slot::Null) && supplied("ThreadId") {
                problems.at(lid, Code::NotAllowed, "cannot be cleared.");
            }
        }
    }
}

/// The problem of a division field missing on create for a lender with several divisions.
pub(crate) const DIVISION_REQUIRED: &str =
    "required for create, as this lender has more than one division.";

/// Divisions exist for the lender; a lender with one division may omit them.
fn division_rules(r: &mut Record, field: &'static str, ctx: Ctx<'_>, problems: &mut Problems) {
    let lender = ctx.lender;
    for id in r.divisions(field).unwrap_or_default() {
        if lender.division(id).is_none() {
            problems.at(
                field,
                Code::UnknownReference,
                format!(
                    "division \"{id}\" does not exist for this lender (see lookups/divisions.csv)."
                ),
            );
        }
    }
    let is_list = r
        .kind
        .fields()
        .iter()
        .any(|f| f.name == field && matches!(f.ty, Ty::StrList(_)));
    let default = |id: String| match is_list {
        true => Slot::Set(Val::List(vec![id])),
        false => Slot::Set(Val::Str(id)),
    };
    let only = lender.only_division().map(|d| &d.thread_id);
    let absent = matches!(r.slot(field), Slot::Absent);
    let null = matches!(r.slot(field), Slot::Null);
    let create = r.mode == Mode::Create;
    match only {
        Some(id) if null || (absent && create) => r.set(field, default(id.clone())),
        None if absent && create => problems.at(field, Code::Required, DIVISION_REQUIRED),
        None if null => problems.at(
            field,
            Code::NotAllowed,
            format!(
                "cannot be cleared; {} needs a division.",
                r.kind.article_noun()
            ),
        ),
        _ => {}
    }
    // An upsert that ends up creating takes the single division by default (`write`).
}

/// A relation's reference needs at least one of its two fields.
pub(crate) fn require_ref(
    r: &Record,
    thread_field: &str,
    lender_field: &str,
    problems: &mut Problems,
) {
    let given = |n: &str| matches!(r.slot(n), Slot::Set(_) | Slot::Invalid);
    if !given(thread_field) && !given(lender_field) {
        problems.at(
            format!("{thread_field} or {lender_field}"),
            Code::Required,
            "one of them is required.",
        );
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;
    use crate::config::Config;

    pub fn obj(text: &str) -> Value {
        crate::input::json::parse_one(text).unwrap()
    }

    pub fn cfg() -> Config {
        Config::embedded().unwrap()
    }

    pub fn ctx(cfg: &Config) -> Ctx<'_> {
        Ctx {
            lender: &cfg.lenders[0],
            lookups: &cfg.lookups,
        }
    }

    pub fn messages(kind: Kind, text: &str, ctx: Option<Ctx<'_>>) -> Vec<String> {
        match validate(kind, obj(text), ctx) {
            Ok(_) => Vec::new(),
            Err(r) => r.messages(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn every_kind_is_registered_once_with_its_own_prefix() {
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(k.spec().kind, *k);
            assert_eq!(k.order(), i);
            assert_eq!(k.fields()[0].name, "Mode", "{k:?}");
            for other in &Kind::ALL[i + 1..] {
                assert_ne!(k.prefix(), other.prefix());
            }
        }
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
        assert!(r.messages()[0].starts_with("Mode: required"));
        // A Mode of the wrong type is one problem, not two.
        let r = validate(Kind::Loans, obj(r#"{"Mode":1,"LoanNumber":"a"}"#), None).unwrap_err();
        assert_eq!(
            r.messages(),
            vec!["Mode: expected a string, found a number."]
        );
    }

    #[test]
    fn case_insensitive_names_and_duplicates() {
        let r = validate(
            Kind::Borrowers,
            obj(r#"{"Mode":"create","ExternalId":"a","externalid":"b"}"#),
            None,
        )
        .unwrap_err();
        assert!(r.messages()[0].contains("supplied more than once"), "{r:?}");
        assert_eq!(r.problems.0[0].code, Code::RepeatedField);
    }

    #[test]
    fn invalid_lender_id_is_not_also_missing() {
        // Typed state: an ExternalId of the wrong type is one problem, not "required" as well.
        assert_eq!(
            messages(Kind::Borrowers, r#"{"Mode":"create","ExternalId":5}"#, None),
            vec!["ExternalId: expected a string, found a number."]
        );
    }

    #[test]
    fn create_rules() {
        let r = validate(
            Kind::Employees,
            obj(r#"{"Mode":"create","ThreadId":"0123456789abcdef0123456789abcdef"}"#),
            None,
        )
        .unwrap_err();
        assert_eq!(r.messages().len(), 2, "{r:?}");
    }

    #[test]
    fn a_bad_division_is_not_also_required() {
        let cfg = crate::config::Config::parse(
            r#"
            data_dir = "/tmp/x"
            [[lenders]]
            id = "two"
            [[lenders.divisions]]
            thread_id = "0123456789abcdef0123456789abcdef"
            system_name = "A"
            editable_name = "A"
            [[lenders.divisions]]
            thread_id = "1123456789abcdef0123456789abcdef"
            system_name = "B"
            editable_name = "B"
            "#,
            "test",
            std::path::Path::new("/tmp"),
        )
        .unwrap();
        let ctx = Some(ctx(&cfg));
        assert_eq!(
            messages(Kind::Employees, r#"{"Mode":"create","ExternalId":"e","DivisionThreadIds":["zz"]}"#, ctx),
            vec!["DivisionThreadIds[0]: \"zz\" is not a division thread id (32 hexadecimal characters)."]
        );
    }
}
