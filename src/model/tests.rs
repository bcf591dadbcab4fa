use serde::de::DeserializeOwned;
use serde::Serialize;

use super::*;

fn id(s: &str) -> Ident {
    Ident::new(s).unwrap()
}

fn msgpack<T: Serialize>(v: &T) -> Vec<u8> {
    let mut buf = Vec::new();
    v.serialize(&mut rmp_serde::Serializer::new(&mut buf).with_struct_map()).unwrap();
    buf
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
    let back: T = rmp_serde::from_slice(&msgpack(v)).unwrap();
    assert_eq!(&back, v, "msgpack");
    let json = serde_json::to_string(v).unwrap();
    assert_eq!(&serde_json::from_str::<T>(&json).unwrap(), v, "json: {json}");
    crate::codec::set_timestamps_as_iso8601(true);
    let iso = serde_json::to_string(v);
    crate::codec::set_timestamps_as_iso8601(false);
    assert_eq!(&serde_json::from_str::<T>(&iso.unwrap()).unwrap(), v, "json with ISO 8601 timestamps");
}

fn fill(trade: &str, qty: u64, px: i64) -> Fill {
    Fill {
        trade_id: id(trade),
        last_px: Price::new(px, 2),
        last_qty: Quantity::new(qty, 3),
        commission: Money::new(12, 2, Currency::USDT),
        liquidity_side: LiquiditySide::Maker,
    }
}

fn ev(event_id: u64, kind: OrderEventKind) -> OrderEvent {
    OrderEvent { event_id, client_order_id: id("O-1"), ts_event: UnixNanos(event_id * 10), kind }
}

fn all_event_kinds() -> Vec<OrderEventKind> {
    vec![
        OrderEventKind::Initialized {
            side: OrderSide::Sell,
            order_type: OrderType::StopLimit,
            quantity: Quantity::new(2_500, 3),
            price: Some(Price::new(-150, 2)),
            time_in_force: TimeInForce::Gtd,
        },
        OrderEventKind::Submitted { account_id: id("BINANCE-001") },
        OrderEventKind::Accepted { venue_order_id: id("V-1") },
        OrderEventKind::Rejected { reason: ReasonText::new("insufficient margin: need 1,000.00 USDT") },
        OrderEventKind::Canceled,
        OrderEventKind::Expired,
        OrderEventKind::Updated {
            quantity: Quantity::new(3, 0),
            price: None,
            trigger_price: Some(Price::new(1, 0)),
        },
        OrderEventKind::PartiallyFilled(fill("T-1", 500, 6_000_000)),
        OrderEventKind::Filled(fill("T-2", 500, 6_000_100)),
    ]
}

#[test]
fn round_trips() {
    round_trip(&Instrument::example("BTCUSDT-PERP.BINANCE"));
    let mut acc = Account::example("BINANCE-001");
    round_trip(&acc);
    acc.balances[2] = AccountBalance::new(Money::new(5, 1, Currency::BTC), Money::new(1, 1, Currency::BTC));
    acc.margins[0] = Some(MarginBalance {
        instrument_id: Some(id("BTCUSDT-PERP.BINANCE")),
        initial: Money::new(100, 2, Currency::USDT),
        maintenance: Money::new(50, 2, Currency::USDT),
    });
    round_trip(&acc); // a hole in the slots survives
    round_trip(&AccountEvent::snapshot_of(&acc, 7, UnixNanos(3)));
    round_trip(&Order::example("O-1"));
    let mut p = Position::example("P-1");
    round_trip(&p);
    p.apply_fill(OrderSide::Sell, Price::new(6_100_000, 2), Quantity::new(1_000, 3), UnixNanos(9));
    round_trip(&p);
    for (i, kind) in all_event_kinds().into_iter().enumerate() {
        round_trip(&ev(i as u64, kind));
    }
    // Struct maps: field names are in the msgpack bytes.
    let bytes = msgpack(&Position::example("P-1"));
    assert!(bytes.windows(11).any(|w| w == b"avg_px_open"));
}

