//! API loads: submit (spool durably, reserve the load's Id, queue), the worker applying queued
//! loads through the engine's single writer, recovery of spooled loads after a crash, and
//! following loads (list, one load as its result document, its problems).
//!
//! Owns: the spool (`data_dir/api/<env>/<lender>/<claim>.json`), idempotency keys (one load per
//! lender, environment and key; another body with the same key is refused), the per-lender count
//! of loads queued or running (`[api] max_concurrent_loads`), and the load document.
//! Must not: apply records itself (`engine::apply_load` does, with `Source::Api`), write
//! result files or touch the SFTP folders, or show a lender another lender's load (404).
//!
//! Exactly once: the body is written and fsynced to a hidden part file, renamed into the spool
//! (and the folder fsynced), and only then is the submission committed to the store (reserving
//! its number and idempotency key); 202 follows. The load's key is the spool name (its claim):
//! the load commits at most once (the key is unique), and the worker, or recovery after a
//! crash, finishes it (marks it finished, removes the spool file). A spool file without a
//! committed submission was never acknowledged: recovery removes it.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::problem::ApiError;
use super::token::Authed;
use super::ApiState;
use crate::config::{Config, Lender};
use crate::engine::{self, LoadRequest};
use crate::input::json::JsonReader;
use crate::input::{Bounds, RecordReader};
use crate::layout;
use crate::records::Kind;
use crate::result::{iso, write_result, ResultHeader};
use crate::store::{
    self, ApiSubmission, ApiSubmissionKey, LoadKey, LoadQuery, LoadRow, Source, Store,
};

/// One queued load for the worker.
#[derive(Debug, Clone)]
struct Job {
    env: String,
    lender: String,
    claim: String,
}

/// Loads queued or running, and the worker's inbox.
#[derive(Default)]
pub struct Queue {
    inner: Mutex<QueueState>,
    /// Tells waiters (`?wait=`) that a load finished: (env, claim).
    finished: std::sync::OnceLock<tokio::sync::broadcast::Sender<(String, String)>>,
}

#[derive(Default)]
struct QueueState {
    /// (env, lender) → claims queued or running.
    pending: HashMap<(String, String), HashSet<String>>,
    /// Claims being applied now.
    running: HashSet<String>,
    sender: Option<tokio::sync::mpsc::UnboundedSender<Job>>,
}

impl Queue {
    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn finished(&self) -> &tokio::sync::broadcast::Sender<(String, String)> {
        self.finished
            .get_or_init(|| tokio::sync::broadcast::channel(1024).0)
    }
    /// Takes a slot for one more load of the lender, unless it has `max` already.
    fn try_slot(&self, env: &str, lender: &str, claim: &str, max: u32) -> bool {
        let mut st = self.state();
        let set = st
            .pending
            .entry((env.to_string(), lender.to_string()))
            .or_default();
        if set.len() >= max as usize {
            return false;
        }
        set.insert(claim.to_string());
        true
    }
    fn release(&self, env: &str, lender: &str, claim: &str) {
        let mut st = self.state();
        let key = (env.to_string(), lender.to_string());
        if let Some(set) = st.pending.get_mut(&key) {
            set.remove(claim);
            if set.is_empty() {
                st.pending.remove(&key);
            }
        }
        st.running.remove(claim);
    }
    fn push(&self, job: Job) {
        let mut st = self.state();
        st.pending
            .entry((job.env.clone(), job.lender.clone()))
            .or_default()
            .insert(job.claim.clone());
        if let Some(s) = &st.sender {
            let _ = s.send(job);
        }
    }
    /// Queued or running, as the load document's `State` says it.
    fn state_of(&self, claim: &str) -> &'static str {
        if self.state().running.contains(claim) {
            "running"
        } else {
            "queued"
        }
    }
    /// Loads of the lender queued or running.
    pub fn pending(&self, env: &str, lender: &str) -> usize {
        self.state()
            .pending
            .get(&(env.to_string(), lender.to_string()))
            .map_or(0, HashSet::len)
    }
}

/// The spool folder of a lender in an environment.
pub fn spool_dir(data_dir: &Path, env: &str, lender: &str) -> PathBuf {
    data_dir.join("api").join(env).join(lender)
}

fn spool_path(data_dir: &Path, env: &str, lender: &str, claim: &str) -> PathBuf {
    spool_dir(data_dir, env, lender).join(format!("{claim}.json"))
}

