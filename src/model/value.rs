//! Fixed-point value types, currency codes, short reason texts and
//! timestamps. None of them allocates; every operation is total (checked
//! arithmetic returns `None`, parsing returns an error, nothing panics).

use std::cell::Cell;
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The most decimal places text parsing accepts for a price, quantity or
/// amount. Values built with [`Price::new`] and friends may carry any
/// precision; arithmetic that cannot represent a result returns `None`.
pub const MAX_PRECISION: u8 = 16;

/// Why a decimal, currency or timestamp text did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse {input:?}: {reason}")]
pub struct ParseError {
    input: String,
    reason: &'static str,
}

impl ParseError {
    /// What was wrong with the text.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

fn perr(input: &str, reason: &'static str) -> ParseError {
    ParseError { input: input.chars().take(64).collect(), reason }
}

// ---------------------------------------------------------------------------
// Decimal core (i128 arithmetic, never panics)

fn pow10(exp: u32) -> Option<i128> {
    10i128.checked_pow(exp)
}

/// `raw / 10^from` expressed with `to` decimals; rounds half away from zero
/// when `to < from`. `None` on overflow.
fn rescale_round(raw: i128, from: u8, to: u8) -> Option<i128> {
    match to.cmp(&from) {
        Ordering::Equal => Some(raw),
        Ordering::Greater => raw.checked_mul(pow10(u32::from(to - from))?),
        Ordering::Less => match pow10(u32::from(from - to)) {
            Some(d) => Some(div_round(raw, d)),
            None => Some(0), // |raw| < 10^39 <= d: rounds to zero
        },
    }
}

/// `n / d` rounded half away from zero (`d > 0`).
pub(crate) fn div_round(n: i128, d: i128) -> i128 {
    let (q, r) = (n / d, n % d);
    if r.unsigned_abs() * 2 >= d.unsigned_abs() {
        q + n.signum()
    } else {
        q
    }
}

/// Compares `a / 10^pa` with `b / 10^pb` exactly.
fn cmp_values(a: i128, pa: u8, b: i128, pb: u8) -> Ordering {
    let p = pa.max(pb);
    match (rescale_round(a, pa, p), rescale_round(b, pb, p)) {
        (Some(x), Some(y)) => x.cmp(&y),
        // Scaling overflowed: that side's magnitude exceeds anything the
        // other (a 64-bit raw scaled less) can reach, so its sign decides.
        (None, _) => a.signum().cmp(&0),
        (_, None) => 0.cmp(&b.signum()),
    }
}

/// Parses exact decimal text into (raw, decimals): `[+-]digits[.digits]`.
fn parse_decimal(s: &str) -> Result<(i128, u8), ParseError> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    if int.is_empty() || frac.is_some_and(str::is_empty) {
        return Err(perr(s, "expected digits on both sides of the decimal point, as in -12.50"));
    }
    let frac = frac.unwrap_or("");
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(perr(s, "not a decimal number (digits, one optional '.', optional sign)"));
    }
    if frac.len() > usize::from(MAX_PRECISION) {
        return Err(perr(s, "more than 16 decimal places"));
    }
    let mut raw: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        raw = raw
            .checked_mul(10)
            .and_then(|r| r.checked_add(i128::from(b - b'0')))
            .ok_or_else(|| perr(s, "out of range"))?;
    }
    Ok((if neg { -raw } else { raw }, frac.len() as u8))
}

/// Parses and aligns to exactly `precision` decimals (more is an error).
fn parse_decimal_at(s: &str, precision: u8) -> Result<i128, ParseError> {
    let (raw, p) = parse_decimal(s)?;
    if p > precision {
        return Err(perr(s, "more decimal places than the precision allows"));
    }
    rescale_round(raw, p, precision).ok_or_else(|| perr(s, "out of range"))
}

/// Writes `raw / 10^precision` exactly, for any precision.
fn write_decimal(f: &mut fmt::Formatter<'_>, raw: i128, precision: u8) -> fmt::Result {
    let mut digits = [0u8; 40];
    let mut n = raw.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        n /= 10;
        len += 1;
        if n == 0 {
            break;
        }
    }
    let mut out = DecBuf::default();
    if raw < 0 {
        out.push(b'-');
    }
    let prec = usize::from(precision);
    if len <= prec {
        out.push(b'0');
    } else {
        for i in (prec..len).rev() {
            out.push(digits[i]);
        }
    }
    if prec > 0 {
        out.push(b'.');
        for i in (0..prec).rev() {
            out.push(if i < len { digits[i] } else { b'0' });
        }
    }
    // `pad` honours width/alignment flags such as `{:>12}`.
    f.pad(out.as_str())
}

/// A stack buffer for formatted decimals (at most 1 + 39 + 1 + 255 bytes).
struct DecBuf {
    buf: [u8; 300],
    len: usize,
}

impl Default for DecBuf {
    fn default() -> Self {
        DecBuf { buf: [0; 300], len: 0 }
    }
}

