//! A hand-written MessagePack decoder for the values a load reads by the
//! million: [`Order`], [`OrderEvent`], [`Position`] and [`Instrument`].
//!
//! Profiles of `load()` showed the serde path (`rmp_serde`'s generic
//! `any_inner`, field visitors, identifier visitors) as the largest share
//! of the workers' time. This decoder reads the stored schema (docs/usage.md,
//! "Stored schema") directly with `rmp`'s markers: maps keyed by the short
//! field names or the old long ones, fixed-point values as `[raw,
//! precision]` arrays, enums as variant names.
//!
//! It is a fast path only. Whatever it does not expect (a field it does not
//! know, a repeated field, a fixed-point value written as a map, a
//! timestamp as a string, trailing bytes, a wrong type anywhere) makes it
//! give up, and [`decode`] falls back to the serde path, which then decodes
//! the value or explains why not. So a value decodes to the same result
//! either way; the unit tests below check it on old, new, odd and random
//! bytes.

use std::any::Any;

use rmp::Marker;
use serde::de::DeserializeOwned;

use crate::codec::{self, DecodeError};
use crate::config::Encoding;
use crate::ident::Ident;
use crate::model::{
    Currency, Fill, Instrument, InstrumentKind, LiquiditySide, Money, Order, OrderEvent, OrderEventKind,
    OrderSide, OrderStatus, OrderType, Position, PositionSide, Price, Quantity, ReasonText, TimeInForce,
    UnixNanos,
};

/// Decodes a stored value as [`codec::decode`] does, through the fast path
/// for the hot model types when the value is MessagePack.
pub(crate) fn decode<T: DeserializeOwned + 'static>(
    bytes: &[u8],
    preferred: Encoding,
) -> Result<T, DecodeError> {
    // A first byte at 0x80 or above is MessagePack (see `codec::decode`).
    if bytes.first().is_some_and(|&b| b >= 0x80) {
        let mut slot: Option<T> = None;
        fast(bytes, &mut slot);
        if let Some(v) = slot {
            return Ok(v);
        }
    }
    codec::decode(bytes, preferred)
}

/// Fills `slot` (an `Option<T>`) when `T` is one of the hot types and the
/// bytes are exactly what this decoder expects.
fn fast(bytes: &[u8], slot: &mut dyn Any) {
    if let Some(s) = slot.downcast_mut::<Option<OrderEvent>>() {
        *s = whole(bytes, order_event);
    } else if let Some(s) = slot.downcast_mut::<Option<Order>>() {
        *s = whole(bytes, order);
    } else if let Some(s) = slot.downcast_mut::<Option<Position>>() {
        *s = whole(bytes, position);
    } else if let Some(s) = slot.downcast_mut::<Option<Instrument>>() {
        *s = whole(bytes, instrument);
    }
}

