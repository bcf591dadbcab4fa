//! The public `Stats` and `Health` views of the counters the flusher keeps
//! in `channel/shared.rs` (a leaf apart from [`ErrorKind`]), and how they
//! print for a person: `Display`, with durations in readable units and the
//! latency percentiles at their true resolution (power-of-two buckets).

use std::fmt;
use std::time::Duration;

use crate::error::ErrorKind;

/// Counters since the cache was opened. See [`crate::Cache::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Writes accepted into the channel (the last sequence number handed out).
    pub accepted: u64,
    /// The last sequence number acknowledged by Redis.
    pub acked: u64,
    /// Accepted writes not yet acknowledged.
    pub backlog: u64,
    /// Writes refused because the channel was full (each value was handed
    /// back to the caller).
    pub rejected: u64,
    /// Transactions (`MULTI … EXEC`) applied.
    pub batches: u64,
    /// Redis commands sent inside applied transactions.
    pub commands: u64,
    /// Snapshot writes superseded by a later write to the same key before
    /// they were sent (coalescing).
    pub coalesced: u64,
    /// Connections re-established after a failure.
    pub reconnects: u64,
    /// In-doubt batches resent after a reconnect because the commit marker
    /// showed they had not been applied.
    pub replays: u64,
    /// Closed entities deleted by purges ([`crate::Cache::purge_closed`]
    /// and the `retain_closed_for` policy).
    pub purged: u64,
    /// Times the commit marker was found missing or behind what this
    /// writer had acknowledged (see [`Health::marker_lost`]).
    pub marker_losses: u64,
    /// Accepted writes that could not be persisted (encode failure, too
    /// large, or a command error inside the transaction); see `errors`, and
    /// [`crate::Cache::take_dropped`] for which ones.
    pub dropped: u64,
    /// Errors the flusher met, by [`ErrorKind::name`] (`"io"`, `"timeout"`,
    /// `"oom"`, …), non-zero only.
    pub errors: Vec<(&'static str, u64)>,
    /// Median round trip of one transaction, in µs: the upper end of a
    /// power-of-two bucket (`16383` stands for 8,192 to 16,383 µs; the
    /// `Display` of `Stats` shows it as `≤ 16 ms`).
    pub batch_latency_p50_us: Option<u64>,
    /// 99th percentile round trip of one transaction, in µs (a bucket's
    /// upper end, as [`Stats::batch_latency_p50_us`]).
    pub batch_latency_p99_us: Option<u64>,
}

impl Stats {
    /// The count for one [`ErrorKind::name`] (`"oom"`), 0 when none.
    pub fn error_count(&self, class: &str) -> u64 {
        self.errors.iter().find(|(n, _)| *n == class).map_or(0, |(_, c)| *c)
    }
}

/// Whether the cache is keeping up. See [`crate::Cache::health`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The flusher holds a working connection.
    pub connected: bool,
    /// The flusher thread is running.
    pub flusher_running: bool,
    /// Accepted writes not yet acknowledged by Redis.
    pub backlog: u64,
    /// Connections re-established after a failure.
    pub reconnects: u64,
    /// The last error met, as `"class: text"` (never a password).
    pub last_error: Option<String>,
    /// The kind the last error is counted under in [`Stats::errors`].
    pub last_error_class: Option<ErrorKind>,
    /// How long ago the last error happened.
    pub last_error_age: Option<Duration>,
    /// Why the server currently refuses writes (`OOM`, `MISCONF`, …), while
    /// it does.
    pub backpressure: Option<String>,
    /// Set when another writer opened as this one and took over (docs/guarantees.md,
    /// "Writers and fencing"): this cache writes nothing more. Names the
    /// writer key.
    pub fenced: Option<String>,
    /// The last time the commit marker was found missing or behind what
    /// this writer had acknowledged: Redis may have lost acknowledged
    /// writes (docs/guarantees.md). Stays set; it is a fact to act on.
    pub marker_lost: Option<String>,
}

impl Health {
    /// Connected, flusher running, not fenced, and no server-side
    /// backpressure.
    pub fn is_healthy(&self) -> bool {
        healthy(self.connected, self.flusher_running, self.fenced.is_some(), self.backpressure.is_some())
    }
}

/// The one definition of healthy: [`Health::is_healthy`], and the
/// `tradecache_healthy` metric, which reads the flags without building a
/// `Health` (a scrape allocates nothing).
pub(crate) fn healthy(connected: bool, flusher_running: bool, fenced: bool, backpressure: bool) -> bool {
    connected && flusher_running && !fenced && !backpressure
}