/// What a submission was answered with.
#[derive(Debug)]
pub struct Submitted {
    /// 202 for a new load (or a repeat of one not finished), 200 for a repeat of a finished one.
    pub status: StatusCode,
    pub env: String,
    /// The load's `Id`.
    pub id: i64,
    /// The load document.
    pub document: serde_json::Value,
    /// True when this request was a repeat (same idempotency key) of an earlier one.
    pub repeat: bool,
    pub claim: String,
}

/// Where a submission came from, for the logs (`api`, `console`).
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub intake: &'static str,
    pub client_id: &'a str,
}

/// What is submitted, by whom, where.
#[derive(Debug, Clone, Copy)]
pub struct SubmitRequest<'a> {
    pub cfg: &'a Config,
    pub lender: &'a Lender,
    pub env: &'a str,
    /// The record type's name (its file prefix, `borrowers`).
    pub kind: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub origin: Origin<'a>,
}

/// The one submit path of every HTTP intake: checks the environment and type, spools the body
/// (streamed, bounded by `[api] max_body_bytes`, checked to be one JSON array), takes one of the
/// lender's load slots, commits the submission (its Id and idempotency key) and queues the load
/// for the single writer. A repeat of an idempotency key answers with the earlier load.
pub async fn submit(
    st: &ApiState,
    req: SubmitRequest<'_>,
    body: Body,
) -> Result<Submitted, ApiError> {
    let SubmitRequest {
        cfg,
        lender,
        env,
        kind: kind_name,
        idempotency_key,
        origin,
    } = req;
    check_env(cfg, env)?;
    let kind = parse_kind(kind_name)?;
    if let Some(k) = idempotency_key {
        if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(ApiError::bad_request(
                "Idempotency-Key must be 1 to 255 printable ASCII characters",
            ));
        }
    }
    let api = cfg
        .api
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("the API is not configured", 60))?;
    let claim = format!(
        "api-{}-{}",
        layout::stamp(chrono::Utc::now()),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    // A repeat takes no slot: it queues nothing.
    let earlier = match idempotency_key {
        Some(k) => {
            let (cfg2, env2, lender2, k2) = (
                cfg.clone(),
                env.to_string(),
                lender.id.clone(),
                k.to_string(),
            );
            blocking(move || {
                let store = open_store(&cfg2, &env2)?;
                store.api_submission(&lender2, ApiSubmissionKey::IdempotencyKey(&k2))
            })
            .await?
        }
        None => None,
    };
    let slot = earlier.is_none();
    if slot
        && !st
            .loads
            .try_slot(env, &lender.id, &claim, api.max_concurrent_loads)
    {
        return Err(ApiError::too_many(
            format!(
                "lender {} has {} loads queued or running in {env}, the most [api] max_concurrent_loads allows; retry when one finishes",
                lender.id, api.max_concurrent_loads
            ),
            5,
        ));
    }
    let result = spool_and_commit(
        st,
        cfg,
        lender,
        env,
        kind,
        body,
        idempotency_key,
        &claim,
        api.max_body_bytes,
        origin,
        earlier,
    )
    .await;
    if slot && !matches!(&result, Ok(s) if !s.repeat) {
        st.loads.release(env, &lender.id, &claim);
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn spool_and_commit(
    st: &ApiState,
    cfg: &Config,
    lender: &Lender,
    env: &str,
    kind: Kind,
    body: Body,
    idempotency_key: Option<&str>,
    claim: &str,
    max_body: u64,
    origin: Origin<'_>,
    earlier: Option<ApiSubmission>,
) -> Result<Submitted, ApiError> {
    let dir = spool_dir(&cfg.data_dir, env, &lender.id);
    tokio::fs::create_dir_all(&dir).await.map_err(|e| {
        tracing::error!(error = %e, dir = %dir.display(), "api: cannot create the spool folder");
        ApiError::unavailable("cannot store the submission just now", 10)
    })?;
    let part = dir.join(format!(".{claim}.part"));
    let spooled = spool_path(&cfg.data_dir, env, &lender.id, claim);
    let hash = match write_body(body, &part, max_body).await {
        Ok(h) => h,
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e);
        }
    };
    // A known repeat needs no store write (the store may be busy with a long load).
    if let Some(e) = earlier {
        let _ = tokio::fs::remove_file(&part).await;
        return answer_repeat(
            st,
            cfg,
            env,
            lender,
            e,
            &hash,
            kind,
            idempotency_key,
            origin,
        )
        .await;
    }
    // One JSON array, syntactically: checked here so a malformed body is a 400 now, not a
    // refused load later.
    let check = {
        let part = part.clone();
        tokio::task::spawn_blocking(move || check_json_array(&part))
            .await
            .unwrap_or_else(|e| Err(format!("check failed: {e}")))
    };
    let records = match check {
        Ok(n) => n,
        Err(detail) => {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(ApiError::bad_request(detail));
        }
    };
    // Quotas: a load that would pass a limit is refused now (the engine checks again when it
    // applies, for loads queued meanwhile). A repeat of an idempotency key is not a new load.
    if idempotency_key.is_none() || !is_repeat(cfg, env, &lender.id, idempotency_key).await? {
        let (cfg2, env2, lender2) = (cfg.clone(), env.to_string(), lender.clone());
        let now = chrono::Utc::now();
        let q = blocking(move || crate::quota::quotas(&*open_store(&cfg2, &env2)?, &lender2, now))
            .await?;
        if let Some(why) = q.refusal(records) {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(ApiError::too_many(why, q.retry_after(records, now)));
        }
    }
    {
        let (part, spooled, dir) = (part.clone(), spooled.clone(), dir.clone());
        tokio::task::spawn_blocking(move || {
            crate::fsutil::rename_durable(&part, &spooled)?;
            crate::fsutil::sync_dir(&dir)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|e| {
            tracing::error!(error = %e, "api: cannot spool the submission");
            ApiError::unavailable("cannot store the submission just now", 10)
        })?;
    }
    crate::failpoint::hit("api_spooled");
    let sub = ApiSubmission {
        claim: claim.to_string(),
        lender: lender.id.clone(),
        number: 0,
        kind: kind.prefix().to_string(),
        idempotency_key: idempotency_key.map(str::to_string),
        body_sha256: hash.clone(),
        submitted_at: iso(chrono::Utc::now()),
    };
    let committed = {
        let (cfg2, env2) = (cfg.clone(), env.to_string());
        blocking(move || open_store(&cfg2, env2.as_str())?.submit_api_load(&sub)).await
    };
    let committed = match committed {
        Ok(c) => c,
        Err(e) => {
            let _ = tokio::fs::remove_file(&spooled).await;
            return Err(e);
        }
    };
    if committed.claim != claim {
        // A repeat: this body is not needed.
        let _ = tokio::fs::remove_file(&spooled).await;
        return answer_repeat(
            st,
            cfg,
            env,
            lender,
            committed,
            &hash,
            kind,
            idempotency_key,
            origin,
        )
        .await;
    }
    crate::failpoint::hit("api_committed");
    tracing::info!(env, lender = %lender.id, client_id = origin.client_id, intake = origin.intake, load = committed.number, r#type = kind.prefix(), "api: load queued");
    st.loads.push(Job {
        env: env.to_string(),
        lender: lender.id.clone(),
        claim: claim.to_string(),
    });
    Ok(Submitted {
        status: StatusCode::ACCEPTED,
        env: env.to_string(),
        id: committed.number,
        document: queued_document(&committed, "queued"),
        repeat: false,
        claim: claim.to_string(),
    })
}

/// The answer to a repeat of an idempotency key: the earlier load, or 422 for another body.
#[allow(clippy::too_many_arguments)]
async fn answer_repeat(
    st: &ApiState,
    cfg: &Config,
    env: &str,
    lender: &Lender,
    committed: ApiSubmission,
    hash: &str,
    kind: Kind,
    idempotency_key: Option<&str>,
    origin: Origin<'_>,
) -> Result<Submitted, ApiError> {
    if committed.body_sha256 != hash || committed.kind != kind.prefix() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            format!(
                "Idempotency-Key {:?} was used for load {} with a different body or type; use a new key for a new load",
                idempotency_key.unwrap_or(""),
                committed.number
            ),
        ));
    }
    let (doc, finished) = document_of_submission(st, cfg, env, &lender.id, &committed).await?;
    tracing::info!(env, lender = %lender.id, client_id = origin.client_id, load = committed.number, "api: repeated submission answered with the earlier load");
    Ok(Submitted {
        status: if finished {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        },
        env: env.to_string(),
        id: committed.number,
        document: doc,
        repeat: true,
        claim: committed.claim,
    })
}

