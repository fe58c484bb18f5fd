//! Partners: a lender's referral partners (real estate agents and the like), each assigned to
//! one of the lender's employees. The fields are those of the partner upload API and its CSV
//! template (`seeds/partner-upload-api.txt`).
//!
//! Owns: the partner field table, its rules and what it writes:
//! - identity is the partner's `Email` (ignoring case) within the lender, or its `ThreadId`;
//! - create needs `Email`, `FirstName`, `LastName` and an assignee: `AssignToEmail` (an
//!   employee's email) or `AssignToUserId` (an employee's ThreadId or ExternalId); both given must
//!   name the same employee;
//! - a create whose `Email` matches a partner of the lender updates that partner (the API's
//!   "posts with a matching Email will be updated"), counted as an update;
//! - with `[[lenders]] partner_dedupe = true`, a partner whose `LicenseId` another partner of the
//!   lender has is refused;
//! - defaults on create: `ExternalContactTypeId` "Real Estate Agent", `BranchAssociation` "ALL".
//!
//! Partner emails are contact addresses, not logins: they are unique among the lender's partners
//! and do not take part in the environment-wide account email rule.
//! Must not: write accounts.

use super::hints::Alias;
use super::write::{columns, key_value, refuse, Applied, ApplyError, Writer};
use super::{f, is_thread_id, Kind, Mode, Outcome, Record, Shape, Slot, Spec, Ty, Val};
use crate::problem::{Code, Problem, Problems};
use crate::store::{AccountKind, Found, Key, RowId, Table, Value};

/// The contact type a partner gets when none is given. The seed gives two defaults ("Real Estate
/// Agent" for the API, "Referral Partner" in the CSV template's notes); this type implements the
/// API, so its default wins (docs/decisions.md).
pub const DEFAULT_CONTACT_TYPE: &str = "Real Estate Agent";
pub const DEFAULT_BRANCH_ASSOCIATION: &str = "ALL";

