//! Brokers: companies that bring loans, each with an owner account and contacts.
//!
//! Owns: the broker field table, its website rule, and what a broker writes: a new broker gets
//! an owner account (a broker account with the broker's email, owner name and address, no
//! ExternalId) and that account as its "Owner" contact; an email change moves to the owner
//! account, checked as an account email; divisions and contacts.
//! Must not: hold the email policy (`write::Writer::check_email`).

use super::hints::{Alias, ADDRESS};
use super::write::{columns, email_key, key_value, new_thread_id, Applied, ApplyError, Writer};
use super::{f, Kind, Outcome, Record, Shape, Slot, Spec, Ty};
use crate::problem::{Code, Problems};
use crate::store::{AccountKind, Found, Link, Table, Value, Written};

const DIVISIONS: &str = "BrokerDivisionThreadIds";

pub static SPEC: Spec = Spec {
    kind: Kind::Brokers,
    prefix: "brokers",
    noun: "broker",
    fields: &[
        f("Mode", Ty::Str(6), ""),
        f("IdNumber", Ty::Str(64), "id_number"),
        f("ThreadId", Ty::Str(32), ""),
        f(DIVISIONS, Ty::StrList(32), ""),
        f("Email", Ty::Str(200), "email"),
        f("NmlsNumber", Ty::Str(64), "nmls_number"),
        f("CompanyName", Ty::Str(200), "company_name"),
        f("OwnerName", Ty::Str(500), "owner_name"),
        f("PhoneNumber", Ty::Str(200), "phone_number"),
        f("WebsiteUrl", Ty::Str(2000), "website_url"),
        f("Address1", Ty::Str(200), "address1"),
        f("Address2", Ty::Str(200), "address2"),
        f("City", Ty::Str(100), "city"),
        f("StateCode", Ty::Str(2), "state_code"),
        f("ZipCode", Ty::Str(10), "zip_code"),
        f("Contacts", Ty::Pairs, ""),
    ],
    shape: Shape::Entity {
        lender_id: "IdNumber",
    },
    table: Some((Table::Brokers, None)),
    division_field: Some(DIVISIONS),
    aliases: &[ALIASES, ADDRESS],
    rules,
    write,
    // owner account, divisions, contacts: several statements.
    single_write: |_| false,
};

const ALIASES: &[Alias] = &[
    ("phone", &["PhoneNumber"]),
    ("telephone", &["PhoneNumber"]),
    ("website", &["WebsiteUrl"]),
    ("url", &["WebsiteUrl"]),
    ("web", &["WebsiteUrl"]),
    ("nmls", &["NmlsNumber"]),
    ("nmlsid", &["NmlsNumber"]),
    ("company", &["CompanyName"]),
    ("name", &["CompanyName", "OwnerName"]),
    ("owner", &["OwnerName"]),
    ("id", &["IdNumber", "ThreadId"]),
    ("externalid", &["IdNumber"]),
    ("brokerid", &["IdNumber"]),
    ("division", &[DIVISIONS]),
    ("divisions", &[DIVISIONS]),
    ("divisionthreadids", &[DIVISIONS]),
    ("divisionthreadid", &[DIVISIONS]),
    ("contact", &["Contacts"]),
    ("emailaddress", &["Email"]),
];

fn rules(r: &mut Record, _: Option<super::Ctx<'_>>, problems: &mut Problems) {
    if let Some(url) = r.str("WebsiteUrl") {
        let l = url.to_ascii_lowercase();
        if !(l.starts_with("https://") || l.starts_with("http://")) {
            problems.at(
                "WebsiteUrl",
                Code::InvalidValue,
                format!("\"{url}\" must start with https:// or http://."),
            );
        }
    }
}

fn write(r: &Record, w: &mut Writer<'_>) -> Applied {
    w.entity(r, Table::Brokers, None, create, update)
}

/// Splits "Thomas Fakeman" into ("Thomas", "Fakeman") for a broker's owner account.
fn split_owner(name: Option<&str>) -> (Option<String>, Option<String>) {
    match name.map(str::trim) {
        None | Some("") => (None, None),
        Some(n) => match n.rsplit_once(char::is_whitespace) {
            Some((first, last)) => (Some(first.trim().to_string()), Some(last.to_string())),
            None => (None, Some(n.to_string())),
        },
    }
}

