//! Issue 15, running 24/7: live event streams (`publish_events`) read by
//! consumers on connections (and in processes) of their own, and the
//! heartbeat (`heartbeat_interval`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::*;
use tradecache::{Cache, OverflowPolicy};

const STREAM: &str = "trader-T1:stream:counters";

/// A consumer in the style of any Redis client: `XREAD BLOCK` from the
/// last id it saw, on a connection of its own. Returns (entity id, tick)
/// of every entry, in stream order, once it has `n` (or after 60 s).
fn consumer(port: u16, n: usize) -> thread::JoinHandle<Vec<(String, u64)>> {
    thread::spawn(move || {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
        // The test's CLIENT KILLs may cut a connection being opened too.
        let connect = || loop {
            match client.get_connection() {
                Ok(con) => return con,
                Err(_) => thread::sleep(ms(10)),
            }
        };
        let mut con = connect();
        let mut last = "0-0".to_string();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.len() < n && Instant::now() < deadline {
            let reply: redis::RedisResult<redis::Value> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(500)
                .arg("BLOCK")
                .arg(100)
                .arg("STREAMS")
                .arg(STREAM)
                .arg(&last)
                .query(&mut con);
            let Ok(reply) = reply else {
                // Cut too: reconnect and go on from the last id seen.
                con = connect();
                continue;
            };
            for (id, fields) in entries(reply) {
                last = id;
                got.push(fields);
            }
        }
        got
    })
}

/// The entries of an `XREAD` reply: (stream id, (entity id, tick)).
fn entries(reply: redis::Value) -> Vec<(String, (String, u64))> {
    use redis::Value;
    let text = |v: &Value| match v {
        Value::BulkString(b) => b.clone(),
        Value::SimpleString(s) => s.clone().into_bytes(),
        other => panic!("unexpected {other:?}"),
    };
    let mut out = Vec::new();
    let streams = match reply {
        Value::Nil => return out,
        Value::Array(s) => s,
        Value::Map(m) => m.into_iter().map(|(k, v)| Value::Array(vec![k, v])).collect(),
        other => panic!("unexpected XREAD reply {other:?}"),
    };
    for stream in streams {
        let Value::Array(mut parts) = stream else { panic!("stream") };
        let Some(Value::Array(items)) = parts.pop() else { panic!("items") };
        for item in items {
            let Value::Array(item) = item else { panic!("entry") };
            let id = String::from_utf8(text(&item[0])).unwrap();
            let Value::Array(fields) = &item[1] else { panic!("fields") };
            let mut entity = String::new();
            let mut tick = None;
            for pair in fields.chunks(2) {
                match text(&pair[0]).as_slice() {
                    b"id" => entity = String::from_utf8(text(&pair[1])).unwrap(),
                    b"ev" => tick = Some(rmp_serde::from_slice::<Tick>(&text(&pair[1])).unwrap().n),
                    other => panic!("unexpected field {other:?}"),
                }
            }
            out.push((id, (entity, tick.expect("ev field"))));
        }
    }
    out
}

fn kill_clients(con: &mut redis::Connection) {
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query(con)
        .unwrap();
}

/// `redis-cli` (installed with redis-server), a consumer in another process.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let cli = crate::harness::redis_server_path().with_file_name("redis-cli");
    let out = std::process::Command::new(&cli)
        .arg("-p")
        .arg(port.to_string())
        .arg("--raw")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{} (installed with redis-server): {e}", cli.display()));
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn consumers_see_every_acknowledged_event_once_in_order_across_reconnects() {
    const N: u64 = 5_000;
    let server = RedisServer::start();
    let mut admin = server.client();
    let cfg = config(server.port(), "T1")
        .publish_events(true)
        .overflow(OverflowPolicy::Block { timeout: Duration::from_secs(30) });
    let cache = Cache::open(cfg).unwrap();
    let reader = consumer(server.port(), N as usize);
    for n in 1..=N {
        // Two entities' logs, one stream per collection.
        let id = if n % 2 == 0 { "A" } else { "B" };
        cache.append(id, &Tick { n }).unwrap();
        if n % 1000 == 500 {
            // The flusher's connection (and the consumer's) cut mid-stream.
            kill_clients(&mut admin);
        }
    }
    cache.flush(Duration::from_secs(30)).unwrap();
    let got = reader.join().unwrap();
    let ticks: Vec<u64> = got.iter().map(|(_, n)| *n).collect();
    matrix_row("publish_events: stream read with XREAD, 5 CLIENT KILLs", "stream", &ticks, N);
    for (id, n) in &got {
        assert_eq!(id, if n % 2 == 0 { "A" } else { "B" });
    }
    assert!(cache.stats().reconnects >= 1, "{:?}", cache.stats());
    // The logs hold the same events.
    let mut a = ticks.iter().copied().filter(|n| n % 2 == 0).collect::<Vec<_>>();
    a.sort_unstable();
    assert_eq!(crate::harness::ticks(&mut admin, "T1", "A"), a);
    // And another process reads the same stream.
    assert_eq!(redis_cli(server.port(), &["XLEN", STREAM]).trim(), N.to_string());
    let first = redis_cli(server.port(), &["XRANGE", STREAM, "-", "+", "COUNT", "1"]);
    assert!(first.lines().any(|l| l == "id") && first.lines().any(|l| l == "B"), "{first}");
}

