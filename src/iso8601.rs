//! ISO 8601 dates and date-times: parsing one value and normalizing it to UTC.
//!
//! This module owns the grammar of the values a `DateTime` field accepts, the arithmetic that turns
//! them into one UTC instant, the canonical text the store keeps (`YYYY-MM-DDTHH:MM:SS.mmmZ`), and
//! the wording of what is wrong with a refused value. It must not know about fields, records, modes
//! or files: its messages never name a field nor quote the value (the caller puts both in front, e.g.
//! `SORDate: "2023-02-30": day 30 does not exist in February 2023`), and it does not trim (the
//! caller trims and decides what an empty value means).
//!
//! Accepted (anything else is refused with an [`Iso8601Error`]):
//! - Dates: calendar `2023-12-30` / `20231230`; ordinal `2023-364` / `2023364`; week
//!   `2023-W52-6` / `2023W526`; reduced precision `2023-12` (the 1st of the month, extended form
//!   only: `YYYYMM` is not ISO 8601) and `2023-W52` / `2023W52` (the Monday of that week). A date
//!   alone is midnight UTC. Years 0000-9999 only.
//! - A time after `T`, `t` or one space (RFC 3339), on a full date only: `hh`, `hh:mm`,
//!   `hh:mm:ss`, `hhmm`, `hhmmss`, with an optional fraction of the last component after `.` or
//!   `,` (`14.5` is 14:30, `14:30,5` is 14:30:30). `24:00`, `24:00:00` (any zero fraction) is the
//!   end of the day, i.e. 00:00 of the next day.
//! - A zone after the time: none (UTC), `Z` / `z`, `±hh`, `±hh:mm`, `±hhmm`, the minus also as
//!   U+2212 `−`; at most ±23:59. `-00:00` is UTC.
//!
//! Choices:
//! - Fractions of any length are truncated (never rounded) to whole nanoseconds, and
//!   [`format_utc`] truncates to milliseconds: a value never moves to a later second, minute or
//!   day by rounding.
//! - Basic and extended forms may be mixed between the date, the time and the zone
//!   (`2023-12-30T140000Z`, `20231230T14:00+0100`): ISO 8601 asks for one form throughout, but the
//!   meaning is unambiguous, so it is accepted. Within the date, the time or the zone alone the
//!   form must be consistent (`14:3000` is refused).
//! - Leap second: `ss` = 60 is accepted only where the instant is 23:59:60 UTC (so `00:59:60+01:00`
//!   too), on any date (there is no table of the dates that really had one), and is clamped to the
//!   last nanosecond of 23:59:59 UTC, which [`format_utc`] shows as `23:59:59.999`. Clamping, not
//!   rolling into the next second, keeps the value on its calendar day and its order among the
//!   seconds before it.
//! - A zone on a date without a time (`2023-12-30Z`) and a time on a reduced date (`2023-12T10`)
//!   are refused: the first has no defined meaning, the second is forbidden by ISO 8601.
//! - A value whose UTC instant leaves years 0000-9999 (`9999-12-31T24:00`,
//!   `0000-01-01T00:00+01:00`) is refused: the canonical form has four year digits.
//! - Positions in messages count characters (not bytes) from 1.
//! - Input over 64 bytes is refused before any parsing; the parser works on a `Vec<char>` and never
//!   slices the `&str`, so any Unicode input is safe.

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, Timelike, Utc, Weekday};

/// The longest input, in bytes, that [`parse`] looks at.
pub const MAX_LEN: usize = 64;

const NS_PER_SEC: u64 = 1_000_000_000;

/// Why a value is not an accepted ISO 8601 date or date-time. `Display` is a sentence fragment
/// without the field's name or the value (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Iso8601Error {
    #[error("is too long: {len} bytes, a date or date-time has at most 64")]
    TooLong { len: usize },
    #[error("is empty")]
    Empty,
    #[error("expanded years (±YYYYY) are not supported: the year must have 4 digits (0000-9999)")]
    ExpandedYear,
    #[error("year must have 4 digits, found {found}")]
    YearDigits { found: usize },
    #[error("a year alone is not a date: give at least the month (YYYY-MM)")]
    YearOnly,
    #[error("YYYYMM is not an ISO 8601 date: write a month as YYYY-MM, a day as YYYYMMDD")]
    BasicYearMonth,
    #[error("{found} digits are not an ISO 8601 date (YYYY-MM-DD, YYYYMMDD, YYYY-DDD or YYYYDDD)")]
    DateDigits { found: usize },
    #[error(
        "expected a 2-digit month or a 3-digit day of the year after the year, found {found} digits"
    )]
    MonthOrOrdinalDigits { found: usize },
    /// A fixed-width component (month, day, week, weekday, hour, minute, second, zone minutes)
    /// has the wrong number of digits.
    #[error("{what} must have {expected} digit{}, found {found}", if *expected == 1 { "" } else { "s" })]
    Digits {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// The value ends where a component is required.
    #[error("missing {what} at the end")]
    Missing { what: &'static str },
    /// `pos` counts characters from 1.
    #[error("unexpected \"{}\" at position {pos}", ch.escape_debug())]
    Unexpected { ch: char, pos: usize },
    #[error("month {month:02} is out of range (01-12)")]
    MonthRange { month: u32 },
    #[error("day {day:02} does not exist in {} {year:04}", month_name(*month))]
    DayRange { day: u32, month: u32, year: i32 },
    #[error("day {day:03} of the year does not exist in {year:04}, which has {days} days")]
    OrdinalRange { day: u32, year: i32, days: u32 },
    #[error("week {week:02} does not exist in {year:04}, which has {weeks} weeks")]
    WeekRange { week: u32, year: i32, weeks: u32 },
    #[error("weekday {weekday} is out of range (1-7, Monday is 1)")]
    WeekdayRange { weekday: u32 },
    #[error(
        "a time needs a full date (YYYY-MM-DD, YYYY-DDD or YYYY-Www-D), not a month or a week"
    )]
    TimeOnReducedDate,
    #[error(
        "a date without a time cannot have a zone: add a time (e.g. T00:00Z) or drop the zone"
    )]
    ZoneWithoutTime,
    #[error("missing time after {}", if *sep == ' ' { "the space".to_string() } else { format!("\"{}\"", sep.escape_debug()) })]
    MissingTime { sep: char },
    #[error("a time of {found} digits is not hh, hhmm or hhmmss")]
    TimeDigits { found: usize },
    #[error("hour {hour:02} is out of range (00-24)")]
    HourRange { hour: u32 },
    #[error("minute {minute:02} is out of range (00-59)")]
    MinuteRange { minute: u32 },
    #[error("second {second:02} is out of range (00-59, or 60 for a leap second)")]
    SecondRange { second: u32 },
    #[error("hour 24 is allowed only as 24:00:00, the end of the day")]
    EndOfDay,
    #[error("second 60 is a leap second, which exists only at 23:59:60 UTC")]
    LeapSecond,
    #[error("missing digits after the decimal {} \"{sep}\"", if *sep == ',' { "comma" } else { "point" })]
    MissingFraction { sep: char },
    #[error("zone offset must be ±hh, ±hh:mm or ±hhmm, found {found} digit{}", if *found == 1 { "" } else { "s" })]
    ZoneDigits { found: usize },
    #[error("zone offset {}{hour:02}:{minute:02} is out of range (hours 00-23, minutes 00-59)", if *negative { '-' } else { '+' })]
    ZoneRange {
        negative: bool,
        hour: u32,
        minute: u32,
    },
    #[error("falls outside years 0000-9999 once converted to UTC")]
    OutOfYears,
}

