//! The caching layer's counters in the Prometheus text format, written as
//! `crate::metrics::exposition` writes a cache's, so a process can serve its caches'
//! and its `Kv`'s families in one body.

use crate::metrics::exposition::{family, sample_f64, sample_u64, MetricType};

use super::breaker::BreakerState;
use super::Kv;

/// The names of the families [`Kv::write_prometheus`] writes (for
/// dashboards and alert rules that should only name exported series).
///
/// ```
/// assert!(tradecache::kv::metric_families().any(|n| n == "tradecache_kv_breaker_state"));
/// ```
pub fn metric_families() -> impl Iterator<Item = &'static str> {
    [
        "tradecache_kv_hits_total",
        "tradecache_kv_misses_total",
        "tradecache_kv_near_hits_total",
        "tradecache_kv_overlay_hits_total",
        "tradecache_kv_corrupt_total",
        "tradecache_kv_computed_total",
        "tradecache_kv_writes_accepted_total",
        "tradecache_kv_writes_acked_total",
        "tradecache_kv_writes_coalesced_total",
        "tradecache_kv_writes_dropped_total",
        "tradecache_kv_writes_rejected_total",
        "tradecache_kv_reconnects_total",
        "tradecache_kv_slow_ops_total",
        "tradecache_kv_breaker_opened_total",
        "tradecache_kv_short_circuited_total",
        "tradecache_kv_errors_total",
        "tradecache_kv_breaker_state",
        "tradecache_kv_backlog",
        "tradecache_kv_near_entries",
        "tradecache_kv_healthy",
        "tradecache_kv_latency_seconds",
    ]
    .into_iter()
}

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
        let counters: [(&str, &str, u64); 15] = [
            ("tradecache_kv_hits_total", "lookups answered with a cached value", s.hits),
            ("tradecache_kv_misses_total", "lookups answered without a cached value", s.misses),
            ("tradecache_kv_near_hits_total", "hits answered by the near cache", s.near_hits),
            (
                "tradecache_kv_overlay_hits_total",
                "hits answered by this process's unacknowledged writes",
                s.overlay_hits,
            ),
            ("tradecache_kv_corrupt_total", "values that did not decode (counted as misses)", s.corrupt),
            ("tradecache_kv_computed_total", "computations run by get_or_compute", s.computed),
            (
                "tradecache_kv_writes_accepted_total",
                "writes accepted by the write-behind channel",
                s.accepted,
            ),
            ("tradecache_kv_writes_acked_total", "writes acknowledged by Redis", s.acked),
            ("tradecache_kv_writes_coalesced_total", "writes superseded before they were sent", s.coalesced),
            (
                "tradecache_kv_writes_dropped_total",
                "accepted writes not persisted (counted, reported)",
                s.dropped,
            ),
            (
                "tradecache_kv_writes_rejected_total",
                "writes refused because the channel was full",
                s.rejected,
            ),
            ("tradecache_kv_reconnects_total", "connections of the writer re-established", s.reconnects),
            ("tradecache_kv_slow_ops_total", "operations over the slow-operation threshold", s.slow_ops),
            ("tradecache_kv_breaker_opened_total", "times the circuit breaker opened", s.breaker_opened),
            (
                "tradecache_kv_short_circuited_total",
                "calls answered without Redis while the breaker was open",
                s.short_circuited,
            ),
        ];
        for (name, help, v) in counters {
            family(out, name, MetricType::Counter, help);
            sample_u64(out, name, &labels, None, v);
        }
        family(
            out,
            "tradecache_kv_errors_total",
            MetricType::Counter,
            "errors by side (read, write) and class",
        );
        for (side, errors) in [("read", &s.read_errors), ("write", &s.write_errors)] {
            for (class, n) in errors {
                let l = [("key_prefix", prefix), ("side", side)];
                sample_u64(out, "tradecache_kv_errors_total", &l, Some(("class", class)), *n);
            }
        }
        let breaker = match s.breaker {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open { .. } => 2,
        };
        let gauges: [(&str, &str, u64); 4] = [
            ("tradecache_kv_breaker_state", "circuit breaker: 0 closed, 1 half-open, 2 open", breaker),
            ("tradecache_kv_backlog", "accepted writes not yet acknowledged", h.backlog),
            ("tradecache_kv_near_entries", "entries in the near cache", s.near_entries as u64),
            (
                "tradecache_kv_healthy",
                "1 when the writer is connected and running and the breaker closed",
                u64::from(h.is_healthy()),
            ),
        ];
        for (name, help, v) in gauges {
            family(out, name, MetricType::Gauge, help);
            sample_u64(out, name, &labels, None, v);
        }
        family(out, "tradecache_kv_latency_seconds", MetricType::Gauge, "latency percentiles per operation");
        for (op, lat) in &s.latency {
            for (q, d) in [("0.5", lat.p50), ("0.99", lat.p99), ("0.999", lat.p999)] {
                let l = [("key_prefix", prefix), ("op", op.name())];
                sample_f64(out, "tradecache_kv_latency_seconds", &l, Some(("quantile", q)), d.as_secs_f64());
            }
        }
    }
}
