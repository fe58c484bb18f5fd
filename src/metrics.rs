//! Metrics: the Prometheus registry every part counts into, and the HTTP listener of
//! `[metrics] listen` serving `/metrics` (text format 0.0.4), `/healthz` and `/readyz`.
//!
//! Owns: metric names and labels (stable: operators build dashboards on them), the listener.
//! Must not: block a pass or a session: counting is a few atomic operations; the gauges of
//! waiting pickup files are read from the folders when scraped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::config::Config;
use crate::result::Counts;

pub struct Metrics {
    registry: Registry,
    pub passes_total: IntCounter,
    pub pass_duration_seconds: Histogram,
    pub loads_total: IntCounterVec,
    pub records_total: IntCounterVec,
    pub pickup_files: IntGaugeVec,
    pub pickup_oldest_age_seconds: IntGaugeVec,
    pub sftp_sessions: IntGauge,
    pub sftp_logins_total: IntCounterVec,
    pub bans_total: IntCounter,
    pub upload_bytes_total: IntCounter,
    pub deliveries_total: IntCounterVec,
}

fn build() -> Metrics {
    let registry = Registry::new();
    fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
        r.register(Box::new(m.clone()))
            .expect("metric names are unique");
        m
    }
    let counter = |n: &str, h: &str| reg(&registry, IntCounter::new(n, h).expect("valid"));
    let counter_vec = |n: &str, h: &str, l: &[&str]| {
        reg(
            &registry,
            IntCounterVec::new(Opts::new(n, h), l).expect("valid"),
        )
    };
    let gauge_vec = |n: &str, h: &str, l: &[&str]| {
        reg(
            &registry,
            IntGaugeVec::new(Opts::new(n, h), l).expect("valid"),
        )
    };
    Metrics {
        passes_total: counter("bulkload_passes_total", "Passes run (completed or failed)."),
        pass_duration_seconds: reg(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new("bulkload_pass_duration_seconds", "Duration of a pass.")
                    .buckets(vec![0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0]),
            )
            .expect("valid"),
        ),
        loads_total: counter_vec(
            "bulkload_loads_total",
            "Loads finished, by outcome: ok (no problem), problems (some records failed), refused (the whole input).",
            &["env", "lender", "source", "outcome"],
        ),
        records_total: counter_vec(
            "bulkload_records_total",
            "Records of finished loads, by mode (create, update, add, delete, unknown) and outcome.",
            &["env", "lender", "mode", "outcome"],
        ),
        pickup_files: gauge_vec(
            "bulkload_pickup_files",
            "Files waiting in pickup/ (when scraped).",
            &["env", "lender"],
        ),
        pickup_oldest_age_seconds: gauge_vec(
            "bulkload_pickup_oldest_age_seconds",
            "Age of the oldest file waiting in pickup/ (0 when none).",
            &["env", "lender"],
        ),
        sftp_sessions: reg(
            &registry,
            IntGauge::new("bulkload_sftp_sessions", "Open SFTP sessions (logged in).")
                .expect("valid"),
        ),
        sftp_logins_total: counter_vec(
            "bulkload_sftp_logins_total",
            "SFTP login attempts by method (password, publickey, none) and outcome (success, failure).",
            &["method", "outcome"],
        ),
        bans_total: counter("bulkload_bans_total", "Addresses banned after failed logins."),
        upload_bytes_total: counter(
            "bulkload_upload_bytes_total",
            "Bytes of finished SFTP uploads.",
        ),
        deliveries_total: counter_vec(
            "bulkload_deliveries_total",
            "Notification tries by channel (webhook, email) and outcome (delivered, retry, failed).",
            &["channel", "outcome"],
        ),
        registry,
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(build);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// Counts a pass and its duration when dropped (whatever way the pass ends).
pub struct PassTimer(std::time::Instant);
impl PassTimer {
    pub fn start() -> PassTimer {
        PassTimer(std::time::Instant::now())
    }
}
impl Drop for PassTimer {
    fn drop(&mut self) {
        let m = get();
        m.passes_total.inc();
        m.pass_duration_seconds
            .observe(self.0.elapsed().as_secs_f64());
    }
}

/// Counts one finished load and its records.
pub fn count_load(env: &str, lender: &str, source: &str, error: Option<&str>, c: &Counts) {
    let m = get();
    let outcome = if error.is_some() {
        "refused"
    } else if c.failures() > 0 {
        "problems"
    } else {
        "ok"
    };
    m.loads_total
        .with_label_values(&[env, lender, source, outcome])
        .inc();
    let rows: [(&str, &str, i64); 9] = [
        ("create", "success", c.create_success),
        ("update", "success", c.update_success),
        ("add", "success", c.add_success),
        ("delete", "success", c.delete_success),
        ("create", "failure", c.create_failure),
        ("update", "failure", c.update_failure),
        ("add", "failure", c.add_failure),
        ("delete", "failure", c.delete_failure),
        ("unknown", "failure", c.mode_failure),
    ];
    for (mode, outcome, n) in rows {
        m.records_total
            .with_label_values(&[env, lender, mode, outcome])
            .inc_by(n.max(0) as u64);
    }
}

