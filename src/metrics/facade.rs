//! Publishing a cache's counters through the `metrics` facade crate
//! (feature `metrics`), for applications that already export their own
//! metrics with a `metrics` recorder (Prometheus, StatsD, …).

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Label, Unit};

use super::exposition::{cache_labels, last_error_secs, MetricType, Source, FAMILIES};
use crate::channel::LAT_BUCKETS;
use crate::Cache;

/// Hands a [`Cache`]'s counters, gauges and ack-latency histogram to the
/// installed `metrics` recorder, under the same names and labels as
/// [`Cache::write_prometheus`] (`tradecache_writes_acked_total`,
/// `tradecache_backlog`, `tradecache_dropped_total{reason}`, …).
///
/// Call [`MetricsReporter::report`] periodically (every few seconds, or
/// from your scrape handler): counters are set to their absolute values,
/// gauges to their current ones, and the latency observations made since
/// the previous call are recorded into the `tradecache_ack_latency_seconds`
/// histogram (each at the middle of its power-of-two bucket: the recorder's
/// own buckets or quantiles then apply). One reporter per cache.
///
/// ```no_run
/// # use tradecache::{Cache, Config, MetricsReporter};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = Cache::open(Config::from_env()?.trader_id("TESTER-001"))?;
/// let mut reporter = MetricsReporter::new();
/// loop {
///     reporter.report(&cache);
///     std::thread::sleep(std::time::Duration::from_secs(5));
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct MetricsReporter {
    seen_buckets: [u64; LAT_BUCKETS],
}

impl Default for MetricsReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsReporter {
    /// A reporter; describes the metrics to the installed recorder.
    pub fn new() -> Self {
        for (name, kind, help, _) in FAMILIES {
            match kind {
                MetricType::Counter => describe_counter!(*name, Unit::Count, *help),
                MetricType::Gauge => describe_gauge!(*name, *help),
                MetricType::Histogram => describe_histogram!(*name, Unit::Seconds, *help),
            }
        }
        MetricsReporter { seen_buckets: [0; LAT_BUCKETS] }
    }

    /// Publishes the cache's current values to the installed recorder.
    pub fn report(&mut self, cache: &Cache) {
        let shared = &cache.writer.shared;
        let (l, n) = cache_labels(cache.config());
        let labels: Vec<Label> = l[..n].iter().map(|&(k, v)| Label::new(k, v.to_owned())).collect();
        let with = |k: &'static str, v: &'static str| {
            let mut l = labels.clone();
            l.push(Label::new(k, v));
            l
        };
        for &(name, kind, _, source) in FAMILIES {
            match source {
                Source::Value(v) if kind == MetricType::Counter => {
                    counter!(name, labels.iter()).absolute(v(shared))
                }
                Source::Value(v) => gauge!(name, labels.iter()).set(v(shared) as f64),
                Source::Dropped => {
                    for (class, n) in shared.dropped_counts() {
                        counter!(name, with("reason", class.name())).absolute(n);
                    }
                }
                Source::Errors => {
                    for (class, n) in shared.error_counts() {
                        counter!(name, with("class", class.name())).absolute(n);
                    }
                }
                Source::LastError => gauge!(name, labels.iter()).set(last_error_secs(shared)),
                Source::AckLatency => {
                    let h = histogram!(name, labels.iter());
                    let (counts, _) = shared.latency_histogram();
                    for (i, (now, seen)) in counts.iter().zip(self.seen_buckets.iter_mut()).enumerate() {
                        let new = now.saturating_sub(*seen);
                        *seen = *now;
                        if new > 0 {
                            // Bucket i holds 2^i to 2^(i+1) µs: record its middle.
                            let mid_us = 1.5 * (1u64 << i) as f64;
                            h.record_many(mid_us * 1e-6, usize::try_from(new).unwrap_or(usize::MAX));
                        }
                    }
                }
                Source::Info => {}
            }
        }
    }
}
