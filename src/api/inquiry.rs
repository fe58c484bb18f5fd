//! API inquiry: a lender's records in the files' field names (issue 11).
//!
//! Owns: `GET /v1/{env}/{type}` (paged; `ExternalId` / the type's own id, `Email`,
//! `updatedSince`) and `GET /v1/{env}/{type}/{ThreadId}`, and turning stored columns back into
//! the fields of the type's field table (with `ThreadId`).
//! Must not: show another lender's records (another lender's ThreadId is a 404), or write.
//!
//! Fields kept outside the entity's own row (division lists, broker contacts, a partner's
//! assignee) are not part of the answer. Relation types are listed per loan (`?Loan_Number=`).

use axum::extract::{Path as UrlPath, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{Map, Value as Json};

use super::loads::{check_env, open_store, parse_kind, parse_query, parse_time};
use super::problem::ApiError;
use super::token::Authed;
use crate::records::{Kind, Ty};
use crate::store::{LoanRelation, RecordQuery, Value};

/// The entity type's readable fields: (field name, column, type).
pub fn readable(kind: Kind) -> Vec<(&'static str, &'static str, Ty)> {
    kind.fields()
        .iter()
        .filter(|f| !f.column.is_empty())
        .map(|f| (f.name, f.column, f.ty))
        .collect()
}

fn entity(kind_name: &str) -> Result<Kind, ApiError> {
    let kind = parse_kind(kind_name)?;
    if kind.is_relation() || kind.spec().table.is_none() {
        return Err(ApiError::not_found(format!(
            "{kind_name} is a relation type: list a loan's links with GET /v1/{{env}}/{kind_name}?Loan_Number="
        )));
    }
    Ok(kind)
}

/// The relation types listed per loan, and their fields after `Loan_ThreadId`, `Loan_Number`.
fn relation(kind: Kind) -> Option<(LoanRelation, &'static [&'static str])> {
    match kind {
        Kind::LoanPositions => Some((
            LoanRelation::Positions,
            &["Account_ThreadId", "Account_ExternalId", "PositionName"],
        )),
        Kind::LoanBorrowers => Some((
            LoanRelation::Borrowers,
            &["Account_ThreadId", "Account_ExternalId"],
        )),
        Kind::LoanBrokers => Some((
            LoanRelation::Broker,
            &[
                "Broker_ThreadId",
                "Broker_IdNumber",
                "LoanOfficer_AccountThreadId",
                "LoanOfficer_AccountExternalId",
            ],
        )),
        _ => None,
    }
}