impl DecBuf {
    fn push(&mut self, b: u8) {
        if self.len < self.buf.len() {
            self.buf[self.len] = b;
            self.len += 1;
        }
    }
    fn as_str(&self) -> &str {
        // Only ASCII digits, '-' and '.' are ever pushed.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

fn to_f64(raw: i128, precision: u8) -> f64 {
    raw as f64 / 10f64.powi(i32::from(precision))
}

// ---------------------------------------------------------------------------
// Price

/// A price: `raw / 10^precision`, signed (spreads and some futures trade
/// below zero). Equality is structural (`1.0` and `1.00` differ); ordering
/// compares values exactly, ties broken by precision.
///
/// # Examples
///
/// ```
/// use tradecache::model::Price;
///
/// let p: Price = "60123.45".parse().unwrap();
/// assert_eq!(p, Price::new(6_012_345, 2));
/// assert_eq!(p.to_string(), "60123.45");
/// assert_eq!(p.checked_add(Price::new(5, 3)), Some(Price::new(60_123_455, 3)));
/// assert!("1.2.3".parse::<Price>().is_err());
/// assert!(Price::from_str_with_precision("1.234", 2).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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

    /// Parses decimal text and aligns it to exactly `precision` decimals
    /// (`"1.5"` at 2 is `Price::new(150, 2)`).
    ///
    /// # Errors
    ///
    /// When the text is not a decimal number, has more decimal places than
    /// `precision`, or does not fit.
    pub fn from_str_with_precision(s: &str, precision: u8) -> Result<Price, ParseError> {
        let raw = parse_decimal_at(s, precision)?;
        let raw = i64::try_from(raw).map_err(|_| perr(s, "out of range for a price"))?;
        Ok(Price::new(raw, precision))
    }

    /// The same value with `precision` decimals, rounding half away from
    /// zero when decimals are dropped; `None` if it does not fit.
    pub fn rescale(self, precision: u8) -> Option<Price> {
        let raw = rescale_round(i128::from(self.raw), self.precision, precision)?;
        Some(Price::new(i64::try_from(raw).ok()?, precision))
    }

    /// The sum at the larger precision; `None` on overflow.
    pub fn checked_add(self, other: Price) -> Option<Price> {
        let p = self.precision.max(other.precision);
        let raw = i128::from(self.rescale(p)?.raw) + i128::from(other.rescale(p)?.raw);
        Some(Price::new(i64::try_from(raw).ok()?, p))
    }

    /// The difference at the larger precision; `None` on overflow.
    pub fn checked_sub(self, other: Price) -> Option<Price> {
        self.checked_add(Price::new(other.raw.checked_neg()?, other.precision))
    }

    /// Whether the value is zero.
    pub const fn is_zero(self) -> bool {
        self.raw == 0
    }

    /// As a float, for display and statistics only.
    pub fn as_f64(self) -> f64 {
        to_f64(i128::from(self.raw), self.precision)
    }
}

impl Price {
    /// Compares the values exactly, ignoring how many decimals each has
    /// (`1.0` equals `1.000` here; [`Ord`] orders them by precision).
    pub fn cmp_value(&self, other: &Price) -> Ordering {
        cmp_values(i128::from(self.raw), self.precision, i128::from(other.raw), other.precision)
    }
}

impl PartialOrd for Price {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Price {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_value(other).then(self.precision.cmp(&other.precision))
    }
}

impl FromStr for Price {
    type Err = ParseError;
    /// Parses `[+-]digits[.digits]`, keeping the decimals written.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let (raw, precision) = parse_decimal(s)?;
        let raw = i64::try_from(raw).map_err(|_| perr(s, "out of range for a price"))?;
        Ok(Price::new(raw, precision))
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_decimal(f, i128::from(self.raw), self.precision)
    }
}

// ---------------------------------------------------------------------------
// Quantity

/// A non-negative quantity: `raw / 10^precision`. Equality is structural;
/// ordering compares values exactly, ties broken by precision.
///
/// # Examples
///
/// ```
/// use tradecache::model::Quantity;
///
/// let q: Quantity = "1.500".parse().unwrap();
/// assert_eq!(q.checked_add(Quantity::new(5, 1)), Some(Quantity::new(2_000, 3)));
/// assert_eq!(q.checked_sub(Quantity::new(2, 0)), None); // would be negative
/// assert!(q > Quantity::new(1, 0));
/// assert!("-1".parse::<Quantity>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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

    /// Zero with `precision` decimals.
    pub const fn zero(precision: u8) -> Self {
        Quantity { raw: 0, precision }
    }

    /// Parses decimal text and aligns it to exactly `precision` decimals.
    ///
    /// # Errors
    ///
    /// When the text is not a non-negative decimal number, has more decimal
    /// places than `precision`, or does not fit.
    pub fn from_str_with_precision(s: &str, precision: u8) -> Result<Quantity, ParseError> {
        let raw = parse_decimal_at(s, precision)?;
        let raw = u64::try_from(raw).map_err(|_| perr(s, "negative or out of range for a quantity"))?;
        Ok(Quantity::new(raw, precision))
    }

    /// The same value with `precision` decimals, rounding half up when
    /// decimals are dropped; `None` if it does not fit.
    pub fn rescale(self, precision: u8) -> Option<Quantity> {
        let raw = rescale_round(i128::from(self.raw), self.precision, precision)?;
        Some(Quantity::new(u64::try_from(raw).ok()?, precision))
    }

    /// The sum at the larger precision; `None` on overflow.
    pub fn checked_add(self, other: Quantity) -> Option<Quantity> {
        let p = self.precision.max(other.precision);
        self.rescale(p)?.raw.checked_add(other.rescale(p)?.raw).map(|r| Quantity::new(r, p))
    }

    /// The difference at the larger precision; `None` if it would be
    /// negative or on overflow.
    pub fn checked_sub(self, other: Quantity) -> Option<Quantity> {
        let p = self.precision.max(other.precision);
        self.rescale(p)?.raw.checked_sub(other.rescale(p)?.raw).map(|r| Quantity::new(r, p))
    }

    /// Whether the value is zero.
    pub const fn is_zero(self) -> bool {
        self.raw == 0
    }

    /// As a float, for display and statistics only.
    pub fn as_f64(self) -> f64 {
        to_f64(i128::from(self.raw), self.precision)
    }
}

