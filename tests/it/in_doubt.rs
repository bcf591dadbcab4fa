//! Batches whose `EXEC` reply is lost, or that are cut mid-transaction:
//! the commit marker decides, and each event lands exactly once.

use std::time::Duration;

use crate::harness::*;
use tradecache::{Cache, Error, ErrorKind, OverflowPolicy};

fn through(proxy: &Proxy) -> tradecache::Config {
    config(proxy.port(), "T1")
        .response_timeout(ms(300))
        .overflow(OverflowPolicy::Block { timeout: Duration::from_secs(30) })
}

#[test]
fn lost_exec_reply_is_not_replayed() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let cache = Cache::open(through(&proxy)).unwrap();
    for i in 1..=100 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    cache.flush(Duration::from_secs(10)).unwrap();
    // The server applies the next batch but its replies never arrive.
    proxy.drop_replies(true);
    for i in 101..=200 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    while cache.health().last_error.is_none() {
        std::thread::sleep(ms(20));
    }
    let during = cache.health();
    proxy.drop_replies(false);
    cache.flush(Duration::from_secs(30)).unwrap();
    let got = ticks(&mut server.client(), "T1", "A");
    matrix_row("EXEC applied but its reply lost (proxy)", &health_cell(&during), &got, 200);
    let stats = cache.stats();
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert!(stats.error_count("timeout") >= 1, "{stats:?}");
}

#[test]
fn transaction_cut_mid_batch_is_replayed() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let cache = Cache::open(through(&proxy).buffer_interval_ms(20)).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(10)).unwrap();
    // The next transaction reaches the server only in part: no EXEC.
    proxy.cut_after_upstream_bytes(200);
    for i in 2..=500 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    cache.flush(Duration::from_secs(30)).unwrap();
    let got = ticks(&mut server.client(), "T1", "A");
    let stats = cache.stats();
    assert!(stats.replays >= 1, "the cut batch was replayed: {stats:?}");
    let cell = format!("{} (replays {})", health_cell(&cache.health()), stats.replays);
    matrix_row("transaction cut mid-batch (connection closed before EXEC)", &cell, &got, 500);
}