/// `GET /v1/{env}/{relation type}?Loan_Number=`: one loan's links, in the file's field names.
async fn relations(
    auth: &Authed,
    env: &str,
    kind_name: &str,
    (which, names): (LoanRelation, &'static [&'static str]),
    q: &[(String, String)],
) -> Result<Response, ApiError> {
    let (paging, f) = parse_query(q, &["Loan_Number"])?;
    let Some(loan) = f.get("Loan_Number").cloned() else {
        return Err(ApiError::bad_request(format!(
            "{kind_name} are listed per loan: give ?Loan_Number="
        )));
    };
    let (cfg, env2, lender, loan2) = (
        auth.cfg.clone(),
        env.to_string(),
        auth.lender.id.clone(),
        loan.clone(),
    );
    let page = tokio::task::spawn_blocking(move || {
        open_store(&cfg, &env2)?.loan_relations(&lender, which, &loan2, paging.offset, paging.limit)
    })
    .await
    .map_err(|e| ApiError::internal(format!("task failed: {e}")))?
    .map_err(ApiError::from)?
    .ok_or_else(|| ApiError::not_found(format!("no loan with Loan_Number {loan:?} in {env}")))?;
    let records: Vec<Json> = page
        .rows
        .into_iter()
        .map(|(loan_thread, vals)| {
            let mut m = Map::new();
            m.insert("Loan_ThreadId".into(), Json::String(loan_thread));
            m.insert("Loan_Number".into(), Json::String(loan.clone()));
            for (n, v) in names.iter().zip(vals) {
                m.insert((*n).to_string(), to_json(v, Ty::Str(0)));
            }
            Json::Object(m)
        })
        .collect();
    let body = serde_json::json!({
        "records": records,
        "_metadata": {"offset": paging.offset, "limit": paging.limit, "total": page.total},
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

fn to_json(v: Value, ty: Ty) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Int(n) => Json::from(n),
        Value::Text(t) => match ty {
            Ty::Decimal => t
                .parse::<serde_json::Number>()
                .map(Json::Number)
                .unwrap_or_else(|_| Json::String(t.into_owned())),
            _ => Json::String(t.into_owned()),
        },
    }
}

fn record(kind: Kind, thread_id: String, vals: Vec<Value>) -> Json {
    let fields = readable(kind);
    let mut m = Map::new();
    m.insert("ThreadId".into(), Json::String(thread_id));
    for ((name, _, ty), v) in fields.into_iter().zip(vals) {
        m.insert(name.to_string(), to_json(v, ty));
    }
    Json::Object(m)
}

async fn query(
    auth: &Authed,
    env: &str,
    kind: Kind,
    equals: Vec<(&'static str, String, bool)>,
    updated_since: Option<String>,
    offset: i64,
    limit: i64,
) -> Result<crate::store::RecordPage, ApiError> {
    let (cfg, env, lender) = (auth.cfg.clone(), env.to_string(), auth.lender.id.clone());
    let columns: Vec<&'static str> = readable(kind).into_iter().map(|(_, c, _)| c).collect();
    let (table, account_kind) = kind
        .spec()
        .table
        .ok_or_else(|| ApiError::not_found("not an entity type"))?;
    tokio::task::spawn_blocking(move || {
        open_store(&cfg, &env)?.records_page(
            &lender,
            &RecordQuery {
                table,
                account_kind,
                columns: &columns,
                equals: &equals,
                updated_since: updated_since.as_deref(),
                offset,
                limit,
            },
        )
    })
    .await
    .map_err(|e| ApiError::internal(format!("task failed: {e}")))?
    .map_err(ApiError::from)
}

/// `GET /v1/{env}/{type}`.
pub async fn list(
    Extension(auth): Extension<Authed>,
    UrlPath((env, kind_name)): UrlPath<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    check_env(&auth.cfg, &env)?;
    if let Some(which) = relation(parse_kind(&kind_name)?) {
        return relations(&auth, &env, &kind_name, which, &q).await;
    }
    let kind = entity(&kind_name)?;
    let lender_id_field = kind.lender_id_field().unwrap_or("ExternalId");
    let mut allowed = vec!["updatedSince", "Email"];
    if lender_id_field != "Email" {
        allowed.push(lender_id_field);
    }
    let (paging, f) = parse_query(&q, &allowed)?;
    let fields = readable(kind);
    let column_of = |name: &str| {
        fields
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, c, _)| *c)
    };
    let mut equals = Vec::new();
    for (name, v) in &f {
        if name == "updatedSince" {
            continue;
        }
        let Some(col) = column_of(name) else {
            return Err(ApiError::bad_request(format!(
                "{kind_name} records have no {name} to filter by"
            )));
        };
        equals.push((col, v.clone(), name == "Email"));
    }
    let since = f
        .get("updatedSince")
        .map(|s| parse_time("updatedSince", s))
        .transpose()?;
    let page = query(
        &auth,
        &env,
        kind,
        equals,
        since,
        paging.offset,
        paging.limit,
    )
    .await?;
    let records: Vec<Json> = page
        .rows
        .into_iter()
        .map(|(t, v)| record(kind, t, v))
        .collect();
    let body = serde_json::json!({
        "records": records,
        "_metadata": {"offset": paging.offset, "limit": paging.limit, "total": page.total},
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// `GET /v1/{env}/{type}/{thread_id}`.
pub async fn get_one(
    Extension(auth): Extension<Authed>,
    UrlPath((env, kind_name, thread_id)): UrlPath<(String, String, String)>,
) -> Result<Response, ApiError> {
    check_env(&auth.cfg, &env)?;
    let kind = entity(&kind_name)?;
    let tid = thread_id.to_ascii_lowercase();
    if tid.len() != 32 || !tid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::not_found(format!(
            "no {} with ThreadId {thread_id:?} (thread ids are 32 hexadecimal characters)",
            kind.noun()
        )));
    }
    let page = query(
        &auth,
        &env,
        kind,
        vec![("thread_id", tid, false)],
        None,
        0,
        1,
    )
    .await?;
    match page.rows.into_iter().next() {
        Some((t, v)) => Ok((StatusCode::OK, axum::Json(record(kind, t, v))).into_response()),
        None => Err(ApiError::not_found(format!(
            "no {} with ThreadId {thread_id} in {env}",
            kind.noun()
        ))),
    }
}
