//! Orders, their events, and the order state machine.

use serde::{Deserialize, Serialize};

use super::value::div_round;
use super::{example_id, Money, Price, Quantity, ReasonText, UnixNanos};
use crate::ident::Ident;

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
    /// Accepted by the venue (working).
    Accepted,
    /// Rejected by the venue.
    Rejected,
    /// Canceled.
    Canceled,
    /// Expired.
    Expired,
    /// Partly filled (working).
    PartiallyFilled,
    /// Completely filled.
    Filled,
}

impl OrderStatus {
    /// Whether the order can still change at the venue: submitted,
    /// accepted or partially filled.
    pub fn is_open(self) -> bool {
        matches!(self, OrderStatus::Submitted | OrderStatus::Accepted | OrderStatus::PartiallyFilled)
    }

    /// Whether the order is done: rejected, canceled, expired or filled.
    pub fn is_closed(self) -> bool {
        !self.is_open() && self != OrderStatus::Initialized
    }
}

/// Maker or taker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LiquiditySide {
    /// Added liquidity.
    Maker,
    /// Took liquidity.
    Taker,
}

/// Why [`Order::try_apply`] refused an event. The order is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// The event belongs to another order.
    #[error("event for order {event_order} applied to order {order}")]
    WrongOrder {
        /// The order's client id.
        order: Ident,
        /// The event's client order id.
        event_order: Ident,
    },
    /// The event is not allowed in the order's status.
    #[error("{event} is not allowed for an order that is {status:?}")]
    InvalidTransition {
        /// The order's status.
        status: OrderStatus,
        /// The event kind (`"Accepted"`, …).
        event: &'static str,
    },
    /// A fill would take the filled quantity above the order quantity, or
    /// an update would put the quantity below what is filled.
    #[error("filled quantity {filled} would exceed order quantity {quantity}")]
    Overfill {
        /// Filled quantity after the event.
        filled: Quantity,
        /// The order quantity.
        quantity: Quantity,
    },
    /// The quantities or prices do not fit the fixed-point types.
    #[error("arithmetic overflow")]
    Overflow,
}

/// An order's latest state (`orders:{id}`); its history is in
/// `orders:{id}:events`. Change it with [`Order::apply`].
///
/// # Examples
///
/// ```
/// use tradecache::model::*;
/// use tradecache::Ident;
///
/// let mut order = Order::example("O-1"); // buy 1.000 @ 60000.00
/// let id = order.client_order_id.clone();
/// let ev = |event_id, kind| OrderEvent { event_id, client_order_id: id.clone(), ts_event: UnixNanos(event_id), kind };
/// let fill = |qty, px| Fill {
///     trade_id: Ident::new("T-1").unwrap(),
///     last_px: Price::new(px, 2),
///     last_qty: Quantity::new(qty, 3),
///     commission: Money::new(0, 2, Currency::USDT),
///     liquidity_side: LiquiditySide::Maker,
/// };
/// order.apply(&ev(1, OrderEventKind::Submitted { account_id: Ident::new("BINANCE-001").unwrap() }));
/// order.apply(&ev(2, OrderEventKind::Accepted { venue_order_id: Ident::new("V-9").unwrap() }));
/// order.apply(&ev(3, OrderEventKind::PartiallyFilled(fill(250, 6_000_000))));
/// assert_eq!(order.status, OrderStatus::PartiallyFilled);
/// order.apply(&ev(4, OrderEventKind::Filled(fill(750, 5_999_000))));
/// assert_eq!(order.status, OrderStatus::Filled);
/// assert_eq!(order.avg_px, Some(Price::new(5_999_250, 2)));
/// assert_eq!(order.event_count, 4);
/// // A closed order refuses further changes.
/// assert!(order.try_apply(&ev(5, OrderEventKind::Canceled)).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Client order id.
    #[serde(rename = "id", alias = "client_order_id")]
    pub client_order_id: Ident,
    /// Venue order id, once accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "vid", alias = "venue_order_id")]
    pub venue_order_id: Option<Ident>,
    /// The strategy that owns it.
    #[serde(rename = "sid", alias = "strategy_id")]
    pub strategy_id: Ident,
    /// The instrument.
    #[serde(rename = "i", alias = "instrument_id")]
    pub instrument_id: Ident,
    /// Buy or sell.
    #[serde(rename = "s", alias = "side")]
    pub side: OrderSide,
    /// Order type.
    #[serde(rename = "ot", alias = "order_type")]
    pub order_type: OrderType,
    /// Quantity ordered.
    #[serde(rename = "q", alias = "quantity")]
    pub quantity: Quantity,
    /// Limit price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "p", alias = "price")]
    pub price: Option<Price>,
    /// Trigger price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "tp", alias = "trigger_price")]
    pub trigger_price: Option<Price>,
    /// Time in force.
    #[serde(rename = "tif", alias = "time_in_force")]
    pub time_in_force: TimeInForce,
    /// Status.
    #[serde(rename = "st", alias = "status")]
    pub status: OrderStatus,
    /// Quantity filled so far.
    #[serde(rename = "fq", alias = "filled_qty")]
    pub filled_qty: Quantity,
    /// Average fill price (quantity-weighted, rounded half away from zero
    /// at the finest precision of the fill prices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "ap", alias = "avg_px")]
    pub avg_px: Option<Price>,
    /// Created.
    #[serde(rename = "ti", alias = "ts_init")]
    pub ts_init: UnixNanos,
    /// Time of the last event applied.
    #[serde(rename = "tl", alias = "ts_last")]
    pub ts_last: UnixNanos,
    /// Number of events applied (equals the length of its event log when
    /// every event was applied once).
    #[serde(default)]
    #[serde(rename = "n", alias = "event_count")]
    pub event_count: u32,
}

