//! `load()` of the reference model, and bad data in Redis reported by key.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;
use tradecache::model::{Account, Instrument, Order, OrderEvent, OrderEventKind, Position, UnixNanos};
use tradecache::{Cache, Ident, OverflowPolicy};

#[test]
fn load_returns_the_model() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    cache.put(&Instrument::example("BTCUSDT-PERP.BINANCE")).unwrap();
    cache.put(&Account::example("BINANCE-001")).unwrap();
    let order = write_order_and_position(&cache);
    // A repeated event id is dropped on load and counted.
    let dup = OrderEvent {
        event_id: 2,
        client_order_id: order.client_order_id.clone(),
        ts_event: UnixNanos(9),
        kind: OrderEventKind::Expired,
    };
    cache.append("O-1", &dup).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();

    let snap = cache.load().unwrap();
    assert_eq!(snap.instruments, vec![Instrument::example("BTCUSDT-PERP.BINANCE")]);
    assert_eq!(snap.accounts, vec![Account::example("BINANCE-001")]);
    assert_eq!(snap.orders, vec![order]);
    assert_eq!(snap.order_events[&Ident::new("O-1").unwrap()].len(), 2);
    assert_eq!(snap.report.duplicate_events, 1);
    assert_eq!(snap.positions, vec![Position::example("P-1")]);
    assert!(snap.report.is_clean(), "{:?}", snap.report);
}

#[test]
fn bad_data_is_reported_not_fatal() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    cache.put(&Position::example("P-1")).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let mut con = server.client();
    // Garbage bytes, a key of the wrong type, and an index entry without value.
    let _: () = redis::cmd("SET")
        .arg("trader-T1:positions:P-2")
        .arg(&b"\xc1\xff garbage"[..])
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("RPUSH").arg("trader-T1:positions:P-3").arg("x").query(&mut con).unwrap();
    let _: () = redis::cmd("SADD")
        .arg("trader-T1:index:positions")
        .arg("P-2")
        .arg("P-3")
        .arg("P-4")
        .query(&mut con)
        .unwrap();

    let snap = cache.load().unwrap();
    assert_eq!(snap.positions, vec![Position::example("P-1")]);
    let keys: Vec<&str> = snap.report.issues.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, vec!["trader-T1:positions:P-2", "trader-T1:positions:P-3", "trader-T1:positions:P-4"]);
    assert!(snap.report.issues[1].problem.contains("WRONGTYPE"), "{:?}", snap.report.issues);

    let strict = Cache::open(config(server.port(), "T1").strict_load(true)).unwrap();
    let err = strict.load().unwrap_err();
    assert!(err.to_string().contains("trader-T1:positions:P-2"), "{err}");
}

#[test]
fn account_events_only_when_enabled() {
    use tradecache::model::AccountEvent;
    let server = RedisServer::start();
    let account = Account::example("BINANCE-001");
    let event = AccountEvent {
        event_id: 1,
        account_id: account.id.clone(),
        balances: account.balances,
        margins: account.margins.clone(),
        reported: true,
        ts_event: UnixNanos(1),
    };
    for (trader, on) in [("ON", true), ("OFF", false)] {
        let cache = Cache::open(config(server.port(), trader).persist_account_events(on)).unwrap();
        cache.put(&account).unwrap();
        cache.append("BINANCE-001", &event).unwrap();
        cache.flush(Duration::from_secs(5)).unwrap();
        let snap = cache.load().unwrap();
        assert_eq!(snap.accounts.len(), 1);
        assert_eq!(snap.account_events.values().map(Vec::len).sum::<usize>(), usize::from(on), "{trader}");
    }
}

