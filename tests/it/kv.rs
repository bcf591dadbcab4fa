//! The general caching layer (`tradecache::kv`) against real redis-server
//! processes: TTLs, sessions, namespaces, compression, read-your-writes,
//! the near cache and its invalidation, the circuit breaker, compute on
//! miss with Redis down, single flight, outages, bad input and corrupt
//! values, and the deployment modes (ACL, TLS, Sentinel, Cluster).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use crate::harness::topology::{acl_setuser, connect, wait_until, Cluster, SentinelSetup, TOPOLOGY_TIMEOUT};
use crate::harness::{capture_logs, keys, logged, raw_get, RedisServer};
use serde::{Deserialize, Serialize};
use tradecache::kv::{self, BreakerState, Kv, KvConfig, Ttl};
use tradecache::model::{Currency, Money, Price, Quantity, UnixNanos};
use tradecache::{Encoding, Error, ErrorKind};

pub(crate) const LONG: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Quote {
    bid: Price,
    ask: Price,
    size: Quantity,
    ts: UnixNanos,
}

fn quote(n: i64) -> Quote {
    Quote {
        bid: Price::new(18_950 + n, 2),
        ask: Price::new(18_952 + n, 2),
        size: Quantity::new(1_500, 3),
        ts: UnixNanos(1_700_000_000_000_000_000 + n as u64),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Portfolio {
    id: String,
    value: Money,
    positions: u32,
}

/// A kv config for the private server on `port`, with test-sized bounds.
pub(crate) fn kv_config(port: u16, prefix: &str) -> KvConfig {
    KvConfig::builder().redis(crate::harness::config(port, "KV")).key_prefix(prefix)
}

pub(crate) fn open(port: u16, prefix: &str) -> Kv {
    Kv::open(kv_config(port, prefix)).expect("open kv")
}

fn pttl(con: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query(con).expect("PTTL")
}

#[test]
fn values_round_trip_exactly_with_ttls_from_the_namespace_policy() {
    let server = RedisServer::start();
    let kv = Kv::open(kv_config(server.port(), "t1").ttl("fast", Duration::from_millis(300))).unwrap();
    let q = quote(1);
    let p = Portfolio {
        id: "P-123".into(),
        value: Money::new(123_456_789, 2, Currency::new("USD").unwrap()),
        positions: 3,
    };
    kv.set("market_data", "AAPL:quote", &q, Ttl::Policy).unwrap();
    kv.set("portfolio", "P-123:value", &p, Ttl::Policy).unwrap();
    kv.set("risk", "P-123:var99", &-1_250.5f64, Ttl::After(Duration::from_secs(7))).unwrap();
    kv.set("session", "u-1", &"token-abc", Ttl::Never).unwrap();
    kv.set("fast", "k", &1u8, Ttl::Policy).unwrap();
    kv.flush(LONG).unwrap();

    let mut con = server.client();
    let ttl = |con: &mut redis::Connection, k: &str| pttl(con, k);
    let md = ttl(&mut con, "t1:market_data:AAPL:quote");
    assert!(md > 50_000 && md <= 60_000, "market_data PTTL {md}");
    let pf = ttl(&mut con, "t1:portfolio:P-123:value");
    assert!(pf > 290_000 && pf <= 300_000, "portfolio PTTL {pf}");
    let rk = ttl(&mut con, "t1:risk:P-123:var99");
    assert!(rk > 5_000 && rk <= 7_000, "risk PTTL {rk}");
    assert_eq!(ttl(&mut con, "t1:session:u-1"), -1, "Ttl::Never");

    // Read back through a second handle, so Redis (not this process's
    // queued writes) answers.
    let other = open(server.port(), "t1");
    assert_eq!(other.get::<Quote>("market_data", "AAPL:quote").unwrap(), Some(q.clone()));
    assert_eq!(other.get::<Portfolio>("portfolio", "P-123:value").unwrap(), Some(p));
    assert_eq!(other.get::<f64>("risk", "P-123:var99").unwrap(), Some(-1_250.5));
    assert_eq!(other.get::<String>("session", "u-1").unwrap().as_deref(), Some("token-abc"));
    assert!(other.exists("session", "u-1").unwrap());
    assert!(!other.exists("session", "u-2").unwrap());

    // The short policy expires: Redis drops the key, get misses.
    wait_until(
        "the 300 ms key to expire",
        LONG,
        || raw_get(&mut con, "t1:fast:k").is_none(),
        || format!("PTTL {}", pttl(&mut server.client(), "t1:fast:k")),
    );
    assert_eq!(other.get::<u8>("fast", "k").unwrap(), None);
    assert_eq!(kv.get::<u8>("fast", "k").unwrap(), None);
    let s = other.stats();
    assert!(s.hits >= 4 && s.misses >= 1, "{s:?}");
    assert!(s.latency_of(kv::Op::Get).is_some(), "{s:?}");
    kv.close(LONG).unwrap();
}

#[test]
fn an_expired_ttl_is_respected_in_process_before_the_write() {
    let server = RedisServer::start();
    let kv = open(server.port(), "t2");
    // The write is queued with its deadline; a get after it passes misses,
    // written or not.
    kv.set("market_data", "X:px", &1u32, Ttl::After(Duration::from_millis(50))).unwrap();
    thread::sleep(Duration::from_millis(80));
    assert_eq!(kv.get::<u32>("market_data", "X:px").unwrap(), None);
    kv.flush(LONG).unwrap();
    assert_eq!(raw_get(&mut server.client(), "t2:market_data:X:px"), None);
}

#[test]
fn touch_extends_a_session() {
    let server = RedisServer::start();
    let kv = Kv::open(kv_config(server.port(), "t3").ttl("session", Duration::from_millis(400))).unwrap();
    kv.set("session", "u-1", &"alice", Ttl::Policy).unwrap();
    kv.set("session", "u-2", &"bob", Ttl::Policy).unwrap();
    kv.flush(LONG).unwrap();
    let mut con = server.client();
    assert!(pttl(&mut con, "t3:session:u-1") <= 400);
    // u-1 is extended to 30 s; u-2 is left to expire.
    kv.touch("session", "u-1", Ttl::After(Duration::from_secs(30))).unwrap();
    kv.flush(LONG).unwrap();
    assert!(pttl(&mut con, "t3:session:u-1") > 20_000);
    wait_until("u-2 to expire", LONG, || raw_get(&mut con, "t3:session:u-2").is_none(), String::new);
    assert_eq!(kv.get::<String>("session", "u-1").unwrap().as_deref(), Some("alice"));
    assert_eq!(kv.get::<String>("session", "u-2").unwrap(), None);
    // Ttl::Never makes it persistent; touching a missing key creates nothing.
    kv.touch("session", "u-1", Ttl::Never).unwrap();
    kv.touch("session", "nobody", Ttl::Policy).unwrap();
    kv.flush(LONG).unwrap();
    assert_eq!(pttl(&mut con, "t3:session:u-1"), -1);
    assert_eq!(raw_get(&mut con, "t3:session:nobody"), None);
    // A touch before the set is written rides with it.
    kv.set("session", "u-3", &"carol", Ttl::Policy).unwrap();
    kv.touch("session", "u-3", Ttl::After(Duration::from_secs(60))).unwrap();
    kv.flush(LONG).unwrap();
    assert!(pttl(&mut con, "t3:session:u-3") > 50_000);
}

#[test]
fn clear_namespace_removes_exactly_its_namespace() {
    let server = RedisServer::start();
    let kv = open(server.port(), "t4");
    let mut con = server.client();
    // Another prefix's keys and a foreign key must survive.
    let _: () = redis::cmd("SET").arg("t4x:market_data:A").arg("foreign").query(&mut con).unwrap();
    let _: () = redis::cmd("SET").arg("market_data:A").arg("foreign").query(&mut con).unwrap();
    let other = open(server.port(), "t4x");
    other.set("market_data", "B", &1u8, Ttl::Policy).unwrap();
    other.flush(LONG).unwrap();
    for i in 0..2500 {
        kv.set("market_data", &format!("S{i}:quote"), &quote(i), Ttl::Policy).unwrap();
    }
    kv.set("market_dat", "A", &1u8, Ttl::Policy).unwrap();
    kv.set("portfolio", "P-1", &2u8, Ttl::Policy).unwrap();
    // Queued, not yet written: cleared too.
    let n = kv.clear_namespace("market_data").unwrap();
    assert_eq!(n, 2500);
    assert!(keys(&mut con, "t4:market_data:*").is_empty());
    assert_eq!(
        keys(&mut con, "*"),
        ["t4x:market_data:A", "market_data:A", "t4x:market_data:B", "t4:market_dat:A", "t4:portfolio:P-1"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    assert_eq!(kv.get::<Quote>("market_data", "S1:quote").unwrap(), None);
    assert_eq!(kv.clear_namespace("market_data").unwrap(), 0);
    assert!(matches!(kv.clear_namespace("bad:ns"), Err(Error::InvalidId(_))));
}

#[test]
fn compression_round_trips_at_the_threshold_plus_minus_one_byte() {
    let server = RedisServer::start();
    let threshold = 1024;
    let kv = Kv::open(kv_config(server.port(), "t5").compress_threshold(threshold)).unwrap();
    let mut con = server.client();
    // A MessagePack string of n bytes is n + 3 bytes (str16 header) from 256 on.
    for (name, encoded) in [("below", threshold - 1), ("at", threshold), ("above", threshold + 1)] {
        let s = "x".repeat(encoded - 3);
        kv.set("blob", name, &s, Ttl::Policy).unwrap();
        kv.flush(LONG).unwrap();
        let stored = raw_get(&mut con, &format!("t5:blob:{name}")).unwrap();
        if encoded > threshold {
            assert_eq!(stored[0], 0xA1, "{name}: compressed");
            assert!(stored.len() < 100, "{name}: {} bytes", stored.len());
        } else {
            assert_eq!((stored[0], stored.len()), (0xA0, encoded + 1), "{name}: plain");
        }
        assert_eq!(kv::decode::<String>(&stored).unwrap(), s);
        let fresh = open(server.port(), "t5");
        assert_eq!(fresh.get::<String>("blob", name).unwrap(), Some(s), "{name}");
    }
    // Plain and compressed values coexist: a reader with another threshold
    // reads both.
    let other = Kv::open(kv_config(server.port(), "t5").compress_threshold(0)).unwrap();
    assert_eq!(other.get_many::<String>("blob", &["below", "above"]).unwrap().iter().flatten().count(), 2);
    // JSON (debug preset) values carry their own header.
    let json = Kv::open(
        KvConfig::debug()
            .redis(crate::harness::config(server.port(), "KV").encoding(Encoding::Json))
            .key_prefix("t5"),
    )
    .unwrap();
    json.set("blob", "json", &quote(2), Ttl::Policy).unwrap();
    json.flush(LONG).unwrap();
    let stored = raw_get(&mut con, "t5:blob:json").unwrap();
    assert_eq!(stored[0], 0xA2);
    assert_eq!(open(server.port(), "t5").get::<Quote>("blob", "json").unwrap(), Some(quote(2)));
}

#[test]
fn read_your_writes_before_the_writer_has_written() {
    let server = RedisServer::start();
    let kv = open(server.port(), "t6");
    kv.set("portfolio", "P-1", &1u32, Ttl::Policy).unwrap();
    kv.flush(LONG).unwrap();
    // Frozen Redis: nothing this process writes now can reach it, yet the
    // process reads what it wrote (the queued writes answer, not Redis).
    server.pause();
    kv.set("portfolio", "P-1", &2u32, Ttl::Policy).unwrap();
    assert_eq!(kv.get::<u32>("portfolio", "P-1").unwrap(), Some(2));
    kv.set_many("portfolio", &[("P-2", &20u32), ("P-3", &30u32)], Ttl::Policy).unwrap();
    assert_eq!(
        kv.get_many::<u32>("portfolio", &["P-1", "P-2", "P-3"]).unwrap(),
        vec![Some(2), Some(20), Some(30)]
    );
    kv.delete("portfolio", "P-2").unwrap();
    assert_eq!(kv.get::<u32>("portfolio", "P-2").unwrap(), None);
    assert!(!kv.exists("portfolio", "P-2").unwrap());
    assert!(kv.exists("portfolio", "P-3").unwrap());
    assert!(kv.stats().overlay_hits >= 4, "{:?}", kv.stats());
    server.resume();
    kv.flush(LONG).unwrap();
    let mut con = server.client();
    assert_eq!(kv::decode::<u32>(&raw_get(&mut con, "t6:portfolio:P-1").unwrap()).unwrap(), 2);
    assert_eq!(raw_get(&mut con, "t6:portfolio:P-2"), None);
    // Once written, Redis answers, and with the same values.
    let other = open(server.port(), "t6");
    assert_eq!(
        other.get_many::<u32>("portfolio", &["P-1", "P-2", "P-3"]).unwrap(),
        vec![Some(2), None, Some(30)]
    );
}

#[test]
fn get_many_pipelines_mgets_and_keeps_order() {
    let server = RedisServer::start();
    let kv = Kv::open(kv_config(server.port(), "t7").max_batch_size(7)).unwrap();
    let names: Vec<String> = (0..50).map(|i| format!("S{i}")).collect();
    for (i, n) in names.iter().enumerate().filter(|(i, _)| i % 3 != 0) {
        kv.set("market_data", n, &(i as u64), Ttl::Policy).unwrap();
    }
    kv.flush(LONG).unwrap();
    let reader = Kv::open(kv_config(server.port(), "t7").max_batch_size(7)).unwrap();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let got = reader.get_many::<u64>("market_data", &refs).unwrap();
    let want: Vec<Option<u64>> = (0..50u64).map(|i| (i % 3 != 0).then_some(i)).collect();
    assert_eq!(got, want);
    let mut admin = server.client();
    let stats: String = redis::cmd("INFO").arg("commandstats").query(&mut admin).unwrap();
    let mgets = stats.lines().find(|l| l.starts_with("cmdstat_mget:")).unwrap_or_default();
    assert!(mgets.starts_with("cmdstat_mget:calls=8,"), "one MGET per 7 keys: {mgets}");
    assert!(reader.get_many::<u64>("market_data", &[]).unwrap().is_empty());
}

#[test]
fn near_cache_serves_hits_and_is_invalidated_by_other_writers() {
    let server = RedisServer::start();
    let near = Kv::open(kv_config(server.port(), "t8").near_capacity(1000).near_ttl(Duration::from_secs(60)))
        .unwrap();
    let writer = open(server.port(), "t8");
    wait_until(
        "tracking to be set up",
        LONG,
        || near.health().near_tracking == Some(true),
        || format!("{:?}", near.health()),
    );
    writer.set("market_data", "AAPL:quote", &quote(1), Ttl::Policy).unwrap();
    writer.flush(LONG).unwrap();
    // The invalidation of that write reaches the listener on its own
    // connection, maybe after the read below: let it arrive first.
    wait_until("the write's invalidation", LONG, || near.stats().near_invalidations >= 1, String::new);
    assert_eq!(near.get::<Quote>("market_data", "AAPL:quote").unwrap(), Some(quote(1)));
    let mut admin = server.client();
    let calls = |admin: &mut redis::Connection| -> String {
        let s: String = redis::cmd("INFO").arg("commandstats").query(admin).unwrap();
        s.lines().find(|l| l.starts_with("cmdstat_get:")).unwrap_or_default().to_string()
    };
    let before = calls(&mut admin);
    for _ in 0..100 {
        assert_eq!(near.get::<Quote>("market_data", "AAPL:quote").unwrap(), Some(quote(1)));
    }
    assert_eq!(calls(&mut admin), before, "near hits make no round trip");
    assert!(near.stats().near_hits >= 100);
    // Another process changes the key: the server's invalidation evicts it.
    let seen = near.stats().near_invalidations;
    writer.set("market_data", "AAPL:quote", &quote(2), Ttl::Policy).unwrap();
    writer.flush(LONG).unwrap();
    wait_until(
        "the near cache to see the other writer's value",
        LONG,
        || near.get::<Quote>("market_data", "AAPL:quote").unwrap() == Some(quote(2)),
        || format!("{:?}", near.stats()),
    );
    assert!(near.stats().near_invalidations > seen);
    // This process's own writes are read back at once.
    near.set("market_data", "AAPL:quote", &quote(3), Ttl::Policy).unwrap();
    assert_eq!(near.get::<Quote>("market_data", "AAPL:quote").unwrap(), Some(quote(3)));
    near.flush(LONG).unwrap();
    assert_eq!(near.get::<Quote>("market_data", "AAPL:quote").unwrap(), Some(quote(3)));
    // A deletion elsewhere is seen too.
    writer.delete("market_data", "AAPL:quote").unwrap();
    writer.flush(LONG).unwrap();
    wait_until(
        "the deletion to be seen",
        LONG,
        || near.get::<Quote>("market_data", "AAPL:quote").unwrap().is_none(),
        String::new,
    );
}

#[test]
fn near_cache_without_tracking_is_bounded_by_its_ttl() {
    let server = RedisServer::start();
    let near = Kv::open(
        kv_config(server.port(), "t9")
            .near_capacity(100)
            .near_ttl(Duration::from_millis(200))
            .near_tracking(false),
    )
    .unwrap();
    let writer = open(server.port(), "t9");
    writer.set("risk", "R", &1u32, Ttl::Policy).unwrap();
    writer.flush(LONG).unwrap();
    assert_eq!(near.get::<u32>("risk", "R").unwrap(), Some(1));
    assert_eq!(near.health().near_tracking, None);
    writer.set("risk", "R", &2u32, Ttl::Policy).unwrap();
    writer.flush(LONG).unwrap();
    wait_until("near_ttl to pass", LONG, || near.get::<u32>("risk", "R").unwrap() == Some(2), String::new);
    for i in 0..500u32 {
        writer.set("risk", &format!("K{i}"), &i, Ttl::Policy).unwrap();
    }
    writer.flush(LONG).unwrap();
    for i in 0..500u32 {
        assert_eq!(near.get::<u32>("risk", &format!("K{i}")).unwrap(), Some(i));
    }
    assert!(near.stats().near_entries <= 128, "bounded: {:?}", near.stats());
}

#[test]
fn breaker_opens_is_skipped_half_opens_and_closes() {
    let mut server = RedisServer::start();
    let open_for = Duration::from_millis(300);
    let kv = Kv::open(kv_config(server.port(), "t10").breaker_failures(3).breaker_open(open_for)).unwrap();
    kv.set("risk", "R", &7u32, Ttl::Never).unwrap();
    kv.flush(LONG).unwrap();
    let reader =
        Kv::open(kv_config(server.port(), "t10").breaker_failures(3).breaker_open(open_for)).unwrap();
    assert_eq!(reader.get::<u32>("risk", "R").unwrap(), Some(7));
    server.stop();

    // Three failures open it.
    for i in 0..3 {
        let e = reader.get::<u32>("risk", "R").unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::Io | ErrorKind::Timeout),
            "failure {i}: {e}"
        );
    }
    assert!(matches!(reader.stats().breaker, BreakerState::Open { .. }), "{:?}", reader.stats());
    // Open: a miss at once, no error, no connection attempt.
    assert_eq!(reader.get::<u32>("risk", "R").unwrap(), None);
    assert_eq!(reader.get_many::<u32>("risk", &["R", "S"]).unwrap(), vec![None, None]);
    assert!(!reader.exists("risk", "R").unwrap());
    assert_eq!(reader.clear_namespace("risk").unwrap_err().kind(), ErrorKind::Unavailable);
    let s = reader.stats();
    assert!(s.short_circuited >= 4 && s.breaker_opened == 1, "{s:?}");
    assert!(!reader.health().is_healthy());

    // After the open period one probe goes through; Redis is still down,
    // so it fails and the breaker opens again.
    thread::sleep(open_for + Duration::from_millis(50));
    assert!(reader.get::<u32>("risk", "R").is_err(), "the probe reaches (dead) Redis");
    assert!(matches!(reader.stats().breaker, BreakerState::Open { .. }));
    assert_eq!(reader.stats().breaker_opened, 2);

    // Redis is back: the next probe succeeds and closes it.
    server.restart();
    server.wait_ready(LONG);
    thread::sleep(open_for + Duration::from_millis(50));
    wait_until(
        "a probe to close the breaker",
        LONG,
        || reader.get::<u32>("risk", "R").ok().flatten() == Some(7),
        || format!("{:?}", reader.stats()),
    );
    assert_eq!(reader.stats().breaker, BreakerState::Closed);
    assert_eq!(reader.health().breaker, BreakerState::Closed);
    // The writer reconnected by itself too.
    kv.set("risk", "R", &8u32, Ttl::Never).unwrap();
    kv.flush(LONG).unwrap();
    assert_eq!(reader.get::<u32>("risk", "R").unwrap(), Some(8));
    assert!(kv.stats().reconnects >= 1, "{:?}", kv.stats());
}

#[test]
fn get_or_compute_works_uncached_with_redis_down() {
    let mut server = RedisServer::start();
    let kv =
        Kv::open(kv_config(server.port(), "t11").breaker_failures(2).breaker_open(Duration::from_secs(60)))
            .unwrap();
    // Up: computed once, then cached.
    let calls = AtomicUsize::new(0);
    let f = || {
        calls.fetch_add(1, Ordering::SeqCst);
        18_950.25f64
    };
    assert_eq!(kv.get_or_compute("market_data", "AAPL:px", Ttl::Policy, f).unwrap(), 18_950.25);
    assert_eq!(kv.get_or_compute("market_data", "AAPL:px", Ttl::Policy, f).unwrap(), 18_950.25);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    kv.flush(LONG).unwrap();

    server.stop();
    // Down (breaker closed, then open): never an error, always computed,
    // nothing cached.
    for i in 0..10u32 {
        let v = kv.get_or_compute("market_data", "MSFT:px", Ttl::Policy, || 400 + i).unwrap();
        assert_eq!(v, 400 + i, "call {i} computed afresh");
    }
    assert!(matches!(kv.stats().breaker, BreakerState::Open { .. }), "{:?}", kv.stats());
    assert_eq!(kv.get::<u32>("market_data", "MSFT:px").unwrap(), None, "nothing cached in process");
    assert_eq!(kv.stats().computed, 11);
    server.restart();
    server.wait_ready(LONG);
    assert_eq!(raw_get(&mut server.client(), "t11:market_data:MSFT:px"), None, "nothing cached in Redis");
    // Bad input is still an error, and compute is not called.
    let e = kv.get_or_compute("market_data", "a b", Ttl::Policy, || -> u32 { panic!("not called") });
    assert!(matches!(e, Err(Error::InvalidId(_))));
}

#[test]
fn single_flight_under_8_threads() {
    let server = RedisServer::start();
    let kv = Arc::new(open(server.port(), "t12"));
    let computed = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (kv, computed, barrier) = (kv.clone(), computed.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                kv.get_or_compute("risk", "BOOK:var", Ttl::Policy, || {
                    computed.fetch_add(1, Ordering::SeqCst);
                    // Long enough that every thread misses while it runs.
                    thread::sleep(Duration::from_millis(300));
                    quote(9)
                })
                .unwrap()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), quote(9));
    }
    assert_eq!(computed.load(Ordering::SeqCst), 1, "{:?}", kv.stats());
    assert_eq!(kv.stats().flight_waits + kv.stats().hits, 7, "{:?}", kv.stats());
    kv.flush(LONG).unwrap();
    assert!(raw_get(&mut server.client(), "t12:risk:BOOK:var").is_some(), "cached once");
}

