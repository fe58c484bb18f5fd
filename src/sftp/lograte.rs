//! Rate limits for repeated log lines a client can provoke (refused logins, refused paths,
//! dropped connections), so that no client can flood the log.
//!
//! Owns: per-category windows of `MAX_LINES_PER_WINDOW` lines, and the summary line ("N more
//! … suppressed") written when a window that suppressed lines is over.
//! Must not: drop a line silently (every suppressed line is counted in a summary), or block.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Length of one window.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Lines of one category written per window; the rest are counted and summarised.
pub const MAX_LINES_PER_WINDOW: u32 = 20;

struct Window {
    start: Instant,
    written: u32,
    suppressed: u64,
}

fn windows() -> &'static Mutex<HashMap<&'static str, Window>> {
    static W: OnceLock<Mutex<HashMap<&'static str, Window>>> = OnceLock::new();
    W.get_or_init(|| Mutex::new(HashMap::new()))
}

fn summarise(category: &str, suppressed: u64) {
    tracing::warn!(
        category,
        suppressed,
        window_seconds = WINDOW.as_secs(),
        "{suppressed} more {category} lines suppressed"
    );
}

/// True when a line of `category` may be written now; otherwise it is counted for the summary.
pub fn allow(category: &'static str) -> bool {
    let now = Instant::now();
    let mut map = windows().lock().unwrap_or_else(|e| e.into_inner());
    let w = map.entry(category).or_insert(Window {
        start: now,
        written: 0,
        suppressed: 0,
    });
    if now.duration_since(w.start) >= WINDOW {
        if w.suppressed > 0 {
            summarise(category, w.suppressed);
        }
        *w = Window {
            start: now,
            written: 0,
            suppressed: 0,
        };
    }
    if w.written < MAX_LINES_PER_WINDOW {
        w.written += 1;
        true
    } else {
        w.suppressed += 1;
        false
    }
}

/// Writes the summaries of windows that are over (called periodically, so a flood that
/// stopped is still summarised).
pub fn flush() {
    let now = Instant::now();
    let mut map = windows().lock().unwrap_or_else(|e| e.into_inner());
    for (category, w) in map.iter_mut() {
        if now.duration_since(w.start) >= WINDOW && w.suppressed > 0 {
            summarise(category, w.suppressed);
            *w = Window {
                start: now,
                written: 0,
                suppressed: 0,
            };
        }
    }
    map.retain(|_, w| now.duration_since(w.start) < WINDOW * 6);
}

/// `tracing::info!` for a line of `category`, rate-limited.
#[macro_export]
macro_rules! limited_info {
    ($category:expr, $($arg:tt)+) => {
        if $crate::sftp::lograte::allow($category) {
            tracing::info!($($arg)+);
        }
    };
}

/// `tracing::warn!` for a line of `category`, rate-limited.
#[macro_export]
macro_rules! limited_warn {
    ($category:expr, $($arg:tt)+) => {
        if $crate::sftp::lograte::allow($category) {
            tracing::warn!($($arg)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_beyond_the_limit() {
        let cat = "test-category";
        let allowed = (0..100).filter(|_| allow(cat)).count();
        assert_eq!(allowed, MAX_LINES_PER_WINDOW as usize);
        let map = windows().lock().unwrap();
        assert_eq!(map[cat].suppressed, 100 - u64::from(MAX_LINES_PER_WINDOW));
    }
}
