//! Issue 10, "Trust": sequences of ordinary calls that once broke
//! "acknowledged means in Redis, exactly once", each against a private
//! redis-server. Delete and re-put, `clear`, `flush_on_start` scoping, a
//! second writer (fencing), a put folded into a delete that cannot be
//! written, a late `EXEC` of a dropped connection, values larger than the
//! server takes, an outage's backlog split into batches, and consistent
//! loads.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::harness::{Proxy, RedisServer};
use tradecache::model::{Order, OrderEvent, OrderEventKind, Position, UnixNanos};
use tradecache::{Cache, Config, Entity, Error, ErrorClass, ErrorKind, OverflowPolicy};

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(ms(20));
    }
}

fn keys(con: &mut redis::Connection, pattern: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, found): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).query(con).expect("SCAN");
        out.extend(found);
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}

fn set(con: &mut redis::Connection, key: &str, value: &str) {
    let _: () = redis::cmd("SET").arg(key).arg(value).query(con).expect("SET");
}

fn ids<T: Entity>(cache: &Cache) -> Vec<String> {
    let (items, report) = cache.load_all::<T>().expect("load_all");
    assert!(report.is_clean(), "{report:?}");
    items.iter().map(|t| t.id().to_string()).collect()
}

fn counter_v(id: &str, value: u64) -> Counter {
    Counter { id: id.into(), value }
}

/// Item 1: the `SADD` of a re-put was skipped because the id was still
/// known to be indexed when the batch was built; the delete before it then
/// removed the id from the index.
#[test]
fn delete_then_put_the_same_id_stays_indexed() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1").max_batch(1)).unwrap();
    cache.put(&counter_v("X", 1)).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    cache.delete::<Counter>("X").unwrap();
    cache.put(&counter_v("X", 2)).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(ids::<Counter>(&cache), vec!["X"]);
    // Closing and reopening a position under the same id, many times.
    for round in 0..20u64 {
        cache.put(&Position::example("P-1")).unwrap();
        if round % 3 == 0 {
            cache.flush(Duration::from_secs(5)).unwrap();
        }
        cache.delete::<Position>("P-1").unwrap();
        cache.put(&Position::example("P-1")).unwrap();
    }
    cache.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(ids::<Position>(&cache), vec!["P-1"]);
}

/// Item 2: the flusher's knowledge of the index outlived a `clear`.
#[test]
fn clear_then_put_is_indexed_again() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    cache.put(&counter_v("X", 1)).unwrap();
    cache.append("X", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let deleted = cache.clear(Duration::from_secs(5)).unwrap();
    assert_eq!(deleted, 4, "snapshot, log, index and open index");
    assert!(ids::<Counter>(&cache).is_empty());
    cache.put(&counter_v("X", 2)).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(ids::<Counter>(&cache), vec!["X"]);
    assert!(ticks(&mut server.client(), "T1", "X").is_empty(), "the old log is gone");
}

/// `clear` is ordered with the writes around it: what came before is
/// deleted, what comes after is kept, even while all are still queued.
#[test]
fn clear_applies_in_sequence() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    server.pause();
    for i in 1..=50 {
        cache.put(&counter_v(&format!("before-{i}"), i)).unwrap();
    }
    let clear = std::thread::scope(|s| {
        let c = s.spawn(|| cache.clear(Duration::from_secs(20)));
        // Give the clear its place in the sequence before the next writes.
        wait_until("the clear to be queued", Duration::from_secs(5), || cache.last_seq().get() == 51);
        cache.put(&counter_v("after", 1)).unwrap();
        cache.append("after", &Tick { n: 1 }).unwrap();
        server.resume();
        c.join().unwrap()
    });
    assert!(clear.is_ok(), "{clear:?}");
    cache.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(ids::<Counter>(&cache), vec!["after"]);
    assert_eq!(ticks(&mut server.client(), "T1", "after"), vec![1]);
}

