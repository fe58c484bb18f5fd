//! Employees: the lender's staff accounts, each in one or more divisions.
//!
//! Owns: the employee `Spec` and its division links. Must not: hold rules the other account
//! types share (`account`).

use super::account::{self, account_fields};
use super::hints::{ACCOUNT, ADDRESS};
use super::write::{Applied, Writer};
use super::{f, Kind, Record, Shape, Spec, Ty};
use crate::problem::Problems;
use crate::store::{AccountKind, Table};

const DIVISIONS: &str = "DivisionThreadIds";

pub static SPEC: Spec = Spec {
    kind: Kind::Employees,
    prefix: "employees",
    noun: "employee",
    fields: account_fields!(f(DIVISIONS, Ty::StrList(32), "")),
    shape: Shape::Entity {
        lender_id: "ExternalId",
    },
    table: Some((Table::Accounts, Some(AccountKind::Employee))),
    division_field: Some(DIVISIONS),
    aliases: &[ACCOUNT, ADDRESS],
    rules,
    write,
    single_write,
};

fn rules(_: &mut Record, _: Option<super::Ctx<'_>>, _: &mut Problems) {}

/// No savepoint in any mode: every refusal comes before the account row is written or from that
/// write itself (a taken ExternalId writes nothing); the division links that follow can only
/// fail the store, which abandons the whole load. (A savepoint per create was 9% of the store
/// thread's instructions: bench/README.md, "Issue 10".)
fn single_write(_: &Record) -> bool {
    true
}

fn write(r: &Record, w: &mut Writer<'_>) -> Applied {
    if let Some(done) = account::update_in_place(w, r, AccountKind::Employee, Some(DIVISIONS))? {
        return Ok(done);
    }
    w.entity(
        r,
        Table::Accounts,
        Some(AccountKind::Employee),
        |w, r| account::create(w, r, AccountKind::Employee, Some(DIVISIONS)),
        |w, r, f| account::update(w, r, f, Some(DIVISIONS)),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    #[test]
    fn single_division_defaults() {
        let cfg = cfg();
        let r = validate(
            Kind::Employees,
            obj(r#"{"Mode":"create","ExternalId":"e"}"#),
            Some(ctx(&cfg)),
        )
        .unwrap();
        assert_eq!(
            r.list("DivisionThreadIds").unwrap(),
            &["0123456789abcdef0123456789abcdef".to_string()]
        );
    }
}