/// Whether an idempotency key is taken already.
async fn is_repeat(
    cfg: &Config,
    env: &str,
    lender: &str,
    key: Option<&str>,
) -> Result<bool, ApiError> {
    let Some(k) = key else { return Ok(false) };
    let (cfg2, env2, lender2, k2) = (
        cfg.clone(),
        env.to_string(),
        lender.to_string(),
        k.to_string(),
    );
    blocking(move || {
        Ok(open_store(&cfg2, &env2)?
            .api_submission(&lender2, ApiSubmissionKey::IdempotencyKey(&k2))?
            .is_some())
    })
    .await
}

/// Streams the body into `part` (fsynced), at most `max` bytes; returns its SHA-256 (hex).
async fn write_body(body: Body, part: &Path, max: u64) -> Result<String, ApiError> {
    let io_err = |e: std::io::Error| {
        tracing::error!(error = %e, "api: cannot write the spool file");
        ApiError::unavailable("cannot store the submission just now", 10)
    };
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(part)
        .await
        .map_err(io_err)?;
    let mut body = body;
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request(format!("the request body could not be read: {e}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len() as u64;
        if total > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                format!("the body is over the limit of {max} bytes ([api] max_body_bytes)"),
            ));
        }
        hasher.update(&data);
        file.write_all(&data).await.map_err(io_err)?;
    }
    if total == 0 {
        return Err(ApiError::bad_request(
            "the body is empty; send a JSON array of records",
        ));
    }
    file.flush().await.map_err(io_err)?;
    file.sync_all().await.map_err(io_err)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The body is one JSON array (UTF-8, an optional BOM), checked in constant memory; returns
