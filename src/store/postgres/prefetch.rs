//! The PostgreSQL transaction's batch cache: the rows and email holders a batch of records will
//! look up, fetched in a few statements when the batch begins (`LoadTx::prefetch`), so that a
//! record costs its writes only, not a round trip per lookup.
//!
//! Owns: the cache (rows of the batch's entity table by thread id and lender id, the accounts
//! holding each prefetched email key) and what makes an answer of it stale: every write of the
//! transaction since the fetch marks the row ids, lender ids, thread ids and email keys it wrote
//! "dirty", and an answer touching anything dirty is not given (the caller asks the database).
//! A rollback to a savepoint leaves them dirty (conservative). The cache lives for one batch.
//! Must not: run SQL (`super` fetches and asks), or decide a rule (`records` does).

use std::collections::{HashMap, HashSet};

use super::super::{lender_id_column, table_name, AccountKind, Found, Key, RowId, Table, Value};

/// One batch's answers.
#[derive(Default)]
pub(super) struct BatchCache {
    /// The entity table the rows are of.
    table: Option<Table>,
    /// Thread ids fetched: the row, or none (no row of the lender had it).
    by_thread: HashMap<String, Option<Found>>,
    /// Lender ids fetched, likewise.
    by_lender: HashMap<String, Option<Found>>,
    /// Email keys claimed and fetched: the accounts (any lender) holding each, with whether
    /// each is a borrower.
    emails: HashMap<String, Vec<(RowId, bool)>>,
    /// Written since the fetch: (table, row id), (table, lender id), (table, thread id), email keys.
    dirty_rows: HashSet<(&'static str, RowId)>,
    dirty_ids: HashSet<(&'static str, String)>,
    dirty_threads: HashSet<(&'static str, String)>,
    dirty_emails: HashSet<String>,
}

impl BatchCache {
    /// A cache of `table`'s rows for the keys asked (`found`: the rows fetched with their thread
    /// id and lender id) and of the holders of `email_keys` (`holders`: (email key, row, kind)).
    pub(super) fn new(
        table: Option<Table>,
        thread_ids: &[String],
        lender_ids: &[String],
        found: Vec<(Found, String, Option<String>)>,
        email_keys: &[String],
        holders: Vec<(String, RowId, Option<AccountKind>)>,
    ) -> BatchCache {
        let mut c = BatchCache {
            table,
            ..Default::default()
        };
        c.by_thread = thread_ids.iter().map(|t| (t.clone(), None)).collect();
        c.by_lender = lender_ids.iter().map(|l| (l.clone(), None)).collect();
        for (f, thread, lender_id) in found {
            if let Some(slot) = c.by_thread.get_mut(&thread) {
                *slot = Some(f.clone());
            }
            if let Some(slot) = lender_id.and_then(|l| c.by_lender.get_mut(&l)) {
                *slot = Some(f);
            }
        }
        c.emails = email_keys.iter().map(|k| (k.clone(), Vec::new())).collect();
        for (k, id, kind) in holders {
            if let Some(v) = c.emails.get_mut(&k) {
                v.push((id, kind == Some(AccountKind::Borrower)));
            }
        }
        c
    }

    /// The cached answer of `LoadTx::find`, when there is one that is still true.
    pub(super) fn find(
        &self,
        table: Table,
        key: &Key<'_>,
        kind: Option<AccountKind>,
    ) -> Option<Option<Found>> {
        if self.table != Some(table) {
            return None;
        }
        let t = table_name(table);
        let hit = match key {
            Key::ThreadId(v) => {
                if self.dirty_threads.contains(&(t, (*v).to_string())) {
                    return None;
                }
                self.by_thread.get(*v)?
            }
            Key::LenderId(v) => {
                if self.dirty_ids.contains(&(t, (*v).to_string())) {
                    return None;
                }
                self.by_lender.get(*v)?
            }
            Key::Column(..) => return None,
        };
        match hit {
            Some(f) if self.dirty_rows.contains(&(t, f.id)) => None,
            // Thread ids and lender ids are unique within a lender's table: the one row is it,
            // or (another kind) none is.
            Some(f) => Some(match kind {
                Some(k) if f.kind != Some(k) => None,
                _ => Some(f.clone()),
            }),
            None => Some(None),
        }
    }

    /// The cached answer of `LoadTx::email_in_use`, when there is one that is still true.
    pub(super) fn email_in_use(
        &self,
        email_key: &str,
        except: Option<RowId>,
        ignore_borrowers: bool,
    ) -> Option<bool> {
        if self.dirty_emails.contains(email_key) {
            return None;
        }
        let holders = self.emails.get(email_key)?;
        let accounts = table_name(Table::Accounts);
        if holders
            .iter()
            .any(|(id, _)| self.dirty_rows.contains(&(accounts, *id)))
        {
            return None;
        }
        Some(
            holders
                .iter()
                .any(|(id, borrower)| Some(*id) != except && !(ignore_borrowers && *borrower)),
        )
    }

    /// Notes a write (insert or update) of `table`: its row (when known), thread id (insert)
    /// and the lender id and email key it may set.
    pub(super) fn wrote(
        &mut self,
        table: Table,
        row: Option<RowId>,
        thread_id: Option<&str>,
        cols: &[&str],
        vals: &[Value],
    ) {
        let t = table_name(table);
        if let Some(id) = row {
            self.dirty_rows.insert((t, id));
        }
        if let Some(th) = thread_id {
            self.dirty_threads.insert((t, th.to_string()));
        }
        let lid = lender_id_column(table);
        for (c, v) in cols.iter().zip(vals) {
            let Value::Text(s) = v else { continue };
            if *c == lid {
                self.dirty_ids.insert((t, s.to_string()));
            }
            if table == Table::Accounts && *c == "email_key" {
                self.dirty_emails.insert(s.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(id: RowId, kind: Option<AccountKind>, email: &str) -> Found {
        Found {
            id,
            kind,
            division: None,
            email_key: Some(email.into()),
        }
    }

    fn cache() -> BatchCache {
        BatchCache::new(
            Some(Table::Accounts),
            &["t1".into(), "t9".into()],
            &["E1".into(), "E2".into()],
            vec![(
                found(1, Some(AccountKind::Employee), "a@x"),
                "t1".into(),
                Some("E1".into()),
            )],
            &["a@x".into(), "b@x".into()],
            vec![
                ("a@x".into(), 1, Some(AccountKind::Employee)),
                ("b@x".into(), 7, Some(AccountKind::Borrower)),
            ],
        )
    }

    #[test]
    fn answers_what_was_fetched() {
        let c = cache();
        let e = Some(AccountKind::Employee);
        assert_eq!(
            c.find(Table::Accounts, &Key::LenderId("E1"), e),
            Some(Some(found(1, e, "a@x")))
        );
        assert_eq!(
            c.find(Table::Accounts, &Key::ThreadId("t1"), None)
                .map(|f| f.map(|f| f.id)),
            Some(Some(1))
        );
        // Another kind: none; not fetched: ask; fetched and absent: none.
        assert_eq!(
            c.find(
                Table::Accounts,
                &Key::LenderId("E1"),
                Some(AccountKind::Borrower)
            ),
            Some(None)
        );
        assert_eq!(c.find(Table::Accounts, &Key::LenderId("E3"), None), None);
        assert_eq!(
            c.find(Table::Accounts, &Key::LenderId("E2"), None),
            Some(None)
        );
        assert_eq!(c.find(Table::Loans, &Key::LenderId("E1"), None), None);
        assert_eq!(
            c.find(Table::Accounts, &Key::Column("email_key", "a@x"), None),
            None
        );
        assert_eq!(c.email_in_use("a@x", None, false), Some(true));
        assert_eq!(c.email_in_use("a@x", Some(1), false), Some(false));
        assert_eq!(c.email_in_use("b@x", None, true), Some(false));
        assert_eq!(c.email_in_use("b@x", None, false), Some(true));
        assert_eq!(c.email_in_use("c@x", None, false), None);
    }

    #[test]
    fn a_write_makes_what_it_touches_fall_through() {
        let mut c = cache();
        // A create of E2 with b@x: E2's absence and b@x's holders are stale.
        c.wrote(
            Table::Accounts,
            Some(9),
            Some("t9"),
            &["external_id", "email_key"],
            &[Value::Text("E2".into()), Value::Text("b@x".into())],
        );
        assert_eq!(c.find(Table::Accounts, &Key::LenderId("E2"), None), None);
        assert_eq!(c.find(Table::Accounts, &Key::ThreadId("t9"), None), None);
        assert_eq!(c.email_in_use("b@x", None, true), None);
        // An update of row 1 (its email or id may have changed): every answer naming it.
        c.wrote(
            Table::Accounts,
            Some(1),
            None,
            &["first_name"],
            &[Value::Text("x".into())],
        );
        assert_eq!(c.find(Table::Accounts, &Key::LenderId("E1"), None), None);
        assert_eq!(c.email_in_use("a@x", None, false), None);
        // A write of another table touches no account answer but its own rows.
        let mut c = cache();
        c.wrote(
            Table::Brokers,
            Some(1),
            None,
            &["id_number"],
            &[Value::Text("E2".into())],
        );
        assert_eq!(
            c.find(Table::Accounts, &Key::LenderId("E2"), None),
            Some(None)
        );
        assert_eq!(c.email_in_use("a@x", None, false), Some(true));
    }
}
