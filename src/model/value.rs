//! Fixed-point value types and timestamps: no floats, no heap.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The most decimal places a price, quantity or amount may have.
pub const MAX_PRECISION: u8 = 16;

/// Why a decimal, currency or timestamp text did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse {input:?}: {reason}")]
pub struct ParseError {
    input: String,
    reason: &'static str,
}

fn perr(input: &str, reason: &'static str) -> ParseError {
    ParseError { input: input.chars().take(64).collect(), reason }
}

/// Parses exact decimal text into (raw, precision).
fn parse_decimal(s: &str) -> Result<(i128, u8), ParseError> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(perr(s, "no digits"));
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(perr(s, "not a decimal number"));
    }
    if frac.len() > MAX_PRECISION as usize {
        return Err(perr(s, "more than 16 decimal places"));
    }
    let mut raw: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        raw = raw
            .checked_mul(10)
            .and_then(|r| r.checked_add((b - b'0') as i128))
            .ok_or_else(|| perr(s, "too large"))?;
    }
    Ok((if neg { -raw } else { raw }, frac.len() as u8))
}

fn write_decimal(f: &mut fmt::Formatter<'_>, raw: i128, precision: u8) -> fmt::Result {
    if raw < 0 {
        f.write_str("-")?;
    }
    let abs = raw.unsigned_abs();
    let scale = 10u128.pow(precision as u32);
    if precision == 0 {
        write!(f, "{abs}")
    } else {
        write!(f, "{}.{:0width$}", abs / scale, abs % scale, width = precision as usize)
    }
}

fn rescale_raw(raw: i128, from: u8, to: u8) -> i128 {
    match to.cmp(&from) {
        Ordering::Equal => raw,
        Ordering::Greater => raw.saturating_mul(10i128.pow((to - from) as u32)),
        Ordering::Less => raw / 10i128.pow((from - to) as u32),
    }
}

/// A price: `raw / 10^precision`, signed.
///
/// ```
/// use tradecache::model::Price;
/// let p: Price = "60123.45".parse().unwrap();
/// assert_eq!(p, Price::new(6_012_345, 2));
/// assert_eq!(p.to_string(), "60123.45");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Price {
    /// The scaled integer value.
    pub raw: i64,
    /// Decimal places.
    pub precision: u8,
}

impl Price {
    /// `raw / 10^precision`.
    pub const fn new(raw: i64, precision: u8) -> Self {
        Price { raw, precision }
    }

    /// The same value with `precision` decimals (truncating).
    pub fn rescale(self, precision: u8) -> Self {
        Price::new(rescale_raw(self.raw as i128, self.precision, precision) as i64, precision)
    }

    /// The average of two prices weighted by quantities, at `a`'s precision.
    pub fn weighted(a: Price, qa: Quantity, b: Price, qb: Quantity) -> Price {
        let p = a.precision.max(b.precision);
        let qp = qa.precision.max(qb.precision);
        let (ar, br) = (a.rescale(p).raw as i128, b.rescale(p).raw as i128);
        let (wa, wb) = (qa.rescale(qp).raw as i128, qb.rescale(qp).raw as i128);
        if wa + wb == 0 {
            return a;
        }
        Price::new(((ar * wa + br * wb) / (wa + wb)) as i64, p).rescale(a.precision.max(b.precision))
    }

    /// As a float, for display and statistics only.
    pub fn as_f64(self) -> f64 {
        self.raw as f64 / 10f64.powi(self.precision as i32)
    }
}

impl FromStr for Price {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let (raw, precision) = parse_decimal(s)?;
        let raw = i64::try_from(raw).map_err(|_| perr(s, "too large"))?;
        Ok(Price::new(raw, precision))
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_decimal(f, self.raw as i128, self.precision)
    }
}

/// A non-negative quantity: `raw / 10^precision`.
///
/// ```
/// use tradecache::model::Quantity;
/// let q: Quantity = "1.500".parse().unwrap();
/// assert_eq!(q.checked_add(Quantity::new(5, 1)), Some(Quantity::new(2_000, 3)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Quantity {
    /// The scaled integer value.
    pub raw: u64,
    /// Decimal places.
    pub precision: u8,
}

impl Quantity {
    /// `raw / 10^precision`.
    pub const fn new(raw: u64, precision: u8) -> Self {
        Quantity { raw, precision }
    }

    /// The same value with `precision` decimals (truncating).
    pub fn rescale(self, precision: u8) -> Self {
        Quantity::new(rescale_raw(self.raw as i128, self.precision, precision) as u64, precision)
    }

    /// The sum at the larger precision, or `None` on overflow.
    pub fn checked_add(self, other: Quantity) -> Option<Quantity> {
        let p = self.precision.max(other.precision);
        self.rescale(p).raw.checked_add(other.rescale(p).raw).map(|r| Quantity::new(r, p))
    }

    /// The difference at the larger precision, or `None` if negative.
    pub fn checked_sub(self, other: Quantity) -> Option<Quantity> {
        let p = self.precision.max(other.precision);
        self.rescale(p).raw.checked_sub(other.rescale(p).raw).map(|r| Quantity::new(r, p))
    }

    /// As a float, for display and statistics only.
    pub fn as_f64(self) -> f64 {
        self.raw as f64 / 10f64.powi(self.precision as i32)
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        let p = self.precision.max(other.precision);
        Some(self.rescale(p).raw.cmp(&other.rescale(p).raw))
    }
}

