//! `close` and `Drop`: every accepted write is in Redis or reported
//! unpersisted when they return, within their deadline, with Redis up, down
//! or stalled, and nothing reaches Redis after the deadline.

use std::time::{Duration, Instant};

use crate::harness::*;
use tradecache::{Cache, Error, OverflowPolicy};

/// What "close never hangs" means in these tests: far above every bound
/// involved (timeouts of at most a few seconds), so a loaded machine never
/// fails them, and far below forever.
const HANG: Duration = Duration::from_secs(30);

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

#[test]
fn close_with_redis_down_is_bounded_and_reports_losses() {
    let mut server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    server.kill();
    for i in 1..=50 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    let start = Instant::now();
    let err = cache.close(ms(300)).unwrap_err();
    let took = start.elapsed();
    match err {
        tradecache::Error::Unpersisted(report) => assert_eq!(report.unpersisted, 50),
        other => panic!("unexpected {other}"),
    }
    // A hang detector, not a speed check: close returns (within its 300 ms
    // plus slack; the bound is wide so that a loaded machine passes).
    assert!(took < HANG, "close took {took:?}");
    eprintln!(
        "FAULT-MATRIX | Redis killed and never back; close(300 ms) | connected=false last_error=io | \
         50 of 50 unpersisted, reported by close as Error::Unpersisted | duplicates 0"
    );
}

/// `Drop` is bounded by `close_timeout` (plus slack) with Redis down or
/// stalled, and never hangs.
#[test]
fn drop_with_redis_down_or_stalled_is_bounded() {
    let mut down = RedisServer::start();
    let stalled = RedisServer::start();
    for (what, port) in [("down", down.port()), ("stalled", stalled.port())] {
        let cache = Cache::open(config(port, "T1").close_timeout(ms(300))).unwrap();
        cache.append("A", &Tick { n: 1 }).unwrap();
        cache.flush(Duration::from_secs(5)).unwrap();
        if what == "down" {
            down.kill();
        } else {
            stalled.pause();
        }
        for i in 2..=50 {
            cache.append("A", &Tick { n: i }).unwrap();
        }
        let start = Instant::now();
        drop(cache);
        let took = start.elapsed();
        // A hang detector, not a speed check: 300 ms close_timeout, plus at
        // most one response timeout (1 s) for a read already under way.
        assert!(took < HANG, "Drop with Redis {what} took {took:?}");
    }
    stalled.resume();
}

/// A `Cache` dropped with writes Redis never got says so once: `Drop`
/// logs the count (as `close` returns it in `Error::Unpersisted`), and the
/// flusher, stopping, does not log it a second time.
#[test]
fn a_dropped_cache_logs_the_writes_it_did_not_persist_once() {
    capture_logs();
    let mut server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1").close_timeout(ms(300))).unwrap();
    server.kill();
    // A count no other test leaves behind, so that lines of tests run in
    // the same process (`cargo test`) are not counted.
    for i in 0..41 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    drop(cache);
    let lines: Vec<String> =
        logged().into_iter().filter(|l| l.contains(" 41 accepted write(s) not persisted")).collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
}

/// Redis down and the channel full (the flusher holds `max_pending_events`
/// and no longer drains): `close` still stops the flusher within its
/// timeout, counts every accepted write as unpersisted, and nothing is
/// written behind the caller's back once Redis returns.
#[test]
fn close_with_channel_full_and_redis_down_stops_the_flusher() {
    // `always`: the first write, acknowledged before the SIGKILL, must
    // survive it (under `everysec` the kill may take the last second).
    let mut server = RedisServer::builder().appendfsync("always").start();
    let cache = Cache::open(config(server.port(), "T1").channel_capacity(16).max_pending_events(16)).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    server.kill();
    let mut accepted = 0u64;
    for i in 2..=500u64 {
        if cache.append("A", &Tick { n: i }).is_ok() {
            accepted += 1;
        }
    }
    assert!(cache.stats().rejected > 0, "the channel filled: {:?}", cache.stats());
    let start = Instant::now();
    let err = cache.close(ms(300)).unwrap_err();
    let took = start.elapsed();
    match err {
        tradecache::Error::Unpersisted(report) => {
            assert_eq!(report.unpersisted, accepted, "{report:?}");
            assert_eq!(report.acked_seq, 1, "{report:?}");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(took < HANG, "close took {took:?}");
    server.restart();
    // An absence cannot be awaited: give a leftover flusher (reconnect
    // backoff at most 200 ms here) ample time to show itself.
    std::thread::sleep(ms(1_000));
    let mut con = server.client();
    assert_eq!(ticks(&mut con, "T1", "A"), vec![1], "no write after close returned");
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut con).unwrap();
    assert_eq!(clients.lines().count(), 1, "only this test's connection: {clients}");
}

#[test]
fn close_after_100k_writes_loses_nothing() {
    let server = RedisServer::start();
    let cache = Cache::open(
        config(server.port(), "T1").overflow(OverflowPolicy::Block { timeout: Duration::from_secs(10) }),
    )
    .unwrap();
    const N: u64 = 100_000;
    for i in 1..=N {
        let id = format!("C{}", i % 100);
        cache.append(&id, &Tick { n: i }).unwrap();
        if i % 10 == 0 {
            cache.put(&Counter { id, value: i }).unwrap();
        }
    }
    let accepted = cache.stats().accepted;
    let report = cache.close(Duration::from_secs(30)).unwrap();
    assert_eq!(report.unpersisted, 0);
    assert_eq!(report.acked_seq, accepted);
    let mut con = server.client();
    let mut total = 0;
    for c in 0..100 {
        let got = ticks(&mut con, "T1", &format!("C{c}"));
        assert!(got.windows(2).all(|w| w[0] < w[1]), "events of C{c} out of order");
        total += got.len() as u64;
    }
    assert_eq!(total, N);
}

#[test]
fn drop_flushes() {
    let server = RedisServer::start();
    {
        let cache = Cache::open(config(server.port(), "T1")).unwrap();
        for i in 1..=1_000 {
            cache.append("A", &Tick { n: i }).unwrap();
        }
    }
    assert_exactly_once(&ticks(&mut server.client(), "T1", "A"), 1_000);
}
