//! Prometheus text exposition (format 0.0.4) of a [`Cache`]'s counters and
//! health, and the small writer it is built with.
//!
//! [`Cache::write_prometheus`] appends every metric of one cache to a
//! `String`; [`write_caches`] does the same for several caches (one per
//! trader, say) so that each metric family stays one block, as the format
//! requires. Any other source (the `kv` layer, an application's own
//! metrics) renders into the same `String` with an [`Exposition`] after
//! them, as long as its family names differ.
//!
//! Rendering reads the counters the flusher maintains (atomics, and the
//! flusher's last-error lock for a moment); it takes nothing the writing
//! threads use, and into a `String` with room to spare it allocates
//! nothing (`tests/it/metrics.rs` checks both).
//!
//! Why a writer of its own rather than `prometheus-client` (the Prometheus
//! project's crate), measured on 2026-12-02 in one run, alternating, on
//! the same families, labels and values (this crate's 21 families, 13
//! error classes and 13 drop reasons, the 32-bucket histogram: 120 lines,
//! 9.9 kB), 20 rounds of 2,000 renders each, release build:
//! - the format: `prometheus-client` writes OpenMetrics text only. Counter
//!   families lose `_total` on their `# HELP`/`# TYPE` lines
//!   (`# TYPE tradecache_writes_accepted counter`), which a parser of the
//!   0.0.4 text format this crate serves (`text/plain; version=0.0.4`)
//!   reads as untyped samples, and a body must end in one `# EOF`, so
//!   `write_prometheus` could no longer append into a body that several
//!   caches, a `Kv` and the application's own families share. Serving it
//!   would change what every scrape config and dashboard sees;
//! - render time: 8.2 µs per render here against 9.3 µs (medians, quiet
//!   machine; 12.2–12.5 against 13.5–13.8 µs under other builds), with 0
//!   allocations per render against 2: no reason either way at one scrape
//!   every few seconds;
//! - dependencies: three crates more in the core's tree
//!   (`prometheus-client`, its derive macro, `dtoa`; the rest is already
//!   there), 1.0 s of compile time in debug and 1.3 s in release: small,
//!   but the core's list is kept to what it needs.
//!
//! An application that prefers a library exporter has one: feature
//! `metrics` hands the same counters to any `metrics` recorder
//! (`MetricsReporter`).
//!
//! ```
//! use tradecache::exposition::{Exposition, MetricType};
//!
//! let mut out = String::new();
//! let mut e = Exposition::new(&mut out);
//! e.family("myapp_orders_total", MetricType::Counter, "Orders sent.");
//! e.sample_u64("myapp_orders_total", &[("venue", "BINANCE")], None, 42);
//! assert_eq!(
//!     out,
//!     concat!(
//!         "# HELP myapp_orders_total Orders sent.\n",
//!         "# TYPE myapp_orders_total counter\n",
//!         "myapp_orders_total{venue=\"BINANCE\"} 42\n",
//!     )
//! );
//! ```

use std::fmt::Write as _;

use crate::writer::Count;
use crate::writer::{Shared, LAT_BUCKETS};
use crate::Cache;

/// The type of a metric family, as written on its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// A value that only goes up (names end in `_total`).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative buckets (`_bucket{le=…}`), `_sum` and `_count`.
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// Appends Prometheus text exposition lines to a `String`.
///
/// Write a family's `# HELP`/`# TYPE` header with [`Exposition::family`],
/// then all of its samples, before the next family: the format wants each
/// family in one block. Label values are escaped (`\`, `"`, newline); names
/// are written as given (`[a-zA-Z_:][a-zA-Z0-9_:]*`, the caller's
/// responsibility). Nothing is allocated beyond the `String`'s growth.
#[derive(Debug)]
pub struct Exposition<'a> {
    out: &'a mut String,
}

impl<'a> Exposition<'a> {
    /// A writer appending to `out` (which may already hold other families).
    pub fn new(out: &'a mut String) -> Self {
        Exposition { out }
    }

    /// Writes a family's `# HELP` and `# TYPE` lines. `help` is one line of
    /// text (`\` and newlines are escaped).
    pub fn family(&mut self, name: &str, kind: MetricType, help: &str) {
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
    }