#[derive(Debug, Clone)]
struct Unencodable;
impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this type refuses to be encoded"))
    }
}

#[test]
fn bad_input_is_refused_or_reported_and_corrupt_values_are_counted_misses() {
    let server = RedisServer::start();
    let kv = Kv::open(
        kv_config(server.port(), "t13")
            .redis(crate::harness::config(server.port(), "KV").max_value_bytes(1000)),
    )
    .unwrap();
    for (ns, key) in
        [("", "k"), ("a:b", "k"), ("ns", ""), ("ns", "a b"), ("ns", ":k"), ("ns", "k{x}"), ("n s", "k")]
    {
        assert!(matches!(kv.set(ns, key, &1u8, Ttl::Policy), Err(Error::InvalidId(_))), "{ns:?} {key:?}");
        assert!(matches!(kv.get::<u8>(ns, key), Err(Error::InvalidId(_))), "{ns:?} {key:?}");
        assert!(matches!(kv.delete(ns, key), Err(Error::InvalidId(_))));
        assert!(matches!(kv.touch(ns, key, Ttl::Policy), Err(Error::InvalidId(_))));
        assert!(matches!(kv.exists(ns, key), Err(Error::InvalidId(_))));
    }
    let long = "k".repeat(300);
    assert!(matches!(kv.set("ns", &long, &1u8, Ttl::Policy), Err(Error::InvalidId(_))));
    let e = kv.set("ns", "k", &1u8, Ttl::After(Duration::from_micros(10))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let e = kv.set_many("ns", &[("ok", &1u8), ("bad key", &2u8)], Ttl::Policy).unwrap_err();
    assert!(matches!(e, Error::InvalidId(_)), "{e}");
    assert_eq!(kv.get::<u8>("ns", "ok").unwrap(), None, "set_many queued nothing");
    assert_eq!(kv.stats().accepted, 0);
    // A value that cannot be encoded, or is too large encoded, is found by
    // the writer (encoding stays off the calling thread): dropped, counted,
    // reported by flush and take_dropped, with its key and reason.
    kv.set("ns", "unencodable", &Unencodable, Ttl::Policy).unwrap();
    kv.set("ns", "big", &"x".repeat(2000), Ttl::Policy).unwrap();
    kv.set("ns", "fine", &1u8, Ttl::Policy).unwrap();
    let e = kv.flush(LONG).unwrap_err();
    assert!(matches!(e, Error::Dropped { count: 2, .. }), "{e}");
    let dropped = kv.take_dropped();
    let reasons: Vec<(String, &str)> = dropped.iter().map(|d| (d.key.clone(), d.class.name())).collect();
    assert_eq!(
        reasons,
        vec![("t13:ns:unencodable".to_string(), "encode"), ("t13:ns:big".to_string(), "too_large")],
        "{dropped:?}"
    );
    assert!(dropped[1].detail.contains("max_value_bytes"), "{dropped:?}");
    kv.flush(LONG).unwrap();
    assert_eq!(kv.stats().dropped, 2);
    assert_eq!(kv.get::<u8>("ns", "unencodable").unwrap(), None);
    assert_eq!(kv.get::<String>("ns", "big").unwrap(), None);
    assert_eq!(kv.get::<u8>("ns", "fine").unwrap(), Some(1));

    // Corrupt values in Redis: each is a counted miss, never an error or a panic.
    let mut con = server.client();
    let corrupt: [(&str, &[u8]); 5] = [
        ("no-header", b"\x07"),
        ("bad-header", b"\xA8abc"),
        ("bad-lz4", b"\xA1\x10\x00\x00\x00\xff\xff\xff"),
        ("huge-claim", b"\xA1\xff\xff\xff\x7f\x00"),
        ("bad-msgpack", b"\xA0\xc1"),
    ];
    for (k, v) in corrupt {
        let _: () = redis::cmd("SET").arg(format!("t13:ns:{k}")).arg(v).query(&mut con).unwrap();
    }
    let _: () = redis::cmd("RPUSH").arg("t13:ns:a-list").arg("x").query(&mut con).unwrap();
    let _: () = redis::cmd("SET").arg("t13:ns:wrong-type").arg(b"\xA0\xa3abc").query(&mut con).unwrap();
    for k in ["no-header", "bad-header", "bad-lz4", "huge-claim", "bad-msgpack", "a-list"] {
        assert_eq!(kv.get::<u32>("ns", k).unwrap(), None, "{k}");
    }
    // A value of another type than asked for is unusable for this caller too.
    assert_eq!(kv.get::<u32>("ns", "wrong-type").unwrap(), None);
    assert_eq!(kv.get::<String>("ns", "wrong-type").unwrap().as_deref(), Some("abc"));
    let got = kv.get_many::<u32>("ns", &["bad-lz4", "a-list", "missing"]).unwrap();
    assert_eq!(got, vec![None, None, None]);
    // (MGET answers nil for a key that is not a string: a plain miss there.)
    let s = kv.stats();
    assert_eq!(s.corrupt, 8, "{s:?}");
    // get_or_compute over a corrupt value computes and replaces it.
    assert_eq!(kv.get_or_compute("ns", "bad-lz4", Ttl::Policy, || 5u32).unwrap(), 5);
    kv.flush(LONG).unwrap();
    assert_eq!(open(server.port(), "t13").get::<u32>("ns", "bad-lz4").unwrap(), Some(5));
}

#[derive(Debug, Clone)]
enum ModelOp {
    Set(u8, u32),
    Delete(u8),
    Touch(u8),
    Get(u8),
    GetMany,
    Flush,
}

fn model_op() -> impl proptest::strategy::Strategy<Value = ModelOp> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0..8u8, any::<u32>()).prop_map(|(k, v)| ModelOp::Set(k, v)),
        2 => (0..8u8).prop_map(ModelOp::Delete),
        1 => (0..8u8).prop_map(ModelOp::Touch),
        4 => (0..8u8).prop_map(ModelOp::Get),
        1 => Just(ModelOp::GetMany),
        1 => Just(ModelOp::Flush),
    ]
}

