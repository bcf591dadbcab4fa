//! Load benchmark: `cargo bench --bench load`.
//!
//! Starts one private `redis-server` (AOF on, `appendfsync everysec`),
//! measures the cache against simple alternatives, writes
//! `target/bench/report.json` and prints a table. Never touches a Redis on
//! 6379: the server is a child process on a free loopback port.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tradecache::model::{
    Currency, Fill, Instrument, LiquiditySide, Money, Order, OrderEvent, OrderEventKind, OrderSide,
    OrderType, Position, Price, Quantity, TimeInForce, UnixNanos,
};
use tradecache::{Cache, Config, Encoding, Ident, OverflowPolicy};

const BLOCK: OverflowPolicy = OverflowPolicy::Block { timeout: Duration::from_secs(10) };

fn config(port: u16, trader: &str) -> Config {
    Config::builder().host("127.0.0.1").port(port).trader_id(trader).flush_on_start(true).overflow(BLOCK)
}

fn open(cfg: Config) -> Cache {
    Cache::open(cfg).expect("open the cache")
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram")
}

/// Spins until `start + i / rate`.
fn pace(start: Instant, i: u64, rate: u64) {
    let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
    while Instant::now() < due {
        std::hint::spin_loop();
    }
}

fn pcts(h: &Histogram<u64>, div: f64) -> Value {
    json!({
        "count": h.len(),
        "p50": h.value_at_quantile(0.50) as f64 / div,
        "p99": h.value_at_quantile(0.99) as f64 / div,
        "p99_9": h.value_at_quantile(0.999) as f64 / div,
        "max": h.max() as f64 / div,
    })
}

fn rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn machine() -> Value {
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    json!({ "nproc": nproc, "cpu_model": cpu })
}

fn position_key(trader: &str, id: &str) -> String {
    format!("trader-{trader}:positions:{id}")
}

// ---------------------------------------------------------------------------
// Sections
// ---------------------------------------------------------------------------

/// Writes 10,000 positions with msgpack, reads RSS, then `MEMORY USAGE` per
/// key for msgpack and for JSON.
fn memory(port: u16, con: &mut redis::Connection) -> (Value, Value) {
    let n = 10_000;
    let cache = open(config(port, "BENCH"));
    for i in 0..n {
        cache.put(&Position::example(&format!("P-{i}"))).expect("put");
    }
    cache.flush(Duration::from_secs(30)).expect("flush");
    let rss = rss_mb();
    let json_cache = open(config(port, "BENCH-JSON").encoding(Encoding::Json));
    for i in 0..n {
        json_cache.put(&Position::example(&format!("P-{i}"))).expect("put");
    }
    json_cache.flush(Duration::from_secs(30)).expect("flush");
    let mut usage = |trader: &str| -> f64 {
        let mut total = 0u64;
        for i in 0..n {
            let bytes: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(position_key(trader, &format!("P-{i}")))
                .query(con)
                .expect("MEMORY USAGE");
            total += bytes.expect("position key exists");
        }
        total as f64 / n as f64
    };
    let msgpack = usage("BENCH");
    let jsn = usage("BENCH-JSON");
    let pos = Position::example("P-1");
    let mp_len = rmp_serde::to_vec_named(&pos).map(|v| v.len()).unwrap_or(0);
    let json_len = serde_json::to_vec(&pos).map(|v| v.len()).unwrap_or(0);
    drop(json_cache);
    drop(cache);
    (
        json!({
            "ours": msgpack,
            "alternative": { "name": "json_encoding", "value": jsn },
            "ratio": msgpack / jsn,
            "encoded_bytes": { "msgpack": mp_len, "json": json_len },
            "keys": n,
        }),
        json!({
            "ours": rss,
            "alternative": null,
            "note": "VmRSS of the bench process after writing 10,000 positions (includes the bench's own buffers)",
        }),
    )
}