    fn labels(&mut self, labels: &[(&str, &str)], extra: Option<(&str, &str)>) {
        if labels.is_empty() && extra.is_none() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        for (k, v) in labels.iter().copied().chain(extra) {
            if !first {
                self.out.push(',');
            }
            first = false;
            self.out.push_str(k);
            self.out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => self.out.push_str("\\\\"),
                    '"' => self.out.push_str("\\\""),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
        self.out.push('}');
    }

    /// Writes one sample with an integer value: `name{labels,extra} value`.
    /// `extra` is one more label (a histogram's `le`, a `reason`, …)
    /// written after `labels`.
    pub fn sample_u64(&mut self, name: &str, labels: &[(&str, &str)], extra: Option<(&str, &str)>, v: u64) {
        self.out.push_str(name);
        self.labels(labels, extra);
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, " {v}");
    }

    /// Writes one sample with a floating-point value (`NaN`, `+Inf` and
    /// `-Inf` as the format spells them).
    pub fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], extra: Option<(&str, &str)>, v: f64) {
        self.out.push_str(name);
        self.labels(labels, extra);
        let _ = if v.is_nan() {
            writeln!(self.out, " NaN")
        } else if v.is_infinite() {
            writeln!(self.out, " {}Inf", if v > 0.0 { '+' } else { '-' })
        } else {
            writeln!(self.out, " {v}")
        };
    }

    /// Writes the samples of a histogram whose bucket `i` counts
    /// observations of `2^i` to `2^(i+1)` units (the first also those
    /// below, the last also those above), `units_per_second` of them in a
    /// second (`1e6` for µs): cumulative `_bucket`s with `le` upper bounds
    /// in seconds (`2^(i+1) / units_per_second`), `+Inf`, `_sum` (`sum /
    /// units_per_second`) and `_count`. `name` is the family name, without
    /// the suffixes.
    pub fn pow2_histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        counts: &[u64],
        sum: u64,
        units_per_second: f64,
    ) {
        let mut bucket = NameBuf::new(name, "_bucket");
        let mut cumulative = 0u64;
        let mut le = LeBuf::default();
        let finite = counts.len().saturating_sub(1);
        for (i, c) in counts.iter().enumerate().take(finite) {
            cumulative += c;
            let bound = (2u64 << i) as f64 / units_per_second;
            self.sample_u64(bucket.get(), labels, Some(("le", le.format(bound))), cumulative);
        }
        cumulative += counts.get(finite).copied().unwrap_or(0);
        self.sample_u64(bucket.get(), labels, Some(("le", "+Inf")), cumulative);
        bucket.set(name, "_sum");
        self.sample_f64(bucket.get(), labels, None, sum as f64 / units_per_second);
        bucket.set(name, "_count");
        self.sample_u64(bucket.get(), labels, None, cumulative);
    }
}

/// A metric name with a suffix, on the stack (no allocation).
struct NameBuf {
    buf: [u8; 128],
    len: usize,
}

impl NameBuf {
    fn new(name: &str, suffix: &str) -> Self {
        let mut b = NameBuf { buf: [0; 128], len: 0 };
        b.set(name, suffix);
        b
    }

