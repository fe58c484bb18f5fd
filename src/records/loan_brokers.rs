//! Loan brokers: a loan's one broker, its loan officer and additional contacts.
//!
//! Owns: the loan broker field table, its reference rules (no officer or contacts on delete),
//! and what it writes: a loan has at most one broker (a second is refused until the first is
//! deleted), `add` of the same broker updates the officer and contacts, `delete` removes the
//! broker and its contacts.
//! Must not: resolve references itself (`write::Writer`).

use super::hints::Alias;
use super::write::{refuse, Applied, Writer};
use super::{f, require_ref, Kind, Mode, Outcome, Record, Shape, Slot, Spec, Ty};
use crate::problem::{Code, Problems};
use crate::store::{AccountKind, Link};

pub static SPEC: Spec = Spec {
    kind: Kind::LoanBrokers,
    prefix: "loan_brokers",
    noun: "loan broker",
    fields: &[
        f("Mode", Ty::Str(6), ""),
        f("Loan_ThreadId", Ty::Str(32), ""),
        f("Loan_Number", Ty::Str(50), ""),
        f("Broker_ThreadId", Ty::Str(32), ""),
        f("Broker_IdNumber", Ty::Str(64), ""),
        f("LoanOfficer_AccountThreadId", Ty::Str(32), ""),
        f("LoanOfficer_AccountExternalId", Ty::Str(200), ""),
        f("AdditionalContacts", Ty::Pairs, ""),
    ],
    shape: Shape::Relation,
    table: None,
    division_field: None,
    aliases: &[super::loan_borrowers::REF_ALIASES, ALIASES],
    rules,
    write,
    // the broker row, its officer and contacts: several statements.
    single_write: |_| false,
};

const ALIASES: &[Alias] = &[
    ("broker", &["Broker_IdNumber", "Broker_ThreadId"]),
    ("brokerid", &["Broker_IdNumber", "Broker_ThreadId"]),
    ("idnumber", &["Broker_IdNumber"]),
    (
        "loanofficer",
        &[
            "LoanOfficer_AccountExternalId",
            "LoanOfficer_AccountThreadId",
        ],
    ),
    (
        "officer",
        &[
            "LoanOfficer_AccountExternalId",
            "LoanOfficer_AccountThreadId",
        ],
    ),
    ("contacts", &["AdditionalContacts"]),
];

fn rules(r: &mut Record, _: Option<super::Ctx<'_>>, problems: &mut Problems) {
    require_ref(r, "Loan_ThreadId", "Loan_Number", problems);
    require_ref(r, "Broker_ThreadId", "Broker_IdNumber", problems);
    if r.mode == Mode::Delete {
        if !matches!(r.slot("AdditionalContacts"), Slot::Absent | Slot::Null) {
            problems.at(
                "AdditionalContacts",
                Code::NotAllowed,
                "must not be supplied with \"delete\" mode.",
            );
        }
        let officer = |n: &str| matches!(r.slot(n), Slot::Set(_) | Slot::Invalid);
        if officer("LoanOfficer_AccountThreadId") || officer("LoanOfficer_AccountExternalId") {
            problems.at(
                "LoanOfficer_AccountThreadId / LoanOfficer_AccountExternalId",
                Code::NotAllowed,
                "must not be supplied with \"delete\" mode.",
            );
        }
    }
}

fn write(r: &Record, w: &mut Writer<'_>) -> Applied {
    let loan = w.loan(r)?;
    let broker = w.named(
        Kind::Brokers,
        &r.reference("Broker_ThreadId", "Broker_IdNumber"),
        "Broker_ThreadId",
        "Broker_IdNumber",
    )?;
    let current = w.tx.loan_broker(loan.id)?;
    if r.mode == Mode::Delete {
        return match current {
            Some((b, _)) if b == broker.id => {
                w.tx.unlink_all(Link::LoanBrokerContacts, loan.id)?;
                w.tx.delete_loan_broker(loan.id)?;
                Ok(Outcome::Deleted)
            }
            _ => refuse(
                None,
                Code::NotFound,
                "The broker is not this loan's broker; nothing to delete.".into(),
            ),
        };
    }
    if let Some((b, number)) = &current {
        if *b != broker.id {
            return refuse(
                None,
                Code::Conflict,
                format!("The loan already has a broker (Broker_IdNumber \"{number}\"); a loan has at most one broker: delete it first with a \"delete\" record."),
            );
        }
    }
    let officer_ref = r.reference(
        "LoanOfficer_AccountThreadId",
        "LoanOfficer_AccountExternalId",
    );
    let officer = if officer_ref.is_empty() {
        None
    } else {
        Some(w.account(
            AccountKind::BrokerAccount,
            Kind::BrokerAccounts.noun(),
            &officer_ref,
            "LoanOfficer_AccountThreadId",
            "LoanOfficer_AccountExternalId",
        )?)
    };
    match (current, officer) {
        (None, o) => w.tx.insert_loan_broker(loan.id, broker.id, o)?,
        (Some(_), Some(o)) => w.tx.set_loan_officer(loan.id, o)?,
        (Some(_), None) => {}
    }
    w.contacts(
        loan.id,
        r.pairs("AdditionalContacts"),
        "AdditionalContacts",
        Link::LoanBrokerContacts,
    )?;
    Ok(Outcome::Added)
}
