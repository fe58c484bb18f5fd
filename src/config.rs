//! Configuration: what the operator wrote (`RawConfig`, serde, unknown keys refused) and the
//! resolved, validated form the rest of the program uses (`Config`).
//!
//! Owns: parsing the TOML file, defaults, path resolution, checks that make a config usable
//! (safe lender and environment names, at least one division per lender, unique ids), and the
//! platform lookup tables. Must not: touch the data directory or the store, or ever print a secret
//! (`Secret` redacts itself in `Debug`).

use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// The example configuration, embedded so that `bulkload serve` runs with no file at all.
pub const EXAMPLE_CONFIG: &str = include_str!("../config.example.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("config {origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// A value that must never reach a log line or an error message.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

// ---------------------------------------------------------------------------------------------
// What the operator writes.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default = "default_environments")]
    environments: Vec<String>,
    #[serde(default)]
    schedule: RawSchedule,
    #[serde(default)]
    sftp: RawSftp,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    lenders: Vec<RawLender>,
    #[serde(default)]
    lookups: RawLookups,
    // Operations (issue 13): notifications, metrics, logs, retention.
    #[serde(default)]
    smtp: Option<RawSmtp>,
    #[serde(default)]
    notify: RawNotify,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    retention: RawRetention,
    /// The Bulk Web API (issue 11); absent: no HTTP listener.
    #[serde(default)]
    api: Option<RawApi>,
    // Web console (issue 15): operators' sign-ins and the console's settings.
    #[serde(default)]
    operators: Vec<RawUser>,
    #[serde(default)]
    console: RawConsole,
}

/// A web-console sign-in (`[[lenders.users]]`, `[[operators]]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    email: String,
    password_hash: Secret,
    /// Base32 (RFC 4648) TOTP secret: when set, sign-in also asks for a 6-digit code.
    #[serde(default)]
    totp_secret: Option<Secret>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    #[serde(default)]
    idle_timeout_minutes: Option<u64>,
    /// Host name lenders connect to (shown on the connection page); default: the listen host.
    #[serde(default)]
    public_host: Option<String>,
    /// The API's base URL as lenders reach it (shown on the connection page).
    #[serde(default)]
    api_base_url: Option<String>,
    /// Set when a TLS proxy terminates HTTPS in front of the listener: cookies get `Secure`.
    #[serde(default)]
    secure_cookies: bool,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_environments() -> Vec<String> {
    vec!["sandbox".into(), "production".into()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    #[serde(default = "default_cron")]
    cron: String,
    #[serde(default = "default_settle")]
    settle_seconds: u64,
    #[serde(default)]
    on_upload: bool,
    #[serde(default = "default_debounce")]
    on_upload_delay_seconds: f64,
    /// Absent: the default, or `on_upload_delay_seconds` when that is longer (a config written
    /// before this key existed keeps working).
    #[serde(default)]
    on_upload_max_delay_seconds: Option<f64>,
}
impl Default for RawSchedule {
    fn default() -> Self {
        RawSchedule {
            cron: default_cron(),
            settle_seconds: default_settle(),
            on_upload: false,
            on_upload_delay_seconds: default_debounce(),
            on_upload_max_delay_seconds: None,
        }
    }
}
fn default_cron() -> String {
    "0 0 * * * *".into()
}
fn default_settle() -> u64 {
    30
}
/// Quiet time after a lender's last upload before its pass (a burst becomes one pass).
fn default_debounce() -> f64 {
    0.5
}
/// Longest a lender's upload waits for its pass while the lender keeps uploading.
fn default_max_debounce() -> f64 {
    2.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSftp {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default)]
    host_key: Option<PathBuf>,
    #[serde(default = "default_max_file_bytes")]
    max_file_bytes: u64,
    #[serde(default = "default_max_sessions")]
    max_sessions_per_lender: usize,
    #[serde(default = "default_idle")]
    idle_timeout_seconds: u64,
    #[serde(default = "default_max_failures")]
    max_login_failures: u32,
    #[serde(default = "default_ban_window")]
    login_failure_window_seconds: u64,
    #[serde(default = "default_ban")]
    ban_seconds: u64,
    #[serde(default = "default_login_grace")]
    login_grace_seconds: u64,
    #[serde(default = "default_max_unauth_per_address")]
    max_unauthenticated_per_address: usize,
    #[serde(default = "default_max_startups")]
    max_startups: String,
}
impl Default for RawSftp {
    fn default() -> Self {
        RawSftp {
            listen: default_listen(),
            host_key: None,
            max_file_bytes: default_max_file_bytes(),
            max_sessions_per_lender: default_max_sessions(),
            idle_timeout_seconds: default_idle(),
            max_login_failures: default_max_failures(),
            login_failure_window_seconds: default_ban_window(),
            ban_seconds: default_ban(),
            login_grace_seconds: default_login_grace(),
            max_unauthenticated_per_address: default_max_unauth_per_address(),
            max_startups: default_max_startups(),
        }
    }
}
fn default_listen() -> String {
    "127.0.0.1:2222".into()
}
fn default_max_file_bytes() -> u64 {
    4 << 30
}
fn default_max_sessions() -> usize {
    8
}
fn default_idle() -> u64 {
    600
}
fn default_max_failures() -> u32 {
    10
}
fn default_ban_window() -> u64 {
    300
}
fn default_ban() -> u64 {
    900
}
fn default_login_grace() -> u64 {
    60
}
fn default_max_unauth_per_address() -> usize {
    10
}
fn default_max_startups() -> String {
    "100:30:300".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default = "default_max_file_bytes")]
    max_file_bytes: u64,
    #[serde(default = "default_max_record_bytes")]
    max_record_bytes: u64,
    #[serde(default = "default_max_records")]
    max_records: u64,
}
impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_file_bytes: default_max_file_bytes(),
            max_record_bytes: default_max_record_bytes(),
            max_records: default_max_records(),
        }
    }
}
fn default_max_record_bytes() -> u64 {
    1 << 20
}
fn default_max_records() -> u64 {
    50_000_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default = "default_sync")]
    synchronous: String,
    #[serde(default = "default_cache_mib")]
    cache_mib: u64,
}
impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            synchronous: default_sync(),
            cache_mib: default_cache_mib(),
        }
    }
}
fn default_sync() -> String {
    "full".into()
}
fn default_cache_mib() -> u64 {
    64
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLender {
    id: String,
    #[serde(default)]
    password_hash: Option<Secret>,
    #[serde(default)]
    authorized_keys: Option<PathBuf>,
    #[serde(default)]
    divisions: Vec<RawDivision>,
    /// Refuse a partner whose LicenseId another partner of the lender has.
    #[serde(default)]
    partner_dedupe: bool,
    // Notifications (issue 13).
    #[serde(default)]
    webhooks: Vec<RawWebhook>,
    #[serde(default)]
    notify_email: Vec<String>,
    // Web console sign-ins of this lender's staff (issue 15).
    #[serde(default)]
    users: Vec<RawUser>,
    // Bulk Web API (issue 11): OAuth2 clients and quotas.
    #[serde(default)]
    api_clients: Vec<RawApiClient>,
    #[serde(default)]
    daily_record_limit: Option<u64>,
    #[serde(default)]
    monthly_record_limit: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiClient {
    client_id: String,
    secret_hash: Secret,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    tls_cert: Option<PathBuf>,
    #[serde(default)]
    tls_key: Option<PathBuf>,
    #[serde(default = "default_token_ttl")]
    token_ttl_seconds: u64,
    #[serde(default = "default_requests_per_minute")]
    requests_per_minute: u32,
    #[serde(default = "default_max_concurrent_loads")]
    max_concurrent_loads: u32,
    #[serde(default)]
    max_body_bytes: Option<u64>,
}

fn default_token_ttl() -> u64 {
    3600
}
fn default_requests_per_minute() -> u32 {
    600
}
fn default_max_concurrent_loads() -> u32 {
    4
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDivision {
    thread_id: String,
    system_name: String,
    editable_name: String,
    #[serde(default)]
    positions: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLookups {
    loan_purposes: Option<Vec<LookupEntry>>,
    loan_occupancies: Option<Vec<LookupEntry>>,
    loan_statuses: Option<Vec<LookupEntry>>,
    loan_types: Option<Vec<LookupEntry>>,
    agencies: Option<Vec<LookupEntry>>,
    structure_types: Option<Vec<LookupEntry>>,
}

// Operations (issue 13): what the operator writes.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    #[serde(default)]
    secret: Option<Secret>,
    #[serde(default)]
    secret_file: Option<PathBuf>,
    #[serde(default = "default_events")]
    events: Vec<String>,
}
fn default_events() -> Vec<String> {
    vec![EVENT_LOAD_FINISHED.into()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default = "default_smtp_tls")]
    tls: String,
    from: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default = "default_attach_max")]
    attach_max_bytes: u64,
}
fn default_smtp_tls() -> String {
    "starttls".into()
}
fn default_attach_max() -> u64 {
    1 << 20
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    #[serde(default = "default_retry_base")]
    retry_base_seconds: f64,
    #[serde(default = "default_give_up")]
    give_up_hours: f64,
    #[serde(default = "default_http_timeout")]
    timeout_seconds: f64,
}
impl Default for RawNotify {
    fn default() -> Self {
        RawNotify {
            retry_base_seconds: default_retry_base(),
            give_up_hours: default_give_up(),
            timeout_seconds: default_http_timeout(),
        }
    }
}
fn default_retry_base() -> f64 {
    10.0
}
fn default_give_up() -> f64 {
    24.0
}
fn default_http_timeout() -> f64 {
    10.0
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    #[serde(default)]
    listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default = "default_log_format")]
    format: String,
}
impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: default_log_format(),
        }
    }
}
fn default_log_format() -> String {
    "text".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    #[serde(default = "default_processed_days")]
    processed_days: u64,
    #[serde(default = "default_results_days")]
    results_days: u64,
    #[serde(default = "default_problems_days")]
    problems_days: u64,
}
impl Default for RawRetention {
    fn default() -> Self {
        RawRetention {
            processed_days: default_processed_days(),
            results_days: default_results_days(),
            problems_days: default_problems_days(),
        }
    }
}
fn default_processed_days() -> u64 {
    90
}
fn default_results_days() -> u64 {
    90
}
fn default_problems_days() -> u64 {
    90
}

