//! Borrowers: accounts that may share an email with other borrowers (DESIGN.md, "Email").
//!
//! Owns: the borrower `Spec`. Must not: hold rules the other account types share (`account`).

use super::account::{self, account_fields};
use super::hints::{ACCOUNT, ADDRESS};
use super::write::{Applied, Writer};
use super::{Kind, Record, Shape, Spec};
use crate::problem::Problems;
use crate::store::{AccountKind, Table};

pub static SPEC: Spec = Spec {
    kind: Kind::Borrowers,
    prefix: "borrowers",
    noun: "borrower",
    fields: account_fields!(),
    shape: Shape::Entity {
        lender_id: "ExternalId",
    },
    table: Some((Table::Accounts, Some(AccountKind::Borrower))),
    division_field: None,
    aliases: &[ACCOUNT, ADDRESS],
    rules,
    write,
    // create: the email check reads, then one INSERT; update: one UPDATE.
    single_write: |_| true,
};

fn rules(_: &mut Record, _: Option<super::Ctx<'_>>, _: &mut Problems) {}

fn write(r: &Record, w: &mut Writer<'_>) -> Applied {
    if let Some(done) = account::update_in_place(w, r, AccountKind::Borrower, None)? {
        return Ok(done);
    }
    w.entity(
        r,
        Table::Accounts,
        Some(AccountKind::Borrower),
        |w, r| account::create(w, r, AccountKind::Borrower, None),
        |w, r, f| account::update(w, r, f, None),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

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
    fn email_must_look_like_one() {
        assert_eq!(
            messages(
                Kind::Borrowers,
                r#"{"Mode":"create","ExternalId":"B1","Email":"nope"}"#,
                None
            ),
            vec!["Email: \"nope\" is not an email address."]
        );
    }
}
