//! The channel between the callers and a writer thread (the `Cache`'s
//! flusher or the kv writer), and what the two sides share: what travels
//! through it (`msg.rs`), the state both sides read and write (`Shared`,
//! `shared.rs`), the channel side of the threads' run loops
//! (`intake.rs`), and the callers' side of one writer thread (`Handle`,
//! here). Nothing here does I/O or knows what is written.

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

use crate::error::{CloseReport, Error, Result};
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

    /// [`Shared::wait`] for the last write accepted so far.
    pub(crate) fn flush(&self, timeout: Duration) -> Result<()> {
        self.shared.wait(self.shared.accepted(), timeout)
    }

    /// Ends the writer's life once: runs `before` (what must stop first),
    /// asks the thread to stop by `timeout` from then (a flag that reaches
    /// it however full the channel is), calls `send` with the deadline (the
    /// shutdown message, behind every accepted write, wakes it when idle),
    /// and waits for its report and joins it. It stops at `deadline` at
    /// the latest (its longest blocking call is bounded by the
    /// connect/response timeouts, hence a little slack); without a report
    /// by then, what is unacknowledged is counted from the sequence
    /// numbers. A second call returns at once.
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
        let slack = Duration::from_millis(250);
        match self.done.recv_deadline(deadline.checked_add(slack).unwrap_or(deadline)) {
            Ok(report) => {
                if let Some(t) = self.thread.lock().take() {
                    let _ = t.join();
                }
                report
            }
            Err(_) => self.shared.close_report(0),
        }
    }

    /// What `close` returns for `report`: `Error::Fenced` when another
    /// writer took over (its text ends with how many accepted writes were
    /// not persisted, if any), `Error::Unpersisted` when accepted writes were
    /// not acknowledged, else the report.
    pub(crate) fn close_result(&self, report: CloseReport) -> Result<CloseReport> {
        if let Some(e) = self.shared.fence_error() {
            // Fenced wins, but the count is still the caller's to know.
            Err(match e {
                Error::Fenced { writer_key, detail } if report.unpersisted > 0 => Error::Fenced {
                    writer_key,
                    detail: format!(
                        "{detail}; {} accepted write(s) not persisted (acked up to seq {})",
                        report.unpersisted, report.acked_seq
                    ),
                },
                e => e,
            })
        } else if report.unpersisted > 0 {
            Err(Error::Unpersisted(report))
        } else {
            Ok(report)
        }
    }
}
