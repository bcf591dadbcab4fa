//! Reference domain types: instruments, accounts with balance events, orders
//! with their event history, positions, and the fixed-point value types.
//!
//! None of them owns a heap allocation (ids are inline [`Ident`]s), so
//! cloning one onto the channel is a `memcpy`.
//!
//! ```
//! use tradecache::model::{Position, Price, Quantity, OrderSide, UnixNanos};
//!
//! let mut p = Position::example("P-1");
//! p.apply_fill(OrderSide::Sell, Price::new(6_100_000, 2), Quantity::new(1_000, 3), UnixNanos(2));
//! assert_eq!(p.quantity, Quantity::new(0, 3));
//! ```

mod value;

pub use value::{Currency, Money, ParseError, Price, Quantity, UnixNanos};

use serde::{Deserialize, Serialize};

use crate::entity::{Entity, Event, EventRecord, Record};
use crate::ident::Ident;

fn id(s: &str) -> Ident {
    Ident::new(s).unwrap_or_else(|_| Ident::new_unchecked("invalid-id"))
}

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instrument {
    /// `BTCUSDT-PERP.BINANCE`.
    pub id: Ident,
    /// Venue symbol, `BTCUSDT`.
    pub symbol: Ident,
    /// Venue, `BINANCE`.
    pub venue: Ident,
    /// Spot, perpetual, …
    pub kind: InstrumentKind,
    /// Base currency.
    pub base: Currency,
    /// Quote currency.
    pub quote: Currency,
    /// Settlement currency.
    pub settlement: Currency,
    /// Decimal places of prices.
    pub price_precision: u8,
    /// Decimal places of sizes.
    pub size_precision: u8,
    /// Smallest price step.
    pub price_increment: Price,
    /// Smallest size step.
    pub size_increment: Quantity,
    /// Contract multiplier.
    pub multiplier: Quantity,
    /// Maker fee in basis points (negative is a rebate).
    pub maker_fee_bps: i32,
    /// Taker fee in basis points.
    pub taker_fee_bps: i32,
    /// When the definition was created.
    pub ts_init: UnixNanos,
}

impl Instrument {
    /// A plausible perpetual swap definition, for examples and tests.
    pub fn example(instrument_id: &str) -> Instrument {
        let usdt = Currency::new("USDT").unwrap_or_default();
        Instrument {
            id: id(instrument_id),
            symbol: id(instrument_id.split('.').next().unwrap_or(instrument_id)),
            venue: id(instrument_id.rsplit('.').next().unwrap_or("SIM")),
            kind: InstrumentKind::Perpetual,
            base: Currency::new("BTC").unwrap_or_default(),
            quote: usdt,
            settlement: usdt,
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
}

/// Cash or margin account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AccountKind {
    /// Cash account.
    Cash,
    /// Margin account.
    Margin,
}

/// One currency's balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountBalance {
    /// Total.
    pub total: Money,
    /// Locked by open orders.
    pub locked: Money,
    /// Free to use.
    pub free: Money,
}

/// One margin requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarginBalance {
    /// The instrument, or none for account-wide margin.
    pub instrument_id: Option<Ident>,
    /// Initial margin.
    pub initial: Money,
    /// Maintenance margin.
    pub maintenance: Money,
}

/// How many balances and margins an account or account event holds: fixed
/// so that the types never allocate.
pub const MAX_BALANCES: usize = 4;

/// An account's latest state (`accounts:{id}`). Holds at most
/// [`MAX_BALANCES`] balances and margins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// `BINANCE-001`.
    pub id: Ident,
    /// Cash or margin.
    pub kind: AccountKind,
    /// Base currency, if single-currency.
    pub base_currency: Option<Currency>,
    /// Balances per currency.
    pub balances: [Option<AccountBalance>; MAX_BALANCES],
    /// Margins.
    pub margins: [Option<MarginBalance>; MAX_BALANCES],
    /// Last update.
    pub ts_event: UnixNanos,
}

