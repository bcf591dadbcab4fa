//! Hot-path microbenchmarks: `cargo bench --bench hot_path`.
//!
//! `cache.put(&position)` against a private `redis-server` (never one on
//! 6379), with a big channel; puts are timed in chunks and the cache is
//! drained (flushed) between chunks, outside the timed region, so the
//! channel never fills. Plus `Ident::new` on valid and invalid ids, and one
//! Prometheus scrape (`write_prometheus`) of a cache that has written.
//!
//! Then, outside criterion, per-call `put` latency with one producer thread
//! and with two producer threads putting at once (issue 19): each thread
//! times every one of its own calls with `Instant` into a histogram, paced
//! so that both cases offer the same 100,000 puts/s in total (the same
//! work for the flusher: what differs is only a second producer on the
//! channel and the sequence numbers). Each case runs `BENCH_REPS` times
//! (default 3); the figures are medians over the runs. Written under the
//! key `hot_path_put_ns` of `target/bench/report.json` (other keys are
//! kept) and printed as a table, next to the single-producer `put_ns` of
//! `benches/load.rs` when the report has it.

// The integration tests' harness; a bench uses only part of it.
#[path = "../tests/it/harness/mod.rs"]
#[allow(dead_code, unused_imports)]
mod harness;

#[path = "common/report.rs"]
mod report;

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tradecache::model::Position;
use tradecache::{Cache, Config, Ident, OverflowPolicy};

/// Puts timed between two drains.
const CHUNK: u64 = 100_000;

fn bench_put(c: &mut Criterion) {
    let server = harness::RedisServer::builder().appendfsync("everysec").start();
    let config = Config::builder()
        .host("127.0.0.1")
        .port(server.port())
        .trader_id("BENCH-HOT")
        .flush_on_start(true)
        .channel_capacity(1 << 18)
        .overflow(OverflowPolicy::Block { timeout: Duration::from_secs(10) });
    let cache = Cache::open(config).expect("open the cache");
    let positions: Vec<Position> = (0..1_000).map(|i| Position::example(&format!("P-{i}"))).collect();

    let mut group = c.benchmark_group("put");
    group.bench_function("put_position", |b| {
        let mut k = 0usize;
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK);
                let start = Instant::now();
                for _ in 0..n {
                    let seq = cache.put(&positions[k % positions.len()]).expect("put");
                    black_box(seq);
                    k += 1;
                }
                timed += start.elapsed();
                left -= n;
                // The drain, untimed: the flusher catches up before the next chunk.
                cache.flush(Duration::from_secs(60)).expect("flush");
            }
            timed
        })
    });
    group.finish();
    cache.close(Duration::from_secs(10)).expect("close");
    drop(server);
}

fn bench_ident(c: &mut Criterion) {
    let mut group = c.benchmark_group("ident");
    group.bench_function("new_valid", |b| b.iter(|| Ident::new(black_box("BTCUSDT-PERP.BINANCE-001"))));
    group.bench_function("new_invalid_char", |b| b.iter(|| Ident::new(black_box("BTCUSDT PERP"))));
    group.bench_function("new_invalid_empty", |b| b.iter(|| Ident::new(black_box(""))));
    let long = "X".repeat(200);
    group.bench_function("new_long", |b| b.iter(|| Ident::new(black_box(long.as_str()))));
    group.finish();
}

/// One Prometheus scrape (`Cache::write_prometheus`) of a cache that has
/// written: every family, the 13 error classes and 13 drop reasons, the
/// 32-bucket latency histogram with several buckets filled (about 120
/// lines), rendered into a `String` reused between scrapes, as a server
/// does.
fn bench_scrape(c: &mut Criterion) {
    let server = harness::RedisServer::start();
    let config = Config::builder().host("127.0.0.1").port(server.port()).trader_id("BENCH-SCRAPE");
    let cache = Cache::open(config).expect("open the cache");
    for i in 0..2_000 {
        cache.put(&Position::example(&format!("P-{}", i % 100))).expect("put");
        if i % 100 == 0 {
            cache.flush(Duration::from_secs(10)).expect("flush");
        }
    }
    cache.flush(Duration::from_secs(10)).expect("flush");
    let mut body = String::with_capacity(64 * 1024);
    let mut group = c.benchmark_group("scrape");
    group.bench_function("write_prometheus", |b| {
        b.iter(|| {
            body.clear();
            cache.write_prometheus(&mut body);
            black_box(body.len())
        })
    });
    group.finish();
    cache.close(Duration::from_secs(10)).expect("close");
    drop(server);
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_put, bench_ident, bench_scrape
}

/// Puts offered per second in total, whatever the number of producers (as
/// `put_ns` in `benches/load.rs`).
const OFFERED_PER_S: u64 = 100_000;
/// Puts per run in total (2 s at the offered rate).
const PUTS_PER_RUN: u64 = 200_000;

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram")
}

fn pcts(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "p50": h.value_at_quantile(0.50),
        "p99": h.value_at_quantile(0.99),
        "p99_9": h.value_at_quantile(0.999),
        "max": h.max(),
    })
}

/// Spins until `start + i / rate` (as `benches/load.rs`: a sleep is far
/// coarser than the 10-20 µs between two puts).
fn pace(start: Instant, i: u64, rate: u64) {
    let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
    while Instant::now() < due {
        std::hint::spin_loop();
    }
}