#[test]
fn wire_format() {
    let json = serde_json::to_value(Position::example("P-1")).unwrap();
    assert_eq!(json["quantity"], serde_json::json!([1000, 3]));
    assert_eq!(json["realized_pnl"], serde_json::json!([0, 2, "USDT"]));
    // Absent options are left out, and read back as `None`.
    assert!(json.get("avg_px_close").is_none() && json.get("ts_closed").is_none());
    assert_eq!(json["ts_opened"], serde_json::json!(1_700_000_000_000_000_000u64));
    let acc = serde_json::to_value(Account::example("A-1")).unwrap();
    assert_eq!(acc["balances"].as_array().unwrap().len(), 1);
    assert_eq!(acc["margins"], serde_json::json!([]));
    let rej =
        serde_json::to_value(ev(1, OrderEventKind::Rejected { reason: ReasonText::new("no") })).unwrap();
    assert_eq!(rej["kind"], serde_json::json!({"Rejected": {"reason": "no"}}));
    crate::codec::set_timestamps_as_iso8601(true);
    let iso = serde_json::to_value(Position::example("P-1")).unwrap();
    crate::codec::set_timestamps_as_iso8601(false);
    assert_eq!(iso["ts_opened"], "2023-11-14T22:13:20.000000000Z");
    assert_eq!(iso["ts_closed"], serde_json::Value::Null);
}

#[test]
fn account_slots_decode() {
    let mut json = serde_json::to_value(Account::example("A-1")).unwrap();
    let b = json["balances"][0].clone();
    // The old fixed-length form with nulls, and missing fields, still decode.
    json["balances"] = serde_json::json!([b.clone(), null, null, null, null]);
    json.as_object_mut().unwrap().remove("margins");
    let acc: Account = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(acc, Account::example("A-1"));
    // More than MAX_BALANCES entries is an error, not a truncation.
    json["balances"] = serde_json::json!([b.clone(), b.clone(), b.clone(), b.clone(), b]);
    let err = serde_json::from_value::<Account>(json).unwrap_err();
    assert!(err.to_string().contains("at most 4"), "{err}");
}

#[test]
fn account_capacity() {
    let mut acc = Account::example("A-1");
    for code in ["BTC", "ETH", "SOL"] {
        let c = Currency::new(code).unwrap();
        acc.set_balance(AccountBalance::new(Money::new(1, 0, c), Money::zero(0, c)).unwrap()).unwrap();
    }
    let doge = Currency::new("DOGE").unwrap();
    let b = AccountBalance::new(Money::new(1, 0, doge), Money::zero(0, doge)).unwrap();
    assert_eq!(acc.set_balance(b), Err(CapacityError));
    // Replacing an existing currency still works when full.
    let usdt =
        AccountBalance::new(Money::new(5, 0, Currency::USDT), Money::new(1, 0, Currency::USDT)).unwrap();
    acc.set_balance(usdt).unwrap();
    assert_eq!(acc.balance(Currency::USDT).unwrap().free, Money::new(4, 0, Currency::USDT));
    assert_eq!(acc.balances().count(), 4);
    assert!(AccountBalance::new(Money::new(1, 0, Currency::USD), Money::zero(0, Currency::EUR)).is_none());
    let m = |inst: Option<&str>| MarginBalance {
        instrument_id: inst.map(id),
        initial: Money::zero(2, Currency::USDT),
        maintenance: Money::zero(2, Currency::USDT),
    };
    for inst in [None, Some("A"), Some("B"), Some("C")] {
        acc.set_margin(m(inst)).unwrap();
    }
    acc.set_margin(m(Some("A"))).unwrap();
    assert_eq!(acc.set_margin(m(Some("D"))), Err(CapacityError));
}

