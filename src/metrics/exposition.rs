//! Prometheus text exposition (format 0.0.4) of a [`Cache`]'s counters and
//! health: [`Cache::write_prometheus`] for one cache, [`write_caches`] for
//! several (each family stays one block, as the format requires). Other
//! sources (the `kv` layer, an application's own metrics) append their
//! families to the same `String` after them, under other names.
//!
//! Rendering reads the flusher's counters (atomics, and its last-error lock
//! for a moment), takes nothing the writing threads use, and into a
//! `String` with room to spare allocates nothing (`tests/it/metrics.rs`).
//! Not `prometheus-client`'s: that crate writes OpenMetrics text only,
//! which would change what every scrape config and dashboard reads.

use std::fmt::{self, Display, Write as _};

use crate::channel::{Count, Shared, LAT_BUCKETS};
use crate::metrics::stats::healthy;
use crate::{Cache, Config};
use MetricType::{Counter, Gauge, Histogram};

/// The type of a metric family, as written on its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricType {
    /// A value that only goes up (names end in `_total`).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative buckets (`_bucket{le=…}`), `_sum` and `_count`.
    Histogram,
}

/// Appends what is written through it to a `String`, escaped as the format
/// wants help text (`\`, newline) or, with `quotes`, a label value (`"`
/// too).
struct Escaped<'a> {
    out: &'a mut String,
    quotes: bool,
}

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '"' if self.quotes => self.out.push_str("\\\""),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        Ok(())
    }
}

/// A sample value as the format spells it (`NaN`, `+Inf`, `-Inf`).
pub(crate) struct Float(pub(crate) f64);

impl Display for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            v if v.is_infinite() => f.write_str(if v > 0.0 { "+Inf" } else { "-Inf" }),
            v => write!(f, "{v}"),
        }
    }
}

// Writing to a `String` cannot fail: the results of `write!` below are
// ignored for that reason.

/// Writes a family's `# HELP` and `# TYPE` lines. `help` is one line of
/// text (`\` and newlines are escaped). Write all of a family's samples
/// before the next family: the format wants each family in one block.
pub(crate) fn family(out: &mut String, name: &str, kind: MetricType, help: &str) {
    let _ = write!(out, "# HELP {name} ");
    let _ = Escaped { out: &mut *out, quotes: false }.write_str(help);
    let kind = match kind {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
    };
    let _ = writeln!(out, "\n# TYPE {name} {kind}");
}