// ---------------------------------------------------------------------------------------------
// The resolved form.

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LookupEntry {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    Normal,
    Full,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub environments: Vec<String>,
    pub schedule: Schedule,
    pub sftp: Sftp,
    pub limits: Limits,
    pub store: StoreConfig,
    pub lenders: Vec<Lender>,
    pub lookups: Lookups,
    /// The file this was read from (`None`: the embedded example); what SIGHUP rereads.
    pub source: Option<PathBuf>,
    // Operations (issue 13).
    pub smtp: Option<Smtp>,
    pub notify: Notify,
    pub metrics: Metrics,
    pub log: Log,
    pub retention: Retention,
    // Web console (issue 15).
    pub operators: Vec<ConsoleUser>,
    pub console: Console,
    /// The Bulk Web API (issue 11); `None`: no HTTP listener.
    pub api: Option<Api>,
}

/// `[api]`: the Bulk Web API's listener and limits (issue 11).
#[derive(Debug, Clone)]
pub struct Api {
    pub listen: String,
    /// Both or neither: HTTPS with rustls.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub token_ttl_seconds: u64,
    /// Per lender, over every authenticated request.
    pub requests_per_minute: u32,
    /// Per lender, loads queued or running.
    pub max_concurrent_loads: u32,
    /// The largest submitted body; defaults to `[limits] max_file_bytes`.
    pub max_body_bytes: u64,
}

/// One OAuth2 client of a lender (`[[lenders.api_clients]]`).
#[derive(Debug, Clone)]
pub struct ApiClient {
    pub client_id: String,
    pub secret_hash: Secret,
}

/// A web-console sign-in: a lender's staff member (`[[lenders.users]]`) or an operator.
#[derive(Debug, Clone)]
pub struct ConsoleUser {
    /// As written; sign-in compares it case-insensitively.
    pub email: String,
    pub password_hash: Secret,
    /// The TOTP key (decoded from base32), when the user has a second factor.
    pub totp_secret: Option<SecretBytes>,
}

/// `[console]`: the web console's settings.
#[derive(Debug, Clone)]
pub struct Console {
    /// A session unused this long is signed out.
    pub idle_timeout: std::time::Duration,
    pub public_host: Option<String>,
    pub api_base_url: Option<String>,
    pub secure_cookies: bool,
}

/// Default `[console] idle_timeout_minutes`.
pub const DEFAULT_CONSOLE_IDLE_MINUTES: u64 = 30;