/// `put` latency at 100,000/s offered for ~2 s, against a blocking SET per write.
fn put_latency(port: u16, con: &mut redis::Connection) -> Value {
    let cache = open(config(port, "BENCH-PUT"));
    let positions: Vec<Position> = (0..1_000).map(|i| Position::example(&format!("P-{i}"))).collect();
    let rate = 100_000;
    let n = 200_000u64;
    let mut h = hist();
    let start = Instant::now();
    for i in 0..n {
        pace(start, i, rate);
        let p = &positions[(i % 1_000) as usize];
        let t = Instant::now();
        let r = cache.put(p);
        let ns = t.elapsed().as_nanos() as u64;
        r.expect("put");
        h.record(ns.max(1)).expect("record");
    }
    let achieved = n as f64 / start.elapsed().as_secs_f64();
    cache.flush(Duration::from_secs(30)).expect("flush");
    let rejected = cache.stats().rejected;
    drop(cache);

    let m = 20_000u64;
    let mut d = hist();
    for i in 0..m {
        let p = &positions[(i % 1_000) as usize];
        let t = Instant::now();
        let bytes = rmp_serde::to_vec_named(p).expect("encode");
        let _: () = redis::cmd("SET")
            .arg(format!("direct:positions:{}", p.id.as_str()))
            .arg(bytes)
            .query(con)
            .expect("SET");
        d.record((t.elapsed().as_nanos() as u64).max(1)).expect("record");
    }
    let ours = pcts(&h, 1.0);
    let alt = pcts(&d, 1.0);
    json!({
        "ours": ours,
        "alternative": { "name": "direct_set_ns", "value": alt,
            "note": "encode + blocking SET per write, back to back (it cannot sustain 100k/s)" },
        "ratio_p50": h.value_at_quantile(0.5) as f64 / d.value_at_quantile(0.5) as f64,
        "ratio_p99": h.value_at_quantile(0.99) as f64 / d.value_at_quantile(0.99) as f64,
        "offered_per_s": rate,
        "achieved_per_s": achieved,
        "writes": n,
        "rejected": rejected,
    })
}

fn redis_benchmark(port: u16, size: usize, n: u64) -> (Option<f64>, String) {
    let out = std::process::Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-c", "1", "-P", "512", "-t", "set"])
        .args(["-d", &size.to_string(), "-n", &n.to_string(), "-q"])
        .output();
    match out {
        Err(e) => (None, format!("redis-benchmark not run: {e}")),
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            let rps = text
                .split(['\r', '\n'])
                .filter_map(|l| l.trim().strip_prefix("SET:"))
                .filter_map(|l| l.split_whitespace().next().and_then(|x| x.parse::<f64>().ok()))
                .next_back();
            let note = if rps.is_some() { "ok".to_string() } else { format!("could not parse: {text:?}") };
            (rps, note)
        }
    }
}

/// Sustained acknowledged writes/s with distinct ids, against redis-benchmark.
fn throughput(port: u16) -> Value {
    let n = 200_000usize;
    let positions: Vec<Position> = (0..n).map(|i| Position::example(&format!("T-{i}"))).collect();
    let size = rmp_serde::to_vec_named(&positions[0]).map(|v| v.len()).unwrap_or(0);
    let cache = open(config(port, "BENCH-TP"));
    let start = Instant::now();
    for p in &positions {
        cache.put(p).expect("put");
    }
    cache.flush(Duration::from_secs(120)).expect("flush");
    let elapsed = start.elapsed().as_secs_f64();
    drop(cache);
    let ours = n as f64 / elapsed;
    let (theirs, note) = redis_benchmark(port, size, n as u64);
    json!({
        "ours": ours,
        "alternative": { "name": "redis_benchmark", "value": theirs, "note": note,
            "command": format!("redis-benchmark -p PORT -c 1 -P 512 -t set -d {size} -n {n} -q") },
        "throughput_ratio": theirs.map(|t| ours / t),
        "writes": n,
        "elapsed_s": elapsed,
        "encoded_bytes": size,
    })
}

