//! What the three account types (employees, borrowers, broker accounts) share: their fields,
//! their aliases, and how an account row is created and updated.
//!
//! Owns: the account field table, the account email rule on create and update (only a changed
//! address is checked; a borrower create may share a borrower's address), and the division
//! links of an employee.
//! Must not: know which of the three types it writes beyond `AccountKind` and the division link.

use super::write::ApplyError;
use super::write::{columns, drop_column, email_key, key_value, Applied, Writer};
use super::{Mode, Outcome, Record, Slot};
use crate::store::{AccountKind, Found, Link, Table, Value};

macro_rules! account_fields {
    ($($extra:expr),*) => {
        &[
            $crate::records::f("Mode", $crate::records::Ty::Str(6), ""),
            $crate::records::f("ExternalId", $crate::records::Ty::Str(200), "external_id"),
            $crate::records::f("ThreadId", $crate::records::Ty::Str(32), ""),
            $($extra,)*
            $crate::records::f("FirstName", $crate::records::Ty::Str(200), "first_name"),
            $crate::records::f("LastName", $crate::records::Ty::Str(200), "last_name"),
            $crate::records::f("MiddleInit", $crate::records::Ty::Str(20), "middle_init"),
            $crate::records::f("NameSuffix", $crate::records::Ty::Str(50), "name_suffix"),
            $crate::records::f("Email", $crate::records::Ty::Str(200), "email"),
            $crate::records::f("Address1", $crate::records::Ty::Str(200), "address1"),
            $crate::records::f("Address2", $crate::records::Ty::Str(200), "address2"),
            $crate::records::f("City", $crate::records::Ty::Str(100), "city"),
            $crate::records::f("StateCode", $crate::records::Ty::Str(2), "state_code"),
            $crate::records::f("ZipCode", $crate::records::Ty::Str(10), "zip_code"),
            $crate::records::f("PhonePrimary", $crate::records::Ty::Str(10), "phone_primary"),
            $crate::records::f("PhoneSecondary", $crate::records::Ty::Str(10), "phone_secondary"),
        ]
    };
}
pub(crate) use account_fields;

/// Creates an account row of `kind`, with its divisions when `divisions` names their field.
pub fn create(
    w: &mut Writer<'_>,
    r: &Record,
    kind: AccountKind,
    divisions: Option<&str>,
) -> Applied {
    w.check_email(r.slot("Email"), None, kind == AccountKind::Borrower)?;
    // Resolve the divisions first: a create that cannot have them writes nothing.
    let divs = match divisions {
        Some(field) => Some(w.divisions_or_default(r, field)?),
        None => None,
    };
    let (mut cols, mut vals) = w.create_columns(r);
    cols.extend(["kind", "email_key"]);
    vals.push(Value::Text(kind.as_str().into()));
    vals.push(key_value(email_key(r.slot("Email"))));
    let id = w.insert(r, Table::Accounts, &cols, &vals)?;
    if let Some(d) = divs {
        w.set_divisions(Link::AccountDivisions, id, d, false)?;
    }
    Ok(Outcome::Created)
}

/// An update or upsert naming its account by ExternalId alone and no divisions, applied in one
/// statement when the account exists, is of `kind` and keeps its email key (the common case of
/// an update file: no find, no email check, no unique index touched): `Some(Updated)`; an
/// upsert of an account that does not exist is created without its find when its email is free
/// and its ExternalId new: `Some(Created)`. `None` when anything else holds: the caller goes the
/// ordinary way (`Writer::entity`), which writes the same and gives every refusal its message.
///
/// The two one-statement paths exclude each other (the ExternalId is new, or it is held), so
/// their order changes the cost, not the outcome: an upsert tries first what the load's last
/// upsert was (upsert files come in runs of existing and of new accounts; an update that finds
/// nothing and a create that finds the ExternalId held are each a wasted statement).
pub fn update_in_place(
    w: &mut Writer<'_>,
    r: &Record,
    kind: AccountKind,
    divisions: Option<&str>,
) -> Result<Option<Outcome>, ApplyError> {
    // Divisions need the row's id: those records go the ordinary way.
    let divided = divisions.is_some_and(|field| r.list(field).is_some());
    if !matches!(r.mode, Mode::Update | Mode::Upsert) || r.str("ThreadId").is_some() || divided {
        return Ok(None);
    }
    let Some(external_id) = r.str("ExternalId") else {
        return Ok(None);
    };
    let upsert = r.mode == Mode::Upsert;
    let create_first = upsert && w.upsert_created;
    if create_first {
        if let Some(done) = create_new(w, r, kind, divisions)? {
            return Ok(Some(done));
        }
    }
    if update_existing(w, r, kind, external_id)? {
        w.upsert_created = false;
        return Ok(Some(Outcome::Updated));
    }
    if !upsert || create_first {
        return Ok(None);
    }
    create_new(w, r, kind, divisions)
}

