//! Fixed-point value types, currency codes, short reason texts and
//! timestamps. None of them allocates; every operation is total (checked
//! arithmetic returns `None`, parsing returns an error, nothing panics).
//!
//! This file: parse errors and the exact decimal core (i128 arithmetic)
//! the fixed-point types share. `fixed.rs`: `Price`, `Quantity`, `Money`
//! and their stored form; `text.rs`: `Currency`, `ReasonText`; `time.rs`:
//! `UnixNanos`, ISO 8601, and the scoped ISO timestamp mode.

use std::cmp::Ordering;
use std::fmt;

mod fixed;
mod text;
mod time;

pub use fixed::{Money, Price, Quantity};
pub use text::{Currency, ReasonText, REASON_CAPACITY};
pub(crate) use time::IsoScope;
pub use time::UnixNanos;

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

/// `raw / 10^from` expressed with `to` decimals; rounds half away from zero
/// when `to < from`. `None` on overflow.
fn rescale_round(raw: i128, from: u8, to: u8) -> Option<i128> {
    match to.cmp(&from) {
        Ordering::Equal => Some(raw),
        Ordering::Greater => raw.checked_mul(10i128.checked_pow(u32::from(to - from))?),
        Ordering::Less => match 10i128.checked_pow(u32::from(from - to)) {
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
    // On the stack: at most 1 + 39 + 1 + 255 bytes.
    let (mut out, mut end) = ([0u8; 300], 0);
    let mut push = |b: u8| {
        if end < out.len() {
            out[end] = b;
            end += 1;
        }
    };
    if raw < 0 {
        push(b'-');
    }
    let prec = usize::from(precision);
    if len <= prec {
        push(b'0');
    } else {
        for i in (prec..len).rev() {
            push(digits[i]);
        }
    }
    if prec > 0 {
        push(b'.');
        for i in (0..prec).rev() {
            push(if i < len { digits[i] } else { b'0' });
        }
    }
    // `pad` honours width/alignment flags such as `{:>12}`. Only ASCII
    // digits, '-' and '.' were pushed.
    f.pad(std::str::from_utf8(&out[..end]).unwrap_or(""))
}

#[cfg(test)]
pub(crate) use time::set_timestamps_as_iso8601;

#[cfg(test)]
mod tests {
    use super::time::NANOS_PER_SEC;
    use super::*;
    use serde::Serialize;

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