/// Writes one sample, `{name}{suffix}{labels,extra} value`: label values
/// escaped, names as given (`[a-zA-Z_:][a-zA-Z0-9_:]*`, the caller's
/// responsibility). `extra` is one more label (a histogram's `le`, a
/// `reason`, …) written after `labels`; a float value goes in a [`Float`].
pub(crate) fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    extra: Option<(&str, &dyn Display)>,
    value: &dyn Display,
) {
    out.push_str(name);
    out.push_str(suffix);
    let mut sep = '{';
    for (k, v) in labels.iter().map(|(k, v)| (*k, v as &dyn Display)).chain(extra) {
        let _ = write!(out, "{sep}{k}=\"");
        let _ = write!(Escaped { out: &mut *out, quotes: true }, "{v}");
        out.push('"');
        sep = ',';
    }
    if sep == ',' {
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Writes the samples of a histogram whose bucket `i` counts observations
/// of `2^i` to `2^(i+1)` µs (the first also those below, the last also
/// those above): cumulative `_bucket`s with `le` upper bounds in seconds,
/// `+Inf`, `_sum` (`sum_us` in seconds) and `_count`.
fn pow2_histogram(out: &mut String, name: &str, labels: &[(&str, &str)], counts: &[u64], sum_us: u64) {
    let mut cumulative = 0u64;
    let finite = counts.len().saturating_sub(1);
    for (i, c) in counts.iter().enumerate().take(finite) {
        cumulative += c;
        let bound = (2u64 << i) as f64 / 1e6;
        sample(out, name, "_bucket", labels, Some(("le", &bound)), &cumulative);
    }
    cumulative += counts.get(finite).copied().unwrap_or(0);
    sample(out, name, "_bucket", labels, Some(("le", &"+Inf")), &cumulative);
    sample(out, name, "_sum", labels, None, &Float(sum_us as f64 / 1e6));
    sample(out, name, "_count", labels, None, &cumulative);
}
/// How a family reads its sample(s) from a cache's counters.
#[derive(Clone, Copy)]
pub(crate) enum Source {
    Info,
    Value(fn(&Shared) -> u64),
    /// One value per reason a write was dropped (label `reason`).
    Dropped,
    /// One value per class of error (label `class`).
    Errors,
    LastError,
    AckLatency,
}

/// Every family a cache exports: name, type, help, source (also what
/// `MetricsReporter` hands to a `metrics` recorder). The names are this
/// crate's interface with dashboards and `docs/alerts.yml`: keep them.
pub(crate) const FAMILIES: &[(&str, MetricType, &str, Source)] = &[
    ("tradecache_info", Gauge, "Always 1; labels: crate version and value encoding.", Source::Info),
    (
        "tradecache_writes_accepted_total",
        Counter,
        "Writes accepted into the channel (put, append, delete, clear).",
        Source::Value(Shared::accepted),
    ),
    (
        "tradecache_writes_acked_total",
        Counter,
        "Writes acknowledged by Redis (the last acknowledged sequence number).",
        Source::Value(Shared::acked),
    ),
    (
        "tradecache_writes_rejected_total",
        Counter,
        "Writes refused at the call because the channel was full (the value was handed back).",
        Source::Value(|s| s.count(Count::Rejected)),
    ),
    (
        "tradecache_writes_coalesced_total",
        Counter,
        "Snapshot writes superseded by a later write to the same key before they were sent.",
        Source::Value(|s| s.count(Count::Coalesced)),
    ),
    (
        "tradecache_dropped_total",
        Counter,
        "Accepted writes that could not be persisted, by reason (see Cache::take_dropped).",
        Source::Dropped,
    ),
    ("tradecache_errors_total", Counter, "Errors met by the flusher, by class.", Source::Errors),
    (
        "tradecache_batches_total",
        Counter,
        "Transactions (MULTI ... EXEC) applied.",
        Source::Value(|s| s.count(Count::Batches)),
    ),
    (
        "tradecache_commands_total",
        Counter,
        "Redis commands sent inside applied transactions.",
        Source::Value(|s| s.count(Count::Written)),
    ),
    (
        "tradecache_reconnects_total",
        Counter,
        "Connections re-established after a failure.",
        Source::Value(|s| s.count(Count::Reconnects)),
    ),
    (
        "tradecache_replays_total",
        Counter,
        "In-doubt transactions resent after a reconnect (the commit marker showed them not applied).",
        Source::Value(|s| s.count(Count::Replays)),
    ),
    (
        "tradecache_purged_total",
        Counter,
        "Closed entities deleted by purges (Cache::purge_closed and the retain_closed_for policy).",
        Source::Value(|s| s.count(Count::Purged)),
    ),
    (
        "tradecache_marker_losses_total",
        Counter,
        "Times the commit marker was missing or behind what this writer had acknowledged (Redis may have lost acknowledged writes).",
        Source::Value(|s| s.count(Count::MarkerLosses)),
    ),
    (
        "tradecache_backlog",
        Gauge,
        "Accepted writes not yet acknowledged by Redis.",
        Source::Value(|s| {
            let acked = s.acked();
            s.accepted().saturating_sub(acked)
        }),
    ),
    (
        "tradecache_connected",
        Gauge,
        "1 while the flusher holds a working connection.",
        Source::Value(|s| u64::from(s.is_connected())),
    ),
    (
        "tradecache_flusher_running",
        Gauge,
        "1 while the flusher thread runs.",
        Source::Value(|s| u64::from(s.is_alive())),
    ),
    (
        "tradecache_fenced",
        Gauge,
        "1 once another writer opened as this one and took over: this cache writes nothing more.",
        Source::Value(|s| u64::from(s.is_fenced())),
    ),
    (
        "tradecache_backpressure",
        Gauge,
        "1 while the server refuses writes (OOM, MISCONF, auth); the backlog grows meanwhile.",
        Source::Value(|s| u64::from(s.has_backpressure())),
    ),
    (
        "tradecache_healthy",
        Gauge,
        "1 when connected, the flusher runs, not fenced and no backpressure (Health::is_healthy).",
        Source::Value(|s| {
            u64::from(healthy(s.is_connected(), s.is_alive(), s.is_fenced(), s.has_backpressure()))
        }),
    ),
    (
        "tradecache_last_error_timestamp_seconds",
        Gauge,
        "Unix time of the last error the flusher met; 0 if none.",
        Source::LastError,
    ),
    (
        "tradecache_ack_latency_seconds",
        Histogram,
        "Round trip of one transaction, from sending it to its EXEC reply (power-of-two buckets).",
        Source::AckLatency,
    ),
];

/// The names of every metric family [`Cache::write_prometheus`] writes.
///
/// ```
/// assert!(tradecache::exposition::family_names().any(|n| n == "tradecache_backlog"));
/// ```
pub fn family_names() -> impl Iterator<Item = &'static str> {
    FAMILIES.iter().map(|f| f.0)
}

/// The Unix time of the last error the flusher met, in seconds; 0 if none.
pub(crate) fn last_error_secs(shared: &Shared) -> f64 {
    let at = shared.last_error_at();
    at.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0.0, |d| d.as_secs_f64())
}

