//! Market data: quote ticks, trade ticks and bars, kept in capped Redis
//! lists per instrument or bar type (see [`crate::MarketData`]).

use serde::{Deserialize, Serialize};

use super::{example_id, Price, Quantity, UnixNanos};
use crate::ident::Ident;

/// Which side of a trade was the aggressor (took liquidity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AggressorSide {
    /// The buyer lifted an offer.
    Buyer,
    /// The seller hit a bid.
    Seller,
    /// Not known (an auction, say).
    NoAggressor,
}

/// The best bid and offer of an instrument at one moment, appended to
/// `quotes:{instrument_id}:events` (at most `tick_capacity` kept).
///
/// # Examples
///
/// ```
/// use tradecache::model::{Price, QuoteTick, UnixNanos};
///
/// let q = QuoteTick::example("BTCUSDT-PERP.BINANCE", UnixNanos(7));
/// assert_eq!(q.instrument_id.as_str(), "BTCUSDT-PERP.BINANCE");
/// assert_eq!(q.ask_price.checked_sub(q.bid_price), Some(Price::new(10, 2)));
/// assert_eq!(q.ts_event, UnixNanos(7));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QuoteTick {
    /// The instrument; names the series.
    #[serde(rename = "i", alias = "instrument_id")]
    pub instrument_id: Ident,
    /// Best bid.
    #[serde(rename = "bp", alias = "bid_price")]
    pub bid_price: Price,
    /// Best offer.
    #[serde(rename = "ap", alias = "ask_price")]
    pub ask_price: Price,
    /// Size at the best bid.
    #[serde(rename = "bs", alias = "bid_size")]
    pub bid_size: Quantity,
    /// Size at the best offer.
    #[serde(rename = "as", alias = "ask_size")]
    pub ask_size: Quantity,
    /// When the venue published it.
    #[serde(rename = "te", alias = "ts_event")]
    pub ts_event: UnixNanos,
    /// When the engine received it.
    #[serde(rename = "ti", alias = "ts_init")]
    pub ts_init: UnixNanos,
}

impl QuoteTick {
    /// A quote of 60,000.00 / 60,000.10 with 1.500 / 2.000 on each side at
    /// `ts`, for examples, tests and benches. An invalid id is replaced by
    /// `invalid-id`.
    pub fn example(instrument_id: &str, ts: UnixNanos) -> QuoteTick {
        QuoteTick {
            instrument_id: example_id(instrument_id),
            bid_price: Price::new(6_000_000, 2),
            ask_price: Price::new(6_000_010, 2),
            bid_size: Quantity::new(1_500, 3),
            ask_size: Quantity::new(2_000, 3),
            ts_event: ts,
            ts_init: ts,
        }
    }
}

/// One trade on a venue, appended to `trades:{instrument_id}:events` (at
/// most `tick_capacity` kept).
///
/// # Examples
///
/// ```
/// use tradecache::model::{AggressorSide, TradeTick, UnixNanos};
///
/// let t = TradeTick::example("ETHUSDT-PERP.BINANCE", UnixNanos(3));
/// assert_eq!(t.aggressor_side, AggressorSide::Buyer);
/// assert_eq!(t.price.to_string(), "60000.00");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TradeTick {
    /// The instrument; names the series.
    #[serde(rename = "i", alias = "instrument_id")]
    pub instrument_id: Ident,
    /// Trade price.
    #[serde(rename = "p", alias = "price")]
    pub price: Price,
    /// Trade size.
    #[serde(rename = "q", alias = "size")]
    pub size: Quantity,
    /// Who took liquidity.
    #[serde(rename = "as", alias = "aggressor_side")]
    pub aggressor_side: AggressorSide,
    /// The venue's trade id.
    #[serde(rename = "tid", alias = "trade_id")]
    pub trade_id: Ident,
    /// When the venue published it.
    #[serde(rename = "te", alias = "ts_event")]
    pub ts_event: UnixNanos,
    /// When the engine received it.
    #[serde(rename = "ti", alias = "ts_init")]
    pub ts_init: UnixNanos,
}

impl TradeTick {
    /// A buyer-initiated trade of 0.250 at 60,000.00 at `ts` (trade id
    /// `T-{ts}`), for examples, tests and benches. An invalid id is
    /// replaced by `invalid-id`.
    pub fn example(instrument_id: &str, ts: UnixNanos) -> TradeTick {
        TradeTick {
            instrument_id: example_id(instrument_id),
            price: Price::new(6_000_000, 2),
            size: Quantity::new(250, 3),
            aggressor_side: AggressorSide::Buyer,
            trade_id: example_id(&format!("T-{}", ts.0)),
            ts_event: ts,
            ts_init: ts,
        }
    }
}

/// An OHLCV bar, appended to `bars:{bar_type}:events` (at most
/// `bar_capacity` kept).
///
/// The bar type names the series, as in NautilusTrader:
/// `{instrument_id}-{step}-{aggregation}-{price type}-{source}`, for
/// example `BTCUSDT-PERP.BINANCE-1-MINUTE-LAST-EXTERNAL`.
///
/// # Examples
///
/// ```
/// use tradecache::model::{Bar, Price, UnixNanos};
///
/// let b = Bar::example("BTCUSDT-PERP.BINANCE-1-MINUTE-LAST-EXTERNAL", UnixNanos(60));
/// assert!(b.low <= b.open && b.open <= b.high);
/// assert_eq!(b.close, Price::new(6_000_500, 2));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Bar {
    /// The bar type; names the series.
    #[serde(rename = "bt", alias = "bar_type")]
    pub bar_type: Ident,
    /// Open.
    #[serde(rename = "o", alias = "open")]
    pub open: Price,
    /// High.
    #[serde(rename = "h", alias = "high")]
    pub high: Price,
    /// Low.
    #[serde(rename = "l", alias = "low")]
    pub low: Price,
    /// Close.
    #[serde(rename = "c", alias = "close")]
    pub close: Price,
    /// Volume traded in the bar.
    #[serde(rename = "v", alias = "volume")]
    pub volume: Quantity,
    /// When the bar closed.
    #[serde(rename = "te", alias = "ts_event")]
    pub ts_event: UnixNanos,
    /// When the engine built or received it.
    #[serde(rename = "ti", alias = "ts_init")]
    pub ts_init: UnixNanos,
}

impl Bar {
    /// A bar 60,000.00 / 60,010.00 / 59,990.00 / 60,005.00 with a volume of
    /// 12.000, closed at `ts`, for examples, tests and benches. An invalid
    /// bar type is replaced by `invalid-id`.
    pub fn example(bar_type: &str, ts: UnixNanos) -> Bar {
        Bar {
            bar_type: example_id(bar_type),
            open: Price::new(6_000_000, 2),
            high: Price::new(6_001_000, 2),
            low: Price::new(5_999_000, 2),
            close: Price::new(6_000_500, 2),
            volume: Quantity::new(12_000, 3),
            ts_event: ts,
            ts_init: ts,
        }
    }
}
