//! The general caching layer: a namespaced key-value cache with TTLs per
//! kind of data (market data, portfolio calculations, risk metrics,
//! sessions), synchronous, with nothing on the calling thread that a
//! trading loop cannot afford.
//!
//! ```no_run
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use tradecache::kv::{Kv, KvConfig, Ttl};
//! use tradecache::model::{Price, UnixNanos};
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct Quote { bid: Price, ask: Price, ts: UnixNanos }
//!
//! # fn fetch_price(_: &str) -> Price { Price::new(1, 0) }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kv = Kv::open(KvConfig::from_env()?)?;
//! let q = Quote { bid: Price::new(18_950, 2), ask: Price::new(18_952, 2), ts: UnixNanos(1) };
//! kv.set("market_data", "AAPL:quote", &q, Ttl::Policy)?;       // queued: no I/O here
//! let back: Option<Quote> = kv.get("market_data", "AAPL:quote")?; // read-your-writes
//! assert!(back.is_some());
//! let px = kv.get_or_compute("market_data", "AAPL:px", Ttl::Policy, || fetch_price("AAPL"))?;
//! kv.close(Duration::from_secs(5))?;
//! # Ok(()) }
//! ```
//!
//! - **Keys** are `{key_prefix}:{namespace}:{key}`; [`Ttl::Policy`] applies
//!   the namespace's TTL (defaults: 3600 s; `market_data` 60 s, `portfolio`
//!   300 s, `risk` 180 s, `session` 1800 s).
//! - **Writes** (`set`, `set_many`, `delete`, `touch`) check the key and
//!   queue the value behind an `Arc` (no encoding, no I/O; a `get` reads it
//!   back at once); the writer thread encodes it and sends `SET … PX` (the
//!   TTL with the value, atomically) in batches. A value that cannot be
//!   encoded or is too large is dropped there and reported (`take_dropped`,
//!   `flush`). `flush`/`wait` block until written, as for [`crate::Cache`].
//!   A cache is not state: in an outage writes are coalesced per key and,
//!   past `max_pending_keys`, dropped and counted.
//! - **Reads** go to the queued writes first (read-your-writes), then the
//!   near cache if on, then Redis over a small pool of blocking
//!   connections; `get_many` sends one `MGET` per `max_batch_size` keys,
//!   pipelined.
//! - **Compute on miss**: [`Kv::get_or_compute`] never returns a Redis
//!   error; with Redis down or the breaker open it computes and caches
//!   nothing; concurrent misses of a key compute once.
//! - **Circuit breaker**: after `breaker_failures` consecutive failures,
//!   calls skip Redis for `breaker_open` (a `get` is a miss at once).

mod breaker;
mod config;
mod prometheus;
pub use prometheus::metric_families;
mod counters;
mod flight;
mod frame;
mod get;
mod io;
mod keyspace;
mod near;
mod op;
mod overlay;
mod pool;
mod route;
mod set;
mod writer;

use std::cell::RefCell;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::Mutex;

pub use breaker::BreakerState;
pub use config::KvConfig;
pub use counters::{KvHealth, KvStats, Latency, Op};
pub use frame::{decode, encode};

use crate::channel::Count;
use crate::channel::Handle;
use crate::error::{CloseReport, DroppedWrite, Error, Result};
use crate::net::{self, Failure};
use crate::seq::Seq;
use breaker::Breaker;
use counters::Metrics;
use flight::Flights;
use keyspace::KeySpace;
use near::Near;
use op::KvMsg;
use overlay::Overlay;
use pool::Pool;
use route::{Links, Node, Topology};
use writer::Writer;

/// How long a key lives.
///
/// ```
/// use std::time::Duration;
/// use tradecache::kv::Ttl;
///
/// let ttls = [Ttl::Policy, Ttl::After(Duration::from_secs(5)), Ttl::Never];
/// assert_eq!(ttls[1], Ttl::After(Duration::from_secs(5)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// The namespace's policy ([`KvConfig::ttl`], else the default TTL).
    Policy,
    /// This long from the call (at least 1 ms).
    After(Duration),
    /// No expiry.
    Never,
}

