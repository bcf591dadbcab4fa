//! A simulated trading engine: recovers its state, then writes orders (with
//! their full event history), fills, positions and account events for a few
//! seconds, and prints throughput and stats. `make demo` runs it twice
//! against a private redis-server; the second run starts from the state the
//! first one left.
//!
//! Environment: `REDIS_URL` (or `REDIS_HOST`/`REDIS_PORT`…), `CACHE_*`,
//! `DEMO_SECONDS` (default 5). For `make recovery-test`: `DEMO_ACK_FILE`
//! (keep writing `{run} {orders}` there: the orders whose every write is
//! acknowledged) and `DEMO_VERIFY=run:orders` (check after recovery that
//! those orders came back complete; exit 1 if not).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tradecache::model::{
    Account, AccountEvent, Currency, Fill, Instrument, LiquiditySide, Money, Order, OrderEvent,
    OrderEventKind, OrderSide, Position, PositionSide, Price, Quantity, UnixNanos,
};
use tradecache::{Cache, Config, Ident, OverflowPolicy};

const INSTRUMENTS: [&str; 4] =
    ["BTCUSDT-PERP.BINANCE", "ETHUSDT-PERP.BINANCE", "SOLUSDT-PERP.BINANCE", "XRPUSDT-PERP.BINANCE"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::var("DEMO_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let mut config = Config::from_env()?.overflow(OverflowPolicy::Block { timeout: Duration::from_secs(1) });
    if std::env::var_os("CACHE_TRADER_ID").is_none() {
        config = config.trader_id("DEMO-001");
    }
    println!("tradecache demo: {} as {}", config.redacted_url(), config.trader_key());
    let cache = Cache::open(config)?;

    // --- recovery -------------------------------------------------------
    let state = cache.load()?;
    let r = &state.report;
    if state.orders.is_empty() && state.positions.is_empty() {
        println!("no previous state: starting fresh (load took {:.1} ms)", r.elapsed.as_secs_f64() * 1e3);
    } else {
        let events: usize = state.order_events.values().map(Vec::len).sum();
        let consistent = state.orders.iter().all(|o| {
            state.order_events.get(&o.client_order_id).map_or(0, Vec::len) == o.event_count as usize
        });
        println!(
            "recovered previous state in {:.1} ms ({} round trips): {} instruments, {} accounts, {} orders with {} events, {} positions; snapshots agree with event logs: {}; issues: {}",
            r.elapsed.as_secs_f64() * 1e3,
            r.round_trips,
            state.instruments.len(),
            state.accounts.len(),
            state.orders.len(),
            events,
            state.positions.len(),
            if consistent { "yes" } else { "NO" },
            r.issues.len(),
        );
        println!("continuing from the recovered state");
    }
    if let Ok(spec) = std::env::var("DEMO_VERIFY") {
        let (run, n) = spec.split_once(':').ok_or("DEMO_VERIFY is run:orders")?;
        let n: u64 = n.trim().parse()?;
        let by_id: HashMap<&str, &Order> =
            state.orders.iter().map(|o| (o.client_order_id.as_str(), o)).collect();
        let mut missing = 0u64;
        for i in 1..=n {
            let oid = format!("O-{run}-{i}");
            let complete = by_id.get(oid.as_str()).is_some_and(|o| {
                o.status == tradecache::model::OrderStatus::Filled
                    && state.order_events.get(&o.client_order_id).map_or(0, Vec::len) == 5
            });
            if !complete {
                missing += 1;
            }
        }
        println!(
            "verify: {} of {n} acknowledged orders of run {run} came back complete (Filled, 5 events); {missing} missing",
            n - missing
        );
        if missing > 0 {
            std::process::exit(1);
        }
    }
    let ack_file = std::env::var_os("DEMO_ACK_FILE");
    let mut order_seqs: std::collections::VecDeque<(u64, u64)> = std::collections::VecDeque::new();
    let mut acked_orders = 0u64;

    // --- setup ----------------------------------------------------------
    for id in INSTRUMENTS {
        cache.put(&Instrument::example(id))?;
    }
    let mut account = state.accounts.into_iter().next().unwrap_or_else(|| Account::example("BINANCE-001"));
    cache.put(&account)?;
    let mut positions: HashMap<Ident, Position> =
        state.positions.into_iter().map(|p| (p.instrument_id.clone(), p)).collect();
    let run = UnixNanos::now().0 / 1_000_000_000 % 1_000_000;
    let mut account_event_id =
        state.account_events.get(&account.id).and_then(|v| v.last()).map_or(0, |e| e.event_id);
    let usdt = Currency::new("USDT")?;

    // --- trading loop ---------------------------------------------------
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut orders = 0u64;
    let mut writes = 0u64;
    let mut rejected = 0u64;
    let mut put_ns_max = 0u128;
    while Instant::now() < deadline {
        for _ in 0..100 {
            orders += 1;
            let inst = INSTRUMENTS[(orders % INSTRUMENTS.len() as u64) as usize];
            let oid = format!("O-{run}-{orders}");
            let mut order = Order::example(&oid);
            order.instrument_id = Ident::new(inst)?;
            order.side = if orders.is_multiple_of(3) { OrderSide::Sell } else { OrderSide::Buy };
            let px = Price::new(6_000_000 + (orders % 500) as i64 * 10, 2);
            let half = Quantity::new(500, 3);
            let fill = |n: u64| Fill {
                trade_id: Ident::new(&format!("T-{run}-{orders}-{n}")).expect("valid id"),
                last_px: px,
                last_qty: half,
                commission: Money::new(12, 2, usdt),
                liquidity_side: LiquiditySide::Maker,
            };
            let kinds = [
                OrderEventKind::Initialized {
                    side: order.side,
                    order_type: order.order_type,
                    quantity: order.quantity,
                    price: order.price,
                    time_in_force: order.time_in_force,
                },
                OrderEventKind::Submitted { account_id: account.id.clone() },
                OrderEventKind::Accepted { venue_order_id: Ident::new(&format!("V-{run}-{orders}"))? },
                OrderEventKind::PartiallyFilled(fill(1)),
                OrderEventKind::Filled(fill(2)),
            ];
            for (i, kind) in kinds.into_iter().enumerate() {
                let ev = OrderEvent {
                    event_id: i as u64 + 1,
                    client_order_id: order.client_order_id.clone(),
                    ts_event: UnixNanos::now(),
                    kind,
                };
                order.apply(&ev);
                let t = Instant::now();
                let ok = cache.append(&oid, &ev).is_ok() && cache.put(&order).is_ok();
                put_ns_max = put_ns_max.max(t.elapsed().as_nanos());
                if !ok {
                    rejected += 1;
                }
                writes += 2;
                if let OrderEventKind::PartiallyFilled(f) | OrderEventKind::Filled(f) = &ev.kind {
                    let pos = positions.entry(order.instrument_id.clone()).or_insert_with(|| {
                        let mut p = Position::example(&format!("{inst}-001"));
                        p.instrument_id = order.instrument_id.clone();
                        p.side = PositionSide::Flat;
                        p.quantity = Quantity::new(0, 3);
                        p
                    });
                    pos.apply_fill(order.side, f.last_px, f.last_qty, ev.ts_event);
                    account_event_id += 1;
                    if let Some(b) = account.balances[0].as_mut() {
                        b.total.raw -= f.commission.raw;
                        b.free.raw -= f.commission.raw;
                    }
                    let aev = AccountEvent {
                        event_id: account_event_id,
                        account_id: account.id.clone(),
                        balances: account.balances,
                        margins: account.margins.clone(),
                        reported: false,
                        ts_event: ev.ts_event,
                    };
                    account.apply(&aev);
                    let ok = cache.put(pos).is_ok()
                        && cache.append(&account.id, &aev).is_ok()
                        && cache.put(&account).is_ok();
                    if !ok {
                        rejected += 1;
                    }
                    writes += 3;
                }
            }
        }
        if let Some(path) = &ack_file {
            order_seqs.push_back((orders, cache.last_seq().get()));
            let acked = cache.acked_seq().get();
            while order_seqs.front().is_some_and(|(_, seq)| *seq <= acked) {
                acked_orders = order_seqs.pop_front().map_or(acked_orders, |(o, _)| o);
            }
            let tmp = std::path::Path::new(path).with_extension("tmp");
            std::fs::write(&tmp, format!("{run} {acked_orders}\n"))?;
            std::fs::rename(&tmp, path)?;
        }
        // A real engine waits for market data here; pace the simulation.
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed();
    cache.flush(Duration::from_secs(30))?;
    let durable = start.elapsed();
    let stats = cache.stats();
    println!(
        "wrote {orders} orders ({writes} writes) in {:.2} s: {:.0} writes/s offered; all acknowledged after {:.2} s",
        elapsed.as_secs_f64(),
        writes as f64 / elapsed.as_secs_f64(),
        durable.as_secs_f64()
    );
    // `Stats` and `Health` print for a person; `{:?}` shows every field.
    println!("stats: {stats}");
    println!("write calls: slowest {}; {rejected} refused (the value handed back)", readable_ns(put_ns_max));
    println!("cache {}", cache.health());
    let report = cache.close(Duration::from_secs(10))?;
    println!("closed cleanly: {} writes acknowledged, {} unpersisted", report.acked_seq, report.unpersisted);
    Ok(())
}

/// `850 ns`, `4.1 µs`, `28.8 ms`: a short duration in the unit that reads best.
fn readable_ns(ns: u128) -> String {
    match ns {
        0..=999 => format!("{ns} ns"),
        1_000..=999_999 => format!("{:.1} µs", ns as f64 / 1e3),
        _ => format!("{:.1} ms", ns as f64 / 1e6),
    }
}
