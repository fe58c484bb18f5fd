//! bulkload: the receiving side of a lender bulk-import interface.
//!
//! Lenders drop JSON files over SFTP into `{environment}/import/pickup`; a pass applies them in
//! dependency order to a store, writes one result file each, and rotates them into
//! `processed/`. See ARCHITECTURE.md for the map.
//!
//! Layout of the crate:
//! - `config`: the operator's TOML, validated.
//! - `console`: the web console (lenders' uploads and loads, operators' overview).
//! - `layout`: paths under `data_dir` and file naming.
//! - `records`: the nine record types, a module each (fields, rules, writes), and validation.
//! - `problem`: what is wrong with a record, as data, and its one rendering.
//! - `input`: format-neutral records, file-level refusals, `RecordReader`; `input::json`.
//! - `engine`: `apply_load`, the one entry point of every intake, and the single writer.
//! - `store`: the `Store` / `LoadTx` traits; `store::sqlite`, the SQLite backend.
//! - `files`: the pickup-file intake: a pass (scan, order, claim, result, rotate, recover).
//! - `result`: the result file's shape.
//! - `lookups`: lookup files.
//! - `check`: the offline `bulkload check`.
//! - `iso8601`: ISO 8601 dates and times.
//! - `fsutil`: atomic writes and durable renames.
//! - `sftp`: the embedded SFTP server (logins, chroot path resolver, upload handling).
//! - `schedule`: cron and on-upload passes, never overlapping.
//! - `serve`: the `bulkload serve` daemon wiring and shutdown.
//! - `notify`: webhooks and e-mail of finished loads, delivered from the store's outbox.
//! - `metrics`: Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` listener.
//! - `status`: `bulkload status` and `bulkload config check`.
//! - `retention`: pruning old processed files, results and problems.

pub mod api;
pub mod auth;
pub mod check;
pub mod config;
pub mod console;
pub mod engine;
pub mod failpoint;
pub mod files;
pub mod fsutil;
pub mod input;
pub mod iso8601;
pub mod layout;
pub mod lookups;
pub mod metrics;
pub mod notify;
pub mod problem;
pub mod quota;
pub mod records;
pub mod result;
pub mod retention;
pub mod schedule;
pub mod serve;
pub mod sftp;
pub mod status;
pub mod store;
pub mod templates;
