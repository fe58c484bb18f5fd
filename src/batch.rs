//! Batch: one processing pass over every lender and environment.
//!
//! Owns: the pass lock, the folder tree and lookups at the start of a pass, recovery of loads
//! a killed pass left unfinished, scanning `pickup/` (ignored names, settle time, blank files),
//! dependency order, claiming a file, streaming its records through validation into the store,
//! counting, the result file and the processed rotation.
//! Must not: hold more than one record in memory, move a file before its load is committed, or
//! stop a pass because one file is bad.
//!
//! Exactly once: a file is claimed by renaming it from `pickup/` into the private
//! `work/<env>/<lender>/<claim>__<name>`; its records and its `bulk_loads` row (keyed by the
//! claim) commit in one transaction; only then are the result written and the file moved to
//! `processed/`, and the load marked finished. Each step after the commit is idempotent, and
//! every pass first completes what a killed one left (`recover`).

use chrono::Utc;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use crate::config::{Config, Lender};
use crate::failpoint;
use crate::fsutil::{self, rename_durable};
use crate::json::{self, Bounds, StreamError};
use crate::layout::{self, FileClass, LenderDirs};
use crate::records::{self, Ctx, Kind, Mode};
use crate::result::{iso, write_result, Counts, ResultHeader};
use crate::store::{ApplyError, LoadRow, Outcome, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> BatchError + 'p {
    move |source| BatchError::Io {
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
}

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
                format!(
                    "{env}/{lender} {}: load {} {what} -> processed/{processed_name}, results/{result_name}",
                    load.pickup_name, load.id
                )
            }
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct PassSummary {
    pub files: usize,
    pub discarded: usize,
    /// The pass stopped early on request.
    pub stopped: bool,
}

/// Runs one pass over every lender and environment. `on_file` hears about each file as it is done.
pub fn run_pass(
    cfg: &Config,
    opts: &PassOptions<'_>,
    on_file: &mut dyn FnMut(&FileEvent),
) -> Result<PassSummary, BatchError> {
    fs::create_dir_all(&cfg.data_dir).map_err(io_err("cannot create data dir", &cfg.data_dir))?;
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
        let mut store = Store::open(&layout::store_path(&cfg.data_dir, env), cfg.store)?;
        for lender in &cfg.lenders {
            let dirs = layout::lender_dirs(&cfg.data_dir, &lender.id, env);
            let mut lp = LenderPass {
                cfg,
                env,
                lender,
                dirs: &dirs,
                store: &mut store,
                opts,
                on_file,
                summary: &mut summary,
            };
            lp.run()?;
            if summary.stopped {
                return Ok(summary);
            }
        }
    }
    Ok(summary)
}

struct LenderPass<'a, 'o> {
    cfg: &'a Config,
    env: &'a str,
    lender: &'a Lender,
    dirs: &'a LenderDirs,
    store: &'a mut Store,
    opts: &'a PassOptions<'o>,
    on_file: &'a mut dyn FnMut(&FileEvent),
    summary: &'a mut PassSummary,
}