/// Put-to-acknowledged latency through the cache at `rate` for `secs`.
fn ack_ours(port: u16, rate: u64, secs: f64) -> Histogram<u64> {
    let cache = Arc::new(open(config(port, "BENCH-ACK")));
    let n = (rate as f64 * secs) as u64;
    let base = cache.last_seq().get();
    let epoch = Instant::now();
    // Slot i: nanoseconds since `epoch` + 1 at which seq base+1+i was put.
    let slots: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let positions: Vec<Position> = (0..1_000).map(|i| Position::example(&format!("A-{i}"))).collect();
    let watcher = {
        let cache = cache.clone();
        let slots = slots.clone();
        std::thread::spawn(move || {
            let mut h = hist();
            let mut next = 0u64; // index of the next seq to see acked
            let deadline = Instant::now() + Duration::from_secs_f64(secs + 30.0);
            while next < n && Instant::now() < deadline {
                let acked = cache.acked_seq().get().saturating_sub(base).min(n);
                if acked <= next {
                    // A short spin that leaves the core to the flusher and
                    // redis-server when they need it (2-core machines).
                    std::thread::yield_now();
                    continue;
                }
                let now = epoch.elapsed().as_nanos() as u64;
                while next < acked {
                    let mut t = slots[next as usize].load(Ordering::Acquire);
                    while t == 0 {
                        std::hint::spin_loop();
                        t = slots[next as usize].load(Ordering::Acquire);
                    }
                    h.record(now.saturating_sub(t - 1).max(1)).expect("record");
                    next += 1;
                }
            }
            h
        })
    };
    let start = Instant::now();
    for i in 0..n {
        pace(start, i, rate);
        let t = epoch.elapsed().as_nanos() as u64 + 1;
        let seq = cache.put(&positions[(i % 1_000) as usize]).expect("put").get();
        slots[(seq - base - 1) as usize].store(t, Ordering::Release);
    }
    let h = watcher.join().expect("watcher");
    cache.flush(Duration::from_secs(30)).expect("flush");
    h
}

/// A write waiting for the interval writer: when it was buffered, key, value.
type Buffered = (Instant, String, Vec<u8>);

/// The same offered load written by a timer loop: buffered, and sent every
/// 100 ms as one redis-rs pipeline of SETs. A write's latency is the time
/// from its buffering until the pipeline that carries it has been answered.
fn ack_interval(con: redis::Connection, rate: u64, secs: f64) -> Histogram<u64> {
    let n = (rate as f64 * secs) as u64;
    let buf: Arc<Mutex<Vec<Buffered>>> = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let buf = buf.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut con = con;
            let mut h = hist();
            let mut tick = Instant::now();
            loop {
                tick += Duration::from_millis(100);
                let finished = done.load(Ordering::Acquire);
                if !finished {
                    if let Some(d) = tick.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                }
                let batch = std::mem::take(&mut *buf.lock().expect("lock"));
                if !batch.is_empty() {
                    let mut pipe = redis::pipe();
                    for (_, k, v) in &batch {
                        pipe.cmd("SET").arg(k).arg(v).ignore();
                    }
                    let _: () = pipe.query(&mut con).expect("pipeline");
                    let now = Instant::now();
                    for (t, _, _) in &batch {
                        h.record((now.duration_since(*t).as_nanos() as u64).max(1)).expect("record");
                    }
                }
                if finished {
                    break;
                }
            }
            h
        })
    };
    let positions: Vec<Position> = (0..1_000).map(|i| Position::example(&format!("A-{i}"))).collect();
    let start = Instant::now();
    for i in 0..n {
        pace(start, i, rate);
        let t = Instant::now();
        let p = &positions[(i % 1_000) as usize];
        let bytes = rmp_serde::to_vec_named(p).expect("encode");
        let key = format!("interval:positions:{}", p.id.as_str());
        buf.lock().expect("lock").push((t, key, bytes));
    }
    done.store(true, Ordering::Release);
    writer.join().expect("writer")
}

fn ack_latency(port: u16, server: &support::RedisServer) -> Value {
    let mut out = serde_json::Map::new();
    for (rate, secs) in [(10_000u64, 1.5f64), (100_000, 1.5)] {
        let ours = ack_ours(port, rate, secs);
        let theirs = ack_interval(server.client(), rate, secs);
        out.insert(
            format!("{rate}_per_s"),
            json!({
                "ours": pcts(&ours, 1_000.0),
                "alternative": { "name": "interval_writer_ack_latency_us", "value": pcts(&theirs, 1_000.0) },
                "ratio_p50": ours.value_at_quantile(0.5) as f64 / theirs.value_at_quantile(0.5) as f64,
                "ratio_p99": ours.value_at_quantile(0.99) as f64 / theirs.value_at_quantile(0.99) as f64,
            }),
        );
    }
    Value::Object(out)
}

