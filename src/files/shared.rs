//! A pass over a PostgreSQL store that several daemons share (issue 14).
//!
//! Owns: splitting a pass into (environment, lender) jobs, running them on up to `[store]
//! parallel_lenders` threads, each with its own connection, and taking the lender's lease
//! before touching its folders (a lender another pass holds is left to it and retried soon).
//! Must not: handle a file differently from a one-daemon pass: each job is the same
//! `LenderPass` (recover, scan, claim, apply, finish), so results, messages and names are the
//! same whatever the backend. No file lock: `data_dir` may be on shared storage where `flock`
//! is not reliable; the database coordinates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::{FileEvent, LenderPass, PassError, PassOptions, PassSummary};
use crate::config::{Config, PgConfig};
use crate::layout;
use crate::store::{self, Store, StoreError};

/// When a lender's lease is busy elsewhere: how soon this daemon looks again (the other pass
/// handles the files it saw; this one takes what came later).
const BUSY_RETRY: Duration = Duration::from_secs(2);

pub fn run_pass(
    cfg: &Config,
    pg: &PgConfig,
    opts: &PassOptions<'_>,
    on_file: &mut dyn FnMut(&FileEvent),
) -> Result<PassSummary, PassError> {
    // Each environment once: migrations (under the database's lock) and retention. On a
    // thread of its own, as every connection: the client runs its own small runtime, which
    // must not start or stop on an async thread (`bulkload run` is one).
    std::thread::scope(|s| {
        s.spawn(|| -> Result<(), StoreError> {
            for env in &cfg.environments {
                let store = store::open_env(cfg, env)?;
                if let Err(e) = crate::retention::prune_problems(cfg, env, &*store) {
                    tracing::warn!(env = %env, error = %e, "retention: cannot prune problems");
                }
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| Err(StoreError::Backend("store thread panicked".into())))
    })?;
    let mut jobs = Vec::new();
    for env in &cfg.environments {
        for lender in &cfg.lenders {
            if opts.lenders.is_some_and(|only| !only.contains(&lender.id)) {
                continue;
            }
            jobs.push((env.as_str(), lender));
        }
    }
    // A one-shot `bulkload run` (no writer queue) waits for lenders another pass holds (a
    // killed pass's lease expires); a daemon leaves them and looks again soon.
    let one_shot = opts.queue.is_none();
    let deadline = Instant::now() + pg.lease + Duration::from_secs(2);
    let mut total = PassSummary::default();
    loop {
        let (summary, busy) = run_jobs(cfg, pg, opts, on_file, &jobs)?;
        let waiting = one_shot && !busy.is_empty() && Instant::now() < deadline;
        merge(&mut total, &summary, !waiting);
        if !waiting || summary.stopped {
            return Ok(total);
        }
        std::thread::sleep(Duration::from_millis(250));
        jobs = busy;
    }
}

type Job<'c> = (&'c str, &'c crate::config::Lender);

/// Runs `jobs` on the worker threads; returns the summary and the jobs whose lender was busy.
fn run_jobs<'c>(
    cfg: &'c Config,
    pg: &PgConfig,
    opts: &PassOptions<'_>,
    on_file: &mut dyn FnMut(&FileEvent),
    jobs: &[Job<'c>],
) -> Result<(PassSummary, Vec<Job<'c>>), PassError> {
    // Events reach `on_file` on this thread, in the order the workers send them.
    let (events, heard) = std::sync::mpsc::channel::<FileEvent>();
    let total = Mutex::new(PassSummary::default());
    let failure: Mutex<Option<PassError>> = Mutex::new(None);
    let busy: Mutex<Vec<Job<'c>>> = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let workers = pg.parallel_lenders.min(jobs.len()).max(1);
    let (total_r, failure_r, next_r, busy_r) = (&total, &failure, &next, &busy);
    std::thread::scope(|s| {
        for _ in 0..workers {
            let events = events.clone();
            let (total, failure, next, busy) = (total_r, failure_r, next_r, busy_r);
            s.spawn(move || {
                // One connection per environment and thread.
                let mut stores: HashMap<&str, Box<dyn Store>> = HashMap::new();
                loop {
                    if opts.stop.is_some_and(|s| s.load(Ordering::SeqCst))
                        || lock(failure).is_some()
                    {
                        lock(total).stopped |= opts.stop.is_some();
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&(env, lender)) = jobs.get(i) else {
                        return;
                    };
                    let store = match stores.get_mut(env) {
                        Some(s) => s,
                        None => match store::open_env(cfg, env) {
                            Ok(s) => stores.entry(env).or_insert(s),
                            Err(e) => {
                                lock(failure).get_or_insert(PassError::Store(e));
                                return;
                            }
                        },
                    };
                    let mut summary = PassSummary::default();
                    let r = one_lender(cfg, env, lender, &mut **store, opts, &events, &mut summary);
                    merge(&mut lock(total), &summary, true);
                    match r {
                        Ok(false) => {}
                        Ok(true) => lock(busy).push((env, lender)),
                        Err(e) => {
                            // The connection may be broken: the next job opens a fresh one.
                            stores.remove(env);
                            lock(failure).get_or_insert(e);
                            return;
                        }
                    }
                }
            });
        }
        drop(events);
        for e in heard {
            on_file(&e);
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    Ok((
        total.into_inner().unwrap_or_else(|e| e.into_inner()),
        busy.into_inner().unwrap_or_else(|e| e.into_inner()),
    ))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds `s` to `total`; `s`'s retry time only when `with_retry` (a one-shot run that waits
/// for busy lenders itself does not report them).
fn merge(total: &mut PassSummary, s: &PassSummary, with_retry: bool) {
    total.files += s.files;
    total.discarded += s.discarded;
    total.skipped += s.skipped;
    total.stopped |= s.stopped;
    total.unsettled += s.unsettled;
    let next = if with_retry { s.next_settled } else { None };
    total.next_settled = match (total.next_settled, next) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
}

/// One lender of one environment under its lease.
fn one_lender(
    cfg: &Config,
    env: &str,
    lender: &crate::config::Lender,
    store: &mut dyn Store,
    opts: &PassOptions<'_>,
    events: &std::sync::mpsc::Sender<FileEvent>,
    summary: &mut PassSummary,
) -> Result<bool, PassError> {
    if !store.take_lease(&lender.id)? {
        tracing::debug!(env, lender = %lender.id, "lender busy in another pass; looking again soon");
        summary.next_settled = Some(SystemTime::now() + BUSY_RETRY);
        return Ok(true);
    }
    let dirs = layout::lender_dirs(&cfg.data_dir, &lender.id, env);
    // The receiver lives until every worker is done.
    let mut emit = |e: &FileEvent| {
        let _ = events.send(e.clone());
    };
    let r = LenderPass::new(cfg, env, lender, &dirs, store, opts, &mut emit, summary).run();
    let released = store.release_lease();
    match r {
        Ok(()) => released.map(|()| false).map_err(PassError::Store),
        Err(PassError::Store(StoreError::LeaseLost(l))) => {
            tracing::warn!(env, lender = %l, "lease lost to another daemon; its files are left to it");
            summary.next_settled = Some(SystemTime::now() + BUSY_RETRY);
            Ok(true)
        }
        Err(PassError::Store(e)) => Err(PassError::Store(e)),
        // One lender's folders failing never stops the others.
        Err(e) => {
            tracing::error!(env, lender = %lender.id, error = %e, "lender skipped this pass");
            summary.skipped += 1;
            emit(&FileEvent::Skipped {
                env: env.to_string(),
                lender: lender.id.clone(),
                name: "(all files)".into(),
                reason: e.to_string(),
            });
            Ok(false)
        }
    }
}