/// One line for a person (`{:#}`: one item per line), for example
/// `accepted 1200, acknowledged 1200, backlog 0; 31 batches, 2400 commands,
/// 10 coalesced; batch round trip p50 ≤ 1.0 ms, p99 ≤ 4.1 ms`. Counters
/// that are zero are left out, except the first three; then the error
/// counts by class, if any.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if f.alternate() { "\n" } else { "; " };
        write!(f, "accepted {}, acknowledged {}, backlog {}", self.accepted, self.acked, self.backlog)?;
        let counts = [
            (self.batches, "batch", "batches"),
            (self.commands, "command", "commands"),
            (self.coalesced, "coalesced", "coalesced"),
            (self.rejected, "rejected", "rejected"),
            (self.dropped, "dropped", "dropped"),
            (self.reconnects, "reconnect", "reconnects"),
            (self.replays, "replay", "replays"),
            (self.purged, "purged", "purged"),
            (self.marker_losses, "marker loss", "marker losses"),
        ];
        for (i, (n, one, many)) in counts.into_iter().filter(|(n, _, _)| *n > 0).enumerate() {
            f.write_str(if i == 0 { sep } else { ", " })?;
            write!(f, "{n} {}", if n == 1 { one } else { many })?;
        }
        if let (Some(p50), Some(p99)) = (self.batch_latency_p50_us, self.batch_latency_p99_us) {
            write!(f, "{sep}batch round trip p50 {}, p99 {}", Bucket(p50), Bucket(p99))?;
        }
        if !self.errors.is_empty() {
            write!(f, "{sep}errors:")?;
            for (i, (class, n)) in self.errors.iter().enumerate() {
                write!(f, "{} {class} {n}", if i == 0 { "" } else { "," })?;
            }
        }
        Ok(())
    }
}

/// One line for a person (`{:#}`: one item per line): `healthy` or
/// `unhealthy`, the connection, the flusher, the backlog, then whatever is
/// wrong, for example `unhealthy: disconnected, flusher running, backlog
/// 299, 2 reconnects; last error 1.3 s ago: io: connection refused`.
impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if f.alternate() { "\n" } else { "; " };
        write!(
            f,
            "{}: {}, {}, backlog {}",
            if self.is_healthy() { "healthy" } else { "unhealthy" },
            if self.connected { "connected" } else { "disconnected" },
            if self.flusher_running { "flusher running" } else { "flusher stopped" },
            self.backlog
        )?;
        if self.reconnects > 0 {
            write!(f, ", {} reconnect{}", self.reconnects, if self.reconnects == 1 { "" } else { "s" })?;
        }
        if let Some(fenced) = &self.fenced {
            write!(f, "{sep}fenced: {fenced}")?;
        }
        if let Some(bp) = &self.backpressure {
            write!(f, "{sep}backpressure: {bp}")?;
        }
        if let Some(lost) = &self.marker_lost {
            write!(f, "{sep}marker lost: {lost}")?;
        }
        if let Some(e) = &self.last_error {
            match self.last_error_age {
                Some(age) => write!(f, "{sep}last error {} ago: {e}", Readable(age))?,
                None => write!(f, "{sep}last error: {e}")?,
            }
        }
        Ok(())
    }
}

/// The lower end of the last latency bucket, which also holds everything
/// longer (`channel/shared.rs` has 32 buckets; a test checks it).
const TOP_BUCKET_US: u64 = 1 << 31;

/// A percentile as [`Stats`] holds it, the inclusive upper end of a
/// power-of-two bucket of whole µs (`2^(i+1) - 1`), shown as what it
/// means: `≤ 16 ms` for `16383` (the round trip took less than 16,384 µs).
/// The last bucket, which is open-ended, shows as `≥ 36 min`.
pub(crate) struct Bucket(pub(crate) u64);

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = self.0.saturating_add(1);
        if self.0 >= 2 * TOP_BUCKET_US - 1 {
            write!(f, "≥ {}", Readable(Duration::from_micros(TOP_BUCKET_US)))
        } else {
            write!(f, "≤ {}", Readable(Duration::from_micros(end)))
        }
    }
}

/// A duration in the unit that reads best, to two or three significant
/// figures: `850 µs`, `4.1 ms`, `16 ms`, `131 ms`, `2.1 s`, `36 min`,
/// `3.0 h`; under a microsecond, `ns`.
pub(crate) struct Readable(pub(crate) Duration);