/// `f` of the bytes, when it reads all of them.
fn whole<T>(bytes: &[u8], f: fn(&mut Rd<'_>) -> Option<T>) -> Option<T> {
    let mut rd = Rd { b: bytes };
    let v = f(&mut rd)?;
    rd.b.is_empty().then_some(v)
}

/// A cursor over MessagePack bytes; every read is `None` on anything but
/// the expected type.
struct Rd<'a> {
    b: &'a [u8],
}

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Some(head)
    }

    fn marker(&mut self) -> Option<Marker> {
        Some(Marker::from_u8(*self.take(1)?.first()?))
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        Some(self.take(n)?.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// A nil (consumed) or not (nothing consumed).
    fn nil(&mut self) -> bool {
        if self.b.first() == Some(&0xc0) {
            self.b = &self.b[1..];
            true
        } else {
            false
        }
    }

    fn map_len(&mut self) -> Option<usize> {
        match self.marker()? {
            Marker::FixMap(n) => Some(usize::from(n)),
            Marker::Map16 => usize::try_from(self.be(2)?).ok(),
            Marker::Map32 => usize::try_from(self.be(4)?).ok(),
            _ => None,
        }
    }

    fn array_len(&mut self) -> Option<usize> {
        match self.marker()? {
            Marker::FixArray(n) => Some(usize::from(n)),
            Marker::Array16 => usize::try_from(self.be(2)?).ok(),
            Marker::Array32 => usize::try_from(self.be(4)?).ok(),
            _ => None,
        }
    }

    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.key()?).ok()
    }

    /// A string's bytes, unchecked: field and variant names are compared
    /// with ASCII literals, which only valid UTF-8 can equal.
    fn key(&mut self) -> Option<&'a [u8]> {
        let n = match self.marker()? {
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 => usize::try_from(self.be(1)?).ok()?,
            Marker::Str16 => usize::try_from(self.be(2)?).ok()?,
            Marker::Str32 => usize::try_from(self.be(4)?).ok()?,
            _ => return None,
        };
        self.take(n)
    }

    /// Any MessagePack integer.
    fn int(&mut self) -> Option<i128> {
        Some(match self.marker()? {
            Marker::FixPos(n) => i128::from(n),
            Marker::FixNeg(n) => i128::from(n),
            Marker::U8 => i128::from(self.be(1)?),
            Marker::U16 => i128::from(self.be(2)?),
            Marker::U32 => i128::from(self.be(4)?),
            Marker::U64 => i128::from(self.be(8)?),
            // Two's complement of the stored width.
            Marker::I8 => i128::from(self.be(1)? as u8 as i8),
            Marker::I16 => i128::from(self.be(2)? as u16 as i16),
            Marker::I32 => i128::from(self.be(4)? as u32 as i32),
            Marker::I64 => i128::from(self.be(8)? as i64),
            _ => return None,
        })
    }

    fn int_as<T: TryFrom<i128>>(&mut self) -> Option<T> {
        T::try_from(self.int()?).ok()
    }

    fn ident(&mut self) -> Option<Ident> {
        Ident::new(self.str()?).ok()
    }

    fn opt_ident(&mut self) -> Option<Option<Ident>> {
        if self.nil() {
            return Some(None);
        }
        self.ident().map(Some)
    }

    fn nanos(&mut self) -> Option<UnixNanos> {
        self.int_as::<u64>().map(UnixNanos)
    }

    fn opt_nanos(&mut self) -> Option<Option<UnixNanos>> {
        if self.nil() {
            return Some(None);
        }
        self.nanos().map(Some)
    }

    /// `[raw, precision]`.
    fn fixed(&mut self) -> Option<(i128, u8)> {
        if self.array_len()? != 2 {
            return None;
        }
        Some((self.int()?, self.int_as::<u8>()?))
    }

    fn price(&mut self) -> Option<Price> {
        let (raw, precision) = self.fixed()?;
        Some(Price::new(i64::try_from(raw).ok()?, precision))
    }

    fn opt_price(&mut self) -> Option<Option<Price>> {
        if self.nil() {
            return Some(None);
        }
        self.price().map(Some)
    }

    fn quantity(&mut self) -> Option<Quantity> {
        let (raw, precision) = self.fixed()?;
        Some(Quantity::new(u64::try_from(raw).ok()?, precision))
    }

    /// `[raw, precision, "CCY"]`.
    fn money(&mut self) -> Option<Money> {
        if self.array_len()? != 3 {
            return None;
        }
        let raw = i64::try_from(self.int()?).ok()?;
        let precision = self.int_as::<u8>()?;
        Some(Money::new(raw, precision, self.currency()?))
    }

    fn currency(&mut self) -> Option<Currency> {
        Currency::new(self.str()?).ok()
    }
}

/// Fills a field's slot with a value read; `None` when the value is not
/// what was expected or the field was already seen (serde refuses a
/// repeated field: the fallback reports it).
fn set<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value?);
    Some(())
}

fn order_side(rd: &mut Rd<'_>) -> Option<OrderSide> {
    Some(match rd.key()? {
        b"Buy" => OrderSide::Buy,
        b"Sell" => OrderSide::Sell,
        _ => return None,
    })
}

fn order_type(rd: &mut Rd<'_>) -> Option<OrderType> {
    Some(match rd.key()? {
        b"Market" => OrderType::Market,
        b"Limit" => OrderType::Limit,
        b"StopMarket" => OrderType::StopMarket,
        b"StopLimit" => OrderType::StopLimit,
        _ => return None,
    })
}

fn time_in_force(rd: &mut Rd<'_>) -> Option<TimeInForce> {
    Some(match rd.key()? {
        b"Gtc" => TimeInForce::Gtc,
        b"Ioc" => TimeInForce::Ioc,
        b"Fok" => TimeInForce::Fok,
        b"Gtd" => TimeInForce::Gtd,
        b"Day" => TimeInForce::Day,
        _ => return None,
    })
}

