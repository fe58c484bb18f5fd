//! Arbitrary bytes through the CSV reader (with the header check of one record type, chosen by
//! the first byte), then every row through `records::validate` with and without the
//! configuration checks, and back out as JSON (what a failed-records file writes). Any panic is
//! a bug; every refusal renders to a message.
#![no_main]

use bulkload::config::Config;
use bulkload::input::{Bounds, ReadError, RecordReader};
use bulkload::records::{validate, Ctx, Kind};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static CFG: OnceLock<Config> = OnceLock::new();

const BOUNDS: Bounds = Bounds {
    max_record_bytes: 64 * 1024,
    max_records: 1000,
};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let cfg = CFG.get_or_init(|| Config::embedded().expect("embedded config"));
    let ctx = Ctx {
        lender: &cfg.lenders[0],
        lookups: &cfg.lookups,
    };
    let kind = Kind::ALL[pick as usize % Kind::ALL.len()];
    let mut reader = bulkload::files::csv_reader(text, BOUNDS, kind);
    let read = reader.read(&mut |_, row| {
        let mut out = Vec::new();
        row.write_json(&mut out, &[]).expect("write to a Vec");
        let text = std::str::from_utf8(&out).expect("UTF-8");
        bulkload::input::json::parse_one(text).expect("valid JSON");
        let _ = validate(kind, row.clone(), None);
        let _ = validate(kind, row, Some(ctx));
        Ok(())
    });
    if let Err(ReadError::File(e)) = read {
        let _ = e.to_string();
    }
});
