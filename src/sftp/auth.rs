//! SFTP logins: checking a lender's password or key, the defender that bans addresses after
//! repeated failures, the per-lender session cap, and the bounds on connections that have not
//! logged in yet.
//!
//! Owns: which credentials open which lender's home, failure counting per source address,
//! ban decisions, counting live sessions per lender, the password gate (a fixed number of
//! argon2 verifications at a time, one queued per address, unknown users verified against a
//! dummy hash at the same cost), and counting unauthenticated connections (per address and in
//! all, with MaxStartups-style early drop).
//! Must not: log or return a password, tell a client whether a user name exists (by answer or
//! by timing), or touch a lender's files.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use russh::keys::ssh_key::{AuthorizedKeys, PublicKey};
use tokio::sync::Semaphore;

use crate::config::{Config, MaxStartups};

/// argon2 verifications running at once, whatever the number of connections: each holds
/// about 19 MiB (the default `m=19456`), so memory stays bounded by this.
pub const MAX_PASSWORD_CHECKS: usize = 2;
/// Longest extra wait before verifying a password from an address with recent failures.
const MAX_FAILURE_DELAY: Duration = Duration::from_secs(2);

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
    params: Mutex<DefenderParams>,
    records: Mutex<HashMap<IpAddr, Record>>,
    /// The latest refused logins (SFTP and web console), newest last, for the operator page.
    refused: Mutex<VecDeque<Refusal>>,
}

/// Refused logins remembered for the operator page, at most.
const MAX_REMEMBERED_REFUSALS: usize = 200;

/// One refused login, as the operator page shows it (never the password).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub at: std::time::SystemTime,
    pub address: IpAddr,
    /// The user name the client sent (its text, shown escaped).
    pub user: String,
    /// `password`, `publickey` or `web`.
    pub method: &'static str,
}

/// The defender's settings (changed on reload).
#[derive(Clone, Copy)]
struct DefenderParams {
    max_failures: u32,
    window: Duration,
    ban: Duration,
}

impl Defender {
    pub fn new(max_failures: u32, window: Duration, ban: Duration) -> Self {
        Defender {
            params: Mutex::new(DefenderParams {
                max_failures: max_failures.max(1),
                window,
                ban,
            }),
            records: Mutex::new(HashMap::new()),
            refused: Mutex::new(VecDeque::new()),
        }
    }

    /// Remembers a refused login for the operator page (bounded; the oldest is dropped).
    pub fn note_refused(&self, address: IpAddr, user: &str, method: &'static str) {
        let mut r = lock(&self.refused);
        if r.len() >= MAX_REMEMBERED_REFUSALS {
            r.pop_front();
        }
        // A client's user name is its own text: keep a bounded prefix.
        let user: String = user.chars().take(100).collect();
        r.push_back(Refusal {
            at: std::time::SystemTime::now(),
            address,
            user,
            method,
        });
    }

    /// The remembered refused logins, newest first (read-only copy).
    pub fn refusals(&self) -> Vec<Refusal> {
        lock(&self.refused).iter().rev().cloned().collect()
    }

    /// Addresses banned now, with the time left on each ban.
    pub fn bans(&self) -> Vec<(IpAddr, Duration)> {
        let now = Instant::now();
        let mut v: Vec<_> = lock(&self.records)
            .iter()
            .filter_map(|(ip, r)| {
                r.banned_until
                    .filter(|u| *u > now)
                    .map(|u| (*ip, u.duration_since(now)))
            })
            .collect();
        v.sort_by_key(|b| std::cmp::Reverse(b.1));
        v
    }

    /// Takes new settings (reload); failures already counted stay.
    pub fn set_params(&self, max_failures: u32, window: Duration, ban: Duration) {
        *lock(&self.params) = DefenderParams {
            max_failures: max_failures.max(1),
            window,
            ban,
        };
    }

