//! Broker accounts: the people of a broker (owner, loan officers, processors).
//!
//! Owns: the broker account `Spec`. Must not: hold rules the other account types share
//! (`account`); a broker's contacts are the broker's and the loan broker's business.

use super::account::{self, account_fields};
use super::hints::{ACCOUNT, ADDRESS};
use super::write::{Applied, Writer};
use super::{Kind, Record, Shape, Spec};
use crate::problem::Problems;
use crate::store::{AccountKind, Table};

pub static SPEC: Spec = Spec {
    kind: Kind::BrokerAccounts,
    prefix: "broker_accounts",
    noun: "broker account",
    fields: account_fields!(),
    shape: Shape::Entity {
        lender_id: "ExternalId",
    },
    table: Some((Table::Accounts, Some(AccountKind::BrokerAccount))),
    division_field: None,
    aliases: &[ACCOUNT, ADDRESS],
    rules,
    write,
    // create: the email check reads, then one INSERT; update: one UPDATE.
    single_write: |_| true,
};

fn rules(_: &mut Record, _: Option<super::Ctx<'_>>, _: &mut Problems) {}

fn write(r: &Record, w: &mut Writer<'_>) -> Applied {
    if let Some(done) = account::update_in_place(w, r, AccountKind::BrokerAccount, None)? {
        return Ok(done);
    }
    w.entity(
        r,
        Table::Accounts,
        Some(AccountKind::BrokerAccount),
        |w, r| account::create(w, r, AccountKind::BrokerAccount, None),
        |w, r, f| account::update(w, r, f, None),
    )
}