/// The labels of a cache's samples, the first `n` of the array:
/// `trader_id`, `instance_id` (with `use_instance_id`), `writer_id`; one
/// slot more for the info family's `version`.
pub(crate) fn cache_labels(cfg: &Config) -> ([(&'static str, &str); 4], usize) {
    let (trader, writer) = (("trader_id", cfg.trader_id.as_str()), ("writer_id", cfg.writer_id.as_str()));
    match cfg.instance_id.as_deref().filter(|_| cfg.use_instance_id) {
        Some(i) => ([trader, ("instance_id", i), writer, ("", "")], 3),
        None => ([trader, writer, ("", ""), ("", "")], 2),
    }
}

/// Writes one family's samples for one cache.
fn write_source(out: &mut String, name: &str, source: Source, cache: &Cache) {
    let shared: &Shared = &cache.writer.shared;
    let cfg = cache.config();
    let (mut l, n) = cache_labels(cfg);
    let labels = &l[..n];
    match source {
        Source::Info => {
            l[n] = ("version", env!("CARGO_PKG_VERSION"));
            sample(out, name, "", &l[..=n], Some(("encoding", &cfg.encoding.as_str())), &1);
        }
        Source::Value(value) => sample(out, name, "", labels, None, &value(shared)),
        Source::Dropped => {
            for (class, n) in shared.dropped_counts() {
                sample(out, name, "", labels, Some(("reason", &class.name())), &n);
            }
        }
        Source::Errors => {
            for (class, n) in shared.error_counts() {
                sample(out, name, "", labels, Some(("class", &class.name())), &n);
            }
        }
        Source::LastError => sample(out, name, "", labels, None, &Float(last_error_secs(shared))),
        Source::AckLatency => {
            let (counts, sum_us) = shared.latency_histogram();
            pow2_histogram(out, name, labels, &counts[..LAT_BUCKETS], sum_us);
        }
    }
}

/// Appends the exposition of several caches to `out`, each family once
/// with one sample (or set of samples) per cache, told apart by their
/// `trader_id`, `instance_id` (when the cache uses one) and `writer_id`
/// labels.
///
/// See [`Cache::write_prometheus`] for the families.
pub fn write_caches(out: &mut String, caches: &[&Cache]) {
    for (name, kind, help, source) in FAMILIES {
        family(out, name, *kind, help);
        for cache in caches {
            write_source(out, name, *source, cache);
        }
    }
}

impl Cache {
    /// Appends this cache's counters and health to `out` in the Prometheus
    /// text exposition format (serve it with `Content-Type: text/plain;
    /// version=0.0.4`). Labels: `trader_id`, `instance_id` (with
    /// `use_instance_id`), `writer_id`; `instance` is left to Prometheus,
    /// which sets it to the scrape target.
    ///
    /// | family | type | meaning |
    /// | --- | --- | --- |
    /// | `tradecache_info{version,encoding}` | gauge | always 1 |
    /// | `tradecache_writes_accepted_total` | counter | [`Stats::accepted`](crate::Stats::accepted) |
    /// | `tradecache_writes_acked_total` | counter | [`Stats::acked`](crate::Stats::acked) |
    /// | `tradecache_writes_rejected_total` | counter | channel full: [`Stats::rejected`](crate::Stats::rejected) |
    /// | `tradecache_writes_coalesced_total` | counter | [`Stats::coalesced`](crate::Stats::coalesced) |
    /// | `tradecache_dropped_total{reason}` | counter | [`Stats::dropped`](crate::Stats::dropped) by reason (`too_large`, `encode`, `command`, …) |
    /// | `tradecache_errors_total{class}` | counter | [`Stats::errors`](crate::Stats::errors), every class (zeros too) |
    /// | `tradecache_batches_total`, `tradecache_commands_total` | counter | transactions and commands applied |
    /// | `tradecache_reconnects_total`, `tradecache_replays_total` | counter | reconnects; in-doubt batches resent |
    /// | `tradecache_purged_total` | counter | closed entities purged: [`Stats::purged`](crate::Stats::purged) |
    /// | `tradecache_marker_losses_total` | counter | commit marker missing or behind: [`Stats::marker_losses`](crate::Stats::marker_losses) |
    /// | `tradecache_backlog` | gauge | accepted, not yet acknowledged |
    /// | `tradecache_connected`, `tradecache_flusher_running` | gauge | 0 or 1 |
    /// | `tradecache_fenced`, `tradecache_backpressure`, `tradecache_healthy` | gauge | 0 or 1, as in [`Health`](crate::Health) |
    /// | `tradecache_last_error_timestamp_seconds` | gauge | Unix time of the last error, 0 if none |
    /// | `tradecache_ack_latency_seconds` | histogram | transaction round trip; buckets 2 µs, 4 µs, … 2^31 µs, `+Inf` |
    ///
    /// `docs/monitoring.md` says which to alert on; `docs/alerts.yml` has
    /// the rules. Several caches in one process: [`write_caches`].
    ///
    /// ```no_run
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = Cache::open(Config::from_env()?.trader_id("TESTER-001"))?;
    /// let mut body = String::with_capacity(16 * 1024); // reuse it between scrapes
    /// body.clear();
    /// cache.write_prometheus(&mut body);
    /// assert!(body.contains("tradecache_backlog{trader_id=\"TESTER-001\",writer_id=\"main\"} "));
    /// # Ok(()) }
    /// ```
    pub fn write_prometheus(&self, out: &mut String) {
        write_caches(out, &[self]);
    }
}

/// The Rust in docs/monitoring.md, compiled by `cargo test --doc`.
#[doc = include_str!("../../docs/monitoring.md")]
#[cfg(doctest)]
pub struct MonitoringGuide;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values_and_help() {
        let mut out = String::new();
        family(&mut out, "x_total", MetricType::Counter, "a \\ b\nc");
        sample(&mut out, "x_total", "", &[("t", "a\"b\\c\nd")], Some(("k", &"v")), &3);
        sample(&mut out, "y", "", &[], None, &Float(f64::NAN));
        sample(&mut out, "y", "", &[], None, &Float(f64::INFINITY));
        sample(&mut out, "y", "", &[], None, &Float(0.5));
        assert_eq!(
            out,
            "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\n\
             x_total{t=\"a\\\"b\\\\c\\nd\",k=\"v\"} 3\ny NaN\ny +Inf\ny 0.5\n"
        );
    }

    #[test]
    fn pow2_histogram_is_cumulative() {
        let mut out = String::new();
        pow2_histogram(&mut out, "h_seconds", &[("a", "b")], &[1, 0, 2, 5], 40);
        assert_eq!(
            out,
            "h_seconds_bucket{a=\"b\",le=\"0.000002\"} 1\n\
             h_seconds_bucket{a=\"b\",le=\"0.000004\"} 1\n\
             h_seconds_bucket{a=\"b\",le=\"0.000008\"} 3\n\
             h_seconds_bucket{a=\"b\",le=\"+Inf\"} 8\n\
             h_seconds_sum{a=\"b\"} 0.00004\n\
             h_seconds_count{a=\"b\"} 8\n"
        );
    }
}
