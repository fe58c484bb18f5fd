//! Files: the pickup-file intake. One pass over every lender and environment.
//!
//! Owns: the pass lock, the folder tree and lookups at the start of a pass, recovery of loads a
//! killed pass left unfinished, scanning `pickup/` (ignored names, settle time), dependency order,
//! claiming a file, deciding what it is (blank, refused, or records), handing it to
//! `engine::apply_load`, the result file and the processed rotation.
//! Must not: apply records itself (that is the engine's), move a file before its load is
//! committed, or stop a pass because one file or one lender is bad: a failure tied to one file
//! becomes that file's result (or a logged, counted skip); only a store or data-folder failure
//! stops a pass.
//!
//! Exactly once: a file is claimed by renaming it from `pickup/` into the private
//! `work/<env>/<lender>/<claim>__<name>` before it is even opened; its records and its load row
//! (keyed by the claim) commit in one transaction; only then are the result written and the
//! file moved to `processed/`, and the load marked finished. Each step after the commit is
//! idempotent, and every pass first completes what a killed one left (`recover`).

use chrono::Utc;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use crate::config::{Config, Lender};
use crate::engine::{self, LoadRequest, WriterQueue};
use crate::failpoint;
use crate::fsutil::{self, rename_durable};
use crate::input::csv::CsvReader;
use crate::input::json::{self as json_input, JsonReader};
use crate::input::{Bounds, FileError, Flow, Format, ReadError, RecordReader, Stopped, Value};
use crate::layout::{self, FileClass, LenderDirs};
use crate::records::Kind;
use crate::result::{write_result, ResultHeader};
use crate::store::{self, LoadKey, LoadRow, Source, Store, StoreError};

mod shared;

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> PassError + 'p {
    move |source| PassError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// How a pass behaves.
#[derive(Default)]
pub struct PassOptions<'a> {
    /// Files whose mtime is younger than this are left for the next pass.
    pub settle: Duration,
    /// Show a progress bar on a terminal while a large file is applied.
    pub progress: bool,
    /// Set to stop the pass after the file it is on (graceful shutdown).
    pub stop: Option<&'a AtomicBool>,
    /// The daemon's single writer (a pass takes its turn); `None` in a one-shot `bulkload run`.
    pub queue: Option<&'a WriterQueue>,
    /// Only these lenders' folders (a pass started by their uploads); `None`: every lender.
    pub lenders: Option<&'a [String]>,
    /// For pickup files the caller knows are complete (renamed in by the SFTP server on
    /// close): how much longer to leave them (their client may still be checking them; zero:
    /// take now), instead of `settle`. `None` from it: `settle` applies.
    pub complete: Option<&'a CompleteFn<'a>>,
}

/// See `PassOptions::complete`.
pub type CompleteFn<'a> = dyn Fn(&Path) -> Option<Duration> + Sync + 'a;

/// What happened to one pickup file.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one event per file: size does not matter
pub enum FileEvent {
    /// A blank file, deleted without a result.
    Discarded {
        env: String,
        lender: String,
        name: String,
    },
    /// A file with its load (new, or completed after an interrupted pass).
    Loaded {
        env: String,
        lender: String,
        load: LoadRow,
        processed_name: String,
        result_name: String,
    },
    /// A file (or a lender's folders) that could not be handled this pass; tried again next pass.
    Skipped {
        env: String,
        lender: String,
        name: String,
        reason: String,
    },
}