    fn set(&mut self, name: &str, suffix: &str) {
        self.len = 0;
        for part in [name, suffix] {
            let n = part.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&part.as_bytes()[..n]);
            self.len += n;
        }
    }

    fn get(&self) -> &str {
        // Names are ASCII; a cut in the middle of a character cannot happen
        // for them, and yields "" rather than a panic otherwise.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

/// Formats an `le` bound on the stack.
#[derive(Default)]
struct LeBuf {
    buf: StackStr<32>,
}

impl LeBuf {
    fn format(&mut self, v: f64) -> &str {
        self.buf.len = 0;
        let _ = write!(self.buf, "{v}");
        self.buf.as_str()
    }
}

struct StackStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for StackStr<N> {
    fn default() -> Self {
        StackStr { buf: [0; N], len: 0 }
    }
}

impl<const N: usize> StackStr<N> {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> std::fmt::Write for StackStr<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > N {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// How one family reads its value(s) from a cache.
#[derive(Clone, Copy)]
enum Source {
    Info,
    Accepted,
    Acked,
    Rejected,
    Coalesced,
    Dropped,
    Errors,
    Batches,
    Commands,
    Reconnects,
    Replays,
    Purged,
    MarkerLosses,
    Backlog,
    Connected,
    FlusherRunning,
    Fenced,
    Backpressure,
    Healthy,
    LastError,
    AckLatency,
}

/// Every family a cache exports: name, type, help, source. The names are
/// this crate's interface with dashboards and `docs/alerts.yml`: keep them.
const FAMILIES: &[(&str, MetricType, &str, Source)] = &[
    (
        "tradecache_info",
        MetricType::Gauge,
        "Always 1; labels: crate version and value encoding.",
        Source::Info,
    ),
    (
        "tradecache_writes_accepted_total",
        MetricType::Counter,
        "Writes accepted into the channel (put, append, delete, clear).",
        Source::Accepted,
    ),
    (
        "tradecache_writes_acked_total",
        MetricType::Counter,
        "Writes acknowledged by Redis (the last acknowledged sequence number).",
        Source::Acked,
    ),
    (
        "tradecache_writes_rejected_total",
        MetricType::Counter,
        "Writes refused at the call because the channel was full (the value was handed back).",
        Source::Rejected,
    ),
    (
        "tradecache_writes_coalesced_total",
        MetricType::Counter,
        "Snapshot writes superseded by a later write to the same key before they were sent.",
        Source::Coalesced,
    ),
    (
        "tradecache_dropped_total",
        MetricType::Counter,
        "Accepted writes that could not be persisted, by reason (see Cache::take_dropped).",
        Source::Dropped,
    ),
    ("tradecache_errors_total", MetricType::Counter, "Errors met by the flusher, by class.", Source::Errors),
    (
        "tradecache_batches_total",
        MetricType::Counter,
        "Transactions (MULTI ... EXEC) applied.",
        Source::Batches,
    ),
    (
        "tradecache_commands_total",
        MetricType::Counter,
        "Redis commands sent inside applied transactions.",
        Source::Commands,
    ),
    (
        "tradecache_reconnects_total",
        MetricType::Counter,
        "Connections re-established after a failure.",
        Source::Reconnects,
    ),
    (
        "tradecache_replays_total",
        MetricType::Counter,
        "In-doubt transactions resent after a reconnect (the commit marker showed them not applied).",
        Source::Replays,
    ),
    (
        "tradecache_purged_total",
        MetricType::Counter,
        "Closed entities deleted by purges (Cache::purge_closed and the retain_closed_for policy).",
        Source::Purged,
    ),
    (
        "tradecache_marker_losses_total",
        MetricType::Counter,
        "Times the commit marker was missing or behind what this writer had acknowledged (Redis may have lost acknowledged writes).",
        Source::MarkerLosses,
    ),
    (
        "tradecache_backlog",
        MetricType::Gauge,
        "Accepted writes not yet acknowledged by Redis.",
        Source::Backlog,
    ),
    (
        "tradecache_connected",
        MetricType::Gauge,
        "1 while the flusher holds a working connection.",
        Source::Connected,
    ),
    (
        "tradecache_flusher_running",
        MetricType::Gauge,
        "1 while the flusher thread runs.",
        Source::FlusherRunning,
    ),
    (
        "tradecache_fenced",
        MetricType::Gauge,
        "1 once another writer opened as this one and took over: this cache writes nothing more.",
        Source::Fenced,
    ),
    (
        "tradecache_backpressure",
        MetricType::Gauge,
        "1 while the server refuses writes (OOM, MISCONF, auth); the backlog grows meanwhile.",
        Source::Backpressure,
    ),
    (
        "tradecache_healthy",
        MetricType::Gauge,
        "1 when connected, the flusher runs, not fenced and no backpressure (Health::is_healthy).",
        Source::Healthy,
    ),
    (
        "tradecache_last_error_timestamp_seconds",
        MetricType::Gauge,
        "Unix time of the last error the flusher met; 0 if none.",
        Source::LastError,
    ),
    (
        "tradecache_ack_latency_seconds",
        MetricType::Histogram,
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

fn flag(b: bool) -> u64 {
    u64::from(b)
}

/// Writes one family's samples for one cache.
fn write_source(e: &mut Exposition<'_>, name: &str, source: Source, cache: &Cache) {
    let shared: &Shared = cache.shared();
    let cfg = cache.config();
    let instance = if cfg.use_instance_id { cfg.instance_id.as_deref() } else { None };
    let (with, without);
    let labels: &[(&str, &str)] = match instance {
        Some(i) => {
            with = [
                ("trader_id", cfg.trader_id.as_str()),
                ("instance_id", i),
                ("writer_id", cfg.writer_id.as_str()),
            ];
            &with
        }
        None => {
            without = [("trader_id", cfg.trader_id.as_str()), ("writer_id", cfg.writer_id.as_str())];
            &without
        }
    };
    let mut u = |v: u64| e.sample_u64(name, labels, None, v);
    match source {
        Source::Info => {
            let mut l = [("", ""); 5];
            l[..labels.len()].copy_from_slice(labels);
            l[labels.len()] = ("version", env!("CARGO_PKG_VERSION"));
            e.sample_u64(name, &l[..=labels.len()], Some(("encoding", cfg.encoding.as_str())), 1);
        }
        Source::Accepted => u(shared.accepted()),
        Source::Acked => u(shared.acked()),
        Source::Rejected => u(shared.count(Count::Rejected)),
        Source::Coalesced => u(shared.count(Count::Coalesced)),
        Source::Batches => u(shared.count(Count::Batches)),
        Source::Commands => u(shared.count(Count::Written)),
        Source::Reconnects => u(shared.count(Count::Reconnects)),
        Source::Replays => u(shared.count(Count::Replays)),
        Source::Purged => u(shared.count(Count::Purged)),
        Source::MarkerLosses => u(shared.count(Count::MarkerLosses)),
        Source::Backlog => {
            let acked = shared.acked();
            u(shared.accepted().saturating_sub(acked))
        }
        Source::Connected => u(flag(shared.is_connected())),
        Source::FlusherRunning => u(flag(shared.is_alive())),
        Source::Fenced => u(flag(shared.is_fenced())),
        Source::Backpressure => u(flag(shared.has_backpressure())),
        Source::Healthy => {
            let healthy = shared.is_connected()
                && shared.is_alive()
                && !shared.is_fenced()
                && !shared.has_backpressure();
            u(flag(healthy))
        }
        Source::Dropped => {
            for (class, n) in shared.dropped_counts() {
                e.sample_u64(name, labels, Some(("reason", class.name())), n);
            }
        }
        Source::Errors => {
            for (class, n) in shared.error_counts() {
                e.sample_u64(name, labels, Some(("class", class.name())), n);
            }
        }
        Source::LastError => {
            let at = shared.last_error_at();
            let secs = at
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            e.sample_f64(name, labels, None, secs);
        }
        Source::AckLatency => {
            let (counts, sum_us) = shared.latency_histogram();
            e.pow2_histogram(name, labels, &counts[..LAT_BUCKETS], sum_us, 1e6);
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
    let mut e = Exposition::new(out);
    for (name, kind, help, source) in FAMILIES {
        e.family(name, *kind, help);
        for cache in caches {
            write_source(&mut e, name, *source, cache);
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
#[doc = include_str!("../docs/monitoring.md")]
#[cfg(doctest)]
pub struct MonitoringGuide;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values_and_help() {
        let mut out = String::new();
        let mut e = Exposition::new(&mut out);
        e.family("x_total", MetricType::Counter, "a \\ b\nc");
        e.sample_u64("x_total", &[("t", "a\"b\\c\nd")], Some(("k", "v")), 3);
        e.sample_f64("y", &[], None, f64::NAN);
        e.sample_f64("y", &[], None, f64::INFINITY);
        e.sample_f64("y", &[], None, 0.5);
        assert_eq!(
            out,
            "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\n\
             x_total{t=\"a\\\"b\\\\c\\nd\",k=\"v\"} 3\ny NaN\ny +Inf\ny 0.5\n"
        );
    }

    #[test]
    fn pow2_histogram_is_cumulative() {
        let mut out = String::new();
        Exposition::new(&mut out).pow2_histogram("h_seconds", &[("a", "b")], &[1, 0, 2, 5], 40, 1e6);
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
