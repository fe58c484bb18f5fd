//! The Bulk Web API (issue 11): submit loads, follow them and read records over HTTP(S).
//!
//! Owns: `ApiState` (what every handler shares), `router` (every route of the API), and `serve`
//! (binding `[api] listen`, rustls when `tls_cert` / `tls_key` are set, serving the API plus the
//! route sets other modules pass in, shutting down with the daemon). Submodules: `problem`
//! (problem+json errors), `token` (OAuth2 tokens, bearer check, rate limits), `loads` (submit,
//! spool, queue, follow), `inquiry` (records), `reference` (schemas, lookups, OpenAPI).
//! Must not: apply records itself (loads go through `engine::apply_load` and the engine's
//! single `WriterQueue`, like passes), or log a secret or a token.
//!
//! Other route sets (the web console) are merged by their caller: `serve(state, extra)` serves
//! `router(state).merge(extra)`; `loads::submit` is the one submit path for any HTTP intake.

pub mod inquiry;
pub mod loads;
pub mod openapi;
pub mod problem;
pub mod reference;
pub mod token;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::config::LiveConfig;
use crate::engine::WriterQueue;
pub use openapi::document as openapi_document;

/// What every API handler shares. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub live: Arc<LiveConfig>,
    /// The engine's single writer (the same one passes take turns from).
    pub writer: WriterQueue,
    /// The SFTP server's shared state: its per-address defender counts failed token requests.
    pub sftp: Arc<crate::sftp::Shared>,
    pub cancel: CancellationToken,
    pub tokens: token::TokenKey,
    pub rates: Arc<token::RateLimits>,
    /// Loads queued or running, per lender and environment; the worker's queue.
    pub loads: Arc<loads::Queue>,
    /// Bounds concurrent secret verifications (argon2 is costly).
    pub verify_slots: Arc<tokio::sync::Semaphore>,
    /// Verified when the client id is unknown, so an unknown client costs the same time.
    pub dummy_hash: Arc<str>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiStartError {
    #[error("api token key {path}: {source}")]
    Key {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot listen for the API on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("[api] tls_cert / tls_key: {0}")]
    Tls(String),
    #[error("api spool: {0}")]
    Spool(String),
}

impl ApiState {
    /// The API's state for the daemon: the token key in `data_dir` (made on first start).
    pub fn new(
        live: Arc<LiveConfig>,
        writer: WriterQueue,
        sftp: Arc<crate::sftp::Shared>,
        cancel: CancellationToken,
    ) -> Result<ApiState, ApiStartError> {
        let cfg = live.get();
        let path = cfg.data_dir.join("api_token_key");
        let tokens =
            token::TokenKey::load_or_create(&path).map_err(|source| ApiStartError::Key {
                path: path.display().to_string(),
                source,
            })?;
        let dummy_hash: Arc<str> = crate::auth::hash_password("bulkload-api-dummy-secret")
            .unwrap_or_default()
            .into();
        Ok(ApiState {
            live,
            writer,
            sftp,
            cancel,
            tokens,
            rates: Arc::default(),
            loads: Arc::default(),
            verify_slots: Arc::new(tokio::sync::Semaphore::new(2)),
            dummy_hash,
        })
    }
}

/// Every route of the API.
pub fn router(state: ApiState) -> Router {
    let authed = Router::new()
        .route("/v1/{env}/loads", get(loads::list))
        .route("/v1/{env}/loads/{id}/problems", get(loads::problems))
        // `{id}` is the record type when posting (one name per position, as the router needs).
        .route(
            "/v1/{env}/loads/{id}",
            get(loads::get_one).post(loads::post),
        )
        .route("/v1/{env}/lookups/{name}", get(reference::lookup))
        .route("/v1/{env}/quota", get(loads::quota))
        .route("/v1/{env}/{type}", get(inquiry::list))
        .route("/v1/{env}/{type}/{thread_id}", get(inquiry::get_one))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            token::require_token,
        ));
    Router::new()
        .route("/oauth/token", post(token::token))
        .route("/openapi.json", get(reference::openapi))
        .route("/v1/schemas/{type}", get(reference::schema))
        .merge(authed)
        .fallback(|| async { problem::ApiError::not_found("no such resource (see /openapi.json)") })
        .layer(axum::middleware::from_fn(request_id))
        .with_state(state)
}

/// Gives every request an id (the client's `X-Request-Id` when it is short and printable, else
/// a new one), sent back in `X-Request-Id` and logged, with the lender and client id once the
/// token is checked, in one line per request.
async fn request_id(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::HeaderValue;
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..16].to_string());
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let span = tracing::info_span!("request", request_id = %id);
    let mut resp = tracing::Instrument::instrument(next.run(req), span).await;
    let who = resp.extensions().get::<token::Caller>().cloned();
    tracing::info!(
        request_id = %id,
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        lender = who.as_ref().map_or("", |w| w.lender.as_str()),
        client_id = who.as_ref().map_or("", |w| w.client_id.as_str()),
        "api: request"
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Binds `[api] listen` and serves the API plus `extra` (other route sets on the same listener,
/// e.g. the web console) until the state's cancellation token fires; starts the load worker
/// and recovers spooled loads first. Returns the serving task.
pub async fn serve(
    state: ApiState,
    extra: Router,
) -> Result<tokio::task::JoinHandle<()>, ApiStartError> {
    let cfg = state.live.get();
    let Some(api) = cfg.api.clone() else {
        return Ok(tokio::spawn(async {}));
    };
    let addr: SocketAddr = api.listen.parse().map_err(|_| ApiStartError::Bind {
        addr: api.listen.clone(),
        source: std::io::Error::other("not an address and port"),
    })?;
    let listener = std::net::TcpListener::bind(addr).map_err(|source| ApiStartError::Bind {
        addr: api.listen.clone(),
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ApiStartError::Bind {
            addr: api.listen.clone(),
            source,
        })?;
    let shown = listener
        .local_addr()
        .map_or(api.listen.clone(), |a| a.to_string());
    loads::start_worker(&state).map_err(ApiStartError::Spool)?;
    let app = router(state.clone())
        .merge(extra)
        .into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    {
        let handle = handle.clone();
        let cancel = state.cancel.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            handle.graceful_shutdown(Some(Duration::from_secs(5)));
        });
    }
    let task = match &api.tls {
        Some((cert, key)) => {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|e| ApiStartError::Tls(e.to_string()))?;
            tracing::info!(address = %shown, tls = true, "listening for the Bulk Web API (HTTPS)");
            let server = axum_server::from_tcp_rustls(listener, tls).handle(handle);
            tokio::spawn(async move {
                if let Err(e) = server.serve(app).await {
                    tracing::error!(error = %e, "api listener stopped");
                }
            })
        }
        None => {
            tracing::info!(address = %shown, tls = false, "listening for the Bulk Web API (HTTP)");
            let server = axum_server::from_tcp(listener).handle(handle);
            tokio::spawn(async move {
                if let Err(e) = server.serve(app).await {
                    tracing::error!(error = %e, "api listener stopped");
                }
            })
        }
    };
    Ok(task)
}