impl FileEvent {
    /// The one-line summary `bulkload run` prints.
    pub fn summary(&self) -> String {
        match self {
            FileEvent::Discarded { env, lender, name } => {
                format!("{env}/{lender} {name}: blank file discarded (no result)")
            }
            FileEvent::Loaded {
                env,
                lender,
                load,
                processed_name,
                result_name,
            } => {
                let c = &load.counts;
                let what = match &load.error_message {
                    Some(e) => format!("refused: {e}"),
                    None => format!(
                        "{} created, {} updated, {} added, {} deleted, {} failed",
                        c.create_success,
                        c.update_success,
                        c.add_success,
                        c.delete_success,
                        c.failures()
                    ),
                };
                if load.dry_run {
                    return format!(
                        "{env}/{lender} validate/{}: dry run {} {what}, nothing applied -> results/{result_name}",
                        load.pickup_name, load.id
                    );
                }
                format!(
                    "{env}/{lender} {}: load {} {what} -> processed/{processed_name}, results/{result_name}",
                    load.pickup_name, load.id
                )
            }
            FileEvent::Skipped {
                env,
                lender,
                name,
                reason,
            } => format!("{env}/{lender} {name}: skipped, to be tried again next pass: {reason}"),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct PassSummary {
    pub files: usize,
    pub discarded: usize,
    /// Files or lenders skipped after a failure of their own (logged; tried again next pass).
    pub skipped: usize,
    /// The pass stopped early on request.
    pub stopped: bool,
    /// Pickup files left for a later pass because they were younger than the settle time.
    pub unsettled: usize,
    /// When the first of the `unsettled` files becomes old enough.
    pub next_settled: Option<SystemTime>,
}

/// Runs one pass over every lender and environment. `on_file` hears about each file as it is done.
pub fn run_pass(
    cfg: &Config,
    opts: &PassOptions<'_>,
    on_file: &mut dyn FnMut(&FileEvent),
) -> Result<PassSummary, PassError> {
    let _timer = crate::metrics::PassTimer::start(); // issue 13: passes_total, pass duration
    fs::create_dir_all(&cfg.data_dir).map_err(io_err("cannot create data dir", &cfg.data_dir))?;
    if let Some(pg) = &cfg.store.postgres {
        // Several daemons share a PostgreSQL store: lender leases replace the pass lock and
        // the single writer, and lenders are applied in parallel.
        return crate::files::shared::run_pass(cfg, pg, opts, on_file);
    }
    let _turn = opts.queue.map(WriterQueue::turn);
    let lock_path = layout::pass_lock_path(&cfg.data_dir);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("cannot open pass lock", &lock_path))?;
    lock.lock()
        .map_err(io_err("cannot take pass lock", &lock_path))?;

    let mut summary = PassSummary::default();
    for env in &cfg.environments {
        let mut store = store::open_env(cfg, env)?;
        if let Err(e) = crate::retention::prune_problems(cfg, env, &*store) {
            tracing::warn!(env = %env, error = %e, "retention: cannot prune problems");
        }
        for lender in &cfg.lenders {
            if opts.lenders.is_some_and(|only| !only.contains(&lender.id)) {
                continue;
            }
            let dirs = layout::lender_dirs(&cfg.data_dir, &lender.id, env);
            let mut lp = LenderPass {
                cfg,
                env,
                lender,
                dirs: &dirs,
                store: &mut *store,
                opts,
                on_file,
                summary: &mut summary,
            };
            match lp.run() {
                Ok(()) => {}
                Err(PassError::Store(e)) => return Err(PassError::Store(e)),
                // One lender's folders failing never stops the others.
                Err(e) => {
                    tracing::error!(env = %env, lender = %lender.id, error = %e, "lender skipped this pass");
                    summary.skipped += 1;
                    on_file(&FileEvent::Skipped {
                        env: env.clone(),
                        lender: lender.id.clone(),
                        name: "(all files)".into(),
                        reason: e.to_string(),
                    });
                }
            }
            if summary.stopped {
                return Ok(summary);
            }
        }
    }
    Ok(summary)
}

pub(crate) struct LenderPass<'a, 'o> {
    cfg: &'a Config,
    env: &'a str,
    lender: &'a Lender,
    dirs: &'a LenderDirs,
    store: &'a mut dyn Store,
    opts: &'a PassOptions<'o>,
    on_file: &'a mut dyn FnMut(&FileEvent),
    summary: &'a mut PassSummary,
}

impl<'a, 'o> LenderPass<'a, 'o> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        cfg: &'a Config,
        env: &'a str,
        lender: &'a Lender,
        dirs: &'a LenderDirs,
        store: &'a mut dyn Store,
        opts: &'a PassOptions<'o>,
        on_file: &'a mut dyn FnMut(&FileEvent),
        summary: &'a mut PassSummary,
    ) -> Self {
        LenderPass {
            cfg,
            env,
            lender,
            dirs,
            store,
            opts,
            on_file,
            summary,
        }
    }
}