fn resolve_users(
    owner: &str,
    raw: Vec<RawUser>,
    emails: &mut BTreeSet<String>,
) -> Result<Vec<ConsoleUser>, String> {
    raw.into_iter()
        .enumerate()
        .map(|(i, u)| {
            if u.email.trim().is_empty() || u.email.len() > 254 || !u.email.contains('@') {
                return Err(format!("{owner}: users[{i}].email {:?} is not an e-mail address", u.email));
            }
            if !emails.insert(u.email.to_lowercase()) {
                return Err(format!(
                    "{owner}: users[{i}].email {:?} is listed twice (an address signs in to one account)",
                    u.email
                ));
            }
            if !u.password_hash.expose().starts_with("$argon2") {
                return Err(format!(
                    "{owner}: users[{i}] ({}): password_hash is not an argon2 PHC string (make one with `bulkload passwd`)",
                    u.email
                ));
            }
            let totp_secret = match &u.totp_secret {
                None => None,
                Some(t) => {
                    let bytes = totp_rs::Secret::Encoded(t.expose().trim().to_uppercase())
                        .to_bytes()
                        .map_err(|_| {
                            format!("{owner}: users[{i}] ({}): totp_secret is not base32", u.email)
                        })?;
                    if bytes.len() < 16 {
                        return Err(format!(
                            "{owner}: users[{i}] ({}): totp_secret must hold at least 128 bits (26 base32 characters)",
                            u.email
                        ));
                    }
                    Some(SecretBytes(bytes))
                }
            };
            Ok(ConsoleUser {
                email: u.email,
                password_hash: u.password_hash,
                totp_secret,
            })
        })
        .collect()
}

/// The event a finished load sends.
pub const EVENT_LOAD_FINISHED: &str = "load.finished";

/// One webhook of a lender.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    /// The signing key: the base64 text after `whsec_`, decoded.
    pub secret: SecretBytes,
    pub events: Vec<String>,
}

/// Key bytes that never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(pub Vec<u8>);
impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    None,
    Starttls,
    Tls,
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub from: String,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// A result file up to this size is attached to the mail.
    pub attach_max_bytes: u64,
}

/// Delivery of notifications: retries double from `retry_base` until `give_up` after the load.
#[derive(Debug, Clone, Copy)]
pub struct Notify {
    pub retry_base: std::time::Duration,
    pub give_up: std::time::Duration,
    pub timeout: std::time::Duration,
}

#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy)]
pub struct Log {
    pub format: LogFormat,
}

/// Days kept (0: forever).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub processed_days: u64,
    pub results_days: u64,
    pub problems_days: u64,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    pub cron: String,
    pub settle_seconds: u64,
    pub on_upload: bool,
    /// Quiet time after a lender's last upload before its pass (fractions allowed).
    pub on_upload_delay_seconds: f64,
    /// Longest an upload waits for its pass while its lender keeps uploading.
    pub on_upload_max_delay_seconds: f64,
}

#[derive(Debug, Clone)]
pub struct Sftp {
    pub listen: String,
    /// Path of the OpenSSH private host key; generated on first start when missing.
    pub host_key: PathBuf,
    pub max_file_bytes: u64,
    pub max_sessions_per_lender: usize,
    pub idle_timeout_seconds: u64,
    pub max_login_failures: u32,
    pub login_failure_window_seconds: u64,
    pub ban_seconds: u64,
    /// Time a connection has for the whole authentication (handshake included).
    pub login_grace_seconds: u64,
    /// Connections not yet logged in that one source address may hold.
    pub max_unauthenticated_per_address: usize,
    /// Early random drop of new connections while many are not logged in yet.
    pub max_startups: MaxStartups,
}

/// OpenSSH's `MaxStartups start:rate:full`: with `start` or more connections not yet logged
/// in, a new one is dropped with probability `rate`%, rising linearly to 100% at `full`
/// (the daemon applies it to addresses that already have a connection pending; see
/// `sftp::auth::Pending`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxStartups {
    pub start: usize,
    pub rate: u32,
    pub full: usize,
}