#[test]
fn sizes() {
    let sizes = [
        ("Order", std::mem::size_of::<Order>()),
        ("OrderEvent", std::mem::size_of::<OrderEvent>()),
        ("Position", std::mem::size_of::<Position>()),
        ("Instrument", std::mem::size_of::<Instrument>()),
        ("Account", std::mem::size_of::<Account>()),
        ("AccountEvent", std::mem::size_of::<AccountEvent>()),
        ("Fill", std::mem::size_of::<Fill>()),
        ("Ident", std::mem::size_of::<Ident>()),
        ("Price", std::mem::size_of::<Price>()),
        ("Quantity", std::mem::size_of::<Quantity>()),
        ("Money", std::mem::size_of::<Money>()),
        ("Currency", std::mem::size_of::<Currency>()),
        ("ReasonText", std::mem::size_of::<ReasonText>()),
        ("UnixNanos", std::mem::size_of::<UnixNanos>()),
    ];
    for (name, size) in sizes {
        println!("size_of::<{name}>() = {size}");
    }
    for (name, size) in &sizes[..4] {
        assert!(*size < 512, "{name} is {size} bytes");
    }
    // The examples' ids are inline: cloning them never allocates.
    let p = Position::example("BTCUSDT-PERP.BINANCE-001");
    assert!(p.id.is_inline() && p.instrument_id.is_inline() && p.account_id.is_inline());
}

#[test]
fn entity_impls() {
    use crate::entity::{Entity as _, Event as _};
    assert_eq!(<Instrument as Entity>::COLLECTION, "instruments");
    assert_eq!(<Account as Entity>::COLLECTION, "accounts");
    assert_eq!(<Order as Entity>::COLLECTION, "orders");
    assert_eq!(<Position as Entity>::COLLECTION, "positions");
    assert_eq!(Position::example("P-9").id(), "P-9");
    assert_eq!(Order::example("O-9").id(), "O-9");
    assert!(matches!(Position::example("P-9").to_record(), Record::Position(_)));
    assert!(matches!(Order::example("O-9").to_record(), Record::Order(_)));
    assert!(matches!(Instrument::example("X.Y").to_record(), Record::Instrument(_)));
    assert!(matches!(Account::example("A").to_record(), Record::Account(_)));
    assert_eq!(ev(4, OrderEventKind::Canceled).event_id(), 4);
    assert!(matches!(ev(4, OrderEventKind::Canceled).to_record(), EventRecord::Order(_)));
    let aev = AccountEvent::snapshot_of(&Account::example("A"), 3, UnixNanos(1));
    assert_eq!(aev.event_id(), 3);
    assert!(matches!(aev.to_record(), EventRecord::Account(_)));
    assert_eq!(Position::example("bad id").id(), "invalid-id");
}

#[test]
fn order_lifecycle_partial_then_full() {
    let mut o = Order::example("O-1");
    o.try_apply(&ev(1, all_event_kinds().remove(0))).unwrap();
    assert_eq!(
        (o.side, o.quantity, o.time_in_force),
        (OrderSide::Sell, Quantity::new(2_500, 3), TimeInForce::Gtd)
    );
    o.try_apply(&ev(2, OrderEventKind::Submitted { account_id: id("A-1") })).unwrap();
    assert_eq!(o.status, OrderStatus::Submitted);
    o.try_apply(&ev(3, OrderEventKind::Accepted { venue_order_id: id("V-1") })).unwrap();
    assert_eq!((o.status, o.venue_order_id.clone()), (OrderStatus::Accepted, Some(id("V-1"))));
    o.try_apply(&ev(4, OrderEventKind::PartiallyFilled(fill("T-1", 1_000, 6_000_000)))).unwrap();
    assert_eq!(o.status, OrderStatus::PartiallyFilled);
    assert_eq!(o.leaves_qty(), Quantity::new(1_500, 3));
    o.try_apply(&ev(5, OrderEventKind::PartiallyFilled(fill("T-2", 500, 6_000_300)))).unwrap();
    // (60000.00*1.0 + 60003.00*0.5) / 1.5 = 60001.00
    assert_eq!(o.avg_px, Some(Price::new(6_000_100, 2)));
    o.try_apply(&ev(6, OrderEventKind::Filled(fill("T-3", 1_000, 6_000_001)))).unwrap();
    // (6000100*1500 + 6000001*1000) / 2500 = 6000060.4 -> 6000060
    assert_eq!(o.avg_px, Some(Price::new(6_000_060, 2)));
    assert_eq!((o.status, o.filled_qty), (OrderStatus::Filled, Quantity::new(2_500, 3)));
    assert_eq!((o.event_count, o.ts_last), (6, UnixNanos(60)));
    assert_eq!(o.leaves_qty(), Quantity::zero(3));
    assert!(o.status.is_closed() && !o.status.is_open());
    // Closed: nothing more is accepted strictly, except a late acceptance
    // (records the venue id, keeps the status).
    let before = o.clone();
    for kind in all_event_kinds().into_iter().filter(|k| k.name() != "Accepted") {
        assert!(o.try_apply(&ev(7, kind.clone())).is_err(), "{kind:?}");
        assert_eq!(o, before);
    }
}

