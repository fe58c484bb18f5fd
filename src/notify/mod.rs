//! Notifications of finished loads: webhooks (Standard Webhooks) and e-mail, delivered
//! at-least-once from the store's outbox.
//!
//! Owns: which notifications a load queues (`enqueue`, called by the engine inside the load's
//! transaction), the event's JSON, the sender (`run`): tries due rows of finished loads, each on a
//! task of its own, retrying with exponential backoff (`[notify] retry_base_seconds`, doubling)
//! until `give_up_hours` after the load, then marks the row failed (logged, counted).
//! Must not: run on a pass's thread or hold the writer turn: a slow or dead receiver only
//! delays its own row.

pub mod email;
pub mod webhook;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Lender, EVENT_LOAD_FINISHED};
use crate::layout;
use crate::store::{self, Attempt, Delivery, LoadTx, StoreError};

pub const WEBHOOK: &str = "webhook";
pub const EMAIL: &str = "email";

/// Unix seconds now.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Queues a finished load's notifications in its transaction.
pub fn enqueue(tx: &mut dyn LoadTx, lender: &Lender) -> Result<(), StoreError> {
    let mut targets: Vec<(&str, String)> = lender
        .webhooks
        .iter()
        .filter(|w| w.events.iter().any(|e| e == EVENT_LOAD_FINISHED))
        .map(|w| (WEBHOOK, w.url.clone()))
        .collect();
    if !lender.notify_email.is_empty() {
        targets.push((EMAIL, lender.notify_email.join(",")));
    }
    if targets.is_empty() {
        return Ok(());
    }
    tx.enqueue(EVENT_LOAD_FINISHED, &targets, now())
}

/// The event of a delivery: `{"type", "timestamp", "data"}` (Standard Webhooks payload shape);
/// `data` uses the result file's own names.
pub fn event_json(env: &str, d: &Delivery) -> serde_json::Value {
    let l = &d.load;
    let processed = layout::processed_stamped_name(&l.pickup_name, &l.stamp);
    let result = layout::result_name(&l.pickup_name, &l.stamp);
    let mut data = serde_json::Map::new();
    data.insert("environment".into(), json!(env));
    data.insert("lender".into(), json!(l.lender));
    data.insert("Id".into(), json!(l.id));
    data.insert("Source".into(), json!(l.source));
    data.insert("PickupName".into(), json!(l.pickup_name));
    data.insert("ProcessedName".into(), json!(processed));
    data.insert("ResultName".into(), json!(result));
    data.insert(
        "ResultPath".into(),
        json!(format!("/{env}/import/results/{result}")),
    );
    data.insert("StartedAt".into(), json!(l.started_at));
    data.insert("EndedAt".into(), json!(l.ended_at));
    for (k, v) in l.counts.named() {
        data.insert(k.into(), json!(v));
    }
    data.insert("ErrorMessage".into(), json!(l.error_message));
    json!({
        "type": d.event,
        "timestamp": l.ended_at,
        "data": data,
    })
}

/// When the try after `attempts` tries goes: `base * 2^(attempts-1)` after now.
pub fn backoff(base: Duration, attempts: i64) -> Duration {
    let exp = (attempts.max(1) - 1).min(30) as u32;
    base.saturating_mul(1u32 << exp)
}

/// How often the sender looks for due rows: a tenth of the retry base, between 50 ms and 1 s.
pub fn poll_interval(base: Duration) -> Duration {
    (base / 10).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// When the next try is due after `attempts` failed tries: the backoff less one poll interval,
/// so that the try itself happens within the backoff (the first within 10 s by default).
pub fn retry_delay(base: Duration, attempts: i64) -> Duration {
    backoff(base, attempts).saturating_sub(poll_interval(base))
}

/// What one try of one channel says.
pub type Tried = Result<(), String>;

/// The sender: delivers due rows until `cancel`. `wake` hurries it (after a pass). Reads the
/// configuration afresh each round, so a reload's webhooks, addresses and [smtp] apply.
pub async fn run(
    live: Arc<crate::config::LiveConfig>,
    wake: Arc<tokio::sync::Notify>,
    cancel: CancellationToken,
) {
    let http = match webhook::client(&live.get()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client: webhooks are not sent");
            return;
        }
    };
    let in_flight: Arc<Mutex<HashSet<(String, i64)>>> = Arc::default();
    loop {
        let cfg = live.get();
        let tick = poll_interval(cfg.notify.retry_base);
        for env in &cfg.environments {
            let due = {
                let cfg = cfg.clone();
                let env = env.clone();
                tokio::task::spawn_blocking(move || -> Result<Vec<Delivery>, StoreError> {
                    if !store::is_current_env(&cfg, &env) {
                        return Ok(Vec::new()); // not created (or migrated) by a pass yet
                    }
                    store::open_env(&cfg, &env)?.due_deliveries(now(), 64)
                })
                .await
            };
            let due = match due {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => {
                    tracing::warn!(env = %env, error = %e, "outbox: cannot read due notifications");
                    continue;
                }
                Err(_) => continue,
            };
            for d in due {
                let key = (env.clone(), d.id);
                if !in_flight
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(key.clone())
                {
                    continue;
                }
                let (cfg, env, http, in_flight) =
                    (cfg.clone(), env.clone(), http.clone(), in_flight.clone());
                tokio::spawn(async move {
                    deliver(&cfg, &env, &http, d).await;
                    in_flight
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&key);
                });
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(tick) => {}
        }
    }
}