/// Items 3 and 4: `flush_on_start` and `clear` delete exactly the cache's
/// own keys: without an instance, the trader's but no instance's; with
/// one, that instance's only; never another trader's or application's.
#[test]
fn flush_on_start_and_clear_delete_only_their_own_keys() {
    let server = RedisServer::start();
    let mut con = server.client();
    let instance = |i: &str| config(server.port(), "T").instance_id(i).use_instance_id(true);
    for cfg in [instance("I1"), instance("I2"), config(server.port(), "T"), config(server.port(), "U")] {
        let cache = Cache::open(cfg).unwrap();
        write_order_and_position(&cache);
        cache.put(&counter_v("C", 1)).unwrap();
        cache.append("C", &Tick { n: 1 }).unwrap();
        // A log without a snapshot: only the collection tells it apart.
        cache.append("LOG-ONLY", &Tick { n: 1 }).unwrap();
        cache.close(Duration::from_secs(5)).unwrap();
    }
    // Another application's keys, some shaped like ours.
    let foreign = ["app:orders:O-1", "orders:O-1", "trader-TX:orders:O-1", "trader-T", "index:orders", "x"];
    for k in foreign {
        set(&mut con, k, "theirs");
    }
    let all_before = keys(&mut con, "*");
    let of = |p: &str| all_before.iter().filter(|k| k.starts_with(p)).cloned().collect::<BTreeSet<_>>();
    let i1 = of("trader-T:I1:");
    let i2 = of("trader-T:I2:");
    let u = of("trader-U:");

    // Trader T without an instance: its own keys go, its instances' stay.
    let cache = Cache::open(config(server.port(), "T").flush_on_start(true)).unwrap();
    let left = keys(&mut con, "*");
    let own_left: Vec<&String> = left
        .iter()
        .filter(|k| {
            k.starts_with("trader-T:") && !k.starts_with("trader-T:I1:") && !k.starts_with("trader-T:I2:")
        })
        .collect();
    assert_eq!(own_left, vec!["trader-T:writer:main"], "only the marker is kept");
    assert!(i1.is_subset(&left) && i2.is_subset(&left) && u.is_subset(&left), "{left:?}");
    for k in foreign {
        assert!(left.contains(k), "{k} deleted");
    }
    cache.put(&counter_v("C", 2)).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    cache.clear(Duration::from_secs(5)).unwrap();
    assert_eq!(keys(&mut con, "*").len(), left.len(), "clear deletes what flush_on_start did");
    drop(cache);

    // Instance I1: its keys only.
    let cache = Cache::open(instance("I1").flush_on_start(true)).unwrap();
    let left = keys(&mut con, "*");
    assert_eq!(keys(&mut con, "trader-T:I1:*"), BTreeSet::from(["trader-T:I1:writer:main".to_string()]));
    assert!(i2.is_subset(&left) && u.is_subset(&left), "{left:?}");
    for k in foreign {
        assert!(left.contains(k), "{k} deleted");
    }
    drop(cache);

    // Without a trader prefix nothing tells our keys apart: refused.
    let no_prefix = config(server.port(), "T").use_trader_prefix(false);
    let err = Cache::open(no_prefix.clone().flush_on_start(true)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("flush_on_start"), "{err}");
    let cache = Cache::open(no_prefix).unwrap();
    let err = cache.clear(Duration::from_secs(5)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    for k in foreign {
        assert!(keys(&mut con, "*").contains(k), "{k} deleted");
    }
}

/// Item 5: a second `Cache` with the same trader and writer id fences the
/// first: nothing the first writes after the second's `open` returned is
/// applied, and the first is told, with the writer key, everywhere.
#[test]
fn a_second_writer_fences_the_first() {
    let server = RedisServer::start();
    let mut con = server.client();
    let a = Cache::open(config(server.port(), "T1")).unwrap();
    a.put(&counter_v("X", 1)).unwrap();
    a.flush(Duration::from_secs(5)).unwrap();
    let b = Cache::open(config(server.port(), "T1")).unwrap();
    b.put(&counter_v("X", 100)).unwrap();
    b.flush(Duration::from_secs(5)).unwrap();
    // A write of A after B's open: accepted (the hot path does no I/O),
    // never applied, and A finds out.
    let seq = a.put(&counter_v("X", 2)).unwrap();
    let err = a.wait(seq, Duration::from_secs(10)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    assert!(
        matches!(&err, Error::Fenced { writer_key, .. } if writer_key == "trader-T1:writer:main"),
        "{err:?}"
    );
    assert!(err.to_string().contains("trader-T1:writer:main"), "{err}");
    assert_eq!(counter(&mut con, "T1", "X").unwrap().value, 100);
    let health = a.health();
    assert!(health.fenced.as_deref().unwrap_or("").contains("trader-T1:writer:main"), "{health:?}");
    assert!(!health.is_healthy());
    assert_eq!(a.stats().error_count("fenced"), 1);
    let push = a.put(&counter_v("X", 3)).unwrap_err();
    assert!(push.is_fenced(), "{push:?}");
    assert_eq!(push.into_inner().map(|c| c.value), Some(3));
    assert_eq!(a.flush(Duration::from_secs(1)).unwrap_err().kind(), ErrorKind::Fenced);
    assert_eq!(a.close(Duration::from_secs(1)).unwrap_err().kind(), ErrorKind::Fenced);
    // B is unaffected; a third open fences B in turn (the newest wins).
    b.put(&counter_v("X", 101)).unwrap();
    b.flush(Duration::from_secs(5)).unwrap();
    let c = Cache::open(config(server.port(), "T1")).unwrap();
    let seq = b.put(&counter_v("X", 102)).unwrap();
    assert_eq!(b.wait(seq, Duration::from_secs(10)).unwrap_err().kind(), ErrorKind::Fenced);
    assert_eq!(counter(&mut con, "T1", "X").unwrap().value, 101);
    c.put(&counter_v("X", 200)).unwrap();
    c.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(counter(&mut con, "T1", "X").unwrap().value, 200);
    // Another writer id, or another instance, is another writer.
    let d = Cache::open(config(server.port(), "T1").writer_id("second")).unwrap();
    d.put(&counter_v("Y", 1)).unwrap();
    d.flush(Duration::from_secs(5)).unwrap();
    c.put(&counter_v("X", 201)).unwrap();
    c.flush(Duration::from_secs(5)).unwrap();
}

/// A batch already on its way when the new writer opens (held in a frozen
/// connection) reaches Redis after the claim: Redis aborts it.
#[test]
fn a_fenced_writers_late_batch_never_lands() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let mut con = server.client();
    let old = Cache::open(config(proxy.port(), "T1").response_timeout(Duration::from_secs(8))).unwrap();
    old.put(&counter_v("X", 1)).unwrap();
    old.flush(Duration::from_secs(5)).unwrap();
    proxy.freeze_current(true);
    let late = old.put(&counter_v("X", 2)).unwrap();
    old.append("X", &Tick { n: 2 }).unwrap();
    let new = Cache::open(config(server.port(), "T1")).unwrap();
    new.put(&counter_v("X", 100)).unwrap();
    new.flush(Duration::from_secs(5)).unwrap();
    // The old writer's transaction now arrives, complete with its EXEC.
    proxy.freeze_current(false);
    let err = old.wait(late, Duration::from_secs(20)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    assert_eq!(counter(&mut con, "T1", "X").unwrap().value, 100);
    assert!(ticks(&mut con, "T1", "X").is_empty(), "the late batch's event landed");
}

/// The marker's old form (a bare batch number) is read, and taken over.
#[test]
fn an_old_marker_is_taken_over() {
    let server = RedisServer::start();
    let mut con = server.client();
    set(&mut con, "trader-T1:writer:main", "41");
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    cache.put(&counter_v("X", 1)).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let marker: String = redis::cmd("GET").arg("trader-T1:writer:main").query(&mut con).unwrap();
    let (epoch, batch) = marker.split_once(':').expect("epoch:batch");
    assert!(epoch.parse::<u64>().unwrap() > 0);
    assert_eq!(batch, "42");
}

/// The dropped connection's `EXEC` reaches Redis after the replay on the
/// new connection, and `CLIENT KILL` of it is not allowed (an ACL without
/// `client|kill`, as on managed Redis): the marker's `WATCH` aborts it, the
/// events land once, and the refused kill is counted.
#[test]
fn a_dropped_connections_late_exec_does_not_apply_twice() {
    let server = RedisServer::start();
    let mut admin = server.client();
    let rule = "on >trust-pw-1 ~trader-T1:* resetchannels -@all +multi +exec +mset +get +del +unlink +sadd \
                +srem +rpush +lrange +smembers +scan +wait +watch +type +ping +client|info";
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg("trader");
    for part in rule.split(' ') {
        cmd.arg(part);
    }
    let _: () = cmd.query(&mut admin).unwrap();
    let proxy = Proxy::start(server.addr());
    let cfg = config(proxy.port(), "T1")
        .username("trader")
        .password("trust-pw-1")
        .response_timeout(ms(300))
        .overflow(OverflowPolicy::Block { timeout: Duration::from_secs(30) });
    let cache = Cache::open(cfg).unwrap();
    for i in 1..=100 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    cache.flush(Duration::from_secs(10)).unwrap();
    let clients_before: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
    proxy.freeze_current(true);
    for i in 101..=200 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    // The reply times out; the flusher reconnects (a new connection flows),
    // finds the batch unapplied by the marker, and replays it.
    cache.flush(Duration::from_secs(30)).unwrap();
    assert_exactly_once(&ticks(&mut admin, "T1", "A"), 200);
    // Now the old connection's transaction arrives.
    proxy.freeze_current(false);
    wait_until("the old connection to close", Duration::from_secs(10), || {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
        list.lines().count() <= clients_before.lines().count()
    });
    cache.append("A", &Tick { n: 201 }).unwrap();
    cache.flush(Duration::from_secs(10)).unwrap();
    let got = ticks(&mut admin, "T1", "A");
    matrix_row("dropped connection's EXEC lands after the replay (no client|kill)", "-", &got, 201);
    let stats = cache.stats();
    assert!(stats.error_count("auth") >= 1, "the refused CLIENT KILL is counted: {stats:?}");
}

/// A delete and a put of the same key folded into one put that cannot be
/// written (too large): the put is reported dropped, the delete still
/// applies, and `wait` on the delete is `Ok` because it is in Redis.
#[test]
fn a_delete_folded_into_a_dropped_put_still_applies() {
    let server = RedisServer::start();
    let mut con = server.client();
    let cache = Cache::open(config(server.port(), "T1").max_value_bytes(1000)).unwrap();
    cache.put(&HugeCounter { id: "Y".into(), pad: "y".into() }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    server.pause(); // so that the writes below meet in one batch
    let delete = cache.delete::<HugeCounter>("Y").unwrap();
    let put = cache.put(&HugeCounter { id: "Y".into(), pad: "y".repeat(5000) }).unwrap();
    server.resume();
    let err = cache.wait(put, Duration::from_secs(10)).unwrap_err();
    assert!(matches!(&err, Error::Dropped { first, .. } if first.seq == put), "{err}");
    cache.wait(delete, Duration::from_secs(10)).expect("the delete is acknowledged");
    let stored: Option<Vec<u8>> = redis::cmd("GET").arg("trader-T1:huge:Y").query(&mut con).unwrap();
    assert_eq!(stored, None, "the delete folded into the dropped put applied");
    let members: Vec<String> = redis::cmd("SMEMBERS").arg("trader-T1:index:huge").query(&mut con).unwrap();
    assert!(members.is_empty(), "{members:?}");
    let dropped = cache.take_dropped();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0].class, ErrorClass::TooLarge);
}

/// Two puts of one key folded together, the later one too large: the
/// earlier value was never written either, so `wait` on it fails too.
#[test]
fn a_value_superseded_by_a_dropped_one_is_reported() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1").max_value_bytes(1000)).unwrap();
    server.pause();
    let first = cache.put(&HugeCounter { id: "Z".into(), pad: "ok".into() }).unwrap();
    let second = cache.put(&HugeCounter { id: "Z".into(), pad: "z".repeat(5000) }).unwrap();
    server.resume();
    let err = cache.wait(first, Duration::from_secs(10)).unwrap_err();
    assert!(matches!(&err, Error::Dropped { first: d, .. } if d.seq == first && d.writes == 2), "{err}");
    assert!(second > first);
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct HugeCounter {
    id: String,
    pad: String,
}

impl Entity for HugeCounter {
    const COLLECTION: &'static str = "huge";
    fn id(&self) -> &str {
        &self.id
    }
}

/// A value larger than the server's `proto-max-bulk-len` (but within
/// `max_value_bytes`) made the server close the connection, and the batch
/// carrying it was retried forever. Now it is dropped and reported, and
/// the writes around it land.
#[test]
fn a_value_larger_than_the_server_takes_is_dropped_not_retried_forever() {
    let server = RedisServer::builder().arg("proto-max-bulk-len", "1mb").start();
    let mut con = server.client();
    let cache = Cache::open(config(server.port(), "T1").max_value_bytes(4 << 20)).unwrap();
    cache.put(&counter_v("before", 1)).unwrap();
    let big = cache.put(&HugeCounter { id: "B".into(), pad: "b".repeat(1_200_000) }).unwrap();
    cache.put(&counter_v("after", 1)).unwrap();
    let err = cache.flush(Duration::from_secs(10)).unwrap_err();
    assert!(matches!(&err, Error::Dropped { first, .. } if first.seq == big), "{err}");
    let d = cache.take_dropped();
    assert!(d[0].detail.contains("proto-max-bulk-len"), "{d:?}");
    cache.flush(Duration::from_secs(10)).unwrap();
    assert!(counter(&mut con, "T1", "before").is_some() && counter(&mut con, "T1", "after").is_some());
}

/// An outage's backlog of distinct keys is bounded (the channel fills and
/// callers are told), and it drains in transactions of at most
/// `max_batch` writes, in order.
#[test]
fn an_outage_backlog_is_bounded_and_drains_in_batches() {
    let server = RedisServer::start();
    let mut con = server.client();
    let cfg = config(server.port(), "T1")
        .max_batch(50)
        .max_pending_snapshots(300)
        .channel_capacity(100)
        .response_timeout(ms(200));
    let cache = Cache::open(cfg).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    server.pause();
    let mut accepted = 0u64;
    let mut rejected = 0u64;
    for i in 0..2000u64 {
        match cache.put(&counter_v(&format!("N-{i}"), i)) {
            Ok(_) => accepted += 1,
            Err(e) => {
                assert!(e.is_full(), "{e:?}");
                rejected += 1;
            }
        }
    }
    // The flusher holds at most 300 keys, plus the channel's 100.
    assert!(accepted <= 300 + 100 + 1, "{accepted} accepted");
    assert!(rejected > 0);
    server.resume();
    cache.flush(Duration::from_secs(30)).unwrap();
    let n: usize = redis::cmd("SCARD").arg("trader-T1:index:counters").query(&mut con).unwrap();
    assert_eq!(n as u64, accepted);
    let stats = cache.stats();
    assert!(stats.batches >= accepted / 50, "{stats:?}: a transaction carried more than max_batch");
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

/// A reconnect backoff minimum of 0 retried in a busy loop: refused.
#[test]
fn zero_backoff_is_refused() {
    let err = Cache::open(Config::builder().reconnect_backoff(Duration::ZERO, ms(10))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("reconnect_backoff"), "{err}");
}

/// `close` must not let the flusher send an `EXEC` after its deadline: here
/// the flusher is blocked in the round trip that settles an in-doubt batch
/// when the deadline passes, and the reply comes after `close` returned.
/// The batch (not applied, so due for a replay) must not land.
#[test]
fn no_exec_after_the_close_deadline() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let mut con = server.client();
    let cfg = config(proxy.port(), "T1").response_timeout(Duration::from_secs(3));
    let cache = Cache::open(cfg).unwrap();
    cache.put(&counter_v("X", 1)).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    // The next transaction is cut before a byte of it arrives; the
    // reconnection's first look at the marker is held.
    proxy.hold_new_at(b"writer:main");
    proxy.cut_after_upstream_bytes(0);
    cache.put(&counter_v("X", 2)).unwrap();
    wait_until("the marker lookup to be held", Duration::from_secs(10), || proxy.held() == 1);
    let err = cache.close(ms(300)).unwrap_err();
    assert!(matches!(err, Error::Unpersisted(_)), "{err}");
    proxy.release();
    wait_until("the flusher to let go of its connection", Duration::from_secs(10), || {
        proxy.open_connections() == 0
    });
    assert_eq!(counter(&mut con, "T1", "X").unwrap().value, 1, "a batch was written after close returned");
}

/// A command Redis refused inside a batch whose `EXEC` reply was lost
/// (the batch settled as applied by the marker after a reconnect) is
/// still reported, not forgotten.
#[test]
fn a_refused_command_in_a_batch_settled_by_the_marker_is_reported() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let mut con = server.client();
    set(&mut con, "trader-T1:counters:A:events", "not a list");
    let cache = Cache::open(config(proxy.port(), "T1").response_timeout(ms(300))).unwrap();
    cache.put(&counter_v("B", 1)).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    proxy.drop_replies(true);
    let append = cache.append("A", &Tick { n: 1 }).unwrap();
    cache.put(&counter_v("C", 1)).unwrap();
    wait_until("the lost reply to time out", Duration::from_secs(10), || cache.health().last_error.is_some());
    proxy.drop_replies(false);
    let err = cache.flush(Duration::from_secs(10)).unwrap_err();
    assert!(
        matches!(&err, Error::Dropped { first, .. } if first.key == "trader-T1:counters:A:events"),
        "{err}"
    );
    let dropped = cache.take_dropped();
    assert_eq!(dropped[0].class, ErrorClass::Command, "{dropped:?}");
    assert!(dropped[0].seq <= append);
    cache.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(counter(&mut con, "T1", "C").unwrap().value, 1);
    assert!(cache.stats().replays == 0, "settled by the marker, not replayed: {:?}", cache.stats());
}