impl Order {
    /// A GTC limit buy of 1.000 BTCUSDT-PERP.BINANCE at 60,000.00, not yet
    /// submitted, for examples, tests and benches. An invalid id is replaced
    /// by `invalid-id`.
    pub fn example(client_order_id: &str) -> Order {
        Order {
            client_order_id: example_id(client_order_id),
            venue_order_id: None,
            strategy_id: example_id("EMA-CROSS-001"),
            instrument_id: example_id("BTCUSDT-PERP.BINANCE"),
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

    /// The quantity still to fill (zero once closed or overfilled).
    pub fn leaves_qty(&self) -> Quantity {
        let open = self.quantity.checked_sub(self.filled_qty).filter(|_| !self.status.is_closed());
        open.unwrap_or(Quantity::zero(self.quantity.precision.max(self.filled_qty.precision)))
    }

    /// Applies an event strictly: checks that it belongs to this order and
    /// that the transition is allowed, then updates status, quantities,
    /// average price, venue id, `ts_last` and `event_count`.
    ///
    /// Transitions: `Initialized` only as the first event; `Submitted` from
    /// initialized; `Accepted` from initialized or submitted (and, as a late
    /// acknowledgement, from partially filled or filled: the venue id is
    /// recorded, the status kept); `Rejected` from initialized or submitted;
    /// `Canceled` from initialized or open; `Expired` and `Updated` from
    /// open (`Updated` also before submission); fills from open and, as a
    /// fill racing a cancel, from canceled or expired. A fill completing the
    /// quantity (or a `Filled` event) makes the order filled.
    ///
    /// # Errors
    ///
    /// [`OrderError`] says why; the order is then unchanged.
    pub fn try_apply(&mut self, event: &OrderEvent) -> Result<(), OrderError> {
        self.apply_inner(event, true)
    }

    /// Applies an event leniently, as a recovering engine replaying a
    /// venue's history must: an event the state machine refuses
    /// ([`Order::try_apply`]) is still counted (`event_count`, `ts_last`)
    /// but changes nothing else, except that a fill is always accounted (the
    /// venue's executions win over the order's quantity). Events for another
    /// order are ignored.
    pub fn apply(&mut self, event: &OrderEvent) {
        if let Err(e) = self.apply_inner(event, false) {
            if matches!(e, OrderError::WrongOrder { .. }) {
                log::warn!("order {}: {e}; ignored", self.client_order_id);
                return;
            }
            log::debug!("order {}: {e}; event {} counted only", self.client_order_id, event.event_id);
            self.ts_last = event.ts_event;
            self.event_count = self.event_count.saturating_add(1);
        }
    }

    fn apply_inner(&mut self, event: &OrderEvent, strict: bool) -> Result<(), OrderError> {
        use OrderStatus as S;
        if event.client_order_id != self.client_order_id {
            return Err(OrderError::WrongOrder {
                order: self.client_order_id.clone(),
                event_order: event.client_order_id.clone(),
            });
        }
        let status = self.status;
        let refuse = || OrderError::InvalidTransition { status, event: event.kind.name() };
        // The status an allowed transition leads `to`.
        let to = |allowed: bool, to| if allowed { Ok(to) } else { Err(refuse()) };
        // Work on a copy of the mutable scalars, commit at the end.
        let mut next = self.status;
        match &event.kind {
            OrderEventKind::Initialized { side, order_type, quantity, price, time_in_force } => {
                if status != S::Initialized || self.event_count != 0 {
                    return Err(refuse());
                }
                self.side = *side;
                self.order_type = *order_type;
                self.quantity = *quantity;
                self.price = *price;
                self.time_in_force = *time_in_force;
            }
            OrderEventKind::Submitted { .. } => next = to(status == S::Initialized, S::Submitted)?,
            OrderEventKind::Accepted { venue_order_id } => {
                match status {
                    S::Initialized | S::Submitted => next = S::Accepted,
                    S::PartiallyFilled | S::Filled => {}
                    _ => return Err(refuse()),
                }
                self.venue_order_id = Some(venue_order_id.clone());
            }
            OrderEventKind::Rejected { .. } => {
                next = to(matches!(status, S::Initialized | S::Submitted), S::Rejected)?;
            }
            OrderEventKind::Canceled => next = to(status == S::Initialized || status.is_open(), S::Canceled)?,
            OrderEventKind::Expired => next = to(status.is_open(), S::Expired)?,
            OrderEventKind::Updated { quantity, price, trigger_price } => {
                next = to(status == S::Initialized || status.is_open(), status)?;
                if quantity.cmp_value(&self.filled_qty).is_lt() {
                    return Err(OrderError::Overfill { filled: self.filled_qty, quantity: *quantity });
                }
                if !self.filled_qty.is_zero() && self.filled_qty.cmp_value(quantity).is_ge() {
                    next = S::Filled;
                }
                self.quantity = *quantity;
                self.price = *price;
                self.trigger_price = *trigger_price;
            }
            OrderEventKind::PartiallyFilled(fill) | OrderEventKind::Filled(fill) => {
                let fill_allowed = status.is_open() || matches!(status, S::Canceled | S::Expired);
                if strict && !fill_allowed {
                    return Err(refuse());
                }
                let filled = self.filled_qty.checked_add(fill.last_qty).ok_or(OrderError::Overflow)?;
                if strict && filled.cmp_value(&self.quantity).is_gt() {
                    return Err(OrderError::Overfill { filled, quantity: self.quantity });
                }
                let avg = match self.avg_px {
                    None => fill.last_px,
                    Some(avg) => weighted_avg(avg, self.filled_qty, fill.last_px, fill.last_qty)
                        .ok_or(OrderError::Overflow)?,
                };
                let complete = filled.cmp_value(&self.quantity).is_ge()
                    || matches!(event.kind, OrderEventKind::Filled(_));
                next = match status {
                    _ if complete => S::Filled,
                    S::Canceled | S::Expired => status,
                    _ => S::PartiallyFilled,
                };
                self.filled_qty = filled;
                self.avg_px = Some(avg);
            }
        }
        self.status = next;
        self.ts_last = event.ts_event;
        self.event_count = self.event_count.saturating_add(1);
        Ok(())
    }
}

/// `(a·qa + b·qb) / (qa + qb)` at the finer price precision, rounded half
/// away from zero; `None` on overflow. Zero total weight gives `b`.
pub(crate) fn weighted_avg(a: Price, qa: Quantity, b: Price, qb: Quantity) -> Option<Price> {
    let p = a.precision.max(b.precision);
    let qp = qa.precision.max(qb.precision);
    let (ar, br) = (i128::from(a.rescale(p)?.raw), i128::from(b.rescale(p)?.raw));
    let (wa, wb) = (i128::from(qa.rescale(qp)?.raw), i128::from(qb.rescale(qp)?.raw));
    let total = wa + wb;
    if total == 0 {
        return b.rescale(p);
    }
    let num = ar.checked_mul(wa)?.checked_add(br.checked_mul(wb)?)?;
    Some(Price::new(i64::try_from(div_round(num, total)).ok()?, p))
}

/// A fill (execution) of part or all of an order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fill {
    /// Venue trade id.
    #[serde(rename = "tid", alias = "trade_id")]
    pub trade_id: Ident,
    /// Fill price.
    #[serde(rename = "p", alias = "last_px")]
    pub last_px: Price,
    /// Fill quantity.
    #[serde(rename = "q", alias = "last_qty")]
    pub last_qty: Quantity,
    /// Commission paid (negative is a rebate).
    #[serde(rename = "c", alias = "commission")]
    pub commission: Money,
    /// Maker or taker.
    #[serde(rename = "l", alias = "liquidity_side")]
    pub liquidity_side: LiquiditySide,
}

/// What happened to an order. Serialized as an externally tagged enum
/// (`{"Accepted": {"venue_order_id": "V-1"}}`, `"Canceled"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderEventKind {
    /// Created.
    Initialized {
        /// Side.
        #[serde(rename = "s", alias = "side")]
        side: OrderSide,
        /// Type.
        #[serde(rename = "ot", alias = "order_type")]
        order_type: OrderType,
        /// Quantity.
        #[serde(rename = "q", alias = "quantity")]
        quantity: Quantity,
        /// Limit price.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[serde(rename = "p", alias = "price")]
        price: Option<Price>,
        /// Time in force.
        #[serde(rename = "tif", alias = "time_in_force")]
        time_in_force: TimeInForce,
    },
    /// Sent to the venue.
    Submitted {
        /// The account it was sent from.
        #[serde(rename = "a", alias = "account_id")]
        account_id: Ident,
    },
    /// Accepted by the venue.
    Accepted {
        /// The venue's id.
        #[serde(rename = "vid", alias = "venue_order_id")]
        venue_order_id: Ident,
    },
    /// Rejected by the venue.
    Rejected {
        /// Why, cut to 64 bytes (inline, no heap).
        #[serde(rename = "r", alias = "reason")]
        reason: ReasonText,
    },
    /// Canceled.
    Canceled,
    /// Expired.
    Expired,
    /// Modified.
    Updated {
        /// New quantity.
        #[serde(rename = "q", alias = "quantity")]
        quantity: Quantity,
        /// New price.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[serde(rename = "p", alias = "price")]
        price: Option<Price>,
        /// New trigger price.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[serde(rename = "tp", alias = "trigger_price")]
        trigger_price: Option<Price>,
    },
    /// Partly filled.
    PartiallyFilled(Fill),
    /// Completely filled.
    Filled(Fill),
}

