//! The scheduler: when `serve` runs a pass, and over which lenders.
//!
//! Owns: running passes off the async threads, one at a time (requests that arrive while a pass
//! runs are queued: a whole-data pass, or per-lender passes in the order they were asked for, so
//! one busy lender never holds back another for more than one of its passes), removing stale
//! partial uploads before each pass (never one a live session writes), the cron job, the
//! per-lender debounced on-upload trigger (quiet time, with a maximum wait), the set of pickup
//! files the SFTP server published itself (complete on arrival: no settle time), a later pass
//! for files skipped as too young, and stopping a pass after its current file on shutdown.
//! Must not: process files itself (that is `files::run_pass`), or let two passes overlap.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LiveConfig};
use crate::engine::WriterQueue;
use crate::files::{run_pass, PassOptions, PassSummary};
use crate::sftp::fs::{remove_stale_uploads, LiveUploads};

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("[schedule] cron {cron:?}: {message}")]
    Cron { cron: String, message: String },
    #[error("cannot start the scheduler: {0}")]
    Scheduler(String),
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a pass works on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every lender (start-up, cron).
    All,
    /// One lender's folders (its uploads, or its files that were too young).
    Lender(String),
}

/// Pickup files the SFTP server renamed in itself (real paths), with when their client last
/// touched them: complete when they appear, so a pass takes them without `settle_seconds`, once
/// their client has left them alone for a short grace (rclone sets the time, stats and hashes
/// its upload right after closing it, and counts a file taken meanwhile as a failed transfer).
#[derive(Clone, Default)]
pub struct CompleteUploads(Arc<StdMutex<HashMap<PathBuf, Instant>>>);

impl CompleteUploads {
    /// `p` was just published.
    pub fn insert(&self, p: &Path) {
        lock(&self.0).insert(p.to_path_buf(), Instant::now());
    }

    /// Its client touched `p` (setstat, stat, hash); true when `p` is a published file.
    pub fn touch(&self, p: &Path) -> bool {
        match lock(&self.0).get_mut(p) {
            Some(t) => {
                *t = Instant::now();
                true
            }
            None => false,
        }
    }

    pub fn contains(&self, p: &Path) -> bool {
        lock(&self.0).contains_key(p)
    }

    /// How much longer `p` waits (its grace since the last touch), or `None` when the daemon
    /// did not publish it.
    pub fn remaining(&self, p: &Path, grace: Duration) -> Option<Duration> {
        lock(&self.0)
            .get(p)
            .map(|t| grace.saturating_sub(t.elapsed()))
    }