/// how many elements it has.
fn check_json_array(path: &Path) -> Result<u64, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read the body back: {e}"))?;
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut first = [0u8; 3];
    let n = r.read(&mut first).map_err(|e| e.to_string())?;
    let head: Vec<u8> = if n == 3 && first == [0xEF, 0xBB, 0xBF] {
        Vec::new()
    } else {
        first[..n].to_vec()
    };
    let mut chained = std::io::Cursor::new(head).chain(r);
    // The first non-blank byte must open an array.
    let mut de = serde_json::Deserializer::from_reader(&mut chained);
    struct ArrayOnly(u64);
    impl<'de> serde::Deserialize<'de> for ArrayOnly {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = ArrayOnly;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a JSON array of records")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<ArrayOnly, A::Error> {
                    let mut n = 0;
                    while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                        n += 1;
                    }
                    Ok(ArrayOnly(n))
                }
            }
            d.deserialize_seq(V)
        }
    }
    use serde::Deserialize;
    let n = ArrayOnly::deserialize(&mut de)
        .and_then(|a| de.end().map(|()| a.0))
        .map_err(|e| format!("the body is not a JSON array of records: {e}"))?;
    Ok(n)
}

/// Runs a store call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("task failed: {e}")))?
        .map_err(ApiError::from)
}

pub fn open_store(cfg: &Config, env: &str) -> Result<Box<dyn Store>, store::StoreError> {
    store::open_env(cfg, env)
}

pub fn check_env(cfg: &Config, env: &str) -> Result<(), ApiError> {
    if cfg.environments.iter().any(|e| e == env) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "unknown environment {env:?}; known: {}",
            cfg.environments.join(", ")
        )))
    }
}

pub fn parse_kind(name: &str) -> Result<Kind, ApiError> {
    Kind::ALL
        .into_iter()
        .find(|k| k.prefix() == name)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "unknown record type {name:?}; known: {}",
                Kind::ALL.map(Kind::prefix).join(", ")
            ))
        })
}

/// The document of a load not begun yet.
fn queued_document(s: &ApiSubmission, state: &str) -> serde_json::Value {
    serde_json::json!({
        "Id": s.number,
        "PickupName": format!("{}.json", s.kind),
        "ProcessedName": null,
        "Source": "API",
        "SubmittedAt": s.submitted_at,
        "State": state,
    })
}

/// A load's header as its result file has it.
fn header_of(load: &LoadRow) -> ResultHeader {
    ResultHeader {
        id: load.id,
        pickup_name: load.pickup_name.clone(),
        processed_name: layout::processed_stamped_name(&load.pickup_name, &load.stamp),
        source: load.source.clone(),
        started_at: load.started_at.clone(),
        ended_at: load.ended_at.clone(),
        error_message: load.error_message.clone(),
        counts: load.counts,
        dry_run: load.dry_run,
    }
}

