//! Counters shared between the callers and the flusher, and the public
//! `Stats` / `Health` views of them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use crate::cache::Seq;
use crate::error::{DroppedWrite, Error};

/// Error classes counted separately in [`Stats::errors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Connection refused, reset or closed.
    Io,
    /// A connect or reply timed out.
    Timeout,
    /// `LOADING`, `MASTERDOWN`, `TRYAGAIN`, `CLUSTERDOWN`, `NOREPLICAS`,
    /// `BUSY`, and `ASK` (the trader's cluster slot is being migrated).
    Busy,
    /// `READONLY` or `MOVED`: the server is a replica (a failover), or no
    /// longer owns the trader's cluster slot.
    ReadOnly,
    /// `OOM`: `maxmemory` reached under `noeviction`.
    Oom,
    /// `MISCONF`: the server cannot persist.
    Misconf,
    /// `NOAUTH`, `WRONGPASS`, `NOPERM`.
    Auth,
    /// A value could not be encoded.
    Encode,
    /// A value was larger than `max_value_bytes`.
    TooLarge,
    /// A command inside an applied transaction failed (e.g. `WRONGTYPE`).
    Command,
    /// Another writer opened as this one (same trader, instance and
    /// `writer_id`) and took over: this cache writes nothing more.
    Fenced,
    /// Any other server error.
    Other,
}

impl ErrorClass {
    /// Every class, in a fixed order.
    pub(crate) const ALL: [ErrorClass; 12] = [
        ErrorClass::Io,
        ErrorClass::Timeout,
        ErrorClass::Busy,
        ErrorClass::ReadOnly,
        ErrorClass::Oom,
        ErrorClass::Misconf,
        ErrorClass::Auth,
        ErrorClass::Encode,
        ErrorClass::TooLarge,
        ErrorClass::Command,
        ErrorClass::Fenced,
        ErrorClass::Other,
    ];

    /// A short lowercase name: `"oom"`, `"timeout"`, …
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Io => "io",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Busy => "busy",
            ErrorClass::ReadOnly => "readonly",
            ErrorClass::Oom => "oom",
            ErrorClass::Misconf => "misconf",
            ErrorClass::Auth => "auth",
            ErrorClass::Encode => "encode",
            ErrorClass::TooLarge => "too_large",
            ErrorClass::Command => "command",
            ErrorClass::Fenced => "fenced",
            ErrorClass::Other => "other",
        }
    }
}

/// Buckets of the batch latency histogram (powers of two, in µs).
pub(crate) const LAT_BUCKETS: usize = 32;

fn class_index(class: ErrorClass) -> usize {
    ErrorClass::ALL.iter().position(|c| *c == class).unwrap_or(ErrorClass::ALL.len() - 1)
}

/// State shared by the handle and the flusher. Callers only ever touch
/// `accepted_seq` (their own cache line) and, when rejected, `rejected`.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) accepted_seq: CachePadded<AtomicU64>,
    pub(crate) acked_seq: CachePadded<AtomicU64>,
    pub(crate) rejected: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) written: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) replays: AtomicU64,
    pub(crate) purged: AtomicU64,
    pub(crate) connected: AtomicBool,
    pub(crate) flusher_alive: AtomicBool,
    errors: [AtomicU64; 12],
    /// Dropped writes by the class of the reason (`Stats::dropped` split).
    dropped_by: [AtomicU64; 12],
    lat_us: [AtomicU64; LAT_BUCKETS],
    /// The sum of the recorded batch latencies, in µs (a histogram's `_sum`).
    lat_sum_us: AtomicU64,
    pub(crate) last_error: Mutex<Option<LastError>>,
    pub(crate) backpressure: Mutex<Option<String>>,
    /// Dropped writes not yet collected by `Cache::take_dropped`.
    drop_log: Mutex<DropLog>,
    /// The lowest sequence number in `drop_log` (0: none), so that `wait`
    /// checks for drops with one atomic load.
    first_untaken_drop: AtomicU64,
    /// Set by `close`/`Drop`: the flusher's deadline, for when the
    /// `Shutdown` message cannot reach it (see `Flusher::check_stop`).
    stop_requested: AtomicBool,
    stop_at: Mutex<Option<std::time::Instant>>,
    /// Set once another writer took over (its own cache line: every write
    /// reads it), with the writer key and what the flusher found.
    fenced: CachePadded<AtomicBool>,
    fence: Mutex<Option<(String, String)>>,
}

/// How many dropped-write entries are kept for
/// [`crate::Cache::take_dropped`] between two calls; [`Stats::dropped`]
/// counts every write.
pub(crate) const DROP_LOG_CAPACITY: usize = 1024;

#[derive(Default)]
struct DropLog {
    writes: Vec<DroppedWrite>,
    /// Dropped since the last take, including any beyond the capacity.
    untaken: u64,
}

