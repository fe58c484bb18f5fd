//! The web console (issue 15): lenders upload, validate and fix their files in a browser;
//! operators see every lender at a glance. Served under `/console` on the API's listener.
//!
//! Owns: the console's routes and their state (`Console`), sign-in and sign-out (passwords
//! through the SFTP logins' `PasswordGate` and `Defender`, optional TOTP), the session check
//! and CSRF check of every request, scoping every lender page and download to the signed-in
//! user's lender (anything else answers 404), and the embedded assets.
//! Must not: apply records itself (uploads are claimed into the lender's `work/` and applied
//! by a pass, like SFTP uploads), write to the store, or log a password or token.
//! Submodules: `session` (sessions, cookies, CSRF, TOTP), `views` (page chrome and shared
//! markup), `lender` (lender pages), `operator` (operator pages).

// Handlers answer a `Response` on their error path too (a redirect to sign-in, a 404 page):
// boxing it would only add an allocation to every refusal.
#![allow(clippy::result_large_err)]

pub mod lender;
pub mod operator;
pub mod session;
pub mod views;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Form, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;

use crate::config::{Config, ConsoleUser, LiveConfig};
use crate::schedule::Passes;
use crate::sftp::auth::Verdict;
use crate::sftp::Shared;
use session::{Role, Session, Sessions};
use views::Nav;

/// Uploads whose outcome a browser may still ask about, at most (oldest dropped first).
const MAX_TICKETS: usize = 10_000;

/// What the console's handlers share.
pub struct Console {
    pub(crate) live: Arc<LiveConfig>,
    /// The SFTP server's shared state: its defender and password gate serve sign-ins too.
    pub(crate) shared: Arc<Shared>,
    pub(crate) passes: Passes,
    pub(crate) sessions: Sessions,
    pub(crate) tickets: Mutex<HashMap<String, lender::Ticket>>,
    /// The SFTP host key's SHA256 fingerprint (connection page).
    pub(crate) host_fingerprint: String,
}

impl Console {
    pub fn new(
        live: Arc<LiveConfig>,
        shared: Arc<Shared>,
        passes: Passes,
        host_fingerprint: String,
    ) -> Arc<Console> {
        // Uploads a crash interrupted before they were claimed: none is in flight yet.
        let spool = lender::spool_dir(&live.get());
        if let Ok(rd) = std::fs::read_dir(&spool) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with(".upload") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Arc::new(Console {
            live,
            shared,
            passes,
            sessions: Sessions::default(),
            tickets: Mutex::new(HashMap::new()),
            host_fingerprint,
        })
    }

    pub(crate) fn cfg(&self) -> Arc<Config> {
        self.live.get()
    }

    /// Cookies get `Secure` when the listener serves TLS or a TLS proxy is declared.
    fn secure(&self) -> bool {
        let cfg = self.cfg();
        cfg.console.secure_cookies || cfg.api.as_ref().is_some_and(|a| a.tls.is_some())
    }

    /// The signed-in session of a request (`awaiting_totp` ones included), with its id.
    pub(crate) fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = session::cookie_value(headers, session::SESSION_COOKIE)?;
        let cfg = self.cfg();
        let s = self.sessions.touch(&id, cfg.console.idle_timeout)?;
        // A user removed from the config (reload) is signed out at the next request.
        let still = match &s.role {
            Role::Operator => find_operator(&cfg, &s.email).is_some(),
            Role::Lender(l) => cfg.lender(l).is_some_and(|l| {
                l.users
                    .iter()
                    .any(|u| u.email.eq_ignore_ascii_case(&s.email))
            }),
        };
        if !still {
            self.sessions.remove(&id);
            return None;
        }
        Some((id, s))
    }

    /// A full (second factor given) session, or the response to send instead: to sign-in for
    /// none, to the TOTP form for one awaiting it.
    pub(crate) fn signed_in(&self, headers: &HeaderMap) -> Result<Session, Response> {
        match self.session(headers) {
            None => Err(Redirect::to("/console/login").into_response()),
            Some((_, s)) if s.awaiting_totp => Err(Redirect::to("/console/totp").into_response()),
            Some((_, s)) => Ok(s),
        }
    }
}

fn find_operator<'a>(cfg: &'a Config, email: &str) -> Option<&'a ConsoleUser> {
    cfg.operators
        .iter()
        .find(|u| u.email.eq_ignore_ascii_case(email))
}