fn month_name(m: u32) -> &'static str {
    const NAMES: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    NAMES
        .get((m as usize).wrapping_sub(1))
        .copied()
        .unwrap_or("?")
}

/// Parses one ISO 8601 calendar, ordinal or week date, or date-time, and returns it in UTC.
/// See the module documentation for the accepted forms and the choices made.
pub fn parse(s: &str) -> Result<DateTime<Utc>, Iso8601Error> {
    if s.len() > MAX_LEN {
        return Err(Iso8601Error::TooLong { len: s.len() });
    }
    if s.is_empty() {
        return Err(Iso8601Error::Empty);
    }
    // At most MAX_LEN bytes, so at most as many characters: no allocation per value.
    let mut c = ['\0'; MAX_LEN];
    let mut n = 0;
    for (slot, ch) in c.iter_mut().zip(s.chars()) {
        *slot = ch;
        n += 1;
    }
    let mut p = Parser { c, n, i: 0 };
    p.value()
}

/// The canonical output form used in the store: `YYYY-MM-DDTHH:MM:SS.mmmZ`, milliseconds
/// truncated. A chrono leap second (nanoseconds ≥ 10⁹) is clamped to `23:59:59.999` as in [`parse`].
pub fn format_utc(t: &DateTime<Utc>) -> String {
    let t = if t.nanosecond() >= NS_PER_SEC as u32 {
        t.with_nanosecond(NS_PER_SEC as u32 - 1).unwrap_or(*t)
    } else {
        *t
    };
    let (year, ms) = (t.year(), t.nanosecond() / 1_000_000);
    if !(0..=9999).contains(&year) {
        return t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    }
    // Written digit by digit: chrono's format string is parsed again for every value.
    let mut out = [0u8; 24];
    let mut put = |at: usize, width: usize, mut n: u32| {
        for k in (at..at + width).rev() {
            out[k] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year as u32);
    put(5, 2, t.month());
    put(8, 2, t.day());
    put(11, 2, t.hour());
    put(14, 2, t.minute());
    put(17, 2, t.second());
    put(20, 3, ms);
    for (k, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        out[k] = c;
    }
    // All ASCII digits and separators: one copy (collecting it char by char was a third of it).
    std::str::from_utf8(&out).unwrap_or_default().to_owned()
}

/// [`format_utc`] through chrono's format string, as it was written before; tests compare.
#[cfg(test)]
fn format_utc_chrono(t: &DateTime<Utc>) -> String {
    let t = if t.nanosecond() >= NS_PER_SEC as u32 {
        t.with_nanosecond(NS_PER_SEC as u32 - 1).unwrap_or(*t)
    } else {
        *t
    };
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A date as parsed, with whether it is a reduced one (a month or a week without its day).
struct Date {
    date: NaiveDate,
    reduced: bool,
}

struct Time {
    hour: u32,
    minute: u32,
    second: u32,
    /// Nanoseconds from the fraction of the last component, below one unit of it.
    frac_ns: u64,
}

struct Parser {
    /// The value's characters are `c[..n]`.
    c: [char; MAX_LEN],
    n: usize,
    i: usize,
}

/// Characters that may follow a digit run in some accepted form: a run of the wrong length
/// followed by anything else is reported as that unexpected character instead.
fn structural(ch: char) -> bool {
    matches!(
        ch,
        '-' | ':' | 'T' | 't' | ' ' | 'Z' | 'z' | '+' | '\u{2212}' | '.' | ',' | 'W'
    )
}

impl Parser {
    fn chars(&self) -> &[char] {
        &self.c[..self.n]
    }

    fn peek(&self) -> Option<char> {
        self.chars().get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.chars().get(self.i + k).copied()
    }

    /// Length of the run of ASCII digits at the cursor.
    fn run(&self) -> usize {
        self.chars()[self.i.min(self.n)..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    }

    /// Consumes `n` digits (at most 9, all known to be ASCII digits) as a number.
    fn take(&mut self, n: usize) -> u32 {
        let mut v = 0u32;
        for _ in 0..n {
            let d = self.chars()[self.i].to_digit(10).unwrap_or(0);
            v = v * 10 + d;
            self.i += 1;
        }
        v
    }

    /// The character at the cursor as an error, or `missing` at the end.
    fn unexpected_or(&self, missing: Iso8601Error) -> Iso8601Error {
        match self.peek() {
            Some(ch) => Iso8601Error::Unexpected {
                ch,
                pos: self.i + 1,
            },
            None => missing,
        }
    }

    /// The error for a digit run of length `r` that is not an accepted length: an unexpected
    /// character if the run is empty or followed by something no form allows, else `err`.
    fn count_error(&self, r: usize, what: &'static str, err: Iso8601Error) -> Iso8601Error {
        if r == 0 {
            return self.unexpected_or(Iso8601Error::Missing { what });
        }
        match self.peek_at(r) {
            Some(ch) if !structural(ch) => Iso8601Error::Unexpected {
                ch,
                pos: self.i + r + 1,
            },
            _ => err,
        }
    }

    /// Exactly `n` digits of the component `what`.
    fn fixed(&mut self, what: &'static str, n: usize) -> Result<u32, Iso8601Error> {
        let r = self.run();
        if r == n {
            return Ok(self.take(n));
        }
        Err(self.count_error(
            r,
            what,
            Iso8601Error::Digits {
                what,
                expected: n,
                found: r,
            },
        ))
    }

    fn value(&mut self) -> Result<DateTime<Utc>, Iso8601Error> {
        if matches!(self.peek(), Some('+' | '-' | '\u{2212}')) {
            return Err(Iso8601Error::ExpandedYear);
        }
        let date = self.date()?;
        let time = match self.peek() {
            None => {
                return in_utc(date.date, 0, 0);
            }
            Some(sep @ ('T' | 't' | ' ')) => {
                if date.reduced {
                    return Err(Iso8601Error::TimeOnReducedDate);
                }
                self.i += 1;
                self.time(sep)?
            }
            Some('Z' | 'z' | '+' | '\u{2212}') => return Err(Iso8601Error::ZoneWithoutTime),
            Some('-') => {
                // A zone if what follows reads as one, else just a stray '-'.
                let start = self.i;
                if self.zone().is_ok() && self.peek().is_none() {
                    return Err(Iso8601Error::ZoneWithoutTime);
                }
                return Err(Iso8601Error::Unexpected {
                    ch: '-',
                    pos: start + 1,
                });
            }
            Some(ch) => {
                return Err(Iso8601Error::Unexpected {
                    ch,
                    pos: self.i + 1,
                })
            }
        };
        let offset_min = self.zone()?;
        if let Some(ch) = self.peek() {
            return Err(Iso8601Error::Unexpected {
                ch,
                pos: self.i + 1,
            });
        }

        let Time {
            hour,
            minute,
            second,
            frac_ns,
        } = time;
        let ns = if second == 60 {
            let local = i64::from(hour * 60 + minute);
            if (local - offset_min).rem_euclid(24 * 60) != 23 * 60 + 59 {
                return Err(Iso8601Error::LeapSecond);
            }
            // Clamped to the last nanosecond of second 59 (documented at the top).
            (u64::from(hour) * 3600 + u64::from(minute) * 60 + 59) * NS_PER_SEC + NS_PER_SEC - 1
        } else {
            (u64::from(hour) * 3600 + u64::from(minute) * 60 + u64::from(second)) * NS_PER_SEC
                + frac_ns
        };
        in_utc(date.date, ns, offset_min)
    }

    fn date(&mut self) -> Result<Date, Iso8601Error> {
        let r = self.run();
        if r == 0 {
            return Err(self.unexpected_or(Iso8601Error::Empty));
        }
        match self.peek_at(r) {
            Some('-') => {
                if r != 4 {
                    return Err(Iso8601Error::YearDigits { found: r });
                }
                let year = self.take(4) as i32;
                self.i += 1;
                if self.peek() == Some('W') {
                    self.i += 1;
                    let week = self.fixed("week", 2)?;
                    let weekday = if self.peek() == Some('-') {
                        self.i += 1;
                        Some(self.fixed("weekday", 1)?)
                    } else {
                        None
                    };
                    return week_date(year, week, weekday);
                }
                let r = self.run();
                match r {
                    2 => {
                        let month = self.take(2);
                        if self.peek() == Some('-') {
                            self.i += 1;
                            let day = self.fixed("day", 2)?;
                            calendar(year, month, day).map(|date| Date {
                                date,
                                reduced: false,
                            })
                        } else {
                            calendar(year, month, 1).map(|date| Date {
                                date,
                                reduced: true,
                            })
                        }
                    }
                    3 => {
                        let day = self.take(3);
                        ordinal(year, day)
                    }
                    1 => Err(self.count_error(
                        r,
                        "month",
                        Iso8601Error::Digits {
                            what: "month",
                            expected: 2,
                            found: r,
                        },
                    )),
                    _ => Err(self.count_error(
                        r,
                        "month or day of the year",
                        Iso8601Error::MonthOrOrdinalDigits { found: r },
                    )),
                }
            }
            Some('W') => {
                if r != 4 {
                    return Err(Iso8601Error::YearDigits { found: r });
                }
                let year = self.take(4) as i32;
                self.i += 1;
                let r = self.run();
                let (week, weekday) = match r {
                    2 => (self.take(2), None),
                    3 => (self.take(2), Some(self.take(1))),
                    _ => {
                        return Err(self.count_error(
                            r,
                            "week",
                            Iso8601Error::Digits {
                                what: "week",
                                expected: 2,
                                found: r,
                            },
                        ))
                    }
                };
                week_date(year, week, weekday)
            }
            next => {
                if let Some(ch) = next {
                    if !matches!(ch, 'T' | 't' | ' ' | 'Z' | 'z' | '+' | '\u{2212}') {
                        return Err(Iso8601Error::Unexpected {
                            ch,
                            pos: self.i + r + 1,
                        });
                    }
                }
                match r {
                    8 => {
                        let year = self.take(4) as i32;
                        let month = self.take(2);
                        let day = self.take(2);
                        calendar(year, month, day).map(|date| Date {
                            date,
                            reduced: false,
                        })
                    }
                    7 => {
                        let year = self.take(4) as i32;
                        let day = self.take(3);
                        ordinal(year, day)
                    }
                    6 => Err(Iso8601Error::BasicYearMonth),
                    4 => Err(Iso8601Error::YearOnly),
                    1..=3 => Err(Iso8601Error::YearDigits { found: r }),
                    _ => Err(Iso8601Error::DateDigits { found: r }),
                }
            }
        }
    }

    /// The time after its separator `sep`, up to the zone.
    fn time(&mut self, sep: char) -> Result<Time, Iso8601Error> {
        if self.peek().is_none() {
            return Err(Iso8601Error::MissingTime { sep });
        }
        let r = self.run();
        let mut t = Time {
            hour: 0,
            minute: 0,
            second: 0,
            frac_ns: 0,
        };
        // Nanoseconds in one unit of the last component given.
        let unit: u64;
        match r {
            0 | 1 => {
                let e = Iso8601Error::Digits {
                    what: "hour",
                    expected: 2,
                    found: r,
                };
                return Err(self.count_error(r, "hour", e));
            }
            2 => {
                t.hour = self.take(2);
                unit = if self.peek() == Some(':') {
                    self.i += 1;
                    t.minute = self.fixed("minute", 2)?;
                    if self.peek() == Some(':') {
                        self.i += 1;
                        t.second = self.fixed("second", 2)?;
                        NS_PER_SEC
                    } else {
                        60 * NS_PER_SEC
                    }
                } else {
                    3600 * NS_PER_SEC
                };
            }
            4 => {
                t.hour = self.take(2);
                t.minute = self.take(2);
                unit = 60 * NS_PER_SEC;
            }
            6 => {
                t.hour = self.take(2);
                t.minute = self.take(2);
                t.second = self.take(2);
                unit = NS_PER_SEC;
            }
            _ => {
                return Err(self.count_error(r, "time", Iso8601Error::TimeDigits { found: r }));
            }
        }
        if t.hour > 24 {
            return Err(Iso8601Error::HourRange { hour: t.hour });
        }
        if t.minute > 59 {
            return Err(Iso8601Error::MinuteRange { minute: t.minute });
        }
        if t.second > 60 {
            return Err(Iso8601Error::SecondRange { second: t.second });
        }
        if let Some(dot @ ('.' | ',')) = self.peek() {
            self.i += 1;
            let r = self.run();
            if r == 0 {
                return Err(Iso8601Error::MissingFraction { sep: dot });
            }
            t.frac_ns = fraction(&self.chars()[self.i..self.i + r], unit);
            self.i += r;
        }
        if t.hour == 24 && (t.minute != 0 || t.second != 0 || t.frac_ns != 0) {
            return Err(Iso8601Error::EndOfDay);
        }
        Ok(t)
    }

    /// The zone at the cursor (or none), as minutes east of UTC.
    fn zone(&mut self) -> Result<i64, Iso8601Error> {
        let negative = match self.peek() {
            None => return Ok(0),
            Some('Z' | 'z') => {
                self.i += 1;
                return Ok(0);
            }
            Some('+') => false,
            Some('-' | '\u{2212}') => true,
            Some(ch) => {
                return Err(Iso8601Error::Unexpected {
                    ch,
                    pos: self.i + 1,
                })
            }
        };
        self.i += 1;
        let r = self.run();
        let (hour, minute) = match r {
            2 => {
                let h = self.take(2);
                let m = if self.peek() == Some(':') {
                    self.i += 1;
                    self.fixed("zone offset minutes", 2)?
                } else {
                    0
                };
                (h, m)
            }
            4 => (self.take(2), self.take(2)),
            _ => {
                return Err(self.count_error(
                    r,
                    "zone offset",
                    Iso8601Error::ZoneDigits { found: r },
                ))
            }
        };
        if hour > 23 || minute > 59 {
            return Err(Iso8601Error::ZoneRange {
                negative,
                hour,
                minute,
            });
        }
        let m = i64::from(hour * 60 + minute);
        Ok(if negative { -m } else { m })
    }
}

fn calendar(year: i32, month: u32, day: u32) -> Result<NaiveDate, Iso8601Error> {
    if !(1..=12).contains(&month) {
        return Err(Iso8601Error::MonthRange { month });
    }
    NaiveDate::from_ymd_opt(year, month, day).ok_or(Iso8601Error::DayRange { day, month, year })
}

fn ordinal(year: i32, day: u32) -> Result<Date, Iso8601Error> {
    let days = if NaiveDate::from_yo_opt(year, 366).is_some() {
        366
    } else {
        365
    };
    NaiveDate::from_yo_opt(year, day)
        .map(|date| Date {
            date,
            reduced: false,
        })
        .ok_or(Iso8601Error::OrdinalRange { day, year, days })
}

fn week_date(year: i32, week: u32, weekday: Option<u32>) -> Result<Date, Iso8601Error> {
    const DAYS: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];
    let wd = match weekday {
        None => Weekday::Mon,
        Some(d @ 1..=7) => DAYS[d as usize - 1],
        Some(d) => return Err(Iso8601Error::WeekdayRange { weekday: d }),
    };
    let weeks = if NaiveDate::from_isoywd_opt(year, 53, Weekday::Mon).is_some() {
        53
    } else {
        52
    };
    NaiveDate::from_isoywd_opt(year, week, wd)
        .map(|date| Date {
            date,
            reduced: weekday.is_none(),
        })
        .ok_or(Iso8601Error::WeekRange { week, year, weeks })
}

/// `floor(0.digits × unit)`: exact for any number of digits (long multiplication from the last
/// digit, keeping only the carry, which ends as the integer part).
fn fraction(digits: &[char], unit: u64) -> u64 {
    let mut carry = 0u64;
    for d in digits.iter().rev() {
        let t = u64::from(d.to_digit(10).unwrap_or(0)) * unit + carry;
        carry = t / 10;
    }
    carry
}

/// Midnight of `date` plus `ns`, at `offset_min` minutes east of UTC, as a UTC instant in years
/// 0000-9999.
fn in_utc(date: NaiveDate, ns: u64, offset_min: i64) -> Result<DateTime<Utc>, Iso8601Error> {
    let local = date.and_time(NaiveTime::MIN);
    let utc = i64::try_from(ns)
        .ok()
        .and_then(|ns| local.checked_add_signed(TimeDelta::nanoseconds(ns)))
        .and_then(|t| t.checked_sub_signed(TimeDelta::minutes(offset_min)))
        .ok_or(Iso8601Error::OutOfYears)?;
    if !(0..=9999).contains(&utc.year()) {
        return Err(Iso8601Error::OutOfYears);
    }
    Ok(utc.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        match parse(s) {
            Ok(t) => format_utc(&t),
            Err(e) => panic!("{s:?} refused: {e}"),
        }
    }

    #[test]
    fn dates() {
        let cases = [
            ("2023-12-30", "2023-12-30T00:00:00.000Z"),
            ("20231230", "2023-12-30T00:00:00.000Z"),
            ("2023-364", "2023-12-30T00:00:00.000Z"),
            ("2023364", "2023-12-30T00:00:00.000Z"),
            ("2023-001", "2023-01-01T00:00:00.000Z"),
            ("2024-366", "2024-12-31T00:00:00.000Z"),
            ("2024-060", "2024-02-29T00:00:00.000Z"),
            ("2023-W52-6", "2023-12-30T00:00:00.000Z"),
            ("2023W526", "2023-12-30T00:00:00.000Z"),
            ("2023-W52", "2023-12-25T00:00:00.000Z"),
            ("2023W52", "2023-12-25T00:00:00.000Z"),
            ("2020-W53-5", "2021-01-01T00:00:00.000Z"),
            ("2020-W01-1", "2019-12-30T00:00:00.000Z"),
            ("2023-W01-7", "2023-01-08T00:00:00.000Z"),
            ("2023-12", "2023-12-01T00:00:00.000Z"),
            ("2024-02-29", "2024-02-29T00:00:00.000Z"),
            ("2000-02-29", "2000-02-29T00:00:00.000Z"),
            ("0000-01-01", "0000-01-01T00:00:00.000Z"),
            ("0000-W01-1", "0000-01-03T00:00:00.000Z"),
            ("9999-12-31", "9999-12-31T00:00:00.000Z"),
        ];
        for (s, want) in cases {
            assert_eq!(ok(s), want, "{s:?}");
        }
    }

    #[test]
    fn times() {
        let cases = [
            ("2023-12-30T14", "2023-12-30T14:00:00.000Z"),
            ("2023-12-30T14:30", "2023-12-30T14:30:00.000Z"),
            ("2023-12-30T14:30:15", "2023-12-30T14:30:15.000Z"),
            ("2023-12-30T1430", "2023-12-30T14:30:00.000Z"),
            ("2023-12-30T143015", "2023-12-30T14:30:15.000Z"),
            ("20231230T143015", "2023-12-30T14:30:15.000Z"),
            ("2023-12-30 14:30:15", "2023-12-30T14:30:15.000Z"),
            ("2023-12-30t14:30:15z", "2023-12-30T14:30:15.000Z"),
            ("2023-12-30T14:30:15Z", "2023-12-30T14:30:15.000Z"),
            ("2023-364T14:30Z", "2023-12-30T14:30:00.000Z"),
            ("2023364T1430Z", "2023-12-30T14:30:00.000Z"),
            ("2023-W52-6T14:30Z", "2023-12-30T14:30:00.000Z"),
            ("2023W526T1430Z", "2023-12-30T14:30:00.000Z"),
            ("2023-12-30T00:00:00", "2023-12-30T00:00:00.000Z"),
            ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
        ];
        for (s, want) in cases {
            assert_eq!(ok(s), want, "{s:?}");
        }
    }

    #[test]
    fn fractions() {
        let cases = [
            ("2023-12-30T14:30:15.5", "2023-12-30T14:30:15.500Z"),
            ("2023-12-30T14:30:15,5", "2023-12-30T14:30:15.500Z"),
            (
                "2023-12-30T14:30:15.123456789123",
                "2023-12-30T14:30:15.123Z",
            ),
            (
                "2023-12-30T14:30:15.9999999999Z",
                "2023-12-30T14:30:15.999Z",
            ),
            ("2023-12-30T143015,25Z", "2023-12-30T14:30:15.250Z"),
            ("2023-12-30T14:30.5", "2023-12-30T14:30:30.000Z"),
            ("2023-12-30T1430,25", "2023-12-30T14:30:15.000Z"),
            ("2023-12-30T14.5", "2023-12-30T14:30:00.000Z"),
            ("2023-12-30T14,25Z", "2023-12-30T14:15:00.000Z"),
            (
                "2023-12-30T14.999999999999999999",
                "2023-12-30T14:59:59.999Z",
            ),
            ("2023-12-30T00.3333333333333", "2023-12-30T00:19:59.999Z"),
            ("2023-12-30T14:30:15.0", "2023-12-30T14:30:15.000Z"),
            ("2023-12-30T14:30:15.5+01:00", "2023-12-30T13:30:15.500Z"),
        ];
        for (s, want) in cases {
            assert_eq!(ok(s), want, "{s:?}");
        }
        // Truncated, not rounded, to nanoseconds.
        let t = parse("2023-12-30T00:00:00.123456789999").unwrap();
        assert_eq!(t.nanosecond(), 123_456_789);
        let t = parse("2023-12-30T00:00:00.000000001").unwrap();
        assert_eq!(t.nanosecond(), 1);
        // A 1/3 of an hour is 1200 s less a part of a nanosecond.
        let t = parse("2023-12-30T00.33333333333333333333333333333333333333333333333").unwrap();
        assert_eq!(
            (t.minute(), t.second(), t.nanosecond()),
            (19, 59, 999_999_999)
        );
    }

    #[test]
    fn end_of_day_and_leap_second() {
        let cases = [
            ("2023-12-30T24:00", "2023-12-31T00:00:00.000Z"),
            ("2023-12-30T24", "2023-12-31T00:00:00.000Z"),
            ("2023-12-30T24:00:00", "2023-12-31T00:00:00.000Z"),
            ("2023-12-30T240000Z", "2023-12-31T00:00:00.000Z"),
            ("2023-12-30T24:00:00.000Z", "2023-12-31T00:00:00.000Z"),
            ("2023-12-30T24,0", "2023-12-31T00:00:00.000Z"),
            ("2023-12-31T24:00Z", "2024-01-01T00:00:00.000Z"),
            ("2023-12-30T24:00+01:00", "2023-12-30T23:00:00.000Z"),
            ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999Z"),
            ("2016-12-31T23:59:60.5Z", "2016-12-31T23:59:59.999Z"),
            ("2016-12-31T235960Z", "2016-12-31T23:59:59.999Z"),
            ("2017-01-01T00:59:60+01:00", "2016-12-31T23:59:59.999Z"),
            ("2016-12-31T18:59:60-05:00", "2016-12-31T23:59:59.999Z"),
            ("2016-12-31T23:59:60", "2016-12-31T23:59:59.999Z"),
        ];
        for (s, want) in cases {
            assert_eq!(ok(s), want, "{s:?}");
        }
        // Clamped to the last nanosecond: after every other instant of that second.
        let leap = parse("2016-12-31T23:59:60Z").unwrap();
        assert!(
            leap > parse("2016-12-31T23:59:59.999999999Z").unwrap() - TimeDelta::nanoseconds(1)
        );
        assert!(leap < parse("2017-01-01T00:00Z").unwrap());
    }

    #[test]
    fn zones() {
        let cases = [
            ("2023-12-30T14:00Z", "2023-12-30T14:00:00.000Z"),
            ("2023-12-30T14:00+01", "2023-12-30T13:00:00.000Z"),
            ("2023-12-30T14:00+01:00", "2023-12-30T13:00:00.000Z"),
            ("2023-12-30T14:00+0100", "2023-12-30T13:00:00.000Z"),
            ("2023-12-30T14:00:00+05:30", "2023-12-30T08:30:00.000Z"),
            ("2023-12-30T14:00-05:30", "2023-12-30T19:30:00.000Z"),
            ("2023-12-30T14:00\u{2212}05:30", "2023-12-30T19:30:00.000Z"),
            ("2023-12-30T14:00\u{2212}0530", "2023-12-30T19:30:00.000Z"),
            ("2023-12-30T14:00\u{2212}05", "2023-12-30T19:00:00.000Z"),
            ("2023-12-30T14:00-00:00", "2023-12-30T14:00:00.000Z"),
            ("2023-12-30T14:00+00", "2023-12-30T14:00:00.000Z"),
            ("2023-12-30T14:00+23:59", "2023-12-29T14:01:00.000Z"),
            ("2023-12-30T14:00-23:59", "2023-12-31T13:59:00.000Z"),
            ("2023-12-30T01:00+02:00", "2023-12-29T23:00:00.000Z"),
            ("2023-12-31T23:00-02:00", "2024-01-01T01:00:00.000Z"),
            ("2023-12-30T14z", "2023-12-30T14:00:00.000Z"),
            ("2023-12-30T14.5+01", "2023-12-30T13:30:00.000Z"),
        ];
        for (s, want) in cases {
            assert_eq!(ok(s), want, "{s:?}");
        }
    }

    #[test]
    fn mixed_basic_and_extended() {
        let cases = [
            ("2023-12-30T140000Z", "2023-12-30T14:00:00.000Z"),
            ("20231230T14:00:00Z", "2023-12-30T14:00:00.000Z"),
            ("2023-12-30T14:00:00+0100", "2023-12-30T13:00:00.000Z"),
            ("20231230T140000+01:00", "2023-12-30T13:00:00.000Z"),
            ("2023-W52-6T1400", "2023-12-30T14:00:00.000Z"),
        ];
        for (s, want) in cases {
            assert_eq!(ok(s), want, "{s:?}");
        }
    }

    #[test]
    fn refusals() {
        let long = format!("2023-12-30T14:00:00.{}Z", "0".repeat(44));
        assert_eq!(long.len(), 65);
        let at_limit = format!("2023-12-30T14:00:00.{}Z", "0".repeat(43));
        assert_eq!(ok(&at_limit), "2023-12-30T14:00:00.000Z");
        let cases: &[(&str, &str)] = &[
            (&long, "is too long: 65 bytes, a date or date-time has at most 64"),
            ("", "is empty"),
            // year
            ("+12023-12-30", "expanded years (±YYYYY) are not supported: the year must have 4 digits (0000-9999)"),
            ("-2023-12-30", "expanded years (±YYYYY) are not supported: the year must have 4 digits (0000-9999)"),
            ("\u{2212}2023", "expanded years (±YYYYY) are not supported: the year must have 4 digits (0000-9999)"),
            ("23-12-30", "year must have 4 digits, found 2"),
            ("02023-12-30", "year must have 4 digits, found 5"),
            ("202W52", "year must have 4 digits, found 3"),
            ("231", "year must have 4 digits, found 3"),
            ("2023", "a year alone is not a date: give at least the month (YYYY-MM)"),
            ("2023T10", "a year alone is not a date: give at least the month (YYYY-MM)"),
            ("202312", "YYYYMM is not an ISO 8601 date: write a month as YYYY-MM, a day as YYYYMMDD"),
            ("20231", "5 digits are not an ISO 8601 date (YYYY-MM-DD, YYYYMMDD, YYYY-DDD or YYYYDDD)"),
            ("202312301400", "12 digits are not an ISO 8601 date (YYYY-MM-DD, YYYYMMDD, YYYY-DDD or YYYYDDD)"),
            // calendar
            ("2023-13-01", "month 13 is out of range (01-12)"),
            ("2023-00-10", "month 00 is out of range (01-12)"),
            ("20231301", "month 13 is out of range (01-12)"),
            ("2023-13", "month 13 is out of range (01-12)"),
            ("2023-02-30", "day 30 does not exist in February 2023"),
            ("2023-02-29", "day 29 does not exist in February 2023"),
            ("1900-02-29", "day 29 does not exist in February 1900"),
            ("2023-04-31", "day 31 does not exist in April 2023"),
            ("2023-01-32", "day 32 does not exist in January 2023"),
            ("2023-01-00", "day 00 does not exist in January 2023"),
            ("20230230", "day 30 does not exist in February 2023"),
            ("2023-1-30", "month must have 2 digits, found 1"),
            ("2023-12-3", "day must have 2 digits, found 1"),
            ("2023-12-301", "day must have 2 digits, found 3"),
            ("2023-1230", "expected a 2-digit month or a 3-digit day of the year after the year, found 4 digits"),
            ("2023-12-", "missing day at the end"),
            ("2023-", "missing month or day of the year at the end"),
            ("2023/12/30", "unexpected \"/\" at position 5"),
            ("2023-12/30", "unexpected \"/\" at position 8"),
            ("2023-12-30x", "unexpected \"x\" at position 11"),
            ("2023-1x-30", "unexpected \"x\" at position 7"),
            ("2023-12-3x", "unexpected \"x\" at position 10"),
            ("2023--30", "unexpected \"-\" at position 6"),
            ("x2023", "unexpected \"x\" at position 1"),
            (" 2023-12-30", "unexpected \" \" at position 1"),
            ("２０２３-12-30", "unexpected \"２\" at position 1"),
            ("2023-12-30\u{0}", "unexpected \"\\0\" at position 11"),
            ("2023-12-30\u{2028}", "unexpected \"\\u{2028}\" at position 11"),
            ("2023-12-30-", "unexpected \"-\" at position 11"),
            ("2023-12-30-x", "unexpected \"-\" at position 11"),
            // ordinal
            ("2023-366", "day 366 of the year does not exist in 2023, which has 365 days"),
            ("2024-367", "day 367 of the year does not exist in 2024, which has 366 days"),
            ("2023-000", "day 000 of the year does not exist in 2023, which has 365 days"),
            ("2023366", "day 366 of the year does not exist in 2023, which has 365 days"),
            // week
            ("2023-W53", "week 53 does not exist in 2023, which has 52 weeks"),
            ("2020-W54-1", "week 54 does not exist in 2020, which has 53 weeks"),
            ("2023-W00", "week 00 does not exist in 2023, which has 52 weeks"),
            ("2023-W52-8", "weekday 8 is out of range (1-7, Monday is 1)"),
            ("2023-W52-0", "weekday 0 is out of range (1-7, Monday is 1)"),
            ("2023W520", "weekday 0 is out of range (1-7, Monday is 1)"),
            ("2023-W5", "week must have 2 digits, found 1"),
            ("2023-W526", "week must have 2 digits, found 3"),
            ("2023W5", "week must have 2 digits, found 1"),
            ("2023W5261", "week must have 2 digits, found 4"),
            ("2023-W52-67", "weekday must have 1 digit, found 2"),
            ("2023-W", "missing week at the end"),
            ("2023-W52-", "missing weekday at the end"),
            ("2023-w52", "unexpected \"w\" at position 6"),
            // date and time
            ("2023-12-30T", "missing time after \"T\""),
            ("2023-12-30t", "missing time after \"t\""),
            ("2023-12-30 ", "missing time after the space"),
            ("2023-12-30Tx", "unexpected \"x\" at position 12"),
            ("2023-12-30  14:00", "unexpected \" \" at position 12"),
            ("2023-12-30Z", "a date without a time cannot have a zone: add a time (e.g. T00:00Z) or drop the zone"),
            ("20231230z", "a date without a time cannot have a zone: add a time (e.g. T00:00Z) or drop the zone"),
            ("2023-12-30+01:00", "a date without a time cannot have a zone: add a time (e.g. T00:00Z) or drop the zone"),
            ("2023-12-30-05:00", "a date without a time cannot have a zone: add a time (e.g. T00:00Z) or drop the zone"),
            ("2023-12-30\u{2212}05", "a date without a time cannot have a zone: add a time (e.g. T00:00Z) or drop the zone"),
            ("2023-12Z", "a date without a time cannot have a zone: add a time (e.g. T00:00Z) or drop the zone"),
            ("2023-12T10:00", "a time needs a full date (YYYY-MM-DD, YYYY-DDD or YYYY-Www-D), not a month or a week"),
            ("2023-W52T10:00", "a time needs a full date (YYYY-MM-DD, YYYY-DDD or YYYY-Www-D), not a month or a week"),
            // time
            ("2023-12-30T25:00", "hour 25 is out of range (00-24)"),
            ("2023-12-30T2500", "hour 25 is out of range (00-24)"),
            ("2023-12-30T99", "hour 99 is out of range (00-24)"),
            ("2023-12-30T14:60", "minute 60 is out of range (00-59)"),
            ("2023-12-30T146000", "minute 60 is out of range (00-59)"),
            ("2023-12-30T14:30:61", "second 61 is out of range (00-59, or 60 for a leap second)"),
            ("2023-12-30T24:01", "hour 24 is allowed only as 24:00:00, the end of the day"),
            ("2023-12-30T24:00:01", "hour 24 is allowed only as 24:00:00, the end of the day"),
            ("2023-12-30T24:00:00.001", "hour 24 is allowed only as 24:00:00, the end of the day"),
            ("2023-12-30T24.5", "hour 24 is allowed only as 24:00:00, the end of the day"),
            ("2023-12-30T24:00:60", "hour 24 is allowed only as 24:00:00, the end of the day"),
            ("2023-12-30T14:30:60Z", "second 60 is a leap second, which exists only at 23:59:60 UTC"),
            ("2016-12-31T23:59:60+01:00", "second 60 is a leap second, which exists only at 23:59:60 UTC"),
            ("2023-12-30T1", "hour must have 2 digits, found 1"),
            ("2023-12-30T1:00", "hour must have 2 digits, found 1"),
            ("2023-12-30T1x", "unexpected \"x\" at position 13"),
            ("2023-12-30T143", "a time of 3 digits is not hh, hhmm or hhmmss"),
            ("2023-12-30T14300", "a time of 5 digits is not hh, hhmm or hhmmss"),
            ("2023-12-30T1430150", "a time of 7 digits is not hh, hhmm or hhmmss"),
            ("2023-12-30T14:3", "minute must have 2 digits, found 1"),
            ("2023-12-30T14:3000", "minute must have 2 digits, found 4"),
            ("2023-12-30T14:", "missing minute at the end"),
            ("2023-12-30T14:30:", "missing second at the end"),
            ("2023-12-30T14:30:5Z", "second must have 2 digits, found 1"),
            ("2023-12-30T14::30", "unexpected \":\" at position 15"),
            ("2023-12-30T14:30.", "missing digits after the decimal point \".\""),
            ("2023-12-30T14:30,Z", "missing digits after the decimal comma \",\""),
            ("2023-12-30T14:30:00.5.5", "unexpected \".\" at position 22"),
            ("2023-12-30T14.5:30", "unexpected \":\" at position 16"),
            ("2023-12-30T14:00:00 Z", "unexpected \" \" at position 20"),
            ("2023-12-30T14:00é", "unexpected \"é\" at position 17"),
            // zone
            ("2023-12-30T14:00+25:00", "zone offset +25:00 is out of range (hours 00-23, minutes 00-59)"),
            ("2023-12-30T14:00+24", "zone offset +24:00 is out of range (hours 00-23, minutes 00-59)"),
            ("2023-12-30T14:00-05:60", "zone offset -05:60 is out of range (hours 00-23, minutes 00-59)"),
            ("2023-12-30T14:00\u{2212}2500", "zone offset -25:00 is out of range (hours 00-23, minutes 00-59)"),
            ("2023-12-30T14:00+1", "zone offset must be ±hh, ±hh:mm or ±hhmm, found 1 digit"),
            ("2023-12-30T14:00+123", "zone offset must be ±hh, ±hh:mm or ±hhmm, found 3 digits"),
            ("2023-12-30T14:00+01:0", "zone offset minutes must have 2 digits, found 1"),
            ("2023-12-30T14:00+", "missing zone offset at the end"),
            ("2023-12-30T14:00+01:", "missing zone offset minutes at the end"),
            ("2023-12-30T14:00Zx", "unexpected \"x\" at position 18"),
            ("2023-12-30T14:00ZZ", "unexpected \"Z\" at position 18"),
            ("2023-12-30T14:00+01:00Z", "unexpected \"Z\" at position 23"),
            ("2023-12-30T14:00+01x", "unexpected \"x\" at position 20"),
            ("2023-12-30T14:00 +01:00", "unexpected \" \" at position 17"),
            ("2023-12-30T14:00 UTC", "unexpected \" \" at position 17"),
            // out of the four-digit years once in UTC
            ("9999-12-31T24:00", "falls outside years 0000-9999 once converted to UTC"),
            ("9999-12-31T23:00-01:00", "falls outside years 0000-9999 once converted to UTC"),
            ("0000-01-01T00:00+01:00", "falls outside years 0000-9999 once converted to UTC"),
            ("9999-W52-7", "falls outside years 0000-9999 once converted to UTC"),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter_map(|(s, want)| {
                let got = match parse(s) {
                    Ok(t) => format!("accepted as {}", format_utc(&t)),
                    Err(e) => e.to_string(),
                };
                (got != *want).then(|| format!("{s:?}: got {got:?}, want {want:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn format_is_canonical() {
        let t = parse("2023-12-30T14:00:00.5Z").unwrap();
        assert_eq!(format_utc(&t), "2023-12-30T14:00:00.500Z");
        // A chrono leap second is clamped as parse clamps.
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        assert_eq!(format_utc(&leap), "2016-12-31T23:59:59.999Z");
    }

    /// The direct formatting writes what chrono's format string wrote, byte for byte.
    #[test]
    fn format_matches_chrono() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let check = |t: DateTime<Utc>| assert_eq!(format_utc(&t), format_utc_chrono(&t), "{t:?}");
        for y in [
            0, 1, 9, 10, 99, 100, 999, 1000, 1969, 1970, 2000, 2023, 2024, 9999,
        ] {
            for (mo, d) in [(1, 1), (2, 28), (2, 29), (6, 15), (12, 31)] {
                let Some(date) = NaiveDate::from_ymd_opt(y, mo, d) else {
                    continue;
                };
                for (h, mi, s, ns) in [
                    (0, 0, 0, 0),
                    (23, 59, 59, 999_999_999),
                    (12, 5, 9, 1_000_000),
                    (1, 2, 3, 999_999),
                    (9, 10, 11, 500_000_000),
                    (23, 59, 59, 1_999_999_999),
                ] {
                    check(date.and_hms_nano_opt(h, mi, s, ns).unwrap().and_utc());
                }
            }
        }
        // Outside 0000-9999 chrono's own form is kept.
        for y in [-1, -9999, 10000, 123456] {
            check(
                NaiveDate::from_ymd_opt(y, 3, 4)
                    .unwrap()
                    .and_hms_opt(5, 6, 7)
                    .unwrap()
                    .and_utc(),
            );
        }
        for _ in 0..20_000 {
            let secs = (rng.next() % 315_569_520_000) as i64; // 10,000 Gregorian years
            let t = DateTime::from_timestamp(
                secs - 62_167_219_200,
                (rng.next() % 1_000_000_000) as u32,
            );
            check(t.unwrap());
        }
        // And every value the parser accepts in the tables above and below.
        for s in [
            "2023-12-30T14:00:00.5+05:30",
            "0000-01-01",
            "9999-12-31T23:59:59.9999Z",
            "2016-12-31T23:59:60Z",
        ] {
            check(parse(s).unwrap());
        }
    }

    /// The forms the parser this module replaced accepted keep their output.
    #[test]
    fn agrees_with_the_previous_parser() {
        for (s, want) in [
            ("2023-12-30", "2023-12-30T00:00:00.000Z"),
            ("2023-12-30T14:00", "2023-12-30T14:00:00.000Z"),
            ("2023-12-30T14:00:00", "2023-12-30T14:00:00.000Z"),
            ("2023-12-30T14:00:00.123", "2023-12-30T14:00:00.123Z"),
            ("2023-12-30T14:00:00Z", "2023-12-30T14:00:00.000Z"),
            ("2023-12-30T14:00:00.5+05:30", "2023-12-30T08:30:00.500Z"),
            ("2023-12-30T14:00:00-0500", "2023-12-30T19:00:00.000Z"),
            ("2023-12-30 14:00:00", "2023-12-30T14:00:00.000Z"),
            ("2023-12-30 14:00:00Z", "2023-12-30T14:00:00.000Z"),
            ("2023-12-30t14:00:00z", "2023-12-30T14:00:00.000Z"),
            ("2016-12-31T23:59:59.999Z", "2016-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(ok(s), want, "{s:?}");
        }
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Checks what must hold for any input: no panic, and an accepted value formats canonically
    /// and parses back to itself (to the millisecond).
    fn check(s: &str) {
        match parse(s) {
            Ok(t) => {
                let f = format_utc(&t);
                assert_eq!(f.len(), 24, "{s:?} -> {f}");
                let back = parse(&f).unwrap_or_else(|e| panic!("{s:?} -> {f}: {e}"));
                assert_eq!(format_utc(&back), f, "{s:?}");
                assert!(back <= t, "{s:?}");
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn random_inputs_never_panic() {
        const ALPHABET: &[char] = &[
            '0',
            '1',
            '2',
            '3',
            '4',
            '5',
            '6',
            '9',
            '-',
            ':',
            'T',
            't',
            'W',
            'Z',
            'z',
            '+',
            '.',
            ',',
            ' ',
            '\u{2212}',
            'é',
            '２',
            '\u{0}',
            '\u{10FFFF}',
            '\u{FFFD}',
            'x',
        ];
        const SEEDS: &[&str] = &[
            "2023-12-30T14:30:15.123+05:30",
            "20231230T143015,5Z",
            "2023-W52-6T24:00\u{2212}0100",
            "2023364T235960Z",
            "2023-12",
            "2023W52",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut accepted = 0;
        for round in 0..6000 {
            let s: String = match round % 3 {
                // Characters of the grammar and a few others.
                0 => (0..rng.below(40))
                    .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                    .collect(),
                // Raw bytes, made UTF-8.
                1 => {
                    let bytes: Vec<u8> = (0..rng.below(70)).map(|_| rng.next() as u8).collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                }
                // A valid value with a few characters replaced, inserted or removed.
                _ => {
                    let mut c: Vec<char> = SEEDS[rng.below(SEEDS.len())].chars().collect();
                    for _ in 0..1 + rng.below(3) {
                        let at = rng.below(c.len() + 1);
                        let ch = ALPHABET[rng.below(ALPHABET.len())];
                        match rng.below(3) {
                            0 if at < c.len() => c[at] = ch,
                            1 if at < c.len() => {
                                c.remove(at);
                            }
                            _ => c.insert(at, ch),
                        }
                    }
                    c.into_iter().collect()
                }
            };
            if parse(&s).is_ok() {
                accepted += 1;
            }
            check(&s);
        }
        assert!(accepted > 50, "only {accepted} random inputs were accepted");
    }
}