pub static SPEC: Spec = Spec {
    kind: Kind::Partners,
    prefix: "partners",
    noun: "partner",
    fields: &[
        f("Mode", Ty::Str(6), ""),
        f("Email", Ty::Str(200), "email"),
        f("ThreadId", Ty::Str(32), ""),
        f("FirstName", Ty::Str(200), "first_name"),
        f("LastName", Ty::Str(200), "last_name"),
        f("AssignToEmail", Ty::Str(200), ""),
        f("AssignToUserId", Ty::Str(200), ""),
        f(
            "ExternalContactTypeId",
            Ty::Str(100),
            "external_contact_type_id",
        ),
        f("LicenseId", Ty::Str(100), "license_id"),
        f("MobilePhone", Ty::Str(20), "mobile_phone"),
        f("WorkPhone", Ty::Str(20), "work_phone"),
        f("Ext", Ty::Str(10), "ext"),
        f("Website", Ty::Str(2000), "website"),
        f("Address1", Ty::Str(200), "address1"),
        f("City", Ty::Str(100), "city"),
        f("State", Ty::Str(50), "state"),
        f("PostalCode", Ty::Str(10), "postal_code"),
        f("ExternalIdentifier", Ty::Str(200), "external_identifier"),
        f("BranchAssociation", Ty::Str(200), "branch_association"),
        f("CampaignId", Ty::Int, "campaign_id"),
        f("UserTitle", Ty::Str(200), "user_title"),
        f("ApprovalStatusId", Ty::Int, "approval_status_id"),
        f("EntityId", Ty::Str(200), "entity_id"),
        f("Notes", Ty::Str(4000), "notes"),
        f("AvatarUrl", Ty::Str(2000), "avatar_url"),
        f("Branch_Name", Ty::Str(200), "branch_name"),
        f("Branch_Phone", Ty::Str(20), "branch_phone"),
        f("Branch_Website", Ty::Str(2000), "branch_website"),
        f("Branch_City", Ty::Str(100), "branch_city"),
        f("Branch_State", Ty::Str(50), "branch_state"),
        f(
            "Branch_BranchAssociation",
            Ty::Str(200),
            "branch_branch_association",
        ),
        f("Branch_Company_Name", Ty::Str(200), "company_name"),
        f("Branch_Company_Website", Ty::Str(2000), "company_website"),
        f(
            "Branch_Company_ExternalContactCompanyId",
            Ty::Str(100),
            "company_external_contact_company_id",
        ),
        f("Branch_Company_OrgId", Ty::Str(100), "company_org_id"),
        f("Branch_Company_UserId", Ty::Str(100), "company_user_id"),
        f("Branch_Company_TpoId", Ty::Str(100), "company_tpo_id"),
        f("Branch_Company_CompanyCode", Ty::Str(100), "company_code"),
        f(
            "Branch_Company_OwnerName",
            Ty::Str(200),
            "company_owner_name",
        ),
        f("Branch_Company_Phone", Ty::Str(20), "company_phone"),
        f("Branch_Company_Fax", Ty::Str(20), "company_fax"),
        f("Branch_Company_Email", Ty::Str(200), "company_email"),
        f(
            "Branch_Company_WebsiteUrl",
            Ty::Str(2000),
            "company_website_url",
        ),
        f("Branch_Company_NmlsId", Ty::Str(64), "company_nmls_id"),
        f(
            "Branch_Company_SalesRepresentativeUserId",
            Ty::Str(100),
            "company_sales_representative_user_id",
        ),
        f("Branch_Company_City", Ty::Str(100), "company_city"),
        f("Branch_Company_StateId", Ty::Str(50), "company_state_id"),
        f("Branch_Company_Address1", Ty::Str(200), "company_address1"),
        f(
            "Branch_Company_PostalCode",
            Ty::Str(10),
            "company_postal_code",
        ),
        f(
            "Branch_Company_BranchAssociation",
            Ty::Str(200),
            "company_branch_association",
        ),
        f(
            "Branch_Company_ExternalContactCompanyLoanProductTypes",
            Ty::Str(500),
            "company_loan_product_types",
        ),
        f(
            "Branch_Company_ExternalContactCompanyLoanPurposeTypes",
            Ty::Str(500),
            "company_loan_purpose_types",
        ),
        f(
            "Branch_Company_ExternalContactCompanyChannelTypes",
            Ty::Str(500),
            "company_channel_types",
        ),
        f(
            "Branch_Company_ApprovalStatusId",
            Ty::Int,
            "company_approval_status_id",
        ),
        f("Other1", Ty::Str(500), "other1"),
        f("Other2", Ty::Str(500), "other2"),
        f("Other3", Ty::Str(500), "other3"),
        f("Other4", Ty::Str(500), "other4"),
        f("Other5", Ty::Str(500), "other5"),
        f("Other6", Ty::Str(500), "other6"),
        f("Email1", Ty::Str(200), "email1"),
        f("Email2", Ty::Str(200), "email2"),
    ],
    shape: Shape::Entity { lender_id: "Email" },
    table: Some((Table::Partners, None)),
    division_field: None,
    aliases: &[ALIASES],
    rules,
    write,
    // create: reads, then one INSERT; update: reads, then one UPDATE.
    single_write: |_| true,
};

const ALIASES: &[Alias] = &[
    ("liscenseid", &["LicenseId"]),
    ("license", &["LicenseId"]),
    ("licensenumber", &["LicenseId"]),
    ("externalcontacttype", &["ExternalContactTypeId"]),
    ("contacttype", &["ExternalContactTypeId"]),
    ("partnertype", &["ExternalContactTypeId"]),
    ("type", &["ExternalContactTypeId"]),
    ("phone", &["MobilePhone", "WorkPhone"]),
    ("mobile", &["MobilePhone"]),
    ("cell", &["MobilePhone"]),
    ("extension", &["Ext"]),
    ("zip", &["PostalCode"]),
    ("zipcode", &["PostalCode"]),
    ("statecode", &["State"]),
    ("campaign", &["CampaignId"]),
    ("assignto", &["AssignToEmail", "AssignToUserId"]),
    ("assignee", &["AssignToEmail", "AssignToUserId"]),
    ("assigntouser", &["AssignToUserId"]),
    ("externalid", &["ExternalIdentifier"]),
    ("title", &["UserTitle"]),
    ("approvalstatus", &["ApprovalStatusId"]),
    ("avatar", &["AvatarUrl"]),
    ("company", &["Branch_Company_Name"]),
    ("companyname", &["Branch_Company_Name"]),
    ("branch", &["Branch_Name"]),
    ("branchname", &["Branch_Name"]),
];

