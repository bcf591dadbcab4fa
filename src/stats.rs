//! The public `Stats` and `Health` views of the counters the flusher keeps
//! in `pipeline/shared.rs` (a leaf apart from [`ErrorClass`]).

use std::time::Duration;

use crate::error_class::ErrorClass;

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
    /// Errors by class name (`"io"`, `"timeout"`, `"oom"`, …), non-zero only.
    pub errors: Vec<(&'static str, u64)>,
    /// Median round trip of one transaction, in µs (power-of-two bucket).
    pub batch_latency_p50_us: Option<u64>,
    /// 99th percentile round trip of one transaction, in µs.
    pub batch_latency_p99_us: Option<u64>,
}

impl Stats {
    /// The count for one error class name (`"oom"`), 0 when none.
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
    /// The class of the last error.
    pub last_error_class: Option<ErrorClass>,
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
        self.connected && self.flusher_running && self.backpressure.is_none() && self.fenced.is_none()
    }
}
