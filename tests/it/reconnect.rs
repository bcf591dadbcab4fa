//! Connection loss mid-stream: every accepted write lands exactly once and
//! writing goes on by itself.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::harness::*;
use tradecache::{Cache, ErrorKind, OverflowPolicy, PushError};

const N: u64 = 20_000;

/// Appends ticks 1..=N to counter "A" (and puts its snapshot) from another
/// thread, pacing itself so the stream spans the fault.
fn writer(cache: Arc<Cache>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for i in 1..=N {
            cache.append("A", &Tick { n: i }).expect("accepted");
            cache.put(&Counter { id: "A".into(), value: i }).expect("accepted");
            if i % 200 == 0 {
                thread::sleep(ms(10));
            }
        }
    })
}

fn blocking(port: u16) -> tradecache::Config {
    config(port, "T1").overflow(OverflowPolicy::Block { timeout: Duration::from_secs(60) })
}

#[test]
fn redis_killed_and_restarted_mid_stream() {
    let mut server = RedisServer::builder().appendfsync("always").start();
    let cache = Arc::new(Cache::open(blocking(server.port())).unwrap());
    let w = writer(cache.clone());
    while cache.stats().acked < N / 4 {
        thread::sleep(ms(5));
    }
    server.kill();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cache.health().connected {
        assert!(std::time::Instant::now() < deadline, "the flusher never noticed the kill");
        thread::sleep(ms(5));
    }
    let during = cache.health();
    assert!(during.last_error_class.is_some(), "{during:?}");
    server.restart();
    w.join().unwrap();
    cache.flush(Duration::from_secs(60)).unwrap();
    let mut con = server.client();
    let got = ticks(&mut con, "T1", "A");
    matrix_row("Redis SIGKILLed mid-stream, restarted from AOF (always)", &health_cell(&during), &got, N);
    assert_eq!(counter(&mut con, "T1", "A").unwrap().value, N);
    let stats = cache.stats();
    assert!(stats.reconnects >= 1, "{stats:?}");
    // Writing goes on after the fault without the caller doing anything.
    let seq = cache.put(&Counter { id: "after".into(), value: 1 }).unwrap();
    cache.wait(seq, Duration::from_secs(10)).unwrap();
}

#[test]
fn flusher_connection_killed_mid_stream() {
    let server = RedisServer::start();
    let cache = Arc::new(Cache::open(blocking(server.port())).unwrap());
    let w = writer(cache.clone());
    let mut con = server.client();
    let mut kills = 0;
    let mut during = None;
    while !w.is_finished() && kills < 5 {
        thread::sleep(ms(150));
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes")
            .query(&mut con)
            .unwrap();
        kills += killed;
        if killed > 0 && during.is_none() {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while cache.health().last_error_class.is_none() && std::time::Instant::now() < deadline {
                thread::sleep(ms(1));
            }
            during = Some(cache.health());
        }
    }
    w.join().unwrap();
    cache.flush(Duration::from_secs(60)).unwrap();
    let got = ticks(&mut con, "T1", "A");
    let cell = during.as_ref().map_or_else(|| "not sampled".into(), health_cell);
    matrix_row("flusher connection killed (CLIENT KILL), 5 times mid-stream", &cell, &got, N);
    assert!(kills >= 1);
    assert!(cache.stats().reconnects >= 1, "{:?}", cache.stats());
}

#[test]
fn channel_full_while_redis_is_down() {
    let mut server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1").channel_capacity(16).max_pending_events(16)).unwrap();
    server.kill();
    // Reject: values come back and are counted; nothing is dropped silently.
    let mut accepted = 0u64;
    let mut rejected = Vec::new();
    for i in 1..=200u64 {
        match cache.append("A", &Tick { n: i }) {
            Ok(_) => accepted += 1,
            Err(PushError::Full(tick)) => rejected.push(tick.n),
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(!rejected.is_empty(), "the channel never filled");
    assert_eq!(cache.stats().rejected, rejected.len() as u64);
    assert_eq!(accepted + rejected.len() as u64, 200);
    assert!(cache.health().backlog >= accepted.min(1));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cache.health().connected {
        assert!(std::time::Instant::now() < deadline, "the flusher never noticed the kill");
        thread::sleep(ms(5));
    }
    let during = cache.health();

    server.restart();
    cache.flush(Duration::from_secs(30)).unwrap();
    let got = ticks(&mut server.client(), "T1", "A");
    assert_eq!(got.len() as u64, accepted, "every accepted write lands");
    assert!(got.iter().all(|n| !rejected.contains(n)), "no rejected write lands");
    let expected: Vec<u64> = (1..=200).filter(|n| !rejected.contains(n)).collect();
    assert_eq!(got, expected, "exactly the accepted writes, in order");
    eprintln!(
        "FAULT-MATRIX | Redis down, channel full (Reject) | {} | lost 0 of {accepted} accepted; {} rejected and handed back | duplicates 0",
        health_cell(&during),
        rejected.len()
    );
}

#[test]
fn block_policy_times_out() {
    let server = RedisServer::start();
    let cache = Cache::open(
        config(server.port(), "T1")
            .channel_capacity(4)
            .max_pending_events(4)
            .overflow(OverflowPolicy::Block { timeout: ms(50) }),
    )
    .unwrap();
    server.pause();
    let mut full = 0;
    for i in 1..=100u64 {
        if let Err(e) = cache.append("A", &Tick { n: i }) {
            assert!(e.is_full());
            full += 1;
            break;
        }
    }
    server.resume();
    assert_eq!(full, 1, "Block gave up after its timeout");
    assert!(cache.stats().rejected >= 1);
    cache.flush(Duration::from_secs(30)).unwrap();
}

#[test]
fn open_against_closed_port_fails_clearly() {
    let port = crate::harness::free_port();
    let err = Cache::open(config(port, "T1")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("2 attempt"), "{text}");
    // The cause is kept as the error's source, down to the operating
    // system's error.
    let chain = chain(&err);
    assert!(chain.len() >= 2, "{chain:?}");
    let refused = std::iter::successors(std::error::Error::source(&err), |e| e.source())
        .filter_map(|e| e.downcast_ref::<tradecache::SourceError>())
        .any(|e| e.io_kind() == Some(std::io::ErrorKind::ConnectionRefused));
    assert!(refused, "{chain:?}");
}

/// The error and its sources, each as text.
fn chain(err: &tradecache::Error) -> Vec<String> {
    std::iter::successors(Some(err as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect()
}

#[test]
fn open_with_wrong_password_fails_clearly() {
    let server = RedisServer::builder().password("right-secret").start();
    let err = Cache::open(config(server.port(), "T1").password("wrong-secret")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("wrong-secret") && !text.contains("right-secret"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{}", server.port())), "{text}");
    // Its source chain says what the server answered, and no password.
    let chain = chain(&err);
    assert!(chain.len() >= 2, "the server's refusal is the source: {chain:?}");
    let all = format!("{chain:?} {:?}", std::error::Error::source(&err));
    assert!(!all.contains("wrong-secret") && !all.contains("right-secret"), "{all}");
    Cache::open(config(server.port(), "T1").password("right-secret")).unwrap();
}

#[test]
fn open_against_stalled_server_times_out() {
    let server = RedisServer::start();
    server.pause();
    let err = Cache::open(config(server.port(), "T1").connect_timeout(ms(200))).unwrap_err();
    server.resume();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains(&server.port().to_string()));
}
