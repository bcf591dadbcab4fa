//! The caching layer's bench: `cargo bench --bench kv` (or `make bench`).
//!
//! Starts one private `redis-server` on a free loopback port and measures
//! `tradecache::kv` next to what a user would do instead, against the same
//! server in the same run: a plain blocking redis-rs `GET`/`SET`/`MGET`, and
//! `redis-benchmark` (`GET`, `SET`, and an `MGET` of the same 100 keys).
//! Writes its figures under the key `kv` of `target/bench/report.json`
//! (other keys are kept: `benches/load.rs` writes the rest) and prints a
//! table. Each timed section runs `BENCH_REPS` times (default 3); the
//! report gives the median of the repetitions and every run. Never touches
//! a Redis on 6379.

// The integration tests' harness; a bench uses only part of it.
#[path = "../tests/it/harness/mod.rs"]
#[allow(dead_code, unused_imports)]
mod harness;

#[path = "common/report.rs"]
mod report;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tradecache::kv::{BreakerState, Kv, KvConfig, Ttl};
use tradecache::model::{Position, Price, Quantity, UnixNanos};
use tradecache::Config;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Quote {
    bid: Price,
    ask: Price,
    size: Quantity,
    ts: UnixNanos,
}

fn quote(n: u64) -> Quote {
    Quote {
        bid: Price::new(18_950 + n as i64, 2),
        ask: Price::new(18_952 + n as i64, 2),
        size: Quantity::new(1_500, 3),
        ts: UnixNanos(1_700_000_000_000_000_000 + n),
    }
}

const KEYS: u64 = 1_000;

fn key(i: u64) -> String {
    format!("S{}:quote", i % KEYS)
}

fn kv_config(port: u16) -> KvConfig {
    KvConfig::builder()
        .redis(Config::builder().host("127.0.0.1").port(port).connect_attempts(3))
        .key_prefix("bench")
        .log_slow_ops(false)
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram")
}