impl LenderPass<'_, '_> {
    pub(crate) fn run(&mut self) -> Result<(), PassError> {
        let d = self.dirs;
        d.ensure_tree()
            .map_err(io_err("cannot create folders under", &d.home))?;
        crate::retention::prune_files(&self.cfg.retention, d, self.env, &self.lender.id);
        for dir in [&d.results, &d.lookups] {
            fsutil::remove_stale_temps(dir).map_err(io_err("cannot clean", dir))?;
        }
        crate::lookups::write_all(self.cfg, self.lender, &d.lookups)
            .map_err(io_err("cannot write lookups in", &d.lookups))?;
        self.recover()?;
        let pickup = self.scan()?;
        // Dry runs last: they see the store as this pass's files left it.
        let validate = self.scan_validate()?;
        let queue = pickup
            .into_iter()
            .map(|n| (n, false))
            .chain(validate.into_iter().map(|n| (n, true)));
        for (name, dry_run) in queue {
            if self.opts.stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                self.summary.stopped = true;
                return Ok(());
            }
            // Several daemons: the lender stays ours only while its lease does.
            if !self.store.renew_lease()? {
                return Err(PassError::Store(StoreError::LeaseLost(
                    self.lender.id.clone(),
                )));
            }
            let from = if dry_run { &d.validate } else { &d.pickup }.join(&name);
            let claim = claim_name_for(&name, dry_run, false);
            let claimed = d.work.join(&claim);
            match rename_durable(&from, &claimed) {
                Ok(()) => {}
                // Gone since the scan (the lender removed it): nothing to do.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.skip(&name, format!("cannot claim it: {e}"));
                    continue;
                }
            }
            failpoint::hit("claimed");
            self.guarded(&claim, |lp| lp.process(&claim))?;
        }
        Ok(())
    }

    /// Files in `validate/` ready for a dry run, in dependency order (the same rules as
    /// `pickup/`: ignored names, settle time, no folders).
    fn scan_validate(&mut self) -> Result<Vec<String>, PassError> {
        let now = SystemTime::now();
        let mut names = Vec::new();
        for (name, _, meta) in candidates(&self.dirs.validate, true, self.env, &self.lender.id)? {
            if age_of(&meta, now) < self.opts.settle && !meta.file_type().is_symlink() {
                continue;
            }
            names.push(name);
        }
        names.sort_by_key(|n| layout::order_key(n));
        Ok(names)
    }

    /// Runs one file's step; a failure of its own (not the store's) becomes a logged, counted
    /// skip, and the pass goes on.
    fn guarded(
        &mut self,
        what: &str,
        step: impl FnOnce(&mut Self) -> Result<(), PassError>,
    ) -> Result<(), PassError> {
        match step(self) {
            Err(PassError::Io {
                what: w,
                path,
                source,
            }) => {
                self.skip(what, format!("{w} {}: {source}", path.display()));
                Ok(())
            }
            other => other,
        }
    }

    fn skip(&mut self, name: &str, reason: String) {
        tracing::error!(env = self.env, lender = %self.lender.id, file = %name, %reason, "file skipped this pass");
        self.summary.skipped += 1;
        (self.on_file)(&FileEvent::Skipped {
            env: self.env.to_string(),
            lender: self.lender.id.clone(),
            name: name.to_string(),
            reason,
        });
    }

    /// Pickup files ready for this pass, in dependency order. A file not ready yet (younger than
    /// the settle time, or an upload its client touched lately) holds back every file after it
    /// in that order: a lender's files are applied in their order even when one of them is
    /// late (a later file of another daemon's upload, a loans file whose borrowers file is
    /// still being placed), so nothing after it is applied before it.
    fn scan(&mut self) -> Result<Vec<String>, PassError> {
        let now = SystemTime::now();
        let mut found = Vec::new();
        for (name, path, meta) in candidates(&self.dirs.pickup, false, self.env, &self.lender.id)? {
            let age = age_of(&meta, now);
            let published = self.opts.complete.and_then(|f| f(&path));
            let wait = match published {
                Some(wait) => wait,
                None if meta.file_type().is_symlink() => Duration::ZERO,
                None => self.opts.settle.saturating_sub(age),
            };
            found.push((layout::order_key(&name), wait, published.is_some(), age));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let ready = found
            .iter()
            .position(|(_, wait, _, _)| !wait.is_zero())
            .unwrap_or(found.len());
        let mut names = Vec::with_capacity(ready);
        let mut found = found.into_iter();
        names.extend(found.by_ref().take(ready).map(|((_, name), ..)| name));
        let mut blocker: Option<String> = None;
        for ((_, name), wait, published, age) in found {
            if let Some(first) = &blocker {
                self.summary.unsettled += 1;
                tracing::info!(env = self.env, lender = %self.lender.id, file = %name, behind = %first, "file left for a later pass: a file before it in dependency order is not ready yet");
                continue;
            }
            let settled_at = now + wait;
            self.summary.unsettled += 1;
            self.summary.next_settled = Some(
                self.summary
                    .next_settled
                    .map_or(settled_at, |t| t.min(settled_at)),
            );
            if published {
                tracing::debug!(env = self.env, lender = %self.lender.id, file = %name, wait_ms = wait.as_millis() as u64, "upload left for a moment: its client touched it lately");
            } else {
                tracing::info!(env = self.env, lender = %self.lender.id, file = %name, age_ms = age.as_millis() as u64, settle_seconds = self.opts.settle.as_secs(), "file left for a later pass: younger than the settle time");
            }
            blocker = Some(name);
        }
        Ok(names)
    }

    /// Completes what an interrupted pass left: committed loads whose result or move is
    /// missing, and a claimed file whose load never committed (applied now, from scratch).
    fn recover(&mut self) -> Result<(), PassError> {
        for load in self.store.unfinished(&self.lender.id)? {
            tracing::info!(env = self.env, lender = %self.lender.id, load = load.id, "completing an interrupted load");
            let name = load.pickup_name.clone();
            self.guarded(&name, |lp| lp.finish(load))?;
        }
        let work = &self.dirs.work;
        let mut claims: Vec<String> = fs::read_dir(work)
            .map_err(io_err("cannot list", work))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect();
        claims.sort();
        for claim in claims {
            if claim.split_once("__").is_none() {
                tracing::warn!(env = self.env, lender = %self.lender.id, file = %claim, "unexpected file in work folder; left alone");
                continue;
            }
            match self.store.load_by_key(&self.lender.id, &claim)? {
                Some(load) => self.guarded(&claim, |lp| lp.finish(load))?,
                None => self.guarded(&claim, |lp| lp.process(&claim))?,
            }
        }
        Ok(())
    }

    fn bounds(&self) -> Bounds {
        Bounds {
            max_record_bytes: self.cfg.limits.max_record_bytes,
            max_records: self.cfg.limits.max_records,
        }
    }

    /// Decides what a claimed file is and applies it in one transaction, then finishes it.
    fn process(&mut self, claim: &str) -> Result<(), PassError> {
        let (_, name) = claim.split_once("__").unwrap_or(("", claim));
        let name = name.to_string();
        let path = self.dirs.work.join(claim);
        let span =
            tracing::info_span!("file", env = self.env, lender = %self.lender.id, file = %name);
        let _g = span.enter();

        // Blank files are discarded without a result. Decided only now that the file is
        // claimed: an upload renamed onto its pickup name meanwhile is a new file, untouched.
        if !name.ends_with(TOO_LONG_MARK) {
            if let Ok(true) = fsutil::open_nofollow(&path).and_then(json_input::is_blank) {
                fs::remove_file(&path).map_err(io_err("cannot remove blank file", &path))?;
                tracing::info!("blank file discarded");
                self.summary.discarded += 1;
                (self.on_file)(&FileEvent::Discarded {
                    env: self.env.to_string(),
                    lender: self.lender.id.clone(),
                    name,
                });
                return Ok(());
            }
        }

        let limits = self.cfg.limits;
        let bounds = self.bounds();
        let kind: Result<Kind, FileError> = if name.ends_with(TOO_LONG_MARK) {
            Err(FileError::NameTooLong {
                limit: layout::MAX_PICKUP_NAME_BYTES,
            })
        } else {
            match layout::classify(&name) {
                FileClass::Records(k) => Ok(k),
                FileClass::UnknownType => Err(FileError::UnknownType {
                    name: name.clone(),
                    known: Kind::ALL.map(Kind::prefix).join(", "),
                }),
                FileClass::NotJson(k) => Err(FileError::NotJson {
                    name: name.clone(),
                    noun: k.noun(),
                    prefix: k.prefix(),
                }),
            }
        };
        let mut bar = None;
        let input: engine::Input<'_> = match &kind {
            Err(e) => Err((*e).clone()),
            Ok(_) => match open_input(&path, limits.max_file_bytes) {
                Err(e) => Err(e),
                Ok((file, len)) => {
                    let b = progress_bar(self.opts.progress, len, &name);
                    bar = Some(b.clone());
                    match (Format::of_name(&name), &kind) {
                        (Some(Format::Csv), Ok(k)) => {
                            Ok(Box::new(csv_reader(file, bounds, *k)) as Box<dyn RecordReader>)
                        }
                        _ => {
                            let reader = JsonReader::new(file, bounds)
                                .with_progress(Box::new(move |n| b.set_position(n)));
                            Ok(Box::new(reader) as Box<dyn RecordReader>)
                        }
                    }
                }
            },
        };
        let key = LoadKey {
            key: claim.to_string(),
            supplied_name: name.clone(),
        };
        let req = LoadRequest {
            lender: self.lender,
            lookups: &self.cfg.lookups,
            kind,
            key: &key,
            source: source_of_claim(claim),
            dry_run: is_dry_claim(claim),
        };
        let outcome = engine::apply_load(&mut *self.store, &req, input)?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        self.finish(outcome.load)
    }

    /// Writes the failed-records file and the result file, rotates `processed/`, moves the
    /// claimed file there (a dry run's is deleted instead), and marks the load finished. Every
    /// step is safe to repeat.
    fn finish(&mut self, load: LoadRow) -> Result<(), PassError> {
        let d = self.dirs;
        let name = &load.pickup_name;
        let processed_name = layout::processed_stamped_name(name, &load.stamp);
        let result_name = if load.dry_run {
            layout::validate_result_name(name, &load.stamp)
        } else {
            layout::result_name(name, &load.stamp)
        };
        let header = ResultHeader {
            id: load.id,
            pickup_name: name.clone(),
            processed_name: processed_name.clone(),
            source: load.source.clone(),
            started_at: load.started_at.clone(),
            ended_at: load.ended_at.clone(),
            error_message: load.error_message.clone(),
            counts: load.counts,
            dry_run: load.dry_run,
        };
        let claimed = d.work.join(&load.claim);
        // The failed records come from the claimed file, which stays in work/ until the move
        // below: a rerun after a crash writes the same file again.
        if load.error_message.is_none() && load.counts.failures() > 0 {
            if let (Some(format), Ok(file)) =
                (Format::of_name(name), fsutil::open_nofollow(&claimed))
            {
                let failed_path =
                    d.results
                        .join(layout::failed_name(name, &load.stamp, format.ext()));
                let bounds = self.bounds();
                let store = &*self.store;
                let mut file = Some(file);
                fsutil::write_atomic_with(&failed_path, &mut |w| {
                    let file = match file.take() {
                        Some(f) => f,
                        None => fsutil::open_nofollow(&claimed)?,
                    };
                    write_failed(store, &load, format, file, bounds, w)
                })
                .map_err(io_err("cannot write failed records", &failed_path))?;
            }
        }
        let result_path = d.results.join(&result_name);
        let store = &*self.store;
        fsutil::write_atomic_with(&result_path, &mut |w| {
            write_result(w, &header, &mut |emit| {
                store.for_each_problem(load.row, emit)
            })
        })
        .map_err(io_err("cannot write result", &result_path))?;
        failpoint::hit("result");

        if load.dry_run {
            match fs::remove_file(&claimed) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("cannot remove dry-run file", &claimed)(e)),
            }
            self.store.mark_finished(load.row)?;
            tracing::info!(load = load.id, file = %name, failed = load.counts.failures(), "dry run done");
            self.summary.files += 1;
            (self.on_file)(&FileEvent::Loaded {
                env: self.env.to_string(),
                lender: self.lender.id.clone(),
                load,
                processed_name,
                result_name,
            });
            return Ok(());
        }

        let claimed = d.work.join(&load.claim);
        if claimed.symlink_metadata().is_ok() {
            let last = d.processed.join(layout::processed_last_name(name));
            if last.symlink_metadata().is_ok() {
                let prev = self
                    .store
                    .previous_stamp(&self.lender.id, name, load.row)?
                    .unwrap_or_else(|| mtime_stamp(&last));
                let target = free_name(&d.processed, name, &prev);
                rename_durable(&last, &target).map_err(io_err("cannot rotate", &last))?;
                failpoint::hit("rotated");
            }
            rename_durable(&claimed, &last)
                .map_err(io_err("cannot move to processed", &claimed))?;
            failpoint::hit("moved");
        }
        self.store.mark_finished(load.row)?;
        let c = &load.counts;
        tracing::info!(env = self.env, lender = %self.lender.id, load = load.id, file = %name,
            source = %load.source, created = c.create_success, updated = c.update_success,
            added = c.add_success, deleted = c.delete_success, create_failed = c.create_failure,
            update_failed = c.update_failure, add_failed = c.add_failure,
            delete_failed = c.delete_failure, mode_failed = c.mode_failure,
            error = load.error_message.as_deref().unwrap_or(""), processed = %processed_name,
            result = %result_name, "file processed");
        crate::metrics::count_load(
            self.env,
            &self.lender.id,
            &load.source,
            load.error_message.as_deref(),
            c,
        );
        self.summary.files += 1;
        (self.on_file)(&FileEvent::Loaded {
            env: self.env.to_string(),
            lender: self.lender.id.clone(),
            load,
            processed_name,
            result_name,
        });
        Ok(())
    }
}

