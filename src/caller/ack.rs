//! Acknowledgements and what the callers can observe: sequence numbers,
//! `wait`, `flush`, dropped writes, `health`, `stats`. Everything here reads
//! the state shared with the flusher (`crate::channel`, where the logic of
//! `wait`, `flush` and `take_dropped` is, shared with `Kv`); nothing does I/O.

use std::time::Duration;

use crate::caller::cache::Cache;
use crate::config::Config;
use crate::error::{DroppedWrite, Error, Result};
use crate::metrics::stats::{Health, Stats};
use crate::seq::Seq;
use crate::store::keys::Keys;

impl Cache {
    /// The last sequence number handed out (0 before the first write).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// use tradecache::model::Position;
    /// let before = cache.last_seq();
    /// let seq = cache.put(&Position::example("P-1"))?;
    /// assert_eq!(cache.last_seq(), seq);
    /// assert!(seq > before);
    /// # Ok(()) }
    /// ```
    pub fn last_seq(&self) -> Seq {
        self.writer.last_seq()
    }

    /// The last sequence number Redis has acknowledged.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// use tradecache::model::Position;
    /// let seq = cache.put(&Position::example("P-1"))?;
    /// cache.flush(Duration::from_secs(1))?;
    /// assert!(cache.acked_seq() >= seq);
    /// # Ok(()) }
    /// ```
    pub fn acked_seq(&self) -> Seq {
        Seq::new(self.writer.shared.acked())
    }

    /// Blocks until write `seq` (and so every write before it) is
    /// acknowledged by Redis, or `timeout` passes. `Ok` means every write up
    /// to `seq` is in Redis, except dropped writes already collected with
    /// [`Cache::take_dropped`].
    ///
    /// # Errors
    ///
    /// [`Error::WaitTimeout`] when the timeout passes first;
    /// [`Error::Fenced`] when another writer took over before `seq` was
    /// acknowledged; [`Error::Closed`] when the flusher has stopped;
    /// [`Error::Dropped`] when a write at or before `seq` was dropped and
    /// not yet collected with [`Cache::take_dropped`] (the rest is
    /// acknowledged; the error stays until the drops are collected).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// use tradecache::model::Position;
    /// let seq = cache.put(&Position::example("P-1"))?;
    /// match cache.wait(seq, Duration::from_millis(50)) {
    ///     Ok(()) => assert!(cache.acked_seq() >= seq),
    ///     // Redis slow or down: the write is still queued, not lost.
    ///     Err(e) => assert_eq!(e.kind(), tradecache::ErrorKind::Timeout),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn wait(&self, seq: Seq, timeout: Duration) -> Result<()> {
        self.writer.shared.wait(seq.get(), timeout)
    }

    /// Blocks until every write accepted so far is acknowledged.
    ///
    /// # Errors
    ///
    /// As [`Cache::wait`]: in particular [`Error::Dropped`] while any
    /// dropped write has not been collected with [`Cache::take_dropped`].
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
    /// cache.put(&Position::example("P-2"))?;
    /// cache.flush(Duration::from_secs(1))?;
    /// assert_eq!(cache.stats().backlog, 0);
    /// # Ok(()) }
    /// ```
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.writer.flush(timeout)
    }

    /// Hands over the accepted writes the flusher has dropped since the
    /// last call, oldest first, and clears the record (so [`Cache::wait`]
    /// and [`Cache::flush`] stop reporting them).
    ///
    /// A write is dropped, never retried, for a reason [`DroppedWrite`]
    /// names. Each is also counted in [`Stats::dropped`] and shown in
    /// [`Health::last_error`]. At most 1024 are kept between two calls;
    /// `stats().dropped` counts all of them.
    ///
    /// ```no_run
    /// # use tradecache::{Cache, Config, Error};
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?)?;
    /// match cache.flush(Duration::from_secs(1)) {
    ///     Err(Error::Dropped { .. }) => {
    ///         for d in cache.take_dropped() {
    ///             eprintln!("not persisted: {d}"); // seq, key, class, detail
    ///         }
    ///     }
    ///     other => other?,
    /// }
    /// # Ok(()) }
    /// ```
    pub fn take_dropped(&self) -> Vec<DroppedWrite> {
        self.writer.shared.take_drops()
    }

    /// Connection state, backlog, last error and reconnect count.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// let health = cache.health();
    /// if !health.is_healthy() {
    ///     eprintln!("tradecache: {:?} (backlog {})", health.last_error, health.backlog);
    /// }
    /// assert!(health.flusher_running);
    /// # Ok(()) }
    /// ```
    pub fn health(&self) -> Health {
        self.writer.shared.health()
    }

    /// Counters since `open`.
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
    /// cache.flush(Duration::from_secs(1))?;
    /// let stats = cache.stats();
    /// assert!(stats.accepted >= 1 && stats.acked == stats.accepted);
    /// assert_eq!(stats.error_count("oom"), 0);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> Stats {
        self.writer.shared.stats()
    }

    /// The configuration this cache was opened with.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// assert_eq!(cache.config().trader_key(), "trader-DOC-001");
    /// # Ok(()) }
    /// ```
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Read-your-writes for the point reads: waits until every write
    /// accepted before this call is acknowledged (Redis has it, or the
    /// flusher dropped it and reported it), for at most one reply and one
    /// reconnect. Free when nothing is pending; nothing is added to the
    /// write path.
    ///
    /// # Errors
    ///
    /// [`Error::WaitTimeout`] after that; [`Error::Closed`] when the
    /// flusher has stopped.
    pub(crate) fn settle_reads(&self) -> Result<()> {
        let accepted = self.writer.shared.accepted();
        if self.writer.shared.acked() >= accepted {
            return Ok(());
        }
        let timeout = self.cfg.response_timeout + self.cfg.reconnect_backoff_max;
        match self.wait(Seq::new(accepted), timeout) {
            // Acknowledged up to `accepted`, some of it dropped: the reader
            // sees what Redis has; the drops are the caller's to collect.
            Ok(()) | Err(Error::Dropped { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
