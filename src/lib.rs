//! bulkload: the receiving side of a lender bulk-import interface.
//!
//! Lenders drop JSON files over SFTP into `{environment}/import/pickup`; a pass applies them in
//! dependency order to a SQLite store, writes one result file each, and rotates them into
//! `processed/`. See ARCHITECTURE.md for the map.
//!
//! Layout of the crate:
//! - `config`: the operator's TOML, validated.
//! - `layout`: paths under `data_dir` and file naming.
//! - `records`: the field table of each record type and the validation it drives.
//! - `json`: streaming a top-level JSON array, encodings, bounds.
//! - `store`: SQLite schema, migrations, loads, applying records.
//! - `batch`: a pass: scan, order, claim, apply, result, rotate, recover.
//! - `result`: the result file's shape.
//! - `lookups`: lookup files.
//! - `check`: the offline `bulkload check`.
//! - `fsutil`: atomic writes and durable renames.
//! - `sftp`: the embedded SFTP server (logins, chroot path resolver, upload handling).
//! - `schedule`: cron and on-upload passes, never overlapping.
//! - `serve`: the `bulkload serve` daemon wiring and shutdown.

pub mod auth;
pub mod batch;
pub mod check;
pub mod config;
pub mod failpoint;
pub mod fsutil;
pub mod json;
pub mod layout;
pub mod lookups;
pub mod records;
pub mod result;
pub mod schedule;
pub mod serve;
pub mod sftp;
pub mod store;
