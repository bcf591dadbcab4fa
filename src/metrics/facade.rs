//! Publishing a cache's counters through the `metrics` facade crate
//! (feature `metrics`), for applications that already export their own
//! metrics with a `metrics` recorder (Prometheus, StatsD, …).

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Label, Unit};

use crate::channel::Count;
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

const COUNTERS: &[(&str, &str)] = &[
    ("tradecache_writes_accepted_total", "Writes accepted into the channel."),
    ("tradecache_writes_acked_total", "Writes acknowledged by Redis."),
    ("tradecache_writes_rejected_total", "Writes refused at the call because the channel was full."),
    ("tradecache_writes_coalesced_total", "Snapshot writes superseded before they were sent."),
    ("tradecache_dropped_total", "Accepted writes that could not be persisted, by reason."),
    ("tradecache_errors_total", "Errors met by the flusher, by class."),
    ("tradecache_batches_total", "Transactions applied."),
    ("tradecache_commands_total", "Redis commands sent inside applied transactions."),
    ("tradecache_reconnects_total", "Connections re-established after a failure."),
    ("tradecache_replays_total", "In-doubt transactions resent after a reconnect."),
    ("tradecache_purged_total", "Closed entities deleted by purges."),
    (
        "tradecache_marker_losses_total",
        "Times the commit marker was missing or behind what was acknowledged.",
    ),
];

const GAUGES: &[(&str, &str)] = &[
    ("tradecache_backlog", "Accepted writes not yet acknowledged."),
    ("tradecache_connected", "1 while the flusher holds a working connection."),
    ("tradecache_flusher_running", "1 while the flusher thread runs."),
    ("tradecache_fenced", "1 once another writer took over."),
    ("tradecache_backpressure", "1 while the server refuses writes."),
    ("tradecache_healthy", "1 when Health::is_healthy."),
    ("tradecache_last_error_timestamp_seconds", "Unix time of the last error; 0 if none."),
];

impl MetricsReporter {
    /// A reporter; describes the metrics to the installed recorder.
    pub fn new() -> Self {
        for (name, help) in COUNTERS {
            describe_counter!(*name, Unit::Count, *help);
        }
        for (name, help) in GAUGES {
            describe_gauge!(*name, *help);
        }
        describe_histogram!(
            "tradecache_ack_latency_seconds",
            Unit::Seconds,
            "Round trip of one transaction, from sending it to its EXEC reply."
        );
        MetricsReporter { seen_buckets: [0; LAT_BUCKETS] }
    }

    /// Publishes the cache's current values to the installed recorder.
    pub fn report(&mut self, cache: &Cache) {
        let shared = cache.shared();
        let cfg = cache.config();
        let mut labels = vec![Label::new("trader_id", cfg.trader_id.clone())];
        if cfg.use_instance_id {
            if let Some(i) = &cfg.instance_id {
                labels.push(Label::new("instance_id", i.clone()));
            }
        }
        labels.push(Label::new("writer_id", cfg.writer_id.clone()));
        let with = |k: &'static str, v: &'static str| {
            let mut l = labels.clone();
            l.push(Label::new(k, v));
            l
        };

        let abs = |name: &'static str, v: u64| counter!(name, labels.iter()).absolute(v);
        abs("tradecache_writes_accepted_total", shared.accepted());
        abs("tradecache_writes_acked_total", shared.acked());
        abs("tradecache_writes_rejected_total", shared.count(Count::Rejected));
        abs("tradecache_writes_coalesced_total", shared.count(Count::Coalesced));
        abs("tradecache_batches_total", shared.count(Count::Batches));
        abs("tradecache_commands_total", shared.count(Count::Written));
        abs("tradecache_reconnects_total", shared.count(Count::Reconnects));
        abs("tradecache_replays_total", shared.count(Count::Replays));
        abs("tradecache_purged_total", shared.count(Count::Purged));
        abs("tradecache_marker_losses_total", shared.count(Count::MarkerLosses));
        for (class, n) in shared.dropped_counts() {
            counter!("tradecache_dropped_total", with("reason", class.name())).absolute(n);
        }
        for (class, n) in shared.error_counts() {
            counter!("tradecache_errors_total", with("class", class.name())).absolute(n);
        }

        let health = cache.health();
        let set = |name: &'static str, v: f64| gauge!(name, labels.iter()).set(v);
        let bit = |b: bool| if b { 1.0 } else { 0.0 };
        set("tradecache_backlog", health.backlog as f64);
        set("tradecache_connected", bit(health.connected));
        set("tradecache_flusher_running", bit(health.flusher_running));
        set("tradecache_fenced", bit(health.fenced.is_some()));
        set("tradecache_backpressure", bit(health.backpressure.is_some()));
        set("tradecache_healthy", bit(health.is_healthy()));
        let last = shared.last_error_at();
        let secs =
            last.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0.0, |d| d.as_secs_f64());
        set("tradecache_last_error_timestamp_seconds", secs);

        let (counts, _) = shared.latency_histogram();
        let h = histogram!("tradecache_ack_latency_seconds", labels.iter());
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
}
