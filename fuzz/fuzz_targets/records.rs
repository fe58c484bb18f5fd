//! Arbitrary bytes through the JSON `RecordReader` and the record validator of every kind, with
//! and without the configuration checks; every problem and every file-level refusal is rendered
//! to text. Any panic is a bug.
#![no_main]

use bulkload::config::Config;
use bulkload::input::json::JsonReader;
use bulkload::input::{Bounds, ReadError, RecordReader, Value};
use bulkload::records::{validate, Ctx, Kind};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static CFG: OnceLock<Config> = OnceLock::new();

const BOUNDS: Bounds = Bounds {
    max_record_bytes: 64 * 1024,
    max_records: 1000,
};

/// Validates one record as `kind` and renders every problem of a rejection.
fn check(kind: Kind, element: &Value, ctx: Option<Ctx<'_>>) {
    match validate(kind, element.clone(), ctx) {
        Ok(record) => {
            assert_eq!(record.kind, kind);
            assert!(kind.modes().contains(&record.mode), "{kind:?} accepted {:?}", record.mode);
        }
        Err(rej) => {
            // A rejection always says why.
            assert!(!rej.problems.0.is_empty(), "{kind:?}: rejection without problems");
            for p in rej.problems.0.iter() {
                let m = p.message();
                assert!(!m.is_empty(), "{kind:?}: empty message for {p:?}");
                let _ = p.code.as_str();
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let cfg = CFG.get_or_init(|| Config::embedded().expect("embedded config"));
    let ctx = Ctx {
        lender: &cfg.lenders[0],
        lookups: &cfg.lookups,
    };
    let mut reader = JsonReader::new(data, BOUNDS);
    let reader: &mut dyn RecordReader = &mut reader;
    let mut seen = 0u64;
    let mut sink = |index: u64, element: Value| {
        assert_eq!(index, seen, "records out of order");
        seen += 1;
        for kind in Kind::ALL {
            check(kind, &element, None);
            check(kind, &element, Some(ctx));
        }
        Ok(())
    };
    match reader.read(&mut sink) {
        Ok(n) => assert_eq!(n, seen, "count differs from the records seen"),
        // Every file-level refusal renders to a message.
        Err(ReadError::File(e)) => assert!(!e.to_string().is_empty()),
        Err(ReadError::Stopped) => panic!("stopped although the sink never asked to"),
    }
    // A reader is read once: a second read is refused, not a panic.
    let mut never = |_: u64, _: Value| -> bulkload::input::Flow { panic!("second read yielded a record") };
    assert!(matches!(reader.read(&mut never), Err(ReadError::File(_))));
});