fn order_status(rd: &mut Rd<'_>) -> Option<OrderStatus> {
    Some(match rd.key()? {
        b"Initialized" => OrderStatus::Initialized,
        b"Submitted" => OrderStatus::Submitted,
        b"Accepted" => OrderStatus::Accepted,
        b"Rejected" => OrderStatus::Rejected,
        b"Canceled" => OrderStatus::Canceled,
        b"Expired" => OrderStatus::Expired,
        b"PartiallyFilled" => OrderStatus::PartiallyFilled,
        b"Filled" => OrderStatus::Filled,
        _ => return None,
    })
}

fn liquidity_side(rd: &mut Rd<'_>) -> Option<LiquiditySide> {
    Some(match rd.key()? {
        b"Maker" => LiquiditySide::Maker,
        b"Taker" => LiquiditySide::Taker,
        _ => return None,
    })
}

fn position_side(rd: &mut Rd<'_>) -> Option<PositionSide> {
    Some(match rd.key()? {
        b"Long" => PositionSide::Long,
        b"Short" => PositionSide::Short,
        b"Flat" => PositionSide::Flat,
        _ => return None,
    })
}

fn instrument_kind(rd: &mut Rd<'_>) -> Option<InstrumentKind> {
    Some(match rd.key()? {
        b"Spot" => InstrumentKind::Spot,
        b"Perpetual" => InstrumentKind::Perpetual,
        b"Future" => InstrumentKind::Future,
        b"Option" => InstrumentKind::Option,
        _ => return None,
    })
}

fn order(rd: &mut Rd<'_>) -> Option<Order> {
    let n = rd.map_len()?;
    let (mut id, mut vid, mut sid, mut inst) = (None, None, None, None);
    let (mut side, mut ot, mut q, mut p, mut tp, mut tif) = (None, None, None, None, None, None);
    let (mut st, mut fq, mut ap, mut ti, mut tl, mut count) = (None, None, None, None, None, None);
    for _ in 0..n {
        match rd.key()? {
            b"id" | b"client_order_id" => set(&mut id, rd.ident())?,
            b"vid" | b"venue_order_id" => set(&mut vid, rd.opt_ident())?,
            b"sid" | b"strategy_id" => set(&mut sid, rd.ident())?,
            b"i" | b"instrument_id" => set(&mut inst, rd.ident())?,
            b"s" | b"side" => set(&mut side, order_side(rd))?,
            b"ot" | b"order_type" => set(&mut ot, order_type(rd))?,
            b"q" | b"quantity" => set(&mut q, rd.quantity())?,
            b"p" | b"price" => set(&mut p, rd.opt_price())?,
            b"tp" | b"trigger_price" => set(&mut tp, rd.opt_price())?,
            b"tif" | b"time_in_force" => set(&mut tif, time_in_force(rd))?,
            b"st" | b"status" => set(&mut st, order_status(rd))?,
            b"fq" | b"filled_qty" => set(&mut fq, rd.quantity())?,
            b"ap" | b"avg_px" => set(&mut ap, rd.opt_price())?,
            b"ti" | b"ts_init" => set(&mut ti, rd.nanos())?,
            b"tl" | b"ts_last" => set(&mut tl, rd.nanos())?,
            b"n" | b"event_count" => set(&mut count, rd.int_as::<u32>())?,
            _ => return None,
        }
    }
    Some(Order {
        client_order_id: id?,
        venue_order_id: vid.flatten(),
        strategy_id: sid?,
        instrument_id: inst?,
        side: side?,
        order_type: ot?,
        quantity: q?,
        price: p.flatten(),
        trigger_price: tp.flatten(),
        time_in_force: tif?,
        status: st?,
        filled_qty: fq?,
        avg_px: ap.flatten(),
        ts_init: ti?,
        ts_last: tl?,
        event_count: count.unwrap_or(0),
    })
}

fn order_event(rd: &mut Rd<'_>) -> Option<OrderEvent> {
    let n = rd.map_len()?;
    let (mut e, mut o, mut te, mut k) = (None, None, None, None);
    for _ in 0..n {
        match rd.key()? {
            b"e" | b"event_id" => set(&mut e, rd.int_as::<u64>())?,
            b"o" | b"client_order_id" => set(&mut o, rd.ident())?,
            b"te" | b"ts_event" => set(&mut te, rd.nanos())?,
            b"k" | b"kind" => set(&mut k, event_kind(rd))?,
            _ => return None,
        }
    }
    Some(OrderEvent { event_id: e?, client_order_id: o?, ts_event: te?, kind: k? })
}

