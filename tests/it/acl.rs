//! ACL users: a user allowed only this trader's keys and the commands
//! tradecache needs is enough; passwords never reach a log line, an error or
//! `Debug` output.

use std::time::Duration;

use crate::harness::topology::{acl_rule, acl_setuser};
use crate::harness::*;
use tradecache::{Cache, ErrorKind};

/// The minimal ACL rule documented in docs/deployment.md, read from it.
fn rule() -> String {
    acl_rule("acl-secret-1", "trader-ACL1:*", "")
}

#[test]
fn minimal_acl_user_and_no_password_anywhere() {
    capture_logs();
    let server = RedisServer::start();
    let mut admin = server.client();
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg("trader");
    for part in rule().split(' ') {
        cmd.arg(part);
    }
    let _: () = cmd.query(&mut admin).unwrap();

    let cfg = config(server.port(), "ACL1").username("trader").password("acl-secret-1");
    // Every feature on, so that each command the cache sends is covered:
    // heartbeat (SET PX), streams (XADD, XTRIM), account event trimming,
    // purges (ZRANGEBYSCORE, UNWATCH, …), open-only loads (SCARD, ZDIFF).
    let all = cfg
        .clone()
        .flush_on_start(true)
        .heartbeat_interval(Some(ms(20)))
        .publish_events(true)
        .stream_max_age(Some(Duration::from_secs(3600)))
        .max_account_events(Some(2));
    let cache = Cache::open(all).unwrap();
    cache.put(&Counter { id: "A".into(), value: 1 }).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    let mut order = tradecache::model::Order::example("O-1");
    order.status = tradecache::model::OrderStatus::Filled;
    order.ts_last = tradecache::model::UnixNanos(1);
    cache.put(&order).unwrap();
    cache.put(&tradecache::model::Account::example("ACC-1")).unwrap();
    for n in 1..=3 {
        let acc = tradecache::model::Account::example("ACC-1");
        let ev = tradecache::model::AccountEvent::snapshot_of(&acc, n, tradecache::model::UnixNanos(n));
        cache.append("ACC-1", &ev).unwrap();
    }
    cache.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(cache.load_all::<Counter>().unwrap().0.len(), 1);
    assert_eq!(cache.load_open().unwrap().accounts.len(), 1);
    let purged = cache.purge_closed::<tradecache::model::Order>(ms(1000), Duration::from_secs(5)).unwrap();
    assert_eq!(purged.removed.len(), 1, "{purged:?}");
    assert_eq!(cache.stats().dropped, 0, "{:?}", cache.stats());
    assert_eq!(cache.stats().errors, vec![], "{:?}", cache.stats());
    assert_eq!(ticks(&mut admin, "ACL1", "A"), vec![1]);
    let stream: usize = redis::cmd("XLEN").arg("trader-ACL1:stream:counters").query(&mut admin).unwrap();
    assert_eq!(stream, 1);
    let heartbeat: bool = redis::cmd("EXISTS").arg("trader-ACL1:heartbeat:main").query(&mut admin).unwrap();
    assert!(heartbeat);

    // The same user may not touch another trader's keys: `open` says so.
    let other = Cache::open(config(server.port(), "OTHER").username("trader").password("acl-secret-1"));
    let other = other.unwrap_err();
    assert_eq!(other.kind(), ErrorKind::Auth, "{other}");
    assert!(other.to_string().contains("permissions"), "{other}");

    // A wrong password fails `open` clearly.
    let err = Cache::open(cfg.clone().password("acl-wrong-2")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");

    let mut seen =
        format!("{err} {err:?} {cfg:?} {:?} {:?} {}", cache.health(), cache.stats(), cfg.redacted_url());
    cache.close(Duration::from_secs(5)).unwrap();
    seen.push_str(&logged().join("\n"));
    assert!(!logged().is_empty(), "the log capture saw nothing");
    for secret in ["acl-secret-1", "acl-wrong-2"] {
        assert!(!seen.contains(secret), "{secret} leaked into:\n{seen}");
    }
}

#[test]
fn databases_are_separate() {
    let server = RedisServer::start();
    let a = Cache::open(config(server.port(), "SAME").db(1)).unwrap();
    let b = Cache::open(config(server.port(), "SAME").db(2)).unwrap();
    a.put(&Counter { id: "A".into(), value: 1 }).unwrap();
    b.put(&Counter { id: "B".into(), value: 2 }).unwrap();
    a.flush(Duration::from_secs(5)).unwrap();
    b.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(a.load_all::<Counter>().unwrap().0, vec![Counter { id: "A".into(), value: 1 }]);
    assert_eq!(b.load_all::<Counter>().unwrap().0, vec![Counter { id: "B".into(), value: 2 }]);
    let mut con = server.client();
    let keys0: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    assert!(keys0.is_empty(), "db 0 untouched: {keys0:?}");
    // The URL path selects the database too.
    let url = format!("redis://127.0.0.1:{}/2", server.port());
    let c = Cache::open(config(1, "SAME").from_url(&url).unwrap()).unwrap();
    assert_eq!(c.load_all::<Counter>().unwrap().0.len(), 1);
}

/// `replica_wait` with a user that may not run `WAIT`: the refusal is
/// reported as what it is (`auth`, in `health()` and the error counts),
/// not as "no replica acknowledged", and the write is not acknowledged.
#[test]
fn a_refused_wait_is_reported_by_its_cause() {
    let server = RedisServer::start();
    let mut admin = server.client();
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg("trader");
    for part in rule().replace(" +wait", " -wait").split(' ') {
        cmd.arg(part);
    }
    let _: () = cmd.query(&mut admin).unwrap();
    let cfg = config(server.port(), "ACL1")
        .username("trader")
        .password("acl-secret-1")
        .replica_wait(Some((1, ms(50))));
    let cache = Cache::open(cfg).unwrap();
    let seq = cache.put(&Counter { id: "A".into(), value: 1 }).unwrap();
    wait_until("the refused WAIT to be counted", Duration::from_secs(10), || {
        cache.stats().error_count("auth") > 0
    });
    assert!(cache.wait(seq, ms(100)).is_err(), "not acknowledged without the replica WAIT");
    let health = cache.health();
    assert_eq!(health.last_error_class, Some(tradecache::ErrorKind::Auth), "{health:?}");
    assert!(health.backpressure.as_deref().is_some_and(|b| b.contains("WAIT")), "{health:?}");
    assert_eq!(cache.stats().error_count("busy"), 0, "{:?}", cache.stats());
}

/// `WATCH` refused for a moment (the ACL loses `+watch`) while batches are
/// queued behind each other: the refusal after an applied `EXEC` leaves
/// the batch queued behind it unread on the connection. The writer must
/// read (and discard) it rather than take its `QUEUED` replies for the
/// marker: it is never fenced by its own marker, and every write lands.
/// Also without `+discard`, when only dropping the connection can end the
/// queued transaction.
#[test]
fn a_refused_watch_after_an_applied_batch_keeps_the_reply_stream_in_step() {
    refused_watch_under(&rule());
    refused_watch_under(&rule().replace(" +discard", ""));
}

fn refused_watch_under(rule: &str) {
    let server = RedisServer::start();
    let mut admin = server.client();
    acl_setuser(server.port(), "trader", rule);
    let cfg = config(server.port(), "ACL1")
        .username("trader")
        .password("acl-secret-1")
        .max_batch(4)
        .reconnect_backoff(ms(5), ms(20))
        .overflow(tradecache::OverflowPolicy::Block { timeout: Duration::from_secs(10) });
    let cache = std::sync::Arc::new(Cache::open(cfg).unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (cache, stop) = (cache.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 200_000 {
                n += 1;
                if cache.put(&Counter { id: format!("C-{}", n % 16), value: n }).is_err() {
                    break;
                }
            }
            n
        })
    };
    for _ in 0..10 {
        std::thread::sleep(ms(30));
        acl_setuser(server.port(), "trader", "-watch");
        std::thread::sleep(ms(100));
        acl_setuser(server.port(), "trader", "+watch");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let n = writer.join().unwrap();
    let flushed = cache.flush(Duration::from_secs(30));
    assert!(flushed.is_ok(), "{flushed:?}; {:?}", cache.health());
    assert!(cache.health().fenced.is_none(), "{:?}", cache.health());
    assert_eq!(cache.stats().dropped, 0, "{:?}", cache.stats());
    for i in 0..16u64.min(n) {
        let last = (1..=n).rev().find(|v| v % 16 == (i % 16)).unwrap();
        let got = counter(&mut admin, "ACL1", &format!("C-{i}")).map(|c| c.value);
        assert_eq!(got, Some(last), "C-{i}");
    }
}

/// Logs longer than a load's first slice (4,096 entries): the rest is read
/// with `LLEN` and `LRANGE` slices.
const LONG: u64 = 5_000;

fn order_event(id: &str, n: u64) -> tradecache::model::OrderEvent {
    tradecache::model::OrderEvent {
        event_id: n,
        client_order_id: tradecache::Ident::new(id).unwrap(),
        ts_event: tradecache::model::UnixNanos(n),
        kind: tradecache::model::OrderEventKind::Canceled,
    }
}

fn mp(n: u64) -> tradecache::raw::RawValue {
    tradecache::raw::RawValue::encode(&n, tradecache::Encoding::MsgPack).unwrap()
}

/// An order and a raw entity, each with a log of [`LONG`] events.
fn write_long_logs(cache: &Cache, raw: tradecache::raw::Collection) {
    cache.put(&tradecache::model::Order::example("O-LONG")).unwrap();
    cache.put_raw(raw, "B-1", mp(0)).unwrap();
    for n in 1..=LONG {
        cache.append("O-LONG", &order_event("O-LONG", n)).unwrap();
        cache.append_raw(raw, "B-1", mp(n)).unwrap();
    }
}

/// The keys of trader `trader` that `clear` and `flush_on_start` keep: the
/// registry of collections, the commit marker, the heartbeat.
fn kept(con: &mut redis::Connection, trader: &str) -> Vec<String> {
    let mut left: Vec<String> = keys(con, &format!("trader-{trader}:*")).into_iter().collect();
    left.retain(|k| !k.ends_with(":index:") && !k.contains(":writer:") && !k.contains(":heartbeat:"));
    left
}

/// Item 4 of issue 28: the whole workload, under exactly the rule
/// docs/deployment.md documents (read from the doc): writes of every kind,
/// loads of logs longer than 4,096 entries (typed, raw, open-only, one
/// log), the registry and its `SCAN` fallback, purges, the heartbeat,
/// streams, account-event trimming, market data, `clear` and
/// `flush_on_start`. Every read is whole, nothing is refused or dropped,
/// and the server's ACL log records no denied command.
#[test]
fn the_documented_rule_serves_the_whole_workload() {
    let server = RedisServer::start();
    let mut admin = server.client();
    acl_setuser(server.port(), "trader", &acl_rule("acl-secret-2", "trader-ACL2:*", ""));
    let cfg = config(server.port(), "ACL2")
        .username("trader")
        .password("acl-secret-2")
        .overflow(tradecache::OverflowPolicy::Block { timeout: Duration::from_secs(10) })
        .heartbeat_interval(Some(ms(20)))
        .publish_events(true)
        .stream_max_age(Some(Duration::from_secs(3600)))
        .max_account_events(Some(2));
    let s = Duration::from_secs(10);
    let cache = Cache::open(cfg.clone()).unwrap();
    let bots = tradecache::raw::Collection::new("acl-bots").unwrap();
    let only_events = tradecache::raw::Collection::new("acl-events-only").unwrap();
    write_long_logs(&cache, bots);
    cache.append_raw(only_events, "E-1", mp(1)).unwrap();
    let mut old = tradecache::model::Order::example("O-OLD");
    old.status = tradecache::model::OrderStatus::Filled;
    old.ts_last = tradecache::model::UnixNanos(1);
    cache.put(&old).unwrap();
    let acc = tradecache::model::Account::example("ACC-1");
    cache.put(&acc).unwrap();
    for n in 1..=3 {
        let ev = tradecache::model::AccountEvent::snapshot_of(&acc, n, tradecache::model::UnixNanos(n));
        cache.append("ACC-1", &ev).unwrap();
    }
    let quote =
        |n| tradecache::model::QuoteTick::example("BTCUSDT-PERP.BINANCE", tradecache::model::UnixNanos(n));
    for n in 1..=3 {
        cache.append_market_data(&quote(n)).unwrap();
    }
    cache.flush(s).unwrap();

    // Loads: every log whole.
    let snap = cache.load().unwrap();
    assert!(snap.report.issues.is_empty(), "{:?}", snap.report);
    let long = tradecache::Ident::new("O-LONG").unwrap();
    assert_eq!(snap.order_events[&long].len() as u64, LONG);
    assert_eq!(snap.account_events.values().map(Vec::len).sum::<usize>(), 2, "trimmed to 2");
    let open = cache.load_open().unwrap();
    assert_eq!(open.order_events[&long].len() as u64, LONG);
    let (_, events, report) = cache.load_all_with_events::<tradecache::model::OrderEvent>().unwrap();
    assert!(report.issues.is_empty(), "{report:?}");
    assert_eq!(events[&long].len() as u64, LONG);
    let (events, _) = cache.load_events::<tradecache::model::OrderEvent>("O-LONG").unwrap();
    assert_eq!(events.len() as u64, LONG);
    assert_eq!(cache.get_events::<tradecache::model::OrderEvent>("O-LONG").unwrap().len() as u64, LONG);
    let names = cache.collections().unwrap();
    assert!(names.contains(&bots), "{names:?}");
    let raw = cache.load_raw(&names, true).unwrap();
    assert!(raw.report.issues.is_empty(), "{:?}", raw.report);
    let (_, entities) = raw.collections.iter().find(|(c, _)| *c == bots).unwrap();
    assert_eq!(entities[0].events.len() as u64, LONG);
    assert_eq!(cache.get_events_raw(only_events, "E-1").unwrap(), [mp(1).as_bytes().to_vec()]);
    let (quotes, _) = cache.load_ticks::<tradecache::model::QuoteTick>("BTCUSDT-PERP.BINANCE", 10).unwrap();
    assert_eq!(quotes.len(), 3);
    // A registry that is not complete: the index sets are scanned.
    let _: () = redis::cmd("SREM").arg("trader-ACL2:index:").arg("").query(&mut admin).unwrap();
    assert_eq!(cache.collections().unwrap(), names);

    // Purges, the heartbeat, streams.
    let purged = cache.purge_closed::<tradecache::model::Order>(ms(1000), s).unwrap();
    assert_eq!(purged.removed.len(), 1, "{purged:?}");
    let heartbeat: bool = redis::cmd("EXISTS").arg("trader-ACL2:heartbeat:main").query(&mut admin).unwrap();
    assert!(heartbeat);
    let stream: usize = redis::cmd("XLEN").arg("trader-ACL2:stream:orders").query(&mut admin).unwrap();
    assert_eq!(stream as u64, LONG);

    // `clear`: every key the cache wrote goes, the event-only log too.
    let _: () = redis::cmd("SADD").arg("trader-ACL2:index:").arg("").query(&mut admin).unwrap();
    cache.clear(s).unwrap();
    assert_eq!(kept(&mut admin, "ACL2"), Vec::<String>::new());
    assert_eq!(cache.stats().dropped, 0, "{:?}", cache.stats());
    assert_eq!(cache.stats().errors, vec![], "{:?}", cache.stats());
    cache.close(s).unwrap();

    // `flush_on_start` deletes what an earlier cache wrote.
    let earlier = Cache::open(cfg.clone()).unwrap();
    earlier.put(&Counter { id: "A".into(), value: 1 }).unwrap();
    earlier.append_raw(only_events, "E-2", mp(2)).unwrap();
    earlier.close(s).unwrap();
    assert!(!kept(&mut admin, "ACL2").is_empty());
    let cache = Cache::open(cfg.flush_on_start(true)).unwrap();
    assert_eq!(kept(&mut admin, "ACL2"), Vec::<String>::new());
    cache.close(s).unwrap();

    // Nothing was refused along the way but the optional `CONFIG GET` of
    // `proto-max-bulk-len` at each connect (docs/deployment.md).
    let log: Vec<Vec<String>> = redis::cmd("ACL").arg("LOG").query(&mut admin).unwrap();
    let denied: Vec<&String> = log
        .iter()
        .filter_map(|entry| entry.iter().position(|f| f == "object").and_then(|i| entry.get(i + 1)))
        .filter(|object| *object != "config|get")
        .collect();
    assert!(denied.is_empty(), "commands the documented rule refused: {denied:?} in {log:?}");
}

/// Item 4 of issue 28: a command the ACL refuses makes the load fail; it
/// never reads as empty, and so never gives a shorter result (a refused
/// `LLEN` cut every log longer than 4,096 entries to its first slice,
/// `consistent: true`, no issue). Also a refused `SCARD` (`load_open`),
/// `SMEMBERS` (the index sets) and `MGET` (the values).
#[test]
fn a_refused_command_fails_the_load_never_shortens_it() {
    let server = RedisServer::start();
    acl_setuser(server.port(), "trader", &acl_rule("acl-secret-3", "trader-ACL3:*", ""));
    let cfg = config(server.port(), "ACL3")
        .username("trader")
        .password("acl-secret-3")
        .overflow(tradecache::OverflowPolicy::Block { timeout: Duration::from_secs(10) });
    let cache = Cache::open(cfg).unwrap();
    let bots = tradecache::raw::Collection::new("acl-bots").unwrap();
    write_long_logs(&cache, bots);
    cache.flush(Duration::from_secs(10)).unwrap();
    let refused = |e: tradecache::Error, what: &str| {
        assert_eq!(e.kind(), ErrorKind::Auth, "{what}: {e}");
        assert!(e.to_string().contains("no permissions"), "{what}: {e}");
    };
    acl_setuser(server.port(), "trader", "-llen");
    let loaded = cache.load_raw(&[bots], true).map(|s| s.collections[0].1[0].events.len());
    refused(loaded.unwrap_err(), "load_raw without LLEN");
    let loaded = cache.load().map(|s| s.order_events.values().map(Vec::len).sum::<usize>());
    refused(loaded.unwrap_err(), "load without LLEN");
    let loaded = cache.load_all_with_events::<tradecache::model::OrderEvent>().map(|l| l.1.len());
    refused(loaded.unwrap_err(), "load_all_with_events without LLEN");
    acl_setuser(server.port(), "trader", "+llen -scard");
    refused(cache.load_open().map(|s| s.orders.len()).unwrap_err(), "load_open without SCARD");
    acl_setuser(server.port(), "trader", "+scard -smembers");
    refused(cache.load().map(|s| s.orders.len()).unwrap_err(), "load without SMEMBERS");
    refused(cache.collections().unwrap_err(), "collections without SMEMBERS");
    acl_setuser(server.port(), "trader", "+smembers -mget");
    refused(cache.load().map(|s| s.orders.len()).unwrap_err(), "load without MGET");
    acl_setuser(server.port(), "trader", "+mget");
    let snap = cache.load().unwrap();
    assert_eq!(snap.order_events.values().map(Vec::len).sum::<usize>() as u64, LONG);
}
