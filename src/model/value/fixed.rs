//! `Price`, `Quantity` and `Money`: fixed-point `raw / 10^precision`, and
//! their stored form.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::*;

/// The methods all three types share, written once: `$noun` names the value
/// in the docs ("value" / "amount"), `$rounding` how `rescale` rounds,
/// `$add_none` when `checked_add` gives `None`, and `$same` a field (money's
/// currency) the two sides of a sum must share.
macro_rules! fixed_common {
    ($T:ident, $raw:ty, $noun:literal, $rounding:literal, $add_none:literal $(, $same:ident)?) => {
        impl $T {
            #[doc = concat!("The same ", $noun, " with `precision` decimals, rounding ", $rounding)]
            /// when decimals are dropped; `None` if it does not fit.
            pub fn rescale(self, precision: u8) -> Option<$T> {
                let raw = rescale_round(i128::from(self.raw), self.precision, precision)?;
                let mut v = self;
                (v.raw, v.precision) = (<$raw>::try_from(raw).ok()?, precision);
                Some(v)
            }

            #[doc = concat!("Whether the ", $noun, " is zero.")]
            pub const fn is_zero(self) -> bool {
                self.raw == 0
            }

            /// As a float, for display and statistics only.
            pub fn as_f64(self) -> f64 {
                i128::from(self.raw) as f64 / 10f64.powi(i32::from(self.precision))
            }

            #[doc = concat!("The sum at the larger precision; `None` ", $add_none, ".")]
            pub fn checked_add(self, other: $T) -> Option<$T> {
                $(if self.$same != other.$same {
                    return None;
                })?
                let p = self.precision.max(other.precision);
                let (mut sum, b) = (self.rescale(p)?, other.rescale(p)?);
                sum.raw = <$raw>::try_from(i128::from(sum.raw) + i128::from(b.raw)).ok()?;
                Some(sum)
            }
        }
    };
}

/// What `Price` and `Quantity` share beyond `fixed_common`: construction,
/// parsing, ordering, display and the stored `[raw, precision]`.
/// `$syntax` is the text the parsers read, `$range` its error for a value
/// that does not fit, `$what` names the type in decode errors.
macro_rules! fixed_decimal {
    ($T:ident, $raw:ty, $rounding:literal, $syntax:literal, $range:literal, $what:literal) => {
        fixed_common!($T, $raw, "value", $rounding, "on overflow");

        impl $T {
            /// `raw / 10^precision`.
            pub const fn new(raw: $raw, precision: u8) -> Self {
                $T { raw, precision }
            }

            /// Compares the values exactly, ignoring how many decimals each has
            /// (`1.0` equals `1.000` here; [`Ord`] orders them by precision).
            pub fn cmp_value(&self, other: &$T) -> Ordering {
                cmp_values(i128::from(self.raw), self.precision, i128::from(other.raw), other.precision)
            }

            #[doc = concat!("Parses `", $syntax, "` aligned to exactly `precision` decimals")]
            /// (`"1.5"` at 2 is `raw` 150).
            ///
            /// # Errors
            ///
            /// When the text is not of that form, has more decimal places
            /// than `precision`, or does not fit.
            pub fn from_str_with_precision(s: &str, precision: u8) -> Result<$T, ParseError> {
                $T::from_decimal(s, parse_decimal_at(s, precision)?, precision)
            }

            fn from_decimal(s: &str, raw: i128, precision: u8) -> Result<$T, ParseError> {
                let raw = <$raw>::try_from(raw).map_err(|_| perr(s, $range))?;
                Ok($T::new(raw, precision))
            }
        }

        impl PartialOrd for $T {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $T {
            fn cmp(&self, other: &Self) -> Ordering {
                self.cmp_value(other).then(self.precision.cmp(&other.precision))
            }
        }

        impl FromStr for $T {
            type Err = ParseError;
            #[doc = concat!("Parses `", $syntax, "`, keeping the decimals written.")]
            fn from_str(s: &str) -> Result<Self, ParseError> {
                let (raw, precision) = parse_decimal(s)?;
                $T::from_decimal(s, raw, precision)
            }
        }

        impl fmt::Display for $T {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_decimal(f, i128::from(self.raw), self.precision)
            }
        }

        /// Stored as `[raw, precision]`.
        impl Serialize for $T {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                (self.raw, self.precision).serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $T {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let f = Fixed::deserialize(d)?;
                Ok($T::new(fixed_range(f.raw.0, $what)?, f.precision))
            }
        }
    };
}

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

fixed_decimal!(
    Price,
    i64,
    "half away from zero",
    "[+-]digits[.digits]",
    "out of range for a price",
    "a price"
);

impl Price {
    /// The difference at the larger precision; `None` on overflow.
    pub fn checked_sub(self, other: Price) -> Option<Price> {
        self.checked_add(Price::new(other.raw.checked_neg()?, other.precision))
    }
}

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

fixed_decimal!(
    Quantity,
    u64,
    "half up",
    "digits[.digits]",
    "negative or out of range for a quantity",
    "a quantity (non-negative)"
);

impl Quantity {
    /// Zero with `precision` decimals.
    pub const fn zero(precision: u8) -> Self {
        Quantity { raw: 0, precision }
    }

    /// The difference at the larger precision; `None` if it would be
    /// negative or on overflow.
    pub fn checked_sub(self, other: Quantity) -> Option<Quantity> {
        let p = self.precision.max(other.precision);
        self.rescale(p)?.raw.checked_sub(other.rescale(p)?.raw).map(|r| Quantity::new(r, p))
    }
}

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

fixed_common!(
    Money,
    i64,
    "amount",
    "half away from zero",
    "if the currencies differ or on overflow",
    currency
);

impl Money {
    /// `raw / 10^precision` in `currency`.
    pub const fn new(raw: i64, precision: u8, currency: Currency) -> Self {
        Money { raw, precision, currency }
    }

    /// Zero in `currency` with `precision` decimals.
    pub const fn zero(precision: u8, currency: Currency) -> Self {
        Money { raw: 0, precision, currency }
    }

    /// The difference at the larger precision; `None` if the currencies
    /// differ or on overflow.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.checked_add(Money::new(other.raw.checked_neg()?, other.precision, other.currency))
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

// Stored form: `[raw, precision]` (money: `[raw, precision, "CCY"]`), exact
// for any precision and a third of the size of a map with field names
// (docs/usage.md, "Stored schema"); reading also accepts the older map form.

/// A decoded `Price` or `Quantity` before its range is checked (serde's
/// derive reads both the sequence and the map form).
#[derive(Deserialize)]
#[serde(expecting = "a fixed-point value as [raw, precision]")]
struct Fixed {
    raw: AnyInt,
    precision: u8,
}

/// A decoded `Money` before its range is checked.
#[derive(Deserialize)]
#[serde(expecting = "an amount as [raw, precision, \"CCY\"]")]
struct FixedMoney {
    raw: AnyInt,
    precision: u8,
    currency: Currency,
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

fn fixed_range<E: serde::de::Error, T: TryFrom<i128>>(raw: i128, what: &str) -> Result<T, E> {
    T::try_from(raw).map_err(|_| E::custom(format_args!("{raw} is out of range for {what}")))
}

/// Stored as `[raw, precision, "CCY"]`.
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.raw, self.precision, &self.currency).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = FixedMoney::deserialize(d)?;
        Ok(Money::new(fixed_range(f.raw.0, "an amount")?, f.precision, f.currency))
    }
}
