//! The general caching layer: a namespaced key-value cache with TTLs per
//! kind of data, for market data, portfolio calculations, risk metrics and
//! sessions, in the crate's style (synchronous; nothing on the calling
//! thread that a trading loop cannot afford).
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
//! - **Keys** are `{key_prefix}:{namespace}:{key}`; the namespace's TTL
//!   policy applies with [`Ttl::Policy`] (defaults: 3600 s; `market_data`
//!   60 s, `portfolio` 300 s, `risk` 180 s, `session` 1800 s).
//! - **Writes** (`set`, `set_many`, `delete`, `touch`) encode the value on
//!   the calling thread (so a bad value is an error at the call, and a
//!   `get` can read it back at once) and queue it for the writer thread,
//!   which sends `SET … PX` (the TTL with the value, atomically) in
//!   batches. `flush`/`wait` block until written, as for
//!   [`crate::Cache`]. A cache is not state: in an outage writes are
//!   coalesced per key and, past `max_pending_keys`, dropped and counted
//!   (see `writer.rs` for why kv has its own writer).
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
mod flight;
mod keys;
mod near;
mod op;
mod overlay;
mod read;
mod route;
mod stats;
mod value;
mod writer;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use breaker::BreakerState;
pub use config::KvConfig;
pub use stats::{KvHealth, KvStats, Latency, Op};
pub use value::{decode, encode};

use crate::cache::Seq;
use crate::connection::{self, Failure};
use crate::error::{CloseReport, DroppedWrite, Error, Result};
use crate::ident;
use crate::stats::{ErrorClass, Shared};
use breaker::{Breaker, Permit};
use flight::{Flights, Role};
use keys::KeySpace;
use near::Near;
use op::{DynValue, Item, KvMsg};
use overlay::{Found, Overlay};
use read::{Pool, Reply};
use route::{Links, Node, Topology};
use stats::Metrics;
use writer::{Waiters, Writer, WriterInit};

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

/// The invalidation listener: its stop flag and thread.
struct Tracking {
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Producer {
    tx: Sender<KvMsg>,
    next_seq: u64,
}

/// A namespaced, TTL-aware cache in Redis. See the [module docs](self).
///
/// `Kv` is `Send + Sync`: share it between threads behind an `Arc`.
pub struct Kv {
    cfg: KvConfig,
    keys: KeySpace,
    producer: Mutex<Producer>,
    shared: Arc<Shared>,
    waiters: Arc<Waiters>,
    overlay: Arc<Overlay>,
    near: Option<Arc<Near>>,
    pool: Pool,
    breaker: Breaker,
    metrics: Metrics,
    flights: Flights,
    done: Receiver<CloseReport>,
    writer: Mutex<Option<JoinHandle<()>>>,
    tracking: Option<Tracking>,
    closed: AtomicBool,
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

/// The bytes of a value found by a lookup.
enum Body {
    /// Queued, not encoded yet.
    Queued(op::Value),
    /// As stored (decompressed, without the header).
    Shared(Arc<[u8]>),
}

impl Body {
    fn decode<T: DeserializeOwned>(&self, enc: crate::Encoding) -> std::result::Result<T, String> {
        match self {
            Body::Shared(b) => value::decode_body(b, enc),
            Body::Queued(v) => decode_value(&**v, enc),
        }
    }
}

/// A value as a `get` would read it back: encoded, then decoded as `T`.
fn decode_value<T: DeserializeOwned>(
    v: &dyn DynValue,
    enc: crate::Encoding,
) -> std::result::Result<T, String> {
    with_scratch(|s| {
        v.encode(enc, s).map_err(|e| format!("the queued value cannot be encoded: {e}"))?;
        value::decode_body(s, enc)
    })
}

/// What a lookup found.
enum Found2 {
    Hit(Body, crate::Encoding),
    Miss,
    /// The breaker kept the call away from Redis.
    Skipped,
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
        let first = connection::connect_with_retries(&config.redis, "")?;
        let mut links = Links::default();
        let pool = Pool::new(topo.clone(), config.max_connections);
        if topo.clustered() {
            drop(first);
            topo.refresh().map_err(Failure::into_error)?;
        } else {
            links.insert(Node::Main, first);
            if let Ok(c) = topo.connect(&Node::Main, None) {
                pool.warm(Node::Main, c);
            }
        }
        let (tx, rx) = crossbeam_channel::bounded(config.channel_capacity);
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let shared = Arc::new(Shared::default());
        let waiters = Arc::new(Waiters::default());
        let overlay = Arc::new(Overlay::new());
        let writer = Writer::new(WriterInit {
            cfg: config.clone(),
            topo: topo.clone(),
            rx,
            shared: shared.clone(),
            waiters: waiters.clone(),
            overlay: overlay.clone(),
            done: done_tx,
            links,
        });
        let spawn_error = |e: std::io::Error| Error::Redis {
            addr: config.redis.redacted_url(),
            kind: crate::ErrorKind::Io,
            detail: format!("cannot start a kv thread: {e}"),
        };
        let writer = std::thread::Builder::new()
            .name("tradecache-kv-writer".into())
            .spawn(move || writer.run())
            .map_err(spawn_error)?;
        let keys = KeySpace::new(&config.key_prefix);
        let near =
            (config.near_capacity > 0).then(|| Arc::new(Near::new(config.near_capacity, config.near_ttl)));
        let tracking = match &near {
            Some(near) if config.near_tracking && !topo.clustered() => {
                let stop = Arc::new(AtomicBool::new(false));
                let t = near::spawn_tracking(topo.clone(), near.clone(), keys.head().to_vec(), stop.clone())
                    .map_err(spawn_error)?;
                Some(Tracking { stop, thread: Mutex::new(Some(t)) })
            }
            _ => None,
        };
        Ok(Kv {
            keys,
            producer: Mutex::new(Producer { tx, next_seq: 0 }),
            shared,
            waiters,
            overlay,
            near,
            pool,
            breaker: Breaker::new(config.breaker_failures, config.breaker_open),
            metrics: Metrics::new(config.enable_metrics),
            flights: Flights::default(),
            done: done_rx,
            writer: Mutex::new(Some(writer)),
            tracking,
            closed: AtomicBool::new(false),
            cfg: config,
        })
    }