/// A committed load's document: its result file's fields (without `Problems`) plus `State`.
pub fn load_document(load: &LoadRow) -> serde_json::Value {
    let mut out = Vec::new();
    let _ = write_result(&mut out, &header_of(load), &mut |_| Ok(()));
    let mut v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.remove("Problems");
        m.insert("State".into(), "finished".into());
    }
    v
}

/// A committed load rendered exactly as its result file (problems and all), with `"State":
/// "finished"` after `Id`.
pub fn result_document(store: &dyn Store, load: &LoadRow) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    write_result(&mut out, &header_of(load), &mut |emit| {
        store.for_each_problem(load.row, emit)
    })?;
    let text_at = out
        .iter()
        .position(|b| *b == b'\n')
        .map_or(out.len(), |i| i + 1);
    let mut doc = out[..text_at].to_vec();
    doc.extend_from_slice(b"  \"State\": \"finished\",\n");
    doc.extend_from_slice(&out[text_at..]);
    Ok(doc)
}

/// The document of a submission: its load's when begun, else queued / running.
async fn document_of_submission(
    st: &ApiState,
    cfg: &Config,
    env: &str,
    lender: &str,
    sub: &ApiSubmission,
) -> Result<(serde_json::Value, bool), ApiError> {
    let (cfg2, env2, lender2, claim) = (
        cfg.clone(),
        env.to_string(),
        lender.to_string(),
        sub.claim.clone(),
    );
    let load = blocking(move || open_store(&cfg2, &env2)?.load_by_key(&lender2, &claim)).await?;
    Ok(match load {
        Some(l) => (load_document(&l), true),
        None => (queued_document(sub, st.loads.state_of(&sub.claim)), false),
    })
}

// ---------------------------------------------------------------------------------------------
// The worker.

/// Starts the worker and queues every spooled load of every lender (a crash's leftovers).
pub async fn start_worker(st: &ApiState) -> Result<(), String> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
    st.loads.state().sender = Some(tx);
    let _ = st.loads.finished();
    let cfg = st.live.get();
    // Off the async threads: the store may block (PostgreSQL's client runs its own runtime).
    let jobs = tokio::task::spawn_blocking(move || -> Result<Vec<Job>, String> {
        let mut jobs = Vec::new();
        for env in &cfg.environments {
            for lender in &cfg.lenders {
                jobs.extend(recover(&cfg, env, &lender.id)?);
            }
        }
        Ok(jobs)
    })
    .await
    .map_err(|e| format!("recovery task failed: {e}"))??;
    for job in jobs {
        st.loads.push(job);
    }
    let st = st.clone();
    tokio::spawn(async move {
        loop {
            let job = tokio::select! {
                _ = st.cancel.cancelled() => break,
                j = rx.recv() => match j { Some(j) => j, None => break },
            };
            let st2 = st.clone();
            let j2 = job.clone();
            let applied = tokio::task::spawn_blocking(move || apply(&st2, &j2)).await;
            match applied {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    // Left spooled: applied by the next start (or retried below once).
                    tracing::error!(env = %job.env, lender = %job.lender, claim = %job.claim, error = %e, "api: load could not be applied; kept for a retry");
                    if !st.cancel.is_cancelled() {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        st.loads.push(job.clone());
                        continue;
                    }
                }
                Err(e) => {
                    tracing::error!(claim = %job.claim, error = %e, "api: load worker task failed");
                }
            }
            st.loads.release(&job.env, &job.lender, &job.claim);
            let _ = st
                .loads
                .finished()
                .send((job.env.clone(), job.claim.clone()));
        }
    });
    Ok(())
}

/// How old an unacknowledged spool file (or `.part`) must be before a starting daemon removes
/// it: with several daemons over one data_dir (docs/scale-out.md), a young one may be another
/// daemon's request in flight, between its body's fsync and its submission's commit; removing
/// it then would lose a load that daemon is about to acknowledge. A body still being received
/// keeps its modification time fresh; a stalled one older than this is abandoned (its request
/// fails, unacknowledged, and the client sends it again).
const SPOOL_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

/// Whether a spool file is older than `SPOOL_GRACE` (an unreadable time counts as young: kept).
fn abandoned(path: &std::path::Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= SPOOL_GRACE)
}