impl Account {
    /// A margin account with one USDT balance, for examples and tests.
    pub fn example(account_id: &str) -> Account {
        let usdt = Currency::new("USDT").unwrap_or_default();
        let m = |raw| Money::new(raw, 2, usdt);
        Account {
            id: id(account_id),
            kind: AccountKind::Margin,
            base_currency: Some(usdt),
            balances: [
                Some(AccountBalance { total: m(10_000_000), locked: m(0), free: m(10_000_000) }),
                None,
                None,
                None,
            ],
            margins: [None, None, None, None],
            ts_event: UnixNanos(1_700_000_000_000_000_000),
        }
    }

    /// Applies a balance event: the account takes its balances and margins.
    pub fn apply(&mut self, event: &AccountEvent) {
        self.balances = event.balances;
        self.margins = event.margins.clone();
        self.ts_event = event.ts_event;
    }
}

/// A balance/margin update appended to `accounts:{id}:events` (when
/// `persist_account_events` is on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountEvent {
    /// Unique within the account's log.
    pub event_id: u64,
    /// The account.
    pub account_id: Ident,
    /// Balances after the event.
    pub balances: [Option<AccountBalance>; MAX_BALANCES],
    /// Margins after the event.
    pub margins: [Option<MarginBalance>; MAX_BALANCES],
    /// Reported by the venue (as opposed to calculated).
    pub reported: bool,
    /// When it happened.
    pub ts_event: UnixNanos,
}

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderSide {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

/// Order type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderType {
    /// Market.
    Market,
    /// Limit.
    Limit,
    /// Stop market.
    StopMarket,
    /// Stop limit.
    StopLimit,
}

/// Time in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeInForce {
    /// Good till canceled.
    Gtc,
    /// Immediate or cancel.
    Ioc,
    /// Fill or kill.
    Fok,
    /// Good till date.
    Gtd,
    /// Day.
    Day,
}

/// Order status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Created locally.
    Initialized,
    /// Sent to the venue.
    Submitted,
    /// Accepted by the venue.
    Accepted,
    /// Rejected by the venue.
    Rejected,
    /// Canceled.
    Canceled,
    /// Expired.
    Expired,
    /// Partly filled.
    PartiallyFilled,
    /// Completely filled.
    Filled,
}

/// Maker or taker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LiquiditySide {
    /// Added liquidity.
    Maker,
    /// Took liquidity.
    Taker,
}

/// An order's latest state (`orders:{id}`); its history is in
/// `orders:{id}:events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Client order id.
    pub client_order_id: Ident,
    /// Venue order id, once accepted.
    pub venue_order_id: Option<Ident>,
    /// The strategy that owns it.
    pub strategy_id: Ident,
    /// The instrument.
    pub instrument_id: Ident,
    /// Buy or sell.
    pub side: OrderSide,
    /// Order type.
    pub order_type: OrderType,
    /// Quantity ordered.
    pub quantity: Quantity,
    /// Limit price.
    pub price: Option<Price>,
    /// Trigger price.
    pub trigger_price: Option<Price>,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// Status.
    pub status: OrderStatus,
    /// Quantity filled so far.
    pub filled_qty: Quantity,
    /// Average fill price.
    pub avg_px: Option<Price>,
    /// Created.
    pub ts_init: UnixNanos,
    /// Last event.
    pub ts_last: UnixNanos,
    /// Events applied.
    pub event_count: u32,
}

impl Order {
    /// A limit buy of 1.000 at 60,000.00, for examples and tests.
    pub fn example(client_order_id: &str) -> Order {
        Order {
            client_order_id: id(client_order_id),
            venue_order_id: None,
            strategy_id: id("EMA-CROSS-001"),
            instrument_id: id("BTCUSDT-PERP.BINANCE"),
            side: OrderSide::Buy,
            order_type: OrderType::Limit,
            quantity: Quantity::new(1_000, 3),
            price: Some(Price::new(6_000_000, 2)),
            trigger_price: None,
            time_in_force: TimeInForce::Gtc,
            status: OrderStatus::Initialized,
            filled_qty: Quantity::new(0, 3),
            avg_px: None,
            ts_init: UnixNanos(1_700_000_000_000_000_000),
            ts_last: UnixNanos(1_700_000_000_000_000_000),
            event_count: 0,
        }
    }

