//! API authentication: OAuth2 client-credentials tokens (RFC 6749 §4.4), the bearer check of
//! every other request, and the per-lender request rate limit.
//!
//! Owns: the token signing key (`data_dir/api_token_key`, made on first start, mode 0600), token
//! issue and verification, `POST /oauth/token`, the middleware that turns a bearer token into an
//! `Authed` lender and adds the `X-RateLimit-*` headers, and the per-lender request windows.
//! Must not: log or echo a secret or a token, check a secret of a banned address, or tell a
//! caller which part of its credentials was wrong.
//!
//! Tokens are stateless: `bl1.<payload>.<mac>`, the payload (base64url JSON: lender, client id,
//! expiry) signed with HMAC-SHA256 under the data folder's key. They survive a restart (the key
//! does), are scoped to one lender, and stop working when they expire, when their client is
//! removed from the config, or when the key file is replaced (revokes every token).

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::problem::ApiError;
use super::ApiState;
use crate::config::Lender;

/// The HMAC key tokens are signed with.
#[derive(Clone)]
pub struct TokenKey(Arc<[u8; 32]>);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// Loads the key at `path`, or makes one there (mode 0600) when there is none.
    pub fn load_or_create(path: &Path) -> std::io::Result<TokenKey> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let raw = STANDARD
                    .decode(text.trim())
                    .map_err(|e| std::io::Error::other(format!("not base64: {e}")))?;
                let key: [u8; 32] = raw.try_into().map_err(|_| {
                    std::io::Error::other("expected 32 bytes (base64); remove it to make a new one")
                })?;
                Ok(TokenKey(Arc::new(key)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::fill(&mut key);
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)?;
                writeln!(f, "{}", STANDARD.encode(key))?;
                f.sync_all()?;
                tracing::info!(path = %path.display(), "api: made a new token signing key");
                Ok(TokenKey(Arc::new(key)))
            }
            Err(e) => Err(e),
        }
    }

    #[cfg(test)]
    pub fn fixed(k: [u8; 32]) -> TokenKey {
        TokenKey(Arc::new(k))
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0[..])
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(b"bulkload api token v1\0");
        m.update(payload.as_bytes());
        m
    }

    /// A token for `client_id` of `lender`, valid until `expires` (unix seconds).
    pub fn issue(&self, lender: &str, client_id: &str, expires: u64) -> String {
        let payload = serde_json::json!({"l": lender, "c": client_id, "e": expires}).to_string();
        let p = URL_SAFE_NO_PAD.encode(payload.as_bytes());
        let tag = self.mac(&p).finalize().into_bytes();
        format!("bl1.{p}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The (lender, client id) of a token signed with this key and not expired at `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<(String, String), TokenRefusal> {
        let mut parts = token.split('.');
        let (Some("bl1"), Some(p), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenRefusal::Invalid);
        };
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenRefusal::Invalid)?;
        self.mac(p)
            .verify_slice(&tag)
            .map_err(|_| TokenRefusal::Invalid)?;
        let payload = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| TokenRefusal::Invalid)?;
        #[derive(serde::Deserialize)]
        struct P {
            l: String,
            c: String,
            e: u64,
        }
        let p: P = serde_json::from_slice(&payload).map_err(|_| TokenRefusal::Invalid)?;
        if p.e <= now {
            return Err(TokenRefusal::Expired);
        }
        Ok((p.l, p.c))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Invalid,
    Expired,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Who made an authenticated request.
#[derive(Debug, Clone)]
pub struct Authed {
    pub lender: Arc<Lender>,
    pub client_id: String,
    /// The config the request is served with (one per request, even across a reload).
    pub cfg: Arc<crate::config::Config>,
}