fn order_events(id: &str) -> Vec<OrderEvent> {
    let oid = Ident::new(id).expect("order id");
    let usdt = Currency::new("USDT").expect("currency");
    let fill = |n: u64, qty: u64| Fill {
        trade_id: Ident::new(&format!("{id}-T{n}")).expect("trade id"),
        last_px: Price::new(6_000_000, 2),
        last_qty: Quantity::new(qty, 3),
        commission: Money::new(12, 2, usdt),
        liquidity_side: LiquiditySide::Maker,
    };
    let kinds = [
        OrderEventKind::Initialized {
            side: OrderSide::Buy,
            order_type: OrderType::Limit,
            quantity: Quantity::new(1_000, 3),
            price: Some(Price::new(6_000_000, 2)),
            time_in_force: TimeInForce::Gtc,
        },
        OrderEventKind::Submitted { account_id: Ident::new("BINANCE-001").expect("id") },
        OrderEventKind::Accepted { venue_order_id: Ident::new(&format!("V{id}")).expect("id") },
        OrderEventKind::PartiallyFilled(fill(1, 400)),
        OrderEventKind::Filled(fill(2, 600)),
    ];
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| OrderEvent {
            event_id: i as u64 + 1,
            client_order_id: oid.clone(),
            ts_event: UnixNanos(1_700_000_000_000_000_000 + i as u64),
            kind,
        })
        .collect()
}

/// Time of `cache.load()` (best of 3) against one round trip per key.
fn recovery(port: u16, con: &mut redis::Connection) -> Value {
    let trader = "BENCH-REC";
    let (orders, events_per, positions, instruments) = (100_000usize, 5usize, 10_000usize, 1_000usize);
    let cache = open(config(port, trader));
    let wstart = Instant::now();
    for i in 0..instruments {
        cache.put(&Instrument::example(&format!("INST-{i}.SIM"))).expect("put instrument");
    }
    for i in 0..orders {
        let id = format!("O-{i}");
        cache.put(&Order::example(&id)).expect("put order");
        for ev in order_events(&id) {
            cache.append(&id, &ev).expect("append");
        }
    }
    for i in 0..positions {
        cache.put(&Position::example(&format!("P-{i}"))).expect("put position");
    }
    cache.flush(Duration::from_secs(180)).expect("flush");
    let write_s = wstart.elapsed().as_secs_f64();

    let mut best = f64::MAX;
    let mut counts = (0, 0, 0, 0, 0);
    for _ in 0..3 {
        let t = Instant::now();
        let snap = cache.load().expect("load");
        best = best.min(t.elapsed().as_secs_f64());
        counts = (
            snap.orders.len(),
            snap.order_events.values().map(Vec::len).sum::<usize>(),
            snap.positions.len(),
            snap.instruments.len(),
            snap.report.issues.len(),
        );
    }
    drop(cache);

    // Naive: SMEMBERS per collection, then one GET (and one LRANGE for
    // orders) per id, each its own round trip, decoded with rmp_serde.
    let t = Instant::now();
    let prefix = format!("trader-{trader}");
    let mut naive_counts = [0usize; 4];
    let mut decode_errors = 0usize;
    for (ci, coll) in ["instruments", "orders", "positions"].iter().enumerate() {
        let ids: Vec<String> =
            redis::cmd("SMEMBERS").arg(format!("{prefix}:index:{coll}")).query(con).expect("SMEMBERS");
        for id in ids {
            let v: Option<Vec<u8>> =
                redis::cmd("GET").arg(format!("{prefix}:{coll}:{id}")).query(con).expect("GET");
            let Some(v) = v else { continue };
            let ok = match ci {
                0 => rmp_serde::from_slice::<Instrument>(&v).is_ok(),
                1 => rmp_serde::from_slice::<Order>(&v).is_ok(),
                _ => rmp_serde::from_slice::<Position>(&v).is_ok(),
            };
            if ok {
                naive_counts[ci] += 1;
            } else {
                decode_errors += 1;
            }
            if ci == 1 {
                let evs: Vec<Vec<u8>> = redis::cmd("LRANGE")
                    .arg(format!("{prefix}:{coll}:{id}:events"))
                    .arg(0)
                    .arg(-1)
                    .query(con)
                    .expect("LRANGE");
                for e in evs {
                    if rmp_serde::from_slice::<OrderEvent>(&e).is_ok() {
                        naive_counts[3] += 1;
                    } else {
                        decode_errors += 1;
                    }
                }
            }
        }
    }
    let naive = t.elapsed().as_secs_f64();
    json!({
        "ours": best,
        "alternative": { "name": "naive_recovery_s", "value": naive,
            "loaded": { "instruments": naive_counts[0], "orders": naive_counts[1], "positions": naive_counts[2],
                        "order_events": naive_counts[3] },
            "decode_errors": decode_errors },
        "ratio": best / naive,
        "dataset": { "orders": orders, "events_per_order": events_per, "positions": positions,
                     "instruments": instruments },
        "loaded": { "orders": counts.0, "order_events": counts.1, "positions": counts.2,
                    "instruments": counts.3, "issues": counts.4 },
        "write_s": write_s,
    })
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

fn fmt(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.abs() >= 100.0 {
                format!("{f:.0}")
            } else {
                format!("{f:.3}")
            }
        }
        other => other.to_string(),
    }
}