/// The last error the flusher met.
#[derive(Debug, Clone)]
pub(crate) struct LastError {
    pub(crate) class: ErrorClass,
    pub(crate) text: String,
    pub(crate) at: std::time::SystemTime,
}

/// Lets `wait`/`flush` (of a `Cache` or a `Kv`) sleep until `acked_seq`
/// moves; the writer thread wakes them only when someone waits.
#[derive(Default)]
pub(crate) struct Waiters {
    pub(crate) count: std::sync::atomic::AtomicUsize,
    pub(crate) lock: Mutex<()>,
    pub(crate) cv: parking_lot::Condvar,
}

impl Waiters {
    pub(crate) fn wake(&self) {
        if self.count.load(SeqCst) > 0 {
            let _g = self.lock.lock();
            self.cv.notify_all();
        }
    }

    /// Blocks until write `seq` is acknowledged in `shared`, the writer is
    /// fenced or stopped, or `timeout` passes (`Cache::wait`, `Kv::wait`).
    pub(crate) fn wait(&self, shared: &Shared, seq: u64, timeout: Duration) -> Result<(), Error> {
        if shared.acked_seq.load(SeqCst) >= seq {
            return shared.drop_error(seq).map_or(Ok(()), Err);
        }
        let deadline = crate::connection::deadline_after(timeout);
        self.count.fetch_add(1, SeqCst);
        let mut guard = self.lock.lock();
        let result = loop {
            if shared.acked_seq.load(SeqCst) >= seq {
                break shared.drop_error(seq).map_or(Ok(()), Err);
            }
            if let Some(e) = shared.fence_error() {
                break Err(e);
            }
            if !shared.flusher_alive.load(SeqCst) {
                break Err(Error::Closed);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                break Err(Error::WaitTimeout(timeout));
            }
            // Bounded slices: a safety net, not the wake-up mechanism.
            let slice = (deadline - now).min(Duration::from_millis(20));
            self.cv.wait_for(&mut guard, slice);
        };
        drop(guard);
        self.count.fetch_sub(1, SeqCst);
        result
    }
}

impl Shared {
    /// Asks the flusher to stop by `deadline`, however full the channel is.
    pub(crate) fn request_stop(&self, deadline: std::time::Instant) {
        *self.stop_at.lock() = Some(deadline);
        self.stop_requested.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The deadline set by [`Shared::request_stop`], if any.
    pub(crate) fn stop_requested(&self) -> Option<std::time::Instant> {
        if self.stop_requested.load(std::sync::atomic::Ordering::SeqCst) {
            *self.stop_at.lock()
        } else {
            None
        }
    }

    /// Records that another writer took over (`writer_key`, and what was
    /// found).
    pub(crate) fn set_fenced(&self, writer_key: String, detail: String) {
        *self.fence.lock() = Some((writer_key, detail));
        self.fenced.store(true, SeqCst);
    }

    /// Whether another writer took over (one load, for the hot path).
    #[inline]
    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced.load(Relaxed)
    }

    /// `Error::Fenced` once this writer has been fenced.
    pub(crate) fn fence_error(&self) -> Option<Error> {
        if !self.fenced.load(SeqCst) {
            return None;
        }
        let (writer_key, detail) = self.fence.lock().clone()?;
        Some(Error::Fenced { writer_key, detail })
    }

    /// Counts a write the flusher could not persist and records it for
    /// `take_dropped` and `wait`.
    /// `writes` is how many writes the entry stands for (more than one
    /// for a command, refused inside a transaction, that carried several).
    pub(crate) fn record_drop(&self, seq: u64, writes: u64, key: String, class: ErrorClass, detail: String) {
        self.dropped.fetch_add(writes, Relaxed);
        self.dropped_by[class_index(class)].fetch_add(writes, Relaxed);
        self.count_error(class, format!("{writes} write(s) from seq {seq} to {key} dropped: {detail}"));
        let mut log = self.drop_log.lock();
        log.untaken += writes;
        if log.writes.len() < DROP_LOG_CAPACITY {
            log.writes.push(DroppedWrite { seq: Seq::new(seq), writes, key, class, detail });
        }
        let first = self.first_untaken_drop.load(SeqCst);
        if first == 0 || seq < first {
            self.first_untaken_drop.store(seq, SeqCst);
        }
    }

    /// Hands over the dropped writes recorded so far, oldest first.
    pub(crate) fn take_drops(&self) -> Vec<DroppedWrite> {
        let mut log = self.drop_log.lock();
        log.untaken = 0;
        self.first_untaken_drop.store(0, SeqCst);
        let mut writes = std::mem::take(&mut log.writes);
        writes.sort_by_key(|w| w.seq);
        writes
    }

