//! The caching layer's counters in the Prometheus text format, written as
//! `crate::metrics::exposition` writes a cache's, so a process can serve its caches'
//! and its `Kv`'s families in one body.

use crate::metrics::exposition::{family, sample, Float, MetricType};

use super::breaker::BreakerState;
use super::Kv;

/// The names of the families [`Kv::write_prometheus`] writes (for
/// dashboards and alert rules that should only name exported series).
///
/// ```
/// assert!(tradecache::kv::metric_families().any(|n| n == "tradecache_kv_breaker_state"));
/// ```
pub fn metric_families() -> impl Iterator<Item = &'static str> {
    FAMILIES.iter().map(|f| f.0)
}

use MetricType::{Counter, Gauge};

/// Every family [`Kv::write_prometheus`] writes, in order: the counters and
/// gauges with one sample each (`write_prometheus` lists their values in the
/// same order), then the errors and the latencies.
const FAMILIES: [(&str, MetricType, &str); 21] = [
    ("tradecache_kv_hits_total", Counter, "lookups answered with a cached value"),
    ("tradecache_kv_misses_total", Counter, "lookups answered without a cached value"),
    ("tradecache_kv_near_hits_total", Counter, "hits answered by the near cache"),
    ("tradecache_kv_overlay_hits_total", Counter, "hits answered by this process's unacknowledged writes"),
    ("tradecache_kv_corrupt_total", Counter, "values that did not decode (counted as misses)"),
    ("tradecache_kv_computed_total", Counter, "computations run by get_or_compute"),
    ("tradecache_kv_writes_accepted_total", Counter, "writes accepted by the write-behind channel"),
    ("tradecache_kv_writes_acked_total", Counter, "writes acknowledged by Redis"),
    ("tradecache_kv_writes_coalesced_total", Counter, "writes superseded before they were sent"),
    ("tradecache_kv_writes_dropped_total", Counter, "accepted writes not persisted (counted, reported)"),
    ("tradecache_kv_writes_rejected_total", Counter, "writes refused because the channel was full"),
    ("tradecache_kv_reconnects_total", Counter, "connections of the writer re-established"),
    ("tradecache_kv_slow_ops_total", Counter, "operations over the slow-operation threshold"),
    ("tradecache_kv_breaker_opened_total", Counter, "times the circuit breaker opened"),
    (
        "tradecache_kv_short_circuited_total",
        Counter,
        "calls answered without Redis while the breaker was open",
    ),
    ("tradecache_kv_breaker_state", Gauge, "circuit breaker: 0 closed, 1 half-open, 2 open"),
    ("tradecache_kv_backlog", Gauge, "accepted writes not yet acknowledged"),
    ("tradecache_kv_near_entries", Gauge, "entries in the near cache"),
    ("tradecache_kv_healthy", Gauge, "1 when the writer is connected and running and the breaker closed"),
    ("tradecache_kv_errors_total", Counter, "errors by side (read, write) and class"),
    ("tradecache_kv_latency_seconds", Gauge, "latency percentiles per operation"),
];

impl Kv {
    /// Appends this cache's counters, breaker state and latencies to `out`
    /// in the Prometheus text exposition format, labelled
    /// `key_prefix="{CACHE_KEY_PREFIX}"`. Append it after
    /// [`crate::Cache::write_prometheus`] to serve both in one scrape.
    ///
    /// | family | type | meaning |
    /// | --- | --- | --- |
    /// | `tradecache_kv_hits_total`, `tradecache_kv_misses_total` | counter | lookups (`get`, each key of `get_many`, `get_or_compute`) answered with a cached value / without ([`super::KvStats::hits`]) |
    /// | `tradecache_kv_near_hits_total`, `tradecache_kv_overlay_hits_total` | counter | hits from the near cache / from this process's unacknowledged writes |
    /// | `tradecache_kv_corrupt_total`, `tradecache_kv_computed_total` | counter | values that did not decode; `get_or_compute` computations |
    /// | `tradecache_kv_writes_accepted_total`, `…_acked_total`, `…_coalesced_total`, `…_dropped_total`, `…_rejected_total` | counter | the write-behind pipeline |
    /// | `tradecache_kv_reconnects_total`, `tradecache_kv_slow_ops_total` | counter | writer reconnects; operations over the slow threshold |
    /// | `tradecache_kv_errors_total{side,class}` | counter | read and write errors by class |
    /// | `tradecache_kv_breaker_state` | gauge | 0 closed, 1 half-open, 2 open |
    /// | `tradecache_kv_breaker_opened_total`, `tradecache_kv_short_circuited_total` | counter | times it opened; calls answered without Redis |
    /// | `tradecache_kv_backlog`, `tradecache_kv_near_entries`, `tradecache_kv_healthy` | gauge | unacknowledged writes; near-cache size; 0 or 1 |
    /// | `tradecache_kv_latency_seconds{op,quantile}` | gauge | p50 / p99 / p99.9 per operation |
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tradecache::kv::{Kv, KvConfig};
    /// let kv = Kv::open(KvConfig::from_env()?)?;
    /// let mut body = String::new();
    /// kv.write_prometheus(&mut body);
    /// assert!(body.contains("tradecache_kv_breaker_state{key_prefix="));
    /// # Ok(()) }
    /// ```
    pub fn write_prometheus(&self, out: &mut String) {
        let s = self.stats();
        let h = self.health();
        let prefix = self.config().key_prefix.as_str();
        let labels = [("key_prefix", prefix)];
        let breaker = match s.breaker {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open { .. } => 2,
        };
        let values: [u64; 19] = [
            s.hits,
            s.misses,
            s.near_hits,
            s.overlay_hits,
            s.corrupt,
            s.computed,
            s.accepted,
            s.acked,
            s.coalesced,
            s.dropped,
            s.rejected,
            s.reconnects,
            s.slow_ops,
            s.breaker_opened,
            s.short_circuited,
            breaker,
            h.backlog,
            s.near_entries as u64,
            u64::from(h.is_healthy()),
        ];
        for (&(name, kind, help), v) in FAMILIES.iter().zip(values) {
            family(out, name, kind, help);
            sample(out, name, "", &labels, None, &v);
        }
        let [.., (errors, errors_kind, errors_help), (latency, latency_kind, latency_help)] = FAMILIES;
        family(out, errors, errors_kind, errors_help);
        for (side, counts) in [("read", &s.read_errors), ("write", &s.write_errors)] {
            for (class, n) in counts {
                let l = [("key_prefix", prefix), ("side", side)];
                sample(out, errors, "", &l, Some(("class", class)), n);
            }
        }
        family(out, latency, latency_kind, latency_help);
        for (op, lat) in &s.latency {
            for (q, d) in [("0.5", lat.p50), ("0.99", lat.p99), ("0.999", lat.p999)] {
                let l = [("key_prefix", prefix), ("op", op.name())];
                sample(out, latency, "", &l, Some(("quantile", &q)), &Float(d.as_secs_f64()));
            }
        }
    }
}
