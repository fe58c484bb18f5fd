//! Console sessions: who is signed in, their CSRF token, idle expiry, and the cookies that carry
//! them.
//!
//! Owns: the in-memory session table (bounded; a restart signs everyone out), session and
//! CSRF token generation, constant-time token comparison, the `Set-Cookie` attributes
//! (`HttpOnly`, `SameSite=Strict`, `Secure` when served over TLS), TOTP verification.
//! Must not: check passwords (that is `sftp::auth::PasswordGate`) or render pages.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use cookie::{Cookie, SameSite};
use subtle::ConstantTimeEq;

/// Sessions kept at most; past this the least recently used is dropped.
const MAX_SESSIONS: usize = 10_000;
/// A session waiting for its TOTP code lasts this long.
const TOTP_WINDOW: Duration = Duration::from_secs(300);

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "bulkload_session";
/// The sign-in form's CSRF cookie (double submit: the form carries the same value).
pub const LOGIN_CSRF_COOKIE: &str = "bulkload_login_csrf";

/// What a signed-in user may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A lender's staff member: that lender's pages only.
    Lender(String),
    /// An operator: the operator pages only.
    Operator,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub email: String,
    pub role: Role,
    /// Every form of the session carries it; a POST without it is refused.
    pub csrf: String,
    /// Signed in with the password, the TOTP code still to come.
    pub awaiting_totp: bool,
    last_seen: Instant,
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

/// 256 random bits, hex: session ids, CSRF tokens, upload tickets.
pub fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Constant-time equality of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session; returns its id.
    pub fn create(&self, email: &str, role: Role, awaiting_totp: bool) -> String {
        let id = random_token();
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id.clone(),
            Session {
                email: email.to_string(),
                role,
                csrf: random_token(),
                awaiting_totp,
                last_seen: Instant::now(),
            },
        );
        id
    }

    /// The live session `id`, its idle time restarted; an expired one is removed.
    pub fn touch(&self, id: &str, idle: Duration) -> Option<Session> {
        let mut map = self.lock();
        let s = map.get_mut(id)?;
        let limit = if s.awaiting_totp {
            idle.min(TOTP_WINDOW)
        } else {
            idle
        };
        if s.last_seen.elapsed() >= limit {
            map.remove(id);
            return None;
        }
        s.last_seen = Instant::now();
        Some(s.clone())
    }

    /// The second factor was given: the session becomes a full one, under a new id (the old
    /// one, seen before the code, is dropped).
    pub fn complete_totp(&self, id: &str) -> Option<String> {
        let mut map = self.lock();
        let mut s = map.remove(id)?;
        s.awaiting_totp = false;
        s.last_seen = Instant::now();
        s.csrf = random_token();
        let new = random_token();
        map.insert(new.clone(), s);
        Some(new)
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// The value of cookie `name` in the request.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// A `Set-Cookie` value for the console's cookies.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<Duration>) -> String {
    let mut c = Cookie::build((name.to_string(), value.to_string()))
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure);
    if let Some(age) = max_age {
        c = c.max_age(cookie::time::Duration::seconds(age.as_secs() as i64));
    }
    c.build().to_string()
}

/// A `Set-Cookie` value removing cookie `name`.
pub fn clear_cookie(name: &str, secure: bool) -> String {
    set_cookie(name, "", secure, Some(Duration::ZERO))
}

/// True when `code` is the TOTP code (6 digits, 30 s steps, SHA-1: what authenticator apps
/// use) of `secret` now, or one step before or after (clock skew).
pub fn totp_ok(secret: &[u8], code: &str) -> bool {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    match totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret.to_vec()) {
        Ok(t) => t.check_current(&code).unwrap_or(false),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_and_totp_rotates_the_id() {
        let s = Sessions::default();
        let id = s.create("a@example.test", Role::Operator, true);
        let before = s.touch(&id, Duration::from_secs(60)).unwrap();
        assert!(before.awaiting_totp);
        let new = s.complete_totp(&id).unwrap();
        assert!(s.touch(&id, Duration::from_secs(60)).is_none());
        let after = s.touch(&new, Duration::from_secs(60)).unwrap();
        assert!(!after.awaiting_totp);
        assert_ne!(after.csrf, before.csrf);
        std::thread::sleep(Duration::from_millis(20));
        assert!(s.touch(&new, Duration::from_millis(10)).is_none());
        assert!(s.touch(&new, Duration::from_secs(60)).is_none(), "removed");
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_when_asked() {
        let c = set_cookie(SESSION_COOKIE, "abc", true, None);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(!set_cookie(SESSION_COOKIE, "abc", false, None).contains("Secure"));
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            "x=1; bulkload_session=abc".parse().unwrap(),
        );
        assert_eq!(cookie_value(&h, SESSION_COOKIE).as_deref(), Some("abc"));
    }

    #[test]
    fn totp_codes() {
        let secret = b"12345678901234567890".to_vec();
        let t = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret.clone()).unwrap();
        let code = t.generate_current().unwrap();
        assert!(totp_ok(&secret, &code));
        assert!(!totp_ok(&secret, "12345"));
        assert!(!totp_ok(&secret, "abcdef"));
        assert!(same_token("abc", "abc") && !same_token("abc", "abd") && !same_token("a", "ab"));
    }
}