impl Quantity {
    /// Compares the values exactly, ignoring how many decimals each has
    /// (`1.0` equals `1.000` here; [`Ord`] orders them by precision).
    pub fn cmp_value(&self, other: &Quantity) -> Ordering {
        cmp_values(i128::from(self.raw), self.precision, i128::from(other.raw), other.precision)
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_value(other).then(self.precision.cmp(&other.precision))
    }
}

impl FromStr for Quantity {
    type Err = ParseError;
    /// Parses `digits[.digits]`, keeping the decimals written.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let (raw, precision) = parse_decimal(s)?;
        let raw = u64::try_from(raw).map_err(|_| perr(s, "negative or out of range for a quantity"))?;
        Ok(Quantity::new(raw, precision))
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_decimal(f, i128::from(self.raw), self.precision)
    }
}

// ---------------------------------------------------------------------------
// Currency

/// A currency code of 1 to 8 ASCII uppercase letters or digits (`USDT`),
/// stored inline (`Copy`, 9 bytes). Serialized as a string.
///
/// # Examples
///
/// ```
/// use tradecache::model::Currency;
///
/// let usdt = Currency::new("USDT").unwrap();
/// assert_eq!(usdt, Currency::USDT);
/// assert_eq!(usdt.as_str(), "USDT");
/// assert!(Currency::new("usdt").is_err());
/// assert!(Currency::new("TOOLONGCODE").is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 8],
    len: u8,
}

impl Currency {
    /// US dollar.
    pub const USD: Currency = Currency::from_static("USD");
    /// Tether.
    pub const USDT: Currency = Currency::from_static("USDT");
    /// USD Coin.
    pub const USDC: Currency = Currency::from_static("USDC");
    /// Euro.
    pub const EUR: Currency = Currency::from_static("EUR");
    /// Bitcoin.
    pub const BTC: Currency = Currency::from_static("BTC");
    /// Ether.
    pub const ETH: Currency = Currency::from_static("ETH");

    // Only for the constants above, checked by a test.
    const fn from_static(code: &str) -> Currency {
        let b = code.as_bytes();
        let mut c = [0u8; 8];
        let mut i = 0;
        while i < b.len() && i < 8 {
            c[i] = b[i];
            i += 1;
        }
        Currency { code: c, len: i as u8 }
    }

    /// Validates and makes a currency code.
    ///
    /// # Errors
    ///
    /// When `code` is empty, longer than 8 bytes, or not made of ASCII
    /// uppercase letters and digits.
    pub fn new(code: &str) -> Result<Currency, ParseError> {
        if code.is_empty() || code.len() > 8 {
            return Err(perr(code, "currency codes are 1 to 8 characters"));
        }
        if !code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            return Err(perr(code, "currency codes are ASCII uppercase letters and digits"));
        }
        Ok(Currency::from_static(code))
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.code[..usize::from(self.len).min(8)]).unwrap_or("")
    }
}

impl FromStr for Currency {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Currency::new(s)
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor("a currency code such as \"USDT\"", Currency::new))
    }
}

/// Deserializes a string without allocating, through a parser.
struct StrVisitor<T, E: fmt::Display>(&'static str, fn(&str) -> Result<T, E>);

impl<T, E: fmt::Display> serde::de::Visitor<'_> for StrVisitor<T, E> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<Er: serde::de::Error>(self, v: &str) -> Result<T, Er> {
        (self.1)(v).map_err(Er::custom)
    }
    fn visit_bytes<Er: serde::de::Error>(self, v: &[u8]) -> Result<T, Er> {
        let s = std::str::from_utf8(v).map_err(Er::custom)?;
        (self.1)(s).map_err(Er::custom)
    }
}

// ---------------------------------------------------------------------------
// Money

