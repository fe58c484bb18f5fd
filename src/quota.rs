//! Quotas (issue 11): how many records a lender may submit per UTC day and per calendar month
//! (UTC), `[[lenders]] daily_record_limit` / `monthly_record_limit`, over every intake.
//!
//! Owns: the windows (their start and reset), what is used and left, and the refusal message
//! of a load that would pass a limit. Counted per environment (each has its own store): every
//! record of every load applied in the window, refused loads and dry runs excepted.
//! Must not: count anything itself (the store sums its loads) or decide how a refusal is
//! reported (the engine makes it the load's ErrorMessage; the API answers 429).

use chrono::{DateTime, Datelike, TimeZone, Utc};

use crate::config::Lender;
use crate::result::iso;
use crate::store::{Store, StoreError};

/// One limit and its use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Window {
    /// `daily_record_limit` or `monthly_record_limit`.
    pub name: &'static str,
    pub limit: u64,
    pub used: u64,
    pub remaining: u64,
    /// ISO 8601: when the window starts again.
    pub resets_at: String,
}

/// The windows of a lender with limits (none when it has no limit).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Quotas {
    pub windows: Vec<Window>,
}

fn day_start(now: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(now.year(), now.month(), now.day(), 0, 0, 0)
        .single()
        .unwrap_or(now)
}

fn month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

fn next_month(start: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m) = if start.month() == 12 {
        (start.year() + 1, 1)
    } else {
        (start.year(), start.month() + 1)
    };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .unwrap_or(start)
}

/// The limits of `lender` at `now` with what `used_since` (records applied since an ISO 8601
/// time) reports.
pub fn quotas_with(
    lender: &Lender,
    now: DateTime<Utc>,
    used_since: &mut dyn FnMut(&str) -> Result<i64, StoreError>,
) -> Result<Quotas, StoreError> {
    let mut windows = Vec::new();
    for (name, limit, start, reset) in [
        (
            "daily_record_limit",
            lender.daily_record_limit,
            day_start(now),
            day_start(now) + chrono::Duration::days(1),
        ),
        (
            "monthly_record_limit",
            lender.monthly_record_limit,
            month_start(now),
            next_month(month_start(now)),
        ),
    ] {
        let Some(limit) = limit else { continue };
        let used = used_since(&iso(start))?.max(0) as u64;
        windows.push(Window {
            name,
            limit,
            used,
            remaining: limit.saturating_sub(used),
            resets_at: iso(reset),
        });
    }
    Ok(Quotas { windows })
}

/// The limits of `lender` in `store` at `now`.
pub fn quotas(
    store: &dyn Store,
    lender: &Lender,
    now: DateTime<Utc>,
) -> Result<Quotas, StoreError> {
    if lender.daily_record_limit.is_none() && lender.monthly_record_limit.is_none() {
        return Ok(Quotas::default());
    }
    quotas_with(lender, now, &mut |since| {
        store.records_submitted_since(&lender.id, since)
    })
}

impl Quotas {
    /// The first window `records` more would pass, if any.
    pub fn exceeded(&self, records: u64) -> Option<&Window> {
        self.windows.iter().find(|w| records > w.remaining)
    }

    /// Why a load of `records` records is refused, if it is: the file-level message.
    pub fn refusal(&self, records: u64) -> Option<String> {
        self.exceeded(records).map(|w| {
            format!(
                "The load has {records} records, more than the {} left of the lender's {} of {} records (it resets at {}); nothing was applied.",
                w.remaining, w.name, w.limit, w.resets_at
            )
        })
    }

    /// Seconds until the window `records` would pass resets.
    pub fn retry_after(&self, records: u64, now: DateTime<Utc>) -> u64 {
        self.exceeded(records)
            .and_then(|w| DateTime::parse_from_rfc3339(&w.resets_at).ok())
            .map_or(60, |t| {
                (t.with_timezone(&Utc) - now).num_seconds().max(1) as u64
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lender(day: Option<u64>, month: Option<u64>) -> Lender {
        Lender {
            id: "acme".into(),
            password_hash: None,
            authorized_keys: None,
            divisions: Vec::new(),
            partner_dedupe: false,
            webhooks: Vec::new(),
            notify_email: Vec::new(),
            api_clients: Vec::new(),
            users: Vec::new(),
            daily_record_limit: day,
            monthly_record_limit: month,
        }
    }

    #[test]
    fn windows_reset_at_midnight_and_month_start_utc() {
        let now = Utc.with_ymd_and_hms(2024, 12, 31, 23, 0, 0).unwrap();
        let mut seen = Vec::new();
        let q = quotas_with(&lender(Some(10), Some(100)), now, &mut |s| {
            seen.push(s.to_string());
            Ok(if s.starts_with("2024-12-31") { 7 } else { 95 })
        })
        .unwrap();
        assert_eq!(
            seen,
            ["2024-12-31T00:00:00.000Z", "2024-12-01T00:00:00.000Z"]
        );
        assert_eq!(q.windows[0].remaining, 3);
        assert_eq!(q.windows[0].resets_at, "2025-01-01T00:00:00.000Z");
        assert_eq!(q.windows[1].remaining, 5);
        assert_eq!(q.windows[1].resets_at, "2025-01-01T00:00:00.000Z");
        assert_eq!(q.refusal(3), None);
        let m = q.refusal(4).unwrap();
        assert!(
            m.contains("daily_record_limit of 10") && m.contains("3 left"),
            "{m}"
        );
        assert!(q.refusal(6).unwrap().contains("daily_record_limit"));
        assert_eq!(q.retry_after(4, now), 3600);
        let none = quotas_with(&lender(None, None), now, &mut |_| panic!("not asked")).unwrap();
        assert_eq!(none.refusal(u64::MAX), None);
    }
}
