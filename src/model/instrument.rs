//! Instrument definitions.

use serde::{Deserialize, Serialize};

use super::{example_id, Currency, Price, Quantity, UnixNanos};
use crate::ident::Ident;

/// The kind of an instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InstrumentKind {
    /// Spot pair.
    Spot,
    /// Perpetual swap.
    Perpetual,
    /// Dated future.
    Future,
    /// Option.
    Option,
}

/// An instrument definition (`instruments:{id}`).
///
/// # Examples
///
/// ```
/// use tradecache::model::{Currency, Instrument, InstrumentKind, Price};
///
/// let btc = Instrument::example("BTCUSDT-PERP.BINANCE");
/// assert_eq!(btc.symbol.as_str(), "BTCUSDT-PERP");
/// assert_eq!(btc.venue.as_str(), "BINANCE");
/// assert_eq!(btc.kind, InstrumentKind::Perpetual);
/// assert_eq!(btc.quote, Currency::USDT);
/// assert_eq!(btc.parse_price("60000.5"), Ok(Price::new(6_000_050, 2)));
/// assert!(btc.parse_price("60000.555").is_err()); // finer than the precision
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instrument {
    /// `BTCUSDT-PERP.BINANCE`.
    pub id: Ident,
    /// Venue symbol, `BTCUSDT-PERP`.
    #[serde(rename = "sym", alias = "symbol")]
    pub symbol: Ident,
    /// Venue, `BINANCE`.
    #[serde(rename = "v", alias = "venue")]
    pub venue: Ident,
    /// Spot, perpetual, …
    #[serde(rename = "k", alias = "kind")]
    pub kind: InstrumentKind,
    /// Base currency.
    #[serde(rename = "b", alias = "base")]
    pub base: Currency,
    /// Quote currency.
    #[serde(rename = "q", alias = "quote")]
    pub quote: Currency,
    /// Settlement currency.
    #[serde(rename = "st", alias = "settlement")]
    pub settlement: Currency,
    /// Decimal places of prices.
    #[serde(rename = "pp", alias = "price_precision")]
    pub price_precision: u8,
    /// Decimal places of sizes.
    #[serde(rename = "sp", alias = "size_precision")]
    pub size_precision: u8,
    /// Smallest price step.
    #[serde(rename = "pi", alias = "price_increment")]
    pub price_increment: Price,
    /// Smallest size step.
    #[serde(rename = "si", alias = "size_increment")]
    pub size_increment: Quantity,
    /// Contract multiplier.
    #[serde(rename = "m", alias = "multiplier")]
    pub multiplier: Quantity,
    /// Maker fee in basis points (negative is a rebate).
    #[serde(default)]
    #[serde(rename = "mf", alias = "maker_fee_bps")]
    pub maker_fee_bps: i32,
    /// Taker fee in basis points.
    #[serde(default)]
    #[serde(rename = "tf", alias = "taker_fee_bps")]
    pub taker_fee_bps: i32,
    /// When the definition was created.
    #[serde(rename = "ti", alias = "ts_init")]
    pub ts_init: UnixNanos,
}

impl Instrument {
    /// A plausible BTC/USDT perpetual swap definition named `instrument_id`
    /// (`SYMBOL.VENUE`), for examples, tests and benches. An invalid id is
    /// replaced by `invalid-id`.
    pub fn example(instrument_id: &str) -> Instrument {
        let (symbol, venue) = instrument_id.rsplit_once('.').unwrap_or((instrument_id, "SIM"));
        Instrument {
            id: example_id(instrument_id),
            symbol: example_id(symbol),
            venue: example_id(venue),
            kind: InstrumentKind::Perpetual,
            base: Currency::BTC,
            quote: Currency::USDT,
            settlement: Currency::USDT,
            price_precision: 2,
            size_precision: 3,
            price_increment: Price::new(1, 2),
            size_increment: Quantity::new(1, 3),
            multiplier: Quantity::new(1, 0),
            maker_fee_bps: 2,
            taker_fee_bps: 4,
            ts_init: UnixNanos(1_700_000_000_000_000_000),
        }
    }

    /// Parses a price at this instrument's `price_precision`.
    ///
    /// # Errors
    ///
    /// As [`Price::from_str_with_precision`].
    pub fn parse_price(&self, s: &str) -> Result<Price, super::ParseError> {
        Price::from_str_with_precision(s, self.price_precision)
    }

    /// Parses a quantity at this instrument's `size_precision`.
    ///
    /// # Errors
    ///
    /// As [`Quantity::from_str_with_precision`].
    pub fn parse_quantity(&self, s: &str) -> Result<Quantity, super::ParseError> {
        Quantity::from_str_with_precision(s, self.size_precision)
    }
}
