//! The channel between the callers and a writer thread, and what the two
//! sides share: the `Cache`'s flusher (`crate::flusher`) and the kv writer
//! (`crate::kv`) both use it.
//!
//! - `msg.rs`: what travels through the channel to the flusher thread
//!   (`Msg`, and the `Record`/`EventRecord` write payloads);
//! - `shared.rs`: `Shared`, the state both sides of the thread boundary
//!   read and write (sequence numbers accepted and acknowledged, counters,
//!   error counts by class, the batch latency histogram, the stop request,
//!   the fence, the drop log, and the callers asleep in `wait`/`flush`
//!   until the acknowledged sequence number moves);
//! - `intake.rs`: the channel side of the threads' run loops: taking
//!   queued messages, waiting for the first one (poll, then park), and
//!   the guard that marks a thread dead however it ends;
//! - `Handle` (here): the callers' side of one writer thread, written
//!   once for `Cache` and `Kv`: `last_seq`, `acked_seq`, `wait`, `flush`,
//!   `take_dropped`, and the end of life (`shutdown`, `close`: ask the
//!   thread to stop by a deadline, let it report, join it).
//!
//! Nothing here does I/O or knows what is written: the writer threads own
//! their connections; the public calls stay on `Cache` and `Kv`.

pub(crate) mod intake;
pub(crate) mod msg;
pub(crate) mod shared;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use parking_lot::Mutex;

pub(crate) use shared::{Count, Shared, LAT_BUCKETS};

use crate::error::{CloseReport, DroppedWrite, Error, Result};
use crate::seq::Seq;

/// The callers' side of one writer thread: what they share with it, how
/// it reports its end, its thread, and whether it was closed.
pub(crate) struct Handle {
    pub(crate) shared: Arc<Shared>,
    done: Receiver<CloseReport>,
    thread: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
}

impl Handle {
    /// The handle on a started thread that sends its `CloseReport` on
    /// `done` when it ends.
    pub(crate) fn new(shared: Arc<Shared>, done: Receiver<CloseReport>, thread: JoinHandle<()>) -> Handle {
        Handle { shared, done, thread: Mutex::new(Some(thread)), closed: AtomicBool::new(false) }
    }

    /// Whether `close` (or `Drop`) has begun: no write is accepted after.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// The last sequence number handed out (0 before the first write).
    pub(crate) fn last_seq(&self) -> Seq {
        Seq::new(self.shared.accepted())
    }

    /// The last sequence number the writer thread has acknowledged.
    pub(crate) fn acked_seq(&self) -> Seq {
        Seq::new(self.shared.acked())
    }

    /// Blocks until write `seq` is acknowledged, the writer is fenced or
    /// stopped, or `timeout` passes (the errors `Cache::wait` and
    /// `Kv::wait` document).
    pub(crate) fn wait(&self, seq: Seq, timeout: Duration) -> Result<()> {
        self.shared.wait(seq.get(), timeout)
    }

    /// `Handle::wait` for the last write accepted so far.
    pub(crate) fn flush(&self, timeout: Duration) -> Result<()> {
        self.wait(self.last_seq(), timeout)
    }

    /// Hands over the dropped writes recorded since the last call, oldest
    /// first, and clears the record.
    pub(crate) fn take_dropped(&self) -> Vec<DroppedWrite> {
        self.shared.take_drops()
    }

    /// Ends the writer's life once: runs `before` (for what must stop
    /// first), asks the thread to stop by `timeout` from then (a flag that
    /// reaches it however full the channel is), calls `send` with the
    /// deadline (to send the shutdown message behind every accepted write,
    /// which wakes it when idle), and waits for its report. A second call
    /// returns at once.
    pub(crate) fn shutdown(
        &self,
        timeout: Duration,
        before: impl FnOnce(),
        send: impl FnOnce(Instant),
    ) -> CloseReport {
        if self.closed.swap(true, SeqCst) {
            return CloseReport { acked_seq: self.shared.acked(), unpersisted: 0 };
        }
        before();
        let deadline = crate::net::deadline_after(timeout);
        self.shared.request_stop(deadline);
        send(deadline);
        self.shared.await_writer(&self.done, &self.thread, deadline)
    }

    /// What `close` returns for `report`: `Error::Fenced` when another
    /// writer took over, `Error::Unpersisted` when accepted writes were
    /// not acknowledged, else the report.
    pub(crate) fn close_result(&self, report: CloseReport) -> Result<CloseReport> {
        if let Some(e) = self.shared.fence_error() {
            Err(e)
        } else if report.unpersisted > 0 {
            Err(Error::Unpersisted(report))
        } else {
            Ok(report)
        }
    }
}
