//! Closing: `close(timeout)` and `Drop` send `Shutdown` through the channel
//! (so it arrives after every accepted write), let the flusher write what
//! it can until the deadline, and join it (the end of life is
//! `crate::channel::Handle::shutdown`, shared with `Kv`).

use std::time::Duration;

use crate::caller::cache::Cache;
use crate::channel::msg::Msg;
use crate::error::{CloseReport, Result};

impl Cache {
    /// Sends shutdown through the channel (after every accepted write),
    /// lets the flusher write what it can until `timeout`, and joins it.
    /// Returns within `timeout` plus a small slack even when Redis is down
    /// or stalled, or the channel is full; the flusher stops by then too
    /// (it finishes at most the one reply it is reading, bounded by
    /// `response_timeout`), so nothing is written after the cache is gone.
    /// `Drop` does the same with `close_timeout` and logs the count.
    ///
    /// Writes the flusher dropped (too large, not encodable, refused by
    /// Redis) are not counted here: collect them with
    /// [`Cache::take_dropped`] before closing (`Drop` logs any left).
    ///
    /// # Errors
    ///
    /// [`Error::Fenced`](crate::Error::Fenced) when another writer took
    /// over (whatever this cache had not written by then is not written;
    /// its text ends with how many accepted writes that was);
    /// [`Error::Unpersisted`](crate::Error::Unpersisted) with the count of
    /// accepted writes that were not acknowledged (an upper bound: a batch
    /// whose reply was under way at the deadline may still have been
    /// applied).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// use tradecache::model::Position;
    /// cache.put(&Position::example("P-1"))?;
    /// let report = cache.close(Duration::from_secs(5))?;
    /// assert_eq!(report.unpersisted, 0);
    /// # Ok(()) }
    /// ```
    pub fn close(self, timeout: Duration) -> Result<CloseReport> {
        let report = self.shutdown(timeout);
        self.writer.close_result(report)
    }

    fn shutdown(&self, timeout: Duration) -> CloseReport {
        // The stop flag reaches the flusher even when the channel is full
        // (Redis down, the flusher no longer draining); the message, sent
        // after every write, wakes it when it is idle.
        self.writer.shutdown(
            timeout,
            || {},
            |deadline| {
                let _ = self.producer.lock().try_send(Msg::Shutdown { deadline });
            },
        )
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        let report = self.shutdown(self.cfg.close_timeout);
        if report.unpersisted > 0 {
            log::error!(
                "tradecache: dropped with {} accepted write(s) not persisted (acked up to seq {})",
                report.unpersisted,
                report.acked_seq
            );
        }
        // Dropped writes nobody collected with `take_dropped`: say so once.
        for d in self.writer.shared.take_drops() {
            log::error!("tradecache: never persisted, and not collected with take_dropped: {d}");
        }
    }
}