#[test]
fn json_encoding_with_iso8601_timestamps() {
    let server = RedisServer::start();
    let cfg =
        tradecache::Config::debug().host("127.0.0.1").port(server.port()).trader_id("J1").connect_attempts(1);
    let cache = Cache::open(cfg).unwrap();
    cache.put(&Position::example("P-1")).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let raw: String = redis::cmd("GET").arg("trader-J1:positions:P-1").query(&mut server.client()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(json["id"], "P-1");
    assert!(json["to"].as_str().unwrap().ends_with('Z'), "ts_opened is stored as \"to\": {raw}");
    assert_eq!(cache.load().unwrap().positions, vec![Position::example("P-1")]);
}

/// A log much longer than one read slice (an account's balance events: one
/// per fill) loads whole and in order; a repeated event id in a later
/// slice is dropped and counted; a bad entry is reported at its index.
#[test]
fn long_event_logs_load_whole_in_order() {
    use tradecache::model::AccountEvent;
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "LONG")).unwrap();
    let account = Account::example("BINANCE-001");
    cache.put(&account).unwrap();
    let n = 10_000u64;
    for id in 1..=n {
        cache.append("BINANCE-001", &AccountEvent::snapshot_of(&account, id, UnixNanos(id))).unwrap();
    }
    // Event 5 again, near the end (a later slice than the first).
    cache.append("BINANCE-001", &AccountEvent::snapshot_of(&account, 5, UnixNanos(5))).unwrap();
    cache.flush(Duration::from_secs(10)).unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg("trader-LONG:accounts:BINANCE-001:events")
        .arg(&b"\xc1"[..])
        .query(&mut server.client())
        .unwrap();

    let snap = cache.load().unwrap();
    let log = &snap.account_events[&Ident::new("BINANCE-001").unwrap()];
    assert_eq!(log.iter().map(|e| e.event_id).collect::<Vec<_>>(), (1..=n).collect::<Vec<_>>());
    assert_eq!(snap.report.duplicate_events, 1);
    let keys: Vec<&str> = snap.report.issues.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, vec!["trader-LONG:accounts:BINANCE-001:events[10001]"], "{:?}", snap.report);
    assert_eq!(snap.accounts, vec![account]);
}

/// `load` returns a state some prefix of the acknowledged batches
/// produced: here, each order's snapshot counts the events in its log, and
/// a load while a writer keeps both moving must never see them disagree
/// when it reports itself consistent.
#[test]
fn load_is_a_consistent_cut_or_says_it_is_not() {
    let server = RedisServer::start();
    let cfg =
        config(server.port(), "T1").overflow(OverflowPolicy::Block { timeout: Duration::from_secs(30) });
    let cache = Arc::new(Cache::open(cfg).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (cache, done) = (cache.clone(), done.clone());
        std::thread::spawn(move || {
            for n in 1..=300u64 {
                for o in 0..20 {
                    let id = format!("O-{o}");
                    let mut order = Order::example(&id);
                    let ev = OrderEvent {
                        event_id: n,
                        client_order_id: order.client_order_id.clone(),
                        ts_event: UnixNanos(n),
                        kind: OrderEventKind::Canceled,
                    };
                    order.event_count = n as u32;
                    cache.append(&id, &ev).unwrap();
                    cache.put(&order).unwrap();
                }
                // Pauses between rounds, so that some loads fall between
                // batches and some across them.
                std::thread::sleep(ms(3));
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let (mut loads, mut consistent) = (0, 0);
    while !done.load(Ordering::SeqCst) && loads < 200 {
        let snap = cache.load().unwrap();
        loads += 1;
        if !snap.report.consistent {
            continue;
        }
        consistent += 1;
        for order in &snap.orders {
            let events = snap.order_events.get(&order.client_order_id).map_or(0, Vec::len) as u64;
            assert_eq!(
                u64::from(order.event_count),
                events,
                "order {} and its log are from different batches",
                order.client_order_id
            );
        }
    }
    writer.join().unwrap();
    cache.flush(Duration::from_secs(10)).unwrap();
    eprintln!("{consistent} of {loads} loads under writes were consistent cuts");
    let snap = cache.load().unwrap();
    assert!(snap.report.consistent, "{:?}", snap.report);
    assert_eq!(snap.orders.len(), 20);
}

/// `load_all_with_events`: a type of the user's own with its logs in one
/// call, each log in append order with repeats dropped, and enough
/// entities that the load goes over several connections.
#[test]
fn a_user_type_loads_with_its_event_logs() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    for i in 0..3_000u64 {
        let id = format!("C-{i:04}");
        cache.put(&counter_v(&id, i)).unwrap();
        for n in 1..=(i % 4) {
            cache.append(&id, &Tick { n }).unwrap();
        }
    }
    // A repeat of an event id is dropped on load and counted.
    cache.append("C-0003", &Tick { n: 2 }).unwrap();
    cache.flush(Duration::from_secs(30)).unwrap();
    let (counters, events, report) = cache.load_all_with_events::<Tick>().unwrap();
    assert_eq!(counters.len(), 3_000);
    assert!(counters.windows(2).all(|w| w[0].id < w[1].id), "sorted by id");
    assert_eq!(report.duplicate_events, 1, "{report:?}");
    assert_eq!(events.len(), 3_000 / 4 * 3, "an entity without events has no entry");
    for (i, c) in counters.iter().enumerate() {
        let want: Vec<u64> = (1..=(i as u64 % 4)).collect();
        let got: Vec<u64> =
            events.get(c.id.as_str()).map(|e| e.iter().map(|t| t.n).collect()).unwrap_or_default();
        assert_eq!(got, want, "{}", c.id);
    }
}
