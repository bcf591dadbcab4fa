//! Server-side faults against a real redis-server: each must keep the hot
//! path unblocked, surface the problem in `health()`, lose and duplicate
//! nothing, and resume by itself once the server recovers.

mod common;
mod support;

use std::time::{Duration, Instant};

use common::*;
use support::RedisServer;
use tradecache::{Cache, ErrorClass};

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(ms(10));
    }
}

#[test]
fn stalled_server_sigstop_then_sigcont() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1").response_timeout(ms(200))).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    server.pause();
    // The hot path keeps accepting while the flusher times out.
    for i in 2..=1_000 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    wait_until("the flusher to notice the stall", Duration::from_secs(10), || {
        cache.stats().error_count("timeout") > 0
    });
    assert!(!cache.health().connected || cache.health().backlog > 0);
    server.resume();
    cache.flush(Duration::from_secs(30)).unwrap();
    assert_exactly_once(&ticks(&mut server.client(), "T1", "A"), 1_000);
    assert!(cache.health().is_healthy(), "{:?}", cache.health());
}

#[test]
fn out_of_memory_is_backpressure_then_resumes() {
    let server = RedisServer::builder().arg("maxmemory-policy", "noeviction").start();
    let mut admin = server.client();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("1").query(&mut admin).unwrap();
    for i in 2..=500 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    wait_until("OOM in health()", Duration::from_secs(10), || {
        cache.health().last_error_class == Some(ErrorClass::Oom)
    });
    let health = cache.health();
    assert!(health.backpressure.as_deref().unwrap_or("").contains("oom"), "{health:?}");
    assert!(!health.is_healthy());
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("0").query(&mut admin).unwrap();
    cache.flush(Duration::from_secs(30)).unwrap();
    assert_exactly_once(&ticks(&mut admin, "T1", "A"), 500);
    assert!(cache.health().backpressure.is_none(), "{:?}", cache.health());
}

#[test]
fn password_changed_at_run_time() {
    let server = RedisServer::builder().password("old-secret").start();
    let mut admin = server.client();
    let cache = Cache::open(config(server.port(), "T1").password("old-secret")).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("new-secret").query(&mut admin).unwrap();
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query(&mut admin)
        .unwrap();
    for i in 2..=100 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    wait_until("auth failure in health()", Duration::from_secs(10), || {
        cache.health().last_error_class == Some(ErrorClass::Auth)
    });
    // Retried with backoff, not in a busy loop.
    let before = cache.stats().error_count("auth");
    std::thread::sleep(ms(500));
    let retries = cache.stats().error_count("auth") - before;
    assert!(retries <= 50, "{retries} auth retries in 500 ms: a busy loop");
    let text = format!("{:?} {:?}", cache.health(), cache.stats());
    assert!(!text.contains("old-secret") && !text.contains("new-secret"), "{text}");
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("old-secret").query(&mut admin).unwrap();
    cache.flush(Duration::from_secs(30)).unwrap();
    assert_exactly_once(&ticks(&mut admin, "T1", "A"), 100);
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
    // Behaviour, not speed: close honours its bound (timeout + slack).
    assert!(took < Duration::from_secs(3), "close took {took:?}");
}

#[test]
fn loading_after_restart_is_waited_out() {
    let mut server = RedisServer::builder()
        .appendfsync("always")
        .arg("key-load-delay", "200")
        .arg("loading-process-events-interval-bytes", "1024")
        .start();
    let mut admin = server.client();
    // A large enough AOF that loading it takes a while.
    for chunk in 0..30 {
        let mut pipe = redis::pipe();
        for i in 0..100 {
            pipe.cmd("SET").arg(format!("bulk:{chunk}:{i}")).arg("x").ignore();
        }
        let _: () = pipe.query(&mut admin).unwrap();
    }
    let _: () = redis::cmd("BGREWRITEAOF").query(&mut admin).unwrap();
    drop(admin);
    std::thread::sleep(ms(500));
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    server.kill();
    server.restart(); // returns while the server still answers LOADING
    for i in 2..=100 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    cache.flush(Duration::from_secs(60)).unwrap();
    assert_exactly_once(&ticks(&mut server.client(), "T1", "A"), 100);
    let stats = cache.stats();
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert!(stats.error_count("busy") >= 1, "LOADING was met and waited out: {stats:?}");
}
