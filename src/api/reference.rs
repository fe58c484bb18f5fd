//! API reference documents: JSON Schemas of the record types, the lender's lookups, and the
//! OpenAPI 3.1 document of the whole API.
//!
//! Owns: `GET /v1/schemas/{type}`, `GET /v1/{env}/lookups/{name}`, `GET /openapi.json`.
//! Must not: hold a field table (the schemas come from `templates`, which reads the records'
//! specs) or another lender's lookups.

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::loads::{check_env, parse_kind};
use super::problem::ApiError;
use super::token::Authed;
use super::ApiState;

fn json(status: StatusCode, body: String, media: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(media))],
        body,
    )
        .into_response()
}

/// `GET /v1/schemas/{type}`: the JSON Schema (2020-12) of one record.
pub async fn schema(UrlPath(kind): UrlPath<String>) -> Result<Response, ApiError> {
    let kind = parse_kind(&kind)?;
    Ok(json(
        StatusCode::OK,
        crate::templates::schema_text(kind),
        "application/schema+json",
    ))
}

/// `GET /v1/{env}/lookups/{name}`.
pub async fn lookup(
    Extension(auth): Extension<Authed>,
    UrlPath((env, name)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    check_env(&auth.cfg, &env)?;
    let tables = crate::lookups::tables(&auth.cfg, &auth.lender);
    let names: Vec<String> = tables.iter().map(|t| t.name.to_string()).collect();
    let Some(t) = tables.iter().find(|t| t.name == name) else {
        return Err(ApiError::not_found(format!(
            "unknown lookup {name:?}; known: {}",
            names.join(", ")
        )));
    };
    Ok(json(
        StatusCode::OK,
        crate::lookups::to_json(t),
        "application/json",
    ))
}

/// `GET /openapi.json`.
pub async fn openapi(State(st): State<ApiState>) -> Response {
    json(
        StatusCode::OK,
        super::openapi_document(&st.live.get()).to_string(),
        "application/json",
    )
}