/// A namespaced, TTL-aware cache in Redis. See the [module docs](self).
///
/// `Kv` is `Send + Sync`: share it between threads behind an `Arc`.
pub struct Kv {
    cfg: KvConfig,
    keys: KeySpace,
    /// The channel to the writer. Its lock makes sequence order, overlay
    /// order and channel order one; the writer never takes it.
    producer: Mutex<Sender<KvMsg>>,
    /// The writer thread: what it shares with callers, its end of life.
    writer: Handle,
    overlay: Arc<Overlay>,
    near: Option<Arc<Near>>,
    pool: Pool,
    breaker: Breaker,
    metrics: Metrics,
    flights: Flights,
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kv")
            .field("redis", &self.cfg.redis.redacted_url())
            .field("key_prefix", &self.cfg.key_prefix)
            .field("health", &self.health())
            .finish()
    }
}

thread_local! {
    /// Where the calling thread builds keys and encodes values: reused, so
    /// a call allocates only the message it sends.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// This thread's id, hashed: where it starts looking for a free pool
    /// connection and which histogram stripe it counts in, so threads spread.
    static THREAD_HASH: usize = RandomState::new().hash_one(std::thread::current().id()) as usize;
}

/// Runs `f` with the thread's scratch buffer (cleared), or a fresh one if
/// it is in use (a `Serialize` impl that calls back into the cache).
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut b) => {
            b.clear();
            let r = f(&mut b);
            if b.capacity() > 1 << 20 {
                *b = Vec::new();
            }
            r
        }
        Err(_) => f(&mut Vec::new()),
    })
}

impl Kv {
    /// Validates `config`, connects (as [`crate::Cache::open`] does:
    /// `connect_attempts` tries with backoff), reads the slot table in a
    /// cluster, and starts the writer thread `tradecache-kv-writer` (and,
    /// with the near cache and `near_tracking`, the invalidation listener
    /// `tradecache-kv-tracking`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] listing every configuration problem;
    /// [`Error::Connect`] naming `host:port` and whether the connection was
    /// refused, timed out or the credentials were rejected.
    pub fn open(config: KvConfig) -> Result<Kv> {
        config.validate()?;
        config.redis.check_files()?;
        let topo = Arc::new(Topology::new(config.redis.clone()));
        let first = net::connect_with_retries(&config.redis, "")?;
        let mut links = Links::default();
        let pool = Pool::new(topo.clone(), config.max_connections);
        if topo.clustered() {
            drop(first);
            topo.refresh().map_err(Failure::into_error)?;
        } else {
            links.insert(Node::Main, first);
            if let Ok(c) = topo.connect(&Node::Main) {
                pool.warm(Node::Main, c);
            }
        }
        let overlay = Arc::new(Overlay::new());
        let spawn_error = |e| Error::no_thread("a kv thread", config.redis.redacted_url(), &e);
        let (tx, writer) =
            Writer::spawn(config.clone(), topo.clone(), overlay.clone(), links).map_err(spawn_error)?;
        let keys = KeySpace::new(&config.key_prefix);
        let near =
            (config.near_capacity > 0).then(|| Arc::new(Near::new(config.near_capacity, config.near_ttl)));
        if let Some(near) = near.as_ref().filter(|_| config.near_tracking && !topo.clustered()) {
            near::spawn_tracking(topo.clone(), near, keys.head.to_vec()).map_err(spawn_error)?;
        }
        Ok(Kv {
            keys,
            producer: Mutex::new(tx),
            writer,
            overlay,
            near,
            pool,
            breaker: Breaker::new(config.breaker_failures, config.breaker_open),
            metrics: Metrics::new(config.enable_metrics),
            flights: Flights::default(),
            cfg: config,
        })
    }

    /// The configuration this cache was opened with.
    pub fn config(&self) -> &KvConfig {
        &self.cfg
    }

    /// The last sequence number handed out (0 before the first write).
    pub fn last_seq(&self) -> Seq {
        self.writer.last_seq()
    }

    /// Blocks until write `seq` and every write before it is settled
    /// (written, or replaced by a newer write to its key), or `timeout`
    /// passes.
    ///
    /// # Errors
    ///
    /// [`Error::WaitTimeout`]; [`Error::Closed`] when the writer has
    /// stopped; [`Error::Dropped`] when a write at or before `seq` was
    /// dropped and not yet collected with [`Kv::take_dropped`].
    pub fn wait(&self, seq: Seq, timeout: Duration) -> Result<()> {
        self.writer.shared.wait(seq.get(), timeout)
    }

