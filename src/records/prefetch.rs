//! Prefetch: the keys a batch of validated records will look up in the store, collected before
//! the batch is applied (`store::Prefetch`, handed to `LoadTx::prefetch`).
//!
//! Owns: which keys a record of each type names: its entity table, the thread id and lender id
//! it is found by (as `Writer::locate` asks: a partner's lender id in lower case), and the email
//! keys `Writer::check_email` may ask about (account types and brokers).
//! Must not: look anything up, or decide anything: the keys are a hint, and a record whose key
//! is missing here is still applied correctly (the store asks for it then).

use super::write::{email_key, entity_table};
use super::{Kind, Record, Rejection};
use crate::store::{Prefetch, Table};

/// The keys of one batch of records of `kind` (refused records name none).
pub fn keys<'a>(
    kind: Kind,
    records: impl IntoIterator<Item = &'a Result<Record, Rejection>>,
) -> Prefetch {
    let mut p = Prefetch::default();
    if kind.is_relation() {
        // Relation types find loans and brokers through the load's own cache (`Writer`); the
        // accounts a loan's positions and borrowers name are the batch's rows.
        if matches!(kind, Kind::LoanPositions | Kind::LoanBorrowers) {
            p.table = Some(Table::Accounts);
            for r in records.into_iter().filter_map(|r| r.as_ref().ok()) {
                let a = r.reference("Account_ThreadId", "Account_ExternalId");
                p.thread_ids.extend(a.thread_id);
                p.lender_ids.extend(a.lender_id);
            }
            p.thread_ids.sort_unstable();
            p.thread_ids.dedup();
            p.lender_ids.sort_unstable();
            p.lender_ids.dedup();
        }
        return p;
    }
    let (table, _) = entity_table(kind);
    p.table = Some(table);
    // The types whose records check an email (account types; a broker's owner account).
    let emails = matches!(
        kind,
        Kind::Employees | Kind::Borrowers | Kind::BrokerAccounts | Kind::Brokers
    );
    for r in records.into_iter().filter_map(|r| r.as_ref().ok()) {
        let id = r.identity();
        // A create finds by lender id too (partners; a taken id's message; an upsert's count).
        if let Some(t) = id.thread_id {
            p.thread_ids.push(t);
        }
        if let Some(l) = id.lender_id {
            p.lender_ids.push(if table == Table::Partners {
                l.to_lowercase()
            } else {
                l
            });
        }
        if emails {
            if let Some(k) = email_key(r.slot("Email")) {
                p.email_keys.push(k);
            }
        }
    }
    for v in [&mut p.thread_ids, &mut p.lender_ids, &mut p.email_keys] {
        v.sort_unstable();
        v.dedup();
    }
    p
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;
    use crate::store::Table;

    #[test]
    fn a_batch_names_its_tables_ids_and_emails_once_each() {
        let recs: Vec<_> = [
            r#"{"Mode":"create","ExternalId":"B1","Email":"A@B.test"}"#,
            r#"{"Mode":"update","ExternalId":"B1","Email":"a@b.test"}"#,
            r#"{"Mode":"update","ThreadId":"0123456789abcdef0123456789abcdef"}"#,
            r#"{"Mode":"create","ExternalId":"B2","Email":"nope"}"#,
        ]
        .iter()
        .map(|t| validate(Kind::Borrowers, obj(t), None))
        .collect();
        let p = super::keys(Kind::Borrowers, &recs);
        assert_eq!(p.table, Some(Table::Accounts));
        assert_eq!(p.lender_ids, vec!["B1".to_string()]);
        assert_eq!(
            p.thread_ids,
            vec!["0123456789abcdef0123456789abcdef".to_string()]
        );
        assert_eq!(p.email_keys, vec!["a@b.test".to_string()]);
        let rel: Vec<_> = [r#"{"Mode":"add","Loan_Number":"L1","Account_ExternalId":"B1"}"#]
            .iter()
            .map(|t| validate(Kind::LoanBorrowers, obj(t), None))
            .collect();
        let p = super::keys(Kind::LoanBorrowers, &rel);
        assert_eq!(p.table, Some(Table::Accounts));
        assert_eq!(p.lender_ids, vec!["B1".to_string()]);
        assert!(p.email_keys.is_empty());
    }
}
