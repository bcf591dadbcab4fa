//! The caching layer's counters and latency histograms, and the public
//! [`KvStats`] / [`KvHealth`] views.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::breaker::BreakerState;
use crate::ErrorKind;

/// The operations timed in [`KvStats::latency`]: those that answer from
/// Redis on the calling thread (a write only queues: its round trip is in
/// [`KvStats::write_batch_p99_us`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// [`crate::kv::Kv::get`].
    Get,
    /// [`crate::kv::Kv::get_many`].
    GetMany,
    /// [`crate::kv::Kv::exists`].
    Exists,
    /// [`crate::kv::Kv::clear_namespace`].
    ClearNamespace,
    /// [`crate::kv::Kv::get_or_compute`], including the computation.
    GetOrCompute,
}

impl Op {
    pub(crate) const ALL: [Op; 5] = [Op::Get, Op::GetMany, Op::Exists, Op::ClearNamespace, Op::GetOrCompute];

    /// A short name: `"get"`, `"get_many"`, …
    pub fn name(self) -> &'static str {
        ["get", "get_many", "exists", "clear_namespace", "get_or_compute"][self as usize]
    }
}

/// Sub-buckets per power of two: a bound is at most 25 % above its values.
const SUB: usize = 4;
const BUCKETS: usize = 64 * SUB;
/// Stripes per histogram, so threads rarely share a cache line.
const STRIPES: usize = 4;

struct Histogram {
    stripes: Box<[[AtomicU64; BUCKETS]]>,
}

impl Histogram {
    fn new() -> Self {
        Histogram { stripes: (0..STRIPES).map(|_| std::array::from_fn(|_| AtomicU64::new(0))).collect() }
    }

    fn bucket(ns: u64) -> usize {
        let ns = ns.max(1);
        let msb = 63 - ns.leading_zeros() as usize;
        let sub = if msb >= 2 { ((ns >> (msb - 2)) & 3) as usize } else { 0 };
        msb * SUB + sub
    }

    /// The upper bound of a bucket, in ns.
    fn bound(i: usize) -> u64 {
        let (msb, sub) = (i / SUB, (i % SUB) as u64);
        if msb < 2 {
            return (2u64 << msb) - 1;
        }
        let base = 1u64 << msb;
        // Written so that the top bucket (2^63 and up) ends at u64::MAX.
        base - 1 + (sub + 1) * (base / 4)
    }

    fn record(&self, ns: u64) {
        let s = super::THREAD_HASH.with(|h| *h) % STRIPES;
        self.stripes[s][Self::bucket(ns)].fetch_add(1, Relaxed);
    }

    fn snapshot(&self) -> Option<Latency> {
        let mut counts = [0u64; BUCKETS];
        for s in self.stripes.iter() {
            for (c, a) in counts.iter_mut().zip(s.iter()) {
                *c += a.load(Relaxed);
            }
        }
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let q = |q: f64| {
            let target = ((total as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= target {
                    return Duration::from_nanos(Self::bound(i));
                }
            }
            Duration::MAX
        };
        Some(Latency { count: total, p50: q(0.5), p99: q(0.99), p999: q(0.999) })
    }
}

/// Latency percentiles of one operation, from a log-linear histogram
/// (each figure is the upper bound of its bucket, within 25 % above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Calls timed.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
}

/// The calling threads' counters, and the latency histograms (with
/// `enable_metrics`).
#[derive(Default)]
pub(crate) struct Metrics {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) overlay_hits: AtomicU64,
    pub(crate) corrupt: AtomicU64,
    pub(crate) computed: AtomicU64,
    pub(crate) flight_waits: AtomicU64,
    pub(crate) slow_ops: AtomicU64,
    pub(crate) read_errors: [AtomicU64; ErrorKind::COUNT],
    hist: Vec<Histogram>,
}

impl Metrics {
    pub(crate) fn new(enabled: bool) -> Self {
        let hist = if enabled { Op::ALL.iter().map(|_| Histogram::new()).collect() } else { Vec::new() };
        Metrics { hist, ..Metrics::default() }
    }

    #[inline]
    pub(crate) fn time(&self, op: Op, d: Duration) {
        if let Some(h) = self.hist.get(op as usize) {
            h.record(d.as_nanos().min(u128::from(u64::MAX)) as u64);
        }
    }

    pub(crate) fn latency(&self) -> Vec<(Op, Latency)> {
        Op::ALL.iter().zip(&self.hist).filter_map(|(op, h)| h.snapshot().map(|l| (*op, l))).collect()
    }