/// The files of a scanned folder (`pickup/` or `validate/`) that may be claimed: UTF-8 names
/// (others are logged and skipped), not ignored names, not folders; with their metadata (not
/// followed). `missing_ok`: a folder not there yet lists nothing.
fn candidates(
    dir: &Path,
    missing_ok: bool,
    env: &str,
    lender: &str,
) -> Result<Vec<(String, PathBuf, fs::Metadata)>, PassError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if missing_ok && e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("cannot list", dir)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("cannot list", dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            tracing::warn!(env, lender, dir = %dir.display(), "file name is not UTF-8; skipped");
            continue;
        };
        if layout::is_ignored_name(&name) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            continue;
        }
        found.push((name, path, meta));
    }
    Ok(found)
}

/// How long ago a file was last modified (zero for a time in the future or unknown).
fn age_of(meta: &fs::Metadata, now: SystemTime) -> Duration {
    meta.modified()
        .ok()
        .and_then(|m| now.duration_since(m).ok())
        .unwrap_or(Duration::ZERO)
}

/// Ends the name part of a claim whose pickup name was too long to keep: the file is refused
/// with `FileError::NameTooLong`, under its shortened name.
const TOO_LONG_MARK: &str = "~name-too-long";

/// `<stamp>-<random>[-web][-validate]__<name>`: unique, sortable, and within the file system's
/// 255 bytes. A name over `layout::MAX_PICKUP_NAME_BYTES` (possible only for files placed by
/// other means than the daemon's SFTP server, which refuses them) keeps its start and gets
/// `TOO_LONG_MARK`.
fn claim_name_for(name: &str, dry_run: bool, web: bool) -> String {
    let kept = if name.len() > layout::MAX_PICKUP_NAME_BYTES {
        let mut cut = layout::MAX_PICKUP_NAME_BYTES - TOO_LONG_MARK.len();
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}{TOO_LONG_MARK}", &name[..cut])
    } else {
        name.to_string()
    };
    format!(
        "{}-{}{}{}__{}",
        layout::stamp(Utc::now()),
        &uuid::Uuid::new_v4().simple().to_string()[..8],
        if web { WEB_MARK } else { "" },
        if dry_run { DRY_RUN_MARK } else { "" },
        kept
    )
}

