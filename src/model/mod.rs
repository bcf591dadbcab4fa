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
pub use value::{
    Currency, Money, ParseError, Price, Quantity, ReasonText, UnixNanos, MAX_PRECISION, REASON_CAPACITY,
};

use crate::entity::{Entity, Event, EventRecord, MarketData, Record, SeriesCapacity};
use crate::ident::Ident;

/// An id for the `example` constructors: `s` if valid, else `invalid-id`.
fn example_id(s: &str) -> Ident {
    Ident::new(s).unwrap_or_else(|_| Ident::new_unchecked("invalid-id"))
}

macro_rules! entity {
    ($t:ty, $coll:literal, $field:ident, $rec:expr) => {
        entity!($t, $coll, $field, $rec, |_s: &$t| false, |_s: &$t| None);
    };
    ($t:ty, $coll:literal, $field:ident, $rec:expr, $closed:expr, $updated:expr) => {
        impl Entity for $t {
            const COLLECTION: &'static str = $coll;
            fn id(&self) -> &str {
                &self.$field
            }
            fn is_closed(&self) -> bool {
                $closed(self)
            }
            fn last_updated(&self) -> Option<UnixNanos> {
                $updated(self)
            }
            fn to_record(&self) -> Record {
                $rec(self.clone())
            }
        }
    };
}

entity!(Instrument, "instruments", id, Record::Instrument);
// An order is closed once rejected, canceled, expired or filled; a
// position once flat. Both changed last at `ts_last`.
entity!(Order, "orders", client_order_id, Record::Order, |o: &Order| o.status.is_closed(), |o: &Order| Some(
    o.ts_last
));
entity!(
    Position,
    "positions",
    id,
    Record::Position,
    |p: &Position| p.side == PositionSide::Flat,
    |p: &Position| Some(p.ts_last)
);
// Accounts are large (fixed slots) and rarely written: boxed on the channel.
entity!(Account, "accounts", id, |a| Record::Account(Box::new(a)));

impl Event for OrderEvent {
    type Of = Order;
    fn event_id(&self) -> u64 {
        self.event_id
    }
    fn to_record(&self) -> EventRecord {
        EventRecord::Order(self.clone())
    }
}

impl Event for AccountEvent {
    type Of = Account;
    fn event_id(&self) -> u64 {
        self.event_id
    }
    fn to_record(&self) -> EventRecord {
        EventRecord::Account(Box::new(self.clone()))
    }
}

macro_rules! market_data {
    ($t:ty, $coll:literal, $cap:expr, $field:ident, $rec:expr) => {
        impl MarketData for $t {
            const COLLECTION: &'static str = $coll;
            const CAPACITY: SeriesCapacity = $cap;
            fn series_id(&self) -> &str {
                &self.$field
            }
            fn to_record(&self) -> EventRecord {
                $rec(self.clone())
            }
        }
    };
}

market_data!(QuoteTick, "quotes", SeriesCapacity::Ticks, instrument_id, EventRecord::Quote);
market_data!(TradeTick, "trades", SeriesCapacity::Ticks, instrument_id, EventRecord::Trade);
market_data!(Bar, "bars", SeriesCapacity::Bars, bar_type, EventRecord::Bar);

#[cfg(test)]
mod tests;
