//! Loans: a lender's loans, each in one division, with lookup-table ids.
//!
//! Owns: the loan field table, the lookup-id rules (each id names an entry of its lookup), and
//! what a loan writes (one row; its division defaults to the lender's only one).
//! Must not: know the lookups' contents beyond `Lookups` (configuration).

use super::hints::{Alias, ADDRESS};
use super::write::{columns, drop_column, Applied, Writer};
use super::{f, Kind, Outcome, Record, Shape, Slot, Spec, Ty};
use crate::problem::{Code, Problems};
use crate::store::{Found, Table, Value};

const DIVISION: &str = "DivisionThreadId";

pub static SPEC: Spec = Spec {
    kind: Kind::Loans,
    prefix: "loans",
    noun: "loan",
    fields: &[
        f("Mode", Ty::Str(6), ""),
        f("LoanNumber", Ty::Str(50), "loan_number"),
        f("ThreadId", Ty::Str(32), ""),
        f(DIVISION, Ty::Str(32), "division_thread_id"),
        f("Address1", Ty::Str(200), "address1"),
        f("Address2", Ty::Str(200), "address2"),
        f("City", Ty::Str(100), "city"),
        f("StateCode", Ty::Str(2), "state_code"),
        f("ZipCode", Ty::Str(10), "zip_code"),
        f("LoanTypeId", Ty::Int, "loan_type_id"),
        f("AgencyId", Ty::Int, "agency_id"),
        f("ClosingDate", Ty::DateTime, "closing_date"),
        f("CompletionDate", Ty::DateTime, "completion_date"),
        f("FHACaseNumber", Ty::Str(50), "fha_case_number"),
        f("BuildTerm", Ty::Str(50), "build_term"),
        f("ExternalLoanOfficer", Ty::Str(100), "external_loan_officer"),
        f("BranchNumber", Ty::Str(50), "branch_number"),
        f("FundedDate", Ty::DateTime, "funded_date"),
        f(
            "ClosedOutWithInvestor",
            Ty::DateTime,
            "closed_out_with_investor",
        ),
        f(
            "FinalTitleUpdateDate",
            Ty::DateTime,
            "final_title_update_date",
        ),
        f("TotalLoanAmount", Ty::Decimal, "total_loan_amount"),
        f("LoanPurposeId", Ty::Int, "loan_purpose_id"),
        f("LoanOccupancyId", Ty::Int, "loan_occupancy_id"),
        f("StructureTypeId", Ty::Int, "structure_type_id"),
        f("LoanStatusId", Ty::Int, "loan_status_id"),
        f("WorkOrderDate", Ty::DateTime, "work_order_date"),
        f("SorDate", Ty::DateTime, "sor_date"),
        f("EstCompletionDate", Ty::DateTime, "est_completion_date"),
        f(
            "EscrowReasonRepairType",
            Ty::Str(50),
            "escrow_reason_repair_type",
        ),
        f(
            "EscrowFinalAppraisal",
            Ty::Str(50),
            "escrow_final_appraisal",
        ),
        f(
            "EscrowAppraisalMgmtCompany",
            Ty::Str(200),
            "escrow_appraisal_mgmt_company",
        ),
    ],
    shape: Shape::Entity {
        lender_id: "LoanNumber",
    },
    table: Some((Table::Loans, None)),
    division_field: Some(DIVISION),
    aliases: &[ALIASES, ADDRESS],
    rules,
    write,
    // create: one INSERT; update: one UPDATE.
    single_write: |_| true,
};

const ALIASES: &[Alias] = &[
    ("loanid", &["LoanNumber", "ThreadId"]),
    ("loan", &["LoanNumber"]),
    ("number", &["LoanNumber"]),
    ("loanno", &["LoanNumber"]),
    ("division", &[DIVISION]),
    ("divisionid", &[DIVISION]),
    ("divisionthreadids", &[DIVISION]),
    ("amount", &["TotalLoanAmount"]),
    ("loanamount", &["TotalLoanAmount"]),
    ("type", &["LoanTypeId"]),
    ("loantype", &["LoanTypeId"]),
    ("agency", &["AgencyId"]),
    ("purpose", &["LoanPurposeId"]),
    ("loanpurpose", &["LoanPurposeId"]),
    ("occupancy", &["LoanOccupancyId"]),
    ("status", &["LoanStatusId"]),
    ("loanstatus", &["LoanStatusId"]),
    ("structuretype", &["StructureTypeId"]),
    ("fhacase", &["FHACaseNumber"]),
    ("loanofficer", &["ExternalLoanOfficer"]),
    ("branch", &["BranchNumber"]),
    ("closedate", &["ClosingDate"]),
    ("closing", &["ClosingDate"]),
    ("fundingdate", &["FundedDate"]),
];