    pub(crate) fn read_errors(&self) -> Vec<(&'static str, u64)> {
        ErrorKind::ALL
            .iter()
            .zip(&self.read_errors)
            .map(|(c, n)| (c.name(), n.load(Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Counters and latencies of a [`crate::kv::Kv`] since `open`. See
/// [`crate::kv::Kv::stats`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct KvStats {
    /// Lookups (`get`, each key of `get_many`, `get_or_compute`) that
    /// returned a cached value (from Redis, the near cache or the queued
    /// writes). A lookup that fails with an error is neither a hit nor a
    /// miss, and is counted in `read_errors`.
    pub hits: u64,
    /// Lookups that returned no cached value: absent, expired, corrupt,
    /// skipped while the breaker was open, and every `get_or_compute` that
    /// returned a computed value.
    pub misses: u64,
    /// `hits / (hits + misses)`, 0 before any lookup.
    pub hit_rate: f64,
    /// Hits served by the near cache.
    pub near_hits: u64,
    /// Hits served by this process's queued writes (read-your-writes).
    pub overlay_hits: u64,
    /// Values that could not be decoded (misses, logged with `log::warn`).
    pub corrupt: u64,
    /// Values computed by `get_or_compute`.
    pub computed: u64,
    /// `get_or_compute` calls that waited for another thread's computation.
    pub flight_waits: u64,
    /// Writes accepted (the last sequence number handed out).
    pub accepted: u64,
    /// Writes settled: applied, replaced by a newer write to the key, or
    /// dropped (see `dropped`).
    pub acked: u64,
    /// Commands applied by the writer.
    pub written: u64,
    /// Writes replaced by a newer one to the same key before they were sent.
    pub coalesced: u64,
    /// Writes dropped: past `max_pending_keys` in an outage, or refused by
    /// Redis. Collect them with [`crate::kv::Kv::take_dropped`].
    pub dropped: u64,
    /// Dropped writes left out of [`crate::kv::Kv::take_dropped`]'s list
    /// (the first 1,024 between two calls are kept).
    pub dropped_unlisted: u64,
    /// Writes refused at the call because the writer's channel was full.
    pub rejected: u64,
    /// Times the writer connected again after losing its connection.
    pub reconnects: u64,
    /// Errors of calls on the calling threads, by class name (`"io"`,
    /// `"timeout"`, …), non-zero only.
    pub read_errors: Vec<(&'static str, u64)>,
    /// Errors of the writer, by class name, non-zero only.
    pub write_errors: Vec<(&'static str, u64)>,
    /// The circuit breaker now.
    pub breaker: BreakerState,
    /// Times the breaker opened.
    pub breaker_opened: u64,
    /// Calls answered without Redis because the breaker was open.
    pub short_circuited: u64,
    /// Operations slower than `slow_op_threshold`.
    pub slow_ops: u64,
    /// Entries in the near cache.
    pub near_entries: usize,
    /// Near-cache entries evicted by server-assisted invalidation.
    pub near_invalidations: u64,
    /// Latency percentiles per operation called (with `enable_metrics`).
    pub latency: Vec<(Op, Latency)>,
    /// Median round trip of a writer batch, in µs (power-of-two bucket).
    pub write_batch_p50_us: Option<u64>,
    /// 99th percentile round trip of a writer batch, in µs.
    pub write_batch_p99_us: Option<u64>,
}

impl KvStats {
    /// The latency of one operation, if it was timed.
    pub fn latency_of(&self, op: Op) -> Option<Latency> {
        self.latency.iter().find(|(o, _)| *o == op).map(|(_, l)| *l)
    }
}

/// Whether the caching layer can reach Redis. See
/// [`crate::kv::Kv::health`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KvHealth {
    /// The writer holds a working connection.
    pub writer_connected: bool,
    /// The writer thread is running.
    pub writer_running: bool,
    /// Writes accepted and not yet settled.
    pub backlog: u64,
    /// The circuit breaker in front of the calling threads' calls.
    pub breaker: BreakerState,
    /// The near cache's invalidation listener is subscribed (`None`: off).
    pub near_tracking: Option<bool>,
    /// The last error the writer met, as `"class: text"`.
    pub last_error: Option<String>,
    /// Why the server refuses writes (`OOM`, `MISCONF`, …), while it does.
    pub backpressure: Option<String>,
}

impl KvHealth {
    /// Writer connected and running, breaker closed, no backpressure.
    pub fn is_healthy(&self) -> bool {
        self.writer_connected
            && self.writer_running
            && self.breaker == BreakerState::Closed
            && self.backpressure.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values() {
        for v in [1u64, 2, 3, 4, 5, 7, 8, 100, 999, 1000, 1023, 1024, 123_456, u64::MAX / 2, u64::MAX] {
            let b = Histogram::bucket(v);
            assert!(Histogram::bound(b) >= v, "{v}: bucket {b} bound {}", Histogram::bound(b));
            assert!(
                Histogram::bound(b) as f64 <= v as f64 * 1.25 + 1.0 || v == u64::MAX,
                "{v}: {}",
                Histogram::bound(b)
            );
            if b > 0 {
                assert!(Histogram::bound(b - 1) < v, "{v}");
            }
        }
    }

    #[test]
    fn percentiles() {
        let h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let l = h.snapshot().unwrap();
        assert_eq!(l.count, 1000);
        assert!(l.p50 >= Duration::from_micros(500) && l.p50 <= Duration::from_micros(640), "{l:?}");
        assert!(l.p99 >= Duration::from_micros(990), "{l:?}");
        assert!(Histogram::new().snapshot().is_none());
    }
}
