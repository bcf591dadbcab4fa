use std::time::{Duration, Instant};
use tradecache::kv::{Kv, KvConfig, Ttl};
use tradecache::model::{Price, Quantity, UnixNanos, Position};
#[derive(serde::Serialize, serde::Deserialize)]
struct Quote { bid: Price, ask: Price, size: Quantity, ts: UnixNanos }
fn report(name: &str, mut v: Vec<u64>) { v.sort(); let q = |x: f64| v[((v.len() as f64 * x) as usize).min(v.len()-1)]; println!("{name}: p50 {} p90 {} p99 {} p999 {}", q(0.5), q(0.9), q(0.99), q(0.999)); }
fn main() {
    let n = 1_000_000u64;
    if std::env::args().nth(1).as_deref() == Some("micro") {
        let kv = Kv::open(KvConfig::builder().redis(tradecache::Config::builder().port(27391)).key_prefix("prof").log_slow_ops(false).enable_metrics(false)).unwrap();
        let keys: Vec<String> = (0..1000).map(|i| format!("S{i}:quote")).collect();
        let q = Quote { bid: Price::new(1, 2), ask: Price::new(2, 2), size: Quantity::new(3, 3), ts: UnixNanos(1) };
        let mut buf = Vec::new();
        let t = Instant::now();
        for _ in 0..1_000_000 { buf.clear(); rmp_serde::encode::write_named(&mut buf, &q).unwrap(); std::hint::black_box(&buf); }
        println!("encode: {} ns", t.elapsed().as_nanos() / 1_000_000);
        let t = Instant::now();
        for i in 0..1_000_000u64 { std::hint::black_box(Instant::now()); let _ = i; }
        println!("Instant::now: {} ns", t.elapsed().as_nanos() / 1_000_000);
        for ttl in [Ttl::Never, Ttl::Policy] {
            let t = Instant::now();
            for i in 0..200_000u64 { while kv.set("market_data", &keys[(i % 1000) as usize], &q, ttl).is_err() {} }
            println!("set {ttl:?}: {} ns", t.elapsed().as_nanos() / 200_000);
            kv.flush(Duration::from_secs(10)).unwrap();
        }
        let t = Instant::now();
        for i in 0..200_000u64 { std::hint::black_box(kv.get::<Quote>("market_data", &keys[(i % 1000) as usize]).unwrap()); }
        println!("get overlay/redis: {} ns", t.elapsed().as_nanos() / 200_000);
        return;
    }
    let kv = Kv::open(KvConfig::builder().redis(tradecache::Config::builder().port(27391)).key_prefix("prof").log_slow_ops(false)).unwrap();
    let keys: Vec<String> = (0..1000).map(|i| format!("S{i}:quote")).collect();
    let mut v = Vec::with_capacity(n as usize);
    let start = Instant::now();
    for i in 0..n {
        let due = start + Duration::from_nanos(i * 10_000);
        while Instant::now() < due { std::hint::spin_loop(); }
        let q = Quote { bid: Price::new(1, 2), ask: Price::new(2, 2), size: Quantity::new(3, 3), ts: UnixNanos(i) };
        let t = Instant::now();
        kv.set("market_data", &keys[(i % 1000) as usize], &q, Ttl::Policy).unwrap();
        v.push(t.elapsed().as_nanos() as u64);
    }
    report("kv.set", v);
    drop(kv);
    let cache = tradecache::Cache::open(tradecache::Config::builder().port(27391).trader_id("PROF")).unwrap();
    let ps: Vec<Position> = (0..1000).map(|i| Position::example(&format!("P-{i}"))).collect();
    let mut v = Vec::with_capacity(n as usize);
    let start = Instant::now();
    for i in 0..n {
        let due = start + Duration::from_nanos(i * 10_000);
        while Instant::now() < due { std::hint::spin_loop(); }
        let t = Instant::now();
        cache.put(&ps[(i % 1000) as usize]).unwrap();
        v.push(t.elapsed().as_nanos() as u64);
    }
    report("cache.put", v);
}