/// The spooled loads of a lender to apply: spool files with a committed submission. A spool
/// file without one was never acknowledged (the daemon stopped before answering): removed once
/// older than `SPOOL_GRACE` (until then it may be another daemon's request in flight).
fn recover(cfg: &Config, env: &str, lender: &str) -> Result<Vec<Job>, String> {
    let dir = spool_dir(&cfg.data_dir, env, lender);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    let store = open_store(cfg, env).map_err(|e| e.to_string())?;
    let mut jobs = Vec::new();
    for name in names {
        let path = dir.join(&name);
        if name.starts_with('.') && name.ends_with(".part") {
            if abandoned(&path) {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        let Some(claim) = name.strip_suffix(".json") else {
            continue;
        };
        match store
            .api_submission(lender, ApiSubmissionKey::Claim(claim))
            .map_err(|e| e.to_string())?
        {
            Some(_) => {
                tracing::info!(env, lender, claim, "api: recovering a spooled load");
                jobs.push(Job {
                    env: env.to_string(),
                    lender: lender.to_string(),
                    claim: claim.to_string(),
                })
            }
            None if abandoned(&path) => {
                tracing::info!(
                    env,
                    lender,
                    claim,
                    "api: removing a spooled body never acknowledged"
                );
                let _ = std::fs::remove_file(&path);
            }
            None => {}
        }
    }
    Ok(jobs)
}

/// Applies one spooled load (blocking): the writer's turn, the data folder's pass lock, the
/// engine; then marks it finished and removes the spool file. Safe to repeat.
fn apply(st: &ApiState, job: &Job) -> Result<(), String> {
    let cfg = st.live.get();
    let Some(lender) = cfg.lender(&job.lender) else {
        return Err("the lender is no longer configured".into());
    };
    let _turn = st.writer.turn();
    let lock_path = layout::pass_lock_path(&cfg.data_dir);
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("pass lock: {e}"))?;
    lock.lock().map_err(|e| format!("pass lock: {e}"))?;
    st.loads.state().running.insert(job.claim.clone());
    let mut store = open_store(&cfg, &job.env).map_err(|e| e.to_string())?;
    let path = spool_path(&cfg.data_dir, &job.env, &job.lender, &job.claim);
    let load = match store
        .load_by_key(&job.lender, &job.claim)
        .map_err(|e| e.to_string())?
    {
        Some(l) => l,
        None => {
            let sub = store
                .api_submission(&job.lender, ApiSubmissionKey::Claim(&job.claim))
                .map_err(|e| e.to_string())?
                .ok_or("no submission for this spool file")?;
            let kind = Kind::ALL
                .into_iter()
                .find(|k| k.prefix() == sub.kind)
                .ok_or("unknown record type in the submission")?;
            let file = crate::fsutil::open_nofollow(&path).map_err(|e| e.to_string())?;
            let bounds = Bounds {
                max_record_bytes: cfg.limits.max_record_bytes,
                max_records: cfg.limits.max_records,
            };
            let reader: Box<dyn RecordReader> = Box::new(JsonReader::new(
                BufReader::with_capacity(1 << 16, file),
                bounds,
            ));
            let key = LoadKey {
                key: job.claim.clone(),
                supplied_name: format!("{}.json", kind.prefix()),
            };
            let req = LoadRequest {
                lender,
                lookups: &cfg.lookups,
                kind: Ok(kind),
                key: &key,
                source: Source::Api,
                dry_run: false,
            };
            engine::apply_load(&mut *store, &req, Ok(reader))
                .map_err(|e| e.to_string())?
                .load
        }
    };
    if !load.finished {
        store.mark_finished(load.row).map_err(|e| e.to_string())?;
        let c = &load.counts;
        tracing::info!(env = %job.env, lender = %job.lender, load = load.id, source = "API",
            created = c.create_success, updated = c.update_success, added = c.add_success,
            deleted = c.delete_success, failed = c.failures(),
            error = load.error_message.as_deref().unwrap_or(""), "api: load applied");
        crate::metrics::count_load(
            &job.env,
            &job.lender,
            "API",
            load.error_message.as_deref(),
            c,
        );
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove the spool file: {e}")),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Handlers.

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// `POST /v1/{env}/loads/{type}`. A refusal closes the connection: its body may be unread.
pub async fn post(
    st: State<ApiState>,
    auth: Extension<Authed>,
    path: UrlPath<(String, String)>,
    q: Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match post_inner(st, auth, path, q, headers, body).await {
        Ok(r) => r,
        Err(e) => e
            .with_header(header::CONNECTION, HeaderValue::from_static("close"))
            .into_response(),
    }
}

async fn post_inner(
    State(st): State<ApiState>,
    Extension(auth): Extension<Authed>,
    UrlPath((env, kind)): UrlPath<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_env(&auth.cfg, &env)?;
    parse_kind(&kind)?;
    let mut wait = None;
    for (k, v) in &q {
        match k.as_str() {
            "wait" => {
                let n: u64 = v.parse().ok().filter(|n| *n <= 60).ok_or_else(|| {
                    ApiError::bad_request(format!("wait = {v:?}: expected 0 to 60 seconds"))
                })?;
                wait = Some(n);
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {other:?} (known: wait)"
                )))
            }
        }
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            format!(
                "Content-Type {ct:?}: send the records as application/json (a JSON array, as in a pickup file)"
            ),
        ));
    }
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key must be printable ASCII"))?,
        ),
    };
    let mut finished_rx = st.loads.finished().subscribe();
    let s = submit(
        &st,
        SubmitRequest {
            cfg: &auth.cfg,
            lender: &auth.lender,
            env: &env,
            kind: &kind,
            idempotency_key: key,
            origin: Origin {
                intake: "api",
                client_id: &auth.client_id,
            },
        },
        body,
    )
    .await?;
    let location = format!("/v1/{}/loads/{}", s.env, s.id);
    let mut status = s.status;
    let mut doc = serde_json::to_vec(&s.document).unwrap_or_default();
    if let (Some(n), StatusCode::ACCEPTED) = (wait, status) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(n);
        let done = loop {
            match tokio::time::timeout_at(deadline, finished_rx.recv()).await {
                Ok(Ok((e, c))) if e == env && c == s.claim => break true,
                Ok(Ok(_)) => continue,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
                Ok(Err(_)) | Err(_) => break false,
            }
        };
        let finished = if done {
            true
        } else {
            st.loads.pending(&env, &auth.lender.id) == 0
        };
        if finished || done {
            let (cfg, env2, lender, id) =
                (auth.cfg.clone(), env.clone(), auth.lender.id.clone(), s.id);
            let found = blocking(move || {
                let store = open_store(&cfg, &env2)?;
                match store.load_by_number(&lender, id)? {
                    Some(l) => Ok(Some(
                        result_document(&*store, &l)
                            .map_err(|e| store::StoreError::Backend(e.to_string()))?,
                    )),
                    None => Ok(None),
                }
            })
            .await?;
            if let Some(d) = found {
                status = StatusCode::OK;
                doc = d;
            }
        }
    }
    let mut r = json_response(status, doc);
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// Paging parameters: `offset` ≥ 0, `limit` 1–1000 (default 100).
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub offset: i64,
    pub limit: i64,
}