    fn params(&self) -> DefenderParams {
        *lock(&self.params)
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

    /// Failed logins of `ip` within the window.
    pub fn recent_failures(&self, ip: IpAddr) -> usize {
        let now = Instant::now();
        let window = self.params().window;
        lock(&self.records).get(&ip).map_or(0, |r| {
            r.failures
                .iter()
                .filter(|t| now.duration_since(**t) < window)
                .count()
        })
    }

    /// Takes back the newest failure of `ip` (a password attempt is counted as a failure
    /// before it is verified, and forgiven when it turns out right).
    pub fn forgive(&self, ip: IpAddr) {
        if let Some(r) = lock(&self.records).get_mut(&ip) {
            r.failures.pop_back();
        }
    }

    /// Records one failed login from `ip`; true when this failure bans it.
    pub fn record_failure(&self, ip: IpAddr) -> bool {
        self.count_attempt(ip);
        self.ban_if_over(ip)
    }

    /// Counts an attempt of `ip` as a failure without banning yet: followed by `forgive`
    /// (it succeeded) or `ban_if_over` (it failed).
    pub fn count_attempt(&self, ip: IpAddr) {
        let now = Instant::now();
        let window = self.params().window;
        let mut records = lock(&self.records);
        if records.len() >= MAX_TRACKED_ADDRESSES && !records.contains_key(&ip) {
            records.retain(|_, r| {
                r.banned_until.is_some_and(|u| u > now)
                    || r.failures.back().is_some_and(|t| now - *t < window)
            });
        }
        let r = records.entry(ip).or_default();
        while r
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            r.failures.pop_front();
        }
        r.failures.push_back(now);
    }

    /// Bans `ip` when its failures in the window reached the limit; true when it did.
    pub fn ban_if_over(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let p = self.params();
        let mut records = lock(&self.records);
        let Some(r) = records.get_mut(&ip) else {
            return false;
        };
        if r.failures.len() >= p.max_failures as usize {
            r.failures.clear();
            r.banned_until = Some(now + p.ban);
            crate::metrics::get().bans_total.inc();
            true
        } else {
            false
        }
    }
}

/// Live sessions per lender, capped.
#[derive(Clone)]
pub struct SessionCounter {
    max: Arc<std::sync::atomic::AtomicUsize>,
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
            max: Arc::new(std::sync::atomic::AtomicUsize::new(max)),
            live: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A slot for `lender`, or `None` when the lender already holds the most sessions.
    pub fn try_acquire(&self, lender: &str) -> Option<SessionSlot> {
        let mut live = lock(&self.live);
        let n = live.entry(lender.to_string()).or_insert(0);
        if *n >= self.max.load(Ordering::SeqCst) {
            return None;
        }
        *n += 1;
        Some(SessionSlot {
            lender: lender.to_string(),
            live: self.live.clone(),
        })
    }

    /// A new cap (reload): sessions over it stay; new logins wait for the count to drop.
    pub fn set_max(&self, max: usize) {
        self.max.store(max.max(1), Ordering::SeqCst);
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
/// a wrong password all give the same `false`, after the same work: the first two are verified
/// against `dummy_hash`. Slow (argon2): call it off the async threads.
pub fn password_matches(cfg: &Config, user: &str, password: &str, dummy_hash: &str) -> bool {
    match cfg.lender(user).and_then(|l| l.password_hash.as_ref()) {
        Some(hash) => crate::auth::verify_password(password, hash.expose()),
        None => {
            let _ = crate::auth::verify_password(password, dummy_hash);
            false
        }
    }
}

/// What the password gate decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Good,
    Bad,
    /// The address is banned (possibly by this very attempt): answered without verifying.
    Banned,
}

/// Bounds the cost of password logins: one attempt per source address at a time (others from
/// the same address wait their turn without holding anything), each attempt counted as a
/// failure before it is verified (so a burst of concurrent attempts bans the address after
/// `max_login_failures` without verifying the rest), a delay growing with the address's recent
/// failures, and at most `MAX_PASSWORD_CHECKS` argon2 verifications at once on blocking
/// threads. The global queue is FIFO, and holds at most one attempt per address, so a
/// legitimate login waits behind at most one attempt of each flooding address.
pub struct PasswordGate {
    checks: Arc<Semaphore>,
    per_address: Mutex<HashMap<IpAddr, Arc<tokio::sync::Mutex<()>>>>,
    dummy_hash: Arc<str>,
}

impl PasswordGate {
    pub fn new() -> Self {
        // A hash of a random password with the default parameters (those of `bulkload passwd`),
        // so that an unknown user costs what a known one does.
        let random = uuid::Uuid::new_v4().simple().to_string();
        let dummy_hash = crate::auth::hash_password(&random).unwrap_or_else(|_| {
            // Cannot happen with a non-empty password; a malformed hash would only make
            // unknown users cheaper, never let anyone in.
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$ZHVtbXlkdW1teWR1bW15ZHVtbXlkdW1teWR1bW15ZA".into()
        });
        PasswordGate {
            checks: Arc::new(Semaphore::new(MAX_PASSWORD_CHECKS)),
            per_address: Mutex::new(HashMap::new()),
            dummy_hash: dummy_hash.into(),
        }
    }