/// `"Canceled"`, `"Expired"`, or a map of one variant name to its fields.
fn event_kind(rd: &mut Rd<'_>) -> Option<OrderEventKind> {
    match rd.b.first()? {
        0xa0..=0xbf | 0xd9..=0xdb => {
            return match rd.key()? {
                b"Canceled" => Some(OrderEventKind::Canceled),
                b"Expired" => Some(OrderEventKind::Expired),
                _ => None,
            };
        }
        _ => {}
    }
    if rd.map_len()? != 1 {
        return None;
    }
    let name = rd.key()?;
    let n = rd.map_len()?;
    Some(match name {
        b"Initialized" => {
            let (mut side, mut ot, mut q, mut p, mut tif) = (None, None, None, None, None);
            for _ in 0..n {
                match rd.key()? {
                    b"s" | b"side" => set(&mut side, order_side(rd))?,
                    b"ot" | b"order_type" => set(&mut ot, order_type(rd))?,
                    b"q" | b"quantity" => set(&mut q, rd.quantity())?,
                    b"p" | b"price" => set(&mut p, rd.opt_price())?,
                    b"tif" | b"time_in_force" => set(&mut tif, time_in_force(rd))?,
                    _ => return None,
                }
            }
            OrderEventKind::Initialized {
                side: side?,
                order_type: ot?,
                quantity: q?,
                price: p.flatten(),
                time_in_force: tif?,
            }
        }
        b"Submitted" => {
            let mut a = None;
            for _ in 0..n {
                match rd.key()? {
                    b"a" | b"account_id" => set(&mut a, rd.ident())?,
                    _ => return None,
                }
            }
            OrderEventKind::Submitted { account_id: a? }
        }
        b"Accepted" => {
            let mut vid = None;
            for _ in 0..n {
                match rd.key()? {
                    b"vid" | b"venue_order_id" => set(&mut vid, rd.ident())?,
                    _ => return None,
                }
            }
            OrderEventKind::Accepted { venue_order_id: vid? }
        }
        b"Rejected" => {
            let mut r = None;
            for _ in 0..n {
                match rd.key()? {
                    b"r" | b"reason" => set(&mut r, rd.str().map(ReasonText::new))?,
                    _ => return None,
                }
            }
            OrderEventKind::Rejected { reason: r? }
        }
        b"Updated" => {
            let (mut q, mut p, mut tp) = (None, None, None);
            for _ in 0..n {
                match rd.key()? {
                    b"q" | b"quantity" => set(&mut q, rd.quantity())?,
                    b"p" | b"price" => set(&mut p, rd.opt_price())?,
                    b"tp" | b"trigger_price" => set(&mut tp, rd.opt_price())?,
                    _ => return None,
                }
            }
            OrderEventKind::Updated { quantity: q?, price: p.flatten(), trigger_price: tp.flatten() }
        }
        b"PartiallyFilled" => OrderEventKind::PartiallyFilled(fill(rd, n)?),
        b"Filled" => OrderEventKind::Filled(fill(rd, n)?),
        _ => return None,
    })
}

/// The `n` fields of a fill (its map header already read).
fn fill(rd: &mut Rd<'_>, n: usize) -> Option<Fill> {
    let (mut tid, mut p, mut q, mut c, mut l) = (None, None, None, None, None);
    for _ in 0..n {
        match rd.key()? {
            b"tid" | b"trade_id" => set(&mut tid, rd.ident())?,
            b"p" | b"last_px" => set(&mut p, rd.price())?,
            b"q" | b"last_qty" => set(&mut q, rd.quantity())?,
            b"c" | b"commission" => set(&mut c, rd.money())?,
            b"l" | b"liquidity_side" => set(&mut l, liquidity_side(rd))?,
            _ => return None,
        }
    }
    Some(Fill { trade_id: tid?, last_px: p?, last_qty: q?, commission: c?, liquidity_side: l? })
}