/// Reads the query: paging plus the `allowed` filters (each at most once); anything else 400.
pub fn parse_query(
    q: &[(String, String)],
    allowed: &[&str],
) -> Result<(Paging, HashMap<String, String>), ApiError> {
    let mut paging = Paging {
        offset: 0,
        limit: 100,
    };
    let mut filters = HashMap::new();
    let mut seen = HashSet::new();
    for (k, v) in q {
        if !seen.insert(k.clone()) {
            return Err(ApiError::bad_request(format!(
                "query parameter {k:?} is given twice"
            )));
        }
        match k.as_str() {
            "offset" => {
                paging.offset = v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (0..=i64::from(i32::MAX)).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "offset = {v:?}: expected a whole number from 0"
                        ))
                    })?
            }
            "limit" => {
                paging.limit = v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("limit = {v:?}: expected 1 to 1000"))
                    })?
            }
            k if allowed.contains(&k) => {
                filters.insert(k.to_string(), v.clone());
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {other:?} (known: offset, limit{}{})",
                    if allowed.is_empty() { "" } else { ", " },
                    allowed.join(", ")
                )))
            }
        }
    }
    Ok((paging, filters))
}

/// An ISO 8601 time as results write it (UTC, milliseconds, `Z`), for comparing with stored ones.
pub fn parse_time(name: &str, v: &str) -> Result<String, ApiError> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| iso(t.with_timezone(&chrono::Utc)))
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map(|d| format!("{}T00:00:00.000Z", d.format("%Y-%m-%d")))
        })
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{name} = {v:?}: expected an ISO 8601 date or time, e.g. 2024-01-31 or 2024-01-31T12:00:00Z"
            ))
        })
}

fn metadata(p: Paging, total: i64) -> serde_json::Value {
    serde_json::json!({"offset": p.offset, "limit": p.limit, "total": total})
}

