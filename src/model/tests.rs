use serde::de::DeserializeOwned;
use serde::Serialize;

use super::*;
use crate::channel::msg::{EventRecord, Record};
use crate::entity::Entity;

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
    super::set_timestamps_as_iso8601(true);
    let iso = serde_json::to_string(v);
    super::set_timestamps_as_iso8601(false);
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
    round_trip(&QuoteTick::example("BTCUSDT-PERP.BINANCE", UnixNanos(1)));
    round_trip(&TradeTick::example("BTCUSDT-PERP.BINANCE", UnixNanos(2)));
    round_trip(&Bar::example("BTCUSDT-PERP.BINANCE-1-MINUTE-LAST-EXTERNAL", UnixNanos(3)));
    // Struct maps: the (short) field names are in the msgpack bytes.
    let bytes = msgpack(&Position::example("P-1"));
    assert!(bytes.windows(3).any(|w| w == b"\xa2po"), "avg_px_open is stored as \"po\"");
}

#[test]
fn wire_format() {
    let json = serde_json::to_value(Position::example("P-1")).unwrap();
    assert_eq!(json["q"], serde_json::json!([1000, 3]));
    assert_eq!(json["pnl"], serde_json::json!([0, 2, "USDT"]));
    // Absent options are left out, and read back as `None`.
    assert!(json.get("pc").is_none() && json.get("tc").is_none());
    assert_eq!(json["to"], serde_json::json!(1_700_000_000_000_000_000u64));
    let acc = serde_json::to_value(Account::example("A-1")).unwrap();
    assert_eq!(acc["b"].as_array().unwrap().len(), 1);
    assert_eq!(acc["m"], serde_json::json!([]));
    let rej =
        serde_json::to_value(ev(1, OrderEventKind::Rejected { reason: ReasonText::new("no") })).unwrap();
    assert_eq!(rej["k"], serde_json::json!({"Rejected": {"r": "no"}}));
    super::set_timestamps_as_iso8601(true);
    let iso = serde_json::to_value(Position::example("P-1")).unwrap();
    super::set_timestamps_as_iso8601(false);
    assert_eq!(iso["to"], "2023-11-14T22:13:20.000000000Z");
    assert_eq!(iso["tc"], serde_json::Value::Null);
}

