//! Engine: applying one load, whatever its intake, format or store.
//!
//! Owns: `apply_load`, the one entry point: one transaction per load holding its records, its
//! problems and its load row (exactly once: the load key is unique, so a load is applied at most
//! once, and nothing of it is visible before the commit); parsing and validation on a thread of
//! their own, in bounded batches ahead of the store, which applies in order; counting (upsert
//! failures count as create or update by whether the record exists); a refused input rolling
//! back to a load with only its error. Also `Writer`, the single-writer queue every intake
//! submits its work through.
//! Must not: know files, folders or result files (that is the intake's: `files`), or hold a
//! record type's rules (`records`).

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use chrono::Utc;

use crate::config::Lender;
use crate::config::Lookups;
use crate::failpoint;
use crate::input::{FileError, ReadError, RecordReader, Stopped};
use crate::layout;
use crate::problem::{Code, Problem};
use crate::records::{
    self, ApplyError, Ctx, Kind, Mode, Outcome, Record, Rejection, Writer as RecordWriter,
};
use crate::result::{iso, Counts};
use crate::store::{LoadKey, LoadRow, LoadTx, Source, Store, StoreError};

/// What a load was applied for.
pub struct LoadRequest<'a> {
    pub lender: &'a Lender,
    pub lookups: &'a Lookups,
    /// The record type, or why the input is refused before it is read (an unknown type, say).
    pub kind: Result<Kind, FileError>,
    pub key: &'a LoadKey,
    pub source: Source,
    /// A dry run: everything a load does, store-level checks included, then its records are
    /// rolled back; only the load row and its problems commit (`LoadRow::dry_run`).
    pub dry_run: bool,
}

/// What applying a load did: the committed load row.
#[derive(Debug, Clone)]
pub struct LoadOutcome {
    pub load: LoadRow,
}

/// The input of a load: a reader, or why there is none.
pub type Input<'r> = Result<Box<dyn RecordReader + 'r>, FileError>;

/// Applies one load in one transaction and commits it. Only a store failure is an error; every
/// problem of the input becomes part of the load (its `ErrorMessage` or its problems).
pub fn apply_load(
    store: &mut dyn Store,
    req: &LoadRequest<'_>,
    input: Input<'_>,
) -> Result<LoadOutcome, StoreError> {
    let started = Utc::now();
    let name = &req.key.supplied_name;
    let mut counts = Counts::default();
    // Quotas (issue 11): what the lender may still submit, read before the load begins.
    let quotas = if req.dry_run {
        crate::quota::Quotas::default()
    } else {
        crate::quota::quotas(&*store, req.lender, started)?
    };
    let row = {
        let mut tx = store.begin(&req.lender.id, req.key, req.source, &iso(started))?;
        let refused = match (&req.kind, input) {
            (Err(fe), _) => Some(fe.to_string()),
            (Ok(_), Err(fe)) => Some(fe.to_string()),
            (Ok(kind), Ok(reader)) => {
                let ctx = Ctx {
                    lender: req.lender,
                    lookups: req.lookups,
                };
                let mut spool = if req.dry_run {
                    Some(
                        Spool::new()
                            .map_err(|e| StoreError::Backend(format!("dry-run spool: {e}")))?,
                    )
                } else {
                    None
                };
                match stream(
                    &mut *tx,
                    req.lender,
                    *kind,
                    ctx,
                    reader,
                    &mut counts,
                    spool.as_mut(),
                )? {
                    None if req.dry_run => {
                        // Undo every record; keep the load row with the problems found.
                        drop(tx);
                        tx = store.begin(&req.lender.id, req.key, req.source, &iso(started))?;
                        if let Some(spool) = spool {
                            spool.replay(&mut *tx)?;
                        }
                        None
                    }
                    None => {
                        let records = (counts.successes() + counts.failures()).max(0) as u64;
                        match quotas.refusal(records) {
                            None => None,
                            Some(why) => {
                                // Refused whole, like a refused input.
                                drop(tx);
                                tx = store.begin(
                                    &req.lender.id,
                                    req.key,
                                    req.source,
                                    &iso(started),
                                )?;
                                counts = Counts::default();
                                Some(why)
                            }
                        }
                    }
                    Some(fe) => {
                        // Nothing of a refused input is applied: start the transaction afresh.
                        drop(tx);
                        tx = store.begin(&req.lender.id, req.key, req.source, &iso(started))?;
                        counts = Counts::default();
                        Some(fe.to_string())
                    }
                }
            }
        };
        if req.dry_run {
            tx.set_dry_run()?;
        }
        let ended = Utc::now();
        let mut stamp = layout::stamp(started);
        if let Some(latest) = tx.latest_stamp(name)? {
            if stamp <= latest {
                stamp = layout::next_stamp(&latest);
            }
        }
        // The outbox: notifications commit in the load's own transaction. A dry run changes
        // nothing and is not announced (its result is in results/ like any other).
        if !req.dry_run {
            crate::notify::enqueue(&mut *tx, req.lender)?;
        }
        tx.complete(&iso(ended), &stamp, refused.as_deref(), &counts)?
    };
    failpoint::hit("committed");
    let load = store.load(row)?.ok_or(StoreError::MissingLoad(row))?;
    Ok(LoadOutcome { load })
}