/// The account an e-mail signs in to.
fn find_user<'a>(cfg: &'a Config, email: &str) -> Option<(Role, &'a ConsoleUser)> {
    if let Some(u) = find_operator(cfg, email) {
        return Some((Role::Operator, u));
    }
    cfg.lenders.iter().find_map(|l| {
        l.users
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(email))
            .map(|u| (Role::Lender(l.id.clone()), u))
    })
}

/// The console's routes, to be merged into the API listener's router. Its handlers need the
/// peer address: serve with `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn router(console: Arc<Console>) -> Router {
    let max_upload = {
        let cfg = console.cfg();
        cfg.sftp.max_file_bytes.max(cfg.limits.max_file_bytes) as usize + 64 * 1024
    };
    Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .route("/console/login", get(login_page).post(login))
        .route("/console/totp", get(totp_page).post(totp))
        .route("/console/logout", post(logout))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .merge(operator::routes())
        .merge(lender::routes(max_upload))
        // Unknown paths get the API router's fallback (a 404 problem document); every known
        // console path answers the console's own 404 page for what is not the user's.
        .with_state(console)
}

/// The console's 404 page: for anything unknown, and for anything of another lender.
pub(crate) fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        html_page(views::page(
            "Not found",
            Nav::None,
            html! { p { "There is nothing here. " a href="/console" { "Back to the console" } } },
        )),
    )
        .into_response()
}

/// A refused form (no or a wrong CSRF token).
pub(crate) fn csrf_refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        html_page(views::page(
            "Form refused",
            Nav::None,
            html! { p { "This form was not sent from a page of this console (its security token is missing or out of date). Go back, reload the page and try again." } },
        )),
    )
        .into_response()
}

/// An HTML response that is never cached and never framed.
pub(crate) fn html_page(m: Markup) -> Response {
    let mut r = axum::response::Html(m.into_string()).into_response();
    secure_headers(r.headers_mut());
    r
}

