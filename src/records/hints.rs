//! "Did you mean": the hint an unknown field name gets.
//!
//! Owns: suggesting documented fields for a name no field matches, by meaning first (each
//! type's alias list: `Phone` → `PhonePrimary` / `PhoneSecondary`, `Zip` → `ZipCode`), then by
//! spelling (the name without separators equals, contains or is contained in a field's, or is a
//! few edits away), and listing the type's fields when nothing is close.
//! Must not: accept the name (an unknown field always rejects the record).

use super::Field;

/// A name lenders use (lower case, without `_`, `-`, `.` or spaces) and the documented fields
/// it means.
pub type Alias = (&'static str, &'static [&'static str]);

/// Aliases shared by the types that have an address.
pub const ADDRESS: &[Alias] = &[
    ("state", &["StateCode"]),
    ("st", &["StateCode"]),
    ("province", &["StateCode"]),
    ("zip", &["ZipCode"]),
    ("zipcode", &["ZipCode"]),
    ("postcode", &["ZipCode"]),
    ("postalcode", &["ZipCode"]),
    ("postal", &["ZipCode"]),
    ("street", &["Address1"]),
    ("address", &["Address1", "Address2"]),
    ("addressline1", &["Address1"]),
    ("addressline2", &["Address2"]),
    ("town", &["City"]),
];

/// Aliases of the account types (employees, borrowers, broker accounts).
pub const ACCOUNT: &[Alias] = &[
    ("phone", &["PhonePrimary", "PhoneSecondary"]),
    ("phonenumber", &["PhonePrimary", "PhoneSecondary"]),
    ("telephone", &["PhonePrimary", "PhoneSecondary"]),
    ("mobile", &["PhonePrimary", "PhoneSecondary"]),
    ("mobilephone", &["PhonePrimary", "PhoneSecondary"]),
    ("cell", &["PhonePrimary", "PhoneSecondary"]),
    ("cellphone", &["PhonePrimary", "PhoneSecondary"]),
    ("workphone", &["PhonePrimary", "PhoneSecondary"]),
    ("homephone", &["PhonePrimary", "PhoneSecondary"]),
    ("emailaddress", &["Email"]),
    ("mail", &["Email"]),
    ("first", &["FirstName"]),
    ("givenname", &["FirstName"]),
    ("last", &["LastName"]),
    ("surname", &["LastName"]),
    ("familyname", &["LastName"]),
    ("middlename", &["MiddleInit"]),
    ("middleinitial", &["MiddleInit"]),
    ("suffix", &["NameSuffix"]),
    ("id", &["ExternalId", "ThreadId"]),
    ("extid", &["ExternalId"]),
    ("externalidentifier", &["ExternalId"]),
    ("employeeid", &["ExternalId"]),
    ("borrowerid", &["ExternalId"]),
    ("division", &["DivisionThreadIds"]),
    ("divisions", &["DivisionThreadIds"]),
    ("divisionthreadid", &["DivisionThreadIds"]),
    ("divisionid", &["DivisionThreadIds"]),
];

/// Separators are ignored when comparing names (`Loan_Number`, `loan-number`, `LoanNumber`).
pub fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The text after "unknown field; ".
pub fn hint(fields: &[Field], aliases: &[&[Alias]], name: &str) -> String {
    let cut = name
        .char_indices()
        .nth(super::convert::SHOWN_CHARS)
        .map_or(name.len(), |(i, _)| i);
    let key = normalize(&name[..cut]);
    let exists = |n: &&str| fields.iter().any(|f| f.name == *n);
    let mut found: Vec<&str> = Vec::new();
    for (alias, means) in aliases.iter().flat_map(|g| g.iter()) {
        if *alias == key {
            found.extend(means.iter().copied().filter(exists));
        }
    }
    if found.is_empty() && !key.is_empty() {
        // Spelling: without separators, one contains the other (`Loan` in `Loan_Number`).
        for f in fields {
            let fk = normalize(f.name);
            // A field inside the name counts only when little is left over (`EmailAddr`), so
            // that `DivisionThreadId` does not suggest `ThreadId`.
            let inside = key.contains(&fk) && key.len() - fk.len() <= 4;
            if fk == key || (key.len() >= 4 && (fk.contains(&key) || inside)) {
                found.push(f.name);
            }
        }
    }
    if found.is_empty() && !key.is_empty() {
        let limit = (key.chars().count() / 4).clamp(1, 3);
        let mut best: Option<(usize, &str)> = None;
        for f in fields {
            let d = strsim::damerau_levenshtein(&key, &normalize(f.name));
            if d <= limit && best.is_none_or(|(b, _)| d < b) {
                best = Some((d, f.name));
            }
        }
        found.extend(best.map(|(_, n)| n));
    }
    found.dedup();
    match found.as_slice() {
        [one] => format!("the closest documented field is \"{one}\"."),
        [] => format!(
            "the documented fields are {}.",
            fields.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
        ),
        many => {
            let quoted: Vec<String> = many.iter().map(|n| format!("\"{n}\"")).collect();
            let (last, rest) = quoted
                .split_last()
                .map_or(("", &[][..]), |(l, r)| (l.as_str(), r));
            format!("did you mean {} or {last}?", rest.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Kind;
    use super::*;

    fn h(kind: Kind, name: &str) -> String {
        hint(kind.fields(), kind.spec().aliases, name)
    }

    #[test]
    fn by_meaning() {
        assert_eq!(
            h(Kind::Borrowers, "Phone"),
            "did you mean \"PhonePrimary\" or \"PhoneSecondary\"?"
        );
        assert_eq!(
            h(Kind::Borrowers, "State"),
            "the closest documented field is \"StateCode\"."
        );
        assert_eq!(
            h(Kind::Borrowers, "Zip"),
            "the closest documented field is \"ZipCode\"."
        );
        assert_eq!(
            h(Kind::Employees, "Extid"),
            "the closest documented field is \"ExternalId\"."
        );
        assert_eq!(
            h(Kind::Employees, "DivisionThreadId"),
            "the closest documented field is \"DivisionThreadIds\"."
        );
    }

    #[test]
    fn by_spelling_and_not_at_all() {
        assert_eq!(
            h(Kind::Borrowers, "FristName"),
            "the closest documented field is \"FirstName\"."
        );
        assert_eq!(
            h(Kind::Loans, "loan_number"),
            "the closest documented field is \"LoanNumber\"."
        );
        let none = h(Kind::LoanBorrowers, "Banana");
        assert_eq!(
            none,
            "the documented fields are Mode, Loan_ThreadId, Loan_Number, Account_ThreadId, Account_ExternalId."
        );
        // A borrower has no division: the employee-only alias must not suggest one.
        assert!(h(Kind::Borrowers, "DivisionThreadId").starts_with("the documented fields are"));
    }
}