/// Counts one SFTP login try.
pub fn login(method: &str, ok: bool) {
    get()
        .sftp_logins_total
        .with_label_values(&[method, if ok { "success" } else { "failure" }])
        .inc();
}

/// Counts one notification try.
pub fn delivery(channel: &str, outcome: &str) {
    get()
        .deliveries_total
        .with_label_values(&[channel, outcome])
        .inc();
}

/// Refreshes the pickup gauges from the folders.
pub fn refresh_pickup(cfg: &Config) {
    let m = get();
    for env in &cfg.environments {
        for l in &cfg.lenders {
            let w = crate::status::waiting(cfg, env, &l.id);
            m.pickup_files
                .with_label_values(&[env, &l.id])
                .set(w.files as i64);
            m.pickup_oldest_age_seconds
                .with_label_values(&[env, &l.id])
                .set(w.oldest_age_seconds.unwrap_or(0) as i64);
        }
    }
}

/// Every metric in the Prometheus text format.
pub fn render() -> String {
    // Labelled series appear once counted; make the families with a fixed label set visible
    // from the start so that dashboards and alerts see zeros, not gaps.
    let m = get();
    for ch in ["webhook", "email"] {
        for o in ["delivered", "retry", "failed"] {
            let _ = m.deliveries_total.with_label_values(&[ch, o]);
        }
    }
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&m.registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// What `/readyz` needs to know.
#[derive(Clone)]
pub struct Readiness {
    /// Set once the SFTP listener is up.
    pub listening: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics on {addr}: {source}")]
pub struct ListenError {
    pub addr: String,
    pub source: std::io::Error,
}

/// Binds `[metrics] listen` and serves until `cancel`.
pub async fn serve(
    live: Arc<crate::config::LiveConfig>,
    addr: &str,
    ready: Readiness,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, ListenError> {
    use axum::routing::get as route;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError {
            addr: addr.to_string(),
            source,
        })?;
    if let Ok(a) = listener.local_addr() {
        tracing::info!(address = %a, "listening for metrics");
    }
    let c1 = live.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            route(move || {
                let cfg = c1.get();
                async move {
                    let text = tokio::task::spawn_blocking(move || {
                        refresh_pickup(&cfg);
                        render()
                    })
                    .await
                    .unwrap_or_default();
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        )
        .route("/healthz", route(|| async { "ok\n" }))
        .route(
            "/readyz",
            route(move || {
                let cfg = live.get();
                let ready = ready.clone();
                async move {
                    let why = tokio::task::spawn_blocking(move || not_ready(&cfg, &ready))
                        .await
                        .unwrap_or_else(|e| Some(e.to_string()));
                    match why {
                        None => (axum::http::StatusCode::OK, "ready\n".to_string()),
                        Some(w) => (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {w}\n"),
                        ),
                    }
                }
            }),
        );
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
    }))
}

fn not_ready(cfg: &Config, ready: &Readiness) -> Option<String> {
    if !ready.listening.load(Ordering::SeqCst) {
        return Some("the SFTP listener is not up".into());
    }
    if cfg.store.postgres.is_some() {
        // PostgreSQL (issue 14): ready when every environment's store opens (connects, with
        // its schema migrated); the error names the cause, never the password.
        for env in &cfg.environments {
            if let Err(e) = crate::store::open_env(cfg, env) {
                return Some(format!("store of {env}: {e}"));
            }
        }
        return None;
    }
    for env in &cfg.environments {
        let path = crate::layout::store_path(&cfg.data_dir, env);
        if !path.exists() {
            // Created by the first pass that reaches it: its folder must be there to be made.
            if !cfg.data_dir.is_dir() {
                return Some(format!("data_dir {} is missing", cfg.data_dir.display()));
            }
            continue;
        }
        let opened = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)));
        if let Err(e) = opened {
            return Some(format!("store {}: {e}", path.display()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_on_postgres_names_an_unreachable_store() {
        let dir = tempfile::tempdir().unwrap();
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let text = format!(
            "data_dir = {:?}\n[store]\nurl = \"postgres://bulkload@127.0.0.1:{port}/bulkload\"\n",
            dir.path()
        );
        let cfg = Config::parse(&text, "test", dir.path()).unwrap();
        let ready = Readiness {
            listening: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        };
        let why = not_ready(&cfg, &ready).expect("an unreachable store is not ready");
        assert!(why.starts_with("store of sandbox: "), "{why}");
        assert!(why.to_lowercase().contains("refused"), "{why}");
    }
}