fn rules(r: &mut Record, _: Option<super::Ctx<'_>>, problems: &mut Problems) {
    let given = |n: &str| matches!(r.slot(n), Slot::Set(_) | Slot::Invalid);
    if r.mode == Mode::Create {
        for name in ["FirstName", "LastName"] {
            if !given(name) {
                problems.at(name, Code::Required, "required for create.");
            }
        }
        if !given("AssignToEmail") && !given("AssignToUserId") {
            problems.at(
                "AssignToEmail or AssignToUserId",
                Code::Required,
                "one of them is required for create: the employee the partner is assigned to.",
            );
        }
    }
    if let Some(e) = r.str("AssignToEmail") {
        if !super::is_plausible_email(e) {
            let detail = format!("\"{e}\" is not an email address.");
            problems.at("AssignToEmail", Code::InvalidValue, detail);
        }
    }
    for name in ["Branch_Company_Email", "Email1", "Email2"] {
        if let Some(e) = r.str(name) {
            if !super::is_plausible_email(e) {
                let detail = format!("\"{e}\" is not an email address.");
                problems.at(name, Code::InvalidValue, detail);
            }
        }
    }
    for name in ["FirstName", "LastName"] {
        if *r.slot(name) == Slot::Null && r.mode != Mode::Create {
            problems.at(
                name,
                Code::NotAllowed,
                "cannot be cleared; a partner needs one.",
            );
        }
    }
}

fn write(r: &Record, w: &mut Writer<'_>) -> Applied {
    match r.mode {
        // A create whose Email a partner of the lender has updates that partner.
        Mode::Create => match w.locate(Table::Partners, None, &r.identity())? {
            Some(found) => update(w, r, &found),
            None => create(w, r),
        },
        _ => w.entity(r, Table::Partners, None, create, update),
    }
}

/// The employee a partner is assigned to, by email and/or user id (both given must agree).
fn assignee(w: &mut Writer<'_>, r: &Record) -> Result<Option<RowId>, ApplyError> {
    let by_email = match r.str("AssignToEmail") {
        Some(e) => {
            let key = e.to_lowercase();
            match w.tx.find(
                Table::Accounts,
                Key::Column("email_key", &key),
                Some(AccountKind::Employee),
            )? {
                Some(f) => Some(f.id),
                None => {
                    return refuse(
                        Some("AssignToEmail"),
                        Code::NotFound,
                        format!("AssignToEmail: no employee of this lender has the email \"{e}\"."),
                    )
                }
            }
        }
        None => None,
    };
    let by_id = match r.str("AssignToUserId") {
        Some(u) => {
            let key = if is_thread_id(u) {
                Key::ThreadId(u)
            } else {
                Key::LenderId(u)
            };
            let lower;
            let key = match key {
                Key::ThreadId(t) => {
                    lower = t.to_ascii_lowercase();
                    Key::ThreadId(&lower)
                }
                other => other,
            };
            match w.tx.find(Table::Accounts, key, Some(AccountKind::Employee))? {
                Some(f) => Some(f.id),
                None => {
                    return refuse(
                        Some("AssignToUserId"),
                        Code::NotFound,
                        format!("AssignToUserId: no employee of this lender has the ThreadId or ExternalId \"{u}\"."),
                    )
                }
            }
        }
        None => None,
    };
    match (by_email, by_id) {
        (Some(a), Some(b)) if a != b => refuse(
            Some("AssignToEmail"),
            Code::Conflict,
            "AssignToEmail and AssignToUserId name different employees.".into(),
        ),
        (a, b) => Ok(a.or(b)),
    }
}