/// The lookup-id fields and the lookup each names.
const LOOKUP_IDS: [(&str, &str); 6] = [
    ("LoanTypeId", "loan_types"),
    ("AgencyId", "agencies"),
    ("LoanPurposeId", "loan_purposes"),
    ("LoanOccupancyId", "loan_occupancies"),
    ("StructureTypeId", "structure_types"),
    ("LoanStatusId", "loan_statuses"),
];

/// `LOOKUP_IDS` with each field's place in the table, found once (six searches of the table by
/// name per loan were 6% of a loans file's parser thread).
fn lookup_fields() -> &'static [(usize, &'static str, &'static str)] {
    static FIELDS: std::sync::OnceLock<Vec<(usize, &str, &str)>> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| {
        LOOKUP_IDS
            .iter()
            .filter_map(|&(field, name)| {
                let i = SPEC.fields.iter().position(|f| f.name == field);
                debug_assert!(i.is_some(), "loans have no field {field}");
                i.map(|i| (i, field, name))
            })
            .collect()
    })
}

fn rules(r: &mut Record, ctx: Option<super::Ctx<'_>>, problems: &mut Problems) {
    let Some(ctx) = ctx else { return };
    for &(i, field, name) in lookup_fields() {
        if let Some(id) = r.slots.get(i).and_then(Slot::int) {
            let Some((noun, table)) = ctx.lookups.table(name) else {
                continue;
            };
            if !table.iter().any(|e| e.id == id) {
                problems.at(
                    field,
                    Code::UnknownReference,
                    format!("{id} is not a {noun} id (see lookups/{name}.csv)."),
                );
            }
        }
    }
}

fn write(r: &Record, w: &mut Writer<'_>) -> Applied {
    w.entity(r, Table::Loans, None, create, update)
}

fn create(w: &mut Writer<'_>, r: &Record) -> Applied {
    // An upsert that creates takes the single division when none was given.
    let division = w.divisions_or_default(r, DIVISION)?;
    let (mut cols, mut vals) = w.create_columns(r);
    let division = Value::Text(division.first().map_or("", String::as_str).into());
    match cols.iter().position(|c| *c == "division_thread_id") {
        Some(i) => vals[i] = division,
        None => {
            cols.push("division_thread_id");
            vals.push(division);
        }
    }
    w.insert(r, Table::Loans, &cols, &vals)?;
    Ok(Outcome::Created)
}

fn update(w: &mut Writer<'_>, r: &Record, found: &Found) -> Applied {
    let (mut cols, mut vals) = columns(r, true);
    // Validation refused or defaulted a null division: a loan's division is never cleared.
    if *r.slot(DIVISION) == Slot::Null {
        drop_column(&mut cols, &mut vals, "division_thread_id");
    }
    w.update(r, Table::Loans, found.id, cols, vals)?;
    Ok(Outcome::Updated)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    #[test]
    fn every_lookup_id_field_is_found_once_and_checked() {
        let found = super::lookup_fields();
        assert_eq!(found.len(), super::LOOKUP_IDS.len());
        for &(i, field, _) in found {
            assert_eq!(super::SPEC.fields[i].name, field);
        }
        let cfg = cfg();
        // The last of them in the table, out of the members' usual order.
        assert_eq!(
            messages(
                Kind::Loans,
                r#"{"LoanStatusId":999,"Mode":"create","LoanNumber":"l"}"#,
                Some(ctx(&cfg))
            ),
            vec!["LoanStatusId: 999 is not a loan status id (see lookups/loan_statuses.csv)."]
        );
    }

    #[test]
    fn lookup_ids() {
        let cfg = cfg();
        assert_eq!(
            messages(
                Kind::Loans,
                r#"{"Mode":"create","LoanNumber":"l","LoanTypeId":99}"#,
                Some(ctx(&cfg))
            ),
            vec!["LoanTypeId: 99 is not a loan type id (see lookups/loan_types.csv)."]
        );
        // 1.0 is the integer 1.
        assert_eq!(
            messages(
                Kind::Loans,
                r#"{"Mode":"create","LoanNumber":"l","LoanTypeId":1.0}"#,
                Some(ctx(&cfg))
            ),
            Vec::<String>::new()
        );
    }
}
