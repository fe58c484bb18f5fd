//! SFTP logins: checking a lender's password or key, the defender that bans addresses after
//! repeated failures, and the per-lender session cap.
//!
//! Owns: which credentials open which lender's home, failure counting per source address,
//! ban decisions, and counting live sessions per lender.
//! Must not: log or return a password, tell a client whether a user name exists, or touch a
//! lender's files.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use russh::keys::ssh_key::{AuthorizedKeys, PublicKey};

use crate::config::Config;

/// Addresses remembered at most; beyond this, entries with no ban and no recent failure are
/// dropped first, so a flood of sources cannot grow memory without bound.
const MAX_TRACKED_ADDRESSES: usize = 100_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain counters behind: keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct Record {
    failures: VecDeque<Instant>,
    banned_until: Option<Instant>,
}

/// Counts failed logins per source address and bans an address that fails too often.
pub struct Defender {
    max_failures: u32,
    window: Duration,
    ban: Duration,
    records: Mutex<HashMap<IpAddr, Record>>,
}

impl Defender {
    pub fn new(max_failures: u32, window: Duration, ban: Duration) -> Self {
        Defender {
            max_failures: max_failures.max(1),
            window,
            ban,
            records: Mutex::new(HashMap::new()),
        }
    }

    pub fn from_config(cfg: &Config) -> Self {
        Defender::new(
            cfg.sftp.max_login_failures,
            Duration::from_secs(cfg.sftp.login_failure_window_seconds),
            Duration::from_secs(cfg.sftp.ban_seconds),
        )
    }

    /// True while `ip` is banned.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        lock(&self.records)
            .get(&ip)
            .and_then(|r| r.banned_until)
            .is_some_and(|until| until > now)
    }

    /// Records one failed login from `ip`; true when this failure bans it.
    pub fn record_failure(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut records = lock(&self.records);
        if records.len() >= MAX_TRACKED_ADDRESSES && !records.contains_key(&ip) {
            let window = self.window;
            records.retain(|_, r| {
                r.banned_until.is_some_and(|u| u > now)
                    || r.failures.back().is_some_and(|t| now - *t < window)
            });
        }
        let r = records.entry(ip).or_default();
        while r
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            r.failures.pop_front();
        }
        r.failures.push_back(now);
        if r.failures.len() >= self.max_failures as usize {
            r.failures.clear();
            r.banned_until = Some(now + self.ban);
            true
        } else {
            false
        }
    }
}

/// Live sessions per lender, capped.
#[derive(Clone)]
pub struct SessionCounter {
    max: usize,
    live: Arc<Mutex<HashMap<String, usize>>>,
}

/// One counted session; the count drops when this does.
pub struct SessionSlot {
    lender: String,
    live: Arc<Mutex<HashMap<String, usize>>>,
}

impl SessionCounter {
    pub fn new(max: usize) -> Self {
        SessionCounter {
            max,
            live: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A slot for `lender`, or `None` when the lender already holds the most sessions.
    pub fn try_acquire(&self, lender: &str) -> Option<SessionSlot> {
        let mut live = lock(&self.live);
        let n = live.entry(lender.to_string()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(SessionSlot {
            lender: lender.to_string(),
            live: self.live.clone(),
        })
    }

    /// Sessions `lender` holds now.
    pub fn live(&self, lender: &str) -> usize {
        lock(&self.live).get(lender).copied().unwrap_or(0)
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut live = lock(&self.live);
        if let Some(n) = live.get_mut(&self.lender) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                live.remove(&self.lender);
            }
        }
    }
}

/// True when `password` opens `user`'s home. An unknown user, a lender without a password and
/// a wrong password all give the same `false`. Slow (argon2): call it off the async threads.
pub fn password_matches(cfg: &Config, user: &str, password: &str) -> bool {
    match cfg.lender(user).and_then(|l| l.password_hash.as_ref()) {
        Some(hash) => crate::auth::verify_password(password, hash.expose()),
        None => false,
    }
}

/// True when `key` is listed in `user`'s authorized_keys file. The file is read at each login,
/// so an operator's edit applies without a restart; lines that do not parse are skipped.
pub fn key_authorized(cfg: &Config, user: &str, key: &PublicKey) -> bool {
    let Some(path) = cfg.lender(user).and_then(|l| l.authorized_keys.as_deref()) else {
        return false;
    };
    authorized_keys_contain(path, key)
}

fn authorized_keys_contain(path: &Path, key: &PublicKey) -> bool {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read authorized_keys");
            return false;
        }
    };
    AuthorizedKeys::new(&text)
        .filter_map(Result::ok)
        .any(|entry| entry.public_key().key_data() == key.key_data())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_after_max_failures_in_window() {
        let d = Defender::new(3, Duration::from_secs(60), Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(!d.record_failure(ip));
        assert!(!d.record_failure(ip));
        assert!(!d.is_banned(ip));
        assert!(d.record_failure(ip));
        assert!(d.is_banned(ip));
        assert!(!d.is_banned(other));
    }

    #[test]
    fn failures_outside_window_do_not_count_and_bans_expire() {
        let d = Defender::new(2, Duration::from_millis(30), Duration::from_millis(30));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(!d.record_failure(ip));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!d.record_failure(ip));
        assert!(d.record_failure(ip));
        assert!(d.is_banned(ip));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!d.is_banned(ip));
    }

    #[test]
    fn session_cap() {
        let c = SessionCounter::new(2);
        let a = c.try_acquire("demo").unwrap();
        let _b = c.try_acquire("demo").unwrap();
        assert!(c.try_acquire("demo").is_none());
        assert!(c.try_acquire("other").is_some());
        drop(a);
        assert_eq!(c.live("demo"), 1);
        assert!(c.try_acquire("demo").is_some());
    }

    #[test]
    fn authorized_keys_file() {
        let d = tempfile::tempdir().unwrap();
        let mut rng = rand::rng();
        let k1 =
            russh::keys::PrivateKey::random(&mut rng, russh::keys::Algorithm::Ed25519).unwrap();
        let k2 =
            russh::keys::PrivateKey::random(&mut rng, russh::keys::Algorithm::Ed25519).unwrap();
        let path = d.path().join("keys");
        let line = k1.public_key().to_openssh().unwrap();
        std::fs::write(&path, format!("# comment\n\nnot a key\n{line} me@host\n")).unwrap();
        assert!(authorized_keys_contain(&path, k1.public_key()));
        assert!(!authorized_keys_contain(&path, k2.public_key()));
        assert!(!authorized_keys_contain(
            &d.path().join("missing"),
            k1.public_key()
        ));
    }
}