    /// Forgets files that are gone (claimed by a pass, removed by their lender).
    fn prune(&self) {
        let paths: Vec<PathBuf> = lock(&self.0).keys().cloned().collect();
        let gone: Vec<PathBuf> = paths
            .into_iter()
            .filter(|p| std::fs::symlink_metadata(p).is_err())
            .collect();
        let mut set = lock(&self.0);
        for p in gone {
            set.remove(&p);
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.0).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Passes asked for and not started yet.
#[derive(Default)]
struct Queue {
    all: Option<&'static str>,
    lenders: VecDeque<(String, &'static str)>,
}

impl Queue {
    fn push(&mut self, scope: Scope, trigger: &'static str) {
        match scope {
            Scope::All => {
                self.all.get_or_insert(trigger);
            }
            Scope::Lender(l) => {
                if !self.lenders.iter().any(|(x, _)| *x == l) {
                    self.lenders.push_back((l, trigger));
                }
            }
        }
    }

    /// The next pass to run: a whole-data pass covers every lender waiting too.
    fn pop(&mut self) -> Option<(Scope, &'static str)> {
        if let Some(t) = self.all.take() {
            self.lenders.clear();
            return Some((Scope::All, t));
        }
        self.lenders.pop_front().map(|(l, t)| (Scope::Lender(l), t))
    }

    fn is_empty(&self) -> bool {
        self.all.is_none() && self.lenders.is_empty()
    }
}

/// How soon a failed pass (store unreachable) is tried again.
const FAILED_RETRY: Duration = Duration::from_secs(5);

/// Runs passes, never two at once.
#[derive(Clone)]
pub struct Passes {
    cfg: Arc<LiveConfig>,
    /// Held while passes run (in addition to each pass's own file lock).
    running: Arc<Mutex<()>>,
    /// Passes asked for and not started yet.
    queue: Arc<StdMutex<Queue>>,
    /// The engine's single writer: a pass takes its turn, as every other intake does.
    writer: WriterQueue,
    /// Set on shutdown: the running pass stops after its current file, no new one starts.
    stop: Arc<AtomicBool>,
    /// The uploads live sessions are writing: spared by the stale-upload sweep.
    live_uploads: LiveUploads,
    /// Pickup files the SFTP server published: no settle time.
    complete: CompleteUploads,
    /// Later passes already planned for too-young files, by scope: when each runs.
    retries: Arc<StdMutex<HashMap<Scope, SystemTime>>>,
}

impl Passes {
    pub fn new(cfg: Arc<Config>) -> Self {
        Self::live(Arc::new(LiveConfig::new(cfg)))
    }

    /// The engine's single writer these passes take turns from (the Bulk Web API's loads take
    /// theirs from the same one).
    pub fn writer(&self) -> &WriterQueue {
        &self.writer
    }

    /// Passes reading `cfg` at each start (it changes on reload).
    pub fn live(cfg: Arc<LiveConfig>) -> Self {
        Passes {
            cfg,
            running: Arc::new(Mutex::new(())),
            writer: WriterQueue::new(),
            queue: Arc::default(),
            stop: Arc::new(AtomicBool::new(false)),
            live_uploads: LiveUploads::default(),
            complete: CompleteUploads::default(),
            retries: Arc::default(),
        }
    }

    /// Passes that first remove stale partial uploads, sparing those in `live`.
    pub fn with_live_uploads(mut self, live: LiveUploads) -> Self {
        self.live_uploads = live;
        self
    }

    /// The set of pickup files the SFTP server published (the upload hook fills it).
    pub fn complete_uploads(&self) -> &CompleteUploads {
        &self.complete
    }

    /// Asks for a pass over every lender.
    pub async fn request(&self, trigger: &'static str) {
        self.request_scope(Scope::All, trigger).await
    }

    /// Asks for a pass over `scope`. Returns at once when a pass is running (the request is
    /// queued and served right after); otherwise runs passes until the queue is empty.
    pub async fn request_scope(&self, scope: Scope, trigger: &'static str) {
        lock(&self.queue).push(scope, trigger);
        loop {
            let Ok(guard) = self.running.try_lock() else {
                return;
            };
            while !self.stop.load(Ordering::SeqCst) {
                let Some((scope, trigger)) = lock(&self.queue).pop() else {
                    break;
                };
                self.run_one(scope, trigger).await;
            }
            drop(guard);
            // A request may have come in between the last check and releasing the lock.
            if lock(&self.queue).is_empty() || self.stop.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    // `..Default::default()` stays: other intakes' options may be added to `PassOptions`.
    #[allow(clippy::needless_update)]
    async fn run_one(&self, scope: Scope, trigger: &'static str) {
        let cfg = self.cfg.get();
        let stop = self.stop.clone();
        let writer = self.writer.clone();
        let live = self.live_uploads.clone();
        let complete = self.complete.clone();
        let settle = Duration::from_secs(cfg.schedule.settle_seconds);
        let grace = secs(cfg.schedule.on_upload_delay_seconds);
        let lender = match &scope {
            Scope::All => None,
            Scope::Lender(l) => Some(l.clone()),
        };
        tracing::info!(
            trigger,
            lender = lender.as_deref().unwrap_or("(all)"),
            "pass starting"
        );
        let span = tracing::Span::current();
        let result = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let removed = remove_stale_uploads(&cfg, &live);
            if removed > 0 {
                tracing::info!(removed, "stale partial uploads removed");
            }
            let only: Option<Vec<String>> = lender.map(|l| vec![l]);
            let is_complete = |p: &Path| complete.remaining(p, grace);
            let opts = PassOptions {
                settle,
                progress: false,
                stop: Some(&stop),
                queue: Some(&writer),
                lenders: only.as_deref(),
                complete: Some(&is_complete),
                ..Default::default()
            };
            let r = run_pass(&cfg, &opts, &mut |ev| tracing::info!("{}", ev.summary()));
            complete.prune();
            r
        })
        .await;
        let who = match &scope {
            Scope::All => "(all)",
            Scope::Lender(l) => l.as_str(),
        };
        match result {
            Ok(Ok(s)) => {
                let next_in = s.next_settled.map(|t| {
                    t.duration_since(SystemTime::now())
                        .unwrap_or_default()
                        .as_secs_f64()
                });
                tracing::info!(
                    trigger,
                    lender = who,
                    files = s.files,
                    discarded = s.discarded,
                    skipped = s.skipped,
                    unsettled = s.unsettled,
                    next_pass_in_seconds = next_in.map(|x| (x * 10.0).ceil() / 10.0),
                    stopped = s.stopped,
                    "pass complete"
                );
                self.plan_retry(&scope, &s);
            }
            Ok(Err(e)) => {
                // The store unreachable (a PostgreSQL restart, say): the files wait in pickup/
                // (uploads go on) and the pass is tried again shortly.
                tracing::error!(trigger, lender = who, error = %e, retry_in_seconds = FAILED_RETRY.as_secs(), "pass failed");
                let retry = PassSummary {
                    next_settled: Some(SystemTime::now() + FAILED_RETRY),
                    ..Default::default()
                };
                self.plan_retry(&scope, &retry);
            }
            Err(e) => tracing::error!(trigger, lender = who, error = %e, "pass panicked"),
        }
    }

    /// Files left as too young get a pass of their scope as soon as they are old enough.
    fn plan_retry(&self, scope: &Scope, s: &PassSummary) {
        let Some(at) = s.next_settled else { return };
        if self.stop.load(Ordering::SeqCst) {
            return;
        }
        {
            let mut r = lock(&self.retries);
            if r.get(scope).is_some_and(|t| *t <= at) {
                return;
            }
            r.insert(scope.clone(), at);
        }
        let me = self.clone();
        let scope = scope.clone();
        // A little after the file's settle time, so the pass surely sees it as old enough.
        let wait = at
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_add(Duration::from_millis(50));
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            {
                let mut r = lock(&me.retries);
                if r.get(&scope) == Some(&at) {
                    r.remove(&scope);
                }
            }
            if !me.stop.load(Ordering::SeqCst) {
                me.request_scope(scope, "settled").await;
            }
        });
    }

    /// Stops the running pass after its current file and waits for it; no pass starts after.
    pub async fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.running.lock().await;
    }
}

