//! Point reads (`get`, `get_events`) and market-data series
//! (`append_market_data`, `load_ticks`, `load_bars`) against real Redis:
//! read-your-writes (also with Redis stalled while a write is pending),
//! capped lists that keep exactly the newest `capacity` entries, and a
//! model-based run of random operations against an in-memory model.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::harness::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, TestRng, TestRunner};
use serde::{Deserialize, Serialize};
use tradecache::model::{
    Bar, Order, OrderEvent, OrderEventKind, Position, Price, QuoteTick, TradeTick, UnixNanos,
};
use tradecache::{Cache, ErrorKind, MarketData, SeriesCapacity};

fn ev(id: u64, kind: OrderEventKind) -> OrderEvent {
    ev_at(id, id, kind)
}

fn ev_at(id: u64, ts: u64, kind: OrderEventKind) -> OrderEvent {
    OrderEvent {
        event_id: id,
        client_order_id: tradecache::Ident::new("O-1").unwrap(),
        ts_event: UnixNanos(ts),
        kind,
    }
}

#[test]
fn get_and_get_events_read_back_what_was_written() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "R1")).unwrap();
    assert_eq!(cache.get::<Position>("P-1").unwrap(), None);
    assert!(cache.get_events::<OrderEvent>("O-1").unwrap().is_empty());

    // Accepted, not waited for: the reads see them.
    let p = Position::example("P-1");
    cache.put(&p).unwrap();
    assert_eq!(cache.get::<Position>("P-1").unwrap(), Some(p));
    let order = write_order_and_position(&cache);
    assert_eq!(cache.get::<Order>("O-1").unwrap(), Some(order));
    let events = cache.get_events::<OrderEvent>("O-1").unwrap();
    // As `write_order_and_position` appended them (ids 1 and 2, at 0 and 1).
    assert_eq!(events, vec![ev_at(1, 0, OrderEventKind::Canceled), ev_at(2, 1, OrderEventKind::Expired)]);
    // A repeated event id is dropped, as by `load`.
    cache.append("O-1", &ev(2, OrderEventKind::Expired)).unwrap();
    assert_eq!(cache.get_events::<OrderEvent>("O-1").unwrap().len(), 2);

    // User types, and a delete.
    cache.put(&Counter { id: "C".into(), value: 3 }).unwrap();
    cache.append("C", &Tick { n: 1 }).unwrap();
    assert_eq!(cache.get::<Counter>("C").unwrap(), Some(Counter { id: "C".into(), value: 3 }));
    assert_eq!(cache.get_events::<Tick>("C").unwrap(), vec![Tick { n: 1 }]);
    cache.delete::<Counter>("C").unwrap();
    assert_eq!(cache.get::<Counter>("C").unwrap(), None);
    assert!(cache.get_events::<Tick>("C").unwrap().is_empty());

    // Never on the flusher's connection: the reads made their own, once.
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut server.client()).unwrap();
    assert_eq!(clients.lines().count(), 3, "flusher, read connection, this one:\n{clients}");
}

#[test]
fn bad_input_and_bad_data_are_errors_not_panics() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "R2")).unwrap();
    assert_eq!(cache.get::<Position>("bad id").unwrap_err().kind(), ErrorKind::InvalidId);
    assert_eq!(cache.get_events::<OrderEvent>("").unwrap_err().kind(), ErrorKind::InvalidId);
    assert_eq!(cache.load_ticks::<QuoteTick>("a:b", 5).unwrap_err().kind(), ErrorKind::InvalidId);
    let mut con = server.client();
    let _: () =
        redis::cmd("SET").arg("trader-R2:positions:P-2").arg(&b"\xc1junk"[..]).query(&mut con).unwrap();
    let _: () = redis::cmd("RPUSH").arg("trader-R2:positions:P-3").arg("x").query(&mut con).unwrap();
    let e = cache.get::<Position>("P-2").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Codec, "{e}");
    assert!(e.to_string().contains("trader-R2:positions:P-2"), "{e}");
    let e = cache.get::<Position>("P-3").unwrap_err();
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");
    // A value stored under another id's key.
    cache.put(&Position::example("P-4")).unwrap();
    cache.flush(ms(2_000)).unwrap();
    let _: () = redis::cmd("COPY")
        .arg("trader-R2:positions:P-4")
        .arg("trader-R2:positions:P-5")
        .query(&mut con)
        .unwrap();
    assert!(cache.get::<Position>("P-5").unwrap_err().to_string().contains("P-4"));
    let _: () = redis::cmd("RPUSH").arg("trader-R2:orders:O-9:events").arg("{").query(&mut con).unwrap();
    let e = cache.get_events::<OrderEvent>("O-9").unwrap_err();
    assert!(e.to_string().contains("trader-R2:orders:O-9:events[0]"), "{e}");
    let _: () = redis::cmd("RPUSH").arg("trader-R2:quotes:X:events").arg("{").query(&mut con).unwrap();
    let (q, report) = cache.load_ticks::<QuoteTick>("X", 10).unwrap();
    assert!(q.is_empty() && report.issues.len() == 1, "{report:?}");
    let strict = Cache::open(config(server.port(), "R2").strict_load(true)).unwrap();
    assert_eq!(strict.load_ticks::<QuoteTick>("X", 10).unwrap_err().kind(), ErrorKind::Codec);
}