/// With `replica_wait`, a batch settled as applied by the marker after a
/// reconnect was acknowledged by a bare `WAIT` on the fresh connection,
/// which returns at once (the connection has written nothing), although no
/// replica had the batch. Now it waits until a replica has it.
#[test]
fn replica_wait_after_a_lost_reply_waits_for_a_replica() {
    let master = RedisServer::start();
    let replica = RedisServer::start();
    let mut rcon = replica.client();
    let _: () = redis::cmd("REPLICAOF").arg("127.0.0.1").arg(master.port()).query(&mut rcon).unwrap();
    wait_until("the replication link", Duration::from_secs(20), || {
        let info: String = redis::cmd("INFO").arg("replication").query(&mut rcon).unwrap();
        info.contains("master_link_status:up")
    });
    let proxy = Proxy::start(master.addr());
    let cfg = config(proxy.port(), "T1").response_timeout(ms(600)).replica_wait(Some((1, ms(200))));
    let cache = Cache::open(cfg).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(10)).unwrap();
    replica.pause();
    proxy.drop_replies(true);
    let seq = cache.append("A", &Tick { n: 2 }).unwrap();
    wait_until("the lost reply to time out", Duration::from_secs(10), || cache.health().last_error.is_some());
    proxy.drop_replies(false);
    // Applied on the master, settled by the marker, but no replica has it.
    let err = cache.wait(seq, Duration::from_secs(2)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "acknowledged without a replica: {err}");
    replica.resume();
    cache.wait(seq, Duration::from_secs(20)).unwrap();
    assert_eq!(ticks(&mut rcon, "T1", "A"), vec![1, 2]);
}
