//! The scheduler: when `serve` runs a pass.
//!
//! Owns: running passes off the async threads, one at a time (a request that arrives while a
//! pass runs is remembered and served by one more pass right after), removing stale partial
//! uploads before each pass (never one a live session writes), the cron job, the debounced
//! on-upload trigger, and stopping a pass after its current file on shutdown.
//! Must not: process files itself (that is `files::run_pass`), or let two passes overlap.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify};
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::engine::WriterQueue;
use crate::files::{run_pass, PassOptions};
use crate::sftp::fs::{remove_stale_uploads, LiveUploads};

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("[schedule] cron {cron:?}: {message}")]
    Cron { cron: String, message: String },
    #[error("cannot start the scheduler: {0}")]
    Scheduler(String),
}

/// Runs passes, never two at once.
#[derive(Clone)]
pub struct Passes {
    cfg: Arc<Config>,
    /// Held while a pass runs (in addition to the pass's own file lock).
    running: Arc<Mutex<()>>,
    /// A pass was asked for and has not started yet.
    pending: Arc<AtomicBool>,
    /// The engine's single writer: a pass takes its turn, as every other intake does.
    writer: WriterQueue,
    /// Set on shutdown: the running pass stops after its current file, no new one starts.
    stop: Arc<AtomicBool>,
    /// The uploads live sessions are writing: spared by the stale-upload sweep.
    live_uploads: LiveUploads,
}

impl Passes {
    /// The single writer passes take their turn from; other intakes submit through it too.
    pub fn writer(&self) -> &WriterQueue {
        &self.writer
    }

    pub fn new(cfg: Arc<Config>) -> Self {
        Passes {
            cfg,
            running: Arc::new(Mutex::new(())),
            writer: WriterQueue::new(),
            pending: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
            live_uploads: LiveUploads::default(),
        }
    }

    /// Passes that first remove stale partial uploads, sparing those in `live`.
    pub fn with_live_uploads(mut self, live: LiveUploads) -> Self {
        self.live_uploads = live;
        self
    }

    /// Asks for a pass. Returns at once when one is running (it will run again after);
    /// otherwise runs passes until no request is left.
    pub async fn request(&self, trigger: &'static str) {
        self.pending.store(true, Ordering::SeqCst);
        loop {
            let Ok(guard) = self.running.try_lock() else {
                return;
            };
            while self.pending.swap(false, Ordering::SeqCst) && !self.stop.load(Ordering::SeqCst) {
                self.run_one(trigger).await;
            }
            drop(guard);
            // A request may have come in between the last check and releasing the lock.
            if !self.pending.load(Ordering::SeqCst) || self.stop.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    async fn run_one(&self, trigger: &'static str) {
        let cfg = self.cfg.clone();
        let stop = self.stop.clone();
        let writer = self.writer.clone();
        let live = self.live_uploads.clone();
        let settle = Duration::from_secs(cfg.schedule.settle_seconds);
        tracing::info!(trigger, "pass starting");
        let span = tracing::Span::current();
        let result = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let removed = remove_stale_uploads(&cfg, &live);
            if removed > 0 {
                tracing::info!(removed, "stale partial uploads removed");
            }
            let opts = PassOptions {
                settle,
                progress: false,
                stop: Some(&stop),
                queue: Some(&writer),
            };
            run_pass(&cfg, &opts, &mut |ev| tracing::info!("{}", ev.summary()))
        })
        .await;
        match result {
            Ok(Ok(s)) => tracing::info!(
                trigger,
                files = s.files,
                discarded = s.discarded,
                stopped = s.stopped,
                "pass complete"
            ),
            Ok(Err(e)) => tracing::error!(trigger, error = %e, "pass failed"),
            Err(e) => tracing::error!(trigger, error = %e, "pass panicked"),
        }
    }

    /// Stops the running pass after its current file and waits for it; no pass starts after.
    pub async fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.running.lock().await;
    }
}

/// A cron scheduler running `passes` on `[schedule] cron`. Checks the expression up front.
pub async fn start_cron(passes: Passes) -> Result<JobScheduler, ScheduleError> {
    let cron = passes.cfg.schedule.cron.clone();
    let sched = JobScheduler::new()
        .await
        .map_err(|e| ScheduleError::Scheduler(e.to_string()))?;
    let job = Job::new_async(cron.as_str(), move |_, _| {
        let p = passes.clone();
        Box::pin(async move { p.request("schedule").await })
    })
    .map_err(|e| ScheduleError::Cron {
        cron: cron.clone(),
        message: e.to_string(),
    })?;
    sched
        .add(job)
        .await
        .map_err(|e| ScheduleError::Scheduler(e.to_string()))?;
    sched
        .start()
        .await
        .map_err(|e| ScheduleError::Scheduler(e.to_string()))?;
    Ok(sched)
}

/// Runs a pass `delay` after the last of a burst of `uploads` notifications, until `cancel`.
pub async fn debounce_uploads(
    passes: Passes,
    uploads: Arc<Notify>,
    delay: Duration,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = uploads.notified() => {}
        }
        // Quiet for `delay` since the last upload, then run.
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = uploads.notified() => continue,
                _ = tokio::time::sleep(delay) => break,
            }
        }
        passes.request("upload").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_cron_is_refused() {
        let mut cfg = Config::embedded().unwrap();
        cfg.schedule.cron = "every hour".into();
        let r = start_cron(Passes::new(Arc::new(cfg))).await;
        assert!(matches!(r, Err(ScheduleError::Cron { .. })));
    }

    #[tokio::test]
    async fn passes_do_not_overlap_and_requests_are_not_lost() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = Config::embedded().unwrap();
        cfg.data_dir = d.path().to_path_buf();
        let passes = Passes::new(Arc::new(cfg));
        let guard = passes.running.clone().lock_owned().await;
        // While "a pass runs", a request only marks itself pending.
        passes.request("test").await;
        assert!(passes.pending.load(Ordering::SeqCst));
        drop(guard);
        passes.request("test").await;
        assert!(!passes.pending.load(Ordering::SeqCst));
        assert!(d.path().join("lenders/demo/sandbox/import/pickup").is_dir());
        passes.shutdown().await;
    }
}