/// The claim a web console upload is placed under in `work/` (by the console itself, which
/// then asks for a pass of the lender): the pass's recovery applies it like any claimed file,
/// exactly once, with `Source` "Web" (the mark survives a crash, as the dry-run mark does).
pub fn web_claim_name(name: &str, dry_run: bool) -> String {
    claim_name_for(name, dry_run, true)
}

/// Ends the claim part of a file from `validate/`: after a crash, recovery knows the claimed
/// file is a dry run.
const DRY_RUN_MARK: &str = "-validate";

/// Marks the claim part of a web console upload (before any `DRY_RUN_MARK`). The random part
/// is hex, so it never reads as this mark.
const WEB_MARK: &str = "-web";

fn is_dry_claim(claim: &str) -> bool {
    claim
        .split_once("__")
        .is_some_and(|(c, _)| c.ends_with(DRY_RUN_MARK))
}

fn source_of_claim(claim: &str) -> Source {
    let web = claim
        .split_once("__")
        .is_some_and(|(c, _)| c.split('-').any(|part| part == &WEB_MARK[1..]));
    if web {
        Source::Web
    } else {
        Source::Sftp
    }
}

/// The CSV reader of a record type: its header is checked against the type's fields.
pub fn csv_reader<R: io::Read + Send>(file: R, bounds: Bounds, kind: Kind) -> CsvReader<R> {
    let spec = kind.spec();
    CsvReader::new(file, bounds).with_header_check(Box::new(move |h| {
        crate::records::convert::check_csv_header(spec.fields, spec.aliases, h)
    }))
}