pub(crate) fn secure_headers(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

async fn home(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let s = match c.signed_in(&headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match s.role {
        Role::Operator => Redirect::to("/console/ops").into_response(),
        Role::Lender(_) => {
            let cfg = c.cfg();
            match cfg.environments.first() {
                Some(env) => Redirect::to(&format!("/console/{env}/loads")).into_response(),
                None => not_found(),
            }
        }
    }
}

fn login_form(csrf: &str, email: &str, error: Option<&str>) -> Markup {
    views::page(
        "Sign in",
        Nav::None,
        html! {
            @if let Some(e) = error {
                p.error role="alert" { (e) }
            }
            form.stack method="post" action="/console/login" {
                input type="hidden" name="csrf" value=(csrf);
                label for="email" { "E-mail" }
                input id="email" type="email" name="email" autocomplete="email" required value=(email);
                label for="password" { "Password" }
                input id="password" type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// The sign-in page, with a fresh CSRF cookie (double submit: the form carries the same value).
fn login_response(c: &Console, status: StatusCode, email: &str, error: Option<&str>) -> Response {
    let token = session::random_token();
    let mut r = html_page(login_form(&token, email, error));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(
        session::LOGIN_CSRF_COOKIE,
        &token,
        c.secure(),
        None,
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn login_page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if let Some((_, s)) = c.session(&headers) {
        if !s.awaiting_totp {
            return Redirect::to("/console").into_response();
        }
    }
    login_response(&c, StatusCode::OK, "", None)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

async fn login(
    State(c): State<Arc<Console>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let cookie = session::cookie_value(&headers, session::LOGIN_CSRF_COOKIE).unwrap_or_default();
    if cookie.is_empty() || !session::same_token(&cookie, &f.csrf) {
        return csrf_refused();
    }
    let ip = addr.ip();
    let email: String = f.email.trim().chars().take(254).collect();
    let defender = &c.shared.defender;
    if defender.is_banned(ip) {
        tracing::info!(address = %ip, "console sign-in refused: address banned after failed logins");
        return login_response(
            &c,
            StatusCode::TOO_MANY_REQUESTS,
            &email,
            Some("Too many failed sign-ins from your address. Try again later."),
        );
    }
    let cfg = c.cfg();
    let found = find_user(&cfg, &email);
    let hash = found
        .as_ref()
        .map(|(_, u)| u.password_hash.expose().to_string());
    let verdict = c
        .shared
        .passwords
        .check_hash(defender, ip, hash, &f.password)
        .await;
    match (verdict, found) {
        (Verdict::Good, Some((role, user))) => {
            let awaiting = user.totp_secret.is_some();
            let id = c.sessions.create(&user.email, role.clone(), awaiting);
            tracing::info!(user = ?user.email, address = %ip, role = ?role, totp = awaiting, "console sign-in");
            let to = if awaiting {
                "/console/totp"
            } else {
                "/console"
            };
            let mut r = Redirect::to(to).into_response();
            for v in [
                session::set_cookie(session::SESSION_COOKIE, &id, c.secure(), None),
                session::clear_cookie(session::LOGIN_CSRF_COOKIE, c.secure()),
            ] {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            r
        }
        (v, _) => {
            defender.note_refused(ip, &email, "web");
            tracing::warn!(user = ?email, address = %ip, banned = v == Verdict::Banned, "console sign-in refused");
            let (status, msg) = if v == Verdict::Banned {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many failed sign-ins from your address. Try again later.",
                )
            } else {
                (StatusCode::UNAUTHORIZED, "Wrong e-mail or password.")
            };
            login_response(&c, status, &email, Some(msg))
        }
    }
}

fn totp_form(csrf: &str, error: Option<&str>) -> Markup {
    views::page(
        "Second factor",
        Nav::None,
        html! {
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form.stack method="post" action="/console/totp" {
                input type="hidden" name="csrf" value=(csrf);
                label for="code" { "Code from your authenticator app" }
                input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]*" required;
                button type="submit" { "Continue" }
            }
        },
    )
}

async fn totp_page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match c.session(&headers) {
        Some((_, s)) if s.awaiting_totp => html_page(totp_form(&s.csrf, None)),
        Some(_) => Redirect::to("/console").into_response(),
        None => Redirect::to("/console/login").into_response(),
    }
}

#[derive(Deserialize)]
struct TotpForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

async fn totp(
    State(c): State<Arc<Console>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<TotpForm>,
) -> Response {
    let Some((id, s)) = c.session(&headers) else {
        return Redirect::to("/console/login").into_response();
    };
    if !s.awaiting_totp {
        return Redirect::to("/console").into_response();
    }
    if !session::same_token(&s.csrf, &f.csrf) {
        return csrf_refused();
    }
    let ip = addr.ip();
    let cfg = c.cfg();
    let secret = find_user(&cfg, &s.email).and_then(|(_, u)| u.totp_secret.clone());
    let good =
        !c.shared.defender.is_banned(ip) && secret.is_some_and(|k| session::totp_ok(&k.0, &f.code));
    if good {
        let Some(new) = c.sessions.complete_totp(&id) else {
            return Redirect::to("/console/login").into_response();
        };
        tracing::info!(user = ?s.email, address = %ip, "console sign-in: second factor given");
        let mut r = Redirect::to("/console").into_response();
        if let Ok(v) = HeaderValue::from_str(&session::set_cookie(
            session::SESSION_COOKIE,
            &new,
            c.secure(),
            None,
        )) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        return r;
    }
    c.shared.defender.note_refused(ip, &s.email, "web-totp");
    let banned = c.shared.defender.record_failure(ip) || c.shared.defender.is_banned(ip);
    tracing::warn!(user = ?s.email, address = %ip, banned, "console sign-in: wrong second factor");
    if banned {
        c.sessions.remove(&id);
        return login_response(
            &c,
            StatusCode::TOO_MANY_REQUESTS,
            "",
            Some("Too many failed sign-ins from your address. Try again later."),
        );
    }
    let mut r = html_page(totp_form(
        &s.csrf,
        Some("That code is not right. Try the current one."),
    ));
    *r.status_mut() = StatusCode::UNAUTHORIZED;
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let Some((id, s)) = c.session(&headers) else {
        return Redirect::to("/console/login").into_response();
    };
    if !session::same_token(&s.csrf, &f.csrf) {
        return csrf_refused();
    }
    c.sessions.remove(&id);
    tracing::info!(user = ?s.email, "console sign-out");
    let mut r = Redirect::to("/console/login").into_response();
    if let Ok(v) =
        HeaderValue::from_str(&session::clear_cookie(session::SESSION_COOKIE, c.secure()))
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

fn asset(body: &'static str, mime: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

async fn js() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}