fn position(rd: &mut Rd<'_>) -> Option<Position> {
    let n = rd.map_len()?;
    let (mut id, mut inst, mut acc, mut oo, mut side, mut q, mut po) =
        (None, None, None, None, None, None, None);
    let (mut pc, mut qc, mut pnl, mut to, mut tc, mut tl) = (None, None, None, None, None, None);
    for _ in 0..n {
        match rd.key()? {
            b"id" => set(&mut id, rd.ident())?,
            b"i" | b"instrument_id" => set(&mut inst, rd.ident())?,
            b"a" | b"account_id" => set(&mut acc, rd.ident())?,
            b"o" | b"opening_order_id" => set(&mut oo, rd.ident())?,
            b"s" | b"side" => set(&mut side, position_side(rd))?,
            b"q" | b"quantity" => set(&mut q, rd.quantity())?,
            b"po" | b"avg_px_open" => set(&mut po, rd.price())?,
            b"pc" | b"avg_px_close" => set(&mut pc, rd.opt_price())?,
            b"qc" | b"closed_qty" => set(&mut qc, rd.quantity())?,
            b"pnl" | b"realized_pnl" => set(&mut pnl, rd.money())?,
            b"to" | b"ts_opened" => set(&mut to, rd.nanos())?,
            b"tc" | b"ts_closed" => set(&mut tc, rd.opt_nanos())?,
            b"tl" | b"ts_last" => set(&mut tl, rd.nanos())?,
            _ => return None,
        }
    }
    Some(Position {
        id: id?,
        instrument_id: inst?,
        account_id: acc?,
        opening_order_id: oo?,
        side: side?,
        quantity: q?,
        avg_px_open: po?,
        avg_px_close: pc.flatten(),
        closed_qty: qc.unwrap_or_default(),
        realized_pnl: pnl?,
        ts_opened: to?,
        ts_closed: tc.flatten(),
        ts_last: tl?,
    })
}

