//! The state a writer thread (the `Cache`'s flusher, or the kv writer)
//! shares with its callers: the sequence numbers, the counters behind
//! `stats()` and `health()`, the stop request, the fence, the drop log,
//! and the callers asleep in `wait`/`flush` until `acked_seq` moves.

use std::sync::atomic::{
    AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release, Ordering::SeqCst,
};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use crate::error::{CloseReport, DroppedWrite, Error};
use crate::metrics::stats::{Health, Stats};
use crate::seq::Seq;
use crate::ErrorKind;

/// Buckets of the batch latency histogram (powers of two, in µs).
pub(crate) const LAT_BUCKETS: usize = 32;

/// A counter of [`Shared`]: statistics behind `stats()` and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    /// Writes refused because the channel was full.
    Rejected,
    Batches,
    /// Commands Redis executed.
    Written,
    /// Writes superseded before they were written.
    Coalesced,
    Reconnects,
    /// Batches in doubt replayed after a reconnect.
    Replays,
    Purged,
    MarkerLosses,
    Dropped,
    /// Dropped writes left out of the drop log because it was full.
    DropsUnlisted,
}

impl Count {
    /// How many counters there are (`DropsUnlisted` is the last variant).
    const N: usize = Count::DropsUnlisted as usize + 1;
}

/// State shared by the handle and the flusher (or the kv writer). Every
/// field is private: each is read and written through one method pair,
/// which documents its one memory ordering. Callers only ever touch
/// `accepted_seq` (their own cache line) and, when rejected, a counter.
#[derive(Default)]
pub(crate) struct Shared {
    accepted_seq: CachePadded<AtomicU64>,
    acked_seq: CachePadded<AtomicU64>,
    counts: [AtomicU64; Count::N],
    marker_lost: Mutex<Option<String>>,
    connected: AtomicBool,
    alive: AtomicBool,
    errors: [AtomicU64; ErrorKind::COUNT],
    dropped_by: [AtomicU64; ErrorKind::COUNT],
    lat_us: [AtomicU64; LAT_BUCKETS],
    /// The sum of the recorded batch latencies, in µs (a histogram's `_sum`).
    lat_sum_us: AtomicU64,
    last_error: Mutex<Option<LastError>>,
    backpressure: Mutex<Option<String>>,
    drop_log: Mutex<DropLog>,
    /// The lowest sequence number in `drop_log` (0: none), so that `wait`
    /// checks for drops with one atomic load.
    first_untaken_drop: AtomicU64,
    /// Set by `close`/`Drop`: the flusher's deadline, for when the
    /// `Shutdown` message cannot reach it (see `Flusher::check_stop`).
    stop_at: Mutex<Option<std::time::Instant>>,
    /// Set once another writer took over (its own cache line: every write
    /// reads it), with the writer key and what the flusher found.
    fenced: CachePadded<AtomicBool>,
    fence: Mutex<Option<(String, String)>>,
    waiters: Waiters,
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

#[derive(Debug, Clone)]
struct LastError {
    class: ErrorKind,
    text: String,
    at: std::time::SystemTime,
}

/// Lets `wait`/`flush` (of a `Cache` or a `Kv`) sleep until `acked_seq`
/// moves; the writer thread wakes them only when someone waits (`count`).
#[derive(Default)]
struct Waiters {
    count: std::sync::atomic::AtomicUsize,
    lock: Mutex<()>,
    cv: parking_lot::Condvar,
}

impl Shared {
    /// A caller's write `seq` is in the channel (the hot path).
    /// Release: a writer thread that reads `seq` with [`Shared::accepted`]
    /// finds that message in its channel (a purge step takes every write
    /// accepted before it). On x86 it is a plain store, like `Relaxed`.
    #[inline]
    pub(crate) fn note_accepted(&self, seq: u64) {
        self.accepted_seq.store(seq, Release);
    }

    /// The last sequence number accepted. Acquire: pairs with
    /// [`Shared::note_accepted`].
    #[inline]
    pub(crate) fn accepted(&self) -> u64 {
        self.accepted_seq.load(Acquire)
    }

    /// The writer thread acknowledged every write up to `seq`: stores it
    /// and wakes the callers waiting for it (`Shared::wait`). SeqCst: a
    /// waiter counts itself in `Waiters` and then reads `acked_seq`; the
    /// writer stores it and then reads the count. Only a single total order
    /// guarantees that one of them sees the other.
    pub(crate) fn note_acked(&self, seq: u64) {
        self.acked_seq.store(seq, SeqCst);
        if self.waiters.count.load(SeqCst) > 0 {
            self.wake_all();
        }
    }