/// The problems of a load, a page at a time, taken in step with the input's records.
struct ProblemCursor<'s> {
    store: &'s dyn Store,
    row: store::RowId,
    after: i64,
    page: std::collections::VecDeque<(i64, i64, String)>,
    done: bool,
}

impl ProblemCursor<'_> {
    fn fill(&mut self) -> io::Result<()> {
        if self.page.is_empty() && !self.done {
            let page = self
                .store
                .problems_page(self.row, self.after, 512)
                .map_err(io::Error::other)?;
            if page.is_empty() {
                self.done = true;
            }
            if let Some((seq, _, _)) = page.last() {
                self.after = *seq;
            }
            self.page.extend(page);
        }
        Ok(())
    }
    /// The messages of record `index` (problems come in record order).
    fn take(&mut self, index: i64) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        loop {
            self.fill()?;
            match self.page.front() {
                Some((_, i, _)) if *i < index => {
                    self.page.pop_front();
                }
                Some((_, i, _)) if *i == index => {
                    if let Some((_, _, m)) = self.page.pop_front() {
                        out.push(m);
                    }
                }
                _ => return Ok(out),
            }
        }
    }
    fn exhausted(&mut self) -> io::Result<bool> {
        self.fill()?;
        Ok(self.done && self.page.is_empty())
    }
}