fn pcts(h: &Histogram<u64>, div: f64) -> Value {
    json!({
        "count": h.len(),
        "mean": h.mean() / div,
        "p50": h.value_at_quantile(0.50) as f64 / div,
        "p99": h.value_at_quantile(0.99) as f64 / div,
        "p99_9": h.value_at_quantile(0.999) as f64 / div,
        "max": h.max() as f64 / div,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The median over `runs` of the number at `path`.
fn med(runs: &[Value], path: &[&str]) -> Value {
    let v: Vec<f64> = runs
        .iter()
        .filter_map(|r| path.iter().try_fold(r, |v, k| v.get(*k)).and_then(Value::as_f64))
        .collect();
    if v.is_empty() {
        Value::Null
    } else {
        json!(median(v))
    }
}

/// Medians of every percentile at `path`.
fn med_pcts(runs: &[Value], path: &[&str]) -> Value {
    let mut out = serde_json::Map::new();
    for q in ["mean", "p50", "p99", "p99_9"] {
        let mut p = path.to_vec();
        p.push(q);
        out.insert(q.into(), med(runs, &p));
    }
    Value::Object(out)
}

/// Spins until `start + i / rate`.
fn pace(start: Instant, i: u64, rate: u64) {
    let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
    while Instant::now() < due {
        std::hint::spin_loop();
    }
}

fn ns(t: Instant) -> u64 {
    (t.elapsed().as_nanos() as u64).max(1)
}

// ---------------------------------------------------------------------------
// Sections (one run each)

/// `set` on the calling thread at 100,000/s for 2 s (writer working), and
/// a blocking redis-rs `SET` of the same encoded value.
fn set_run(port: u16, con: &mut redis::Connection) -> Value {
    let kv = Kv::open(kv_config(port)).expect("open");
    let (rate, n) = (100_000u64, 200_000u64);
    let mut h = hist();
    let start = Instant::now();
    for i in 0..n {
        pace(start, i, rate);
        let (k, q) = (key(i), quote(i));
        let t = Instant::now();
        let r = kv.set("market_data", &k, &q, Ttl::Policy);
        let d = ns(t);
        r.expect("set");
        h.record(d).expect("record");
    }
    let achieved = n as f64 / start.elapsed().as_secs_f64();
    kv.flush(Duration::from_secs(30)).expect("flush");
    let stats = kv.stats();
    drop(kv);
    // The same pacing through `Cache::put` (positions, the state writer's
    // hot path), for the comparison the design asks for.
    let cache = tradecache::Cache::open(Config::builder().host("127.0.0.1").port(port).trader_id("KV-BENCH"))
        .expect("open cache");
    let ps: Vec<Position> = (0..KEYS).map(|i| Position::example(&format!("P-{i}"))).collect();
    let mut c = hist();
    let start = Instant::now();
    for i in 0..n {
        pace(start, i, rate);
        let p = &ps[(i % KEYS) as usize];
        let t = Instant::now();
        let r = cache.put(p);
        let d = ns(t);
        r.expect("put");
        c.record(d).expect("record");
    }
    cache.flush(Duration::from_secs(30)).expect("flush");
    drop(cache);
    let mut d = hist();
    for i in 0..20_000u64 {
        let (k, q) = (key(i), quote(i));
        let t = Instant::now();
        let bytes = tradecache::kv::encode(&q, tradecache::Encoding::MsgPack, 1024).expect("encode");
        let _: () = redis::cmd("SET")
            .arg(format!("bench:direct:{k}"))
            .arg(bytes)
            .arg("PX")
            .arg(60_000)
            .query(con)
            .expect("SET");
        d.record(ns(t)).expect("record");
    }
    json!({ "ours": pcts(&h, 1.0), "plain_set_ns": pcts(&d, 1.0), "cache_put_ns": pcts(&c, 1.0), "achieved_per_s": achieved,
            "written": stats.written, "coalesced": stats.coalesced, "dropped": stats.dropped })
}

/// `get` served by the near cache, and `get` that goes to Redis, next to a
/// plain redis-rs `GET` of the same stored value.
fn get_run(port: u16, con: &mut redis::Connection) -> Value {
    // The values, written once.
    let w = Kv::open(kv_config(port)).expect("open");
    for i in 0..KEYS {
        w.set("market_data", &key(i), &quote(i), Ttl::Never).expect("set");
    }
    w.flush(Duration::from_secs(30)).expect("flush");
    drop(w);

    let near =
        Kv::open(kv_config(port).near_capacity(10_000).near_ttl(Duration::from_secs(600))).expect("open");
    for i in 0..KEYS {
        near.get::<Quote>("market_data", &key(i)).expect("get").expect("present");
    }
    let mut hn = hist();
    for i in 0..200_000u64 {
        let k = key(i);
        let t = Instant::now();
        let v = near.get::<Quote>("market_data", &k);
        let d = ns(t);
        black_box(v.expect("get").expect("hit"));
        hn.record(d).expect("record");
    }
    let near_hits = near.stats().near_hits;
    drop(near);

    let kv = Kv::open(kv_config(port)).expect("open");
    let (mut ours, mut plain) = (hist(), hist());
    for i in 0..20_000u64 {
        let k = key(i);
        let t = Instant::now();
        let v = kv.get::<Quote>("market_data", &k);
        let d = ns(t);
        black_box(v.expect("get").expect("present"));
        ours.record(d).expect("record");
        let full = format!("bench:market_data:{k}");
        let t = Instant::now();
        let v: Option<Vec<u8>> = redis::cmd("GET").arg(&full).query(con).expect("GET");
        let d = ns(t);
        black_box(v.expect("present"));
        plain.record(d).expect("record");
    }
    // Sequential gets on one connection, per second.
    let per_conn = 1e9 / ours.mean();
    json!({
        "near_hit_ns": pcts(&hn, 1.0), "near_hits": near_hits,
        "get_redis_us": pcts(&ours, 1000.0), "plain_get_us": pcts(&plain, 1000.0),
        "get_ops_per_s_one_connection": per_conn,
    })
}

/// `get_many` of 100 keys, next to a plain redis-rs `MGET` of the same
/// keys; figures per call (µs) and per key.
fn get_many_run(port: u16, con: &mut redis::Connection) -> Value {
    let kv = Kv::open(kv_config(port)).expect("open");
    let names: Vec<String> = (0..100).map(key).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let full: Vec<String> = names.iter().map(|k| format!("bench:market_data:{k}")).collect();
    let (mut ours, mut plain) = (hist(), hist());
    for _ in 0..5_000 {
        let t = Instant::now();
        let v = kv.get_many::<Quote>("market_data", &refs).expect("get_many");
        let d = ns(t);
        assert_eq!(v.iter().flatten().count(), 100);
        ours.record(d).expect("record");
        let t = Instant::now();
        let v: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&full).query(con).expect("MGET");
        let d = ns(t);
        black_box(v);
        plain.record(d).expect("record");
    }
    let per_key = |h: &Histogram<u64>| {
        json!({ "mean": h.mean() / 100_000.0, "p50": h.value_at_quantile(0.5) as f64 / 100_000.0,
                "p99": h.value_at_quantile(0.99) as f64 / 100_000.0 })
    };
    json!({
        "ours_us": pcts(&ours, 1000.0), "plain_mget_us": pcts(&plain, 1000.0),
        "ours_per_key_us": per_key(&ours), "plain_per_key_us": per_key(&plain),
        "keys_per_s": 100.0 * 1e9 / ours.mean(),
    })
}

/// 50 threads calling `get` (80 %) and `set` (20 %) for 2 s on one `Kv`
/// (50 read connections), next to 50 threads with a redis-rs connection
/// each doing `GET`/`SET`.
fn concurrent_run(port: u16) -> Value {
    const THREADS: usize = 50;
    let secs = Duration::from_secs(2);
    let kv = Arc::new(Kv::open(kv_config(port).max_connections(THREADS)).expect("open"));
    let run = |work: Arc<dyn Fn(usize, u64) + Send + Sync>| -> (f64, Histogram<u64>) {
        let barrier = Arc::new(Barrier::new(THREADS + 1));
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (barrier, stop, work) = (barrier.clone(), stop.clone(), work.clone());
                std::thread::spawn(move || {
                    let mut h = hist();
                    barrier.wait();
                    let mut i = t as u64 * 7919;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let s = Instant::now();
                        work(t, i);
                        h.record(ns(s)).expect("record");
                    }
                    h
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        std::thread::sleep(secs);
        stop.store(true, Ordering::Relaxed);
        let mut all = hist();
        for h in handles {
            all.add(h.join().expect("thread")).expect("merge");
        }
        (all.len() as f64 / start.elapsed().as_secs_f64(), all)
    };
    let k2 = kv.clone();
    let (ours_ops, ours) = run(Arc::new(move |_, i| {
        if i % 5 == 0 {
            k2.set("market_data", &key(i), &quote(i), Ttl::Policy).expect("set");
        } else {
            black_box(k2.get::<Quote>("market_data", &key(i)).expect("get"));
        }
    }));
    let stats = kv.stats();
    let conns: Arc<Vec<std::sync::Mutex<redis::Connection>>> =
        Arc::new((0..THREADS).map(|_| std::sync::Mutex::new(harness::topology::connect(port))).collect());
    let (plain_ops, plain) = run(Arc::new(move |t, i| {
        let mut c = conns[t].lock().expect("lock");
        let k = format!("bench:plain:{}", key(i));
        if i % 5 == 0 {
            let v = tradecache::kv::encode(&quote(i), tradecache::Encoding::MsgPack, 1024).expect("encode");
            let _: () = redis::cmd("SET").arg(&k).arg(v).arg("PX").arg(60_000).query(&mut *c).expect("SET");
        } else {
            let v: Option<Vec<u8>> = redis::cmd("GET").arg(&k).query(&mut *c).expect("GET");
            black_box(v);
        }
    }));
    json!({
        "threads": THREADS, "seconds": secs.as_secs_f64(),
        "ours_ops_per_s": ours_ops, "ours_us": pcts(&ours, 1000.0),
        "plain_ops_per_s": plain_ops, "plain_us": pcts(&plain, 1000.0),
        "hit_rate": stats.hit_rate, "overlay_hits": stats.overlay_hits,
    })
}

/// `get_or_compute` with Redis stopped (the breaker open after the first
/// failure), next to the computation alone.
fn compute_down_run() -> Value {
    let mut server = harness::RedisServer::builder().appendonly(false).start();
    let kv = Kv::open(kv_config(server.port()).breaker_failures(1).breaker_open(Duration::from_secs(600)))
        .expect("open");
    server.stop();
    let compute = |i: u64| quote(black_box(i));
    let _ = kv.get_or_compute("market_data", "warm", Ttl::Policy, || compute(0));
    let open = matches!(kv.stats().breaker, BreakerState::Open { .. });
    let (mut ours, mut alone) = (hist(), hist());
    for i in 0..100_000u64 {
        let k = key(i);
        let t = Instant::now();
        let v = kv.get_or_compute("market_data", &k, Ttl::Policy, || compute(i));
        let d = ns(t);
        black_box(v.expect("never a Redis error"));
        ours.record(d).expect("record");
        let t = Instant::now();
        black_box(compute(i));
        alone.record(ns(t)).expect("record");
    }
    json!({ "ours_ns": pcts(&ours, 1.0), "compute_alone_ns": pcts(&alone, 1.0), "breaker_open": open,
            "overhead_p99_ns": ours.value_at_quantile(0.99) as f64 - alone.value_at_quantile(0.99) as f64 })
}

/// `redis-benchmark` with one client, not pipelined (the same round trips
/// as a blocking call): `GET`, `SET` of 60 bytes, and `MGET` of the 100
/// keys `get_many` reads. Requests/s and p50 (ms) per test.
fn redis_benchmark(port: u16) -> Value {
    let run = |args: &[String]| -> Value {
        let out = std::process::Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-c", "1", "-q"])
            .args(args)
            .output();
        let text = match out {
            Ok(o) => String::from_utf8_lossy(&o.stdout).to_string(),
            Err(e) => return json!({ "error": format!("redis-benchmark not run: {e}") }),
        };
        let mut found = serde_json::Map::new();
        for line in text.split(['\r', '\n']).filter(|l| l.contains("requests per second")) {
            let (name, rest) = line.split_once(": ").unwrap_or(("?", line));
            let name = name.split_whitespace().next().unwrap_or("?").to_string();
            let rps = rest.split_whitespace().next().and_then(|x| x.parse::<f64>().ok());
            let p50 = rest
                .split("p50=")
                .nth(1)
                .and_then(|x| x.split_whitespace().next())
                .and_then(|x| x.parse::<f64>().ok());
            found.insert(name, json!({ "requests_per_s": rps, "p50_ms": p50 }));
        }
        if found.is_empty() {
            json!({ "error": format!("could not parse: {text:?}") })
        } else {
            Value::Object(found)
        }
    };
    let mut out = serde_json::Map::new();
    let basic: Vec<String> =
        ["-n", "50000", "-d", "60", "-t", "get,set"].iter().map(|s| s.to_string()).collect();
    if let Value::Object(m) = run(&basic) {
        out.extend(m);
    }
    let mut mget: Vec<String> = ["-n", "10000", "MGET"].iter().map(|s| s.to_string()).collect();
    mget.extend((0..100).map(|i| format!("bench:market_data:{}", key(i))));
    if let Value::Object(m) = run(&mget) {
        out.extend(m);
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------
// Report

fn fmt(v: &Value) -> String {
    match v.as_f64() {
        None => "-".into(),
        Some(f) if f.abs() >= 100.0 => format!("{f:.0}"),
        Some(f) => format!("{f:.3}"),
    }
}

fn table(r: &Value) -> String {
    let mut rows: Vec<[String; 5]> = vec![[
        "kv figure".into(),
        "ours".into(),
        "alternative (same run)".into(),
        "ratio".into(),
        "target".into(),
    ]];
    let mut row = |name: &str, ours: &Value, alt: &Value, target: &str| {
        // redis-benchmark rows put its p50 (ms) beside its rate: no ratio.
        let ratio = match (ours.as_f64(), alt.as_f64()) {
            (Some(a), Some(b)) if b != 0.0 && !name.starts_with("redis-benchmark") => format!("{:.3}", a / b),
            _ => "-".into(),
        };
        rows.push([name.into(), fmt(ours), fmt(alt), ratio, target.into()]);
    };
    let s = &r["set_ns"];
    for q in ["p50", "p99", "p99_9"] {
        let t = if q == "p99" { "<= 1000" } else { "" };
        row(&format!("set_ns.{q} (vs plain SET)"), &s["ours"][q], &s["plain_set_ns"][q], t);
    }
    for q in ["p50", "p99"] {
        row(&format!("set_ns.{q} (vs Cache::put, same pacing)"), &s["ours"][q], &s["cache_put_ns"][q], "");
    }
    let g = &r["get"];
    for q in ["p50", "p99"] {
        let t = if q == "p99" { "<= 1000" } else { "" };
        row(&format!("near_hit_ns.{q}"), &g["near_hit_ns"][q], &Value::Null, t);
    }
    for q in ["mean", "p50", "p99"] {
        let t = if q == "p99" { "ratio <= 1.5" } else { "" };
        row(&format!("get_redis_us.{q} (vs plain GET)"), &g["get_redis_us"][q], &g["plain_get_us"][q], t);
    }
    row(
        "get ops/s, one connection",
        &g["get_ops_per_s_one_connection"],
        &r["redis_benchmark"]["GET"]["requests_per_s"],
        ">= 1000",
    );
    let m = &r["get_many_100"];
    for q in ["mean", "p99"] {
        let t = if q == "mean" { "<= 2" } else { "" };
        row(
            &format!("get_many_100 per key µs.{q} (vs plain MGET)"),
            &m["ours_per_key_us"][q],
            &m["plain_per_key_us"][q],
            t,
        );
    }
    row("get_many keys/s", &m["keys_per_s"], &Value::Null, ">= 10000");
    let c = &r["concurrent_50"];
    row("50 threads: ops/s (vs 50 redis-rs conns)", &c["ours_ops_per_s"], &c["plain_ops_per_s"], "");
    row("50 threads: p99 µs", &c["ours_us"]["p99"], &c["plain_us"]["p99"], "");
    let d = &r["get_or_compute_down"];
    row(
        "get_or_compute, Redis down: p99 ns (vs compute alone)",
        &d["ours_ns"]["p99"],
        &d["compute_alone_ns"]["p99"],
        "",
    );
    row("  overhead p99 ns", &d["overhead_p99_ns"], &Value::Null, "<= 5000");
    let rb = &r["redis_benchmark"];
    for t in ["SET", "GET", "MGET"] {
        row(
            &format!("redis-benchmark {t} req/s (-c 1, p50 ms)"),
            &rb[t]["requests_per_s"],
            &rb[t]["p50_ms"],
            "",
        );
    }
    let widths: Vec<usize> =
        (0..5).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in &rows {
        out.push_str(&format!(
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {:<w4$}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4]
        ));
    }
    out
}

fn main() {
    let reps: usize = std::env::var("BENCH_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let started = Instant::now();
    let server = harness::RedisServer::builder()
        .appendfsync("everysec")
        .arg("auto-aof-rewrite-percentage", "0")
        .start();
    let port = server.port();
    let mut con = server.client();
    eprintln!("kv bench: redis-server on 127.0.0.1:{port}, {reps} repetition(s)");
    let mut kv = serde_json::Map::new();
    let mut section = |name: &str, f: &mut dyn FnMut() -> Value, summary: &dyn Fn(&[Value]) -> Value| {
        let t = Instant::now();
        eprintln!("{name} ...");
        let runs: Vec<Value> = (0..reps).map(|_| f()).collect();
        let mut v = summary(&runs);
        if let Value::Object(m) = &mut v {
            m.insert("runs".into(), Value::Array(runs));
        }
        eprintln!("{name}: {:.1} s", t.elapsed().as_secs_f64());
        kv.insert(name.into(), v);
    };
    section("set_ns", &mut || set_run(port, &mut con), &|runs| {
        json!({ "ours": med_pcts(runs, &["ours"]), "plain_set_ns": med_pcts(runs, &["plain_set_ns"]),
                "cache_put_ns": med_pcts(runs, &["cache_put_ns"]),
                "offered_per_s": 100_000,
                "note": "Kv::set of a 4-field quote on the calling thread, paced at 100,000/s (writer thread working); plain: encode + blocking redis-rs SET … PX, back to back" })
    });
    let mut con2 = server.client();
    section("get", &mut || get_run(port, &mut con2), &|runs| {
        json!({ "near_hit_ns": med_pcts(runs, &["near_hit_ns"]), "get_redis_us": med_pcts(runs, &["get_redis_us"]),
                "plain_get_us": med_pcts(runs, &["plain_get_us"]),
                "get_ops_per_s_one_connection": med(runs, &["get_ops_per_s_one_connection"]),
                "note": "near: Kv::get served by the near cache (1,000 keys); redis: Kv::get with no near cache (round trip + decode), alternating with a plain redis-rs GET of the same key" })
    });
    let mut con3 = server.client();
    section("get_many_100", &mut || get_many_run(port, &mut con3), &|runs| {
        json!({ "ours_us": med_pcts(runs, &["ours_us"]), "plain_mget_us": med_pcts(runs, &["plain_mget_us"]),
                "ours_per_key_us": { "mean": med(runs, &["ours_per_key_us", "mean"]), "p99": med(runs, &["ours_per_key_us", "p99"]) },
                "plain_per_key_us": { "mean": med(runs, &["plain_per_key_us", "mean"]), "p99": med(runs, &["plain_per_key_us", "p99"]) },
                "keys_per_s": med(runs, &["keys_per_s"]) })
    });
    section("concurrent_50", &mut || concurrent_run(port), &|runs| {
        json!({ "ours_ops_per_s": med(runs, &["ours_ops_per_s"]), "plain_ops_per_s": med(runs, &["plain_ops_per_s"]),
                "ours_us": med_pcts(runs, &["ours_us"]), "plain_us": med_pcts(runs, &["plain_us"]),
                "note": "50 threads, 80 % get / 20 % set over 1,000 keys for 2 s, on 2 cores; plain: a redis-rs connection per thread, GET / SET … PX" })
    });
    section("get_or_compute_down", &mut compute_down_run, &|runs| {
        json!({ "ours_ns": med_pcts(runs, &["ours_ns"]), "compute_alone_ns": med_pcts(runs, &["compute_alone_ns"]),
                "overhead_p99_ns": med(runs, &["overhead_p99_ns"]),
                "breaker_open": runs.iter().all(|r| r["breaker_open"] == json!(true)) })
    });
    section("redis_benchmark", &mut || redis_benchmark(port), &|runs| {
        let mut out = serde_json::Map::new();
        for t in ["SET", "GET", "MGET"] {
            out.insert(t.into(), json!({ "requests_per_s": med(runs, &[t, "requests_per_s"]), "p50_ms": med(runs, &[t, "p50_ms"]) }));
        }
        out.insert("command".into(), json!("redis-benchmark -h 127.0.0.1 -p PORT -c 1 -q -n 50000 -d 60 -t get,set; … -n 10000 MGET <the 100 keys of get_many>"));
        Value::Object(out)
    });
    kv.insert("repetitions".into(), json!(reps));
    kv.insert("bench_runtime_s".into(), json!(started.elapsed().as_secs_f64()));
    let kv = Value::Object(kv);

    let (path, report) = report::merge("kv", kv);
    println!("{}", table(&report["kv"]));
    println!("report: {} (key \"kv\", {:.1} s)", path.display(), started.elapsed().as_secs_f64());
}