/// `GET /v1/{env}/loads`.
pub async fn list(
    Extension(auth): Extension<Authed>,
    UrlPath(env): UrlPath<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    check_env(&auth.cfg, &env)?;
    let (paging, f) = parse_query(&q, &["type", "since"])?;
    let kind = match f.get("type") {
        Some(t) => Some(parse_kind(t).map_err(|e| ApiError::bad_request(e.detail))?),
        None => None,
    };
    let since = f.get("since").map(|s| parse_time("since", s)).transpose()?;
    let (cfg, lender) = (auth.cfg.clone(), auth.lender.id.clone());
    let page = blocking(move || {
        open_store(&cfg, &env)?.list_loads(
            &lender,
            &LoadQuery {
                offset: paging.offset,
                limit: paging.limit,
                kind_prefix: kind.map(Kind::prefix),
                since: since.as_deref(),
            },
        )
    })
    .await?;
    let loads: Vec<_> = page.loads.iter().map(load_document).collect();
    let body = serde_json::json!({"loads": loads, "_metadata": metadata(paging, page.total)});
    Ok(json_response(StatusCode::OK, body.to_string().into_bytes()))
}

fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
        ApiError::not_found(format!(
            "no load {id:?} (load ids are whole numbers from 1)"
        ))
    })
}

/// `GET /v1/{env}/loads/{id}`: the result document plus `State`.
pub async fn get_one(
    State(st): State<ApiState>,
    Extension(auth): Extension<Authed>,
    UrlPath((env, id)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    check_env(&auth.cfg, &env)?;
    let n = parse_id(&id)?;
    let (cfg, env2, lender) = (auth.cfg.clone(), env.clone(), auth.lender.id.clone());
    let found = blocking(move || {
        let store = open_store(&cfg, &env2)?;
        if let Some(l) = store.load_by_number(&lender, n)? {
            let doc = result_document(&*store, &l)
                .map_err(|e| store::StoreError::Backend(e.to_string()))?;
            return Ok(Ok(doc));
        }
        Ok(Err(
            store.api_submission(&lender, ApiSubmissionKey::Number(n))?
        ))
    })
    .await?;
    match found {
        Ok(doc) => Ok(json_response(StatusCode::OK, doc)),
        Err(Some(sub)) => {
            let doc = queued_document(&sub, st.loads.state_of(&sub.claim));
            Ok(json_response(StatusCode::OK, doc.to_string().into_bytes()))
        }
        Err(None) => Err(ApiError::not_found(format!("no load {n} in {env}"))),
    }
}

/// `GET /v1/{env}/quota`: the lender's limits, what is used and left, when each resets.
pub async fn quota(
    Extension(auth): Extension<Authed>,
    UrlPath(env): UrlPath<String>,
) -> Result<Response, ApiError> {
    check_env(&auth.cfg, &env)?;
    let (cfg, lender) = (auth.cfg.clone(), auth.lender.clone());
    let q = blocking(move || {
        crate::quota::quotas(&*open_store(&cfg, &env)?, &lender, chrono::Utc::now())
    })
    .await?;
    let body = serde_json::json!({"quotas": q.windows});
    Ok(json_response(StatusCode::OK, body.to_string().into_bytes()))
}

/// `GET /v1/{env}/loads/{id}/problems`.
pub async fn problems(
    Extension(auth): Extension<Authed>,
    UrlPath((env, id)): UrlPath<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    check_env(&auth.cfg, &env)?;
    let n = parse_id(&id)?;
    let (paging, _) = parse_query(&q, &[])?;
    let (cfg, env2, lender) = (auth.cfg.clone(), env.clone(), auth.lender.id.clone());
    let found = blocking(move || {
        let store = open_store(&cfg, &env2)?;
        let Some(l) = store.load_by_number(&lender, n)? else {
            return Ok(None);
        };
        let total = store.problem_count(l.row)?;
        let page = store.problems_page(l.row, paging.offset, paging.limit)?;
        Ok(Some((page, total)))
    })
    .await?;
    let Some((page, total)) = found else {
        return Err(ApiError::not_found(format!(
            "no finished load {n} in {env} (a queued load has no problems yet)"
        )));
    };
    let problems: Vec<_> = page
        .into_iter()
        .map(|(_, index, message)| serde_json::json!({"Index": index, "Message": message}))
        .collect();
    let body = serde_json::json!({"problems": problems, "_metadata": metadata(paging, total)});
    Ok(json_response(StatusCode::OK, body.to_string().into_bytes()))
}