/// A cron scheduler running `passes` on `cron`. Checks the expression up front.
pub async fn start_cron(passes: Passes) -> Result<JobScheduler, ScheduleError> {
    let cron = passes.cfg.get().schedule.cron.clone();
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

/// One lender's uploads waiting for their pass.
#[derive(Clone, Copy)]
struct Burst {
    first: Instant,
    last: Instant,
}

/// Collects upload notices per lender for `debounce_uploads`.
#[derive(Default)]
pub struct UploadTrigger {
    bursts: StdMutex<HashMap<String, Burst>>,
    wake: Notify,
}

impl UploadTrigger {
    /// An upload of `lender` just became visible in its pickup folder.
    pub fn notify(&self, lender: &str) {
        let now = Instant::now();
        lock(&self.bursts)
            .entry(lender.to_string())
            .and_modify(|b| b.last = now)
            .or_insert(Burst {
                first: now,
                last: now,
            });
        self.wake.notify_one();
    }
}

/// Removes from `bursts` and returns the lenders whose pass is due at `now` (quiet for `quiet`
/// since their last upload, or waiting `max` since their first), and when the next is due.
fn take_due(
    bursts: &mut HashMap<String, Burst>,
    now: Instant,
    quiet: Duration,
    max: Duration,
) -> (Vec<String>, Option<Instant>) {
    let mut due = Vec::new();
    let mut next: Option<Instant> = None;
    bursts.retain(|lender, b| {
        let at = (b.last + quiet).min(b.first + max);
        if at <= now {
            due.push(lender.clone());
            false
        } else {
            next = Some(next.map_or(at, |n| n.min(at)));
            true
        }
    });
    due.sort();
    (due, next)
}

fn secs(x: f64) -> Duration {
    Duration::try_from_secs_f64(x).unwrap_or_default()
}

/// Runs a pass over a lender's folders once its uploads have paused for
/// `on_upload_delay_seconds`, or at the latest `on_upload_max_delay_seconds` after the first
/// upload of its burst; each lender is debounced on its own. Delays are read from `cfg` at each
/// step (they change on reload). Runs until `cancel`.
pub async fn debounce_uploads(
    passes: Passes,
    trigger: Arc<UploadTrigger>,
    cfg: Arc<LiveConfig>,
    cancel: CancellationToken,
) {
    loop {
        let c = cfg.get();
        let quiet = secs(c.schedule.on_upload_delay_seconds);
        let max = secs(c.schedule.on_upload_max_delay_seconds).max(quiet);
        let (due, next) = take_due(&mut lock(&trigger.bursts), Instant::now(), quiet, max);
        for lender in due {
            let p = passes.clone();
            tokio::spawn(async move { p.request_scope(Scope::Lender(lender), "upload").await });
        }
        let sleep = async {
            match next {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = trigger.wake.notified() => {}
            _ = sleep => {}
        }
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
        // While "a pass runs", a request only queues itself.
        passes.request("test").await;
        assert!(!lock(&passes.queue).is_empty());
        drop(guard);
        passes.request("test").await;
        assert!(lock(&passes.queue).is_empty());
        assert!(d.path().join("lenders/demo/sandbox/import/pickup").is_dir());
        passes.shutdown().await;
    }

    #[test]
    fn a_published_file_waits_a_grace_after_its_clients_last_touch() {
        let c = CompleteUploads::default();
        let p = Path::new("/x/pickup/a.json");
        let grace = Duration::from_secs(60);
        assert_eq!(c.remaining(p, grace), None);
        assert!(!c.touch(p), "an unknown file is not tracked");
        c.insert(p);
        assert!(c.remaining(p, grace).unwrap() > Duration::from_secs(59));
        assert_eq!(c.remaining(p, Duration::ZERO), Some(Duration::ZERO));
        assert!(c.touch(p));
        c.prune();
        assert!(c.is_empty(), "a file that is gone is forgotten");
    }

    #[test]
    fn queue_is_fair_and_whole_passes_cover_lenders() {
        let mut q = Queue::default();
        q.push(Scope::Lender("b".into()), "upload");
        q.push(Scope::Lender("a".into()), "upload");
        q.push(Scope::Lender("b".into()), "upload");
        assert_eq!(q.pop().unwrap().0, Scope::Lender("b".into()));
        q.push(Scope::Lender("b".into()), "upload");
        assert_eq!(q.pop().unwrap().0, Scope::Lender("a".into()));
        q.push(Scope::All, "schedule");
        assert_eq!(q.pop().unwrap().0, Scope::All);
        assert!(q.pop().is_none());
    }

    /// A file placed by other means is left while younger than the settle time, reported, and
    /// taken by a pass planned for when it is old enough; an upload the server published is
    /// taken at once.
    #[tokio::test]
    async fn young_files_get_a_pass_when_settled_and_uploads_need_no_settle() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = Config::embedded().unwrap();
        cfg.data_dir = d.path().to_path_buf();
        cfg.schedule.settle_seconds = 2;
        cfg.schedule.on_upload_delay_seconds = 0.0;
        let passes = Passes::new(Arc::new(cfg));
        passes.request("startup").await;
        let dirs = crate::layout::lender_dirs(d.path(), "demo", "sandbox");
        // The upload (a) comes before the placed file (b) in dependency order: a file not
        // ready holds back those after it.
        std::fs::write(dirs.pickup.join("employees_b.json"), b"[]").unwrap();
        std::fs::write(dirs.pickup.join("employees_a.json"), b"[]").unwrap();
        passes
            .complete_uploads()
            .insert(&dirs.pickup.join("employees_a.json"));
        passes
            .request_scope(Scope::Lender("demo".into()), "upload")
            .await;
        assert!(dirs.pickup.join("employees_b.json").exists());
        assert!(!dirs.pickup.join("employees_a.json").exists());
        assert!(passes.complete_uploads().is_empty());
        assert!(lock(&passes.retries).contains_key(&Scope::Lender("demo".into())));
        let t0 = std::time::Instant::now();
        while dirs.pickup.join("employees_b.json").exists() {
            assert!(t0.elapsed() < Duration::from_secs(10), "never retried");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        passes.shutdown().await;
    }

    #[test]
    fn debounce_is_per_lender_with_a_maximum_wait() {
        let quiet = Duration::from_millis(1000);
        let max = Duration::from_millis(3000);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut bursts: HashMap<String, Burst> = HashMap::new();
        let upload = |b: &mut HashMap<String, Burst>, l: &str, t: Instant| {
            b.entry(l.to_string())
                .and_modify(|x| x.last = t)
                .or_insert(Burst { first: t, last: t });
        };
        let mut asked: Vec<(u64, String)> = Vec::new();
        // "busy" uploads every 400 ms for 7 s; "quiet" once, at 800 ms.
        for ms in (0..7000).step_by(100) {
            if ms % 400 == 0 {
                upload(&mut bursts, "busy", at(ms));
            }
            if ms == 800 {
                upload(&mut bursts, "quiet", at(ms));
            }
            let (due, _) = take_due(&mut bursts, at(ms), quiet, max);
            asked.extend(due.into_iter().map(|l| (ms, l)));
        }
        // The quiet lender's pass comes 1 s after its upload, whatever "busy" does; the busy
        // lender never pauses, so its passes come at the maximum wait.
        assert_eq!(
            asked,
            vec![
                (1800, "quiet".to_string()),
                (3000, "busy".to_string()),
                (6200, "busy".to_string()),
            ]
        );
        let (_, next) = take_due(&mut bursts, at(7000), quiet, max);
        assert!(next.is_some());
    }
}