/// The reply to a batch is lost while writes keep coming, so the flusher
/// has built (and queued) the next batch behind the one in doubt. After
/// the reconnect the marker settles the first; the next must still go out,
/// after it: nothing stranded, nothing reordered.
#[test]
fn lost_exec_reply_with_the_next_batch_built() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const N: u64 = 3_000;
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    // Small batches: one is held and the next built behind it while the
    // writer is still going.
    let cache = Arc::new(Cache::open(through(&proxy).max_batch(50)).unwrap());
    for i in 1..=100 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    cache.flush(Duration::from_secs(10)).unwrap();
    proxy.drop_replies(true);
    let lost = Arc::new(AtomicBool::new(false));
    let writer = {
        let (cache, lost) = (cache.clone(), lost.clone());
        std::thread::spawn(move || {
            for i in 101..=N {
                cache.append("A", &Tick { n: i }).unwrap();
                // A burst, then writes spread over the outage, so batches
                // are built while one is in doubt.
                if i > 1_000 && i % 20 == 0 && !lost.load(Ordering::SeqCst) {
                    std::thread::sleep(ms(2));
                }
            }
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while cache.health().last_error.is_none() {
        assert!(std::time::Instant::now() < deadline, "the lost reply was never noticed");
        std::thread::sleep(ms(5));
    }
    let during = cache.health();
    lost.store(true, Ordering::SeqCst);
    proxy.drop_replies(false);
    writer.join().unwrap();
    cache.flush(Duration::from_secs(30)).unwrap();
    let got = ticks(&mut server.client(), "T1", "A");
    // Before the fix in `Flusher::run`, the batch built behind the one in
    // doubt was stranded, then applied after newer ones (event 150 was
    // 201) and `acked_seq` went back to 200.
    matrix_row("EXEC reply lost, next batch built behind it (proxy)", &health_cell(&during), &got, N);
    assert_eq!(cache.stats().acked, N, "acked_seq never goes back");
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

/// A command Redis refused inside a batch whose `EXEC` reply was lost
/// (the batch settled as applied by the marker after a reconnect) is
/// still reported, not forgotten.
#[test]
fn a_refused_command_in_a_batch_settled_by_the_marker_is_reported() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let mut con = server.client();
    set_key(&mut con, "trader-T1:counters:A:events", "not a list");
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
    assert_eq!(dropped[0].class, ErrorKind::Command, "{dropped:?}");
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

/// The marker deleted (an operator's `DEL`, an AOF `everysec` loss, a
/// failover to a lagging replica) while a batch is in doubt: the batch is
/// not replayed on the guess that a missing marker means "nothing
/// applied" (its log ends with its events: it may well be applied), nor
/// acknowledged (that proves nothing): it is reported, and the loss of
/// the marker loudly: counted, in `health()`, and the writes it may have
/// taken listed by `take_dropped`.
#[test]
fn a_marker_lost_while_a_batch_is_in_doubt_is_reported_not_replayed() {
    let server = RedisServer::start();
    let mut admin = server.client();
    let proxy = Proxy::start(server.addr());
    let cache = Cache::open(through(&proxy)).unwrap();
    for i in 1..=100 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    cache.flush(Duration::from_secs(10)).unwrap();
    // The next batch applies but its reply is lost; then the marker goes.
    proxy.drop_replies(true);
    for i in 101..=200 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    wait_until("the lost reply to be noticed", Duration::from_secs(20), || {
        cache.health().last_error.is_some()
    });
    wait_until("a batch to be applied", Duration::from_secs(20), || ticks(&mut admin, "T1", "A").len() > 100);
    let _: () = redis::cmd("DEL").arg("trader-T1:writer:main").query(&mut admin).unwrap();
    proxy.drop_replies(false);
    // `flush` tells of the writes the loss may have taken.
    match cache.flush(Duration::from_secs(30)) {
        Ok(()) => {}
        Err(Error::Dropped { first, .. }) => assert_eq!(first.class, ErrorKind::MarkerLost, "{first:?}"),
        Err(e) => panic!("{e}"),
    }
    let got = ticks(&mut admin, "T1", "A");
    assert_exactly_once(&got, 200);
    let stats = cache.stats();
    assert!(stats.marker_losses >= 1, "{stats:?}");
    let health = cache.health();
    assert!(health.marker_lost.as_deref().is_some_and(|m| m.contains("writer:main")), "{health:?}");
    let dropped = cache.take_dropped();
    assert!(dropped.iter().any(|d| d.class == ErrorKind::MarkerLost), "{dropped:?}");
    // The batch in doubt (from seq 101) is reported, not acknowledged as written.
    assert!(dropped.iter().any(|d| d.seq.get() > 100), "{dropped:?}");
}

/// A marker behind what this writer had acknowledged (restored from an
/// old backup, say) is reported the same way, and writing goes on.
#[test]
fn a_regressed_marker_is_reported() {
    let server = RedisServer::start();
    let mut admin = server.client();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    cache.put(&counter_v("X", 1)).unwrap();
    cache.flush(Duration::from_secs(10)).unwrap();
    let old = raw_get(&mut admin, "trader-T1:writer:main").unwrap();
    for i in 2..=5 {
        cache.put(&counter_v("X", i)).unwrap();
        cache.flush(Duration::from_secs(10)).unwrap();
    }
    let _: () = redis::cmd("SET").arg("trader-T1:writer:main").arg(old).query(&mut admin).unwrap();
    cache.put(&counter_v("X", 6)).unwrap();
    match cache.flush(Duration::from_secs(10)) {
        Ok(()) => {}
        Err(Error::Dropped { first, .. }) => assert_eq!(first.class, ErrorKind::MarkerLost, "{first:?}"),
        Err(e) => panic!("{e}"),
    }
    assert_eq!(counter(&mut admin, "T1", "X").unwrap().value, 6);
    assert!(cache.stats().marker_losses >= 1, "{:?}", cache.stats());
    assert!(cache.health().marker_lost.is_some(), "{:?}", cache.health());
}

/// Issue 28, item 1: the same raw event appended twice, the marker deleted,
/// and the second batch cut by the proxy before any byte of it reached
/// Redis. The log ends with the bytes the batch appends (the first event's
/// own), which proves nothing: it was acknowledged (`acked_seq` 2, only
/// seq 1 listed as dropped, Redis holding 1 of the 2 events). Now it is
/// reported (`Error::Dropped` from `flush`, listed by `take_dropped`), not
/// replayed (had it applied, that would duplicate it), and writing goes on.
#[test]
fn an_identical_event_in_doubt_with_the_marker_gone_is_reported_not_acknowledged() {
    use tradecache::raw::{Collection, RawValue};
    let server = RedisServer::start();
    let mut admin = server.client();
    let proxy = Proxy::start(server.addr());
    let cache = Cache::open(through(&proxy)).unwrap();
    let fills = Collection::new("fills").unwrap();
    let event = RawValue::msgpack(vec![0x01]).unwrap();
    let log = |admin: &mut redis::Connection| -> Vec<Vec<u8>> {
        redis::cmd("LRANGE").arg("trader-T1:fills:F-1:events").arg(0).arg(-1).query(admin).unwrap()
    };
    cache.append_raw(fills, "F-1", event.clone()).unwrap();
    cache.flush(Duration::from_secs(10)).unwrap();
    let _: () = redis::cmd("DEL").arg("trader-T1:writer:main").query(&mut admin).unwrap();
    // Nothing of the next batch reaches Redis.
    proxy.cut_after_upstream_bytes(0);
    let second = cache.append_raw(fills, "F-1", event.clone()).unwrap();
    let err = cache.flush(Duration::from_secs(30)).expect_err("the second event is not proven written");
    assert!(matches!(&err, Error::Dropped { first, .. } if first.class == ErrorKind::MarkerLost), "{err}");
    let dropped = cache.take_dropped();
    assert!(
        dropped.iter().any(|d| d.seq <= second && second.get() < d.seq.get() + d.writes),
        "the write in doubt is listed: {dropped:?}"
    );
    assert_eq!(log(&mut admin), vec![vec![0x01]], "not replayed on a guess");
    assert_eq!(cache.stats().replays, 0, "{:?}", cache.stats());
    // Writing goes on.
    cache.append_raw(fills, "F-1", RawValue::msgpack(vec![0x02]).unwrap()).unwrap();
    cache.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(log(&mut admin), vec![vec![0x01], vec![0x02]]);
}

/// The marker deleted while idle: the next batch's `EXEC` is aborted by
/// the `WATCH` on it, so that batch is known not to be in Redis, and it
/// is replayed even though its log already ends with an identical event
/// (nothing reported for it).
#[test]
fn a_batch_aborted_by_a_deleted_marker_is_replayed_even_with_identical_events() {
    use tradecache::raw::{Collection, RawValue};
    let server = RedisServer::start();
    let mut admin = server.client();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    let fills = Collection::new("fills").unwrap();
    let event = RawValue::msgpack(vec![0x01]).unwrap();
    cache.append_raw(fills, "F-1", event.clone()).unwrap();
    cache.flush(Duration::from_secs(10)).unwrap();
    let _: () = redis::cmd("DEL").arg("trader-T1:writer:main").query(&mut admin).unwrap();
    let second = cache.append_raw(fills, "F-1", event).unwrap();
    // The marker's loss is reported (for the acknowledged write), the
    // batch in doubt is not.
    let _ = cache.flush(Duration::from_secs(10));
    let dropped = cache.take_dropped();
    assert!(dropped.iter().all(|d| d.seq < second), "{dropped:?}");
    let log: Vec<Vec<u8>> =
        redis::cmd("LRANGE").arg("trader-T1:fills:F-1:events").arg(0).arg(-1).query(&mut admin).unwrap();
    assert_eq!(log, vec![vec![0x01], vec![0x01]]);
}

/// Issue 28, item 2 (`unqueue_next`): Redis refuses every transaction
/// (`maxmemory` reached: `EXECABORT`) while batches are queued behind the
/// one refused, and the connection is cut at each reply boundary in turn
/// (after the refused `EXEC`'s reply, before the marker's, say). The
/// batch queued behind was read on the failed stream: the flusher died
/// (a debug assertion in `link.rs`). Each cut is a reconnect; once Redis
/// takes writes again every event lands once.
#[test]
fn a_refused_exec_with_a_batch_queued_behind_survives_a_cut_at_every_reply() {
    let server = RedisServer::start();
    let mut admin = server.client();
    let proxy = Proxy::start(server.addr());
    let cache = Cache::open(through(&proxy).max_batch(1)).unwrap();
    let mut n = 0;
    for k in 0..24 {
        let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(1).query(&mut admin).unwrap();
        let before = proxy.connections();
        proxy.cut_after_replies(k);
        for _ in 0..4 {
            n += 1;
            cache.append("A", &Tick { n }).unwrap();
        }
        // Refused, retried with backoff, until the cut (and a reconnect).
        wait_until("the cut", Duration::from_secs(30), || proxy.connections() > before);
        let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0).query(&mut admin).unwrap();
        cache.flush(Duration::from_secs(30)).unwrap_or_else(|e| panic!("after a cut at reply {k}: {e}"));
    }
    assert_exactly_once(&ticks(&mut admin, "T1", "A"), n);
    let stats = cache.stats();
    assert!(stats.error_count("oom") >= 1, "{stats:?}");
}