    /// Blocks until write `seq` is acknowledged, the writer is fenced or
    /// stopped, or `timeout` passes (`Cache::wait`, `Kv::wait`).
    pub(crate) fn wait(&self, seq: u64, timeout: Duration) -> Result<(), Error> {
        if self.acked() >= seq {
            return self.drop_error(seq).map_or(Ok(()), Err);
        }
        let deadline = crate::net::deadline_after(timeout);
        let w = &self.waiters;
        w.count.fetch_add(1, SeqCst);
        let mut guard = w.lock.lock();
        let result = loop {
            if self.acked() >= seq {
                break self.drop_error(seq).map_or(Ok(()), Err);
            }
            if let Some(e) = self.fence_error() {
                break Err(e);
            }
            if !self.is_alive() {
                break Err(Error::Closed);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                break Err(Error::WaitTimeout(timeout));
            }
            // Bounded slices: a safety net, not the wake-up mechanism.
            let slice = (deadline - now).min(Duration::from_millis(20));
            w.cv.wait_for(&mut guard, slice);
        };
        drop(guard);
        w.count.fetch_sub(1, SeqCst);
        result
    }

    /// Wakes every caller in `wait` (the writer stopped or was fenced).
    pub(crate) fn wake_all(&self) {
        let _g = self.waiters.lock.lock();
        self.waiters.cv.notify_all();
    }

    /// The last sequence number acknowledged. SeqCst: pairs with
    /// [`Shared::note_acked`] (on x86 a plain load, like `Acquire`).
    #[inline]
    pub(crate) fn acked(&self) -> u64 {
        self.acked_seq.load(SeqCst)
    }

    /// Adds `n` to counter `c`. Relaxed: a statistic, read on its own;
    /// no other memory is published through it.
    #[inline]
    pub(crate) fn add(&self, c: Count, n: u64) {
        self.counts[c as usize].fetch_add(n, Relaxed);
    }

    /// The value of counter `c`. Relaxed: see [`Shared::add`].
    pub(crate) fn count(&self, c: Count) -> u64 {
        self.counts[c as usize].load(Relaxed)
    }

    /// Records whether the writer thread holds a working connection, and
    /// returns what was recorded before. Relaxed: a health flag, read on
    /// its own.
    pub(crate) fn set_connected(&self, up: bool) -> bool {
        self.connected.swap(up, Relaxed)
    }