/// The update of `update_in_place`: whether the account existed, of `kind`, with the email key
/// the record keeps, and was updated.
fn update_existing(
    w: &mut Writer<'_>,
    r: &Record,
    kind: AccountKind,
    external_id: &str,
) -> Result<bool, ApplyError> {
    let email = r.slot("Email");
    // A supplied email (or null) must be the one stored, up to case: a change is checked first.
    let same_email = match email {
        Slot::Set(_) | Slot::Null => Some(email_key(email)),
        _ => None,
    };
    let (mut cols, mut vals) = columns(r, true);
    drop_column(&mut cols, &mut vals, "external_id");
    Ok(w.tx.update_in_place(
        Table::Accounts,
        Some(kind),
        external_id,
        same_email.as_ref().map(|k| k.as_deref()),
        &cols,
        &vals,
    )?)
}

/// The create of an upsert in `update_in_place`: written only when the email is free (as a
/// create checks it) and no account of the lender has the ExternalId, else `None` (an existing
/// account's update has its own email rule).
fn create_new(
    w: &mut Writer<'_>,
    r: &Record,
    kind: AccountKind,
    divisions: Option<&str>,
) -> Result<Option<Outcome>, ApplyError> {
    let divs = match divisions {
        Some(field) => match w.divisions_or_default(r, field) {
            Ok(d) => Some(d),
            Err(_) => return Ok(None),
        },
        None => None,
    };
    let email = r.slot("Email");
    let (mut cols, mut vals) = w.create_columns(r);
    cols.extend(["kind", "email_key"]);
    vals.push(Value::Text(kind.as_str().into()));
    let key = email_key(email);
    vals.push(
        key.as_deref()
            .map_or(Value::Null, |k| Value::Text(k.into())),
    );
    let created = w.tx.insert_new_account(
        &super::write::new_thread_id(),
        &cols,
        &vals,
        key.as_deref(),
        kind == AccountKind::Borrower,
    )?;
    w.upsert_created = created.is_some();
    let Some(id) = created else {
        return Ok(None);
    };
    if let Some(d) = divs {
        w.set_divisions(Link::AccountDivisions, id, d, false)?;
    }
    Ok(Some(Outcome::Created))
}

/// Updates an account row: the supplied fields, the email key, the divisions when given.
pub fn update(w: &mut Writer<'_>, r: &Record, found: &Found, divisions: Option<&str>) -> Applied {
    let email = r.slot("Email");
    if email.is_supplied() && email_key(email) != found.email_key {
        // Only a change is checked (a borrower may keep an address it shares).
        w.check_email(email, Some(found.id), false)?;
    }
    let (mut cols, mut vals) = columns(r, true);
    // The key only when it changes: it is indexed (a case-only change keeps it).
    if matches!(email, Slot::Set(_) | Slot::Null) && email_key(email) != found.email_key {
        cols.push("email_key");
        vals.push(key_value(email_key(email)));
    }
    w.update(r, Table::Accounts, found.id, cols, vals)?;
    if let Some(field) = divisions {
        if let Some(d) = r.list(field) {
            w.set_divisions(Link::AccountDivisions, found.id, d, true)?;
        }
    }
    Ok(Outcome::Updated)
}