impl MaxStartups {
    /// Parses `start:rate:full` (or a single number `n`, meaning `n:100:n`).
    pub fn parse(s: &str) -> Option<MaxStartups> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        let m = match parts.as_slice() {
            [n] => {
                let n = n.trim().parse().ok()?;
                MaxStartups {
                    start: n,
                    rate: 100,
                    full: n,
                }
            }
            [a, b, c] => MaxStartups {
                start: a.trim().parse().ok()?,
                rate: b.trim().parse().ok()?,
                full: c.trim().parse().ok()?,
            },
            _ => return None,
        };
        (m.start >= 1 && m.rate <= 100 && m.full >= m.start).then_some(m)
    }

    /// The chance, in percent, that a new connection is dropped while `pending` connections are
    /// not logged in yet.
    pub fn drop_percent(&self, pending: usize) -> u32 {
        if pending < self.start {
            0
        } else if pending >= self.full {
            100
        } else {
            let span = (self.full - self.start) as u64;
            let over = (pending - self.start) as u64;
            let r = u64::from(self.rate);
            (r + (100 - r) * over / span) as u32
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_record_bytes: u64,
    pub max_records: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let r = RawLimits::default();
        Limits {
            max_file_bytes: r.max_file_bytes,
            max_record_bytes: r.max_record_bytes,
            max_records: r.max_records,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct StoreConfig {
    pub synchronous: Synchronous,
    pub cache_mib: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            synchronous: Synchronous::Full,
            cache_mib: default_cache_mib(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Lender {
    pub id: String,
    pub password_hash: Option<Secret>,
    pub authorized_keys: Option<PathBuf>,
    pub divisions: Vec<Division>,
    /// Refuse a partner whose LicenseId another partner of the lender has (partners).
    pub partner_dedupe: bool,
    /// Notifications of finished loads (issue 13).
    pub webhooks: Vec<Webhook>,
    pub notify_email: Vec<String>,
    /// Web console sign-ins of the lender's staff (issue 15).
    pub users: Vec<ConsoleUser>,
    /// Bulk Web API clients (issue 11).
    pub api_clients: Vec<ApiClient>,
    /// Quotas (issue 11): records submitted per UTC day / month, over every intake.
    pub daily_record_limit: Option<u64>,
    pub monthly_record_limit: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Division {
    /// Lower-case, 32 hexadecimal characters.
    pub thread_id: String,
    pub system_name: String,
    pub editable_name: String,
    pub positions: Vec<String>,
}

impl Lender {
    /// The lender's division when it has exactly one: the default of every division field.
    pub fn only_division(&self) -> Option<&Division> {
        match self.divisions.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }

    /// The division whose thread id equals `id` (ignoring case).
    pub fn division(&self, id: &str) -> Option<&Division> {
        self.divisions
            .iter()
            .find(|d| d.thread_id.eq_ignore_ascii_case(id))
    }
}

/// Platform-wide reference tables, named as their lookup files are.
#[derive(Debug, Clone)]
pub struct Lookups {
    pub loan_purposes: Vec<LookupEntry>,
    pub loan_occupancies: Vec<LookupEntry>,
    pub loan_statuses: Vec<LookupEntry>,
    pub loan_types: Vec<LookupEntry>,
    pub agencies: Vec<LookupEntry>,
    pub structure_types: Vec<LookupEntry>,
}

fn entries(list: &[(i64, &str)]) -> Vec<LookupEntry> {
    list.iter()
        .map(|(id, name)| LookupEntry {
            id: *id,
            name: (*name).to_string(),
        })
        .collect()
}

impl Default for Lookups {
    fn default() -> Self {
        Lookups {
            loan_purposes: entries(&[
                (1, "Purchase"),
                (2, "Refinance"),
                (3, "Construction"),
                (4, "Renovation"),
            ]),
            loan_occupancies: entries(&[
                (1, "Primary Residence"),
                (2, "Second Home"),
                (3, "Investment Property"),
            ]),
            loan_statuses: entries(&[
                (0, "Pending"),
                (1, "Active"),
                (2, "Funded"),
                (3, "Closed"),
                (4, "Cancelled"),
            ]),
            loan_types: entries(&[
                (1, "Conventional"),
                (2, "FHA"),
                (3, "VA"),
                (4, "USDA"),
                (5, "Jumbo"),
            ]),
            agencies: entries(&[(1, "Fannie Mae"), (2, "Freddie Mac"), (3, "Ginnie Mae")]),
            structure_types: entries(&[
                (1, "Single Family"),
                (2, "Condominium"),
                (3, "Townhouse"),
                (4, "Multi-Family"),
                (5, "Manufactured"),
            ]),
        }
    }
}

impl Lookups {
    /// One platform table by its lookup-file name, with the noun messages use for its ids.
    pub fn table(&self, name: &str) -> Option<(&'static str, &[LookupEntry])> {
        let noun = match name {
            "loan_purposes" => "loan purpose",
            "loan_occupancies" => "loan occupancy",
            "loan_statuses" => "loan status",
            "loan_types" => "loan type",
            "agencies" => "agency",
            "structure_types" => "structure type",
            _ => return None,
        };
        let entries = self.tables().into_iter().find(|(n, _)| *n == name)?.1;
        Some((noun, entries))
    }

    /// The platform tables with their lookup-file names, in a fixed order.
    pub fn tables(&self) -> [(&'static str, &[LookupEntry]); 6] {
        [
            ("loan_purposes", &self.loan_purposes),
            ("loan_occupancies", &self.loan_occupancies),
            ("loan_statuses", &self.loan_statuses),
            ("loan_types", &self.loan_types),
            ("agencies", &self.agencies),
            ("structure_types", &self.structure_types),
        ]
    }
}

/// A folder-safe name: 1 to 64 of ASCII letters, digits, `_` and `-`, not starting with `-`.
pub fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Config {
    /// Reads and validates a config file; relative paths in it resolve against its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut cfg = Self::parse(&text, &path.display().to_string(), &base)?;
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// The embedded example configuration; relative paths resolve against the working folder.
    pub fn embedded() -> Result<Config, ConfigError> {
        Self::parse(
            EXAMPLE_CONFIG,
            "<embedded config.example.toml>",
            Path::new("."),
        )
    }

    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let resolve = |p: &Path| {
            if p.is_absolute() || base.as_os_str().is_empty() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };

        if raw.environments.is_empty() {
            return Err(invalid(
                "`environments` must name at least one environment".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        for env in &raw.environments {
            if !is_safe_name(env) {
                return Err(invalid(format!(
                    "environment {env:?} is not a safe folder name (letters, digits, '_' and '-', at most 64)"
                )));
            }
            if !seen.insert(env.clone()) {
                return Err(invalid(format!("environment {env:?} is listed twice")));
            }
        }

        let synchronous = match raw.store.synchronous.to_ascii_lowercase().as_str() {
            "full" => Synchronous::Full,
            "normal" => Synchronous::Normal,
            other => {
                return Err(invalid(format!(
                    "[store] synchronous = {other:?}: expected \"full\" or \"normal\""
                )))
            }
        };
        if raw.limits.max_record_bytes < 1024 {
            return Err(invalid(
                "[limits] max_record_bytes must be at least 1024".into(),
            ));
        }
        if raw.sftp.login_grace_seconds == 0 {
            return Err(invalid(
                "[sftp] login_grace_seconds must be at least 1".into(),
            ));
        }
        if raw.sftp.max_unauthenticated_per_address == 0 {
            return Err(invalid(
                "[sftp] max_unauthenticated_per_address must be at least 1".into(),
            ));
        }
        let Some(max_startups) = MaxStartups::parse(&raw.sftp.max_startups) else {
            return Err(invalid(format!(
                "[sftp] max_startups = {:?}: expected \"start:rate:full\" (1 <= start <= full, rate 0-100), e.g. \"100:30:300\"",
                raw.sftp.max_startups
            )));
        };
        let max_delay = raw
            .schedule
            .on_upload_max_delay_seconds
            .unwrap_or_else(|| default_max_debounce().max(raw.schedule.on_upload_delay_seconds));
        for (key, v) in [
            (
                "on_upload_delay_seconds",
                raw.schedule.on_upload_delay_seconds,
            ),
            ("on_upload_max_delay_seconds", max_delay),
        ] {
            if !(0.0..=86_400.0).contains(&v) {
                return Err(invalid(format!(
                    "[schedule] {key} = {v}: expected 0 to 86400 seconds"
                )));
            }
        }
        if max_delay < raw.schedule.on_upload_delay_seconds {
            return Err(invalid(
                "[schedule] on_upload_max_delay_seconds must be at least on_upload_delay_seconds"
                    .into(),
            ));
        }
        if raw.sftp.max_sessions_per_lender == 0 {
            return Err(invalid(
                "[sftp] max_sessions_per_lender must be at least 1".into(),
            ));
        }

        let mut lender_ids = BTreeSet::new();
        let mut client_ids = BTreeSet::new();
        let mut lenders = Vec::new();
        // Console sign-in addresses, lenders' and operators' alike: each names one account.
        let mut emails = BTreeSet::new();
        for l in raw.lenders {
            if !is_safe_name(&l.id) {
                return Err(invalid(format!(
                    "lender id {:?} is not a safe folder name (letters, digits, '_' and '-', at most 64)",
                    l.id
                )));
            }
            if !lender_ids.insert(l.id.clone()) {
                return Err(invalid(format!("lender {:?} is listed twice", l.id)));
            }
            if l.divisions.is_empty() {
                return Err(invalid(format!(
                    "lender {:?} has no [[lenders.divisions]]; every lender needs at least one",
                    l.id
                )));
            }
            let mut division_ids = BTreeSet::new();
            let mut divisions = Vec::new();
            for d in l.divisions {
                let tid = d.thread_id.to_ascii_lowercase();
                if tid.len() != 32 || !tid.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid(format!(
                        "lender {:?}: division thread_id {:?} must be 32 hexadecimal characters",
                        l.id, d.thread_id
                    )));
                }
                if !division_ids.insert(tid.clone()) {
                    return Err(invalid(format!(
                        "lender {:?}: division {:?} is listed twice",
                        l.id, d.thread_id
                    )));
                }
                let check_len = |what: &str, v: &str, max: usize| {
                    if v.trim().is_empty() || v.chars().count() > max {
                        Err(invalid(format!(
                            "lender {:?}: division {what} {v:?} must be 1 to {max} characters",
                            l.id
                        )))
                    } else {
                        Ok(())
                    }
                };
                check_len("system_name", &d.system_name, 64)?;
                check_len("editable_name", &d.editable_name, 200)?;
                for p in &d.positions {
                    check_len("position", p, 50)?;
                }
                divisions.push(Division {
                    thread_id: tid,
                    system_name: d.system_name,
                    editable_name: d.editable_name,
                    positions: d.positions,
                });
            }
            if let Some(h) = &l.password_hash {
                if !h.expose().starts_with("$argon2") {
                    return Err(invalid(format!(
                        "lender {:?}: password_hash is not an argon2 PHC string (make one with `bulkload passwd`)",
                        l.id
                    )));
                }
            }
            let webhooks = l
                .webhooks
                .into_iter()
                .enumerate()
                .map(|(i, w)| resolve_webhook(&l.id, i, w, &resolve))
                .collect::<Result<Vec<_>, String>>()
                .map_err(&invalid)?;
            for (i, a) in l.notify_email.iter().enumerate() {
                if a.parse::<lettre::Address>().is_err() {
                    return Err(invalid(format!(
                        "lender {:?}: notify_email[{i}] = {a:?} is not an e-mail address",
                        l.id
                    )));
                }
            }
            let mut api_clients = Vec::new();
            for c in l.api_clients {
                if c.client_id.is_empty()
                    || c.client_id.len() > 128
                    || !c
                        .client_id
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b':')
                {
                    return Err(invalid(format!(
                        "lender {:?}: api_clients client_id {:?} must be 1 to 128 printable ASCII characters without ':'",
                        l.id, c.client_id
                    )));
                }
                if !client_ids.insert(c.client_id.clone()) {
                    return Err(invalid(format!(
                        "api client_id {:?} is listed twice (client ids are unique over all lenders)",
                        c.client_id
                    )));
                }
                if !c.secret_hash.expose().starts_with("$argon2") {
                    return Err(invalid(format!(
                        "lender {:?}: api client {:?}: secret_hash is not an argon2 PHC string (make one with `bulkload passwd`)",
                        l.id, c.client_id
                    )));
                }
                api_clients.push(ApiClient {
                    client_id: c.client_id,
                    secret_hash: c.secret_hash,
                });
            }
            for (key, v) in [
                ("daily_record_limit", l.daily_record_limit),
                ("monthly_record_limit", l.monthly_record_limit),
            ] {
                if v == Some(0) {
                    return Err(invalid(format!(
                        "lender {:?}: {key} must be at least 1 (leave it out for no limit)",
                        l.id
                    )));
                }
            }
            let users = resolve_users(&format!("lender {:?}", l.id), l.users, &mut emails)
                .map_err(&invalid)?;
            lenders.push(Lender {
                users,
                api_clients,
                daily_record_limit: l.daily_record_limit,
                monthly_record_limit: l.monthly_record_limit,
                id: l.id,
                password_hash: l.password_hash,
                authorized_keys: l.authorized_keys.as_deref().map(resolve),
                divisions,
                partner_dedupe: l.partner_dedupe,
                webhooks,
                notify_email: l.notify_email,
            });
        }

        let defaults = Lookups::default();
        let lookups = Lookups {
            loan_purposes: raw.lookups.loan_purposes.unwrap_or(defaults.loan_purposes),
            loan_occupancies: raw
                .lookups
                .loan_occupancies
                .unwrap_or(defaults.loan_occupancies),
            loan_statuses: raw.lookups.loan_statuses.unwrap_or(defaults.loan_statuses),
            loan_types: raw.lookups.loan_types.unwrap_or(defaults.loan_types),
            agencies: raw.lookups.agencies.unwrap_or(defaults.agencies),
            structure_types: raw
                .lookups
                .structure_types
                .unwrap_or(defaults.structure_types),
        };
        for (name, table) in lookups.tables() {
            let mut ids = BTreeSet::new();
            for e in table {
                if !ids.insert(e.id) {
                    return Err(invalid(format!(
                        "[lookups] {name}: id {} is listed twice",
                        e.id
                    )));
                }
            }
        }

        parse_cron(&raw.schedule.cron).map_err(&invalid)?;
        let ops = resolve_ops(
            raw.smtp,
            raw.notify,
            raw.metrics,
            raw.log,
            raw.retention,
            &resolve,
        )
        .map_err(&invalid)?;
        if ops.smtp.is_none() {
            if let Some(l) = lenders.iter().find(|l| !l.notify_email.is_empty()) {
                return Err(invalid(format!(
                    "lender {:?}: notify_email needs an [smtp] section (host, from)",
                    l.id
                )));
            }
        }

        let operators =
            resolve_users("[[operators]]", raw.operators, &mut emails).map_err(&invalid)?;
        let api = match raw.api {
            None => None,
            Some(a) => resolve_api(a, raw.limits.max_file_bytes, &resolve).map_err(&invalid)?,
        };
        let data_dir = resolve(&raw.data_dir);
        let host_key = raw
            .sftp
            .host_key
            .as_deref()
            .map(resolve)
            .unwrap_or_else(|| data_dir.join("host_key"));
        Ok(Config {
            data_dir,
            environments: raw.environments,
            schedule: Schedule {
                cron: raw.schedule.cron,
                settle_seconds: raw.schedule.settle_seconds,
                on_upload: raw.schedule.on_upload,
                on_upload_delay_seconds: raw.schedule.on_upload_delay_seconds,
                on_upload_max_delay_seconds: max_delay,
            },
            sftp: Sftp {
                listen: raw.sftp.listen,
                host_key,
                max_file_bytes: raw.sftp.max_file_bytes,
                max_sessions_per_lender: raw.sftp.max_sessions_per_lender,
                idle_timeout_seconds: raw.sftp.idle_timeout_seconds,
                max_login_failures: raw.sftp.max_login_failures,
                login_failure_window_seconds: raw.sftp.login_failure_window_seconds,
                ban_seconds: raw.sftp.ban_seconds,
                login_grace_seconds: raw.sftp.login_grace_seconds,
                max_unauthenticated_per_address: raw.sftp.max_unauthenticated_per_address,
                max_startups,
            },
            limits: Limits {
                max_file_bytes: raw.limits.max_file_bytes,
                max_record_bytes: raw.limits.max_record_bytes,
                max_records: raw.limits.max_records,
            },
            store: StoreConfig {
                synchronous,
                cache_mib: raw.store.cache_mib,
            },
            lenders,
            lookups,
            smtp: ops.smtp,
            notify: ops.notify,
            metrics: ops.metrics,
            log: ops.log,
            retention: ops.retention,
            api,
            source: None,
            operators,
            console: Console {
                idle_timeout: std::time::Duration::from_secs(
                    60 * raw
                        .console
                        .idle_timeout_minutes
                        .unwrap_or(DEFAULT_CONSOLE_IDLE_MINUTES)
                        .max(1),
                ),
                public_host: raw.console.public_host,
                api_base_url: raw.console.api_base_url,
                secure_cookies: raw.console.secure_cookies,
            },
        })
    }

    pub fn lender(&self, id: &str) -> Option<&Lender> {
        self.lenders.iter().find(|l| l.id == id)
    }
}

/// Checks `[api]` (issue 11). No `listen`: no listener (`None`).
fn resolve_api(
    a: RawApi,
    max_file_bytes: u64,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<Option<Api>, String> {
    let Some(listen) = a.listen else {
        return Ok(None);
    };
    if listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(format!(
            "[api] listen = {listen:?}: expected an address and port, e.g. \"127.0.0.1:8080\""
        ));
    }
    let tls = match (a.tls_cert, a.tls_key) {
        (None, None) => None,
        (Some(c), Some(k)) => Some((resolve(&c), resolve(&k))),
        _ => return Err("[api] tls_cert and tls_key go together: set both or neither".into()),
    };
    if !(1..=366 * 86_400).contains(&a.token_ttl_seconds) {
        return Err(format!(
            "[api] token_ttl_seconds = {}: expected 1 to 31622400",
            a.token_ttl_seconds
        ));
    }
    if a.requests_per_minute == 0 {
        return Err("[api] requests_per_minute must be at least 1".into());
    }
    if a.max_concurrent_loads == 0 {
        return Err("[api] max_concurrent_loads must be at least 1".into());
    }
    let max_body_bytes = a.max_body_bytes.unwrap_or(max_file_bytes);
    if max_body_bytes < 2 {
        return Err("[api] max_body_bytes must be at least 2".into());
    }
    Ok(Some(Api {
        listen,
        tls,
        token_ttl_seconds: a.token_ttl_seconds,
        requests_per_minute: a.requests_per_minute,
        max_concurrent_loads: a.max_concurrent_loads,
        max_body_bytes,
    }))
}

// Operations (issue 13): resolving and checking what the operator wrote.

/// Parses `[schedule] cron` as the scheduler does: six fields, seconds first, UTC.
pub fn parse_cron(cron: &str) -> Result<croner::Cron, String> {
    let fields = cron.split_whitespace().count();
    let hint = "six fields, seconds first: \"sec min hour day-of-month month day-of-week\", e.g. \"0 0 * * * *\" (hourly)";
    if fields != 6 {
        return Err(format!(
            "[schedule] cron = {cron:?} has {fields} field(s); expected {hint}"
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .build()
        .parse(cron)
        .map_err(|e| format!("[schedule] cron = {cron:?}: {e}; expected {hint}"))
}

struct Ops {
    smtp: Option<Smtp>,
    notify: Notify,
    metrics: Metrics,
    log: Log,
    retention: Retention,
}

fn resolve_webhook(
    lender: &str,
    i: usize,
    w: RawWebhook,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<Webhook, String> {
    let at = format!("lender {lender:?}: webhooks[{i}]");
    match reqwest::Url::parse(&w.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => return Err(format!("{at}.url = {:?} is not an http(s) URL", w.url)),
    }
    let text = match (w.secret, w.secret_file) {
        (Some(s), None) => s.expose().trim().to_string(),
        (None, Some(p)) => {
            let p = resolve(&p);
            std::fs::read_to_string(&p)
                .map_err(|e| format!("{at}.secret_file {}: {e}", p.display()))?
                .trim()
                .to_string()
        }
        _ => return Err(format!("{at}: give exactly one of secret and secret_file")),
    };
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(text.strip_prefix("whsec_").unwrap_or(&text))
        .map_err(|_| {
            format!("{at}: the secret must be \"whsec_\" followed by base64 (Standard Webhooks)")
        })?;
    if key.len() < 16 {
        return Err(format!(
            "{at}: the secret must hold at least 16 bytes (24 base64 characters)"
        ));
    }
    for e in &w.events {
        if e != EVENT_LOAD_FINISHED {
            return Err(format!(
                "{at}.events: unknown event {e:?} (known: {EVENT_LOAD_FINISHED:?})"
            ));
        }
    }
    Ok(Webhook {
        url: w.url,
        secret: SecretBytes(key),
        events: w.events,
    })
}

fn resolve_ops(
    smtp: Option<RawSmtp>,
    notify: RawNotify,
    metrics: RawMetrics,
    log: RawLog,
    retention: RawRetention,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<Ops, String> {
    let smtp = match smtp {
        None => None,
        Some(s) => {
            let tls = match s.tls.as_str() {
                "none" => SmtpTls::None,
                "starttls" => SmtpTls::Starttls,
                "tls" => SmtpTls::Tls,
                other => {
                    return Err(format!(
                        "[smtp] tls = {other:?}: expected \"none\", \"starttls\" or \"tls\""
                    ))
                }
            };
            if s.from.parse::<lettre::message::Mailbox>().is_err() {
                return Err(format!(
                    "[smtp] from = {:?} is not an e-mail address",
                    s.from
                ));
            }
            if s.password_file.is_some() && s.username.is_none() {
                return Err("[smtp] password_file needs username".into());
            }
            Some(Smtp {
                port: s.port.unwrap_or(match tls {
                    SmtpTls::None => 25,
                    SmtpTls::Starttls => 587,
                    SmtpTls::Tls => 465,
                }),
                host: s.host,
                tls,
                from: s.from,
                username: s.username,
                password_file: s.password_file.as_deref().map(resolve),
                attach_max_bytes: s.attach_max_bytes,
            })
        }
    };
    let secs = |key: &str, v: f64, min: f64| {
        if v.is_finite() && v >= min {
            Ok(std::time::Duration::from_secs_f64(v))
        } else {
            Err(format!("[notify] {key} = {v}: must be at least {min}"))
        }
    };
    let notify = Notify {
        retry_base: secs("retry_base_seconds", notify.retry_base_seconds, 0.01)?,
        give_up: secs("give_up_hours", notify.give_up_hours * 3600.0, 0.0)?,
        timeout: secs("timeout_seconds", notify.timeout_seconds, 0.1)?,
    };
    if let Some(l) = &metrics.listen {
        if l.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "[metrics] listen = {l:?}: expected an address and port, e.g. \"127.0.0.1:9184\""
            ));
        }
    }
    let format = match log.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(format!(
                "[log] format = {other:?}: expected \"text\" or \"json\""
            ))
        }
    };
    Ok(Ops {
        smtp,
        notify,
        metrics: Metrics {
            listen: metrics.listen,
        },
        log: Log { format },
        retention: Retention {
            processed_days: retention.processed_days,
            results_days: retention.results_days,
            problems_days: retention.problems_days,
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Reload (SIGHUP): the config a running daemon reads, swapped whole.

/// The current configuration of a running daemon: read with `get` (a snapshot that stays
/// consistent for as long as it is held), replaced whole with `set` on reload.
pub struct LiveConfig(std::sync::RwLock<std::sync::Arc<Config>>);

impl LiveConfig {
    pub fn new(cfg: std::sync::Arc<Config>) -> Self {
        LiveConfig(std::sync::RwLock::new(cfg))
    }

    pub fn get(&self) -> std::sync::Arc<Config> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, cfg: std::sync::Arc<Config>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = cfg;
    }
}

impl Config {
    /// Rereads the file this config came from, for a reload. Settings a running daemon cannot
    /// change (the listening address, the data folder, the host key, the environments, the
    /// store) are kept from `self`; the returned notes name each one that differed.
    pub fn reread(&self) -> Result<(Config, Vec<String>), ConfigError> {
        let mut new = match &self.source {
            Some(p) => Config::load(p)?,
            None => Config::embedded()?,
        };
        let mut notes = Vec::new();
        if new.sftp.listen != self.sftp.listen {
            notes.push(format!(
                "[sftp] listen changed to {:?}: takes effect at the next restart",
                new.sftp.listen
            ));
            new.sftp.listen = self.sftp.listen.clone();
        }
        if new.sftp.host_key != self.sftp.host_key {
            notes.push("[sftp] host_key changed: takes effect at the next restart".into());
            new.sftp.host_key = self.sftp.host_key.clone();
        }
        if new.data_dir != self.data_dir {
            notes.push("data_dir changed: takes effect at the next restart".into());
            new.data_dir = self.data_dir.clone();
        }
        if new.environments != self.environments {
            notes.push("environments changed: take effect at the next restart".into());
            new.environments = self.environments.clone();
        }
        new.store = self.store;
        Ok((new, notes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let c = Config::embedded().unwrap();
        assert_eq!(c.environments, vec!["sandbox", "production"]);
        assert_eq!(c.lenders[0].id, "demo");
        assert_eq!(c.schedule.cron, "0 0 * * * *");
    }

    #[test]
    fn api_section_is_checked() {
        let c = Config::embedded().unwrap();
        let api = c.api.as_ref().unwrap();
        assert_eq!(api.listen, "127.0.0.1:8080");
        assert_eq!(api.token_ttl_seconds, 3600);
        assert_eq!(api.requests_per_minute, 600);
        assert_eq!(api.max_body_bytes, c.limits.max_file_bytes);
        assert_eq!(c.lenders[0].api_clients[0].client_id, "demo-client");
        assert!(Config::parse("", "t", Path::new("")).unwrap().api.is_none());
        let lender = |extra: &str| {
            format!("[[lenders]]\nid = \"a\"\n{extra}\n[[lenders.divisions]]\nthread_id = \"0123456789abcdef0123456789abcdef\"\nsystem_name = \"a\"\neditable_name = \"A\"\n")
        };
        for (text, needle) in [
            (
                "[api]\nlisten = \"nowhere\"".to_string(),
                "expected an address",
            ),
            (
                "[api]\nlisten = \"127.0.0.1:1\"\ntls_cert = \"c.pem\"".to_string(),
                "go together",
            ),
            (
                "[api]\nlisten = \"127.0.0.1:1\"\nrequests_per_minute = 0".to_string(),
                "at least 1",
            ),
            (
                "[api]\nlisten = \"127.0.0.1:1\"\ntoken_ttl_seconds = 0".to_string(),
                "token_ttl_seconds",
            ),
            (
                lender("daily_record_limit = 0"),
                "daily_record_limit must be at least 1",
            ),
            (
                lender("[[lenders.api_clients]]\nclient_id = \"c\"\nsecret_hash = \"plain\""),
                "not an argon2",
            ),
            (
                format!(
                    "{}{}",
                    lender(
                        "[[lenders.api_clients]]\nclient_id = \"c\"\nsecret_hash = \"$argon2id$x\""
                    ),
                    lender(
                        "[[lenders.api_clients]]\nclient_id = \"c\"\nsecret_hash = \"$argon2id$x\""
                    )
                    .replace("id = \"a\"", "id = \"b\"")
                ),
                "listed twice",
            ),
        ] {
            let e = Config::parse(&text, "t", Path::new(""))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{needle:?} not in {e}");
        }
    }

    #[test]
    fn unknown_key_is_refused() {
        let e = Config::parse("data_dirr = \"x\"", "t", Path::new("")).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn unsafe_lender_id_is_refused() {
        let text = "[[lenders]]\nid = \"../x\"\n[[lenders.divisions]]\nthread_id = \"0123456789abcdef0123456789abcdef\"\nsystem_name = \"a\"\neditable_name = \"A\"\n";
        let e = Config::parse(text, "t", Path::new("")).unwrap_err();
        assert!(e.to_string().contains("not a safe folder name"), "{e}");
    }

    #[test]
    fn max_startups() {
        let m = MaxStartups::parse("10:30:100").unwrap();
        assert_eq!(
            m,
            MaxStartups {
                start: 10,
                rate: 30,
                full: 100
            }
        );
        assert_eq!(m.drop_percent(9), 0);
        assert_eq!(m.drop_percent(10), 30);
        assert_eq!(m.drop_percent(55), 65);
        assert_eq!(m.drop_percent(100), 100);
        assert_eq!(MaxStartups::parse("20").unwrap().drop_percent(20), 100);
        for bad in ["", "0:30:10", "10:101:20", "20:30:10", "a:b:c", "1:2"] {
            assert!(MaxStartups::parse(bad).is_none(), "{bad}");
        }
        let e = Config::parse("[sftp]\nmax_startups = \"x\"", "t", Path::new("")).unwrap_err();
        assert!(e.to_string().contains("max_startups"), "{e}");
    }

    fn with(extra_lender: &str, extra: &str) -> Result<Config, ConfigError> {
        let text = EXAMPLE_CONFIG.replacen(
            "partner_dedupe = false\n",
            &format!("partner_dedupe = false\n{extra_lender}\n"),
            1,
        );
        Config::parse(&format!("{text}\n{extra}\n"), "test", Path::new("."))
    }

    #[test]
    fn console_users_and_operators() {
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$1hCcitXgv2qH/9J8P2cwkQ$1aAuL39/fIukMq/gfXE7XTDDsAAcau76te9H7gms9Eo";
        let op = |email: &str, totp: &str| {
            format!("[[operators]]\nemail = \"{email}\"\npassword_hash = \"{hash}\"\n{totp}")
        };
        let c = with(
            "",
            &op(
                "ops@x.example",
                "totp_secret = \"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\"",
            ),
        )
        .unwrap();
        assert_eq!(c.lenders[0].users[0].email, "staff@demo.example");
        assert_eq!(c.operators[0].totp_secret.as_ref().unwrap().0.len(), 20);
        assert!(!format!("{c:?}").contains("JBSWY3DP"), "TOTP keys redacted");
        assert_eq!(
            c.console.idle_timeout,
            std::time::Duration::from_secs(30 * 60)
        );
        // One address, one account, lenders and operators together (case-insensitive).
        let e = with("", &op("STAFF@demo.example", "")).unwrap_err();
        assert!(e.to_string().contains("listed twice"), "{e}");
        let e = with("", &op("ops@x.example", "totp_secret = \"not base32!\"")).unwrap_err();
        assert!(e.to_string().contains("not base32"), "{e}");
        let e = with("", &op("ops@x.example", "totp_secret = \"JBSWY3DP\"")).unwrap_err();
        assert!(e.to_string().contains("128 bits"), "{e}");
        let e = with(
            "",
            "[[operators]]\nemail = \"o@x.example\"\npassword_hash = \"plain\"",
        )
        .unwrap_err();
        assert!(e.to_string().contains("argon2"), "{e}");
    }

    #[test]
    fn webhooks_and_smtp() {
        let hook = "[[lenders.webhooks]]\nurl = \"https://x.example/h\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"";
        let c = with(hook, "").unwrap();
        let w = &c.lenders[0].webhooks[0];
        assert_eq!(w.secret.0.len(), 24);
        assert_eq!(w.events, vec![EVENT_LOAD_FINISHED.to_string()]);
        assert!(!format!("{c:?}").contains("MfKQ9r8"), "secrets redacted");
        let e = with(&hook.replace("whsec_MfKQ", "whsec_!!"), "")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lender \"demo\": webhooks[0]") && e.contains("base64"),
            "{e}"
        );
        let e = with("notify_email = [\"ops@x.example\"]", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("notify_email needs an [smtp] section"), "{e}");
        let c = with(
            "notify_email = [\"ops@x.example\"]",
            "[smtp]\nhost = \"h\"\ntls = \"tls\"\nfrom = \"b@x.example\"",
        )
        .unwrap();
        assert_eq!(c.smtp.unwrap().port, 465);
        let e = with(
            "",
            "[smtp]\nhost = \"h\"\ntls = \"ssl\"\nfrom = \"b@x.example\"",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("[smtp] tls = \"ssl\""), "{e}");
    }

    #[test]
    fn ops_defaults_and_errors() {
        let c = Config::embedded().unwrap();
        assert_eq!(c.notify.retry_base, std::time::Duration::from_secs(10));
        assert_eq!(c.notify.timeout, std::time::Duration::from_secs(10));
        assert_eq!(c.notify.give_up, std::time::Duration::from_secs(24 * 3600));
        assert_eq!(c.retention.processed_days, 90);
        assert_eq!(c.log.format, LogFormat::Text);
        assert!(c.metrics.listen.is_none());
        let e = Config::parse(
            &EXAMPLE_CONFIG.replace("cron = \"0 0 * * * *\"", "cron = \"0 * * * *\""),
            "t",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("[schedule] cron") && e.contains("six fields, seconds first"),
            "{e}"
        );
        let e = with("", "[metrics]\nlisten = \"localhost\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("[metrics] listen"), "{e}");
    }

    #[test]
    fn reread_takes_lenders_and_schedule_and_keeps_what_needs_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        let lender = "[[lenders]]\nid = \"LID\"\n[[lenders.divisions]]\nthread_id = \"0123456789abcdef0123456789abcdef\"\nsystem_name = \"a\"\neditable_name = \"A\"\n";
        std::fs::write(
            &p,
            format!(
                "[sftp]\nlisten = \"127.0.0.1:1\"\n{}",
                lender.replace("LID", "a")
            ),
        )
        .unwrap();
        let old = Config::load(&p).unwrap();
        assert_eq!(old.source.as_deref(), Some(p.as_path()));
        std::fs::write(
            &p,
            format!(
                "data_dir = \"elsewhere\"\n[schedule]\non_upload = true\non_upload_delay_seconds = 0.25\n[sftp]\nlisten = \"127.0.0.1:2\"\n{}{}",
                lender.replace("LID", "a"),
                lender.replace("LID", "b").replace("cdef\"", "cdee\"")
            ),
        )
        .unwrap();
        let (new, notes) = old.reread().unwrap();
        assert_eq!(new.lenders.len(), 2);
        assert!(new.schedule.on_upload);
        assert_eq!(new.schedule.on_upload_delay_seconds, 0.25);
        assert_eq!(new.sftp.listen, "127.0.0.1:1");
        assert_eq!(new.data_dir, old.data_dir);
        // listen, data_dir, and the host key (its default follows data_dir).
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert_eq!(new.sftp.host_key, old.sftp.host_key);
        std::fs::write(&p, "garbage = [").unwrap();
        assert!(old.reread().is_err());
        std::fs::write(
            &p,
            "[schedule]\non_upload_delay_seconds = 3\non_upload_max_delay_seconds = 1\n",
        )
        .unwrap();
        assert!(old.reread().is_err());
        // A config written before the maximum existed keeps working: it follows the delay.
        std::fs::write(&p, "[schedule]\non_upload_delay_seconds = 5\n").unwrap();
        let (new, _) = old.reread().unwrap();
        assert_eq!(new.schedule.on_upload_max_delay_seconds, 5.0);
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