/// Read-your-writes with Redis stalled (SIGSTOP) while a `put` and an
/// `append` are pending: a read issued after SIGCONT, and one issued during
/// a short stall, both return the new values. The long stall outlasts the
/// flusher's response timeout, so the write reaches Redis only after a
/// reconnect.
#[test]
fn reads_see_writes_still_pending_when_redis_was_stalled() {
    let server = RedisServer::start();
    for (round, stall_ms) in [(1u64, 300u64), (2, 1_500)] {
        let cache = Arc::new(Cache::open(config(server.port(), &format!("R3-{round}"))).unwrap());
        let mut p = Position::example("P-1");
        cache.put(&p).unwrap();
        assert_eq!(cache.get::<Position>("P-1").unwrap(), Some(p.clone())); // read connection open
        cache.flush(ms(2_000)).unwrap();

        server.pause();
        p.ts_last = UnixNanos(2);
        let seq = cache.put(&p).unwrap();
        cache.append("O-1", &ev(1, OrderEventKind::Canceled)).unwrap();
        std::thread::sleep(ms(100));
        assert!(cache.acked_seq() < seq, "the write is pending while Redis is stopped");
        let during = (stall_ms < 1_000).then(|| {
            let cache = cache.clone();
            std::thread::spawn(move || cache.get::<Position>("P-1"))
        });
        std::thread::sleep(ms(stall_ms - 100));
        server.resume();
        assert_eq!(cache.get::<Position>("P-1").unwrap(), Some(p.clone()), "after SIGCONT ({stall_ms} ms)");
        if let Some(during) = during {
            assert_eq!(during.join().unwrap().unwrap(), Some(p), "issued during the stall");
        }
        assert_eq!(cache.get_events::<OrderEvent>("O-1").unwrap(), vec![ev(1, OrderEventKind::Canceled)]);
        if stall_ms > 1_000 {
            assert!(cache.health().reconnects >= 1, "{:?}", cache.health());
        }
    }
}

#[test]
fn series_keep_exactly_the_newest_capacity_entries() {
    let server = RedisServer::start();
    let (ticks, bars) = (200usize, 50usize);
    let cache = Cache::open(config(server.port(), "R4").tick_capacity(ticks).bar_capacity(bars)).unwrap();
    let inst = "BTCUSDT-PERP.BINANCE";
    let bar_type = "BTCUSDT-PERP.BINANCE-1-MINUTE-LAST-EXTERNAL";
    // 3 × capacity, interleaved across series (several RPUSH + LTRIM runs
    // per batch) and across batches.
    for i in 0..(3 * ticks) as u64 {
        cache.append_market_data(&QuoteTick::example(inst, UnixNanos(i))).unwrap();
        cache.append_market_data(&TradeTick::example(inst, UnixNanos(i))).unwrap();
        if i < (3 * bars) as u64 {
            cache.append_market_data(&Bar::example(bar_type, UnixNanos(i))).unwrap();
        }
        if i % 97 == 0 {
            cache.flush(ms(2_000)).unwrap();
        }
    }
    cache.flush(ms(5_000)).unwrap();
    let mut con = server.client();
    for (key, cap) in [("quotes", ticks), ("trades", ticks)] {
        let len: usize =
            redis::cmd("LLEN").arg(format!("trader-R4:{key}:{inst}:events")).query(&mut con).unwrap();
        assert_eq!(len, cap, "{key}");
    }
    let newest = |from: usize, to: usize| (from as u64..to as u64).map(UnixNanos).collect::<Vec<_>>();

    let (q, report) = cache.load_ticks::<QuoteTick>(inst, 10 * ticks).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(q.iter().map(|t| t.ts_event).collect::<Vec<_>>(), newest(2 * ticks, 3 * ticks));
    let (t, _) = cache.load_ticks::<TradeTick>(inst, 10).unwrap();
    assert_eq!(t.iter().map(|t| t.ts_event).collect::<Vec<_>>(), newest(3 * ticks - 10, 3 * ticks));
    assert_eq!(t.last(), Some(&TradeTick::example(inst, UnixNanos(3 * ticks as u64 - 1))));
    let (b, _) = cache.load_bars(bar_type, bars).unwrap();
    assert_eq!(b.iter().map(|b| b.ts_event).collect::<Vec<_>>(), newest(2 * bars, 3 * bars));
    assert!(cache.load_bars(bar_type, 0).unwrap().0.is_empty());
    assert!(cache.load_ticks::<QuoteTick>("ETHUSDT-PERP.BINANCE", 5).unwrap().0.is_empty());
    assert_eq!(cache.stats().dropped, 0);
}