#[test]
fn a_replayed_or_in_doubt_batch_publishes_once() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let cfg = config(proxy.port(), "T1")
        .publish_events(true)
        .response_timeout(ms(300))
        .buffer_interval_ms(20)
        .overflow(OverflowPolicy::Block { timeout: Duration::from_secs(30) });
    let cache = Cache::open(cfg).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(10)).unwrap();
    // 1. A transaction cut before its EXEC: replayed.
    proxy.cut_after_upstream_bytes(200);
    for n in 2..=300 {
        cache.append("A", &Tick { n }).unwrap();
    }
    cache.flush(Duration::from_secs(30)).unwrap();
    assert!(cache.stats().replays >= 1, "{:?}", cache.stats());
    // 2. A batch applied whose reply is lost: the marker says applied.
    let timeouts = cache.stats().error_count("timeout");
    proxy.drop_replies(true);
    for n in 301..=600 {
        cache.append("A", &Tick { n }).unwrap();
    }
    wait_until("the lost reply times out", Duration::from_secs(20), || {
        cache.stats().error_count("timeout") > timeouts
    });
    proxy.drop_replies(false);
    cache.flush(Duration::from_secs(30)).unwrap();
    let reader = consumer(server.port(), 600);
    let got: Vec<u64> = reader.join().unwrap().into_iter().map(|(_, n)| n).collect();
    matrix_row("publish_events: batch cut before EXEC, then EXEC reply lost (proxy)", "stream", &got, 600);
    assert_exactly_once(&crate::harness::ticks(&mut server.client(), "T1", "A"), 600);
}

#[test]
fn streams_are_trimmed_by_length_and_by_age() {
    let server = RedisServer::start();
    let mut con = server.client();
    let cfg = config(server.port(), "T1").publish_events(true).stream_max_len(100).max_batch(50);
    let cache = Cache::open(cfg).unwrap();
    for n in 1..=2_000 {
        cache.append("A", &Tick { n }).unwrap();
    }
    cache.flush(Duration::from_secs(10)).unwrap();
    // `MAXLEN ~ 100` trims whole nodes (100 entries each by default).
    let len: u64 = redis::cmd("XLEN").arg(STREAM).query(&mut con).unwrap();
    assert!((100..=300).contains(&len), "XLEN {len}");
    drop(cache);

    // Entries older than the age (ids are milliseconds): three full nodes
    // of year-2001 entries, then one event published under a one-hour age.
    let _: () = redis::cmd("DEL").arg(STREAM).query(&mut con).unwrap();
    for i in 1..=300u64 {
        let _: String = redis::cmd("XADD")
            .arg(STREAM)
            .arg(format!("1000000000000-{i}"))
            .arg("id")
            .arg("old")
            .arg("ev")
            .arg("x")
            .query(&mut con)
            .unwrap();
    }
    let cfg =
        config(server.port(), "T1").publish_events(true).stream_max_age(Some(Duration::from_secs(3600)));
    let cache = Cache::open(cfg).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(10)).unwrap();
    let len: u64 = redis::cmd("XLEN").arg(STREAM).query(&mut con).unwrap();
    assert_eq!(len, 1, "the old entries are trimmed");
    // Market data is not published (it has capped lists of its own).
    let quote =
        tradecache::model::QuoteTick::example("BTCUSDT-PERP.BINANCE", tradecache::model::UnixNanos(1));
    cache.append_market_data(&quote).unwrap();
    cache.flush(Duration::from_secs(10)).unwrap();
    let streams: Vec<String> = redis::cmd("KEYS").arg("trader-T1:stream:*").query(&mut con).unwrap();
    assert_eq!(streams, vec![STREAM.to_string()]);
}