    /// Whether the writer thread holds a working connection. Relaxed: see
    /// [`Shared::set_connected`].
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Relaxed)
    }

    /// Records whether the writer thread runs (set when it starts, cleared
    /// by its guard however it ends). SeqCst, as `acked_seq` beside which
    /// `Shared::wait` reads it; never on a hot path.
    pub(crate) fn set_alive(&self, alive: bool) {
        self.alive.store(alive, SeqCst);
    }

    /// Whether the writer thread runs. SeqCst: see [`Shared::set_alive`].
    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(SeqCst)
    }

    /// Redis refuses writes for now (`Some(why)`), shown by `health()`;
    /// `None` once a batch is acknowledged again. Returns whether
    /// backpressure was shown before. (A lock: the text goes with it.)
    pub(crate) fn set_backpressure(&self, why: Option<String>) -> bool {
        std::mem::replace(&mut *self.backpressure.lock(), why).is_some()
    }

    /// Whether Redis refuses writes for now.
    pub(crate) fn has_backpressure(&self) -> bool {
        self.backpressure.lock().is_some()
    }

    /// Records a commit-marker loss (shown by `health()`) and counts it.
    pub(crate) fn note_marker_lost(&self, detail: String) {
        self.add(Count::MarkerLosses, 1);
        *self.marker_lost.lock() = Some(detail);
    }

    /// When the last error was met, if any.
    pub(crate) fn last_error_at(&self) -> Option<std::time::SystemTime> {
        self.last_error.lock().as_ref().map(|l| l.at)
    }

    /// Asks the flusher to stop by `deadline`, however full the channel is.
    /// A lock: read between batches, never on a hot path.
    pub(crate) fn request_stop(&self, deadline: std::time::Instant) {
        *self.stop_at.lock() = Some(deadline);
    }

    /// The deadline set by [`Shared::request_stop`], if any.
    pub(crate) fn stop_requested(&self) -> Option<std::time::Instant> {
        *self.stop_at.lock()
    }

    /// What a writer thread reports as it ends. Accepted writes include
    /// those still in the channel, up to `received` (the last sequence
    /// number it took in).
    pub(crate) fn close_report(&self, received: u64) -> CloseReport {
        let acked = self.acked();
        CloseReport { acked_seq: acked, unpersisted: received.max(self.accepted()).saturating_sub(acked) }
    }

    /// Records that another writer took over (`writer_key`, and what was
    /// found). SeqCst, after the detail is set under its lock: whoever sees
    /// the flag through [`Shared::fence_error`] finds the detail.
    pub(crate) fn set_fenced(&self, writer_key: String, detail: String) {
        *self.fence.lock() = Some((writer_key, detail));
        self.fenced.store(true, SeqCst);
    }

    /// Whether another writer took over (one load, for the hot path).
    /// Relaxed: a hint that decides only which error a refused write gets;
    /// the detail is read through [`Shared::fence_error`].
    #[inline]
    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced.load(Relaxed)
    }

    /// `Error::Fenced` once this writer has been fenced. SeqCst: pairs with
    /// [`Shared::set_fenced`].
    pub(crate) fn fence_error(&self) -> Option<Error> {
        if !self.fenced.load(SeqCst) {
            return None;
        }
        let (writer_key, detail) = self.fence.lock().clone()?;
        Some(Error::Fenced { writer_key, detail })
    }

    /// The error of a request the writer thread left unanswered as it
    /// stopped: `Error::Fenced` once fenced, else `Error::Closed`.
    pub(crate) fn stopped_error(&self) -> Error {
        self.fence_error().unwrap_or(Error::Closed)
    }

    /// Counts `writes` writes the flusher could not persist (more than one
    /// for a refused command that carried several) and records them for
    /// `take_dropped` and `wait`.
    pub(crate) fn record_drop(&self, seq: u64, writes: u64, key: String, class: ErrorKind, detail: String) {
        self.add(Count::Dropped, writes);
        self.dropped_by[class.index()].fetch_add(writes, Relaxed);
        self.count_error(class, format!("{writes} write(s) from seq {seq} to {key} dropped: {detail}"));
        let mut log = self.drop_log.lock();
        log.untaken += writes;
        if log.writes.len() < DROP_LOG_CAPACITY {
            log.writes.push(DroppedWrite { seq: Seq::new(seq), writes, key, class, detail });
        } else {
            self.add(Count::DropsUnlisted, writes);
        }
        let first = self.first_untaken_drop.load(SeqCst);
        if first == 0 || seq < first {
            self.first_untaken_drop.store(seq, SeqCst);
        }
    }

    /// Hands over the dropped writes recorded so far, oldest first: the
    /// first [`DROP_LOG_CAPACITY`] since the last call; the others are
    /// counted in `dropped` and `drops_unlisted` only.
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

    pub(crate) fn count_error(&self, class: ErrorKind, text: String) {
        self.errors[class.index()].fetch_add(1, Relaxed);
        *self.last_error.lock() = Some(LastError { class, text, at: std::time::SystemTime::now() });
    }

    pub(crate) fn record_batch_latency(&self, d: Duration) {
        let us = d.as_micros().max(1) as u64;
        let bucket = (63 - us.leading_zeros() as usize).min(LAT_BUCKETS - 1);
        self.lat_us[bucket].fetch_add(1, Relaxed);
        self.lat_sum_us.fetch_add(us, Relaxed);
    }

    /// Read by the metrics exposition (`src/metrics/exposition.rs`), which must not
    /// allocate: every error class with its count (zeros included), in
    /// [`ErrorKind::ALL`] order.
    pub(crate) fn error_counts(&self) -> impl Iterator<Item = (ErrorKind, u64)> + '_ {
        ErrorKind::ALL.iter().zip(self.errors.iter()).map(|(c, n)| (*c, n.load(Relaxed)))
    }

    /// Dropped writes by the class of the reason, zeros included.
    pub(crate) fn dropped_counts(&self) -> impl Iterator<Item = (ErrorKind, u64)> + '_ {
        ErrorKind::ALL.iter().zip(self.dropped_by.iter()).map(|(c, n)| (*c, n.load(Relaxed)))
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
        let (counts, _) = self.latency_histogram();
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
        let accepted = self.accepted();
        let acked = self.acked();
        Stats {
            accepted,
            acked,
            backlog: accepted.saturating_sub(acked),
            rejected: self.count(Count::Rejected),
            batches: self.count(Count::Batches),
            commands: self.count(Count::Written),
            coalesced: self.count(Count::Coalesced),
            reconnects: self.count(Count::Reconnects),
            replays: self.count(Count::Replays),
            purged: self.count(Count::Purged),
            marker_losses: self.count(Count::MarkerLosses),
            dropped: self.count(Count::Dropped),
            errors: self.error_counts().filter(|(_, n)| *n > 0).map(|(c, n)| (c.name(), n)).collect(),
            batch_latency_p50_us: self.percentile_us(0.50),
            batch_latency_p99_us: self.percentile_us(0.99),
        }
    }

    pub(crate) fn health(&self) -> Health {
        let accepted = self.accepted();
        let acked = self.acked();
        let last = self.last_error.lock().clone();
        Health {
            connected: self.is_connected(),
            flusher_running: self.is_alive(),
            backlog: accepted.saturating_sub(acked),
            reconnects: self.count(Count::Reconnects),
            last_error: last.as_ref().map(|e| format!("{}: {}", e.class.name(), e.text)),
            last_error_class: last.as_ref().map(|e| e.class),
            last_error_age: last.and_then(|e| e.at.elapsed().ok()),
            backpressure: self.backpressure.lock().clone(),
            marker_lost: self.marker_lost.lock().clone(),
            fenced: self.fence.lock().as_ref().map(|(_, detail)| detail.clone()),
        }
    }
}