/// One run with `producers` threads, each putting its own 1,000
/// positions at `OFFERED_PER_S / producers`, started together: each
/// thread's histogram, and all of them merged.
fn producers_run(port: u16, producers: usize) -> Value {
    let config = Config::builder()
        .host("127.0.0.1")
        .port(port)
        .trader_id("BENCH-PRODUCERS")
        .flush_on_start(true)
        .channel_capacity(1 << 18)
        .overflow(OverflowPolicy::Block { timeout: Duration::from_secs(10) });
    let cache = Cache::open(config).expect("open the cache");
    let per_thread = PUTS_PER_RUN / producers as u64;
    let rate = OFFERED_PER_S / producers as u64;
    let start = Barrier::new(producers);
    let hists: Vec<Histogram<u64>> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..producers)
            .map(|t| {
                let (cache, start) = (&cache, &start);
                s.spawn(move || {
                    let ps: Vec<Position> =
                        (0..1_000).map(|i| Position::example(&format!("T{t}-P-{i}"))).collect();
                    let mut h = hist();
                    start.wait();
                    let began = Instant::now();
                    for i in 0..per_thread {
                        pace(began, i, rate);
                        let p = &ps[(i % ps.len() as u64) as usize];
                        let t = Instant::now();
                        let r = cache.put(p);
                        let ns = t.elapsed().as_nanos() as u64;
                        black_box(r.expect("put"));
                        h.record(ns.max(1)).expect("record");
                    }
                    h
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("producer")).collect()
    });
    cache.flush(Duration::from_secs(60)).expect("flush");
    cache.close(Duration::from_secs(10)).expect("close");
    let mut all = hist();
    for h in &hists {
        all.add(h).expect("merge");
    }
    json!({ "all": pcts(&all), "per_thread": hists.iter().map(pcts).collect::<Vec<_>>() })
}

/// `v[k]`, where a number `k` indexes an array (`per_thread`).
fn step<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    k.parse::<usize>().map_or_else(|_| v.get(k), |i| v.get(i))
}

fn median(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => Value::Null,
        n if n % 2 == 1 => json!(v[n / 2]),
        n => json!((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Medians over `runs` of the percentiles at `path`.
fn med_pcts(runs: &[Value], path: &[&str]) -> Value {
    let mut out = serde_json::Map::new();
    for q in ["p50", "p99", "p99_9", "max"] {
        let v = runs.iter().filter_map(|r| path.iter().try_fold(r, |v, k| step(v, k))?.get(q)?.as_f64());
        out.insert(q.into(), median(v.collect()));
    }
    Value::Object(out)
}

/// `put` with one and with two producer threads.
fn producers(reps: usize) -> Value {
    let server = harness::RedisServer::builder().appendfsync("everysec").start();
    let mut out = serde_json::Map::new();
    for (name, n) in [("one_producer", 1), ("two_producers", 2)] {
        let runs: Vec<Value> = (0..reps).map(|_| producers_run(server.port(), n)).collect();
        let mut v = json!({ "all": med_pcts(&runs, &["all"]) });
        if n > 1 {
            v["per_thread"] =
                (0..n).map(|t| med_pcts(&runs, &["per_thread", &t.to_string()])).collect::<Vec<_>>().into();
        }
        v["runs"] = runs.into();
        out.insert(name.into(), v);
    }
    out.insert("offered_per_s_total".into(), json!(OFFERED_PER_S));
    out.insert("puts_per_run".into(), json!(PUTS_PER_RUN));
    out.insert("repetitions".into(), json!(reps));
    out.insert(
        "note".into(),
        json!("Cache::put(&Position) timed with Instant around each call on its own thread; both cases offer 100,000 puts/s in total (two producers: 50,000/s each, started together on a Barrier, putting 1,000 positions of their own), channel 2^18, Block overflow, AOF everysec; medians over the runs"),
    );
    Value::Object(out)
}

fn ns(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".into(), |n| format!("{n:.0}"))
}

fn table(r: &Value) -> String {
    let mut rows: Vec<[String; 4]> = vec![["put ns".into(), "p50".into(), "p99".into(), "p99.9".into()]];
    let mut row =
        |name: &str, v: &Value| rows.push([name.into(), ns(&v["p50"]), ns(&v["p99"]), ns(&v["p99_9"])]);
    let h = &r["hot_path_put_ns"];
    if r["put_ns"]["ours"].is_object() {
        row("1 producer (load bench put_ns, earlier run)", &r["put_ns"]["ours"]);
    }
    row("1 producer", &h["one_producer"]["all"]);
    row("2 producers, all calls", &h["two_producers"]["all"]);
    for (t, v) in h["two_producers"]["per_thread"].as_array().into_iter().flatten().enumerate() {
        row(&format!("2 producers, thread {t}"), v);
    }
    let w: Vec<usize> =
        (0..4).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        out.push_str(&format!(
            "| {:<w0$} | {:>w1$} | {:>w2$} | {:>w3$} |\n",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        ));
        if i == 0 {
            out.push_str(&format!(
                "|{}|{}:|{}:|{}:|\n",
                "-".repeat(w[0] + 2),
                "-".repeat(w[1] + 1),
                "-".repeat(w[2] + 1),
                "-".repeat(w[3] + 1)
            ));
        }
    }
    out
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();

    let reps: usize = std::env::var("BENCH_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let started = Instant::now();
    eprintln!("hot_path: put with one and two producers, {reps} repetition(s) ...");
    let figures = producers(reps);
    let (path, report) = report::merge("hot_path_put_ns", figures);
    println!("{}", table(&report));
    println!(
        "report: {} (key \"hot_path_put_ns\", {:.1} s)",
        path.display(),
        started.elapsed().as_secs_f64()
    );
}
