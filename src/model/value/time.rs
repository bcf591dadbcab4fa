//! `UnixNanos`, its ISO 8601 form, and the scoped ISO timestamp mode.

use std::cell::Cell;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::*;

// UnixNanos

/// Nanoseconds since the Unix epoch, UTC (covers 1970 to 2554).
///
/// Serialized as a `u64`, except when the serializer is human-readable
/// (JSON) and `timestamps_as_iso8601` is on: then as an RFC 3339 string with
/// nanoseconds, `"2024-01-02T03:04:05.123456789Z"`. Decoding accepts both.
///
/// # Examples
///
/// ```
/// use tradecache::model::UnixNanos;
///
/// let t = UnixNanos(1_704_164_645_123_456_789);
/// assert_eq!(t.to_iso8601(), "2024-01-02T03:04:05.123456789Z");
/// assert_eq!(UnixNanos::parse_iso8601("2024-01-02T03:04:05.123456789Z"), Ok(t));
/// assert_eq!(UnixNanos::parse_iso8601("2024-01-02T04:04:05.123456789+01:00"), Ok(t));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixNanos(pub u64);

pub(super) const NANOS_PER_SEC: u64 = 1_000_000_000;

impl UnixNanos {
    /// The current time (0 if the clock is before 1970).
    pub fn now() -> UnixNanos {
        UnixNanos(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }

    /// The nanoseconds.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// As `2024-01-02T03:04:05.123456789Z` (always nine fraction digits).
    pub fn to_iso8601(self) -> String {
        self.iso8601().to_string()
    }

    /// A [`fmt::Display`] of the ISO 8601 form that does not allocate.
    pub fn iso8601(self) -> impl fmt::Display {
        Iso8601(self)
    }

    /// Parses RFC 3339 / ISO 8601: `YYYY-MM-DDTHH:MM:SS[.fraction]` then `Z`
    /// or `±HH:MM` (`t`/`z`/space accepted too); up to nine fraction digits.
    ///
    /// # Errors
    ///
    /// When the text is not of that form, names an impossible date or time,
    /// or lies outside 1970-01-01T00:00:00Z ..= 2554-07-21T23:34:33.709551615Z.
    pub fn parse_iso8601(s: &str) -> Result<UnixNanos, ParseError> {
        let bad = |why| perr(s, why);
        let b = s.as_bytes();
        if !s.is_ascii() || b.len() < 20 {
            return Err(bad("expected YYYY-MM-DDTHH:MM:SS[.fraction]Z"));
        }
        let sep_ok = b[4] == b'-'
            && b[7] == b'-'
            && matches!(b[10], b'T' | b't' | b' ')
            && b[13] == b':'
            && b[16] == b':';
        if !sep_ok {
            return Err(bad("expected YYYY-MM-DDTHH:MM:SS[.fraction]Z"));
        }
        let num = |r: std::ops::Range<usize>| -> Result<u64, ParseError> {
            let t = &b[r];
            if t.iter().all(u8::is_ascii_digit) {
                Ok(t.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
            } else {
                Err(bad("expected digits in YYYY-MM-DDTHH:MM:SS"))
            }
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
        // A date is real when it survives the round trip through its day number.
        let date = (y as i64, mo as u32, d as u32);
        let days = days_from_civil(date.0, date.1, date.2);
        if civil_from_days(days) != date {
            return Err(bad("no such date"));
        }
        // Second 60 (a leap second) is read as the next second's start.
        if h > 23 || mi > 59 || se > 60 {
            return Err(bad("no such time of day"));
        }
        // Fraction.
        let mut i = 19;
        let mut nanos = 0u64;
        if b[i] == b'.' || b[i] == b',' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = i - start;
            if digits == 0 || digits > 9 {
                return Err(bad("expected 1 to 9 fraction digits"));
            }
            nanos = num(start..i)? * 10u64.pow(9 - digits as u32);
        }
        // Offset.
        let offset_secs: i64 = match &b[i..] {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
                if oh > 23 || om > 59 {
                    return Err(bad("bad UTC offset"));
                }
                (oh * 3600 + om * 60) as i64 * if *sign == b'-' { -1 } else { 1 }
            }
            _ => return Err(bad("expected 'Z' or a ±HH:MM offset at the end")),
        };
        let secs = days * 86_400 + (h * 3600 + mi * 60 + se) as i64 - offset_secs;
        u64::try_from(secs)
            .ok()
            .and_then(|s| s.checked_mul(NANOS_PER_SEC))
            .and_then(|n| n.checked_add(nanos))
            .map(UnixNanos)
            .ok_or_else(|| bad("outside the range of UnixNanos (1970 to 2554)"))
    }
}

impl From<u64> for UnixNanos {
    fn from(n: u64) -> Self {
        UnixNanos(n)
    }
}

impl From<UnixNanos> for u64 {
    fn from(t: UnixNanos) -> Self {
        t.0
    }
}

struct Iso8601(UnixNanos);

impl fmt::Display for Iso8601 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 .0 / NANOS_PER_SEC;
        let nanos = self.0 .0 % NANOS_PER_SEC;
        let (y, m, d) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        write!(f, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", rem / 3600, rem % 3600 / 60, rem % 60)
    }
}

// Howard Hinnant's civil calendar algorithms (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

thread_local! {
    /// Whether timestamps are written as ISO 8601 strings by encodes on this
    /// thread: only inside an [`IsoScope`] (the flusher enters one while it
    /// builds a batch, when the encoding is JSON and `timestamps_as_iso8601`
    /// is on). Never set on a caller's thread.
    static ISO8601: Cell<bool> = const { Cell::new(false) };
}

/// ISO 8601 timestamps for the encodes made while it lives, on this thread
/// (the flusher holds one while it builds a batch); the previous mode comes
/// back when it is dropped.
pub(crate) struct IsoScope(bool);

impl IsoScope {
    pub(crate) fn enter(on: bool) -> IsoScope {
        IsoScope(ISO8601.with(|c| c.replace(on)))
    }
}

impl Drop for IsoScope {
    fn drop(&mut self) {
        let previous = self.0;
        ISO8601.with(|c| c.set(previous));
    }
}

impl Serialize for UnixNanos {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() && ISO8601.with(Cell::get) {
            s.collect_str(&Iso8601(*self))
        } else {
            s.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for UnixNanos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = UnixNanos;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("nanoseconds since the epoch or an ISO 8601 timestamp")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<UnixNanos, E> {
                Ok(UnixNanos(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<UnixNanos, E> {
                u64::try_from(v).map(UnixNanos).map_err(|_| E::custom("negative timestamp"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<UnixNanos, E> {
                UnixNanos::parse_iso8601(v).map_err(E::custom)
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<UnixNanos, E> {
                let s = std::str::from_utf8(v).map_err(E::custom)?;
                UnixNanos::parse_iso8601(s).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Sets the ISO 8601 timestamp mode for encodes on the calling thread.
#[cfg(test)]
pub(crate) fn set_timestamps_as_iso8601(on: bool) {
    ISO8601.with(|c| c.set(on));
}