    /// Checks `password` for `user` coming from `ip`.
    pub async fn check(
        &self,
        cfg: &Arc<Config>,
        defender: &Defender,
        ip: IpAddr,
        user: &str,
        password: &str,
    ) -> Verdict {
        let (cfg, u, p, dummy) = (
            cfg.clone(),
            user.to_string(),
            password.to_string(),
            self.dummy_hash.clone(),
        );
        self.check_with(defender, ip, move || password_matches(&cfg, &u, &p, &dummy))
            .await
    }

    /// Checks `password` against `hash` (`None`: an unknown user, verified against the dummy
    /// hash at the same cost) for a login from `ip`: the web console's sign-in goes through the
    /// same queue, delays, argon2 slots and defender as SFTP logins.
    pub async fn check_hash(
        &self,
        defender: &Defender,
        ip: IpAddr,
        hash: Option<String>,
        password: &str,
    ) -> Verdict {
        let (p, dummy) = (password.to_string(), self.dummy_hash.clone());
        self.check_with(defender, ip, move || match hash {
            Some(h) => crate::auth::verify_password(&p, &h),
            None => {
                let _ = crate::auth::verify_password(&p, &dummy);
                false
            }
        })
        .await
    }

    async fn check_with(
        &self,
        defender: &Defender,
        ip: IpAddr,
        verify: impl FnOnce() -> bool + Send + 'static,
    ) -> Verdict {
        let turn = {
            let mut map = lock(&self.per_address);
            map.entry(ip).or_default().clone()
        };
        let verdict = {
            let _turn = turn.lock().await;
            self.check_in_turn(defender, ip, verify).await
        };
        // Forget the address's queue once nobody else waits in it.
        let mut map = lock(&self.per_address);
        drop(turn);
        if map.get(&ip).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&ip);
        }
        verdict
    }

    async fn check_in_turn(
        &self,
        defender: &Defender,
        ip: IpAddr,
        verify: impl FnOnce() -> bool + Send + 'static,
    ) -> Verdict {
        if defender.is_banned(ip) {
            return Verdict::Banned;
        }
        let earlier = defender.recent_failures(ip);
        defender.count_attempt(ip);
        if earlier >= 2 {
            let delay = Duration::from_millis(250 * (earlier as u64 - 1)).min(MAX_FAILURE_DELAY);
            tokio::time::sleep(delay).await;
        }
        let Ok(_permit) = self.checks.clone().acquire_owned().await else {
            return Verdict::Bad;
        };
        // argon2 is deliberately slow: keep it off the async threads.
        let good = tokio::task::spawn_blocking(verify).await.unwrap_or(false);
        if good {
            defender.forgive(ip);
            Verdict::Good
        } else if defender.ban_if_over(ip) {
            Verdict::Banned
        } else {
            Verdict::Bad
        }
    }
}

impl Default for PasswordGate {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a new connection was turned away before its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupRefusal {
    /// The address already holds this many connections that have not logged in.
    PerAddress(usize),
    /// Early random drop: this many connections are not logged in, so this one was dropped
    /// with that chance in percent.
    Startups { pending: usize, percent: u32 },
}

/// Connections of one address that may wait for a free unauthenticated slot, per slot.
pub const WAITING_PER_SLOT: usize = 25;
/// Connections that may wait for a free slot, all addresses together.
pub const MAX_WAITING: usize = 4096;

#[derive(Default)]
struct PendingCounts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
    waiting_total: usize,
    waiting: HashMap<IpAddr, usize>,
}