/// With `partner_dedupe`, a LicenseId another partner of the lender has is refused.
fn dedupe(w: &mut Writer<'_>, r: &Record, except: Option<RowId>) -> Result<(), ApplyError> {
    let Some(license) = r.str("LicenseId") else {
        return Ok(());
    };
    if !w.lender.partner_dedupe {
        return Ok(());
    }
    let key = license.to_lowercase();
    if let Some(other) =
        w.tx.find(Table::Partners, Key::Column("license_key", &key), None)?
    {
        if Some(other.id) != except {
            return super::write::reject(Problem::field(
                "LicenseId",
                Code::Taken,
                format!("\"{license}\" is already the license of another partner of this lender (duplicate partners are refused: partner_dedupe is on)."),
            ));
        }
    }
    Ok(())
}

fn license_key(r: &Record) -> Option<Value<'static>> {
    match r.slot("LicenseId") {
        Slot::Set(Val::Str(s)) => Some(Value::Text(s.to_lowercase().into())),
        Slot::Null => Some(Value::Null),
        _ => None,
    }
}

fn create(w: &mut Writer<'_>, r: &Record) -> Applied {
    dedupe(w, r, None)?;
    let Some(assignee) = assignee(w, r)? else {
        return refuse(
            Some("AssignToEmail"),
            Code::Required,
            "AssignToEmail or AssignToUserId: one of them is required for create.".into(),
        );
    };
    let (mut cols, mut vals) = w.create_columns(r);
    for (col, default) in [
        ("external_contact_type_id", DEFAULT_CONTACT_TYPE),
        ("branch_association", DEFAULT_BRANCH_ASSOCIATION),
    ] {
        match cols.iter().position(|c| *c == col) {
            Some(i) if vals[i] == Value::Null => vals[i] = Value::Text(default.into()),
            Some(_) => {}
            None => {
                cols.push(col);
                vals.push(Value::Text(default.into()));
            }
        }
    }
    cols.extend(["email_key", "license_key", "assignee_account_id"]);
    vals.push(key_value(r.str("Email").map(str::to_lowercase)));
    vals.push(license_key(r).unwrap_or(Value::Null));
    vals.push(Value::Int(assignee));
    w.insert(r, Table::Partners, &cols, &vals)?;
    Ok(Outcome::Created)
}

fn update(w: &mut Writer<'_>, r: &Record, found: &Found) -> Applied {
    dedupe(w, r, Some(found.id))?;
    let assignee = assignee(w, r)?;
    let (mut cols, mut vals) = columns(r, true);
    if let Some(e) = r.str("Email") {
        cols.push("email_key");
        vals.push(Value::Text(e.to_lowercase().into()));
    }
    if let Some(k) = license_key(r) {
        cols.push("license_key");
        vals.push(k);
    }
    if let Some(a) = assignee {
        cols.push("assignee_account_id");
        vals.push(Value::Int(a));
    }
    w.update(r, Table::Partners, found.id, cols, vals)?;
    Ok(Outcome::Updated)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    #[test]
    fn create_needs_names_and_an_assignee() {
        assert_eq!(
            messages(Kind::Partners, r#"{"Mode":"create","Email":"p@x.test"}"#, None),
            vec![
                "FirstName: required for create.",
                "LastName: required for create.",
                "AssignToEmail or AssignToUserId: one of them is required for create: the employee the partner is assigned to."
            ]
        );
        assert_eq!(
            messages(
                Kind::Partners,
                r#"{"Mode":"create","FirstName":"A","LastName":"B","AssignToEmail":"e@x.test"}"#,
                None
            ),
            vec!["Email: required for create."]
        );
        assert!(messages(
            Kind::Partners,
            r#"{"Mode":"create","Email":"p@x.test","FirstName":"A","LastName":"B","AssignToUserId":"E1","LiscenseId":"x"}"#,
            None
        )[0]
            .contains("\"LicenseId\""));
    }

    #[test]
    fn update_by_email_and_no_clearing() {
        assert_eq!(
            messages(
                Kind::Partners,
                r#"{"Mode":"update","Email":"p@x.test","Notes":"n"}"#,
                None
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            messages(
                Kind::Partners,
                r#"{"Mode":"update","ThreadId":"0123456789abcdef0123456789abcdef","Email":null}"#,
                None
            ),
            vec!["Email: cannot be cleared."]
        );
    }
}