    /// Applies an event: status, fills (quantity and weighted average
    /// price, in exact integer arithmetic), venue id, timestamps.
    pub fn apply(&mut self, event: &OrderEvent) {
        self.ts_last = event.ts_event;
        self.event_count += 1;
        match &event.kind {
            OrderEventKind::Initialized { .. } => self.status = OrderStatus::Initialized,
            OrderEventKind::Submitted { .. } => self.status = OrderStatus::Submitted,
            OrderEventKind::Accepted { venue_order_id } => {
                self.venue_order_id = Some(venue_order_id.clone());
                self.status = OrderStatus::Accepted;
            }
            OrderEventKind::Rejected { .. } => self.status = OrderStatus::Rejected,
            OrderEventKind::Canceled => self.status = OrderStatus::Canceled,
            OrderEventKind::Expired => self.status = OrderStatus::Expired,
            OrderEventKind::Updated { quantity, price, trigger_price } => {
                self.quantity = *quantity;
                self.price = *price;
                self.trigger_price = *trigger_price;
            }
            OrderEventKind::PartiallyFilled(fill) | OrderEventKind::Filled(fill) => {
                let prev = self.filled_qty;
                let filled = prev.checked_add(fill.last_qty).unwrap_or(prev);
                self.avg_px = Some(match self.avg_px {
                    None => fill.last_px,
                    Some(avg) => Price::weighted(avg, prev, fill.last_px, fill.last_qty),
                });
                self.filled_qty = filled;
                self.status = if matches!(event.kind, OrderEventKind::Filled(_)) || filled >= self.quantity {
                    OrderStatus::Filled
                } else {
                    OrderStatus::PartiallyFilled
                };
            }
        }
    }
}

/// A fill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    /// Venue trade id.
    pub trade_id: Ident,
    /// Fill price.
    pub last_px: Price,
    /// Fill quantity.
    pub last_qty: Quantity,
    /// Commission paid.
    pub commission: Money,
    /// Maker or taker.
    pub liquidity_side: LiquiditySide,
}

/// What happened to an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderEventKind {
    /// Created.
    Initialized {
        /// Side.
        side: OrderSide,
        /// Type.
        order_type: OrderType,
        /// Quantity.
        quantity: Quantity,
        /// Limit price.
        price: Option<Price>,
        /// Time in force.
        time_in_force: TimeInForce,
    },
    /// Sent to the venue.
    Submitted {
        /// The account it was sent from.
        account_id: Ident,
    },
    /// Accepted by the venue.
    Accepted {
        /// The venue's id.
        venue_order_id: Ident,
    },
    /// Rejected by the venue.
    Rejected {
        /// Why (a short code; no heap text on the hot path).
        reason: Ident,
    },
    /// Canceled.
    Canceled,
    /// Expired.
    Expired,
    /// Modified.
    Updated {
        /// New quantity.
        quantity: Quantity,
        /// New price.
        price: Option<Price>,
        /// New trigger price.
        trigger_price: Option<Price>,
    },
    /// Partly filled.
    PartiallyFilled(Fill),
    /// Completely filled.
    Filled(Fill),
}

/// An event in an order's history (`orders:{id}:events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEvent {
    /// Unique within the order's log.
    pub event_id: u64,
    /// The order.
    pub client_order_id: Ident,
    /// When it happened.
    pub ts_event: UnixNanos,
    /// What happened.
    pub kind: OrderEventKind,
}

/// Long, short or flat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PositionSide {
    /// Long.
    Long,
    /// Short.
    Short,
    /// Flat.
    Flat,
}

/// A position's latest state (`positions:{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// `BTCUSDT-PERP.BINANCE-001`.
    pub id: Ident,
    /// The instrument.
    pub instrument_id: Ident,
    /// The account.
    pub account_id: Ident,
    /// The order that opened it.
    pub opening_order_id: Ident,
    /// Long, short, flat.
    pub side: PositionSide,
    /// Open quantity.
    pub quantity: Quantity,
    /// Average open price.
    pub avg_px_open: Price,
    /// Average close price.
    pub avg_px_close: Option<Price>,
    /// Realized PnL.
    pub realized_pnl: Money,
    /// Opened.
    pub ts_opened: UnixNanos,
    /// Closed.
    pub ts_closed: Option<UnixNanos>,
    /// Last change.
    pub ts_last: UnixNanos,
}

