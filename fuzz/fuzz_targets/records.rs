//! Arbitrary bytes through the streaming array parser and the record validator of every kind,
//! with and without the configuration checks. Any panic is a bug.
#![no_main]

use bulkload::config::Config;
use bulkload::json::{stream_array, Bounds, StreamError};
use bulkload::records::{validate, Ctx, Kind};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static CFG: OnceLock<Config> = OnceLock::new();

const BOUNDS: Bounds = Bounds {
    max_record_bytes: 64 * 1024,
    max_records: 1000,
};

fuzz_target!(|data: &[u8]| {
    let cfg = CFG.get_or_init(|| Config::embedded().expect("embedded config"));
    let ctx = Ctx {
        lender: &cfg.lenders[0],
        lookups: &cfg.lookups,
    };
    let streamed = stream_array::<_, _, ()>(data, BOUNDS, None, |_, element| {
        for kind in Kind::ALL {
            let _ = validate(kind, element.clone(), None);
            let _ = validate(kind, element.clone(), Some(ctx));
        }
        Ok(())
    });
    if let Err(StreamError::File(e)) = streamed {
        // Every file-level refusal renders to a message.
        let _ = e.to_string();
    }
});