#[test]
fn order_fill_completing_quantity_is_filled() {
    let mut o = Order::example("O-1");
    o.apply(&ev(1, OrderEventKind::Submitted { account_id: id("A") }));
    o.apply(&ev(2, OrderEventKind::PartiallyFilled(fill("T-1", 1_000, 6_000_000))));
    assert_eq!(o.status, OrderStatus::Filled);
    // Fill precision finer than the order's: aligned, exact.
    let mut o = Order::example("O-1");
    o.apply(&ev(1, OrderEventKind::Submitted { account_id: id("A") }));
    let mut f = fill("T-1", 1, 6_000_000);
    f.last_qty = Quantity::new(5, 4);
    f.last_px = Price::new(60_000_005, 3);
    o.try_apply(&ev(2, OrderEventKind::PartiallyFilled(f))).unwrap();
    assert_eq!(o.filled_qty, Quantity::new(5, 4));
    assert_eq!(o.avg_px, Some(Price::new(60_000_005, 3)));
}

#[test]
fn order_refusals() {
    let mut o = Order::example("O-1");
    let e = o.try_apply(&ev(1, OrderEventKind::Accepted { venue_order_id: id("V") }));
    assert!(e.is_ok()); // venues may skip Submitted
    assert!(matches!(
        o.try_apply(&ev(2, OrderEventKind::Submitted { account_id: id("A") })),
        Err(OrderError::InvalidTransition { status: OrderStatus::Accepted, event: "Submitted" })
    ));
    let wrong = OrderEvent { client_order_id: id("O-2"), ..ev(2, OrderEventKind::Canceled) };
    assert!(matches!(o.try_apply(&wrong), Err(OrderError::WrongOrder { .. })));
    o.apply(&wrong); // ignored, not counted
    assert_eq!((o.event_count, o.status), (1, OrderStatus::Accepted));
    // Overfill: refused strictly, accounted leniently (the venue's executions win).
    let big = ev(2, OrderEventKind::PartiallyFilled(fill("T-1", 1_500, 6_000_000)));
    assert!(matches!(o.try_apply(&big), Err(OrderError::Overfill { .. })));
    assert_eq!(o.event_count, 1);
    o.apply(&big);
    assert_eq!((o.status, o.filled_qty, o.event_count), (OrderStatus::Filled, Quantity::new(1_500, 3), 2));
    assert_eq!(o.leaves_qty(), Quantity::zero(3));
    // An invalid transition applied leniently is only counted.
    o.apply(&ev(3, OrderEventKind::Canceled));
    assert_eq!((o.status, o.event_count, o.ts_last), (OrderStatus::Filled, 3, UnixNanos(30)));
    // Initialized is only valid as the first event.
    let mut o = Order::example("O-1");
    o.apply(&ev(1, OrderEventKind::Canceled));
    assert!(o.try_apply(&ev(2, all_event_kinds().remove(0))).is_err());
    assert!(o.try_apply(&ev(2, OrderEventKind::Expired)).is_err());
    assert!(o.try_apply(&ev(2, OrderEventKind::Rejected { reason: ReasonText::new("x") })).is_err());
}

