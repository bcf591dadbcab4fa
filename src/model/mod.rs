//! Reference domain types: instruments, accounts with balance events, orders
//! with their event history, positions, market data (quote ticks, trade
//! ticks, bars), and the fixed-point value types they are made of.
//!
//! None of them owns a heap allocation: ids are inline [`Ident`]s (up to 46
//! bytes), currencies and reject reasons are inline too, and balances live in
//! fixed slots. Cloning an order, an order event or a position onto the
//! channel is a `memcpy`; see the `sizes` test for their sizes. Amounts are
//! fixed-point integers with a precision (`raw / 10^precision`): no floats,
//! no rounding surprises.
//!
//! ```
//! use tradecache::model::{OrderSide, Position, PositionSide, Price, Quantity, UnixNanos};
//!
//! let mut p = Position::example("P-1"); // long 1.000 @ 60000.00
//! p.apply_fill(OrderSide::Sell, Price::new(6_100_000, 2), Quantity::new(1_000, 3), UnixNanos(2));
//! assert_eq!(p.side, PositionSide::Flat);
//! assert_eq!(p.realized_pnl.to_string(), "1000.00 USDT");
//! ```

mod account;
mod instrument;
mod market;
mod order;
mod position;
mod value;

pub use account::{
    Account, AccountBalance, AccountEvent, AccountKind, CapacityError, MarginBalance, MAX_BALANCES,
};
pub use instrument::{Instrument, InstrumentKind};
pub use market::{AggressorSide, Bar, QuoteTick, TradeTick};
pub use order::{
    Fill, LiquiditySide, Order, OrderError, OrderEvent, OrderEventKind, OrderSide, OrderStatus, OrderType,
    TimeInForce,
};
pub use position::{Position, PositionError, PositionSide};
pub(crate) use value::IsoScope;
pub use value::{
    Currency, Money, ParseError, Price, Quantity, ReasonText, UnixNanos, MAX_PRECISION, REASON_CAPACITY,
};

use crate::ident::Ident;

/// An id for the `example` constructors: `s` if valid, else `invalid-id`.
fn example_id(s: &str) -> Ident {
    Ident::new(s).unwrap_or_else(|_| Ident::new_unchecked("invalid-id"))
}

#[cfg(test)]
pub(crate) use value::set_timestamps_as_iso8601;

#[cfg(test)]
mod tests;
