//! Retention of closed state: the caller's side of a purge.
//! The work is done by the flusher, in bounded steps between batches
//! (`flusher/purge.rs` says why there); the calling thread sends the
//! request through the channel and waits for the result.

use std::time::Duration;

use crate::channel::msg::{Msg, PurgeRequest, Purged};
use crate::entity::Entity;
use crate::error::Result;
use crate::model::UnixNanos;
use crate::Cache;

impl Cache {
    /// Deletes the closed entities of `T` ([`Entity::is_closed`]) whose last
    /// update ([`Entity::last_updated`], or the time the flusher wrote them)
    /// is more than `older_than` ago, with their event logs and their
    /// index entries, and returns what it removed.
    ///
    /// Bounded and off the hot path: the flusher does it in steps of
    /// [`crate::Config::purge_batch`] entities, each one transaction taken
    /// between two batches of writes, so writes keep flowing while a large
    /// purge runs; the calling thread only waits. It never deletes an open
    /// entity (only ids in `index:{collection}:closed`, which each batch
    /// keeps in step with its writes), an entity with a write still
    /// waiting in the flusher, or another trader's, instance's or
    /// writer's keys. Each step has its own place in the sequence of
    /// writes: it waits for the writes accepted before it (never for later
    /// ones, so a purge finishes under any write load), and an entity with
    /// one of them still waiting is kept whole (an event appended to a
    /// closed entity is never left behind in a log of its own: applied by
    /// then, it goes with the entity). A write accepted after the purge
    /// reached an entity applies after it, as after [`Cache::delete`].
    ///
    /// ```no_run
    /// # use tradecache::{Cache, Config};
    /// # use tradecache::model::Order;
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = Cache::open(Config::from_env()?.trader_id("T1"))?;
    /// let day = Duration::from_secs(86_400);
    /// let purged = cache.purge_closed::<Order>(7 * day, Duration::from_secs(60))?;
    /// println!("removed {} closed orders ({} keys)", purged.removed.len(), purged.keys);
    /// for id in &purged.removed {
    ///     assert_eq!(cache.get::<Order>(id.as_str())?, None);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`crate::Error::WaitTimeout`] when it has not finished within
    /// `timeout` (it goes on in the background; what it removes is counted
    /// in [`crate::Stats::purged`]); [`crate::Error::Fenced`] or
    /// [`crate::Error::Closed`] when the flusher stopped first.
    pub fn purge_closed<T: Entity>(&self, older_than: Duration, timeout: Duration) -> Result<Purged> {
        let now = crate::flusher::now_ms();
        let cutoff_ms = now.saturating_sub(u64::try_from(older_than.as_millis()).unwrap_or(u64::MAX));
        self.purge_before(T::COLLECTION, cutoff_ms, timeout)
    }

    /// As [`Cache::purge_closed`], with an explicit cutoff: deletes the
    /// closed entities of `T` last updated before `cutoff` (nanoseconds
    /// since the epoch, compared at millisecond precision).
    ///
    /// # Errors
    ///
    /// As [`Cache::purge_closed`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// use tradecache::model::{Order, UnixNanos};
    /// let purged = cache.purge_closed_before::<Order>(UnixNanos(1_700_000_000_000_000_000), Duration::from_secs(60))?;
    /// for id in &purged.removed {
    ///     assert_eq!(cache.get::<Order>(id.as_str())?, None);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn purge_closed_before<T: Entity>(&self, cutoff: UnixNanos, timeout: Duration) -> Result<Purged> {
        self.purge_before(T::COLLECTION, cutoff.0 / 1_000_000, timeout)
    }

    pub(crate) fn purge_before(
        &self,
        collection: &'static str,
        cutoff_ms: u64,
        timeout: Duration,
    ) -> Result<Purged> {
        let deadline = crate::net::deadline_after(timeout);
        let (reply, done) = crossbeam_channel::bounded(1);
        let req = PurgeRequest { collections: vec![collection], cutoff_ms, reply: Some(reply) };
        self.send_request(Msg::Purge(req), timeout)?;
        match done.recv_deadline(deadline) {
            Ok(r) => r,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(crate::Error::WaitTimeout(timeout)),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(self.stopped()),
        }
    }
}