#[test]
fn account_slots_decode() {
    let mut json = serde_json::to_value(Account::example("A-1")).unwrap();
    let b = json["b"][0].clone();
    // The old fixed-length form with nulls, and missing fields, still decode.
    json["b"] = serde_json::json!([b.clone(), null, null, null, null]);
    json.as_object_mut().unwrap().remove("m");
    let acc: Account = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(acc, Account::example("A-1"));
    // More than MAX_BALANCES entries is an error, not a truncation.
    json["b"] = serde_json::json!([b.clone(), b.clone(), b.clone(), b.clone(), b]);
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
        ("QuoteTick", std::mem::size_of::<QuoteTick>()),
        ("TradeTick", std::mem::size_of::<TradeTick>()),
        ("Bar", std::mem::size_of::<Bar>()),
        ("EventRecord", std::mem::size_of::<crate::channel::msg::EventRecord>()),
        ("Msg", std::mem::size_of::<crate::channel::msg::Msg>()),
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
    {
        use crate::entity::MarketData as _;
        let q = QuoteTick::example("I.V", UnixNanos(1));
        let t = TradeTick::example("I.V", UnixNanos(1));
        let b = Bar::example("I.V-1-MINUTE-LAST-EXTERNAL", UnixNanos(1));
        assert_eq!(
            (q.series_id(), t.series_id(), b.series_id()),
            ("I.V", "I.V", "I.V-1-MINUTE-LAST-EXTERNAL")
        );
        assert_eq!(
            (QuoteTick::COLLECTION, TradeTick::COLLECTION, Bar::COLLECTION),
            ("quotes", "trades", "bars")
        );
        // By value through the channel, with their capacity.
        let cfg = crate::Config::builder().tick_capacity(11).bar_capacity(22);
        assert!(matches!(q.to_record(), EventRecord::Quote(_)));
        assert_eq!(
            (q.to_record().cap(&cfg), t.to_record().cap(&cfg), b.to_record().cap(&cfg)),
            (Some(11), Some(11), Some(22))
        );
        assert_eq!(ev(1, OrderEventKind::Canceled).to_record().cap(&cfg), None);
    }
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

/// Values as the reference types stored them before the short field names:
/// fixed bytes written by tradecache at commit e8221d5 (long field names),
/// not produced by this code. They must keep decoding.
mod old_format {
    use super::*;
    use crate::store::codec::Encoding;

    fn old<T: DeserializeOwned>(hex: &str) -> T {
        let hex: String = hex.split_whitespace().collect();
        let bytes: Vec<u8> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        crate::store::codec::decode(&bytes, Encoding::MsgPack).unwrap()
    }
    const POSITION_EXAMPLE: &str =
        "8ba26964a3502d31ad696e737472756d656e745f6964b4425443555344542d504552502e42494e414e4345aa61 \
        63636f756e745f6964ab42494e414e43452d303031b06f70656e696e675f6f726465725f6964a34f2d31a47369 \
        6465a44c6f6e67a87175616e7469747992cd03e803ab6176675f70785f6f70656e92ce005b8d8002aa636c6f73 \
        65645f717479920003ac7265616c697a65645f706e6c930002a455534454a974735f6f70656e6564cf17979cfe \
        362a0000a774735f6c617374cf17979cfe362a0000";
    const POSITION_CLOSED: &str =
        "8da26964a3502d31ad696e737472756d656e745f6964b4425443555344542d504552502e42494e414e4345aa61 \
        63636f756e745f6964ab42494e414e43452d303031b06f70656e696e675f6f726465725f6964a34f2d31a47369 \
        6465a4466c6174a87175616e74697479920003ab6176675f70785f6f70656e92ce005b8d8002ac6176675f7078 \
        5f636c6f736592ce005dfe8002aa636c6f7365645f71747992cd03e803ac7265616c697a65645f706e6c93ce00 \
        02710002a455534454a974735f6f70656e6564cf17979cfe362a0000a974735f636c6f7365640aa774735f6c61 \
        73740a";
    const ORDER_EXAMPLE: &str =
        "8daf636c69656e745f6f726465725f6964a34f2d31ab73747261746567795f6964ad454d412d43524f53532d30 \
        3031ad696e737472756d656e745f6964b4425443555344542d504552502e42494e414e4345a473696465a34275 \
        79aa6f726465725f74797065a54c696d6974a87175616e7469747992cd03e803a5707269636592ce005b8d8002 \
        ad74696d655f696e5f666f726365a3477463a6737461747573ab496e697469616c697a6564aa66696c6c65645f \
        717479920003a774735f696e6974cf17979cfe362a0000a774735f6c617374cf17979cfe362a0000ab6576656e \
        745f636f756e7400";
    const ORDER_FILLED: &str =
        "8faf636c69656e745f6f726465725f6964a34f2d31ae76656e75655f6f726465725f6964a3562d31ab73747261 \
        746567795f6964ad454d412d43524f53532d303031ad696e737472756d656e745f6964b4425443555344542d50 \
        4552502e42494e414e4345a473696465a3427579aa6f726465725f74797065a54c696d6974a87175616e746974 \
        7992cd03e803a5707269636592ce005b8d8002ad74696d655f696e5f666f726365a3477463a6737461747573af \
        5061727469616c6c7946696c6c6564aa66696c6c65645f71747992cd01f403a66176675f707892ce005b8d8002 \
        a774735f696e6974cf17979cfe362a0000a774735f6c6173741eab6576656e745f636f756e7403";
    const INSTRUMENT: &str =
        "8fa26964b4425443555344542d504552502e42494e414e4345a673796d626f6cac425443555344542d50455250 \
        a576656e7565a742494e414e4345a46b696e64a950657270657475616ca462617365a3425443a571756f7465a4 \
        55534454aa736574746c656d656e74a455534454af70726963655f707265636973696f6e02ae73697a655f7072 \
        65636973696f6e03af70726963655f696e6372656d656e74920102ae73697a655f696e6372656d656e74920103 \
        aa6d756c7469706c696572920100ad6d616b65725f6665655f62707302ad74616b65725f6665655f62707304a7 \
        74735f696e6974cf17979cfe362a0000";
    const ACCOUNT: &str =
        "86a26964ab42494e414e43452d303031a46b696e64a64d617267696ead626173655f63757272656e6379a45553 \
        4454a862616c616e6365739384a863757272656e6379a455534454a5746f74616c93ce0098968002a455534454 \
        a66c6f636b6564930002a455534454a46672656593ce0098968002a455534454c084a863757272656e6379a342 \
        5443a5746f74616c930501a3425443a66c6f636b6564930101a3425443a466726565930401a3425443a76d6172 \
        67696e739183ad696e737472756d656e745f6964b4425443555344542d504552502e42494e414e4345a7696e69 \
        7469616c936402a455534454ab6d61696e74656e616e6365933202a455534454a874735f6576656e74cf17979c \
        fe362a0000";
    const ACCOUNT_EVENT: &str =
        "86a86576656e745f696407aa6163636f756e745f6964ab42494e414e43452d303031a862616c616e6365739384 \
        a863757272656e6379a455534454a5746f74616c93ce0098968002a455534454a66c6f636b6564930002a45553 \
        4454a46672656593ce0098968002a455534454c084a863757272656e6379a3425443a5746f74616c930501a342 \
        5443a66c6f636b6564930101a3425443a466726565930401a3425443a76d617267696e739183ad696e73747275 \
        6d656e745f6964b4425443555344542d504552502e42494e414e4345a7696e697469616c936402a455534454ab \
        6d61696e74656e616e6365933202a455534454a87265706f72746564c2a874735f6576656e7403";
    const EVENTS: [&str; 9] = [
        "84a86576656e745f696400af636c69656e745f6f726465725f6964a34f2d31a874735f6576656e7400a46b \
         696e6481ab496e697469616c697a656485a473696465a453656c6caa6f726465725f74797065a953746f70 \
         4c696d6974a87175616e7469747992cd09c403a5707269636592d1ff6a02ad74696d655f696e5f666f7263 \
         65a3477464",
        "84a86576656e745f696401af636c69656e745f6f726465725f6964a34f2d31a874735f6576656e740aa46b \
         696e6481a95375626d697474656481aa6163636f756e745f6964ab42494e414e43452d303031",
        "84a86576656e745f696402af636c69656e745f6f726465725f6964a34f2d31a874735f6576656e7414a46b \
         696e6481a8416363657074656481ae76656e75655f6f726465725f6964a3562d31",
        "84a86576656e745f696403af636c69656e745f6f726465725f6964a34f2d31a874735f6576656e741ea46b \
         696e6481a852656a656374656481a6726561736f6ed927696e73756666696369656e74206d617267696e3a \
         206e65656420312c3030302e30302055534454",
        "84a86576656e745f696404af636c69656e745f6f726465725f6964a34f2d31a874735f6576656e7428a46b \
         696e64a843616e63656c6564",
        "84a86576656e745f696405af636c69656e745f6f726465725f6964a34f2d31a874735f6576656e7432a46b \
         696e64a745787069726564",
        "84a86576656e745f696406af636c69656e745f6f726465725f6964a34f2d31a874735f6576656e743ca46b \
         696e6481a75570646174656482a87175616e74697479920300ad747269676765725f7072696365920100",
        "84a86576656e745f696407af636c69656e745f6f726465725f6964a34f2d31a874735f6576656e7446a46b \
         696e6481af5061727469616c6c7946696c6c656485a874726164655f6964a3542d31a76c6173745f707892 \
         ce005b8d8002a86c6173745f71747992cd01f403aa636f6d6d697373696f6e930c02a455534454ae6c6971 \
         7569646974795f73696465a54d616b6572",
        "84a86576656e745f696408af636c69656e745f6f726465725f6964a34f2d31a874735f6576656e7450a46b \
         696e6481a646696c6c656485a874726164655f6964a3542d32a76c6173745f707892ce005b8de402a86c61 \
         73745f71747992cd01f403aa636f6d6d697373696f6e930c02a455534454ae6c69717569646974795f7369 \
         6465a54d616b6572",
    ];
    const POSITION_CLOSED_JSON: &str = r#"{"id":"P-1","instrument_id":"BTCUSDT-PERP.BINANCE","account_id":"BINANCE-001","opening_order_id":"O-1","side":"Flat","quantity":[0,3],"avg_px_open":[6000000,2],"avg_px_close":[6160000,2],"closed_qty":[1000,3],"realized_pnl":[160000,2,"USDT"],"ts_opened":1700000000000000000,"ts_closed":10,"ts_last":10}"#;
    const EVENT_FILLED_JSON: &str = r#"{"event_id":8,"client_order_id":"O-1","ts_event":80,"kind":{"Filled":{"trade_id":"T-2","last_px":[6000100,2],"last_qty":[500,3],"commission":[12,2,"USDT"],"liquidity_side":"Maker"}}}"#;
    const ORDER_FILLED_JSON: &str = r#"{"client_order_id":"O-1","venue_order_id":"V-1","strategy_id":"EMA-CROSS-001","instrument_id":"BTCUSDT-PERP.BINANCE","side":"Buy","order_type":"Limit","quantity":[1000,3],"price":[6000000,2],"time_in_force":"Gtc","status":"PartiallyFilled","filled_qty":[500,3],"avg_px":[6000000,2],"ts_init":1700000000000000000,"ts_last":30,"event_count":3}"#;

    fn account() -> Account {
        let mut acc = Account::example("BINANCE-001");
        acc.balances[2] =
            AccountBalance::new(Money::new(5, 1, Currency::BTC), Money::new(1, 1, Currency::BTC));
        acc.margins[0] = Some(MarginBalance {
            instrument_id: Some(id("BTCUSDT-PERP.BINANCE")),
            initial: Money::new(100, 2, Currency::USDT),
            maintenance: Money::new(50, 2, Currency::USDT),
        });
        acc
    }

    fn position_closed() -> Position {
        let mut p = Position::example("P-1");
        p.apply_fill(OrderSide::Sell, Price::new(6_100_000, 2), Quantity::new(400, 3), UnixNanos(9));
        p.apply_fill(OrderSide::Sell, Price::new(6_200_000, 2), Quantity::new(600, 3), UnixNanos(10));
        assert!(p.avg_px_close.is_some() && p.ts_closed.is_some(), "every optional field is present");
        p
    }

    fn order_filled() -> Order {
        let mut o = Order::example("O-1");
        for (i, kind) in all_event_kinds().into_iter().enumerate().skip(1).take(2) {
            o.apply(&OrderEvent {
                event_id: i as u64,
                client_order_id: id("O-1"),
                ts_event: UnixNanos(5),
                kind,
            });
        }
        o.apply(&ev(3, OrderEventKind::PartiallyFilled(fill("T-1", 500, 6_000_000))));
        o
    }

    #[test]
    fn msgpack_values_with_long_field_names_decode() {
        assert_eq!(old::<Position>(POSITION_EXAMPLE), Position::example("P-1"));
        assert_eq!(old::<Position>(POSITION_CLOSED), position_closed());
        assert_eq!(old::<Order>(ORDER_EXAMPLE), Order::example("O-1"));
        assert_eq!(old::<Order>(ORDER_FILLED), order_filled());
        assert_eq!(old::<Instrument>(INSTRUMENT), Instrument::example("BTCUSDT-PERP.BINANCE"));
        assert_eq!(old::<Account>(ACCOUNT), account());
        assert_eq!(
            old::<AccountEvent>(ACCOUNT_EVENT),
            AccountEvent::snapshot_of(&account(), 7, UnixNanos(3))
        );
        for (i, (hex, kind)) in EVENTS.iter().zip(all_event_kinds()).enumerate() {
            assert_eq!(old::<OrderEvent>(hex), ev(i as u64, kind));
        }
    }

    #[test]
    fn json_values_with_long_field_names_decode() {
        assert_eq!(serde_json::from_str::<Position>(POSITION_CLOSED_JSON).unwrap(), position_closed());
        assert_eq!(serde_json::from_str::<Order>(ORDER_FILLED_JSON).unwrap(), order_filled());
        let filled = all_event_kinds().pop().unwrap();
        assert_eq!(serde_json::from_str::<OrderEvent>(EVENT_FILLED_JSON).unwrap(), ev(8, filled));
    }

    /// The stored schema docs/usage.md documents: a MessagePack map per value,
    /// read here by a generic decoder (into `serde_json::Value`) by key.
    #[test]
    fn stored_maps_have_the_documented_keys() {
        let keys = |bytes: Vec<u8>| -> Vec<String> {
            let v: serde_json::Value = rmp_serde::from_slice(&bytes).unwrap();
            v.as_object().unwrap().keys().cloned().collect()
        };
        let sorted = |k: &[&str]| {
            let mut k: Vec<String> = k.iter().map(|s| s.to_string()).collect();
            k.sort();
            k
        };
        assert_eq!(
            keys(msgpack(&position_closed())),
            sorted(&["id", "i", "a", "o", "s", "q", "po", "pc", "qc", "pnl", "to", "tc", "tl"])
        );
        let order = order_filled();
        assert_eq!(
            keys(msgpack(&order)),
            sorted(&["id", "vid", "sid", "i", "s", "ot", "q", "p", "tif", "st", "fq", "ap", "ti", "tl", "n"])
        );
        assert_eq!(keys(msgpack(&ev(1, all_event_kinds().pop().unwrap()))), sorted(&["e", "o", "te", "k"]));
        let v: serde_json::Value =
            rmp_serde::from_slice(&msgpack(&ev(1, all_event_kinds().pop().unwrap()))).unwrap();
        assert_eq!(v["k"]["Filled"]["p"], serde_json::json!([6_000_100, 2]));
        // The bench's positions (ids P-0 … P-9999) fit Redis' 128-byte
        // allocation class (with its 4 bytes of string header): 200 bytes of
        // MEMORY USAGE each, where the long names took 204 bytes of value.
        let p = msgpack(&Position::example("P-9999"));
        assert!(p.len() <= 124, "{} bytes", p.len());
        assert_eq!(msgpack(&Position::example("P-1234")).len(), 120, "the figure in docs/usage.md");
        let before: String = POSITION_EXAMPLE.split_whitespace().collect();
        assert!(
            msgpack(&Position::example("P-1")).len() * 3 < before.len() / 2 * 2,
            "a third smaller at least"
        );
    }
}