#[test]
fn order_races_and_updates() {
    let mut o = Order::example("O-1");
    o.try_apply(&ev(1, OrderEventKind::Submitted { account_id: id("A") })).unwrap();
    // A fill arriving before the acceptance; the late acceptance keeps the status.
    o.try_apply(&ev(2, OrderEventKind::PartiallyFilled(fill("T-1", 200, 6_000_000)))).unwrap();
    o.try_apply(&ev(3, OrderEventKind::Accepted { venue_order_id: id("V-1") })).unwrap();
    assert_eq!(o.status, OrderStatus::PartiallyFilled);
    assert_eq!(o.venue_order_id, Some(id("V-1")));
    // Updates cannot go below the filled quantity; down to it fills the order.
    let upd = |q| OrderEventKind::Updated { quantity: Quantity::new(q, 3), price: None, trigger_price: None };
    assert!(matches!(o.try_apply(&ev(4, upd(100))), Err(OrderError::Overfill { .. })));
    o.try_apply(&ev(4, upd(800))).unwrap();
    assert_eq!((o.status, o.quantity, o.price), (OrderStatus::PartiallyFilled, Quantity::new(800, 3), None));
    o.try_apply(&ev(5, OrderEventKind::Canceled)).unwrap();
    // A fill that raced the cancel is still accounted.
    o.try_apply(&ev(6, OrderEventKind::PartiallyFilled(fill("T-2", 100, 6_000_000)))).unwrap();
    assert_eq!((o.status, o.filled_qty), (OrderStatus::Canceled, Quantity::new(300, 3)));
    o.try_apply(&ev(7, OrderEventKind::PartiallyFilled(fill("T-3", 500, 6_000_000)))).unwrap();
    assert_eq!(o.status, OrderStatus::Filled);
    let mut o = Order::example("O-1");
    o.try_apply(&ev(1, OrderEventKind::Submitted { account_id: id("A") })).unwrap();
    o.try_apply(&ev(2, upd(1_000))).unwrap();
    assert_eq!(o.status, OrderStatus::Submitted); // nothing filled yet
    o.try_apply(&ev(3, OrderEventKind::Rejected { reason: ReasonText::new("x") })).unwrap();
    assert_eq!(o.status, OrderStatus::Rejected);
    // Same value at another precision is neither an overfill nor a shortfall.
    let mut o = Order::example("O-1"); // 1.000
    o.try_apply(&ev(1, OrderEventKind::Submitted { account_id: id("A") })).unwrap();
    let mut f = fill("T-1", 0, 6_000_000);
    f.last_qty = Quantity::new(1, 0);
    o.try_apply(&ev(2, OrderEventKind::PartiallyFilled(f))).unwrap();
    assert_eq!((o.status, o.filled_qty), (OrderStatus::Filled, Quantity::new(1_000, 3)));
    let mut o = Order::example("O-1");
    o.try_apply(&ev(1, OrderEventKind::Submitted { account_id: id("A") })).unwrap();
    o.try_apply(&ev(2, OrderEventKind::PartiallyFilled(fill("T-1", 500, 6_000_000)))).unwrap();
    let upd = OrderEventKind::Updated { quantity: Quantity::new(5, 1), price: None, trigger_price: None };
    o.try_apply(&ev(3, upd)).unwrap();
    assert_eq!(o.status, OrderStatus::Filled);
    // A late acceptance of a filled order records the venue id only.
    o.try_apply(&ev(4, OrderEventKind::Accepted { venue_order_id: id("V-2") })).unwrap();
    assert_eq!((o.status, o.venue_order_id), (OrderStatus::Filled, Some(id("V-2"))));
}

fn px(raw: i64) -> Price {
    Price::new(raw, 2)
}

fn qty(raw: u64) -> Quantity {
    Quantity::new(raw, 3)
}

fn flat(id: &str) -> Position {
    let mut p = Position::example(id);
    p.side = PositionSide::Flat;
    p.quantity = qty(0);
    p
}