/// Writes the failed records of a load: the input's records that have problems, in its format,
/// each with its problems (a `_problems` member or column). Streams the input again beside the
/// stored problems: memory does not grow with either.
fn write_failed(
    store: &dyn Store,
    load: &LoadRow,
    format: Format,
    file: File,
    bounds: Bounds,
    out: &mut dyn io::Write,
) -> io::Result<()> {
    let kind = match layout::classify(&load.pickup_name) {
        FileClass::Records(k) => k,
        _ => return Ok(()),
    };
    let mut cursor = ProblemCursor {
        store,
        row: load.row,
        after: 0,
        page: Default::default(),
        done: false,
    };
    let mut failure: Option<io::Error> = None;
    let keep = |r: io::Result<()>, failure: &mut Option<io::Error>| -> Flow {
        r.map_err(|e| {
            *failure = Some(e);
            Stopped
        })
    };
    let problems_key = crate::records::convert::PROBLEMS_MEMBER;
    let read = match format {
        Format::Json => {
            out.write_all(b"[")?;
            let mut first = true;
            let mut reader = JsonReader::new(file, bounds);
            let read = reader.read(&mut |index, value| {
                let step = (|| -> io::Result<bool> {
                    let msgs = cursor.take(index as i64)?;
                    if !msgs.is_empty() {
                        out.write_all(if first { b"\n" } else { b",\n" })?;
                        first = false;
                        let list = Value::Array(msgs.into_iter().map(Value::String).collect());
                        let value = match value {
                            Value::Object(m) => Value::Object(
                                m.into_iter()
                                    .filter(|(k, _)| !k.eq_ignore_ascii_case(problems_key))
                                    .collect(),
                            ),
                            other => other,
                        };
                        value.write_json(out, &[(problems_key, &list)])?;
                    }
                    cursor.exhausted()
                })();
                match step {
                    Ok(true) => Err(Stopped),
                    Ok(false) => Ok(()),
                    Err(e) => keep(Err(e), &mut failure),
                }
            });
            if failure.is_none() {
                out.write_all(if first { b"]\n" } else { b"\n]\n" })?;
            }
            read
        }
        Format::Csv => {
            let mut w = crate::input::csv::writer(&mut *out);
            let mut header_written = false;
            let mut reader = csv_reader(file, bounds, kind);
            let read = reader.read(&mut |index, value| {
                let step = (|| -> io::Result<bool> {
                    let msgs = cursor.take(index as i64)?;
                    if let (false, Value::Row { cells, .. }) = (msgs.is_empty(), &value) {
                        let kept: Vec<&(String, String)> = cells
                            .iter()
                            .filter(|(k, _)| !k.trim().eq_ignore_ascii_case(problems_key))
                            .collect();
                        if !header_written {
                            header_written = true;
                            let mut names: Vec<&str> =
                                kept.iter().map(|(k, _)| k.as_str()).collect();
                            names.push(problems_key);
                            crate::input::csv::write_row(&mut w, &names)?;
                        }
                        let joined = msgs.join("\n");
                        let mut row: Vec<&str> = kept.iter().map(|(_, v)| v.as_str()).collect();
                        row.push(&joined);
                        crate::input::csv::write_row(&mut w, &row)?;
                    }
                    cursor.exhausted()
                })();
                match step {
                    Ok(true) => Err(Stopped),
                    Ok(false) => Ok(()),
                    Err(e) => keep(Err(e), &mut failure),
                }
            });
            w.flush()?;
            read
        }
    };
    if let Some(e) = failure {
        return Err(e);
    }
    match read {
        Ok(_) | Err(ReadError::Stopped) => Ok(()),
        // The file was applied, so it reads; if not, it changed: say so rather than guess.
        Err(ReadError::File(e)) => Err(io::Error::other(format!("re-reading the file: {e}"))),
    }
}

