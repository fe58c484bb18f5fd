//! API inquiry: a lender's records in the files' field names (issue 11).
//!
//! Owns: `GET /v1/{env}/{type}` (paged, filtered) and `GET /v1/{env}/{type}/{ThreadId}`.
//! Must not: show another lender's records, or write anything.

use axum::extract::{Path as UrlPath, Query};
use axum::response::Response;
use axum::Extension;

use super::loads::{check_env, parse_kind};
use super::problem::ApiError;
use super::token::Authed;

/// `GET /v1/{env}/{type}`.
pub async fn list(
    Extension(auth): Extension<Authed>,
    UrlPath((env, kind)): UrlPath<(String, String)>,
    Query(_q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    check_env(&auth.cfg, &env)?;
    parse_kind(&kind)?;
    Err(ApiError::new(
        axum::http::StatusCode::NOT_IMPLEMENTED,
        "not-implemented",
        "record inquiry is not available yet",
    ))
}

/// `GET /v1/{env}/{type}/{thread_id}`.
pub async fn get_one(
    Extension(auth): Extension<Authed>,
    UrlPath((env, kind, _thread_id)): UrlPath<(String, String, String)>,
) -> Result<Response, ApiError> {
    check_env(&auth.cfg, &env)?;
    parse_kind(&kind)?;
    Err(ApiError::new(
        axum::http::StatusCode::NOT_IMPLEMENTED,
        "not-implemented",
        "record inquiry is not available yet",
    ))
}