/// Issue 19: `stream_max_age` trims by the Redis server's clock (stream
/// ids are its milliseconds), not by the engine's. With the engine's clock
/// an hour ahead and a 10-minute age, the events a batch publishes stay;
/// entries older than 10 minutes by the server's clock still go, and
/// younger ones stay.
#[test]
fn stream_max_age_trims_by_the_server_clock_not_the_engines() {
    let server = RedisServer::start();
    let mut con = server.client();
    let (secs, _micros): (u64, u64) = redis::cmd("TIME").query(&mut con).unwrap();
    let server_ms = secs * 1000;
    let min = 60_000;
    // Three full nodes (100 entries each by default: `MINID ~` trims
    // whole nodes) 20 minutes old by the server's clock, then one entry
    // 5 minutes old.
    let ev = rmp_serde::to_vec(&Tick { n: 0 }).unwrap();
    let xadd = |con: &mut redis::Connection, id: String, what: &str| {
        let _: String =
            redis::cmd("XADD").arg(STREAM).arg(id).arg("id").arg(what).arg("ev").arg(&ev).query(con).unwrap();
    };
    for i in 1..=300u64 {
        xadd(&mut con, format!("{}-{i}", server_ms - 20 * min), "old");
    }
    xadd(&mut con, format!("{}-0", server_ms - 5 * min), "recent");
    let cfg = config(server.port(), "T1")
        .publish_events(true)
        .stream_max_age(Some(Duration::from_secs(600)))
        .clock_skew_for_tests(3_600_000);
    let cache = Cache::open(cfg).unwrap();
    for n in 1..=3 {
        cache.append("A", &Tick { n }).unwrap();
    }
    cache.flush(Duration::from_secs(10)).unwrap();
    let range: redis::Value = redis::cmd("XRANGE").arg(STREAM).arg("-").arg("+").query(&mut con).unwrap();
    // In the shape of an `XREAD` reply, for `entries`.
    let reply =
        redis::Value::Array(vec![redis::Value::Array(vec![redis::Value::BulkString(STREAM.into()), range])]);
    let got: Vec<String> = entries(reply).into_iter().map(|(_, (id, n))| format!("{id}:{n}")).collect();
    assert_eq!(got, ["recent:0", "A:1", "A:2", "A:3"], "what the stream holds after the batch");
    cache.close(Duration::from_secs(10)).unwrap();
}

/// The heartbeat's JSON fields.
fn heartbeat(con: &mut redis::Connection) -> Option<serde_json::Value> {
    let raw: Option<String> = redis::cmd("GET").arg("trader-T1:heartbeat:main").query(con).unwrap();
    raw.map(|r| serde_json::from_str(&r).unwrap())
}

#[test]
fn heartbeat_is_kept_while_alive_and_vanishes_when_not() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let mut con = server.client();
    let cfg = config(proxy.port(), "T1").heartbeat_interval(Some(ms(50)));
    let cache = Cache::open(cfg.clone()).unwrap();
    // Idle: written on its own, with a TTL of three intervals.
    wait_until("the first heartbeat", Duration::from_secs(20), || heartbeat(&mut con).is_some());
    let hb = heartbeat(&mut con).unwrap();
    let marker: String = redis::cmd("GET").arg("trader-T1:writer:main").query(&mut con).unwrap();
    assert_eq!(hb["writer"], "main");
    assert_eq!(hb["epoch"].as_u64().unwrap().to_string(), marker.split(':').next().unwrap());
    assert!(hb["ts_ms"].as_u64().unwrap() > 1_600_000_000_000);
    let pttl: i64 = redis::cmd("PTTL").arg("trader-T1:heartbeat:main").query(&mut con).unwrap();
    assert!((1..=150).contains(&pttl), "PTTL {pttl}");
    // Writing: it rides in the batches and shows the acknowledged seq.
    let stop = Arc::new(AtomicBool::new(false));
    let cache = Arc::new(cache);
    let writer = tick_writer(cache.clone(), stop.clone());
    wait_until("a heartbeat showing writes", Duration::from_secs(20), || {
        heartbeat(&mut con).is_some_and(|hb| hb["acked_seq"].as_u64().unwrap() > 100)
    });
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().unwrap();
    cache.flush(Duration::from_secs(10)).unwrap();
    assert_exactly_once(&ticks(&mut con, "T1", "A"), written);
    let seq = cache.last_seq().get();
    wait_until("a heartbeat with everything acknowledged", Duration::from_secs(20), || {
        heartbeat(&mut con).is_some_and(|hb| hb["acked_seq"].as_u64() == Some(seq) && hb["backlog"] == 0)
    });
    // Redis unreachable (a partition): the key expires within its TTL.
    proxy.half_open(true);
    wait_until("the heartbeat expires", Duration::from_secs(20), || heartbeat(&mut con).is_none());
    proxy.half_open(false);
    wait_until("the heartbeat is back", Duration::from_secs(20), || heartbeat(&mut con).is_some());
    // The engine stops: it expires.
    let cache = Arc::try_unwrap(cache).ok().unwrap();
    cache.close(Duration::from_secs(10)).unwrap();
    wait_until("the heartbeat expires after close", Duration::from_secs(20), || {
        heartbeat(&mut con).is_none()
    });
}