    /// The configuration this cache was opened with.
    pub fn config(&self) -> &KvConfig {
        &self.cfg
    }

    // --- writes --------------------------------------------------------

    /// Caches `value` under `namespace`/`key` for `ttl`. Hot path: checks
    /// the key, clones the value behind an `Arc` and queues it, with no
    /// I/O and no encoding; the writer thread encodes it and sends
    /// `SET key value PX ttl`. A `get` in this process returns it at once.
    ///
    /// A value that turns out not to be encodable, or larger than
    /// `max_value_bytes` once encoded, is found by the writer (encoding
    /// stays off the calling thread, as for [`crate::Cache::put`]): it is
    /// dropped, counted in [`KvStats::dropped`] and reported by
    /// [`Kv::take_dropped`] and by `wait`/`flush` ([`Error::Dropped`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] for a bad namespace or key; [`Error::Config`]
    /// for a TTL under 1 ms; [`Error::Unavailable`] when the writer's
    /// channel is full (the write is not queued); [`Error::Closed`] after
    /// `close`.
    pub fn set<T>(&self, namespace: &str, key: &str, value: &T, ttl: Ttl) -> Result<Seq>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        check(namespace, key)?;
        let expires = self.expires_at(namespace, ttl)?;
        let item = self.key_item(namespace, key);
        self.push(op::Op::Set { item, value: Arc::new(value.clone()), expires })
    }

