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
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;

use crate::config::Lender;
use crate::config::Lookups;
use crate::failpoint;
use crate::input::{FileError, ReadError, RecordReader, Stopped};
use crate::layout;
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
                match stream(&mut *tx, req.lender, *kind, ctx, reader, &mut counts)? {
                    None => None,
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
        let ended = Utc::now();
        let mut stamp = layout::stamp(started);
        if let Some(latest) = tx.latest_stamp(name)? {
            if stamp <= latest {
                stamp = layout::next_stamp(&latest);
            }
        }
        tx.complete(&iso(ended), &stamp, refused.as_deref(), &counts)?
    };
    failpoint::hit("committed");
    let load = store.load(row)?.ok_or(StoreError::MissingLoad(row))?;
    Ok(LoadOutcome { load })
}

/// Validated records on their way from the parser thread to the store, with their indexes.
type Batch = Vec<(u64, Result<Record, Rejection>)>;

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
) -> Result<Option<FileError>, StoreError> {
    std::thread::scope(|scope| {
        let (send, receive) = sync_channel::<Batch>(1);
        // Applied batches go back to be freed by the thread that allocated them (freeing across
        // threads costs glibc's malloc arena locks).
        let (recycle, recycled) = sync_channel::<Batch>(2);
        let parser = scope.spawn(move || parse_ahead(&mut *reader, kind, ctx, send, recycled));
        let mut failure = None;
        let mut writer = RecordWriter { tx, lender };
        'batches: for batch in receive {
            for (index, validated) in &batch {
                if let Err(e) = apply_one(&mut writer, kind, *index, validated, counts) {
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
        batch.push((index, records::validate(kind, value, Some(ctx))));
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

/// Applies one validated record (in a savepoint unless it writes with one statement), counting
/// it and keeping its problems.
fn apply_one(
    w: &mut RecordWriter<'_>,
    kind: Kind,
    index: u64,
    validated: &Result<Record, Rejection>,
    counts: &mut Counts,
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
        w.tx.problem(index, p)?;
    }
    Ok(())
}

/// The single writer: every intake (a pass over pickup files, an API submission) takes it before
/// it writes to the stores, so loads never interleave and a lender's loads apply in the order
/// they were submitted. In one process it is a fair mutex; across processes (`bulkload run`
/// beside `bulkload serve`) the holder also takes the data folder's pass lock.
#[derive(Clone, Default)]
pub struct WriterQueue {
    inner: Arc<Mutex<()>>,
}

/// Proof of holding the single writer; dropping it lets the next intake in.
pub struct WriterTurn<'q> {
    _guard: MutexGuard<'q, ()>,
}

impl WriterQueue {
    pub fn new() -> Self {
        Self::default()
    }
    /// Waits for the writer's turn (blocking: call it off the async threads).
    pub fn turn(&self) -> WriterTurn<'_> {
        // A holder that panicked left nothing half-done in the stores (each load is one
        // transaction), so a poisoned lock is taken over.
        let guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        WriterTurn { _guard: guard }
    }
    /// Takes the turn only if it is free.
    pub fn try_turn(&self) -> Option<WriterTurn<'_>> {
        match self.inner.try_lock() {
            Ok(g) => Some(WriterTurn { _guard: g }),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(WriterTurn {
                _guard: p.into_inner(),
            }),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}