impl fmt::Display for Readable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos() as f64;
        // The unit is chosen by the value as printed, so 999,999 µs reads
        // `1.0 s`, not `1000 ms`.
        let (value, unit) = if ns < 999.5 {
            return write!(f, "{} ns", self.0.as_nanos());
        } else if ns < 999.5e3 {
            (ns / 1e3, "µs")
        } else if ns < 999.5e6 {
            (ns / 1e6, "ms")
        } else if ns < 59.95e9 {
            (ns / 1e9, "s")
        } else if ns < 59.95 * 60e9 {
            (ns / 60e9, "min")
        } else {
            (ns / 3600e9, "h")
        };
        // Two significant figures below 10, whole units above.
        if value < 9.95 {
            write!(f, "{value:.1} {unit}")
        } else {
            write!(f, "{value:.0} {unit}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_bucket_is_the_histograms() {
        assert_eq!(TOP_BUCKET_US, 1 << (crate::channel::LAT_BUCKETS - 1));
    }

    #[test]
    fn buckets_print_their_true_resolution() {
        let shown = |us| Bucket(us).to_string();
        assert_eq!(shown(1), "≤ 2.0 µs");
        assert_eq!(shown(511), "≤ 512 µs");
        assert_eq!(shown(1023), "≤ 1.0 ms");
        assert_eq!(shown(4095), "≤ 4.1 ms");
        assert_eq!(shown(16383), "≤ 16 ms");
        assert_eq!(shown(65535), "≤ 66 ms");
        assert_eq!(shown(524_287), "≤ 524 ms");
        assert_eq!(shown(2_097_151), "≤ 2.1 s");
        assert_eq!(shown(u64::from(u32::MAX)), "≥ 36 min");
    }

    #[test]
    fn durations_read_in_their_unit() {
        let shown = |d| Readable(d).to_string();
        assert_eq!(shown(Duration::from_nanos(250)), "250 ns");
        assert_eq!(shown(Duration::from_nanos(1_500)), "1.5 µs");
        assert_eq!(shown(Duration::from_micros(850)), "850 µs");
        assert_eq!(shown(Duration::from_micros(999_999)), "1.0 s");
        assert_eq!(shown(Duration::from_micros(9_960)), "10 ms");
        assert_eq!(shown(Duration::from_millis(1_300)), "1.3 s");
        assert_eq!(shown(Duration::from_secs(90)), "1.5 min");
        assert_eq!(shown(Duration::from_secs(3 * 3600)), "3.0 h");
    }

    fn stats() -> Stats {
        Stats { accepted: 1200, acked: 1200, ..Stats::default() }
    }

    #[test]
    fn stats_print_for_a_person() {
        assert_eq!(stats().to_string(), "accepted 1200, acknowledged 1200, backlog 0");
        let s = Stats {
            batches: 31,
            commands: 2400,
            coalesced: 10,
            reconnects: 1,
            errors: vec![("io", 2), ("timeout", 1)],
            batch_latency_p50_us: Some(1023),
            batch_latency_p99_us: Some(16383),
            ..stats()
        };
        assert_eq!(
            s.to_string(),
            "accepted 1200, acknowledged 1200, backlog 0; 31 batches, 2400 commands, 10 coalesced, \
             1 reconnect; batch round trip p50 ≤ 1.0 ms, p99 ≤ 16 ms; errors: io 2, timeout 1"
        );
        assert!(!s.to_string().contains("16383"));
        assert_eq!(format!("{s:#}").lines().count(), 4, "{s:#}");
    }

    fn healthy() -> Health {
        Health {
            connected: true,
            flusher_running: true,
            backlog: 0,
            reconnects: 0,
            last_error: None,
            last_error_class: None,
            last_error_age: None,
            backpressure: None,
            fenced: None,
            marker_lost: None,
        }
    }

    #[test]
    fn health_prints_for_a_person() {
        assert_eq!(healthy().to_string(), "healthy: connected, flusher running, backlog 0");
        let h = Health {
            connected: false,
            backlog: 299,
            reconnects: 2,
            last_error: Some("io: connection refused".into()),
            last_error_class: Some(ErrorKind::Io),
            last_error_age: Some(Duration::from_millis(1_300)),
            ..healthy()
        };
        assert_eq!(
            h.to_string(),
            "unhealthy: disconnected, flusher running, backlog 299, 2 reconnects; \
             last error 1.3 s ago: io: connection refused"
        );
        let h = Health {
            fenced: Some("writer trader-T1:writer:main was fenced".into()),
            marker_lost: Some("trader-T1:writer:main missing".into()),
            backpressure: Some("oom: OOM command not allowed".into()),
            ..healthy()
        };
        assert_eq!(
            format!("{h:#}"),
            "unhealthy: connected, flusher running, backlog 0\n\
             fenced: writer trader-T1:writer:main was fenced\n\
             backpressure: oom: OOM command not allowed\n\
             marker lost: trader-T1:writer:main missing"
        );
    }
}