    /// Blocks until every write queued so far is settled.
    ///
    /// # Errors
    ///
    /// As [`Kv::wait`].
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.writer.flush(timeout)
    }

    /// Hands over the writes dropped since the last call (past
    /// `max_pending_keys` in an outage, not encodable, too large, or
    /// refused by Redis), oldest first, and clears the record, so
    /// `wait`/`flush` stop reporting them. At most the first 1,024 drops
    /// between two calls are listed; every drop is counted in
    /// [`KvStats::dropped`], those left out in [`KvStats::dropped_unlisted`].
    pub fn take_dropped(&self) -> Vec<DroppedWrite> {
        self.writer.shared.take_drops()
    }

    /// Counters, breaker state and per-operation latencies.
    pub fn stats(&self) -> KvStats {
        let c = &self.metrics;
        let (hits, misses) = (c.hits.load(Relaxed), c.misses.load(Relaxed));
        let w = self.writer.shared.stats();
        KvStats {
            hits,
            misses,
            hit_rate: if hits + misses == 0 { 0.0 } else { hits as f64 / (hits + misses) as f64 },
            near_hits: self.near.as_ref().map_or(0, |n| n.hits.load(Relaxed)),
            overlay_hits: c.overlay_hits.load(Relaxed),
            corrupt: c.corrupt.load(Relaxed),
            computed: c.computed.load(Relaxed),
            flight_waits: c.flight_waits.load(Relaxed),
            accepted: w.accepted,
            acked: w.acked,
            written: w.commands,
            coalesced: w.coalesced,
            dropped: w.dropped,
            dropped_unlisted: self.writer.shared.count(Count::DropsUnlisted),
            rejected: w.rejected,
            reconnects: w.reconnects,
            read_errors: self.metrics.read_errors(),
            write_errors: w.errors,
            breaker: self.breaker.state(),
            breaker_opened: self.breaker.opened.load(Relaxed),
            short_circuited: self.breaker.short_circuited.load(Relaxed),
            slow_ops: c.slow_ops.load(Relaxed),
            near_entries: self.near.as_ref().map_or(0, |n| n.len()),
            near_invalidations: self.near.as_ref().map_or(0, |n| n.invalidations.load(Relaxed)),
            latency: self.metrics.latency(),
            write_batch_p50_us: w.batch_latency_p50_us,
            write_batch_p99_us: w.batch_latency_p99_us,
        }
    }

    /// Whether the writer is connected, the breaker's state, the backlog.
    pub fn health(&self) -> KvHealth {
        let h = self.writer.shared.health();
        KvHealth {
            writer_connected: h.connected,
            writer_running: h.flusher_running,
            backlog: h.backlog,
            breaker: self.breaker.state(),
            near_tracking: self.near.as_ref().and_then(|n| n.tracking()),
            last_error: h.last_error,
            backpressure: h.backpressure,
        }
    }

    /// Writes what is queued (until `timeout`), stops the writer and the
    /// invalidation listener, and joins them. Bounded even with Redis
    /// down. Dropping a `Kv` does the same within `close_timeout` and logs
    /// the count not written, once.
    ///
    /// # Errors
    ///
    /// [`Error::Unpersisted`] with the count of writes not written.
    pub fn close(self, timeout: Duration) -> Result<CloseReport> {
        let report = self.shutdown(timeout);
        // Never `Fenced`: a kv writer holds no commit marker.
        self.writer.close_result(report)
    }

    fn shutdown(&self, timeout: Duration) -> CloseReport {
        let stop_tracking = || self.near.iter().for_each(|n| n.stop_tracking());
        self.writer.shutdown(timeout, stop_tracking, |deadline| {
            let _ = self.producer.lock().try_send(KvMsg::Shutdown { deadline });
        })
    }

    #[inline]
    fn clock(&self) -> Option<Instant> {
        (self.cfg.enable_metrics || self.cfg.log_slow_ops).then(Instant::now)
    }

    #[inline]
    fn timed(&self, op: Op, t0: Option<Instant>, namespace: &str, key: &str) {
        let Some(t0) = t0 else { return };
        let d = t0.elapsed();
        self.metrics.time(op, d);
        if self.cfg.log_slow_ops && d > self.cfg.slow_op_threshold {
            self.metrics.slow_ops.fetch_add(1, Relaxed);
            log::warn!("tradecache::kv: slow {}: {namespace}:{key} took {d:?}", op.name());
        }
    }
}

impl Drop for Kv {
    fn drop(&mut self) {
        let report = self.shutdown(self.cfg.redis.close_timeout);
        if report.unpersisted > 0 {
            log::warn!("tradecache::kv: dropped with {} cache write(s) not written", report.unpersisted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_are_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Kv>();
        check::<KvConfig>();
        check::<KvStats>();
        check::<KvHealth>();
    }
}