/// Per-lender fixed one-minute windows of requests.
#[derive(Default)]
pub struct RateLimits {
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

/// What one request's count left.
pub struct RateState {
    pub limit: u32,
    pub remaining: u32,
    pub reset_secs: u64,
    pub allowed: bool,
}

const WINDOW: Duration = Duration::from_secs(60);

impl RateLimits {
    pub fn hit(&self, lender: &str, limit: u32) -> RateState {
        let now = Instant::now();
        let mut w = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if w.len() > 10_000 {
            w.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let e = w.entry(lender.to_string()).or_insert((now, 0));
        if now.duration_since(e.0) >= WINDOW {
            *e = (now, 0);
        }
        let reset_secs = (WINDOW.saturating_sub(now.duration_since(e.0)).as_millis() as u64)
            .div_ceil(1000)
            .max(1);
        if e.1 >= limit {
            return RateState {
                limit,
                remaining: 0,
                reset_secs,
                allowed: false,
            };
        }
        e.1 += 1;
        RateState {
            limit,
            remaining: limit - e.1,
            reset_secs,
            allowed: true,
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Middleware of every `/v1/{env}/…` route: a valid bearer token of a configured client, then
/// the lender's request window. Adds `X-RateLimit-*` to every answer of an authenticated
/// request.
pub async fn require_token(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    // A refused request with a body (a submission) may leave it unread: close the connection.
    let has_body = !matches!(
        req.method(),
        &axum::http::Method::GET | &axum::http::Method::HEAD
    );
    let mut r = check_token(st, req, next).await;
    if has_body && !r.status().is_success() && !r.headers().contains_key(header::CONNECTION) {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

async fn check_token(st: ApiState, mut req: Request, next: Next) -> Response {
    let cfg = st.live.get();
    let Some(token) = bearer(req.headers()) else {
        return ApiError::unauthorized(
            "an `Authorization: Bearer <token>` header is required (get a token from POST /oauth/token)",
        )
        .into_response();
    };
    let (lender_id, client_id) = match st.tokens.verify(token, unix_now()) {
        Ok(x) => x,
        Err(TokenRefusal::Expired) => {
            return ApiError::unauthorized("the access token has expired; get a new one")
                .into_response()
        }
        Err(TokenRefusal::Invalid) => {
            return ApiError::unauthorized("the access token is not valid").into_response()
        }
    };
    // A token of a client (or lender) since removed from the config no longer works.
    let Some(lender) = cfg
        .lender(&lender_id)
        .filter(|l| l.api_clients.iter().any(|c| c.client_id == client_id))
    else {
        return ApiError::unauthorized("the access token is not valid").into_response();
    };
    let Some(api) = cfg.api.as_ref() else {
        return ApiError::unavailable("the API is not configured", 60).into_response();
    };
    let rate = st.rates.hit(&lender.id, api.requests_per_minute);
    let rate_headers = [
        ("x-ratelimit-limit", rate.limit as u64),
        ("x-ratelimit-remaining", rate.remaining as u64),
        ("x-ratelimit-reset", rate.reset_secs),
    ];
    let mut resp = if rate.allowed {
        let authed = Authed {
            lender: Arc::new(lender.clone()),
            client_id: client_id.clone(),
            cfg: cfg.clone(),
        };
        req.extensions_mut().insert(authed);
        let span = tracing::info_span!("client", lender = %lender.id, client_id = %client_id);
        tracing::Instrument::instrument(next.run(req), span).await
    } else {
        tracing::info!(lender = %lender.id, client_id = %client_id, "api: request over the rate limit");
        ApiError::too_many(
            format!(
                "over the limit of {} requests a minute for this lender; retry after {} s",
                rate.limit, rate.reset_secs
            ),
            rate.reset_secs,
        )
        .into_response()
    };
    for (n, v) in rate_headers {
        resp.headers_mut().insert(n, HeaderValue::from(v));
    }
    resp.extensions_mut().insert(Caller {
        lender: lender.id.clone(),
        client_id,
    });
    resp
}

/// Who an authenticated request came from, for the request's log line.
#[derive(Debug, Clone)]
pub struct Caller {
    pub lender: String,
    pub client_id: String,
}

/// The client's address (for the defender); `None` when unknown (tests without ConnectInfo).
fn peer(req_ext: Option<&ConnectInfo<SocketAddr>>) -> Option<IpAddr> {
    req_ext.map(|c| c.0.ip())
}

/// `POST /oauth/token`: client credentials by HTTP Basic or form fields.
pub async fn token(
    State(st): State<ApiState>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let ip = peer(connect.as_ref().map(|c| &c.0));
    match issue_token(&st, ip, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// RFC 6749 §5.2 errors are JSON with `error`; we answer them as problem+json with the OAuth
/// error code in `detail` first.
fn oauth_error(status: StatusCode, error: &'static str, detail: &str) -> ApiError {
    let mut e = ApiError::new(status, error, format!("{error}: {detail}"));
    if status == StatusCode::UNAUTHORIZED {
        e.headers.push((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"bulkload\""),
        ));
    }
    e
}

async fn issue_token(
    st: &ApiState,
    ip: Option<IpAddr>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let defender = &st.sftp.defender;
    if let Some(ip) = ip {
        if defender.is_banned(ip) {
            return Err(ApiError::too_many(
                "too many failed logins from this address; try again later",
                st.live.get().sftp.ban_seconds,
            ));
        }
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.split(';').next().is_some_and(|m| {
        m.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    }) {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded (grant_type=client_credentials)",
        ));
    }
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .map_err(|_| {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the form body could not be read",
        )
    })?;
    let field = |name: &str| {
        let mut it = form.iter().filter(|(k, _)| k == name);
        match (it.next(), it.next()) {
            (Some((_, v)), None) => Ok(Some(v.clone())),
            (None, _) => Ok(None),
            _ => Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("`{name}` is given twice"),
            )),
        }
    };
    match field("grant_type")?.as_deref() {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported",
            ))
        }
        None => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is missing (grant_type=client_credentials)",
            ))
        }
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("basic"))
        .map(|(_, b)| b.trim().to_string());
    let (client_id, secret) = match (basic, field("client_id")?, field("client_secret")?) {
        (Some(b), None, None) => {
            let decoded = STANDARD
                .decode(b)
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or_else(|| {
                    oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "the Basic credentials are not base64 of client_id:client_secret",
                    )
                })?;
            let (id, secret) = decoded.split_once(':').ok_or_else(|| {
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the Basic credentials are not client_id:client_secret",
                )
            })?;
            // RFC 6749 §2.3.1: both are form-urlencoded inside Basic.
            let dec = |s: &str| {
                serde_urlencoded::from_bytes::<Vec<(String, String)>>(format!("v={s}").as_bytes())
                    .ok()
                    .and_then(|f| f.into_iter().next().map(|(_, v)| v))
                    .unwrap_or_else(|| s.to_string())
            };
            (dec(id), dec(secret))
        }
        (None, Some(id), Some(secret)) => (id, secret),
        (Some(_), _, _) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "give the client credentials once: by HTTP Basic or by form fields, not both",
            ))
        }
        _ => {
            return Err(oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client_id and client_secret are required (HTTP Basic or form fields)",
            ))
        }
    };
    if client_id.len() > 256 || secret.len() > 1024 {
        return Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        ));
    }
    let cfg = st.live.get();
    let found = cfg.lenders.iter().find_map(|l| {
        l.api_clients
            .iter()
            .find(|c| c.client_id == client_id)
            .map(|c| (l.id.clone(), c.secret_hash.expose().to_string()))
    });
    // Counted before verifying (a flood of guesses is slowed and banned like SFTP logins);
    // forgiven when right. Unknown clients are verified against a dummy hash (same time).
    let earlier = ip.map_or(0, |ip| defender.recent_failures(ip));
    if let Some(ip) = ip {
        defender.count_attempt(ip);
    }
    if earlier > 0 {
        tokio::time::sleep(Duration::from_millis(250 * (earlier.min(8) as u64))).await;
    }
    let hash = found
        .as_ref()
        .map(|(_, h)| h.clone())
        .unwrap_or_else(|| st.dummy_hash.to_string());
    let permit = st.verify_slots.clone().acquire_owned().await.ok();
    let ok = tokio::task::spawn_blocking(move || crate::auth::verify_password(&secret, &hash))
        .await
        .unwrap_or(false);
    drop(permit);
    let Some((lender, _)) = found.filter(|_| ok) else {
        if let Some(ip) = ip {
            // Listed on the console's operator page with SFTP and console refusals.
            defender.note_refused(ip, &client_id, "api");
            if defender.ban_if_over(ip) {
                tracing::warn!(address = %ip, "api: address banned after failed token requests");
            }
        }
        crate::metrics::login("api", false);
        tracing::info!(client_id = %client_id, address = ?ip, "api: token refused (unknown client or wrong secret)");
        return Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        ));
    };
    if let Some(ip) = ip {
        defender.forgive(ip);
    }
    crate::metrics::login("api", true);
    let ttl = cfg.api.as_ref().map_or(3600, |a| a.token_ttl_seconds);
    let token = st.tokens.issue(&lender, &client_id, unix_now() + ttl);
    tracing::info!(lender = %lender, client_id = %client_id, expires_in = ttl, "api: token issued");
    let body = serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": ttl,
    });
    Ok((
        StatusCode::OK,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        axum::Json(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_expire_and_refuse_forgeries() {
        let k = TokenKey::fixed([7; 32]);
        let t = k.issue("acme", "c1", 1000);
        assert_eq!(k.verify(&t, 999), Ok(("acme".into(), "c1".into())));
        assert_eq!(k.verify(&t, 1000), Err(TokenRefusal::Expired));
        let other = TokenKey::fixed([8; 32]);
        assert_eq!(other.verify(&t, 1), Err(TokenRefusal::Invalid));
        // Another lender's name in a payload signed by nobody.
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"l":"beta","c":"c1","e":99999}"#);
        let tag = t.rsplit('.').next().unwrap();
        assert_eq!(
            k.verify(&format!("bl1.{forged_payload}.{tag}"), 1),
            Err(TokenRefusal::Invalid)
        );
        assert_eq!(k.verify("garbage", 1), Err(TokenRefusal::Invalid));
    }

    #[test]
    fn rate_windows_count_per_lender() {
        let r = RateLimits::default();
        assert!(r.hit("a", 2).allowed);
        let s = r.hit("a", 2);
        assert!(s.allowed && s.remaining == 0);
        assert!(!r.hit("a", 2).allowed);
        assert!(r.hit("b", 2).allowed);
    }
}