fn row(rows: &mut Vec<[String; 4]>, key: &str, ours: &Value, alt: &Value) {
    let ratio = match (ours.as_f64(), alt.as_f64()) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.3}", a / b),
        _ => "-".into(),
    };
    rows.push([key.into(), fmt(ours), fmt(alt), ratio]);
}

fn table(r: &Value) -> String {
    let mut rows: Vec<[String; 4]> =
        vec![["key".into(), "ours".into(), "alternative".into(), "ratio".into()]];
    for q in ["p50", "p99", "p99_9"] {
        row(
            &mut rows,
            &format!("put_ns.{q}"),
            &r["put_ns"]["ours"][q],
            &r["put_ns"]["alternative"]["value"][q],
        );
    }
    row(
        &mut rows,
        "throughput (writes/s)",
        &r["throughput"]["ours"],
        &r["throughput"]["alternative"]["value"],
    );
    for rate in ["10000_per_s", "100000_per_s"] {
        let a = &r["ack_latency_us"][rate];
        for q in ["p50", "p99"] {
            row(
                &mut rows,
                &format!("ack_latency_us.{rate}.{q}"),
                &a["ours"][q],
                &a["alternative"]["value"][q],
            );
        }
    }
    row(&mut rows, "recovery_s", &r["recovery_s"]["ours"], &r["recovery_s"]["alternative"]["value"]);
    row(
        &mut rows,
        "redis_bytes_per_position (msgpack vs json)",
        &r["redis_bytes_per_position"]["ours"],
        &r["redis_bytes_per_position"]["alternative"]["value"],
    );
    row(&mut rows, "client_rss_mb", &r["client_rss_mb"]["ours"], &Value::Null);
    let widths: Vec<usize> = (0..4).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut s = String::new();
    for r in &rows {
        s.push_str(&format!(
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        ));
    }
    s
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments (harness = false).
    let started = Instant::now();
    let server = support::RedisServer::builder().appendfsync("everysec").start();
    let port = server.port();
    let mut con = server.client();
    eprintln!("load bench: redis-server on 127.0.0.1:{port}");

    eprintln!("memory / rss ...");
    let (bytes, rss) = memory(port, &mut con);
    eprintln!("put latency ...");
    let put = put_latency(port, &mut con);
    eprintln!("throughput ...");
    let tp = throughput(port);
    eprintln!("ack latency ...");
    let ack = ack_latency(port, &server);
    eprintln!("recovery ...");
    let rec = recovery(port, &mut con);

    let report = json!({
        "machine": machine(),
        "redis": { "appendonly": true, "appendfsync": "everysec" },
        "put_ns": put,
        "throughput": tp,
        "ack_latency_us": ack,
        "recovery_s": rec,
        "redis_bytes_per_position": bytes,
        "client_rss_mb": rss,
        "bench_runtime_s": started.elapsed().as_secs_f64(),
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("bench");
    std::fs::create_dir_all(&dir).expect("create target/bench");
    let path = dir.join("report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).expect("json")).expect("write report.json");
    println!("{}", table(&report));
    println!("report: {} ({:.1} s)", path.display(), started.elapsed().as_secs_f64());
}