impl LenderPass<'_, '_> {
    fn run(&mut self) -> Result<(), BatchError> {
        let d = self.dirs;
        d.ensure_tree()
            .map_err(io_err("cannot create folders under", &d.home))?;
        for dir in [&d.results, &d.lookups] {
            fsutil::remove_stale_temps(dir).map_err(io_err("cannot clean", dir))?;
        }
        crate::lookups::write_all(self.cfg, self.lender, &d.lookups)
            .map_err(io_err("cannot write lookups in", &d.lookups))?;
        self.recover()?;
        for name in self.scan()? {
            if self.opts.stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                self.summary.stopped = true;
                return Ok(());
            }
            let from = d.pickup.join(&name);
            // Blank files are discarded without a result.
            let blank = fsutil::open_nofollow(&from).and_then(json::is_blank);
            if let Ok(true) = blank {
                fs::remove_file(&from).map_err(io_err("cannot remove blank file", &from))?;
                tracing::info!(env = self.env, lender = %self.lender.id, file = %name, "blank file discarded");
                self.summary.discarded += 1;
                (self.on_file)(&FileEvent::Discarded {
                    env: self.env.to_string(),
                    lender: self.lender.id.clone(),
                    name,
                });
                continue;
            }
            let claim = format!(
                "{}-{}__{}",
                layout::stamp(Utc::now()),
                &uuid::Uuid::new_v4().simple().to_string()[..8],
                name
            );
            let claimed = d.work.join(&claim);
            match rename_durable(&from, &claimed) {
                Ok(()) => {}
                // Gone since the scan (the lender removed it): nothing to do.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("cannot claim", &from)(e)),
            }
            failpoint::hit("claimed");
            self.process(&claim, &name)?;
        }
        Ok(())
    }

    /// Pickup files ready for this pass, in dependency order.
    fn scan(&self) -> Result<Vec<String>, BatchError> {
        let pickup = &self.dirs.pickup;
        let now = SystemTime::now();
        let mut names = Vec::new();
        for entry in fs::read_dir(pickup).map_err(io_err("cannot list", pickup))? {
            let entry = entry.map_err(io_err("cannot list", pickup))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                tracing::warn!(env = self.env, lender = %self.lender.id, "pickup file name is not UTF-8; skipped");
                continue;
            };
            if layout::is_ignored_name(&name) {
                continue;
            }
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                continue;
            }
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or(Duration::ZERO);
            if age < self.opts.settle && !meta.file_type().is_symlink() {
                continue;
            }
            names.push(name);
        }
        names.sort_by_key(|n| layout::order_key(n));
        Ok(names)
    }

    /// Completes what an interrupted pass left: committed loads whose result or move is
    /// missing, and a claimed file whose load never committed (applied now, from scratch).
    fn recover(&mut self) -> Result<(), BatchError> {
        for load in self.store.unfinished(&self.lender.id)? {
            tracing::info!(env = self.env, lender = %self.lender.id, load = load.id, "completing an interrupted load");
            self.finish(load)?;
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
            let Some((_, name)) = claim.split_once("__") else {
                tracing::warn!(env = self.env, lender = %self.lender.id, file = %claim, "unexpected file in work folder; left alone");
                continue;
            };
            let name = name.to_string();
            match self.store.load_by_claim(&claim)? {
                Some(load) => self.finish(load)?,
                None => self.process(&claim, &name)?,
            }
        }
        Ok(())
    }

    /// Applies a claimed file in one transaction, then finishes it.
    fn process(&mut self, claim: &str, name: &str) -> Result<(), BatchError> {
        let path = self.dirs.work.join(claim);
        let started = Utc::now();
        let span =
            tracing::info_span!("file", env = self.env, lender = %self.lender.id, file = %name);
        let _g = span.enter();
        let ctx = Ctx {
            lender: self.lender,
            lookups: &self.cfg.lookups,
        };
        let limits = self.cfg.limits;
        let (mut counts, mut error) = (Counts::default(), None::<String>);

        let mut tx = self.store.begin(self.lender, name, claim, &iso(started))?;
        let kind = match layout::classify(name) {
            FileClass::Records(k) => Some(k),
            FileClass::UnknownType => {
                error = Some(format!(
                    "The file name \"{name}\" does not start with a known record type ({}); nothing was applied.",
                    Kind::ALL.map(Kind::prefix).join(", ")
                ));
                None
            }
            FileClass::NotJson(k) => {
                error = Some(format!(
                    "The file name \"{name}\" names {} records but does not end in .json; pickup files must be JSON files named like {}.json. Nothing was applied.",
                    k.noun(),
                    k.prefix()
                ));
                None
            }
        };
        if let Some(kind) = kind {
            let opened = fsutil::open_nofollow(&path).and_then(|f| {
                let len = f.metadata()?.len();
                Ok((f, len))
            });
            match opened {
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    error = Some(
                        "The file is a symbolic link; links are not followed. Nothing was applied."
                            .into(),
                    );
                }
                Err(e) => return Err(io_err("cannot open", &path)(e)),
                Ok((_, len)) if len > limits.max_file_bytes => {
                    error = Some(format!(
                        "The file is {len} bytes, larger than the limit of {} bytes; nothing was applied. Split it into smaller files.",
                        limits.max_file_bytes
                    ));
                }
                Ok((file, len)) => {
                    let bar = progress_bar(self.opts.progress, len, name);
                    let report = |n: u64| bar.set_position(n);
                    let bounds = Bounds {
                        max_record_bytes: limits.max_record_bytes,
                        max_records: limits.max_records,
                    };
                    // Parsing and validation run on a thread of their own, a few batches ahead
                    // of the store, which applies in order on this one.
                    let streamed = std::thread::scope(|scope| {
                        let (send, receive) = std::sync::mpsc::sync_channel::<Batch>(1);
                        // Applied batches go back to be freed by the thread that allocated them
                        // (freeing across threads costs glibc's malloc arena locks).
                        let (recycle, recycled) = std::sync::mpsc::sync_channel::<Batch>(2);
                        let parser = scope.spawn(|| {
                            parse_ahead(file, kind, ctx, bounds, &report, send, recycled)
                        });
                        let mut failure = None;
                        'batches: for batch in receive {
                            for (index, validated) in &batch {
                                if let Err(e) =
                                    apply_element(&mut tx, kind, *index, validated, &mut counts)
                                {
                                    failure = Some(e);
                                    break 'batches; // drops the receiver: the parser stops
                                }
                            }
                            let _ = recycle.try_send(batch);
                        }
                        drop(recycle);
                        let parsed = parser
                            .join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                        match (failure, parsed) {
                            (Some(e), _) => Err(StreamError::Callback(e)),
                            (None, Err(StreamError::File(fe))) => Err(StreamError::File(fe)),
                            (None, _) => Ok(()),
                        }
                    });
                    bar.finish_and_clear();
                    match streamed {
                        Ok(_) => {}
                        Err(StreamError::File(fe)) => {
                            // Nothing of a malformed file is applied: start the transaction afresh.
                            drop(tx);
                            tx = self.store.begin(self.lender, name, claim, &iso(started))?;
                            counts = Counts::default();
                            error = Some(fe.to_string());
                        }
                        Err(StreamError::Callback(e)) => return Err(e.into()),
                    }
                }
            }
        }
        let ended = Utc::now();
        let mut stamp = layout::stamp(started);
        if let Some(latest) = tx.latest_stamp(name)? {
            if stamp <= latest {
                stamp = next_stamp(&latest);
            }
        }
        let id = tx.complete(&iso(ended), &stamp, error.as_deref(), &counts)?;
        failpoint::hit("committed");
        let load = self
            .store
            .load(id)?
            .ok_or_else(|| StoreError::Sql(rusqlite::Error::QueryReturnedNoRows))?;
        self.finish(load)
    }

    /// Writes the result file, rotates `processed/`, moves the claimed file there, and marks the
    /// load finished. Every step is safe to repeat.
    fn finish(&mut self, load: LoadRow) -> Result<(), BatchError> {
        let d = self.dirs;
        let name = &load.pickup_name;
        let processed_name = layout::processed_stamped_name(name, &load.stamp);
        let result_name = layout::result_name(name, &load.stamp);
        let header = ResultHeader {
            id: load.id,
            pickup_name: name.clone(),
            processed_name: processed_name.clone(),
            source: load.source.clone(),
            started_at: load.started_at.clone(),
            ended_at: load.ended_at.clone(),
            error_message: load.error_message.clone(),
            counts: load.counts,
        };
        let result_path = d.results.join(&result_name);
        let store = &*self.store;
        fsutil::write_atomic_with(&result_path, &mut |w| {
            write_result(w, &header, &mut |emit| {
                store.for_each_problem(load.id, emit)
            })
        })
        .map_err(io_err("cannot write result", &result_path))?;
        failpoint::hit("result");

        let claimed = d.work.join(&load.claim);
        if claimed.symlink_metadata().is_ok() {
            let last = d.processed.join(layout::processed_last_name(name));
            if last.symlink_metadata().is_ok() {
                let prev = self
                    .store
                    .previous_stamp(&self.lender.id, name, load.id)?
                    .unwrap_or_else(|| mtime_stamp(&last));
                let target = free_name(&d.processed, name, &prev);
                rename_durable(&last, &target).map_err(io_err("cannot rotate", &last))?;
                failpoint::hit("rotated");
            }
            rename_durable(&claimed, &last)
                .map_err(io_err("cannot move to processed", &claimed))?;
            failpoint::hit("moved");
        }
        self.store.mark_finished(load.id)?;
        tracing::info!(load = load.id, file = %name, created = load.counts.create_success,
            updated = load.counts.update_success, failed = load.counts.failures(), "file processed");
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

/// Validated elements on their way from the parser thread to the store, with their indexes.
type Batch = Vec<(u64, Result<records::Record, records::Rejection>)>;

/// A batch is handed over at this many records or this many bytes of string data, whichever
/// comes first; with a channel of one batch, at most about three batches are in memory.
const BATCH_RECORDS: usize = 256;
const BATCH_BYTES: usize = 256 << 10;

/// The parser thread: streams and validates the file, sending batches in order. Stops early when
/// the receiver is gone (the store failed).
fn parse_ahead(
    file: File,
    kind: Kind,
    ctx: Ctx<'_>,
    bounds: Bounds,
    report: &(dyn Fn(u64) + Sync),
    send: std::sync::mpsc::SyncSender<Batch>,
    recycled: std::sync::mpsc::Receiver<Batch>,
) -> Result<u64, StreamError<()>> {
    let mut batch: Batch = Vec::with_capacity(BATCH_RECORDS);
    let mut bytes = 0;
    let report = |n: u64| report(n);
    let streamed = json::stream_array(file, bounds, Some(&report), |index, element| {
        bytes += element.text_len();
        batch.push((index, records::validate(kind, element, Some(ctx))));
        if batch.len() >= BATCH_RECORDS || bytes >= BATCH_BYTES {
            bytes = 0;
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_RECORDS));
            send.send(full).map_err(|_| ())?;
            while let Ok(done) = recycled.try_recv() {
                drop(done);
            }
        }
        Ok(())
    });
    if streamed.is_ok() && !batch.is_empty() {
        // A failed send means the store stopped: its error is what the caller reports.
        let _ = send.send(batch);
    }
    streamed
}