    /// `Error::Dropped` when a write at or before `seq` was dropped and has
    /// not been collected yet.
    pub(crate) fn drop_error(&self, seq: u64) -> Option<Error> {
        let first = self.first_untaken_drop.load(SeqCst);
        if first == 0 || first > seq {
            return None;
        }
        let log = self.drop_log.lock();
        let earliest = log.writes.iter().min_by_key(|w| w.seq)?;
        Some(Error::Dropped { count: log.untaken, first: Box::new(earliest.clone()) })
    }

    pub(crate) fn count_error(&self, class: ErrorClass, text: String) {
        self.errors[class_index(class)].fetch_add(1, Relaxed);
        *self.last_error.lock() = Some(LastError { class, text, at: std::time::SystemTime::now() });
    }

    pub(crate) fn record_batch_latency(&self, d: Duration) {
        let us = d.as_micros().max(1) as u64;
        let bucket = (63 - us.leading_zeros() as usize).min(LAT_BUCKETS - 1);
        self.lat_us[bucket].fetch_add(1, Relaxed);
        self.lat_sum_us.fetch_add(us, Relaxed);
    }

    /// Read by the metrics exposition (`src/metrics.rs`), which must not
    /// allocate: every error class with its count (zeros included), in
    /// [`ErrorClass::ALL`] order.
    pub(crate) fn error_counts(&self) -> impl Iterator<Item = (ErrorClass, u64)> + '_ {
        ErrorClass::ALL.iter().zip(self.errors.iter()).map(|(c, n)| (*c, n.load(Relaxed)))
    }

    /// Dropped writes by the class of the reason, zeros included.
    pub(crate) fn dropped_counts(&self) -> impl Iterator<Item = (ErrorClass, u64)> + '_ {
        ErrorClass::ALL.iter().zip(self.dropped_by.iter()).map(|(c, n)| (*c, n.load(Relaxed)))
    }

    /// The batch latency histogram: the count in each power-of-two bucket
    /// (bucket `i` holds round trips of `2^i` to `2^(i+1) - 1` whole µs;
    /// the last bucket also holds everything longer) and the sum in µs.
    pub(crate) fn latency_histogram(&self) -> ([u64; LAT_BUCKETS], u64) {
        let mut counts = [0; LAT_BUCKETS];
        for (c, a) in counts.iter_mut().zip(self.lat_us.iter()) {
            *c = a.load(Relaxed);
        }
        (counts, self.lat_sum_us.load(Relaxed))
    }

    fn percentile_us(&self, q: f64) -> Option<u64> {
        let counts: Vec<u64> = self.lat_us.iter().map(|c| c.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let target = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                // Upper bound of the power-of-two bucket.
                return Some((2u64 << i) - 1);
            }
        }
        None
    }

    pub(crate) fn stats(&self) -> Stats {
        let accepted = self.accepted_seq.load(Relaxed);
        let acked = self.acked_seq.load(Relaxed);
        Stats {
            accepted,
            acked,
            backlog: accepted.saturating_sub(acked),
            rejected: self.rejected.load(Relaxed),
            batches: self.batches.load(Relaxed),
            commands: self.written.load(Relaxed),
            coalesced: self.coalesced.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            replays: self.replays.load(Relaxed),
            purged: self.purged.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            errors: ErrorClass::ALL
                .iter()
                .zip(self.errors.iter())
                .map(|(c, n)| (c.name(), n.load(Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            batch_latency_p50_us: self.percentile_us(0.50),
            batch_latency_p99_us: self.percentile_us(0.99),
        }
    }

    pub(crate) fn health(&self) -> Health {
        let accepted = self.accepted_seq.load(Relaxed);
        let acked = self.acked_seq.load(Relaxed);
        let last = self.last_error.lock().clone();
        Health {
            connected: self.connected.load(Relaxed),
            flusher_running: self.flusher_alive.load(Relaxed),
            backlog: accepted.saturating_sub(acked),
            reconnects: self.reconnects.load(Relaxed),
            last_error: last.as_ref().map(|e| format!("{}: {}", e.class.name(), e.text)),
            last_error_class: last.as_ref().map(|e| e.class),
            last_error_age: last.and_then(|e| e.at.elapsed().ok()),
            backpressure: self.backpressure.lock().clone(),
            fenced: self.fence.lock().as_ref().map(|(_, detail)| detail.clone()),
        }
    }
}

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
    /// Set when another writer opened as this one and took over (README,
    /// "Writers and fencing"): this cache writes nothing more. Names the
    /// writer key.
    pub fenced: Option<String>,
}

impl Health {
    /// Connected, flusher running, not fenced, and no server-side
    /// backpressure.
    pub fn is_healthy(&self) -> bool {
        self.connected && self.flusher_running && self.backpressure.is_none() && self.fenced.is_none()
    }
}