/// Random sequences of writes and reads against an in-memory map: every
/// read in the process agrees with the map (read-your-writes, whatever the
/// writer has sent yet), and after a flush a fresh handle reads the same
/// from Redis.
#[test]
fn random_operations_agree_with_an_in_memory_model() {
    use proptest::test_runner::{Config as PtConfig, RngAlgorithm, TestRng, TestRunner};
    use std::collections::HashMap;
    let server = RedisServer::start();
    let case = AtomicUsize::new(0);
    let config = PtConfig { cases: 64, failure_persistence: None, ..PtConfig::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let keys: Vec<String> = (0..8).map(|k| format!("K{k}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let result = runner.run(&proptest::collection::vec(model_op(), 1..80), |ops| {
        let prefix = format!("m{}", case.fetch_add(1, Ordering::SeqCst));
        let kv = open(server.port(), &prefix);
        let mut model: HashMap<u8, u32> = HashMap::new();
        for op in &ops {
            match op {
                ModelOp::Set(k, v) => {
                    kv.set("model", &keys[*k as usize], v, Ttl::Never).unwrap();
                    model.insert(*k, *v);
                }
                ModelOp::Delete(k) => {
                    kv.delete("model", &keys[*k as usize]).unwrap();
                    model.remove(k);
                }
                ModelOp::Touch(k) => {
                    kv.touch("model", &keys[*k as usize], Ttl::Never).unwrap();
                }
                ModelOp::Get(k) => {
                    let got = kv.get::<u32>("model", &keys[*k as usize]).unwrap();
                    proptest::prop_assert_eq!(got, model.get(k).copied(), "get {} after {:?}", k, ops);
                }
                ModelOp::GetMany => {
                    let got = kv.get_many::<u32>("model", &refs).unwrap();
                    let want: Vec<Option<u32>> = (0..8u8).map(|k| model.get(&k).copied()).collect();
                    proptest::prop_assert_eq!(got, want, "get_many after {:?}", ops);
                }
                ModelOp::Flush => kv.flush(LONG).unwrap(),
            }
        }
        kv.flush(LONG).unwrap();
        let fresh = open(server.port(), &prefix);
        let got = fresh.get_many::<u32>("model", &refs).unwrap();
        let want: Vec<Option<u32>> = (0..8u8).map(|k| model.get(&k).copied()).collect();
        proptest::prop_assert_eq!(got, want, "Redis after {:?}", ops);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn an_outage_coalesces_per_key_and_drops_past_the_bound() {
    let mut server = RedisServer::start();
    let kv = Kv::open(kv_config(server.port(), "t14").max_pending_keys(10)).unwrap();
    kv.set("market_data", "warm", &0u32, Ttl::Never).unwrap();
    kv.flush(LONG).unwrap();
    server.stop();
    // Until the writer has failed once, writes wait in the channel; then
    // it holds at most 10 keys, the newest value of each.
    kv.set("market_data", "K0", &0u32, Ttl::Never).unwrap();
    wait_until(
        "the writer to see the outage",
        LONG,
        || !kv.health().writer_connected,
        || format!("{:?}", kv.health()),
    );
    for round in 0..50u32 {
        for k in 0..20u32 {
            kv.set("market_data", &format!("K{k}"), &(round * 100 + k), Ttl::Never).unwrap();
        }
    }
    // K0..K9 are held; K10..K19 are dropped in each of the 50 rounds.
    wait_until(
        "the writes to new keys to be dropped",
        LONG,
        || kv.stats().dropped >= 500,
        || format!("{:?}", kv.stats()),
    );
    assert_eq!(kv.stats().dropped, 500, "{:?}", kv.stats());
    // Never blocked, never refused: the writer kept draining.
    assert_eq!(kv.stats().rejected, 0);
    server.restart();
    server.wait_ready(LONG);
    let e = kv.flush(LONG).unwrap_err();
    assert!(matches!(e, Error::Dropped { .. }), "{e}");
    let dropped = kv.take_dropped();
    assert!(!dropped.is_empty());
    kv.flush(LONG).unwrap();
    let s = kv.stats();
    assert!(s.coalesced > 0, "{s:?}");
    // The keys that were held carry their newest value; the process reads
    // the same thing Redis has.
    let mut con = server.client();
    let mut held = 0;
    for k in 0..20u32 {
        let key = format!("t14:market_data:K{k}");
        match raw_get(&mut con, &key) {
            Some(b) => {
                held += 1;
                assert_eq!(kv::decode::<u32>(&b).unwrap(), 4900 + k, "{key}");
                assert_eq!(kv.get::<u32>("market_data", &format!("K{k}")).unwrap(), Some(4900 + k));
            }
            None => assert_eq!(kv.get::<u32>("market_data", &format!("K{k}")).unwrap(), None),
        }
    }
    assert_eq!(held, 10, "{s:?}");
    assert!(kv.health().is_healthy(), "{:?}", kv.health());
}

#[test]
fn a_full_channel_refuses_the_write_and_it_is_not_read_back() {
    let server = RedisServer::start();
    let kv = Kv::open(kv_config(server.port(), "t16").channel_capacity(4).max_pending_keys(8)).unwrap();
    kv.set("risk", "R", &0u32, Ttl::Never).unwrap();
    kv.flush(LONG).unwrap();
    // Frozen Redis: the batch in flight waits for its reply (up to the
    // response timeout); the writer holds 8 keys meanwhile, the channel 4
    // more writes, and writes to further keys are refused.
    server.pause();
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for k in 1..=50u32 {
        match kv.set("risk", &format!("R{k}"), &k, Ttl::Never) {
            Ok(_) => accepted.push(k),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
                assert!(e.to_string().contains("channel is full"), "{e}");
                refused.push(k);
            }
        }
    }
    assert!(!refused.is_empty() && !accepted.is_empty(), "refused {refused:?}, accepted {accepted:?}");
    assert_eq!(kv.stats().rejected, refused.len() as u64);
    // The process reads back the accepted writes, not the refused ones.
    for k in &refused {
        assert_eq!(kv.get::<u32>("risk", &format!("R{k}")).unwrap_or(None), None, "R{k}");
    }
    server.resume();
    // On a slow machine the batch in flight can time out before the reads
    // above end: the writes that arrive past `max_pending_keys` are then
    // dropped, and reported (never silently).
    match kv.flush(LONG) {
        Ok(()) => {}
        Err(Error::Dropped { first, .. }) => assert!(first.detail.contains("max_pending_keys"), "{first:?}"),
        Err(e) => panic!("{e}"),
    }
    let dropped: Vec<String> = kv.take_dropped().into_iter().map(|d| d.key).collect();
    let other = open(server.port(), "t16");
    for k in 1..=50u32 {
        let got = other.get::<u32>("risk", &format!("R{k}")).unwrap();
        if dropped.iter().any(|d| d.ends_with(&format!(":R{k}"))) {
            // Dropped on arrival, never sent (a write taken in is kept).
            assert_eq!(got, None, "R{k}");
            continue;
        }
        assert_eq!(got, accepted.contains(&k).then_some(k), "R{k}");
    }
}

#[test]
fn close_is_bounded_with_redis_down_and_reports_what_was_not_written() {
    let mut server = RedisServer::start();
    let kv = open(server.port(), "t15");
    server.stop();
    for i in 0..5u32 {
        kv.set("risk", &format!("R{i}"), &i, Ttl::Policy).unwrap();
    }
    let e = kv.close(Duration::from_millis(300)).unwrap_err();
    match e {
        Error::Unpersisted(r) => assert_eq!(r.unpersisted, 5),
        other => panic!("{other}"),
    }
}

#[test]
fn a_dropped_kv_logs_the_writes_it_did_not_write_once() {
    capture_logs();
    let mut server = RedisServer::start();
    let redis_cfg = crate::harness::config(server.port(), "KV").close_timeout(Duration::from_millis(300));
    let kv = Kv::open(kv_config(server.port(), "t15d").redis(redis_cfg)).unwrap();
    server.stop();
    // A count no other test leaves behind, so that lines of tests run in
    // the same process (`cargo test`) are not counted.
    for i in 0..37u32 {
        kv.set("risk", &format!("R{i}"), &i, Ttl::Policy).unwrap();
    }
    drop(kv);
    let lines: Vec<String> =
        logged().into_iter().filter(|l| l.contains("37 cache write(s) not written")).collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
}

// --- deployment modes ---------------------------------------------------

#[test]
fn acl_user_limited_to_the_cache_prefix_and_no_password_anywhere() {
    capture_logs();
    let server = RedisServer::start();
    // The rule as docs/kv.md documents it, read from the page.
    acl_setuser(server.port(), "kv", &crate::harness::topology::kv_acl_rule("kv-secret-1"));
    let redis_cfg = crate::harness::config(server.port(), "KV").username("kv").password("kv-secret-1");
    let cfg = KvConfig::builder().redis(redis_cfg.clone()).near_capacity(100);
    let kv = Kv::open(cfg.clone()).unwrap();
    wait_until(
        "tracking under the ACL user",
        LONG,
        || kv.health().near_tracking == Some(true),
        || format!("{:?}", kv.health()),
    );
    kv.set("session", "u-1", &"alice", Ttl::Policy).unwrap();
    kv.touch("session", "u-1", Ttl::Never).unwrap();
    kv.set("session", "u-2", &"bob", Ttl::Policy).unwrap();
    kv.delete("session", "u-2").unwrap();
    kv.flush(LONG).unwrap();
    let other = Kv::open(cfg.clone()).unwrap();
    assert_eq!(other.get::<String>("session", "u-1").unwrap().as_deref(), Some("alice"));
    assert_eq!(
        other.get_many::<String>("session", &["u-1", "u-2"]).unwrap(),
        vec![Some("alice".into()), None]
    );
    assert!(other.exists("session", "u-1").unwrap());
    assert_eq!(other.clear_namespace("session").unwrap(), 1);
    assert_eq!(kv.stats().dropped, 0, "{:?}", kv.stats());
    // A key prefix outside the user's keys is refused, as a counted error.
    let outside = Kv::open(cfg.clone().key_prefix("other")).unwrap();
    let e = outside.get::<String>("session", "u-1").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    // A wrong password fails open clearly.
    let err = Kv::open(cfg.clone().redis(redis_cfg.password("kv-wrong-2"))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    let mut seen = format!("{err} {err:?} {cfg:?} {kv:?} {:?} {:?} {e}", kv.stats(), kv.health());
    kv.close(LONG).unwrap();
    seen.push_str(&logged().join("\n"));
    for secret in ["kv-secret-1", "kv-wrong-2"] {
        assert!(!seen.contains(secret), "{secret} leaked into:\n{seen}");
    }
}

#[test]
fn slow_operations_are_logged_and_a_stalled_server_is_a_timeout() {
    capture_logs();
    let server = RedisServer::start();
    let kv = Kv::open(kv_config(server.port(), "t17").slow_op_threshold(Duration::ZERO)).unwrap();
    kv.set("portfolio", "P-9", &9u32, Ttl::Policy).unwrap();
    kv.flush(LONG).unwrap();
    let reader = Kv::open(kv_config(server.port(), "t17").slow_op_threshold(Duration::ZERO)).unwrap();
    assert_eq!(reader.get::<u32>("portfolio", "P-9").unwrap(), Some(9));
    assert!(reader.stats().slow_ops >= 1, "{:?}", reader.stats());
    let logged = logged().join("\n");
    assert!(logged.contains("slow get: portfolio:P-9 took"), "{logged}");
    // A frozen server: the read times out (response_timeout), a distinct kind.
    server.pause();
    let e = reader.get::<u32>("portfolio", "P-8").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(reader.stats().read_errors, vec![("timeout", 1)]);
    server.resume();
}

#[cfg(feature = "tls")]
#[test]
fn tls_round_trip() {
    use crate::harness::tls::{Certs, TlsServer};
    let certs = Certs::generate();
    let server = TlsServer::start(&certs, true);
    // A TLS handshake on a loaded 2-core machine can outlast the harness's
    // short connect timeout (a timeout is retried, and the refusal below would
    // then read as `Timeout`): a limit, not an assertion.
    let redis_cfg = crate::harness::config(server.tls_port, "KV")
        .tls(true)
        .connect_timeout(std::time::Duration::from_secs(5))
        .tls_ca(certs.ca())
        .tls_cert(certs.client_cert())
        .tls_key(certs.client_key());
    let kv = Kv::open(KvConfig::builder().redis(redis_cfg.clone()).near_capacity(10)).unwrap();
    wait_until(
        "tracking over TLS",
        LONG,
        || kv.health().near_tracking == Some(true),
        || format!("{:?}", kv.health()),
    );
    kv.set("portfolio", "P-1", &quote(1), Ttl::Policy).unwrap();
    kv.flush(LONG).unwrap();
    let reader = Kv::open(KvConfig::builder().redis(redis_cfg)).unwrap();
    assert_eq!(reader.get::<Quote>("portfolio", "P-1").unwrap(), Some(quote(1)));
    // Stored over TLS, visible on the plaintext port.
    assert!(raw_get(&mut server.server.client(), "cache:portfolio:P-1").is_some());
    // Without a client certificate the server refuses: a TLS error at open.
    let no_cert = crate::harness::config(server.tls_port, "KV")
        .tls(true)
        .connect_timeout(std::time::Duration::from_secs(5))
        .tls_ca(certs.ca());
    let e = Kv::open(KvConfig::builder().redis(no_cert)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
}

#[test]
fn sentinel_finds_the_master_and_follows_a_failover() {
    let mut setup = SentinelSetup::start(1);
    let old = setup.servers[0].port();
    let redis_cfg =
        crate::harness::config(1, "KV").sentinels(setup.sentinel_addrs()).sentinel_master(&setup.name);
    let kv = Kv::open(KvConfig::builder().redis(redis_cfg).near_capacity(100)).unwrap();
    kv.set("market_data", "AAPL:quote", &quote(1), Ttl::Policy).unwrap();
    kv.flush(LONG).unwrap();
    assert!(raw_get(&mut connect(old), "cache:market_data:AAPL:quote").is_some());
    setup.wait_replicas(old, 1);
    setup.kill_and_hold(old);
    let new = setup.wait_failover(old);
    // Writes and reads go to the new master without the caller doing
    // anything (a read may fail while the failover settles).
    wait_until(
        "a write acknowledged by the new master",
        TOPOLOGY_TIMEOUT,
        || {
            kv.set("market_data", "MSFT:quote", &quote(2), Ttl::Policy).is_ok()
                && kv.flush(Duration::from_millis(500)).is_ok()
                && raw_get(&mut connect(new), "cache:market_data:MSFT:quote").is_some()
        },
        || format!("{:?}\n{}", kv.health(), setup.describe()),
    );
    let reader_cfg =
        crate::harness::config(1, "KV").sentinels(setup.sentinel_addrs()).sentinel_master(&setup.name);
    let reader = Kv::open(KvConfig::builder().redis(reader_cfg)).unwrap();
    assert_eq!(reader.get::<Quote>("market_data", "MSFT:quote").unwrap(), Some(quote(2)));
    assert_eq!(
        reader.get::<Quote>("market_data", "AAPL:quote").unwrap(),
        Some(quote(1)),
        "replicated before the kill"
    );
}

#[test]
fn cluster_spreads_keys_over_masters_and_clear_namespace_reaches_every_one() {
    let cluster = Cluster::start(3);
    let redis_cfg = crate::harness::config(1, "KV").cluster_nodes(cluster.seeds());
    let kv = Kv::open(KvConfig::builder().redis(redis_cfg.clone()).max_batch_size(16)).unwrap();
    let names: Vec<String> = (0..300).map(|i| format!("S{i}:quote")).collect();
    for (i, n) in names.iter().enumerate() {
        kv.set("market_data", n, &quote(i as i64), Ttl::Policy).unwrap();
    }
    for i in 0..30 {
        kv.set("portfolio", &format!("P-{i}"), &(i as u32), Ttl::Policy).unwrap();
    }
    kv.flush(LONG).unwrap();
    assert_eq!(kv.stats().dropped, 0, "{:?}", kv.stats());
    // Every master holds some of the keys.
    let per_node: Vec<usize> =
        cluster.nodes.iter().map(|n| keys(&mut connect(n.port()), "cache:market_data:*").len()).collect();
    assert!(per_node.iter().all(|n| *n > 0), "{per_node:?}");
    assert_eq!(per_node.iter().sum::<usize>(), 300);
    let reader = Kv::open(KvConfig::builder().redis(redis_cfg.clone())).unwrap();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let got = reader.get_many::<Quote>("market_data", &refs).unwrap();
    assert!(got.iter().enumerate().all(|(i, q)| q.as_ref() == Some(&quote(i as i64))));
    assert_eq!(reader.get::<u32>("portfolio", "P-7").unwrap(), Some(7));
    assert!(reader.exists("portfolio", "P-7").unwrap());
    // clear_namespace deletes on every master, and only that namespace.
    assert_eq!(reader.clear_namespace("market_data").unwrap(), 300);
    for n in &cluster.nodes {
        assert!(keys(&mut connect(n.port()), "cache:market_data:*").is_empty(), "{}", n.addr());
    }
    let portfolio: usize =
        cluster.nodes.iter().map(|n| keys(&mut connect(n.port()), "cache:portfolio:*").len()).sum();
    assert_eq!(portfolio, 30);
    assert_eq!(kv.get::<Quote>("market_data", "S1:quote").unwrap(), None);
    // TTLs travel with the values here too.
    let mut owner_ttls = Vec::new();
    for n in &cluster.nodes {
        let mut c = connect(n.port());
        for k in keys(&mut c, "cache:portfolio:*") {
            owner_ttls.push(pttl(&mut c, &k));
        }
    }
    assert!(owner_ttls.iter().all(|t| *t > 0 && *t <= 300_000), "{owner_ttls:?}");
}
