//! Loan positions: an employee holding a position (enabled for the loan's division) on a loan.
//!
//! Owns: the loan position field table, its reference and position rules, and its add / delete.
//! Must not: resolve references itself (`write::Writer`).

use super::hints::Alias;
use super::write::{Applied, Writer};
use super::{f, require_ref, Kind, Record, Shape, Spec, Ty};
use crate::problem::{Code, Problem, Problems};
use crate::store::{AccountKind, Link, Value};

pub static SPEC: Spec = Spec {
    kind: Kind::LoanPositions,
    prefix: "loan_positions",
    noun: "loan position",
    fields: &[
        f("Mode", Ty::Str(6), ""),
        f("Loan_ThreadId", Ty::Str(32), ""),
        f("Loan_Number", Ty::Str(50), ""),
        f("Account_ThreadId", Ty::Str(32), ""),
        f("Account_ExternalId", Ty::Str(200), ""),
        f("PositionName", Ty::Str(50), ""),
    ],
    shape: Shape::Relation,
    table: None,
    division_field: None,
    aliases: &[super::loan_borrowers::REF_ALIASES, ALIASES],
    rules,
    write,
    // one INSERT OR IGNORE, or one DELETE.
    single_write: |_| true,
};

const ALIASES: &[Alias] = &[
    ("position", &["PositionName"]),
    ("role", &["PositionName"]),
    ("employee", &["Account_ExternalId", "Account_ThreadId"]),
    ("employeeid", &["Account_ExternalId"]),
];

fn rules(r: &mut Record, ctx: Option<super::Ctx<'_>>, problems: &mut Problems) {
    require_ref(r, "Loan_ThreadId", "Loan_Number", problems);
    require_ref(r, "Account_ThreadId", "Account_ExternalId", problems);
    let Some(p) = r.str("PositionName") else {
        if !r.slot("PositionName").is_supplied() || *r.slot("PositionName") == super::Slot::Null {
            problems.at(
                "PositionName",
                Code::Required,
                "required; see lookups/positions.csv for valid values.",
            );
        }
        return;
    };
    if let Some(ctx) = ctx {
        let enabled = ctx
            .lender
            .divisions
            .iter()
            .any(|d| d.positions.iter().any(|q| q.eq_ignore_ascii_case(p)));
        if !enabled {
            problems.at(
                "PositionName",
                Code::UnknownReference,
                format!("\"{p}\" is not a position enabled for this lender (see lookups/positions.csv)."),
            );
        }
    }
}

fn write(r: &Record, w: &mut Writer<'_>) -> Applied {
    let loan = w.loan(r)?;
    let asked = r.str("PositionName").unwrap_or_default();
    let division = loan.division.as_deref().and_then(|d| w.lender.division(d));
    let position = division
        .and_then(|d| d.positions.iter().find(|p| p.eq_ignore_ascii_case(asked)))
        .cloned();
    let Some(position) = position else {
        let dname = division.map(|d| d.system_name.as_str()).unwrap_or("?");
        return super::write::reject(Problem::field(
            "PositionName",
            Code::UnknownReference,
            format!("\"{asked}\" is not enabled for the loan's division \"{dname}\" (see lookups/positions.csv)."),
        ));
    };
    let named = r.reference("Account_ThreadId", "Account_ExternalId");
    let (link, want) = (Link::LoanPositions, AccountKind::Employee);
    let position = Value::Text(position.into());
    let rest = std::slice::from_ref(&position);
    if let Some(done) = w.add_account_link(r.mode, link, loan.id, want, &named, rest)? {
        return Ok(done);
    }
    let account = w.account(
        want,
        Kind::Employees.noun(),
        &named,
        "Account_ThreadId",
        "Account_ExternalId",
    )?;
    let held = match &position {
        Value::Text(p) => p.as_ref(),
        _ => "",
    };
    let missing = || {
        Problem::sentence(
            None,
            Code::NotFound,
            format!(
                "The employee does not hold position \"{held}\" on this loan; nothing to delete."
            ),
        )
    };
    w.relation(
        r.mode,
        link,
        &[Value::Int(loan.id), Value::Int(account), position.clone()],
        missing,
    )
}