impl OrderEventKind {
    /// The variant's name, `"Accepted"`.
    pub fn name(&self) -> &'static str {
        match self {
            OrderEventKind::Initialized { .. } => "Initialized",
            OrderEventKind::Submitted { .. } => "Submitted",
            OrderEventKind::Accepted { .. } => "Accepted",
            OrderEventKind::Rejected { .. } => "Rejected",
            OrderEventKind::Canceled => "Canceled",
            OrderEventKind::Expired => "Expired",
            OrderEventKind::Updated { .. } => "Updated",
            OrderEventKind::PartiallyFilled(_) => "PartiallyFilled",
            OrderEventKind::Filled(_) => "Filled",
        }
    }
}

/// An event in an order's history (`orders:{id}:events`).
///
/// # Examples
///
/// ```
/// use tradecache::model::{OrderEvent, OrderEventKind, ReasonText, UnixNanos};
/// use tradecache::Ident;
///
/// let ev = OrderEvent {
///     event_id: 2,
///     client_order_id: Ident::new("O-1").unwrap(),
///     ts_event: UnixNanos(1),
///     kind: OrderEventKind::Rejected { reason: ReasonText::new("post-only would cross") },
/// };
/// assert_eq!(ev.kind.name(), "Rejected");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrderEvent {
    /// Unique within the order's log.
    #[serde(rename = "e", alias = "event_id")]
    pub event_id: u64,
    /// The order.
    #[serde(rename = "o", alias = "client_order_id")]
    pub client_order_id: Ident,
    /// When it happened.
    #[serde(rename = "te", alias = "ts_event")]
    pub ts_event: UnixNanos,
    /// What happened.
    #[serde(rename = "k", alias = "kind")]
    pub kind: OrderEventKind,
}