/// Counts connections that have not logged in yet, per address and in all. A connection over
/// its address's cap may wait for a slot (at most `WAITING_PER_SLOT` per slot of that address
/// and `MAX_WAITING` in all, without being read from), so that a lender starting many
/// uploads at once is served in turn instead of refused.
pub struct Pending {
    per_address_max: std::sync::atomic::AtomicUsize,
    startups: Mutex<MaxStartups>,
    counts: Mutex<PendingCounts>,
    freed: tokio::sync::Notify,
}

/// One connection waiting for a slot; uncounted on drop.
pub struct WaitSlot {
    pending: Arc<Pending>,
    ip: IpAddr,
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        let mut c = lock(&self.pending.counts);
        c.waiting_total = c.waiting_total.saturating_sub(1);
        if let Some(n) = c.waiting.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.waiting.remove(&self.ip);
            }
        }
    }
}

/// One connection counted as not logged in; uncounted by `release` (at login) or on drop.
pub struct PendingSlot {
    pending: Arc<Pending>,
    ip: IpAddr,
    released: AtomicBool,
}

impl Pending {
    pub fn new(per_address_max: usize, startups: MaxStartups) -> Arc<Self> {
        Arc::new(Pending {
            per_address_max: std::sync::atomic::AtomicUsize::new(per_address_max.max(1)),
            startups: Mutex::new(startups),
            counts: Mutex::new(PendingCounts::default()),
            freed: tokio::sync::Notify::new(),
        })
    }

    /// A place in the waiting line of `ip`, or `None` when that line (or all lines) is full.
    pub fn try_wait(self: &Arc<Self>, ip: IpAddr) -> Option<WaitSlot> {
        let mut c = lock(&self.counts);
        let mine = c.waiting.get(&ip).copied().unwrap_or(0);
        if mine >= self.per_address_max.load(Ordering::SeqCst) * WAITING_PER_SLOT
            || c.waiting_total >= MAX_WAITING
        {
            return None;
        }
        c.waiting_total += 1;
        *c.waiting.entry(ip).or_insert(0) += 1;
        Some(WaitSlot {
            pending: self.clone(),
            ip,
        })
    }

    /// `admit`, waiting until `deadline` for a slot of `ip` to free up.
    pub async fn admit_waiting(
        self: &Arc<Self>,
        ip: IpAddr,
        roll: u32,
        deadline: tokio::time::Instant,
    ) -> Result<Arc<PendingSlot>, StartupRefusal> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.admit(ip, roll) {
                Err(StartupRefusal::PerAddress(n)) => {
                    if tokio::time::timeout_at(deadline, freed).await.is_err() {
                        return Err(StartupRefusal::PerAddress(n));
                    }
                }
                other => return other,
            }
        }
    }

    /// Admits a new connection from `ip`, or says why not. `roll` is a number in 0..100
    /// (random in the daemon) compared with the drop chance.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        roll: u32,
    ) -> Result<Arc<PendingSlot>, StartupRefusal> {
        let mut c = lock(&self.counts);
        let mine = c.per_address.get(&ip).copied().unwrap_or(0);
        if mine >= self.per_address_max.load(Ordering::SeqCst) {
            return Err(StartupRefusal::PerAddress(mine));
        }
        // Early drop falls on addresses that already have connections waiting to log in; a
        // new address is only refused once `full` is reached, so a flood from some addresses
        // does not lock out the others.
        let startups = lock(&self.startups);
        let percent = if mine == 0 {
            if c.total >= startups.full {
                100
            } else {
                0
            }
        } else {
            startups.drop_percent(c.total)
        };
        if percent > 0 && roll < percent {
            return Err(StartupRefusal::Startups {
                pending: c.total,
                percent,
            });
        }
        c.total += 1;
        *c.per_address.entry(ip).or_insert(0) += 1;
        Ok(Arc::new(PendingSlot {
            pending: self.clone(),
            ip,
            released: AtomicBool::new(false),
        }))
    }

    /// New caps (reload).
    pub fn set_limits(&self, per_address_max: usize, startups: MaxStartups) {
        self.per_address_max
            .store(per_address_max.max(1), Ordering::SeqCst);
        *lock(&self.startups) = startups;
    }

    /// Connections not logged in now (all addresses).
    pub fn total(&self) -> usize {
        lock(&self.counts).total
    }
}