/// An amount of money: `raw / 10^precision` in `currency`, signed.
///
/// # Examples
///
/// ```
/// use tradecache::model::{Currency, Money};
///
/// let fee = Money::new(120, 2, Currency::USDT);
/// assert_eq!(fee.to_string(), "1.20 USDT");
/// assert_eq!("1.20 USDT".parse::<Money>().unwrap(), fee);
/// let total = fee.checked_add(Money::new(5, 3, Currency::USDT)).unwrap();
/// assert_eq!(total, Money::new(1_205, 3, Currency::USDT));
/// assert_eq!(fee.checked_add(Money::new(1, 2, Currency::BTC)), None); // currencies differ
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    /// Zero in `currency` with `precision` decimals.
    pub const fn zero(precision: u8, currency: Currency) -> Self {
        Money { raw: 0, precision, currency }
    }

    /// The same amount with `precision` decimals, rounding half away from
    /// zero when decimals are dropped; `None` if it does not fit.
    pub fn rescale(self, precision: u8) -> Option<Money> {
        let raw = rescale_round(i128::from(self.raw), self.precision, precision)?;
        Some(Money::new(i64::try_from(raw).ok()?, precision, self.currency))
    }

    /// The sum at the larger precision; `None` if the currencies differ or
    /// on overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        if self.currency != other.currency {
            return None;
        }
        let p = self.precision.max(other.precision);
        let raw = i128::from(self.rescale(p)?.raw) + i128::from(other.rescale(p)?.raw);
        Some(Money::new(i64::try_from(raw).ok()?, p, self.currency))
    }

    /// The difference at the larger precision; `None` if the currencies
    /// differ or on overflow.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.checked_add(Money::new(other.raw.checked_neg()?, other.precision, other.currency))
    }

    /// Whether the amount is zero.
    pub const fn is_zero(self) -> bool {
        self.raw == 0
    }

    /// As a float, for display and statistics only.
    pub fn as_f64(self) -> f64 {
        to_f64(i128::from(self.raw), self.precision)
    }
}

impl FromStr for Money {
    type Err = ParseError;
    /// Parses `"-12.50 USDT"`: a decimal, one space, a currency code.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let (amount, code) = s.split_once(' ').ok_or_else(|| perr(s, "expected an amount and a currency"))?;
        let currency = Currency::new(code).map_err(|e| perr(s, e.reason))?;
        let (raw, precision) = parse_decimal(amount).map_err(|e| perr(s, e.reason))?;
        let raw = i64::try_from(raw).map_err(|_| perr(s, "out of range for an amount"))?;
        Ok(Money::new(raw, precision, currency))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_decimal(f, i128::from(self.raw), self.precision)?;
        write!(f, " {}", self.currency)
    }
}

// ---------------------------------------------------------------------------
// Stored form of the fixed-point types
//
// `[raw, precision]` (money: `[raw, precision, "CCY"]`): integers, exact for
// any precision, and a third of the size of a map with field names (a
// position has four of them; DESIGN.md keeps values small). Reading also
// accepts the `{raw, precision[, currency]}` map written by earlier versions.

/// A decoded fixed-point value before its range is checked.
struct Fixed {
    raw: i128,
    precision: u8,
    currency: Option<Currency>,
}

/// An integer of either sign, as the first element of a stored value.
struct AnyInt(i128);

impl<'de> Deserialize<'de> for AnyInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = AnyInt;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<AnyInt, E> {
                Ok(AnyInt(i128::from(v)))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<AnyInt, E> {
                Ok(AnyInt(i128::from(v)))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum FixedField {
    Raw,
    Precision,
    Currency,
    #[serde(other)]
    Other,
}

struct FixedVisitor {
    expecting: &'static str,
    with_currency: bool,
}

impl<'de> serde::de::Visitor<'de> for FixedVisitor {
    type Value = Fixed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Fixed, A::Error> {
        use serde::de::Error;
        let n = 2 + usize::from(self.with_currency);
        let raw = seq.next_element::<AnyInt>()?.ok_or_else(|| A::Error::invalid_length(0, &self))?.0;
        let precision = seq.next_element::<u8>()?.ok_or_else(|| A::Error::invalid_length(1, &self))?;
        let currency = if self.with_currency {
            Some(seq.next_element::<Currency>()?.ok_or_else(|| A::Error::invalid_length(2, &self))?)
        } else {
            None
        };
        if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
            return Err(A::Error::invalid_length(n + 1, &self));
        }
        Ok(Fixed { raw, precision, currency })
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Fixed, A::Error> {
        use serde::de::Error;
        let (mut raw, mut precision, mut currency) = (None, None, None);
        while let Some(k) = map.next_key::<FixedField>()? {
            match k {
                FixedField::Raw => raw = Some(map.next_value::<AnyInt>()?.0),
                FixedField::Precision => precision = Some(map.next_value::<u8>()?),
                FixedField::Currency => currency = Some(map.next_value::<Currency>()?),
                FixedField::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let raw = raw.ok_or_else(|| A::Error::missing_field("raw"))?;
        let precision = precision.ok_or_else(|| A::Error::missing_field("precision"))?;
        if self.with_currency && currency.is_none() {
            return Err(A::Error::missing_field("currency"));
        }
        Ok(Fixed { raw, precision, currency })
    }
}

fn deserialize_fixed<'de, D: Deserializer<'de>>(
    d: D,
    expecting: &'static str,
    with_currency: bool,
) -> Result<Fixed, D::Error> {
    d.deserialize_any(FixedVisitor { expecting, with_currency })
}

fn fixed_range<E: serde::de::Error, T: TryFrom<i128>>(raw: i128, what: &str) -> Result<T, E> {
    T::try_from(raw).map_err(|_| E::custom(format_args!("{raw} is out of range for {what}")))
}

/// Stored as `[raw, precision]`.
impl Serialize for Price {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.raw)?;
        t.serialize_element(&self.precision)?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = deserialize_fixed(d, "a price as [raw, precision]", false)?;
        Ok(Price::new(fixed_range(f.raw, "a price")?, f.precision))
    }
}

/// Stored as `[raw, precision]`.
impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.raw)?;
        t.serialize_element(&self.precision)?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = deserialize_fixed(d, "a quantity as [raw, precision]", false)?;
        Ok(Quantity::new(fixed_range(f.raw, "a quantity (non-negative)")?, f.precision))
    }
}

