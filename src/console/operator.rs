//! Operator pages of the console: every lender and environment at a glance (backlog, last load,
//! failure rate and records per hour over 24 hours), bans and refused logins, and notifications
//! given up on.
//!
//! Owns: those read-only views. Must not: change anything (no action buttons), or be reachable
//! by a lender's user (404).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use maud::html;

use super::session::{Role, Session};
use super::views::{self, Nav};
use super::{html_page, not_found, Console};
use crate::config::Config;
use crate::layout;
use crate::store::{FailedDelivery, HourActivity, LoadRow};

pub(crate) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/console/ops", get(overview))
        .route("/console/ops/logins", get(logins))
        .route("/console/ops/deliveries", get(deliveries))
}

fn operator(c: &Console, headers: &HeaderMap) -> Result<Session, Response> {
    let s = c.signed_in(headers)?;
    if s.role != Role::Operator {
        return Err(not_found());
    }
    Ok(s)
}

/// Files waiting in a folder (not hidden, not temporary) and the age of the oldest.
fn backlog(dir: &std::path::Path) -> (usize, Option<Duration>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (0, None);
    };
    let mut n = 0;
    let mut oldest: Option<SystemTime> = None;
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if layout::is_ignored_name(name) || !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        n += 1;
        if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
            oldest = Some(oldest.map_or(m, |o| o.min(m)));
        }
    }
    (n, oldest.and_then(|t| t.elapsed().ok()))
}

fn age(d: Duration) -> String {
    let s = d.as_secs();
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", s / 60)
    } else {
        format!("{} h", s / 3600)
    }
}

/// What one environment's store says for the overview.
struct EnvData {
    activity: Vec<HourActivity>,
    last: BTreeMap<String, LoadRow>,
    failed: Vec<FailedDelivery>,
}

fn read_env(cfg: &Config, env: &str, since: &str) -> Result<Option<EnvData>, String> {
    let Some(store) = crate::store::open_existing_env(cfg, env).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let activity = store.hourly_activity(since).map_err(|e| e.to_string())?;
    let mut last = BTreeMap::new();
    for l in &cfg.lenders {
        if let Some(row) = store.last_load(&l.id).map_err(|e| e.to_string())? {
            last.insert(l.id.clone(), row);
        }
    }
    let failed = store.failed_deliveries(100).map_err(|e| e.to_string())?;
    Ok(Some(EnvData {
        activity,
        last,
        failed,
    }))
}