impl Position {
    /// A 1.000 BTC long at 60,000.00, for examples and tests.
    pub fn example(position_id: &str) -> Position {
        Position {
            id: id(position_id),
            instrument_id: id("BTCUSDT-PERP.BINANCE"),
            account_id: id("BINANCE-001"),
            opening_order_id: id("O-1"),
            side: PositionSide::Long,
            quantity: Quantity::new(1_000, 3),
            avg_px_open: Price::new(6_000_000, 2),
            avg_px_close: None,
            realized_pnl: Money::new(0, 2, Currency::new("USDT").unwrap_or_default()),
            ts_opened: UnixNanos(1_700_000_000_000_000_000),
            ts_closed: None,
            ts_last: UnixNanos(1_700_000_000_000_000_000),
        }
    }

    /// Applies a fill: adds to or reduces (and may flip) the position,
    /// realizing PnL on the reduced part, in exact integer arithmetic.
    pub fn apply_fill(&mut self, side: OrderSide, last_px: Price, last_qty: Quantity, ts: UnixNanos) {
        let signed = |q: Quantity, s: PositionSide| -> i128 {
            match s {
                PositionSide::Short => -(q.raw as i128),
                _ => q.raw as i128,
            }
        };
        let qty_prec = self.quantity.precision;
        let fill_raw = last_qty.rescale(qty_prec).raw as i128;
        let delta = if side == OrderSide::Buy { fill_raw } else { -fill_raw };
        let before = signed(self.quantity, self.side);
        let after = before + delta;
        let px = last_px.rescale(self.avg_px_open.precision);
        if before == 0 || (before > 0) == (delta > 0) {
            // Opening or adding: new weighted average open price.
            let total = before.abs() + delta.abs();
            if total > 0 {
                let avg =
                    (self.avg_px_open.raw as i128 * before.abs() + px.raw as i128 * delta.abs()) / total;
                self.avg_px_open = Price::new(avg as i64, self.avg_px_open.precision);
            }
            if before == 0 {
                self.ts_opened = ts;
                self.ts_closed = None;
            }
        } else {
            // Reducing (possibly flipping): realize PnL on the closed part.
            let closed = before.abs().min(delta.abs());
            let per_unit = (px.raw as i128 - self.avg_px_open.raw as i128) * before.signum();
            let pnl_scaled = per_unit * closed; // precision: px + qty
            let scale = 10i128.pow(qty_prec as u32);
            let pnl_prec = self.realized_pnl.precision as i32 - self.avg_px_open.precision as i32;
            let pnl = if pnl_prec >= 0 {
                pnl_scaled * 10i128.pow(pnl_prec as u32) / scale
            } else {
                pnl_scaled / 10i128.pow((-pnl_prec) as u32) / scale
            };
            self.realized_pnl.raw = (self.realized_pnl.raw as i128 + pnl) as i64;
            self.avg_px_close = Some(px);
            if after != 0 && after.signum() != before.signum() {
                self.avg_px_open = px;
                self.ts_opened = ts;
            }
            if after == 0 {
                self.ts_closed = Some(ts);
            }
        }
        self.side = match after.signum() {
            1 => PositionSide::Long,
            -1 => PositionSide::Short,
            _ => PositionSide::Flat,
        };
        self.quantity = Quantity::new(after.unsigned_abs() as u64, qty_prec);
        self.ts_last = ts;
    }
}

macro_rules! entity {
    ($t:ty, $coll:literal, $field:ident, $variant:ident) => {
        impl Entity for $t {
            const COLLECTION: &'static str = $coll;
            fn id(&self) -> &str {
                &self.$field
            }
            fn to_record(&self) -> Record {
                Record::$variant(self.clone())
            }
        }
    };
}

entity!(Instrument, "instruments", id, Instrument);
entity!(Order, "orders", client_order_id, Order);
entity!(Position, "positions", id, Position);