/// Tries every due row once, all at the same time, and returns (for `bulkload run`, which has
/// no daemon: rows left pending are tried again by the next run, or by a daemon).
/// The HTTP client is built only when a row is due: building it loads the system's root
/// certificates, ~19M instructions that every pass paid (bench/README "Issue 10, fifth round").
pub async fn deliver_due_once(cfg: &Config) {
    let cfg = Arc::new(cfg.clone());
    let mut due_rows = Vec::new();
    for env in &cfg.environments {
        if !store::is_current_env(&cfg, env) {
            continue;
        }
        let read = {
            let (cfg, env) = (cfg.clone(), env.clone());
            tokio::task::spawn_blocking(move || {
                store::open_env(&cfg, &env).and_then(|s| s.due_deliveries(now(), 1000))
            })
            .await
            .unwrap_or_else(|e| Err(store::StoreError::Backend(e.to_string())))
        };
        let due = match read {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(env = %env, error = %e, "outbox: cannot read due notifications");
                continue;
            }
        };
        due_rows.extend(due.into_iter().map(|d| (env.clone(), d)));
    }
    if due_rows.is_empty() {
        return;
    }
    let http = match webhook::client(&cfg) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "outbox: cannot build the HTTP client; rows stay due");
            return;
        }
    };
    let mut tries = tokio::task::JoinSet::new();
    for (env, d) in due_rows {
        let (cfg, http) = (cfg.clone(), http.clone());
        tries.spawn(async move { deliver(&cfg, &env, &http, d).await });
    }
    while tries.join_next().await.is_some() {}
}

/// One try of one row, and its bookkeeping.
async fn deliver(cfg: &Config, env: &str, http: &reqwest::Client, d: Delivery) {
    let lender = cfg.lender(&d.load.lender);
    let tried: Tried = match (d.channel.as_str(), lender) {
        (_, None) => Err("the lender is no longer configured".into()),
        (WEBHOOK, Some(l)) => match l.webhooks.iter().find(|w| w.url == d.target) {
            Some(w) => webhook::send(cfg, http, w, env, &d).await,
            None => Err("this webhook is no longer configured".into()),
        },
        (EMAIL, Some(_)) => email::send(cfg, env, &d).await,
        (other, _) => Err(format!("unknown channel {other:?}")),
    };
    let attempts = d.attempts + 1;
    let t = now();
    let (attempt, outcome) = match tried {
        Ok(()) => {
            tracing::info!(env, lender = %d.load.lender, load = d.load.id, channel = %d.channel,
                target = %d.target, attempts, "notification delivered");
            (Attempt::Delivered, "delivered")
        }
        Err(error) => {
            let next_at = t + retry_delay(cfg.notify.retry_base, attempts).as_secs_f64();
            if next_at > d.created_at + cfg.notify.give_up.as_secs_f64() {
                tracing::error!(env, lender = %d.load.lender, load = d.load.id, channel = %d.channel,
                    target = %d.target, attempts, %error, "notification failed: given up");
                (Attempt::Failed { error }, "failed")
            } else {
                tracing::warn!(env, lender = %d.load.lender, load = d.load.id, channel = %d.channel,
                    target = %d.target, attempts, %error, retry_in_seconds = next_at - t,
                    "notification not delivered; will retry");
                (Attempt::Retry { next_at, error }, "retry")
            }
        }
    };
    crate::metrics::delivery(&d.channel, outcome);
    let id = d.id;
    let (cfg2, env2) = (cfg.clone(), env.to_string());
    let saved = tokio::task::spawn_blocking(move || {
        store::open_env(&cfg2, &env2).and_then(|s| s.record_attempt(id, &attempt))
    })
    .await;
    if let Ok(Err(e)) = saved {
        tracing::warn!(env, error = %e, "outbox: cannot record a try (it will be tried again)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base() {
        let b = Duration::from_secs(10);
        assert_eq!(backoff(b, 1), Duration::from_secs(10));
        assert_eq!(backoff(b, 2), Duration::from_secs(20));
        assert_eq!(backoff(b, 4), Duration::from_secs(80));
        // The default: polled every second, the first retry due 9 s after, tried by 10 s.
        assert_eq!(poll_interval(b), Duration::from_secs(1));
        assert_eq!(retry_delay(b, 1), Duration::from_secs(9));
    }
}