async fn read_all(cfg: Arc<Config>) -> Vec<(String, Result<Option<EnvData>, String>)> {
    let since = crate::result::iso(Utc::now() - chrono::Duration::hours(24));
    tokio::task::spawn_blocking(move || {
        cfg.environments
            .iter()
            .map(|env| (env.clone(), read_env(&cfg, env, &since)))
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// The last 24 hours, oldest first, as `yyyy-mm-ddThh`.
fn hours() -> Vec<String> {
    let now = Utc::now();
    (0..24)
        .rev()
        .map(|h| {
            (now - chrono::Duration::hours(h))
                .format("%Y-%m-%dT%H")
                .to_string()
        })
        .collect()
}

async fn overview(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let s = match operator(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let cfg = c.cfg();
    let data = read_all(cfg.clone()).await;
    let hours = hours();
    let body = html! {
        p { "Files waiting: those in each lender's " code { "pickup/" } " and " code { "validate/" } " folders and its API loads queued, now; loads, failure rate and records cover the last 24 hours (validations not counted)." }
        @for (env, d) in &data {
            section aria-labelledby=(format!("env-{env}")) {
                h2 id=(format!("env-{env}")) { "Environment " (env) }
                @match d {
                    Err(e) => p.error { "Cannot read this environment's store: " (e) },
                    Ok(d) => {
                        @let empty = Vec::new();
                        @let act = d.as_ref().map_or(&empty, |d| &d.activity);
                        @let per_hour: Vec<(String, i64)> = hours.iter().map(|h| {
                            (format!("{h}:00"), act.iter().filter(|a| &a.hour == h).map(|a| a.records).sum())
                        }).collect();
                        (views::bar_chart(&format!("Records per hour in {env}, last 24 hours"), &per_hour))
                        div.scroll tabindex="0" { table {
                            caption { "Lenders in " (env) }
                            thead { tr {
                                th scope="col" { "Lender" } th scope="col" { "Files waiting" } th scope="col" { "Oldest waiting" }
                                th scope="col" { "Last load" } th scope="col" { "Loads (24 h)" } th scope="col" { "Failure rate (24 h)" }
                                th scope="col" { "Records (24 h)" }
                            } }
                            tbody { @for l in &cfg.lenders {
                                @let dirs = layout::lender_dirs(&cfg.data_dir, &l.id, env);
                                @let (n1, o1) = backlog(&dirs.pickup);
                                @let (n2, o2) = backlog(&dirs.validate);
                                @let (n3, o3) = backlog(&crate::api::loads::spool_dir(&cfg.data_dir, env, &l.id));
                                @let oldest = o1.max(o2).max(o3);
                                @let mine: Vec<&HourActivity> = act.iter().filter(|a| a.lender == l.id).collect();
                                @let loads: i64 = mine.iter().map(|a| a.loads).sum();
                                @let failed: i64 = mine.iter().map(|a| a.failed).sum();
                                @let records: i64 = mine.iter().map(|a| a.records).sum();
                                @let stuck = oldest.is_some_and(|o| o > Duration::from_secs(3600));
                                tr {
                                    th scope="row" { (l.id) }
                                    td { (n1 + n2 + n3) }
                                    td { @if let Some(o) = oldest { @if stuck { strong.warn { (age(o)) " (stuck?)" } } @else { (age(o)) } } @else { "—" } }
                                    td { @match d.as_ref().and_then(|d| d.last.get(&l.id)) {
                                        Some(r) => { (r.ended_at) " · " (r.pickup_name) " · " (views::state(r)) }
                                        None => "none",
                                    } }
                                    td { (loads) }
                                    td { @if loads > 0 { (format!("{:.0}%", 100.0 * failed as f64 / loads as f64)) " (" (failed) ")" } @else { "—" } }
                                    td { (records) }
                                }
                            } }
                        } }
                    }
                }
            }
        }
    };
    html_page(views::page(
        "Lenders",
        Nav::Operator {
            email: &s.email,
            section: "",
            csrf: &s.csrf,
        },
        body,
    ))
}

fn when(t: SystemTime) -> String {
    let dt: DateTime<Utc> = t.into();
    dt.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Unix seconds as UTC text; "?" when out of range.
fn when_unix(secs: f64) -> String {
    DateTime::from_timestamp(secs as i64, 0).map_or_else(
        || "?".into(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

async fn logins(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let s = match operator(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let d = &c.shared.defender;
    let bans = d.bans();
    let refused = d.refusals();
    let body = html! {
        p { "SFTP logins and console sign-ins share one defender: an address with too many failures is banned from both for a while." }
        h2 { "Banned addresses" }
        @if bans.is_empty() { p { "None." } } @else {
            div.scroll tabindex="0" { table {
                caption { "Bans in force" }
                thead { tr { th scope="col" { "Address" } th scope="col" { "Time left" } } }
                tbody { @for (ip, left) in &bans { tr { td { (ip) } td { (age(*left)) } } } }
            } }
        }
        h2 { "Recent refused logins" }
        @if refused.is_empty() { p { "None since the daemon started." } } @else {
            div.scroll tabindex="0" { table {
                caption { "Newest first (at most 200 kept)" }
                thead { tr { th scope="col" { "When" } th scope="col" { "Address" } th scope="col" { "User" } th scope="col" { "Method" } } }
                tbody { @for r in &refused { tr { td { (when(r.at)) } td { (r.address) } td { (r.user) } td { (r.method) } } } }
            } }
        }
    };
    html_page(views::page(
        "Logins & bans",
        Nav::Operator {
            email: &s.email,
            section: "logins",
            csrf: &s.csrf,
        },
        body,
    ))
}

async fn deliveries(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let s = match operator(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let data = read_all(c.cfg()).await;
    let body = html! {
        p { "Webhook calls and e-mails of finished loads that were given up on after their retries." }
        @for (env, d) in &data {
            section aria-labelledby=(format!("d-{env}")) {
                h2 id=(format!("d-{env}")) { "Environment " (env) }
                @match d {
                    Err(e) => p.error { "Cannot read this environment's store: " (e) },
                    Ok(None) => p { "None." },
                    Ok(Some(d)) if d.failed.is_empty() => p { "None." },
                    Ok(Some(d)) => div.scroll tabindex="0" { table {
                        caption { "Failed deliveries in " (env) ", newest first" }
                        thead { tr { th scope="col" { "Lender" } th scope="col" { "Load" } th scope="col" { "Channel" }
                            th scope="col" { "Target" } th scope="col" { "Tries" } th scope="col" { "Last error" } th scope="col" { "Queued" } } }
                        tbody { @for f in &d.failed { tr {
                            td { (f.lender) } td { "#" (f.load) } td { (f.channel) } td { (f.target) }
                            td { (f.attempts) } td { (f.last_error.as_deref().unwrap_or("")) }
                            td { (when_unix(f.created_at)) }
                        } } }
                    } },
                }
            }
        }
    };
    html_page(views::page(
        "Failed deliveries",
        Nav::Operator {
            email: &s.email,
            section: "deliveries",
            csrf: &s.csrf,
        },
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_ages_never_panic() {
        assert_eq!(when_unix(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(when_unix(f64::NAN), "1970-01-01 00:00:00 UTC");
        assert_eq!(when_unix(1e300), "?");
        assert_eq!(age(Duration::from_secs(30)), "30 s");
        assert_eq!(age(Duration::from_secs(600)), "10 min");
        assert_eq!(age(Duration::from_secs(7300)), "2 h");
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("employees.json"), "[]").unwrap();
        std::fs::write(d.path().join(".x.part"), "").unwrap();
        assert_eq!(backlog(d.path()).0, 1);
        assert_eq!(backlog(&d.path().join("missing")), (0, None));
    }
}