impl Entity for Account {
    const COLLECTION: &'static str = "accounts";
    fn id(&self) -> &str {
        &self.id
    }
    fn to_record(&self) -> Record {
        Record::Account(Box::new(self.clone()))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
        let mut buf = Vec::new();
        crate::codec::encode(v, crate::Encoding::MsgPack, &mut buf).unwrap();
        assert_eq!(&crate::codec::decode::<T>(&buf).unwrap(), v);
        let mut json = Vec::new();
        crate::codec::encode(v, crate::Encoding::Json, &mut json).unwrap();
        assert_eq!(&crate::codec::decode::<T>(&json).unwrap(), v);
    }

    #[test]
    fn round_trips() {
        roundtrip(&Instrument::example("BTCUSDT-PERP.BINANCE"));
        roundtrip(&Account::example("BINANCE-001"));
        roundtrip(&Order::example("O-1"));
        roundtrip(&Position::example("P-1"));
        let fill = Fill {
            trade_id: id("T-1"),
            last_px: Price::new(6_000_000, 2),
            last_qty: Quantity::new(500, 3),
            commission: Money::new(120, 2, Currency::new("USDT").unwrap()),
            liquidity_side: LiquiditySide::Taker,
        };
        roundtrip(&OrderEvent {
            event_id: 3,
            client_order_id: id("O-1"),
            ts_event: UnixNanos(5),
            kind: OrderEventKind::PartiallyFilled(fill),
        });
    }

    #[test]
    fn sizes_stay_small() {
        let sizes = [
            std::mem::size_of::<Order>(),
            std::mem::size_of::<Position>(),
            std::mem::size_of::<OrderEvent>(),
            std::mem::size_of::<Account>(),
        ];
        assert!(sizes.iter().all(|s| *s <= 1024), "{sizes:?}");
    }

    #[test]
    fn order_fills_accumulate() {
        let mut o = Order::example("O-1");
        let fill = |qty, px| Fill {
            trade_id: id("T"),
            last_px: Price::new(px, 2),
            last_qty: Quantity::new(qty, 3),
            commission: Money::new(0, 2, Currency::new("USDT").unwrap()),
            liquidity_side: LiquiditySide::Maker,
        };
        let ev = |kind| OrderEvent { event_id: 1, client_order_id: id("O-1"), ts_event: UnixNanos(9), kind };
        o.apply(&ev(OrderEventKind::PartiallyFilled(fill(400, 6_000_000))));
        assert_eq!(o.status, OrderStatus::PartiallyFilled);
        o.apply(&ev(OrderEventKind::Filled(fill(600, 6_010_000))));
        assert_eq!(o.status, OrderStatus::Filled);
        assert_eq!(o.filled_qty, Quantity::new(1_000, 3));
        assert_eq!(o.avg_px, Some(Price::new(6_006_000, 2)));
        assert_eq!(o.event_count, 2);
    }

    #[test]
    fn position_open_reduce_flip_close() {
        let mut p = Position::example("P-1"); // long 1.000 @ 60000.00
        p.apply_fill(OrderSide::Buy, Price::new(6_200_000, 2), Quantity::new(1_000, 3), UnixNanos(1));
        assert_eq!(p.avg_px_open, Price::new(6_100_000, 2));
        p.apply_fill(OrderSide::Sell, Price::new(6_200_000, 2), Quantity::new(1_000, 3), UnixNanos(2));
        assert_eq!(p.quantity, Quantity::new(1_000, 3));
        assert_eq!(p.realized_pnl.raw, 100_000); // +1000.00
        p.apply_fill(OrderSide::Sell, Price::new(6_000_000, 2), Quantity::new(2_000, 3), UnixNanos(3));
        assert_eq!(p.side, PositionSide::Short);
        assert_eq!(p.avg_px_open, Price::new(6_000_000, 2));
        assert_eq!(p.realized_pnl.raw, 100_000 - 100_000);
        p.apply_fill(OrderSide::Buy, Price::new(5_900_000, 2), Quantity::new(1_000, 3), UnixNanos(4));
        assert_eq!(p.side, PositionSide::Flat);
        assert_eq!(p.realized_pnl.raw, 100_000);
        assert_eq!(p.ts_closed, Some(UnixNanos(4)));
    }
}