/// Applies one validated element, counting it and recording its problems.
fn apply_element(
    tx: &mut crate::store::LoadTx<'_>,
    kind: Kind,
    index: u64,
    validated: &Result<records::Record, records::Rejection>,
    counts: &mut Counts,
) -> Result<(), StoreError> {
    use std::borrow::Cow;
    let (mode, messages, upsert_identity): (_, Cow<'_, [String]>, _) = match validated {
        Ok(record) => match tx.apply(record) {
            Ok(outcome) => {
                failpoint::hit("record");
                match outcome {
                    Outcome::Created => counts.create_success += 1,
                    Outcome::Updated => counts.update_success += 1,
                    Outcome::Added => counts.add_success += 1,
                    Outcome::Deleted => counts.delete_success += 1,
                }
                return Ok(());
            }
            Err(ApplyError::Rejected(m)) => {
                let ident = (record.mode == Mode::Upsert).then(|| record.identity());
                (Some(record.mode), m.into(), ident)
            }
            Err(ApplyError::Store(e)) => return Err(e.into()),
        },
        Err(rej) => (rej.mode, (&rej.messages[..]).into(), rej.identity.clone()),
    };
    match mode {
        None => counts.mode_failure += 1,
        Some(Mode::Create) => counts.create_failure += 1,
        Some(Mode::Update) => counts.update_failure += 1,
        Some(Mode::Add) => counts.add_failure += 1,
        Some(Mode::Delete) => counts.delete_failure += 1,
        Some(Mode::Upsert) => {
            let exists = match &upsert_identity {
                Some(id) if !id.is_empty() => tx.exists(kind, id)?,
                _ => false,
            };
            if exists {
                counts.update_failure += 1
            } else {
                counts.create_failure += 1
            }
        }
    }
    for m in messages.iter() {
        tx.problem(index, m)?;
    }
    Ok(())
}

/// The stamp one millisecond after `s` (same 17-digit form).
fn next_stamp(s: &str) -> String {
    chrono::NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%S%3f")
        .map(|t| layout::stamp(t.and_utc() + chrono::Duration::milliseconds(1)))
        .unwrap_or_else(|_| layout::stamp(Utc::now()))
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
        s = next_stamp(&s);
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
