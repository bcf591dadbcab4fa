//! Recovery of a large state: 1,000,000 orders with 5 events each (6
//! million values), written through the cache and loaded back whole.
//!
//! Bounded in time (every wait has a timeout; a stalled Redis fails the
//! test instead of hanging it), but speed is not asserted: `make bench`
//! measures it (`recovery_scaling`). `RECOVERY_SCALE_ORDERS` lowers the
//! size for a quick run.

use std::time::{Duration, Instant};

use crate::harness::*;
use tradecache::model::{
    Currency, Fill, LiquiditySide, Money, Order, OrderEvent, OrderEventKind, OrderStatus, Price, Quantity,
    UnixNanos,
};
use tradecache::{Cache, Ident, OverflowPolicy};

/// The five events of order `id`: submitted, accepted, two partial fills
/// and a fill of the rest; and the order as they leave it.
fn order_with_events(i: u64) -> (Order, Vec<OrderEvent>) {
    let id = format!("O-{i}");
    let mut order = Order::example(&id);
    let oid = order.client_order_id.clone();
    let fill = |n: u64, qty: u64| Fill {
        trade_id: Ident::new(&format!("T-{i}-{n}")).unwrap(),
        last_px: Price::new(6_000_000 + i as i64 % 1_000, 2),
        last_qty: Quantity::new(qty, 3),
        commission: Money::new(12, 2, Currency::USDT),
        liquidity_side: LiquiditySide::Maker,
    };
    let kinds = [
        OrderEventKind::Submitted { account_id: Ident::new("BINANCE-001").unwrap() },
        OrderEventKind::Accepted { venue_order_id: Ident::new(&format!("V-{i}")).unwrap() },
        OrderEventKind::PartiallyFilled(fill(1, 250)),
        OrderEventKind::PartiallyFilled(fill(2, 250)),
        OrderEventKind::Filled(fill(3, 500)),
    ];
    let events: Vec<OrderEvent> = kinds
        .into_iter()
        .enumerate()
        .map(|(n, kind)| OrderEvent {
            event_id: n as u64 + 1,
            client_order_id: oid.clone(),
            ts_event: UnixNanos(1_700_000_000_000_000_000 + i * 10 + n as u64),
            kind,
        })
        .collect();
    for ev in &events {
        order.apply(ev);
    }
    (order, events)
}

#[test]
fn a_million_orders_with_their_events_load_back() {
    let n: u64 =
        std::env::var("RECOVERY_SCALE_ORDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let server = RedisServer::builder().appendonly(false).start();
    let cfg = config(server.port(), "BIG")
        .overflow(OverflowPolicy::Block { timeout: Duration::from_secs(60) })
        .response_timeout(Duration::from_secs(30));
    let cache = Cache::open(cfg).unwrap();

    let start = Instant::now();
    for i in 0..n {
        let (order, events) = order_with_events(i);
        let id = order.client_order_id.clone();
        for ev in &events {
            cache.append(&id, ev).unwrap();
        }
        cache.put(&order).unwrap();
    }
    cache.flush(Duration::from_secs(1_800)).unwrap();
    let written = start.elapsed();

    let start = Instant::now();
    let snap = cache.load().unwrap();
    let loaded = start.elapsed();
    eprintln!(
        "recovery_scale: {n} orders × 5 events written in {written:.1?}, loaded in {loaded:.1?} \
         ({} round trips; not asserted: `make bench` measures speed)",
        snap.report.round_trips
    );
    assert!(snap.report.is_clean(), "{:?}", snap.report.issues.first());
    // One SMEMBERS per collection, one pipelined request per 1,000 orders.
    assert_eq!(snap.report.round_trips, 4 + n.div_ceil(1_000));
    assert_eq!(snap.orders.len() as u64, n);
    assert_eq!(snap.order_events.len() as u64, n);
    assert_eq!(snap.order_events.values().map(Vec::len).sum::<usize>() as u64, 5 * n);
    // Sorted by id, each order filled, its log complete and in order.
    assert!(snap.orders.windows(2).all(|w| w[0].client_order_id < w[1].client_order_id));
    for order in &snap.orders {
        assert_eq!(order.status, OrderStatus::Filled, "{order:?}");
        let log = &snap.order_events[&order.client_order_id];
        assert_eq!(log.iter().map(|e| e.event_id).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(order.event_count, 5);
    }
    // Spot checks against what was written.
    for i in [0, n / 3, n - 1] {
        let (order, events) = order_with_events(i);
        let got = snap.orders.binary_search_by(|o| o.client_order_id.cmp(&order.client_order_id)).unwrap();
        assert_eq!(snap.orders[got], order);
        assert_eq!(snap.order_events[&order.client_order_id], events);
    }
}