impl PendingSlot {
    /// Uncounts the connection (idempotent).
    pub fn release(&self) {
        if self.released.swap(true, Ordering::SeqCst) {
            return;
        }
        {
            let mut c = lock(&self.pending.counts);
            c.total = c.total.saturating_sub(1);
            if let Some(n) = c.per_address.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.per_address.remove(&self.ip);
                }
            }
        }
        self.pending.freed.notify_waiters();
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.release();
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
    fn pending_per_address_and_startups() {
        let p = Pending::new(
            2,
            MaxStartups {
                start: 3,
                rate: 50,
                full: 4,
            },
        );
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = p.admit(a, 99).unwrap();
        let _s2 = p.admit(a, 99).unwrap();
        assert_eq!(p.admit(a, 99).err(), Some(StartupRefusal::PerAddress(2)));
        let _s3 = p.admit(b, 99).unwrap();
        // 3 pending: 50% drop for an address that has some pending; a roll of 10 drops, 60
        // passes. A new address passes whatever the roll until `full`.
        assert!(matches!(
            p.admit(b, 10),
            Err(StartupRefusal::Startups {
                pending: 3,
                percent: 50
            })
        ));
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        let s4 = p.admit(c, 0).unwrap();
        assert!(p.admit("192.0.2.4".parse().unwrap(), 99).is_err(), "full");
        s1.release();
        s1.release();
        assert_eq!(p.total(), 3);
        drop(s4);
        assert_eq!(p.total(), 2);
        assert!(p.admit(a, 99).is_ok());
    }

    #[tokio::test]
    async fn over_the_cap_a_connection_waits_for_a_slot() {
        let p = Pending::new(
            1,
            MaxStartups {
                start: 100,
                rate: 30,
                full: 300,
            },
        );
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let s1 = p.admit(a, 99).unwrap();
        let waits: Vec<_> = (0..WAITING_PER_SLOT)
            .map(|_| p.try_wait(a).unwrap())
            .collect();
        assert!(p.try_wait(a).is_none(), "the line is full");
        let soon = tokio::time::Instant::now() + Duration::from_millis(50);
        assert!(
            p.admit_waiting(a, 99, soon).await.is_err(),
            "no slot in time"
        );
        let p2 = p.clone();
        let waiter = tokio::spawn(async move {
            let later = tokio::time::Instant::now() + Duration::from_secs(5);
            p2.admit_waiting(a, 99, later).await.is_ok()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(s1);
        assert!(waiter.await.unwrap(), "admitted once the slot was freed");
        drop(waits);
        assert!(p.try_wait(a).is_some());
    }

    #[tokio::test]
    async fn password_gate_counts_before_verifying() {
        let cfg = Arc::new(Config::embedded().unwrap());
        let d = Defender::new(3, Duration::from_secs(60), Duration::from_secs(60));
        let g = PasswordGate::new();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(g.check(&cfg, &d, ip, "demo", "demo").await, Verdict::Good);
        assert_eq!(d.recent_failures(ip), 0);
        assert_eq!(g.check(&cfg, &d, ip, "demo", "x").await, Verdict::Bad);
        assert_eq!(g.check(&cfg, &d, ip, "nobody", "x").await, Verdict::Bad);
        assert_eq!(g.check(&cfg, &d, ip, "demo", "x").await, Verdict::Banned);
        assert_eq!(g.check(&cfg, &d, ip, "demo", "demo").await, Verdict::Banned);
        assert!(d.is_banned(ip));
        assert!(lock(&g.per_address).is_empty());
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