/// Validated records on their way from the parser thread to the store, with their indexes.
type Batch = Vec<(u64, Option<u64>, Result<Record, Rejection>)>;

/// A dry run's problems, kept outside the transaction that is rolled back (in an unnamed
/// temporary file: memory does not grow with their number), then replayed into the load.
struct Spool {
    out: std::io::BufWriter<std::fs::File>,
}

impl Spool {
    fn new() -> std::io::Result<Spool> {
        Ok(Spool {
            out: std::io::BufWriter::new(tempfile::tempfile()?),
        })
    }
    fn push(&mut self, index: u64, p: &Problem) -> Result<(), StoreError> {
        use std::io::Write;
        let line = serde_json::json!([index, p.field, p.code.as_str(), p.detail, p.is_prefixed()]);
        writeln!(self.out, "{line}").map_err(|e| StoreError::Backend(format!("dry-run spool: {e}")))
    }
    fn replay(self, tx: &mut dyn LoadTx) -> Result<(), StoreError> {
        use std::io::{BufRead, Seek};
        let err = |e: String| StoreError::Backend(format!("dry-run spool: {e}"));
        let mut file = self.out.into_inner().map_err(|e| err(e.to_string()))?;
        file.seek(std::io::SeekFrom::Start(0))
            .map_err(|e| err(e.to_string()))?;
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|e| err(e.to_string()))?;
            let (index, field, code, detail, prefixed): (
                u64,
                Option<String>,
                String,
                String,
                bool,
            ) = serde_json::from_str(&line).map_err(|e| err(e.to_string()))?;
            let code = Code::parse(&code).ok_or_else(|| err(format!("code {code}")))?;
            let p = if prefixed {
                Problem::field(field.unwrap_or_default(), code, detail)
            } else {
                Problem::sentence(field.as_deref(), code, detail)
            };
            tx.problem(index, &p)?;
        }
        Ok(())
    }
}

/// A batch is handed over at this many records or this many bytes of string data, whichever
/// comes first; with a channel of one batch, at most about three batches are in memory.
const BATCH_RECORDS: usize = 256;
const BATCH_BYTES: usize = 256 << 10;

