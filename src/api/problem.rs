//! API errors: every refusal as `application/problem+json` (RFC 9457).
//!
//! Owns: `ApiError` (status, title, a precise `detail`, extra headers such as `Retry-After`) and
//! its rendering. Must not: decide when a request is refused (the handlers do), or put a secret,
//! token or another lender's data into a `detail`.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// One refusal of a request.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    /// A short machine-friendly reason appended to `type` (`…/problems/<code>`).
    pub code: &'static str,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: detail.into(),
            code,
            headers: Vec::new(),
        }
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail);
        e.headers.push((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"bulkload\""),
        ));
        e
    }
    pub fn too_many(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "too-many-requests", detail);
        e.headers.push((
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs.max(1)),
        ));
        e
    }
    /// A failure of ours (the store, the disk): logged by the caller; the lender reads only
    /// that it is ours and to retry.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }
    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail);
        e.headers.push((
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs.max(1)),
        ));
        e
    }
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": format!("https://bulkload.invalid/problems/{}", self.code),
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            body.to_string(),
        )
            .into_response();
        for (n, v) in self.headers {
            r.headers_mut().append(n, v);
        }
        r
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "api: store failure");
        ApiError::unavailable("the store could not answer just now; try again shortly", 5)
    }
}