fn instrument(rd: &mut Rd<'_>) -> Option<Instrument> {
    let n = rd.map_len()?;
    let (mut id, mut sym, mut venue, mut kind, mut base, mut quote, mut settle) =
        (None, None, None, None, None, None, None);
    let (mut pp, mut sp, mut pi, mut si, mut m, mut mf, mut tf, mut ti) =
        (None, None, None, None, None, None, None, None);
    for _ in 0..n {
        match rd.key()? {
            b"id" => set(&mut id, rd.ident())?,
            b"sym" | b"symbol" => set(&mut sym, rd.ident())?,
            b"v" | b"venue" => set(&mut venue, rd.ident())?,
            b"k" | b"kind" => set(&mut kind, instrument_kind(rd))?,
            b"b" | b"base" => set(&mut base, rd.currency())?,
            b"q" | b"quote" => set(&mut quote, rd.currency())?,
            b"st" | b"settlement" => set(&mut settle, rd.currency())?,
            b"pp" | b"price_precision" => set(&mut pp, rd.int_as::<u8>())?,
            b"sp" | b"size_precision" => set(&mut sp, rd.int_as::<u8>())?,
            b"pi" | b"price_increment" => set(&mut pi, rd.price())?,
            b"si" | b"size_increment" => set(&mut si, rd.quantity())?,
            b"m" | b"multiplier" => set(&mut m, rd.quantity())?,
            b"mf" | b"maker_fee_bps" => set(&mut mf, rd.int_as::<i32>())?,
            b"tf" | b"taker_fee_bps" => set(&mut tf, rd.int_as::<i32>())?,
            b"ti" | b"ts_init" => set(&mut ti, rd.nanos())?,
            _ => return None,
        }
    }
    Some(Instrument {
        id: id?,
        symbol: sym?,
        venue: venue?,
        kind: kind?,
        base: base?,
        quote: quote?,
        settlement: settle?,
        price_precision: pp?,
        size_precision: sp?,
        price_increment: pi?,
        size_increment: si?,
        multiplier: m?,
        maker_fee_bps: mf.unwrap_or(0),
        taker_fee_bps: tf.unwrap_or(0),
        ts_init: ti?,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value as Json;

    use super::*;

    fn id(s: &str) -> Ident {
        Ident::new(s).unwrap()
    }

    fn msgpack<T: serde::Serialize>(v: &T) -> Vec<u8> {
        let mut b = Vec::new();
        codec::encode(v, Encoding::MsgPack, &mut b).unwrap();
        b
    }

    fn serde_path<T: DeserializeOwned>(b: &[u8]) -> Result<T, DecodeError> {
        codec::decode(b, Encoding::MsgPack)
    }

    fn fill(n: u64) -> Fill {
        Fill {
            trade_id: id(&format!("T-{n}")),
            last_px: Price::new(-6_000_001, 2),
            last_qty: Quantity::new(u64::MAX, 3),
            commission: Money::new(i64::MIN, 8, Currency::new("USDT").unwrap()),
            liquidity_side: LiquiditySide::Taker,
        }
    }

    fn orders() -> Vec<Order> {
        let mut full = Order::example("O-FULL");
        full.venue_order_id = Some(id("V-1"));
        full.trigger_price = Some(Price::new(1, 0));
        full.avg_px = Some(Price::new(i64::MAX, 255));
        full.status = OrderStatus::PartiallyFilled;
        full.event_count = u32::MAX;
        full.ts_last = UnixNanos(u64::MAX);
        let mut market = Order::example(&"M".repeat(Ident::MAX_LEN));
        market.price = None;
        market.order_type = OrderType::Market;
        market.side = OrderSide::Sell;
        market.time_in_force = TimeInForce::Ioc;
        vec![Order::example("O-1"), full, market]
    }

    fn events() -> Vec<OrderEvent> {
        let kinds = vec![
            OrderEventKind::Initialized {
                side: OrderSide::Buy,
                order_type: OrderType::StopLimit,
                quantity: Quantity::new(1_000, 3),
                price: Some(Price::new(6_000_000, 2)),
                time_in_force: TimeInForce::Gtd,
            },
            OrderEventKind::Initialized {
                side: OrderSide::Sell,
                order_type: OrderType::Market,
                quantity: Quantity::new(1, 0),
                price: None,
                time_in_force: TimeInForce::Day,
            },
            OrderEventKind::Submitted { account_id: id("BINANCE-001") },
            OrderEventKind::Accepted { venue_order_id: id("V-9") },
            OrderEventKind::Rejected { reason: ReasonText::new("insufficient margin: ∑ too small") },
            OrderEventKind::Canceled,
            OrderEventKind::Expired,
            OrderEventKind::Updated {
                quantity: Quantity::new(5, 1),
                price: None,
                trigger_price: Some(Price::new(7, 0)),
            },
            OrderEventKind::PartiallyFilled(fill(1)),
            OrderEventKind::Filled(fill(2)),
        ];
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| OrderEvent {
                event_id: if i == 0 { u64::MAX } else { i as u64 },
                client_order_id: id("O-1"),
                ts_event: UnixNanos(1_700_000_000_000_000_000 + i as u64),
                kind,
            })
            .collect()
    }

    fn positions() -> Vec<Position> {
        let mut closed = Position::example("P-2");
        closed.side = PositionSide::Flat;
        closed.avg_px_close = Some(Price::new(6_100_000, 2));
        closed.closed_qty = Quantity::new(1_000, 3);
        closed.ts_closed = Some(UnixNanos(1_700_000_000_000_000_001));
        closed.realized_pnl = Money::new(-5, 2, Currency::USD);
        vec![Position::example("P-1"), closed]
    }

    fn instruments() -> Vec<Instrument> {
        let mut spot = Instrument::example("ETHUSDC.SIM");
        spot.kind = InstrumentKind::Spot;
        spot.maker_fee_bps = -1;
        spot.taker_fee_bps = i32::MAX;
        vec![Instrument::example("BTCUSDT-PERP.BINANCE"), spot]
    }

    /// The value's MessagePack with the keys of each map renamed by
    /// `rename(path, key)` (the path names the enclosing keys).
    fn renamed<T: serde::Serialize>(
        v: &T,
        rename: &dyn Fn(&[String], &str) -> Option<&'static str>,
    ) -> Vec<u8> {
        fn walk(
            v: Json,
            path: &mut Vec<String>,
            rename: &dyn Fn(&[String], &str) -> Option<&'static str>,
        ) -> Json {
            match v {
                Json::Object(m) => Json::Object(
                    m.into_iter()
                        .map(|(k, v)| {
                            let name = rename(path, &k).map_or(k.clone(), str::to_string);
                            path.push(k);
                            let v = walk(v, path, rename);
                            path.pop();
                            (name, v)
                        })
                        .collect(),
                ),
                other => other,
            }
        }
        let mut json = Vec::new();
        codec::encode(v, Encoding::Json, &mut json).unwrap();
        let tree = walk(serde_json::from_slice(&json).unwrap(), &mut Vec::new(), rename);
        rmp_serde::to_vec(&tree).unwrap()
    }

    const ORDER: &[(&str, &str)] = &[
        ("id", "client_order_id"),
        ("vid", "venue_order_id"),
        ("sid", "strategy_id"),
        ("i", "instrument_id"),
        ("s", "side"),
        ("ot", "order_type"),
        ("q", "quantity"),
        ("p", "price"),
        ("tp", "trigger_price"),
        ("tif", "time_in_force"),
        ("st", "status"),
        ("fq", "filled_qty"),
        ("ap", "avg_px"),
        ("ti", "ts_init"),
        ("tl", "ts_last"),
        ("n", "event_count"),
    ];
    const EVENT: &[(&str, &str)] =
        &[("e", "event_id"), ("o", "client_order_id"), ("te", "ts_event"), ("k", "kind")];
    const KIND: &[(&str, &str)] = &[
        ("s", "side"),
        ("ot", "order_type"),
        ("q", "quantity"),
        ("p", "price"),
        ("tp", "trigger_price"),
        ("tif", "time_in_force"),
        ("a", "account_id"),
        ("vid", "venue_order_id"),
        ("r", "reason"),
    ];
    const FILL: &[(&str, &str)] = &[
        ("tid", "trade_id"),
        ("p", "last_px"),
        ("q", "last_qty"),
        ("c", "commission"),
        ("l", "liquidity_side"),
    ];
    const POSITION: &[(&str, &str)] = &[
        ("i", "instrument_id"),
        ("a", "account_id"),
        ("o", "opening_order_id"),
        ("s", "side"),
        ("q", "quantity"),
        ("po", "avg_px_open"),
        ("pc", "avg_px_close"),
        ("qc", "closed_qty"),
        ("pnl", "realized_pnl"),
        ("to", "ts_opened"),
        ("tc", "ts_closed"),
        ("tl", "ts_last"),
    ];
    const INSTRUMENT: &[(&str, &str)] = &[
        ("sym", "symbol"),
        ("v", "venue"),
        ("k", "kind"),
        ("b", "base"),
        ("q", "quote"),
        ("st", "settlement"),
        ("pp", "price_precision"),
        ("sp", "size_precision"),
        ("pi", "price_increment"),
        ("si", "size_increment"),
        ("m", "multiplier"),
        ("mf", "maker_fee_bps"),
        ("tf", "taker_fee_bps"),
        ("ti", "ts_init"),
    ];

    fn long(table: &[(&str, &'static str)], key: &str) -> Option<&'static str> {
        table.iter().find(|(short, _)| *short == key).map(|(_, l)| *l)
    }

    /// Renames by level: the type's own fields at the top, an event kind's
    /// fields two levels down (`k` / variant / field).
    fn long_names(
        top: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&[String], &str) -> Option<&'static str> {
        move |path: &[String], key: &str| match path.len() {
            0 => long(top, key),
            2 if path[1] == "PartiallyFilled" || path[1] == "Filled" => long(FILL, key),
            2 => long(KIND, key),
            _ => None,
        }
    }

    /// Both paths agree on `bytes`, and the fast one was taken.
    fn check<T: DeserializeOwned + PartialEq + std::fmt::Debug + 'static>(
        bytes: &[u8],
        expected: &T,
        f: fn(&mut Rd<'_>) -> Option<T>,
    ) {
        let fast = whole(bytes, f);
        assert_eq!(fast.as_ref(), Some(expected), "fast path on {bytes:x?}");
        assert_eq!(&serde_path::<T>(bytes).unwrap(), expected, "serde path");
        assert_eq!(&decode::<T>(bytes, Encoding::MsgPack).unwrap(), expected);
    }

    #[test]
    fn current_and_long_names_decode_as_the_serde_path_does() {
        for v in orders() {
            check(&msgpack(&v), &v, order);
            check(&renamed(&v, &long_names(ORDER)), &v, order);
        }
        for v in events() {
            check(&msgpack(&v), &v, order_event);
            check(&renamed(&v, &long_names(EVENT)), &v, order_event);
        }
        for v in positions() {
            check(&msgpack(&v), &v, position);
            check(&renamed(&v, &long_names(POSITION)), &v, position);
        }
        for v in instruments() {
            check(&msgpack(&v), &v, instrument);
            check(&renamed(&v, &long_names(INSTRUMENT)), &v, instrument);
        }
    }

    #[test]
    fn the_long_names_really_are_long() {
        let b = renamed(&events()[8], &long_names(EVENT));
        let text = String::from_utf8_lossy(&b);
        for name in ["event_id", "kind", "trade_id", "last_px", "commission"] {
            assert!(text.contains(name), "{name} in {text}");
        }
    }

    /// Values the fast path gives up on still decode (or fail) as before.
    #[test]
    fn unexpected_shapes_fall_back_to_serde() {
        let o = Order::example("O-1");
        let mut tree: Json = serde_json::from_slice(&{
            let mut b = Vec::new();
            codec::encode(&o, Encoding::Json, &mut b).unwrap();
            b
        })
        .unwrap();
        // Fixed-point as the old map, an unknown field, a nil option.
        tree["q"] = serde_json::json!({"raw": 1000, "precision": 3});
        tree["extra"] = serde_json::json!([1, 2, 3]);
        tree["vid"] = Json::Null;
        let b = rmp_serde::to_vec(&tree).unwrap();
        assert_eq!(whole(&b, order), None, "the fast path gives up");
        assert_eq!(decode::<Order>(&b, Encoding::MsgPack).unwrap(), o);

        // A repeated field (both names of one): serde refuses it, and so
        // does the fast path.
        let mut b = msgpack(&o);
        let fields = b[0] & 0x0f;
        b[0] = 0x80 | (fields + 1);
        b.extend(rmp_serde::to_vec(&"client_order_id").unwrap());
        b.extend(rmp_serde::to_vec(&"O-2").unwrap());
        assert_eq!(whole(&b, order), None);
        assert!(serde_path::<Order>(&b).is_err());
        assert!(decode::<Order>(&b, Encoding::MsgPack).is_err());

        // Trailing bytes, a truncated value, a wrong type.
        let mut b = msgpack(&o);
        b.push(0xc0);
        assert_eq!(whole(&b, order), None);
        assert!(decode::<Order>(&b, Encoding::MsgPack).is_err());
        let b = msgpack(&o);
        for cut in 0..b.len() {
            assert_eq!(whole(&b[..cut], order), None);
            assert!(decode::<Order>(&b[..cut], Encoding::MsgPack).is_err());
        }
        assert!(decode::<Position>(&msgpack(&o), Encoding::MsgPack).is_err());
        // JSON goes to the serde path.
        let mut j = Vec::new();
        codec::encode(&o, Encoding::Json, &mut j).unwrap();
        assert_eq!(decode::<Order>(&j, Encoding::MsgPack).unwrap(), o);
    }

    /// Types without a fast path take the serde path.
    #[test]
    fn other_types_use_serde() {
        let a = crate::model::Account::example("A-1");
        assert_eq!(decode::<crate::model::Account>(&msgpack(&a), Encoding::MsgPack).unwrap(), a);
        assert_eq!(decode::<u64>(&msgpack(&300u64), Encoding::MsgPack).unwrap(), 300);
    }

    /// Whatever the fast path returns, the serde path returns too.
    fn agree<T: DeserializeOwned + PartialEq + std::fmt::Debug>(b: &[u8], f: fn(&mut Rd<'_>) -> Option<T>) {
        if let Some(v) = whole(b, f) {
            assert_eq!(serde_path::<T>(b).ok(), Some(v), "on {b:x?}");
        }
    }

    fn samples() -> Vec<Vec<u8>> {
        let mut all: Vec<Vec<u8>> = Vec::new();
        all.extend(orders().iter().map(msgpack));
        all.extend(events().iter().map(msgpack));
        all.extend(positions().iter().map(msgpack));
        all.extend(instruments().iter().map(msgpack));
        all
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            agree(&b, order);
            agree(&b, order_event);
            agree(&b, position);
            agree(&b, instrument);
            let _ = decode::<Order>(&b, Encoding::MsgPack);
            let _ = decode::<OrderEvent>(&b, Encoding::Json);
        }

        #[test]
        fn damaged_values_decode_as_the_serde_path_does(
            which in 0usize..17,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut b = samples()[which].clone();
            for (at, byte) in edits {
                let i = at.index(b.len());
                b[i] = byte;
            }
            agree(&b, order);
            agree(&b, order_event);
            agree(&b, position);
            agree(&b, instrument);
        }
    }
}