/// Streams the input through validation into the transaction. Returns the input's refusal, if
/// any (the caller rolls back); a store failure is an error.
fn stream(
    tx: &mut dyn LoadTx,
    lender: &Lender,
    kind: Kind,
    ctx: Ctx<'_>,
    mut reader: Box<dyn RecordReader + '_>,
    counts: &mut Counts,
    mut spool: Option<&mut Spool>,
) -> Result<Option<FileError>, StoreError> {
    std::thread::scope(|scope| {
        let (send, receive) = sync_channel::<Batch>(1);
        // Applied batches go back to be freed by the thread that allocated them (freeing across
        // threads costs glibc's malloc arena locks).
        let (recycle, recycled) = sync_channel::<Batch>(2);
        let parser = scope.spawn(move || parse_ahead(&mut *reader, kind, ctx, send, recycled));
        let mut failure = None;
        let prefetch = tx.wants_prefetch();
        let mut writer = RecordWriter::new(tx, lender);
        'batches: for batch in receive {
            // The keys the batch will look up, for a store that fetches them at once.
            if prefetch {
                let keys = records::prefetch::keys(kind, batch.iter().map(|b| &b.2));
                if let Err(e) = writer.tx.prefetch(&keys) {
                    failure = Some(e);
                    break 'batches;
                }
            }
            for (index, line, validated) in &batch {
                let sink = Problems {
                    line: *line,
                    spool: spool.as_deref_mut(),
                };
                if let Err(e) = apply_one(&mut writer, kind, *index, validated, counts, sink) {
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
            (Some(e), _) => Err(e),
            (None, Err(ReadError::File(fe))) => Ok(Some(fe)),
            (None, _) => Ok(None),
        }
    })
}

/// The parser thread: reads and validates, sending batches in order. Stops early when the
/// receiver is gone (the store failed).
fn parse_ahead(
    reader: &mut dyn RecordReader,
    kind: Kind,
    ctx: Ctx<'_>,
    send: SyncSender<Batch>,
    recycled: Receiver<Batch>,
) -> Result<u64, ReadError> {
    let mut batch: Batch = Vec::with_capacity(BATCH_RECORDS);
    let mut bytes = 0;
    let read = reader.read(&mut |index, value| {
        bytes += value.text_len();
        let line = value.line();
        batch.push((index, line, records::validate(kind, value, Some(ctx))));
        if batch.len() >= BATCH_RECORDS || bytes >= BATCH_BYTES {
            bytes = 0;
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_RECORDS));
            send.send(full).map_err(|_| Stopped)?;
            while let Ok(done) = recycled.try_recv() {
                drop(done);
            }
        }
        Ok(())
    });
    if read.is_ok() && !batch.is_empty() {
        // A failed send means the store stopped: its error is what the caller reports.
        let _ = send.send(batch);
    }
    read
}

/// Applies one validated record (in a savepoint unless its type's `single_write` says every
/// refusal comes before its first write or from it), counting it and keeping its problems.
fn apply_one(
    w: &mut RecordWriter<'_>,
    kind: Kind,
    index: u64,
    validated: &Result<Record, Rejection>,
    counts: &mut Counts,
    mut sink: Problems<'_>,
) -> Result<(), StoreError> {
    let spec = kind.spec();
    let (mode, problems, upsert_identity) = match validated {
        Ok(record) => {
            let single = (spec.single_write)(record);
            if !single {
                w.tx.savepoint()?;
            }
            let applied = (spec.write)(record, w);
            if !single {
                match &applied {
                    Ok(_) => w.tx.release()?,
                    Err(ApplyError::Rejected(_)) => w.tx.rollback()?,
                    Err(ApplyError::Store(_)) => {}
                }
            }
            match applied {
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
                Err(ApplyError::Rejected(p)) => {
                    let ident = (record.mode == Mode::Upsert).then(|| record.identity());
                    (Some(record.mode), std::borrow::Cow::Owned(p.0), ident)
                }
                Err(ApplyError::Store(e)) => return Err(e),
            }
        }
        Err(rej) => (
            rej.mode,
            std::borrow::Cow::Borrowed(&rej.problems.0[..]),
            rej.identity.clone(),
        ),
    };
    match mode {
        None => counts.mode_failure += 1,
        Some(Mode::Create) => counts.create_failure += 1,
        Some(Mode::Update) => counts.update_failure += 1,
        Some(Mode::Add) => counts.add_failure += 1,
        Some(Mode::Delete) => counts.delete_failure += 1,
        Some(Mode::Upsert) => {
            let exists = match &upsert_identity {
                Some(id) if !id.is_empty() => w.exists(kind, id)?,
                _ => false,
            };
            if exists {
                counts.update_failure += 1
            } else {
                counts.create_failure += 1
            }
        }
    }
    for p in problems.iter() {
        let with_line;
        let p = match sink.line {
            Some(line) => {
                with_line = p.at_csv_line(line);
                &with_line
            }
            None => p,
        };
        match sink.spool.as_deref_mut() {
            Some(spool) => spool.push(index, p)?,
            None => w.tx.problem(index, p)?,
        }
    }
    Ok(())
}