#[test]
fn position_open_add_reduce_flip_close() {
    let mut p = flat("P-1");
    // Open long 1.000 @ 100.00.
    p.apply_fill(OrderSide::Buy, px(10_000), qty(1_000), UnixNanos(1));
    assert_eq!(
        (p.side, p.quantity, p.avg_px_open, p.ts_opened),
        (PositionSide::Long, qty(1_000), px(10_000), UnixNanos(1))
    );
    // Add 3.000 @ 104.00 -> avg (100 + 312) / 4 = 103.00.
    p.apply_fill(OrderSide::Buy, px(10_400), qty(3_000), UnixNanos(2));
    assert_eq!((p.quantity, p.avg_px_open), (qty(4_000), px(10_300)));
    // Reduce 1.000 @ 110.00: +7.00.
    p.apply_fill(OrderSide::Sell, px(11_000), qty(1_000), UnixNanos(3));
    assert_eq!((p.side, p.quantity, p.avg_px_open), (PositionSide::Long, qty(3_000), px(10_300)));
    assert_eq!(p.realized_pnl, Money::new(700, 2, Currency::USDT));
    assert_eq!(p.avg_px_close, Some(px(11_000)));
    // Reduce 1.000 @ 100.00: -3.00; close avg (110 + 100) / 2.
    p.apply_fill(OrderSide::Sell, px(10_000), qty(1_000), UnixNanos(4));
    assert_eq!(p.realized_pnl.raw, 400);
    assert_eq!((p.avg_px_close, p.closed_qty), (Some(px(10_500)), qty(2_000)));
    // Flip: sell 3.000 @ 102.00 closes 2.000 (-2.00) and opens short 1.000 @ 102.00.
    p.apply_fill(OrderSide::Sell, px(10_200), qty(3_000), UnixNanos(5));
    assert_eq!((p.side, p.quantity, p.avg_px_open), (PositionSide::Short, qty(1_000), px(10_200)));
    assert_eq!(p.realized_pnl.raw, 200);
    assert_eq!((p.avg_px_close, p.closed_qty, p.ts_opened), (None, qty(0), UnixNanos(5)));
    // Short add 1.000 @ 101.00 -> avg 101.50.
    p.apply_fill(OrderSide::Sell, px(10_100), qty(1_000), UnixNanos(6));
    assert_eq!((p.quantity, p.avg_px_open), (qty(2_000), px(10_150)));
    // Close: buy 2.000 @ 100.00: short gains 1.50 * 2 = +3.00.
    p.apply_fill(OrderSide::Buy, px(10_000), qty(2_000), UnixNanos(7));
    assert_eq!((p.side, p.quantity), (PositionSide::Flat, qty(0)));
    assert_eq!(p.realized_pnl, Money::new(500, 2, Currency::USDT));
    assert_eq!((p.ts_closed, p.ts_last), (Some(UnixNanos(7)), UnixNanos(7)));
    assert_eq!(p.avg_px_close, Some(px(10_000)));
    // Reopen from flat: PnL keeps accumulating, close data reset.
    p.apply_fill(OrderSide::Sell, px(9_000), qty(500), UnixNanos(8));
    assert_eq!(
        (p.side, p.avg_px_open, p.ts_opened, p.ts_closed),
        (PositionSide::Short, px(9_000), UnixNanos(8), None)
    );
    assert_eq!((p.avg_px_close, p.realized_pnl.raw), (None, 500));
}

#[test]
fn position_rounding_and_precision() {
    let mut p = flat("P-1");
    // Fill with a finer price and quantity precision than the position.
    p.apply_fill(OrderSide::Buy, Price::new(100_005, 3), Quantity::new(15, 4), UnixNanos(1));
    assert_eq!((p.quantity, p.avg_px_open), (Quantity::new(15, 4), Price::new(100_005, 3)));
    // Sell 0.0010 @ 100.006: pnl = 0.001 * 0.0010 = 0.000001 -> rounds to 0.00.
    p.apply_fill(OrderSide::Sell, Price::new(100_006, 3), Quantity::new(10, 4), UnixNanos(2));
    assert_eq!(p.realized_pnl.raw, 0);
    // Sell 0.0005 @ 110.005: pnl = 10.000 * 0.0005 = 0.005 -> rounds half away to 0.01.
    p.apply_fill(OrderSide::Sell, Price::new(110_005, 3), Quantity::new(5, 4), UnixNanos(3));
    assert_eq!((p.realized_pnl.raw, p.side), (1, PositionSide::Flat));
    // Overflow leaves the position unchanged.
    let mut p = Position::example("P-1");
    let before = p.clone();
    assert_eq!(
        p.try_apply_fill(OrderSide::Buy, Price::new(i64::MAX, 2), Quantity::new(u64::MAX, 3), UnixNanos(9)),
        Err(PositionError)
    );
    p.apply_fill(OrderSide::Sell, Price::new(i64::MIN, 2), Quantity::new(u64::MAX, 3), UnixNanos(9));
    assert_eq!(p, before);
}
