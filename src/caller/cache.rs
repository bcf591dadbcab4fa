//! The public handle: what trading threads call. Never reaches into the
//! flusher's state: it talks to it through the channel and a few atomics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use parking_lot::Mutex;

use crate::channel::msg::{Msg, Record};
use crate::channel::Count;
use crate::channel::{Handle, Shared};
use crate::config::{Config, OverflowPolicy};
use crate::entity::{Entity, Event, MarketData};
use crate::error::{Error, PushError, Result};
use crate::flusher::Flusher;
use crate::ident::{self, Ident};
use crate::net;
use crate::seq::Seq;
use crate::store::keys::Keys;

/// A handle to the write-behind cache: cheap, non-blocking writes on the
/// calling thread, persisted to Redis by one flusher thread.
///
/// `Cache` is `Send + Sync`: share it between threads behind an `Arc`.
/// Writes from several threads are ordered by their [`Seq`].
pub struct Cache {
    /// The channel's sending end. Its lock numbers the writes: the next
    /// sequence number is `Shared::accepted() + 1`, taken and sent under
    /// it, so sequence order is channel order across threads.
    pub(super) producer: Mutex<Sender<Msg>>,
    /// The flusher thread: what it shares with callers, its end of life.
    pub(crate) writer: Handle,
    pub(super) cfg: Config,
    pub(super) keys: Keys,
    /// The connection point reads use (`get`, `get_events`, `load_ticks`).
    pub(crate) reads: crate::net::read_link::ReadLink,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("redis", &self.cfg.redacted_url())
            .field("trader_key", &self.cfg.trader_key())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Cache {
    /// Validates `config`, connects (at most `connect_attempts` tries with
    /// exponential backoff between `open_backoff` bounds), claims this
    /// writer's commit marker with a new epoch (fencing any cache opened
    /// before with the same trader, instance and `writer_id`: docs/guarantees.md,
    /// "Writers and fencing"), deletes this cache's keys if
    /// `flush_on_start` is set, and starts the flusher thread
    /// `tradecache-flusher`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] listing every configuration problem (including a
    /// TLS file that cannot be read);
    /// [`Error::Connect`] naming `host:port` and whether the connection was
    /// refused, timed out or the credentials were rejected;
    /// [`Error::Codec`] naming the key when this writer's commit marker
    /// (`{trader}:writer:{writer_id}`) holds something other than a batch
    /// number (unless `flush_on_start` is set, which replaces it);
    /// [`Error::Redis`] when reading or claiming it fails (a key of the
    /// wrong type, say).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = Config::from_env()?.trader_id("TESTER-001");
    /// let cache = Cache::open(config)?;
    /// assert!(cache.health().connected);
    /// assert_eq!(cache.last_seq().get(), 0);
    /// cache.close(Duration::from_secs(5))?;
    /// # Ok(()) }
    /// ```
    pub fn open(config: Config) -> Result<Cache> {
        config.validate()?;
        config.check_files()?;
        let keys = Keys::new(&config.trader_key(), !config.cluster_nodes.is_empty());
        let marker_key = keys.writer(&config.writer_id);
        let mut conn = net::connect_with_retries(&config, &marker_key)?;
        // Claimed first: once it is, an older writer's batch cannot land,
        // so nothing it writes survives the flush below.
        let marker = crate::store::marker::claim(&mut conn, &marker_key, config.flush_on_start)?;
        if config.flush_on_start {
            crate::store::own_keys::delete_own_keys(&mut conn, &keys, &[], crate::store::own_keys::unlink)
                .map_err(|f| f.into_error())?;
        }
        // The registry of collections, complete before the first batch
        // adds to it (`crate::store::registry`).
        crate::store::registry::prepare(&mut conn, &keys).map_err(|f| f.into_error())?;
        let (tx, rx) = crossbeam_channel::bounded(config.channel_capacity);
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let shared = Arc::new(Shared::default());
        let flusher = Flusher::new(config.clone(), keys.clone(), rx, shared.clone(), done_tx, conn, marker);
        let thread = std::thread::Builder::new()
            .name("tradecache-flusher".into())
            .spawn(move || flusher.run())
            .map_err(|e| Error::no_thread("the flusher thread", config.redacted_url(), &e))?;
        Ok(Cache {
            producer: Mutex::new(tx),
            writer: Handle::new(shared, done_rx, thread),
            cfg: config,
            keys,
            reads: crate::net::read_link::ReadLink::default(),
        })
    }

    /// Queues the latest state of an entity. Hot path: validates the id,
    /// clones the value into a message and pushes it; no I/O, no encoding.
    ///
    /// # Errors
    ///
    /// [`PushError::InvalidId`] for a bad id; [`PushError::Full`] (with a
    /// clone of the value) when the channel is full under
    /// [`OverflowPolicy::Reject`] or stays full for the `Block` timeout;
    /// [`PushError::Closed`] after `close`; [`PushError::Fenced`] once a
    /// newer writer has taken over (docs/guarantees.md, "Writers and fencing").
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// use tradecache::model::Position;
    /// let position = Position::example("BTCUSDT-PERP.BINANCE-001");
    /// let seq = cache.put(&position)?;             // no I/O on this thread
    /// assert_eq!(cache.last_seq(), seq);
    /// cache.wait(seq, Duration::from_secs(1))?;   // now in Redis
    /// assert!(cache.acked_seq() >= seq);
    /// # Ok(()) }
    /// ```
    pub fn put<T: Entity>(&self, entity: &T) -> std::result::Result<Seq, PushError<T>> {
        self.push_entity(entity, |seq, rec| Msg::Put { seq, rec })
    }

    /// As [`Cache::put`], and the entity starts again: its event log (and
    /// its index entry) are deleted by the same write, so a crash leaves
    /// the entity as it was, with its log, or as put here, with none;
    /// never without either (a [`Cache::delete`] then a `put` may be cut
    /// between them). For an entity whose history restarts, such as a
    /// position reopened after it was flat. A value too large to write
    /// (`max_value_bytes`) is dropped and reported as a `put`'s is, and the
    /// deletion still applies.
    ///
    /// # Errors
    ///
    /// As [`Cache::put`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// use tradecache::model::Position;
    /// let position = Position::example("BTCUSDT-PERP.BINANCE-001");
    /// let seq = cache.replace(&position)?;
    /// cache.wait(seq, Duration::from_secs(1))?;
    /// # Ok(()) }
    /// ```
    pub fn replace<T: Entity>(&self, entity: &T) -> std::result::Result<Seq, PushError<T>> {
        self.push_entity(entity, |seq, rec| Msg::Replace { seq, rec })
    }

    /// The body of [`Cache::put`] and [`Cache::replace`].
    #[inline]
    fn push_entity<T: Entity>(
        &self,
        entity: &T,
        msg: impl FnOnce(u64, Record) -> Msg,
    ) -> std::result::Result<Seq, PushError<T>> {
        let () = crate::entity::Checked::<T>::ENTITY;
        ident::validate(entity.id()).map_err(PushError::InvalidId)?;
        let rec = entity.to_record();
        self.push(|seq| msg(seq, rec), || entity.clone())
    }

    /// Appends an event to the log of entity `id` (for example an order's
    /// fill to `orders:{id}:events`). Account events are skipped (and the
    /// last sequence number returned) when `persist_account_events` is off.
    ///
    /// # Errors
    ///
    /// As [`Cache::put`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// use tradecache::model::{Order, OrderEvent, OrderEventKind, UnixNanos};
    /// use tradecache::Ident;
    /// cache.put(&Order::example("O-1"))?;
    /// let event = OrderEvent {
    ///     event_id: 1,
    ///     client_order_id: Ident::new("O-1")?,
    ///     ts_event: UnixNanos(1),
    ///     kind: OrderEventKind::Canceled,
    /// };
    /// let seq = cache.append("O-1", &event)?;
    /// cache.wait(seq, Duration::from_secs(1))?;
    /// let (events, _) = cache.load_events::<OrderEvent>("O-1")?;
    /// assert_eq!(events.last(), Some(&event));
    /// # Ok(()) }
    /// ```
    pub fn append<E: Event>(&self, id: &str, event: &E) -> std::result::Result<Seq, PushError<E>> {
        let () = crate::entity::Checked::<E::Of>::ENTITY;
        let id = Ident::new(id).map_err(PushError::InvalidId)?;
        let collection = <E::Of as Entity>::COLLECTION;
        if collection == "accounts" && !self.cfg.persist_account_events {
            return Ok(Seq::new(self.writer.shared.accepted()));
        }
        let rec = event.to_record();
        self.push(|seq| Msg::Append { seq, collection, id, rec }, || event.clone())
    }

    /// Appends market data (a [`crate::model::QuoteTick`], a
    /// [`crate::model::TradeTick`], a [`crate::model::Bar`] or a type of your
    /// own) to its series, `{COLLECTION}:{series_id}:events`. Hot path, as
    /// cheap as [`Cache::append`]: the flusher pushes it and trims the list
    /// to the newest `tick_capacity` (ticks) or `bar_capacity` (bars)
    /// entries in the same transaction. Read them back with
    /// [`Cache::load_ticks`] / [`Cache::load_bars`].
    ///
    /// # Errors
    ///
    /// As [`Cache::put`] (an invalid series id is
    /// [`PushError::InvalidId`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// use tradecache::model::{QuoteTick, UnixNanos};
    /// let tick = QuoteTick::example("BTCUSDT-PERP.BINANCE", UnixNanos(1));
    /// let seq = cache.append_market_data(&tick)?;
    /// cache.wait(seq, Duration::from_secs(1))?;
    /// let (ticks, _) = cache.load_ticks::<QuoteTick>("BTCUSDT-PERP.BINANCE", 1)?;
    /// assert_eq!(ticks, vec![tick]);
    /// # Ok(()) }
    /// ```
    pub fn append_market_data<D: MarketData>(&self, item: &D) -> std::result::Result<Seq, PushError<D>> {
        let () = crate::entity::Checked::<D>::SERIES;
        let id = Ident::new(item.series_id()).map_err(PushError::InvalidId)?;
        let rec = item.to_record();
        self.push(|seq| Msg::Append { seq, collection: D::COLLECTION, id, rec }, || item.clone())
    }

    /// Deletes an entity, its event log, and its index entry.
    ///
    /// # Errors
    ///
    /// As [`Cache::put`]; the value handed back is the id.
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
    /// let seq = cache.delete::<Position>("P-1")?;
    /// cache.wait(seq, Duration::from_secs(1))?;
    /// assert_eq!(cache.get::<Position>("P-1")?, None);
    /// # Ok(()) }
    /// ```
    pub fn delete<T: Entity>(&self, id: &str) -> std::result::Result<Seq, PushError<Ident>> {
        let () = crate::entity::Checked::<T>::ENTITY;
        let id = Ident::new(id).map_err(PushError::InvalidId)?;
        let back = id.clone();
        self.push(move |seq| Msg::Delete { seq, collection: T::COLLECTION, id }, move || back)
    }

    #[inline]
    pub(crate) fn push<T>(
        &self,
        make: impl FnOnce(u64) -> Msg,
        back: impl FnOnce() -> T,
    ) -> std::result::Result<Seq, PushError<T>> {
        self.push_with(self.cfg.overflow, make, back)
    }

    #[inline]
    fn push_with<T>(
        &self,
        overflow: OverflowPolicy,
        make: impl FnOnce(u64) -> Msg,
        back: impl FnOnce() -> T,
    ) -> std::result::Result<Seq, PushError<T>> {
        if self.writer.shared.is_fenced() {
            return Err(PushError::Fenced(back()));
        }
        // Built outside the lock; numbered inside it, right before the send.
        let mut msg = make(0);
        let mut waited: Option<(Instant, u32)> = None;
        let closed = loop {
            // The lock makes sequence order equal channel order across
            // threads; it is held for one `try_send` only, never across a
            // wait (so a `Reject` call never waits behind a blocked one),
            // and the flusher never takes it.
            let tx = self.producer.lock();
            let seq = self.writer.shared.accepted() + 1;
            msg.set_seq(seq);
            match tx.try_send(msg) {
                Ok(()) => {
                    // (After the send: see `Shared::note_accepted`.)
                    self.writer.shared.note_accepted(seq);
                    return Ok(Seq::new(seq));
                }
                Err(TrySendError::Disconnected(_)) => break true,
                Err(TrySendError::Full(m)) => msg = m,
            }
            drop(tx);
            let OverflowPolicy::Block { timeout } = overflow else { break false };
            let (deadline, spins) = waited.get_or_insert_with(|| (net::deadline_after(timeout), 0));
            if !pause_before_retry(*deadline, spins) {
                break false;
            }
        };
        if closed && self.writer.shared.is_fenced() {
            // The flusher stopped because a newer writer took over.
            Err(PushError::Fenced(back()))
        } else if closed || self.writer.is_closed() {
            Err(PushError::Closed(back()))
        } else {
            self.writer.shared.add(Count::Rejected, 1);
            Err(PushError::Full(back()))
        }
    }

    /// Deletes this cache's keys: its entities, event logs and index sets
    /// (with an instance id, that instance's; without one, the trader's but
    /// no instance's), never another trader's, instance's or application's
    /// key, never `FLUSHDB`. Writers' commit markers stay (they carry the
    /// fencing epoch).
    ///
    /// It is a write like the others: it takes the next sequence number,
    /// applies after every write before it and before every write after
    /// it, and returns once applied, with the number of keys deleted. The
    /// flusher writes nothing else while it runs (a `SCAN` of the database).
    ///
    /// ```no_run
    /// # use tradecache::{Cache, Config};
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = Cache::open(Config::from_env()?.trader_id("T1"))?;
    /// cache.put(&tradecache::model::Position::example("P-1"))?;
    /// cache.clear(Duration::from_secs(5))?;       // P-1 is gone
    /// assert!(cache.load()?.positions.is_empty());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `use_trader_prefix` is off (which keys are this
    /// cache's cannot be told then); [`Error::WaitTimeout`] when it has not
    /// been applied within `timeout` (it still applies later, in its place
    /// in the sequence); [`Error::Fenced`] or [`Error::Closed`] when the
    /// flusher stopped first.
    pub fn clear(&self, timeout: Duration) -> Result<u64> {
        if self.keys.pattern().is_none() {
            return Err(Error::Config(crate::error::ConfigError::one(
                "use_trader_prefix",
                "false",
                "true: without a trader prefix this cache's keys cannot be told from other applications' \
                 (clear refuses rather than delete theirs)",
            )));
        }
        let (reply, done) = crossbeam_channel::bounded(1);
        let policy = OverflowPolicy::Block { timeout };
        self.push_with(policy, |seq| Msg::Clear { seq, reply }, || ()).map_err(|e| match e {
            PushError::Full(()) => Error::WaitTimeout(timeout),
            PushError::Fenced(()) => self.stopped(),
            _ => Error::Closed,
        })?;
        match done.recv_timeout(timeout) {
            Ok(r) => r,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(Error::WaitTimeout(timeout)),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(self.stopped()),
        }
    }

    /// Sends a request that is not a write (it takes no sequence number)
    /// to the flusher, waiting at most `timeout` for room in the channel.
    ///
    /// # Errors
    ///
    /// [`Error::WaitTimeout`] when the channel stayed full; [`Error::Fenced`]
    /// or [`Error::Closed`] when the flusher has stopped.
    pub(crate) fn send_request(&self, mut msg: Msg, timeout: Duration) -> Result<()> {
        if let Some(e) = self.writer.shared.fence_error() {
            return Err(e);
        }
        if self.writer.is_closed() {
            return Err(Error::Closed);
        }
        // Not a write: no sequence number to order, so no producer lock
        // (a request waiting for room never holds up a write).
        let tx = self.producer.lock().clone();
        let mut waited: Option<(Instant, u32)> = None;
        loop {
            msg = match tx.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => return Err(self.stopped()),
                Err(TrySendError::Full(m)) => m,
            };
            let (deadline, spins) = waited.get_or_insert_with(|| (net::deadline_after(timeout), 0));
            if !pause_before_retry(*deadline, spins) {
                return Err(Error::WaitTimeout(timeout));
            }
        }
    }

    /// The error a request gets when the flusher stopped before replying.
    pub(crate) fn stopped(&self) -> Error {
        self.writer.shared.stopped_error()
    }
}

/// One pause of a wait for room in the channel (`OverflowPolicy::Block`
/// and requests): a few spins, then 50 µs sleeps; `false` once `deadline`
/// has passed. Polling, not parking in crossbeam's blocking send, which
/// would make the flusher wake the sender (a futex call) for every message
/// it takes off a full channel.
fn pause_before_retry(deadline: Instant, spins: &mut u32) -> bool {
    let now = Instant::now();
    if now >= deadline {
        return false;
    }
    if *spins < 64 {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        std::thread::sleep((deadline - now).min(Duration::from_micros(50)));
    }
    true
}
