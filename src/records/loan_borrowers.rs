//! Loan borrowers: a borrower on a loan.
//!
//! Owns: the loan borrower field table, its reference rules, and its add / delete, and the
//! aliases every relation's loan and account references share.
//! Must not: resolve references itself (`write::Writer`).

use super::hints::Alias;
use super::write::{Applied, Writer};
use super::{f, require_ref, Kind, Record, Shape, Spec, Ty};
use crate::problem::{Code, Problem, Problems};
use crate::store::{AccountKind, Link, Value};

pub static SPEC: Spec = Spec {
    kind: Kind::LoanBorrowers,
    prefix: "loan_borrowers",
    noun: "loan borrower",
    fields: &[
        f("Mode", Ty::Str(6), ""),
        f("Loan_ThreadId", Ty::Str(32), ""),
        f("Loan_Number", Ty::Str(50), ""),
        f("Account_ThreadId", Ty::Str(32), ""),
        f("Account_ExternalId", Ty::Str(200), ""),
    ],
    shape: Shape::Relation,
    table: None,
    division_field: None,
    aliases: &[REF_ALIASES, ALIASES],
    rules,
    write,
    // one INSERT OR IGNORE, or one DELETE.
    single_write: |_| true,
};

/// Names of the loan and account references of relations.
pub const REF_ALIASES: &[Alias] = &[
    ("loannumber", &["Loan_Number"]),
    ("loan", &["Loan_Number", "Loan_ThreadId"]),
    ("loanid", &["Loan_Number", "Loan_ThreadId"]),
    ("loanthreadid", &["Loan_ThreadId"]),
    ("externalid", &["Account_ExternalId"]),
    ("threadid", &["Account_ThreadId", "Loan_ThreadId"]),
    ("accountid", &["Account_ExternalId", "Account_ThreadId"]),
    ("account", &["Account_ExternalId", "Account_ThreadId"]),
];

const ALIASES: &[Alias] = &[
    ("borrower", &["Account_ExternalId", "Account_ThreadId"]),
    ("borrowerid", &["Account_ExternalId"]),
];

fn rules(r: &mut Record, _: Option<super::Ctx<'_>>, problems: &mut Problems) {
    require_ref(r, "Loan_ThreadId", "Loan_Number", problems);
    require_ref(r, "Account_ThreadId", "Account_ExternalId", problems);
}

fn write(r: &Record, w: &mut Writer<'_>) -> Applied {
    let loan = w.loan(r)?;
    let named = r.reference("Account_ThreadId", "Account_ExternalId");
    let (link, want) = (Link::LoanBorrowers, AccountKind::Borrower);
    if let Some(done) = w.add_account_link(r.mode, link, loan.id, want, &named, &[])? {
        return Ok(done);
    }
    let account = w.account(
        want,
        Kind::Borrowers.noun(),
        &named,
        "Account_ThreadId",
        "Account_ExternalId",
    )?;
    w.relation(
        r.mode,
        Link::LoanBorrowers,
        &[Value::Int(loan.id), Value::Int(account)],
        || {
            Problem::sentence(
                None,
                Code::NotFound,
                "The borrower is not on this loan; nothing to delete.",
            )
        },
    )
}