/// A market-data type of the user's own, boxed through the channel, with
/// its capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Funding {
    inst: String,
    n: u64,
}

impl MarketData for Funding {
    const COLLECTION: &'static str = "funding";
    const CAPACITY: SeriesCapacity = SeriesCapacity::Bars;
    fn series_id(&self) -> &str {
        &self.inst
    }
}

#[test]
fn user_market_data_is_capped_too() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "R5").bar_capacity(7)).unwrap();
    for n in 0..30 {
        cache.append_market_data(&Funding { inst: "X".into(), n }).unwrap();
    }
    let (got, _) = cache.load_ticks::<Funding>("X", 100).unwrap();
    assert_eq!(got.iter().map(|f| f.n).collect::<Vec<_>>(), (23..30).collect::<Vec<_>>());
    let bad = Funding { inst: "no spaces".into(), n: 0 };
    assert!(cache.append_market_data(&bad).is_err());
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u64),
    Delete(u8),
    Get(u8),
    Append(u8, u64),
    GetEvents(u8),
    Quote(u8, u64),
    LoadTicks(u8, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4, any::<u64>()).prop_map(|(i, v)| Op::Put(i, v)),
        (0u8..4).prop_map(Op::Delete),
        (0u8..4).prop_map(Op::Get),
        (0u8..4, any::<u64>()).prop_map(|(i, v)| Op::Append(i, v)),
        (0u8..4).prop_map(Op::GetEvents),
        (0u8..2, any::<u64>()).prop_map(|(i, v)| Op::Quote(i, v)),
        (0u8..2, 0usize..12).prop_map(|(i, n)| Op::LoadTicks(i, n)),
    ]
}

/// Random sequences of writes and reads against an in-memory model: every
/// read returns exactly what the model holds (reads see every write
/// accepted before them; a capped series holds its newest 5 entries).
#[test]
fn reads_follow_a_model_of_the_writes() {
    let server = RedisServer::start();
    let settings = ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() };
    let mut runner = TestRunner::new_with_rng(settings, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let case = std::sync::atomic::AtomicU32::new(0);
    let result = runner.run(&proptest::collection::vec(op(), 1..60), |ops| {
        let trader = format!("M{}", case.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        let cache = Cache::open(config(server.port(), &trader).tick_capacity(5)).unwrap();
        let mut counters: BTreeMap<u8, u64> = BTreeMap::new();
        let mut logs: BTreeMap<u8, Vec<u64>> = BTreeMap::new();
        let mut quotes: BTreeMap<u8, VecDeque<u64>> = BTreeMap::new();
        let name = |i: u8| format!("C-{i}");
        let inst = |i: u8| format!("I-{i}");
        for op in ops {
            match op {
                Op::Put(i, v) => {
                    cache.put(&Counter { id: name(i), value: v }).unwrap();
                    counters.insert(i, v);
                }
                Op::Delete(i) => {
                    cache.delete::<Counter>(&name(i)).unwrap();
                    counters.remove(&i);
                    logs.remove(&i);
                }
                Op::Get(i) => {
                    let got = cache.get::<Counter>(&name(i)).unwrap().map(|c| c.value);
                    prop_assert_eq!(got, counters.get(&i).copied(), "get {}", i);
                }
                Op::Append(i, v) => {
                    // Event ids must be unique within a log (repeats are dropped).
                    let n = logs.get(&i).map_or(0, Vec::len) as u64;
                    let id = (v % 1_000) * 1_000 + n;
                    if logs.get(&i).is_some_and(|l| l.contains(&id)) {
                        continue;
                    }
                    cache.append(&name(i), &Tick { n: id }).unwrap();
                    logs.entry(i).or_default().push(id);
                }
                Op::GetEvents(i) => {
                    let got: Vec<u64> =
                        cache.get_events::<Tick>(&name(i)).unwrap().iter().map(|t| t.n).collect();
                    prop_assert_eq!(got, logs.get(&i).cloned().unwrap_or_default(), "get_events {}", i);
                }
                Op::Quote(i, v) => {
                    let mut q = QuoteTick::example(&inst(i), UnixNanos(v));
                    q.bid_price = Price::new(v as i64 & 0xffff, 2);
                    cache.append_market_data(&q).unwrap();
                    let series = quotes.entry(i).or_default();
                    series.push_back(v);
                    if series.len() > 5 {
                        series.pop_front();
                    }
                }
                Op::LoadTicks(i, n) => {
                    let (got, report) = cache.load_ticks::<QuoteTick>(&inst(i), n).unwrap();
                    prop_assert!(report.is_clean());
                    let all: Vec<u64> =
                        quotes.get(&i).map(|q| q.iter().copied().collect()).unwrap_or_default();
                    let want = all[all.len().saturating_sub(n)..].to_vec();
                    prop_assert_eq!(
                        got.iter().map(|q| q.ts_event.0).collect::<Vec<_>>(),
                        want,
                        "load_ticks {} {}",
                        i,
                        n
                    );
                }
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
