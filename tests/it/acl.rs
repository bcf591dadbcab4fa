//! ACL users: a user allowed only this trader's keys and the commands
//! tradecache needs is enough; passwords never reach a log line, an error or
//! `Debug` output.

use std::time::Duration;

use crate::harness::topology::acl_setuser;
use crate::harness::*;
use tradecache::{Cache, ErrorKind};

/// The minimal ACL rule documented in docs/deployment.md.
const RULE: &str = "on >acl-secret-1 ~trader-ACL1:* resetchannels -@all +multi +exec +discard +mset +get +mget +del +unlink +sadd +srem +rpush +ltrim +lrange +smembers +scan +wait +watch +type +ping +client|info +client|kill +zadd +zrem +zrangebyscore +zcard +scard +zdiff +unwatch +set +xadd +xtrim +time";

#[test]
fn minimal_acl_user_and_no_password_anywhere() {
    capture_logs();
    let server = RedisServer::start();
    let mut admin = server.client();
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg("trader");
    for part in RULE.split(' ') {
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
    for part in RULE.replace(" +wait", " -wait").split(' ') {
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
    assert_eq!(health.last_error_class, Some(tradecache::ErrorClass::Auth), "{health:?}");
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
    refused_watch_under(RULE);
    refused_watch_under(&RULE.replace(" +discard", ""));
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
