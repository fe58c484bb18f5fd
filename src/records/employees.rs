//! Employees: the lender's staff accounts, each in one or more divisions.
//!
//! Owns: the employee `Spec` and its division links. Must not: hold rules the other account
//! types share (`account`).

use super::account::{self, account_fields};
use super::hints::{ACCOUNT, ADDRESS};
use super::write::{Applied, Writer};
use super::{f, Kind, Mode, Record, Shape, Slot, Spec, Ty};
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

/// An update without divisions is one UPDATE; a create also writes its divisions.
fn single_write(r: &Record) -> bool {
    r.mode == Mode::Update && matches!(r.slot(DIVISIONS), Slot::Absent)
}

fn write(r: &Record, w: &mut Writer<'_>) -> Applied {
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
