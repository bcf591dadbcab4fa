//! Batches whose `EXEC` reply is lost, or that are cut mid-transaction:
//! the commit marker decides, and each event lands exactly once.

use std::time::Duration;

use crate::harness::*;
use crate::harness::{Proxy, RedisServer};
use tradecache::{Cache, OverflowPolicy};

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

#[test]
fn flush_on_start_deletes_only_this_trader() {
    let server = RedisServer::start();
    let mut con = server.client();
    let _: () = redis::cmd("SET").arg("unrelated:key").arg("keep").query(&mut con).unwrap();
    for trader in ["T1", "T2"] {
        let cache = Cache::open(config(server.port(), trader)).unwrap();
        cache.put(&Counter { id: "A".into(), value: 1 }).unwrap();
        cache.append("A", &Tick { n: 1 }).unwrap();
        cache.close(Duration::from_secs(5)).unwrap();
    }
    let cache = Cache::open(config(server.port(), "T1").flush_on_start(true)).unwrap();
    assert!(counter(&mut con, "T1", "A").is_none());
    assert!(ticks(&mut con, "T1", "A").is_empty());
    assert_eq!(counter(&mut con, "T2", "A").unwrap().value, 1, "another trader's keys survive");
    assert_eq!(ticks(&mut con, "T2", "A"), vec![1]);
    let kept: String = redis::cmd("GET").arg("unrelated:key").query(&mut con).unwrap();
    assert_eq!(kept, "keep");
    // Numbering restarts cleanly after the marker was deleted.
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(ticks(&mut con, "T1", "A"), vec![1]);
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