/// Where one record's problems go: the transaction, or a dry run's spool; with the CSV line
/// the record started on, which every problem of a CSV record names.
struct Problems<'s> {
    line: Option<u64>,
    spool: Option<&'s mut Spool>,
}

/// The single writer: every intake (a pass over pickup files, an API submission) takes its turn
/// before it writes to the stores, so loads never interleave, and turns are served in the order
/// they were asked for (a ticket queue), so a lender's loads apply in the order they were
/// submitted. Across processes (`bulkload run` beside `bulkload serve`) the holder also takes the
/// data folder's pass lock.
#[derive(Clone, Default)]
pub struct WriterQueue {
    inner: Arc<Tickets>,
}

#[derive(Default)]
struct Tickets {
    /// (next ticket to hand out, ticket being served)
    state: Mutex<(u64, u64)>,
    turn_over: Condvar,
}

impl Tickets {
    fn state(&self) -> MutexGuard<'_, (u64, u64)> {
        // The counters are always consistent (plain additions): a panic elsewhere while the
        // lock was held leaves nothing to repair.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Proof of holding the single writer; dropping it lets the next ticket in.
pub struct WriterTurn<'q> {
    queue: &'q Tickets,
}

impl Drop for WriterTurn<'_> {
    fn drop(&mut self) {
        self.queue.state().1 += 1;
        self.queue.turn_over.notify_all();
    }
}

impl WriterQueue {
    pub fn new() -> Self {
        Self::default()
    }
    /// Waits for the writer's turn, first come first served (blocking: call it off the async
    /// threads).
    pub fn turn(&self) -> WriterTurn<'_> {
        let t = &*self.inner;
        let mut st = t.state();
        let mine = st.0;
        st.0 += 1;
        while st.1 != mine {
            st = t
                .turn_over
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        WriterTurn { queue: t }
    }
    /// Takes the turn only if nobody holds or waits for it.
    pub fn try_turn(&self) -> Option<WriterTurn<'_>> {
        let t = &*self.inner;
        let mut st = t.state();
        if st.0 != st.1 {
            return None;
        }
        st.0 += 1;
        Some(WriterTurn { queue: t })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn turns_are_exclusive_and_first_come_first_served() {
        let q = WriterQueue::new();
        let held = q.turn();
        assert!(q.try_turn().is_none());
        let order = Arc::new(Mutex::new(Vec::new()));
        let inside = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for i in 0..4 {
            let (q2, order, inside) = (q.clone(), order.clone(), inside.clone());
            handles.push(std::thread::spawn(move || {
                let _t = q2.turn();
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two writers at once"
                );
                order.lock().unwrap().push(i);
                std::thread::sleep(std::time::Duration::from_millis(5));
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
            // Ask in a known order.
            while q.inner.state().0 != i as u64 + 2 {
                std::thread::yield_now();
            }
        }
        drop(held);
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
        assert!(q.try_turn().is_some());
    }
}