    /// [`Kv::set`] for several keys of one namespace; every key is checked
    /// before any write is queued. Returns the last write's sequence
    /// number.
    ///
    /// # Errors
    ///
    /// As [`Kv::set`]; on an error nothing is queued, except with
    /// [`Error::Unavailable`] (the channel filled part-way), when the
    /// writes before it are.
    pub fn set_many<T>(&self, namespace: &str, items: &[(&str, &T)], ttl: Ttl) -> Result<Seq>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let expires = self.expires_at(namespace, ttl)?;
        for (key, _) in items {
            check(namespace, key)?;
        }
        let mut last = self.last_seq();
        for (key, value) in items {
            let item = self.key_item(namespace, key);
            last = self.push(op::Op::Set { item, value: Arc::new((*value).clone()), expires })?;
        }
        Ok(last)
    }

    /// Removes a key (queued, as for [`Kv::set`]; a `get` here sees it gone
    /// at once).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], [`Error::Unavailable`], [`Error::Closed`] as
    /// for [`Kv::set`].
    pub fn delete(&self, namespace: &str, key: &str) -> Result<Seq> {
        check(namespace, key)?;
        let item = self.key_item(namespace, key);
        self.push(op::Op::Del { key: item })
    }

    /// Gives an existing key a new TTL from now (`PEXPIRE`, or `PERSIST`
    /// for [`Ttl::Never`]): extends a session. Nothing happens to a key
    /// that does not exist.
    ///
    /// # Errors
    ///
    /// As [`Kv::delete`], and [`Error::Config`] for a TTL under 1 ms.
    pub fn touch(&self, namespace: &str, key: &str, ttl: Ttl) -> Result<Seq> {
        check(namespace, key)?;
        let expires = self.expires_at(namespace, ttl)?;
        let item = self.key_item(namespace, key);
        self.push(op::Op::Expire { key: item, expires })
    }

    fn key_item(&self, namespace: &str, key: &str) -> Item {
        with_scratch(|s| {
            self.keys.write(s, namespace, key);
            Item::from_bytes(s)
        })
    }

    /// When a write made now expires.
    fn expires_at(&self, namespace: &str, ttl: Ttl) -> Result<Option<Instant>> {
        let d = match ttl {
            Ttl::Policy => self.cfg.policy(namespace),
            Ttl::After(d) => Some(d),
            Ttl::Never => None,
        };
        match d {
            Some(d) if d < Duration::from_millis(1) => Err(Error::Config(crate::ConfigError::one(
                "ttl",
                format!("{d:?}"),
                "at least 1ms (Redis counts in milliseconds), or Ttl::Never",
            ))),
            Some(d) => {
                // Capped: a TTL of `Duration::MAX` is "very long", not a panic.
                const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
                let now = Instant::now();
                Ok(Some(now.checked_add(d.min(CENTURY)).unwrap_or(now)))
            }
            None => Ok(None),
        }
    }

    #[inline]
    fn push(&self, op: op::Op) -> Result<Seq> {
        // The lock makes sequence order, overlay order and channel order
        // one; the writer never takes it.
        let mut p = self.producer.lock();
        if self.closed.load(Relaxed) {
            return Err(Error::Closed);
        }
        let seq = p.next_seq + 1;
        let item = op.item().clone();
        let undo = self.overlay.record(seq, &op, || self.shared.acked_seq.load(SeqCst));
        if let Some(near) = &self.near {
            near.evict(item.key());
        }
        match p.tx.try_send(KvMsg::Write { seq, op }) {
            Ok(()) => {
                p.next_seq = seq;
                self.shared.accepted_seq.store(seq, Relaxed);
                Ok(Seq::new(seq))
            }
            Err(e) => {
                self.overlay.undo(seq, &item, undo);
                match e {
                    TrySendError::Full(_) => {
                        self.shared.rejected.fetch_add(1, Relaxed);
                        Err(Error::Unavailable(format!(
                            "the kv writer's channel is full ({} writes queued): write to {} not queued",
                            self.cfg.channel_capacity,
                            String::from_utf8_lossy(item.key())
                        )))
                    }
                    TrySendError::Disconnected(_) => Err(Error::Closed),
                }
            }
        }
    }

    // --- reads ---------------------------------------------------------

    /// The value cached under `namespace`/`key`, if any: from this
    /// process's queued writes, the near cache, or Redis. `Ok(None)` when
    /// absent, expired, or corrupt (counted in [`KvStats::corrupt`] and
    /// logged), and at once while the breaker is open.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] for a bad namespace or key; a connection error
    /// ([`Error::Connect`], [`Error::Redis`], with
    /// [`crate::ErrorKind::ConnectionRefused`], [`crate::ErrorKind::Io`],
    /// [`crate::ErrorKind::Timeout`], …) when Redis cannot answer.
    pub fn get<T: DeserializeOwned>(&self, namespace: &str, key: &str) -> Result<Option<T>> {
        let t0 = self.clock();
        check(namespace, key)?;
        let mut full = Vec::with_capacity(self.keys.head().len() + namespace.len() + key.len() + 1);
        self.keys.write(&mut full, namespace, key);
        let found = self.lookup(&full)?;
        let out = self.decode_found(&full, found);
        self.timed(Op::Get, t0, namespace, key);
        Ok(out)
    }

    /// The values of several keys of one namespace, in order: queued
    /// writes and the near cache first, the rest with one `MGET` per
    /// `max_batch_size` keys, all sent in one write (pipelined `GET`s per
    /// master in a cluster).
    ///
    /// # Errors
    ///
    /// As [`Kv::get`], for any key.
    pub fn get_many<T: DeserializeOwned>(&self, namespace: &str, keys: &[&str]) -> Result<Vec<Option<T>>> {
        let t0 = self.clock();
        let mut full = Vec::with_capacity(keys.len());
        for key in keys {
            check(namespace, key)?;
            let mut k = Vec::new();
            self.keys.write(&mut k, namespace, key);
            full.push(k);
        }
        let mut out: Vec<Option<T>> = Vec::with_capacity(keys.len());
        let mut remote: Vec<usize> = Vec::new();
        let mut tickets = Vec::new();
        for (i, k) in full.iter().enumerate() {
            match self.local(k) {
                Ok(found) => out.push(self.decode_found(k, found)),
                Err(ticket) => {
                    out.push(None);
                    remote.push(i);
                    tickets.push(ticket);
                }
            }
        }
        if !remote.is_empty() {
            let permit = self.breaker.permit();
            if permit == Permit::Deny {
                self.metrics.c.misses.fetch_add(remote.len() as u64, Relaxed);
            } else {
                let ask: Vec<Vec<u8>> = remote.iter().map(|&i| full[i].clone()).collect();
                let replies = self.call(permit, || self.pool.mget(&ask, self.cfg.max_batch_size))?;
                for ((i, reply), ticket) in remote.into_iter().zip(replies).zip(tickets) {
                    let found = self.found_in(&full[i], reply, ticket);
                    out[i] = self.decode_found(&full[i], found);
                }
            }
        }
        self.timed(Op::GetMany, t0, namespace, "*");
        Ok(out)
    }

    /// Whether `namespace`/`key` holds a value (this process's queued
    /// writes first). `false` at once while the breaker is open, as `get`
    /// is a miss then.
    ///
    /// # Errors
    ///
    /// As [`Kv::get`].
    pub fn exists(&self, namespace: &str, key: &str) -> Result<bool> {
        let t0 = self.clock();
        check(namespace, key)?;
        let mut full = Vec::new();
        self.keys.write(&mut full, namespace, key);
        let found = match self.overlay.lookup(&full, self.shared.acked_seq.load(SeqCst)) {
            Found::Value(_) => true,
            Found::Absent => false,
            Found::Unknown => match self.near.as_ref().map(|n| n.get(&full)) {
                Some(Ok(_)) => true,
                _ => {
                    let permit = self.breaker.permit();
                    if permit == Permit::Deny {
                        false
                    } else {
                        self.call(permit, || self.pool.exists(&full))?
                    }
                }
            },
        };
        self.timed(Op::Exists, t0, namespace, key);
        Ok(found)
    }

    /// Deletes every key of `namespace` (on every master in a cluster) with
    /// `SCAN` + `UNLINK`, after the writes queued before the call are
    /// written; forgets the namespace in the near cache. Returns how many
    /// keys were deleted.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] for a bad namespace; [`Error::Unavailable`]
    /// while the breaker is open; a connection error when Redis cannot
    /// answer.
    pub fn clear_namespace(&self, namespace: &str) -> Result<u64> {
        let t0 = self.clock();
        ident::validate(namespace)?;
        if matches!(self.breaker.state(), BreakerState::Open { .. }) {
            self.breaker.short_circuited.fetch_add(1, Relaxed);
            return Err(self.unavailable());
        }
        // What was queued before the call goes first, so it is cleared too.
        match self.flush(self.cfg.redis.response_timeout) {
            Ok(()) | Err(Error::Dropped { .. }) => {}
            Err(e) => log::debug!("tradecache::kv: clear_namespace({namespace}): flush: {e}"),
        }
        let permit = self.breaker.permit();
        if permit == Permit::Deny {
            return Err(self.unavailable());
        }
        let n = self.call(permit, || self.pool.scan_unlink(&self.keys.namespace_pattern(namespace)))?;
        let head = self.keys.namespace_head(namespace);
        self.overlay.forget_prefix(&head);
        if let Some(near) = &self.near {
            near.clear(&head);
        }
        self.timed(Op::ClearNamespace, t0, namespace, "*");
        Ok(n)
    }

    /// The cached value, or else `compute()`'s, which is then cached for
    /// `ttl` and returned. Never fails because of Redis: when Redis is
    /// down or the breaker is open, it computes and caches nothing.
    /// Concurrent calls for one key that all miss run `compute` once; the
    /// others wait for its value (single flight).
    ///
    /// ```no_run
    /// # use tradecache::kv::{Kv, KvConfig, Ttl};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let kv = Kv::open(KvConfig::from_env()?)?;
    /// let var: f64 = kv.get_or_compute("risk", "P-123:var99", Ttl::Policy, || 1_250.5)?;
    /// assert_eq!(var, 1_250.5);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Only for bad input: [`Error::InvalidId`] for a bad namespace or key,
    /// [`Error::Config`] for a TTL under 1 ms (`compute` is not called).
    pub fn get_or_compute<T, F>(&self, namespace: &str, key: &str, ttl: Ttl, compute: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> T,
    {
        let t0 = self.clock();
        check(namespace, key)?;
        let expires = self.expires_at(namespace, ttl)?;
        let mut full = Vec::new();
        self.keys.write(&mut full, namespace, key);
        let cacheable = match self.lookup(&full) {
            Ok(Found2::Skipped) | Err(_) => false,
            Ok(Found2::Miss) => true,
            Ok(found @ Found2::Hit(..)) => match self.decode_found::<T>(&full, found) {
                Some(v) => {
                    self.timed(Op::GetOrCompute, t0, namespace, key);
                    return Ok(v);
                }
                None => true,
            },
        };
        let enc = self.cfg.encoding();
        let value = match self.flights.join(&full) {
            Role::Follower(shared) => {
                self.metrics.c.flight_waits.fetch_add(1, Relaxed);
                match shared.and_then(|v| decode_value::<T>(&*v, enc).ok()) {
                    Some(v) => v,
                    None => self.compute(compute),
                }
            }
            Role::Leader(leader) => {
                // A caller that finished just before us may have cached it.
                if let Found::Value(queued) = self.overlay.lookup(&full, self.shared.acked_seq.load(SeqCst)) {
                    if let Ok(v) = decode_value::<T>(&*queued, enc) {
                        leader.publish(Some(queued));
                        self.metrics.c.hits.fetch_add(1, Relaxed);
                        self.timed(Op::GetOrCompute, t0, namespace, key);
                        return Ok(v);
                    }
                }
                let v = self.compute(compute);
                let shared: op::Value = Arc::new(v.clone());
                if cacheable {
                    let item = self.key_item(namespace, key);
                    if let Err(e) = self.push(op::Op::Set { item, value: shared.clone(), expires }) {
                        log::debug!("tradecache::kv: get_or_compute did not cache {namespace}:{key}: {e}");
                    }
                }
                leader.publish(Some(shared));
                v
            }
        };
        self.timed(Op::GetOrCompute, t0, namespace, key);
        Ok(value)
    }

    fn compute<T>(&self, f: impl FnOnce() -> T) -> T {
        self.metrics.c.computed.fetch_add(1, Relaxed);
        f()
    }

    /// The local layers, then Redis (through the breaker).
    fn lookup(&self, key: &[u8]) -> Result<Found2> {
        let ticket = match self.local(key) {
            Ok(found) => return Ok(found),
            Err(t) => t,
        };
        let permit = self.breaker.permit();
        if permit == Permit::Deny {
            self.metrics.c.misses.fetch_add(1, Relaxed);
            return Ok(Found2::Skipped);
        }
        let reply = self.call(permit, || self.pool.get(key))?;
        Ok(self.found_in(key, reply, ticket))
    }

    /// The queued writes, then the near cache; `Err` with the near cache's
    /// ticket when Redis must be asked.
    fn local(&self, key: &[u8]) -> std::result::Result<Found2, Option<near::Ticket>> {
        match self.overlay.lookup(key, self.shared.acked_seq.load(SeqCst)) {
            Found::Value(item) => {
                self.metrics.c.overlay_hits.fetch_add(1, Relaxed);
                return Ok(Found2::Hit(Body::Queued(item), self.cfg.encoding()));
            }
            Found::Absent => return Ok(Found2::Miss),
            Found::Unknown => {}
        }
        match &self.near {
            Some(near) => match near.get(key) {
                Ok((body, enc)) => Ok(Found2::Hit(Body::Shared(body), enc)),
                Err(ticket) => Err(Some(ticket)),
            },
            None => Err(None),
        }
    }

    fn found_in(&self, key: &[u8], reply: Reply, ticket: Option<near::Ticket>) -> Found2 {
        match reply {
            Reply::Nil => Found2::Miss,
            Reply::Refused(text) => {
                self.corrupt(key, &text);
                Found2::Miss
            }
            Reply::Value(stored) => match value::unframe(&stored, self.cfg.redis.max_value_bytes) {
                Ok((enc, body)) => {
                    let body: Arc<[u8]> = Arc::from(&body[..]);
                    if let (Some(near), Some(t)) = (&self.near, ticket) {
                        near.fill(t, key, body.clone(), enc);
                    }
                    Found2::Hit(Body::Shared(body), enc)
                }
                Err(text) => {
                    self.corrupt(key, &text);
                    Found2::Miss
                }
            },
        }
    }

    /// Decodes a lookup's value; a miss or an undecodable value is `None`
    /// (the latter counted and logged). Counts hits and misses.
    fn decode_found<T: DeserializeOwned>(&self, key: &[u8], found: Found2) -> Option<T> {
        match found {
            Found2::Hit(body, enc) => match body.decode::<T>(enc) {
                Ok(v) => {
                    self.metrics.c.hits.fetch_add(1, Relaxed);
                    Some(v)
                }
                Err(text) => {
                    self.corrupt(key, &text);
                    None
                }
            },
            Found2::Miss => {
                self.metrics.c.misses.fetch_add(1, Relaxed);
                None
            }
            // Counted as a miss by `lookup`.
            Found2::Skipped => None,
        }
    }

    fn corrupt(&self, key: &[u8], text: &str) {
        self.metrics.c.corrupt.fetch_add(1, Relaxed);
        log::warn!(
            "tradecache::kv: unusable value at {} (counted as a miss): {text}",
            String::from_utf8_lossy(key)
        );
    }

    /// Runs a Redis call under the breaker, counting its outcome.
    fn call<R>(&self, permit: Permit, f: impl FnOnce() -> std::result::Result<R, Failure>) -> Result<R> {
        match f() {
            Ok(r) => {
                self.breaker.success(permit);
                Ok(r)
            }
            Err(mut fail) => {
                self.metrics.read_error(fail.class);
                if fail.class == ErrorClass::Command {
                    self.breaker.release(permit);
                } else {
                    self.breaker.failure(permit);
                }
                if fail.addr.is_empty() {
                    fail.addr = self.cfg.redis.redacted_url();
                }
                Err(fail.into_error())
            }
        }
    }

    fn unavailable(&self) -> Error {
        let retry = match self.breaker.state() {
            BreakerState::Open { retry_in } => format!("for another {retry_in:?}"),
            _ => "while a probe is under way".into(),
        };
        Error::Unavailable(format!(
            "the kv circuit breaker is open {retry} after {} consecutive failure(s)",
            self.cfg.breaker_failures
        ))
    }

    // --- waiting, stats, closing -----------------------------------------

    /// The last sequence number handed out (0 before the first write).
    pub fn last_seq(&self) -> Seq {
        Seq::new(self.shared.accepted_seq.load(SeqCst))
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
        let settled = || self.shared.acked_seq.load(SeqCst) >= seq.get();
        if settled() {
            return self.shared.drop_error(seq.get()).map_or(Ok(()), Err);
        }
        let deadline = connection::deadline_after(timeout);
        self.waiters.count.fetch_add(1, SeqCst);
        let mut guard = self.waiters.lock.lock();
        let result = loop {
            if settled() {
                break self.shared.drop_error(seq.get()).map_or(Ok(()), Err);
            }
            if !self.shared.flusher_alive.load(SeqCst) {
                break Err(Error::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                break Err(Error::WaitTimeout(timeout));
            }
            let slice = (deadline - now).min(Duration::from_millis(20));
            self.waiters.cv.wait_for(&mut guard, slice);
        };
        drop(guard);
        self.waiters.count.fetch_sub(1, SeqCst);
        result
    }

    /// Blocks until every write queued so far is settled.
    ///
    /// # Errors
    ///
    /// As [`Kv::wait`].
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.wait(self.last_seq(), timeout)
    }

    /// Hands over the writes dropped since the last call (past
    /// `max_pending_keys` in an outage, or refused by Redis), oldest first,
    /// and clears the record, so `wait`/`flush` stop reporting them.
    pub fn take_dropped(&self) -> Vec<DroppedWrite> {
        self.shared.take_drops()
    }

    /// Counters, breaker state and per-operation latencies.
    pub fn stats(&self) -> KvStats {
        let c = &self.metrics.c;
        let (hits, misses) = (c.hits.load(Relaxed), c.misses.load(Relaxed));
        let w = self.shared.stats();
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
        let h = self.shared.health();
        KvHealth {
            writer_connected: h.connected,
            writer_running: h.flusher_running,
            backlog: h.backlog,
            breaker: self.breaker.state(),
            near_tracking: self.tracking.as_ref().and(self.near.as_ref()).map(|n| n.tracking.load(Relaxed)),
            last_error: h.last_error,
            backpressure: h.backpressure,
        }
    }

    /// Writes what is queued (until `timeout`), stops the writer and the
    /// invalidation listener, and joins them. Bounded even with Redis
    /// down.
    ///
    /// # Errors
    ///
    /// [`Error::Unpersisted`] with the count of writes not written.
    pub fn close(self, timeout: Duration) -> Result<CloseReport> {
        let report = self.shutdown(timeout);
        if report.unpersisted > 0 {
            Err(Error::Unpersisted(report))
        } else {
            Ok(report)
        }
    }

    fn shutdown(&self, timeout: Duration) -> CloseReport {
        if self.closed.swap(true, SeqCst) {
            return CloseReport { acked_seq: self.shared.acked_seq.load(SeqCst), unpersisted: 0 };
        }
        if let Some(tracking) = &self.tracking {
            tracking.stop.store(true, SeqCst);
            if let Some(t) = tracking.thread.lock().take() {
                let _ = t.join();
            }
        }
        let deadline = connection::deadline_after(timeout);
        self.shared.request_stop(deadline);
        {
            let p = self.producer.lock();
            let _ = p.tx.try_send(KvMsg::Shutdown { deadline });
        }
        let slack = Duration::from_millis(250);
        match self.done.recv_deadline(deadline.checked_add(slack).unwrap_or(deadline)) {
            Ok(r) => {
                if let Some(t) = self.writer.lock().take() {
                    let _ = t.join();
                }
                r
            }
            Err(_) => {
                let acked = self.shared.acked_seq.load(SeqCst);
                CloseReport {
                    acked_seq: acked,
                    unpersisted: self.shared.accepted_seq.load(SeqCst).saturating_sub(acked),
                }
            }
        }
    }

    // --- timing ----------------------------------------------------------

    #[inline]
    fn clock(&self) -> Option<Instant> {
        (self.metrics.enabled || self.cfg.log_slow_ops).then(Instant::now)
    }

    #[inline]
    fn timed(&self, op: Op, t0: Option<Instant>, namespace: &str, key: &str) {
        let Some(t0) = t0 else { return };
        let d = t0.elapsed();
        self.metrics.time(op, d);
        if self.cfg.log_slow_ops && d > self.cfg.slow_op_threshold {
            self.metrics.c.slow_ops.fetch_add(1, Relaxed);
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

/// Checks a namespace and a key (see the module docs for the rules).
fn check(namespace: &str, key: &str) -> Result<()> {
    ident::validate(namespace)?;
    keys::validate_key(key)?;
    Ok(())
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
