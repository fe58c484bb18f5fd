//! Crash points for the exactly-once tests: with `BULKLOAD_FAILPOINT=<name>[@<n>]` in the
//! environment, the process kills itself with SIGKILL the n-th time (default: first) it reaches
//! `hit("<name>")`. Unset, `hit` is one relaxed atomic load.
//!
//! Owns: nothing but that switch. Must not: be used for anything but simulating a crash.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
static COUNT: AtomicU64 = AtomicU64::new(0);

fn spec() -> &'static Option<(String, u64)> {
    SPEC.get_or_init(|| {
        let v = std::env::var("BULKLOAD_FAILPOINT").ok()?;
        match v.split_once('@') {
            Some((name, n)) => Some((name.to_string(), n.parse().unwrap_or(1))),
            None => Some((v, 1)),
        }
    })
}

/// Names: `claimed` (a file renamed into work/), `record` (a record applied, not committed),
/// `committed` (a load committed), `result` (its result file written), `rotated` (the older
/// `.last` renamed), `moved` (the file moved to processed, load not yet marked finished).
pub fn hit(name: &str) {
    if let Some((want, at)) = spec() {
        if want == name && COUNT.fetch_add(1, Ordering::SeqCst) + 1 == *at {
            // SAFETY: kill(2) on our own pid with a valid signal number has no memory effects.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}