fn create(w: &mut Writer<'_>, r: &Record) -> Applied {
    w.check_email(r.slot("Email"), None, false)?;
    let divs = w.divisions_or_default(r, DIVISIONS)?;
    let owner = create_owner_account(w, r)?;
    let (mut cols, mut vals) = w.create_columns(r);
    cols.push("owner_account_id");
    vals.push(Value::Int(owner));
    let id = w.insert(r, Table::Brokers, &cols, &vals)?;
    w.set_divisions(Link::BrokerDivisions, id, divs, false)?;
    w.tx.link(
        Link::BrokerContacts,
        &[
            Value::Int(id),
            Value::Int(owner),
            Value::Text("Owner".into()),
        ],
    )?;
    w.contacts(id, r.pairs("Contacts"), "Contacts", Link::BrokerContacts)?;
    Ok(Outcome::Created)
}

/// A new broker's owner account: a broker account with the broker's email, owner name and
/// address, and no ExternalId.
fn create_owner_account(w: &mut Writer<'_>, r: &Record) -> Result<i64, ApplyError> {
    let (first, last) = split_owner(r.str("OwnerName"));
    let s = |n: &str| r.str(n).map_or(Value::Null, |v| Value::Text(v.into()));
    let t = |v: Option<String>| v.map_or(Value::Null, |v| Value::Text(v.into()));
    let cols = [
        "kind",
        "email",
        "email_key",
        "first_name",
        "last_name",
        "address1",
        "address2",
        "city",
        "state_code",
        "zip_code",
    ];
    let vals = [
        Value::Text(AccountKind::BrokerAccount.as_str().into()),
        s("Email"),
        key_value(email_key(r.slot("Email"))),
        t(first),
        t(last),
        s("Address1"),
        s("Address2"),
        s("City"),
        s("StateCode"),
        s("ZipCode"),
    ];
    match w
        .tx
        .insert(Table::Accounts, &new_thread_id(), &cols, &vals)?
    {
        Written::Row(id) => Ok(id),
        // No ExternalId: no unique index can refuse it.
        Written::Duplicate => Err(ApplyError::Store(crate::store::StoreError::Backend(
            "the owner account hit a unique index".into(),
        ))),
    }
}

fn update(w: &mut Writer<'_>, r: &Record, found: &Found) -> Applied {
    let email = r.slot("Email");
    let mut owner = None;
    if email.is_supplied() {
        let Value::Int(o) = w.tx.get(Table::Brokers, found.id, "owner_account_id")? else {
            return Err(ApplyError::Store(crate::store::StoreError::Backend(
                "a broker without an owner account".into(),
            )));
        };
        let current = match w.tx.get(Table::Accounts, o, "email_key")? {
            Value::Text(k) => Some(k.into_owned()),
            _ => None,
        };
        if email_key(email) != current {
            // The address moves to the owner account: checked as an account email.
            w.check_email(email, Some(o), false)?;
            owner = Some(o);
        }
    }
    let (cols, vals) = columns(r, true);
    w.update(r, Table::Brokers, found.id, cols, vals)?;
    if let (Some(o), Slot::Set(_) | Slot::Null) = (owner, email) {
        let v = super::write::to_value(email);
        w.tx.update(
            Table::Accounts,
            o,
            &["email", "email_key"],
            &[v, key_value(email_key(email))],
        )?;
    }
    if let Some(d) = r.list(DIVISIONS) {
        w.set_divisions(Link::BrokerDivisions, found.id, d, true)?;
    }
    w.contacts(
        found.id,
        r.pairs("Contacts"),
        "Contacts",
        Link::BrokerContacts,
    )?;
    Ok(Outcome::Updated)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;
    use super::split_owner;

    #[test]
    fn website_and_owner_name() {
        assert_eq!(
            messages(
                Kind::Brokers,
                r#"{"Mode":"create","IdNumber":"B","WebsiteUrl":"ftp://x"}"#,
                None
            ),
            vec!["WebsiteUrl: \"ftp://x\" must start with https:// or http://."]
        );
        assert_eq!(
            split_owner(Some("Ann Marie Fakeman")),
            (Some("Ann Marie".into()), Some("Fakeman".into()))
        );
        assert_eq!(split_owner(Some("Cher")), (None, Some("Cher".into())));
    }
}
