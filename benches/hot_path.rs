//! Hot-path microbenchmarks: `cargo bench --bench hot_path`.
//!
//! `cache.put(&position)` against a private `redis-server` (never one on
//! 6379), with a big channel; puts are timed in chunks and the cache is
//! drained (flushed) between chunks, outside the timed region, so the
//! channel never fills. Plus `Ident::new` on valid and invalid ids.

// The integration tests' harness; a bench uses only part of it.
#[path = "../tests/it/harness/mod.rs"]
#[allow(dead_code, unused_imports)]
mod harness;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
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

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_put, bench_ident
}
criterion_main!(benches);