impl FromStr for Quantity {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let (raw, precision) = parse_decimal(s)?;
        let raw = u64::try_from(raw).map_err(|_| perr(s, "negative or too large"))?;
        Ok(Quantity::new(raw, precision))
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_decimal(f, self.raw as i128, self.precision)
    }
}

/// A currency code of up to 8 ASCII letters or digits (`USDT`), inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Currency {
    code: [u8; 8],
    len: u8,
}

impl Currency {
    /// Validates and makes a currency code.
    ///
    /// # Errors
    ///
    /// When `code` is empty, longer than 8, or not ASCII uppercase letters
    /// and digits.
    pub fn new(code: &str) -> Result<Currency, ParseError> {
        if code.is_empty() || code.len() > 8 {
            return Err(perr(code, "currency codes are 1 to 8 characters"));
        }
        if !code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            return Err(perr(code, "currency codes are ASCII uppercase letters and digits"));
        }
        let mut c = [0u8; 8];
        c[..code.len()].copy_from_slice(code.as_bytes());
        Ok(Currency { code: c, len: code.len() as u8 })
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.code[..self.len as usize]).unwrap_or("")
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Currency::new(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount of money: `raw / 10^precision` in `currency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// The scaled integer value.
    pub raw: i64,
    /// Decimal places.
    pub precision: u8,
    /// Currency.
    pub currency: Currency,
}

impl Money {
    /// `raw / 10^precision` in `currency`.
    pub const fn new(raw: i64, precision: u8, currency: Currency) -> Self {
        Money { raw, precision, currency }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_decimal(f, self.raw as i128, self.precision)?;
        write!(f, " {}", self.currency)
    }
}

/// Nanoseconds since the Unix epoch. Stored as an integer; as an ISO 8601
/// string when the encoding is JSON and `timestamps_as_iso8601` is on.
/// Decoding accepts both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixNanos(pub u64);

impl UnixNanos {
    /// The current time.
    pub fn now() -> UnixNanos {
        UnixNanos(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        )
    }

    /// As `2024-01-02T03:04:05.123456789Z`.
    pub fn to_iso8601(self) -> String {
        let secs = self.0 / 1_000_000_000;
        let nanos = self.0 % 1_000_000_000;
        let (y, m, d) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", rem / 3600, rem % 3600 / 60, rem % 60)
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
    ///
    /// # Errors
    ///
    /// When the text is not of that form or before 1970.
    pub fn parse_iso8601(s: &str) -> Result<UnixNanos, ParseError> {
        let b = s.as_bytes();
        let bad = || perr(s, "expected YYYY-MM-DDTHH:MM:SS[.fraction]Z");
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
            || !s.ends_with('Z')
        {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<u64>().ok()).ok_or_else(bad);
        let (y, mo, d, h, mi, se) =
            (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 || y < 1970 {
            return Err(bad());
        }
        let frac = &s[19..s.len() - 1];
        let nanos = if frac.is_empty() {
            0
        } else {
            let digits = frac.strip_prefix('.').ok_or_else(bad)?;
            if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            digits.parse::<u64>().map_err(|_| bad())? * 10u64.pow(9 - digits.len() as u32)
        };
        let days = days_from_civil(y as i64, mo as u32, d as u32) as u64;
        let secs = days * 86_400 + h * 3600 + mi * 60 + se;
        secs.checked_mul(1_000_000_000).and_then(|n| n.checked_add(nanos)).map(UnixNanos).ok_or_else(bad)
    }
}

// Howard Hinnant's civil calendar algorithms.
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
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Serialize for UnixNanos {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() && crate::codec::timestamps_as_iso8601() {
            s.serialize_str(&self.to_iso8601())
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
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        assert_eq!("-0.05".parse::<Price>().unwrap(), Price::new(-5, 2));
        assert_eq!("007".parse::<Price>().unwrap(), Price::new(7, 0));
        assert_eq!(Price::new(-5, 2).to_string(), "-0.05");
        for bad in ["", "-", ".", "1.2.3", "abc", "1e5", "99999999999999999999", "0.12345678901234567", " 1"]
        {
            assert!(bad.parse::<Price>().is_err(), "{bad:?}");
        }
        assert!("-1".parse::<Quantity>().is_err());
        assert!(Quantity::new(1, 0) > Quantity::new(999, 3));
    }

    #[test]
    fn iso8601() {
        for t in [0u64, 951_782_400_123_456_789, 4_102_444_800_000_000_000, 1_709_164_800_000_000_001] {
            let s = UnixNanos(t).to_iso8601();
            assert_eq!(UnixNanos::parse_iso8601(&s).unwrap(), UnixNanos(t), "{s}");
        }
        assert_eq!(UnixNanos(0).to_iso8601(), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(UnixNanos(951_782_400_000_000_000).to_iso8601(), "2000-02-29T00:00:00.000000000Z");
        assert!(UnixNanos::parse_iso8601("2024-13-01T00:00:00Z").is_err());
        assert!(UnixNanos::parse_iso8601("garbage").is_err());
    }

    #[test]
    fn currency() {
        assert_eq!(Currency::new("USDT").unwrap().as_str(), "USDT");
        assert!(Currency::new("usdt").is_err());
        assert!(Currency::new("TOOLONGCODE").is_err());
    }
}