/// Stored as `[raw, precision, "CCY"]`.
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(3)?;
        t.serialize_element(&self.raw)?;
        t.serialize_element(&self.precision)?;
        t.serialize_element(&self.currency)?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = deserialize_fixed(d, "an amount as [raw, precision, \"CCY\"]", true)?;
        let currency = f.currency.ok_or_else(|| <D::Error as serde::de::Error>::missing_field("currency"))?;
        Ok(Money::new(fixed_range(f.raw, "an amount")?, f.precision, currency))
    }
}

// ---------------------------------------------------------------------------
// ReasonText

/// Capacity of a [`ReasonText`], in bytes.
pub const REASON_CAPACITY: usize = 64;

/// A short free-text reason (why an order was rejected), stored inline: at
/// most [`REASON_CAPACITY`] bytes of UTF-8. Longer text is cut at the last
/// character boundary that fits; nothing allocates. Serialized as a string.
///
/// Equality and hashing look at the text only: whether it was cut is not
/// stored (it is serialized as the text), so a value compares equal to
/// itself after a round trip through Redis.
///
/// # Examples
///
/// ```
/// use tradecache::model::ReasonText;
///
/// let r = ReasonText::new("insufficient margin");
/// assert_eq!(r.as_str(), "insufficient margin");
/// let long = ReasonText::new(&"é".repeat(40)); // 80 bytes
/// assert_eq!(long.as_str().len(), 64);
/// assert!(long.is_truncated());
/// assert_eq!(long, ReasonText::new(long.as_str()));
/// ```
#[derive(Clone, Copy)]
pub struct ReasonText {
    buf: [u8; REASON_CAPACITY],
    // Length in bytes; the top bit records truncation.
    len: u8,
}

impl ReasonText {
    /// The text, cut at a character boundary to fit.
    pub fn new(text: &str) -> ReasonText {
        let mut end = text.len().min(REASON_CAPACITY);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut buf = [0u8; REASON_CAPACITY];
        buf[..end].copy_from_slice(&text.as_bytes()[..end]);
        let truncated = if end < text.len() { 0x80 } else { 0 };
        ReasonText { buf, len: end as u8 | truncated }
    }

    /// The (possibly truncated) text.
    pub fn as_str(&self) -> &str {
        let len = usize::from(self.len & 0x7f).min(REASON_CAPACITY);
        std::str::from_utf8(&self.buf[..len]).unwrap_or("")
    }

    /// Whether [`ReasonText::new`] had to cut the text.
    pub fn is_truncated(&self) -> bool {
        self.len & 0x80 != 0
    }
}

// The text only: see the type's docs (found by tests/it/fuzz.rs, a cut
// reason did not equal itself after a round trip).
impl PartialEq for ReasonText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ReasonText {}

impl std::hash::Hash for ReasonText {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Default for ReasonText {
    fn default() -> Self {
        ReasonText::new("")
    }
}

impl From<&str> for ReasonText {
    fn from(s: &str) -> Self {
        ReasonText::new(s)
    }
}

impl fmt::Debug for ReasonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ReasonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for ReasonText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ReasonText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fn parse(s: &str) -> Result<ReasonText, std::convert::Infallible> {
            Ok(ReasonText::new(s))
        }
        d.deserialize_str(StrVisitor("a reason text", parse))
    }
}

// ---------------------------------------------------------------------------
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

const NANOS_PER_SEC: u64 = 1_000_000_000;

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
        if !(1..=12).contains(&mo) || d == 0 || d > u64::from(days_in_month(y as i64, mo as u32)) {
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
                let oh = num(i + 1..i + 3)?;
                let om = num(i + 4..i + 6)?;
                if oh > 23 || om > 59 {
                    return Err(bad("bad UTC offset"));
                }
                let o = (oh * 3600 + om * 60) as i64;
                if *sign == b'-' {
                    -o
                } else {
                    o
                }
            }
            _ => return Err(bad("expected 'Z' or a ±HH:MM offset at the end")),
        };
        let days = days_from_civil(y as i64, mo as u32, d as u32);
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

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
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
    static ISO8601: Cell<bool> = const { Cell::new(false) };
}