/// Opens a claimed file for reading: never through a link, never over the size limit.
fn open_input(path: &Path, max_bytes: u64) -> Result<(File, u64), FileError> {
    let opened = fsutil::open_nofollow(path).and_then(|f| {
        let len = f.metadata()?.len();
        Ok((f, len))
    });
    match opened {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(FileError::Symlink),
        Err(e) => Err(FileError::Io(e.to_string())),
        Ok((_, len)) if len > max_bytes => Err(FileError::FileTooLarge {
            len,
            limit: max_bytes,
        }),
        Ok(ok) => Ok(ok),
    }
}

fn mtime_stamp(p: &Path) -> String {
    let t = p
        .symlink_metadata()
        .and_then(|m| m.modified())
        .map(chrono::DateTime::<Utc>::from)
        .unwrap_or_else(|_| Utc::now());
    layout::stamp(t)
}

/// `processed/<stem>.<stamp>.<ext>`, moved one millisecond on while that name is taken, so a
/// rotation never overwrites an older processed file.
fn free_name(dir: &Path, name: &str, stamp: &str) -> PathBuf {
    let mut s = stamp.to_string();
    loop {
        let p = dir.join(layout::processed_stamped_name(name, &s));
        if p.symlink_metadata().is_err() {
            return p;
        }
        s = layout::next_stamp(&s);
    }
}

fn progress_bar(enabled: bool, len: u64, name: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !enabled || !io::stderr().is_terminal() || len < (8 << 20) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_names_fit_whatever_the_pickup_name() {
        for len in [1, 100, 209, 210, 225, 255, 1000] {
            let name = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let c = claim_name_for(&name, true, false);
            assert!(is_dry_claim(&c));
            assert!(!is_dry_claim(&claim_name_for(&name, false, false)));
            let w = web_claim_name(&name, true);
            assert!(is_dry_claim(&w) && source_of_claim(&w) == Source::Web);
            assert_eq!(source_of_claim(&c), Source::Sftp);
            assert_eq!(source_of_claim(&web_claim_name(&name, false)), Source::Web);
            assert!(c.len() <= 255, "{len}: {}", c.len());
            assert!(w.len() <= 255, "{len}: {}", w.len());
            let (_, kept) = c.split_once("__").unwrap();
            assert!(kept.len() <= layout::MAX_PICKUP_NAME_BYTES);
            assert_eq!(
                kept.ends_with(TOO_LONG_MARK),
                name.len() > layout::MAX_PICKUP_NAME_BYTES
            );
            // Every name derived from the kept one fits too.
            assert!(layout::result_name(kept, "20231222070016329").len() + 13 <= 255);
            assert!(layout::processed_stamped_name(kept, "20231222070016329").len() <= 255);
        }
    }
}