/// Whether timestamps are written as ISO 8601 strings by encodes on this
/// thread: only inside an [`IsoScope`] (the flusher enters one while it
/// builds a batch, when the encoding is JSON and `timestamps_as_iso8601`
/// is on). Never set on a caller's thread.
pub(crate) fn timestamps_as_iso8601() -> bool {
    ISO8601.with(Cell::get)
}

/// Sets the ISO 8601 timestamp mode for encodes on the calling thread.
#[cfg(test)]
pub(crate) fn set_timestamps_as_iso8601(on: bool) {
    ISO8601.with(|c| c.set(on));
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
        if s.is_human_readable() && timestamps_as_iso8601() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_parsing() {
        assert_eq!("-0.05".parse::<Price>().unwrap(), Price::new(-5, 2));
        assert_eq!("+1.50".parse::<Price>().unwrap(), Price::new(150, 2));
        assert_eq!("007".parse::<Price>().unwrap(), Price::new(7, 0));
        assert_eq!("000.0100".parse::<Price>().unwrap(), Price::new(100, 4));
        assert_eq!("-0".parse::<Price>().unwrap(), Price::new(0, 0));
        assert_eq!("9223372036854775807".parse::<Price>().unwrap(), Price::new(i64::MAX, 0));
        assert_eq!("-9223372036854775808".parse::<Price>().unwrap(), Price::new(i64::MIN, 0));
        assert_eq!("0.0000000000000001".parse::<Price>().unwrap(), Price::new(1, 16));
        assert_eq!("18446744073709551615".parse::<Quantity>().unwrap(), Quantity::new(u64::MAX, 0));
        for bad in [
            "",
            "-",
            "+",
            ".",
            "-.",
            ".5",
            "5.",
            "1.2.3",
            "abc",
            "1e5",
            "1_000",
            "0x10",
            " 1",
            "1 ",
            "--1",
            "+-1",
            "١٢",
            "1.٢",
            "99999999999999999999999999999999999999999999999999",
            "0.12345678901234567",
        ] {
            assert!(bad.parse::<Price>().is_err(), "{bad:?}");
            assert!(bad.parse::<Quantity>().is_err(), "{bad:?}");
        }
        assert!("-1".parse::<Quantity>().is_err());
        assert!("9223372036854775808".parse::<Price>().is_err());
        assert!("-9223372036854775809".parse::<Price>().is_err());
        assert!("18446744073709551616".parse::<Quantity>().is_err());
        assert_eq!(Price::from_str_with_precision("1.5", 2), Ok(Price::new(150, 2)));
        assert_eq!(Price::from_str_with_precision("-3", 4), Ok(Price::new(-30_000, 4)));
        assert!(Price::from_str_with_precision("1.234", 2).is_err());
        assert!(Price::from_str_with_precision("922337203685477580", 2).is_err());
        assert_eq!(Quantity::from_str_with_precision("0.1", 3), Ok(Quantity::new(100, 3)));
        assert!(Quantity::from_str_with_precision("0.0001", 3).is_err());
        let e = "1.2.3".parse::<Price>().unwrap_err();
        assert!(e.to_string().contains("1.2.3"), "{e}");
    }

    #[test]
    fn decimal_printing() {
        let cases = [
            (Price::new(-5, 2), "-0.05"),
            (Price::new(0, 3), "0.000"),
            (Price::new(6_012_345, 2), "60123.45"),
            (Price::new(-6_012_345, 2), "-60123.45"),
            (Price::new(7, 0), "7"),
            (Price::new(i64::MIN, 0), "-9223372036854775808"),
            (Price::new(i64::MIN, 18), "-9.223372036854775808"),
            (Price::new(1, 20), "0.00000000000000000001"),
        ];
        for (p, s) in cases {
            assert_eq!(p.to_string(), s);
            if p.precision <= MAX_PRECISION {
                assert_eq!(s.parse::<Price>().unwrap(), p, "{s}");
            }
        }
        // Any precision prints without panicking.
        assert_eq!(Price::new(-1, 255).to_string().len(), 2 + 1 + 255);
        assert_eq!(Quantity::new(u64::MAX, 5).to_string(), "184467440737095.51615");
        assert_eq!(format!("{:>8}", Price::new(150, 2)), "    1.50");
        assert_eq!(Money::new(-150, 2, Currency::USD).to_string(), "-1.50 USD");
    }

    #[test]
    fn arithmetic_and_ordering() {
        let q = Quantity::new(1_500, 3);
        assert_eq!(q.checked_add(Quantity::new(5, 1)), Some(Quantity::new(2_000, 3)));
        assert_eq!(q.checked_sub(Quantity::new(15, 1)), Some(Quantity::new(0, 3)));
        assert_eq!(q.checked_sub(Quantity::new(2, 0)), None);
        assert_eq!(Quantity::new(u64::MAX, 0).checked_add(Quantity::new(1, 0)), None);
        assert_eq!(Quantity::new(u64::MAX, 0).checked_add(Quantity::new(1, 1)), None);
        assert_eq!(Quantity::new(1, 0).rescale(200), None);
        assert_eq!(Price::new(155, 2).rescale(1), Some(Price::new(16, 1)));
        assert_eq!(Price::new(-155, 2).rescale(1), Some(Price::new(-16, 1)));
        assert_eq!(Price::new(154, 2).rescale(1), Some(Price::new(15, 1)));
        assert_eq!(Price::new(i64::MIN, 0).checked_sub(Price::new(1, 0)), None);
        assert_eq!(Price::new(1, 0).checked_sub(Price::new(i64::MIN, 0)), None);
        assert!(Quantity::new(1, 0) > Quantity::new(999, 3));
        assert!(Quantity::new(1_000, 3) > Quantity::new(1, 0)); // same value: by precision
        assert!(Quantity::new(1, 200) < Quantity::new(1, 0));
        assert!(Quantity::new(1, 0) > Quantity::new(u64::MAX, 60));
        assert!(Price::new(-1, 0) < Price::new(-999, 3));
        assert!(Price::new(-1, 0) < Price::new(1, 100));
        assert!(Price::new(1, 0) > Price::new(-1, 100));
        assert_eq!(Price::new(150, 2).as_f64(), 1.5);
        let m = Money::new(100, 2, Currency::USDT);
        assert_eq!(m.checked_sub(Money::new(1, 3, Currency::USDT)), Some(Money::new(999, 3, Currency::USDT)));
        assert_eq!(m.checked_add(Money::new(1, 2, Currency::USD)), None);
        assert_eq!("-0.5 BTC".parse::<Money>(), Ok(Money::new(-5, 1, Currency::BTC)));
        for bad in ["1.0", "1.0 usd", "x USD", "1.0  USD", ""] {
            assert!(bad.parse::<Money>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn currency() {
        for (c, s) in [
            (Currency::USD, "USD"),
            (Currency::USDT, "USDT"),
            (Currency::USDC, "USDC"),
            (Currency::EUR, "EUR"),
            (Currency::BTC, "BTC"),
            (Currency::ETH, "ETH"),
        ] {
            assert_eq!(Currency::new(s), Ok(c));
        }
        assert_eq!(Currency::new("1000PEPE").unwrap().as_str(), "1000PEPE");
        for bad in ["", "usdt", "TOOLONGCODE", "US D", "USD:", "ÉUR"] {
            assert!(Currency::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(serde_json::to_string(&Currency::USDT).unwrap(), "\"USDT\"");
        assert!(serde_json::from_str::<Currency>("\"usdt\"").is_err());
        let mp = rmp_serde::to_vec(&Currency::BTC).unwrap();
        assert_eq!(rmp_serde::from_slice::<Currency>(&mp).unwrap(), Currency::BTC);
    }

    #[test]
    fn reason_text() {
        assert_eq!(ReasonText::new("").as_str(), "");
        let exact = "x".repeat(REASON_CAPACITY);
        assert_eq!(ReasonText::new(&exact).as_str(), exact);
        assert!(!ReasonText::new(&exact).is_truncated());
        let cut = ReasonText::new(&format!("{exact}y"));
        assert_eq!(cut.as_str(), exact);
        assert!(cut.is_truncated());
        // 63 ASCII bytes then a 3-byte char: cut before it.
        let s = format!("{}€", "a".repeat(63));
        assert_eq!(ReasonText::new(&s).as_str(), "a".repeat(63));
        let j = serde_json::to_string(&ReasonText::new("no \"margin\"")).unwrap();
        assert_eq!(serde_json::from_str::<ReasonText>(&j).unwrap().as_str(), "no \"margin\"");
    }

    #[test]
    fn iso8601() {
        let cases = [
            (0u64, "1970-01-01T00:00:00.000000000Z"),
            (951_782_400_000_000_000, "2000-02-29T00:00:00.000000000Z"),
            (951_868_799_999_999_999, "2000-02-29T23:59:59.999999999Z"),
            (1_709_164_800_000_000_001, "2024-02-29T00:00:00.000000001Z"),
            (1_704_164_645_123_456_789, "2024-01-02T03:04:05.123456789Z"),
            (4_107_542_400_000_000_000, "2100-03-01T00:00:00.000000000Z"),
            (4_107_456_000_000_000_000, "2100-02-28T00:00:00.000000000Z"),
            (4_102_444_800_000_000_000, "2100-01-01T00:00:00.000000000Z"),
            (u64::MAX, "2554-07-21T23:34:33.709551615Z"),
        ];
        for (t, s) in cases {
            assert_eq!(UnixNanos(t).to_iso8601(), s);
            assert_eq!(UnixNanos::parse_iso8601(s), Ok(UnixNanos(t)), "{s}");
        }
        // Every day boundary for a few years round-trips.
        for day in (0..(366 * 4)).chain(47_400..47_600) {
            let t = UnixNanos(day * 86_400 * NANOS_PER_SEC + 1);
            assert_eq!(UnixNanos::parse_iso8601(&t.to_iso8601()), Ok(t));
        }
        assert_eq!(UnixNanos::parse_iso8601("1970-01-01T00:00:01Z"), Ok(UnixNanos(NANOS_PER_SEC)));
        assert_eq!(UnixNanos::parse_iso8601("1970-01-01T00:00:00.5Z"), Ok(UnixNanos(500_000_000)));
        assert_eq!(
            UnixNanos::parse_iso8601("1970-01-01T01:00:00+01:00"),
            UnixNanos::parse_iso8601("1970-01-01T00:00:00Z")
        );
        assert_eq!(UnixNanos::parse_iso8601("1970-01-01t00:00:00.1z"), Ok(UnixNanos(100_000_000)));
        for bad in [
            "",
            "garbage",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-01-00T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:60:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00.1234567890Z",
            "2024-01-01T00:00:00+1:00",
            "2024-01-01T00:00:0éZ",
            "2024-01-01T00:00:00.€Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00+00:01",
            "2554-07-21T23:34:34Z",
            "9999-12-31T23:59:59Z",
            "+2024-01-01T00:00:00Z",
        ] {
            assert!(UnixNanos::parse_iso8601(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fixed_point_stored_form() {
        let p = Price::new(-6_000_050, 2);
        let q = Quantity::new(u64::MAX, 20);
        let m = Money::new(-120, 2, Currency::USDT);
        assert_eq!(serde_json::to_string(&p).unwrap(), "[-6000050,2]");
        assert_eq!(serde_json::to_string(&q).unwrap(), "[18446744073709551615,20]");
        assert_eq!(serde_json::to_string(&m).unwrap(), "[-120,2,\"USDT\"]");
        for enc in [rmp_serde::to_vec(&p).unwrap(), rmp_serde::to_vec_named(&p).unwrap()] {
            assert_eq!(rmp_serde::from_slice::<Price>(&enc).unwrap(), p);
        }
        assert_eq!(rmp_serde::from_slice::<Quantity>(&rmp_serde::to_vec_named(&q).unwrap()).unwrap(), q);
        assert_eq!(rmp_serde::from_slice::<Money>(&rmp_serde::to_vec_named(&m).unwrap()).unwrap(), m);
        // [raw, precision] in msgpack: a fixarray of two small ints.
        assert_eq!(rmp_serde::to_vec_named(&Quantity::new(5, 3)).unwrap(), [0x92, 5, 3]);
    }

    #[test]
    fn fixed_point_reads_the_earlier_map_form() {
        #[derive(Serialize)]
        struct OldMoney {
            raw: i64,
            precision: u8,
            currency: &'static str,
        }
        let old = OldMoney { raw: 120, precision: 2, currency: "USDT" };
        let mp = rmp_serde::to_vec_named(&old).unwrap();
        assert_eq!(rmp_serde::from_slice::<Money>(&mp).unwrap(), Money::new(120, 2, Currency::USDT));
        let p: Price = serde_json::from_str(r#"{"raw":5,"precision":1,"extra":true}"#).unwrap();
        assert_eq!(p, Price::new(5, 1));
    }

    #[test]
    fn fixed_point_bad_stored_values_are_errors() {
        for bad in [
            "[1]",
            "[1,2,3]",
            "[-1,2]",
            "[1,300]",
            "\"1.5\"",
            "{\"raw\":1}",
            "[18446744073709551615,0,\"USDT\"]",
            "null",
        ] {
            assert!(serde_json::from_str::<Quantity>(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Price>("[9223372036854775808,0]").is_err());
        assert!(serde_json::from_str::<Money>("[1,2]").is_err());
        assert!(serde_json::from_str::<Money>("[1,2,\"usdt\"]").is_err());
        assert!(serde_json::from_str::<Money>("{\"raw\":1,\"precision\":2}").is_err());
    }

    #[test]
    fn unix_nanos_serde() {
        let t = UnixNanos(1_704_164_645_123_456_789);
        assert_eq!(serde_json::to_string(&t).unwrap(), "1704164645123456789");
        super::set_timestamps_as_iso8601(true);
        let json = serde_json::to_string(&t).unwrap();
        let mp = rmp_serde::to_vec(&t).unwrap(); // binary: stays an integer
        super::set_timestamps_as_iso8601(false);
        assert_eq!(json, "\"2024-01-02T03:04:05.123456789Z\"");
        assert_eq!(serde_json::from_str::<UnixNanos>(&json).unwrap(), t);
        assert_eq!(rmp_serde::from_slice::<UnixNanos>(&mp).unwrap(), t);
        assert_eq!(mp, rmp_serde::to_vec(&t.0).unwrap());
        assert!(serde_json::from_str::<UnixNanos>("-1").is_err());
        assert!(serde_json::from_str::<UnixNanos>("\"yesterday\"").is_err());
    }
}
