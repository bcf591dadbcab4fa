//! [`TradecacheDatabase`]: the `CacheDatabaseAdapter` implementation.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use ahash::AHashMap;
use bytes::Bytes;
use nautilus_common::{
    cache::{
        database::{CacheDatabaseAdapter, CacheMap},
        CacheConfig,
    },
    signal::Signal,
};
use nautilus_core::{UnixNanos, UUID4};
use nautilus_model::{
    accounts::AccountAny,
    data::{
        greeks::{GreeksData, YieldCurveData},
        Bar, CustomData, DataType, FundingRateUpdate, QuoteTick, TradeTick,
    },
    events::{position::snapshot::PositionSnapshot, AccountState, OrderEventAny, OrderSnapshot},
    identifiers::{
        AccountId, ClientId, ClientOrderId, ComponentId, InstrumentId, PositionId, StrategyId, TraderId,
        VenueOrderId,
    },
    instruments::{Instrument, InstrumentAny, SyntheticInstrument},
    orderbook::OrderBook,
    orders::{Order, OrderAny},
    position::Position,
    types::Currency,
};
use tradecache::{Cache, Config, ErrorKind, LoadIssue, LoadReport, PushError};
use ustr::Ustr;

use crate::kinds::{self, order_event_id};
use crate::records::{
    Book, CustomJson, General, Greeks, IndexEntry, Kind, Logged, Series, SeriesKind, State, StateMap, Stored,
    Tombstones, YieldCurve,
};

/// Why an adapter call failed; every error of [`TradecacheDatabase`] is
/// one of these inside the `anyhow::Error` (`err.downcast_ref::<AdapterError>()`).
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// A newer writer opened with the same trader (and instance) id and
    /// took over: this adapter writes no more (tradecache's fencing).
    #[error("fenced: a newer node with the same trader id took over this cache database")]
    Fenced,
    /// The adapter was closed.
    #[error("the cache database is closed")]
    Closed,
    /// tradecache's bounded channel stayed full (Redis slow or down) under
    /// its overflow policy; the write was not accepted.
    #[error("the write channel is full (Redis slow or down): the write was not accepted")]
    Full,
    /// An id that cannot be part of a key even escaped (longer than 256
    /// bytes escaped).
    #[error("invalid id: {0}")]
    InvalidId(tradecache::IdError),
    /// A value could not be decoded into its Nautilus type.
    #[error("{key}: {detail}")]
    Decode {
        /// The Redis key (or a description of the value).
        key: String,
        /// What went wrong.
        detail: String,
    },
    /// Any other tradecache error (connection, timeout, Redis error).
    #[error(transparent)]
    Cache(tradecache::Error),
}

impl From<tradecache::Error> for AdapterError {
    fn from(e: tradecache::Error) -> Self {
        match e.kind() {
            ErrorKind::Fenced => AdapterError::Fenced,
            ErrorKind::Closed if matches!(e, tradecache::Error::Closed) => AdapterError::Closed,
            _ => AdapterError::Cache(e),
        }
    }
}

impl<T> From<PushError<T>> for AdapterError {
    fn from(e: PushError<T>) -> Self {
        match e {
            PushError::Full(_) => AdapterError::Full,
            PushError::Closed(_) => AdapterError::Closed,
            PushError::Fenced(_) => AdapterError::Fenced,
            PushError::InvalidId(e) => AdapterError::InvalidId(e),
            PushError::WrongEncoding(_) => AdapterError::Cache(tradecache::Error::Codec {
                key: String::new(),
                detail: "a value in another encoding than the cache's".into(),
            }),
        }
    }
}

/// Escapes a Nautilus identifier or key into a tradecache id: `%`, `:`,
/// `{`, `}`, whitespace and control characters become `%XX` (each UTF-8
/// byte); everything else is kept. [`unescape_id`] reverses it.
///
/// ```
/// use tradecache_nautilus::{escape_id, unescape_id};
/// let key = "cache://position-snapshots/P-1/0";
/// assert_eq!(escape_id(key), "cache%3A//position-snapshots/P-1/0");
/// assert_eq!(unescape_id(&escape_id(key)), key);
/// assert_eq!(escape_id("O-123"), "O-123");
/// ```
#[must_use]
pub fn escape_id(s: &str) -> String {
    let plain =
        |c: char| !(c == '%' || c == ':' || c == '{' || c == '}' || c.is_whitespace() || c.is_control());
    if s.chars().all(plain) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if plain(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// Reverses [`escape_id`].
#[must_use]
pub fn unescape_id(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            if let Some(v) =
                std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Options of the adapter itself (the rest is tradecache's [`Config`]).
#[derive(Debug, Clone)]
struct Options {
    tick_capacity: usize,
    bar_capacity: usize,
    persist_account_events: bool,
    /// Bound of `close` and of `flush` (the deletion of this trader's keys).
    close_timeout: Duration,
}

/// NautilusTrader's cache database on tradecache.
///
/// Every write method validates the id and pushes the value into
/// tradecache's bounded channel; it returns before any I/O (the flusher
/// thread encodes it and applies it in an atomic batch). Loads read Redis
/// on connections of their own and, like tradecache's reads, see every
/// write accepted before them. Values that no longer decode are logged,
/// kept in [`TradecacheDatabase::load_issues`] and skipped: a load never
/// fails on one bad value.
///
/// `flush` deletes this trader's keys (what Nautilus's `Cache::flush_db`
/// asks of it); to wait until everything written is in Redis, use
/// [`TradecacheDatabase::flush_pending`].
pub struct TradecacheDatabase {
    cache: Option<Cache>,
    opts: Options,
    staged_actors: Mutex<AHashMap<ComponentId, StateMap>>,
    staged_strategies: Mutex<AHashMap<StrategyId, StateMap>>,
    issues: Mutex<Vec<LoadIssue>>,
}

impl std::fmt::Debug for TradecacheDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TradecacheDatabase").field("cache", &self.cache).finish_non_exhaustive()
    }
}

type R<T> = Result<T, AdapterError>;

fn ok<T>(r: R<T>) -> anyhow::Result<T> {
    r.map_err(anyhow::Error::from)
}

fn decode_err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> AdapterError {
    AdapterError::Decode { key: what.to_string(), detail: e.to_string() }
}

impl TradecacheDatabase {
    /// Opens the adapter with the configuration Nautilus uses for its own
    /// Redis backend (see [`crate::tradecache_config`] for the mapping).
    ///
    /// # Errors
    ///
    /// When the configuration is invalid or Redis cannot be reached
    /// (tradecache's `Cache::open`).
    pub fn from_cache_config(
        trader_id: TraderId,
        instance_id: UUID4,
        config: &CacheConfig,
    ) -> anyhow::Result<Self> {
        let tc = crate::tradecache_config(trader_id, instance_id, config)?;
        Self::open(tc, config)
    }

    /// Opens the adapter on a tradecache [`Config`] of your own (Sentinel,
    /// Cluster, `replica_wait`, `writer_id`, a bounded `channel_capacity`,
    /// …), usually made with [`crate::tradecache_config`] and changed; the
    /// capacities the loads read back and `persist_account_events` are
    /// taken from `nautilus` (tradecache's `Config` has no getters for
    /// them).
    ///
    /// # Errors
    ///
    /// As tradecache's `Cache::open`: an invalid configuration, Redis not
    /// reachable, or this writer's commit marker unreadable.
    pub fn open(config: Config, nautilus: &CacheConfig) -> anyhow::Result<Self> {
        let opts = Options {
            tick_capacity: nautilus.tick_capacity,
            bar_capacity: nautilus.bar_capacity,
            persist_account_events: nautilus.persist_account_events,
            close_timeout: Duration::from_secs(30),
        };
        let cache = Cache::open(config).map_err(AdapterError::from)?;
        Ok(TradecacheDatabase {
            cache: Some(cache),
            opts,
            staged_actors: Mutex::new(AHashMap::new()),
            staged_strategies: Mutex::new(AHashMap::new()),
            issues: Mutex::new(Vec::new()),
        })
    }

    /// The tradecache cache underneath (stats, health, reads of your own).
    ///
    /// # Errors
    ///
    /// [`AdapterError::Closed`] after `close`.
    pub fn cache(&self) -> Result<&Cache, AdapterError> {
        self.cache.as_ref().ok_or(AdapterError::Closed)
    }

    /// Waits until every write accepted so far is in Redis (tradecache's
    /// `flush`): after it returns, a crash of this process loses none of
    /// them.
    ///
    /// # Errors
    ///
    /// [`AdapterError::Fenced`] when a newer writer took over; a timeout or
    /// a dropped write as [`AdapterError::Cache`].
    pub fn flush_pending(&self, timeout: Duration) -> anyhow::Result<()> {
        ok(self.cache().and_then(|c| c.flush(timeout).map_err(AdapterError::from)))
    }

    /// The values the loads so far could not use (they were skipped), and
    /// clears the list.
    pub fn load_issues(&self) -> Vec<LoadIssue> {
        std::mem::take(&mut *self.issues.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Stages an actor's state; the next [`CacheDatabaseAdapter::update_actor`]
    /// writes every staged actor state (the trait's `update_actor` takes no
    /// argument).
    pub fn stage_actor_state(&self, component_id: ComponentId, state: AHashMap<String, Bytes>) {
        self.staged_actors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(component_id, state.into_iter().collect());
    }

    /// Stages a strategy's state; the next
    /// [`CacheDatabaseAdapter::update_strategy`] writes every staged
    /// strategy state.
    pub fn stage_strategy_state(&self, strategy_id: StrategyId, state: AHashMap<String, Bytes>) {
        self.staged_strategies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(strategy_id, state.into_iter().collect());
    }

    /// The venue order ids indexed with `index_venue_order_id`.
    ///
    /// # Errors
    ///
    /// As the loads.
    pub fn load_index_venue_order_ids(&self) -> anyhow::Result<AHashMap<ClientOrderId, VenueOrderId>> {
        ok(self
            .index::<kinds::VenueOrderIds>()
            .map(|m| m.into_iter().map(|(k, v)| (ClientOrderId::new(k), VenueOrderId::new(v))).collect()))
    }

    /// The last heartbeat written with `heartbeat`.
    ///
    /// # Errors
    ///
    /// As the loads.
    pub fn last_heartbeat(&self) -> anyhow::Result<Option<UnixNanos>> {
        ok(self.get::<kinds::Health>("heartbeat").map(|b| b.map(|b| UnixNanos::from(b.ts))))
    }

    /// The order book stored with `add_order_book`, rebuilt from its deltas.
    ///
    /// # Errors
    ///
    /// As the loads; a stored book whose deltas do not apply is
    /// [`AdapterError::Decode`].
    pub fn load_order_book(&self, instrument_id: &InstrumentId) -> anyhow::Result<Option<OrderBook>> {
        let Some(book) =
            self.get::<kinds::OrderBooks>(&instrument_id.to_string()).map_err(anyhow::Error::from)?
        else {
            return Ok(None);
        };
        let mut ob = OrderBook::new(book.instrument_id, book.book_type);
        for d in &book.deltas {
            ob.apply_delta(d).map_err(|e| decode_err(format!("order book {instrument_id}"), e))?;
        }
        Ok(Some(ob))
    }

    // --- helpers -------------------------------------------------------

    fn put<K: Kind>(&self, value: K::Value) -> R<()> {
        self.cache()?.put(&Stored::<K>::new(value))?;
        Ok(())
    }

    fn delete<K: Kind>(&self, id: &str) -> R<()> {
        self.cache()?.delete::<Stored<K>>(&escape_id(id))?;
        Ok(())
    }

    fn append<E: crate::records::EventKind>(&self, id: &str, value: E::Value) -> R<()> {
        self.cache()?.append(&escape_id(id), &Logged::<E>::new(value))?;
        Ok(())
    }

    fn append_series<S: SeriesKind>(&self, series: &str, value: S::Value) -> R<()> {
        self.cache()?.append_market_data(&Series::<S> { series: escape_id(series), value })?;
        Ok(())
    }

    fn note(&self, report: &LoadReport) {
        if report.issues.is_empty() {
            return;
        }
        for issue in &report.issues {
            log::warn!("tradecache-nautilus: skipped a value that does not decode: {issue}");
        }
        self.issues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(report.issues.iter().cloned());
    }

    fn issue(&self, key: String, problem: String) {
        log::warn!("tradecache-nautilus: skipped {key}: {problem}");
        self.issues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(LoadIssue { key, problem });
    }

    fn all<K: Kind>(&self) -> R<Vec<K::Value>> {
        let cache = self.cache()?;
        // Read-your-writes like tradecache's `get`: a bulk load sees every
        // write accepted before it (it costs nothing when none is pending).
        if cache.acked_seq() < cache.last_seq() {
            cache.flush(self.opts.close_timeout)?;
        }
        let (items, report) = cache.load_all::<Stored<K>>()?;
        self.note(&report);
        Ok(items.into_iter().map(|s| s.value).collect())
    }

    fn get<K: Kind>(&self, id: &str) -> R<Option<K::Value>> {
        let cache = self.cache()?;
        match cache.get::<Stored<K>>(&escape_id(id)) {
            Ok(v) => Ok(v.map(|s| s.value)),
            Err(e) if e.kind() == ErrorKind::Codec => {
                self.issue(format!("{}:{id}", K::COLLECTION), e.to_string());
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn events<E: crate::records::EventKind>(&self, id: &str) -> R<Vec<E::Value>> {
        let cache = self.cache()?;
        let id = escape_id(id);
        match cache.get_events::<Logged<E>>(&id) {
            Ok(v) => Ok(v.into_iter().map(|l| l.value).collect()),
            Err(e) if e.kind() == ErrorKind::Codec => {
                // An entry does not decode: read the log again with the
                // loader, which reports and skips it.
                let (v, report) = cache.load_events::<Logged<E>>(&id)?;
                self.note(&report);
                Ok(v.into_iter().map(|l| l.value).collect())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn series<S: SeriesKind>(&self, series: &str, n: usize) -> R<Vec<S::Value>> {
        let (items, report) = self.cache()?.load_ticks::<Series<S>>(&escape_id(series), n)?;
        self.note(&report);
        Ok(items.into_iter().map(|s| s.value).collect())
    }

    fn index<K: Kind<Value = IndexEntry>>(&self) -> R<Vec<(String, String)>> {
        Ok(self.all::<K>()?.into_iter().map(|e| (e.client_order_id, e.value)).collect())
    }

    fn index_entry<K: Kind<Value = IndexEntry>>(&self, coid: &ClientOrderId, value: String) -> R<()> {
        self.put::<K>(IndexEntry { client_order_id: coid.to_string(), value })
    }

    /// The order as added, with the events of its log it does not hold
    /// yet applied in append order (an event id seen twice is applied once).
    fn complete_order(&self, order: OrderAny) -> R<OrderAny> {
        let logged = self.events::<kinds::OrderEvents>(order.client_order_id().as_str())?;
        Ok(self.complete_order_with(order, logged))
    }

    fn complete_order_with(&self, mut order: OrderAny, logged: Vec<OrderEventAny>) -> OrderAny {
        let coid = order.client_order_id();
        let mut seen: HashSet<UUID4> = order.events().iter().map(|e| order_event_id(e)).collect();
        for event in logged {
            if !seen.insert(order_event_id(&event)) {
                continue;
            }
            if let Err(e) = order.apply(event) {
                self.issue(
                    format!("{}:{coid}:events", kinds::Orders::COLLECTION),
                    format!("event not applied: {e}"),
                );
            }
        }
        order
    }

    /// The account as added, with its logged events applied in order
    /// (repeats once) and deleted events left out.
    fn complete_account(&self, mut account: AccountAny) -> R<AccountAny> {
        let id = account.id();
        let logged = self.events::<kinds::AccountEvents>(id.as_str())?;
        let tomb = self.get::<kinds::AccountTombstones>(id.as_str())?;
        let deleted: HashSet<String> = tomb.map(|t| t.event_ids.into_iter().collect()).unwrap_or_default();
        let own = account.events();
        if own.iter().any(|e| deleted.contains(&e.event_id.to_string())) {
            // An event of the stored account itself was deleted: rebuild
            // the account from the events that remain.
            let mut seen = HashSet::new();
            let events: Vec<AccountState> = own
                .into_iter()
                .chain(logged)
                .filter(|e| seen.insert(e.event_id) && !deleted.contains(&e.event_id.to_string()))
                .collect();
            if events.is_empty() {
                self.issue(format!("{}:{id}", kinds::Accounts::COLLECTION), "every event was deleted".into());
                return Ok(account);
            }
            return match AccountAny::from_events(&events) {
                Ok(a) => Ok(a),
                Err(e) => {
                    self.issue(
                        format!("{}:{id}:events", kinds::Accounts::COLLECTION),
                        format!("not rebuilt: {e}"),
                    );
                    Ok(account)
                }
            };
        }
        let mut seen: HashSet<UUID4> = own.iter().map(|e| e.event_id).collect();
        for event in logged {
            if !seen.insert(event.event_id) || deleted.contains(&event.event_id.to_string()) {
                continue;
            }
            if let Err(e) = account.apply(event) {
                self.issue(
                    format!("{}:{id}:events", kinds::Accounts::COLLECTION),
                    format!("event not applied: {e}"),
                );
            }
        }
        Ok(account)
    }

    fn load_orders_sync(&self) -> R<AHashMap<ClientOrderId, OrderAny>> {
        let cache = self.cache()?;
        // Read-your-writes, as in `all`.
        if cache.acked_seq() < cache.last_seq() {
            cache.flush(self.opts.close_timeout)?;
        }
        // Every order with its log in one call: tradecache's parallel,
        // pipelined load (no round trip per log).
        let (orders, mut logs, report) = cache.load_all_with_events::<Logged<kinds::OrderEvents>>()?;
        self.note(&report);
        let mut out = AHashMap::with_capacity(orders.len());
        for stored in orders {
            let logged = logs.remove(stored.id.as_str()).unwrap_or_default();
            let order = self.complete_order_with(stored.value, logged.into_iter().map(|l| l.value).collect());
            out.insert(order.client_order_id(), order);
        }
        Ok(out)
    }

    fn load_accounts_sync(&self) -> R<AHashMap<AccountId, AccountAny>> {
        let mut out = AHashMap::new();
        for account in self.all::<kinds::Accounts>()? {
            let account = self.complete_account(account)?;
            out.insert(account.id(), account);
        }
        Ok(out)
    }

    fn load_positions_sync(&self) -> R<AHashMap<PositionId, Position>> {
        Ok(self.all::<kinds::Positions>()?.into_iter().map(|p| (p.id, p)).collect())
    }

    fn state_map(&self, m: Option<State>) -> AHashMap<String, Bytes> {
        m.map(|m| m.state.into_iter().collect()).unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl CacheDatabaseAdapter for TradecacheDatabase {
    /// Closes tradecache's cache within 30 s: every accepted write is
    /// applied first. Fails when some could not be persisted.
    fn close(&mut self) -> anyhow::Result<()> {
        let Some(cache) = self.cache.take() else {
            return Ok(());
        };
        let report = cache.close(self.opts.close_timeout).map_err(AdapterError::from)?;
        if report.unpersisted > 0 {
            anyhow::bail!("closed with {} write(s) not persisted", report.unpersisted);
        }
        Ok(())
    }

    /// Deletes this trader's (and instance's) keys, never another's and
    /// never `FLUSHDB`, after every write before it (tradecache's `clear`).
    fn flush(&mut self) -> anyhow::Result<()> {
        let timeout = self.opts.close_timeout;
        ok(self.cache().and_then(|c| c.clear(timeout).map_err(AdapterError::from)).map(|_| ()))
    }

    async fn load_all(&self) -> anyhow::Result<CacheMap> {
        Ok(CacheMap {
            currencies: self.load_currencies().await?,
            instruments: self.load_instruments().await?,
            synthetics: self.load_synthetics().await?,
            accounts: self.load_accounts().await?,
            orders: self.load_orders().await?,
            positions: self.load_positions().await?,
            greeks: self.load_greeks().await?,
            yield_curves: self.load_yield_curves().await?,
        })
    }

    async fn load_greeks(&self) -> anyhow::Result<AHashMap<InstrumentId, GreeksData>> {
        ok(self
            .all::<kinds::GreeksEntries>()
            .map(|v| v.into_iter().map(|g| (g.instrument_id, GreeksData::from(g))).collect()))
    }

    async fn load_yield_curves(&self) -> anyhow::Result<AHashMap<String, YieldCurveData>> {
        ok(self
            .all::<kinds::YieldCurves>()
            .map(|v| v.into_iter().map(|y| (y.curve_name.clone(), YieldCurveData::from(y))).collect()))
    }

    fn load(&self) -> anyhow::Result<AHashMap<String, Bytes>> {
        ok(self.all::<kinds::GeneralEntries>().map(|v| v.into_iter().map(|g| (g.key, g.value)).collect()))
    }

    async fn load_currencies(&self) -> anyhow::Result<AHashMap<Ustr, Currency>> {
        ok(self.all::<kinds::Currencies>().map(|v| v.into_iter().map(|c| (c.code, c)).collect()))
    }

    async fn load_instruments(&self) -> anyhow::Result<AHashMap<InstrumentId, InstrumentAny>> {
        ok(self.all::<kinds::Instruments>().map(|v| v.into_iter().map(|i| (i.id(), i)).collect()))
    }

    async fn load_synthetics(&self) -> anyhow::Result<AHashMap<InstrumentId, SyntheticInstrument>> {
        ok(self.all::<kinds::Synthetics>().map(|v| v.into_iter().map(|s| (s.id, s)).collect()))
    }

    async fn load_accounts(&self) -> anyhow::Result<AHashMap<AccountId, AccountAny>> {
        ok(self.load_accounts_sync())
    }

    async fn load_orders(&self) -> anyhow::Result<AHashMap<ClientOrderId, OrderAny>> {
        ok(self.load_orders_sync())
    }

    async fn load_positions(&self) -> anyhow::Result<AHashMap<PositionId, Position>> {
        ok(self.load_positions_sync())
    }

    fn load_index_order_position(&self) -> anyhow::Result<AHashMap<ClientOrderId, Position>> {
        let index = ok(self.index::<kinds::OrderPositions>())?;
        let positions = ok(self.load_positions_sync())?;
        Ok(index
            .into_iter()
            .filter_map(|(coid, pid)| {
                positions.get(&PositionId::new(&pid)).map(|p| (ClientOrderId::new(&coid), p.clone()))
            })
            .collect())
    }

    fn load_index_order_client(&self) -> anyhow::Result<AHashMap<ClientOrderId, ClientId>> {
        ok(self
            .index::<kinds::OrderClients>()
            .map(|m| m.into_iter().map(|(k, v)| (ClientOrderId::new(k), ClientId::new(v))).collect()))
    }

    async fn load_currency(&self, code: &Ustr) -> anyhow::Result<Option<Currency>> {
        ok(self.get::<kinds::Currencies>(code.as_str()))
    }

    async fn load_instrument(&self, instrument_id: &InstrumentId) -> anyhow::Result<Option<InstrumentAny>> {
        ok(self.get::<kinds::Instruments>(&instrument_id.to_string()))
    }

    async fn load_synthetic(
        &self,
        instrument_id: &InstrumentId,
    ) -> anyhow::Result<Option<SyntheticInstrument>> {
        ok(self.get::<kinds::Synthetics>(&instrument_id.to_string()))
    }

    async fn load_account(&self, account_id: &AccountId) -> anyhow::Result<Option<AccountAny>> {
        ok(self
            .get::<kinds::Accounts>(account_id.as_str())
            .and_then(|a| a.map(|a| self.complete_account(a)).transpose()))
    }

    async fn load_order(&self, client_order_id: &ClientOrderId) -> anyhow::Result<Option<OrderAny>> {
        ok(self
            .get::<kinds::Orders>(client_order_id.as_str())
            .and_then(|o| o.map(|o| self.complete_order(o)).transpose()))
    }

    async fn load_position(&self, position_id: &PositionId) -> anyhow::Result<Option<Position>> {
        ok(self.get::<kinds::Positions>(position_id.as_str()))
    }

    fn load_actor(&self, component_id: &ComponentId) -> anyhow::Result<AHashMap<String, Bytes>> {
        ok(self.get::<kinds::Actors>(component_id.as_str()).map(|m| self.state_map(m)))
    }

    fn load_strategy(&self, strategy_id: &StrategyId) -> anyhow::Result<AHashMap<String, Bytes>> {
        ok(self.get::<kinds::Strategies>(strategy_id.as_str()).map(|m| self.state_map(m)))
    }

    fn load_signals(&self, name: &str) -> anyhow::Result<Vec<Signal>> {
        ok(self.series::<kinds::Signals>(name, self.opts.tick_capacity))
    }

    fn load_custom_data(&self, data_type: &DataType) -> anyhow::Result<Vec<CustomData>> {
        let items = ok(self.series::<kinds::Custom>(&data_type.to_string(), self.opts.tick_capacity))?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match CustomData::from_json_bytes(item.json.as_bytes()) {
                Ok(d) => out.push(d),
                Err(e) => self.issue(format!("{}:{data_type}", kinds::Custom::COLLECTION), e.to_string()),
            }
        }
        Ok(out)
    }

    fn load_order_snapshot(&self, client_order_id: &ClientOrderId) -> anyhow::Result<Option<OrderSnapshot>> {
        ok(self.get::<kinds::OrderSnapshots>(client_order_id.as_str()))
    }

    fn load_position_snapshot(&self, position_id: &PositionId) -> anyhow::Result<Option<PositionSnapshot>> {
        ok(self.get::<kinds::PositionSnapshots>(position_id.as_str()))
    }

    fn load_quotes(&self, instrument_id: &InstrumentId) -> anyhow::Result<Vec<QuoteTick>> {
        ok(self.series::<kinds::Quotes>(&instrument_id.to_string(), self.opts.tick_capacity))
    }

    fn load_trades(&self, instrument_id: &InstrumentId) -> anyhow::Result<Vec<TradeTick>> {
        ok(self.series::<kinds::Trades>(&instrument_id.to_string(), self.opts.tick_capacity))
    }

    fn load_funding_rates(&self, instrument_id: &InstrumentId) -> anyhow::Result<Vec<FundingRateUpdate>> {
        ok(self.series::<kinds::FundingRates>(&instrument_id.to_string(), self.opts.bar_capacity))
    }

    fn load_bars(&self, instrument_id: &InstrumentId) -> anyhow::Result<Vec<Bar>> {
        ok(self.series::<kinds::Bars>(&instrument_id.to_string(), self.opts.bar_capacity))
    }

    fn add(&self, key: String, value: Bytes) -> anyhow::Result<()> {
        ok(self.put::<kinds::GeneralEntries>(General { key, value }))
    }

    fn add_currency(&self, currency: &Currency) -> anyhow::Result<()> {
        ok(self.put::<kinds::Currencies>(*currency))
    }

    fn add_instrument(&self, instrument: &InstrumentAny) -> anyhow::Result<()> {
        ok(self.put::<kinds::Instruments>(instrument.clone()))
    }

    fn add_synthetic(&self, synthetic: &SyntheticInstrument) -> anyhow::Result<()> {
        ok(self.put::<kinds::Synthetics>(synthetic.clone()))
    }

    fn add_account(&self, account: &AccountAny) -> anyhow::Result<()> {
        ok(self.put::<kinds::Accounts>(account.clone()))
    }

    fn add_order(&self, order: &OrderAny, client_id: Option<ClientId>) -> anyhow::Result<()> {
        let coid = order.client_order_id();
        ok(self.put::<kinds::Orders>(order.clone()))?;
        if let Some(client_id) = client_id {
            ok(self.index_entry::<kinds::OrderClients>(&coid, client_id.to_string()))?;
        }
        Ok(())
    }

    fn add_order_snapshot(&self, snapshot: &OrderSnapshot) -> anyhow::Result<()> {
        ok(self.put::<kinds::OrderSnapshots>(snapshot.clone()))
    }

    fn add_position(&self, position: &Position) -> anyhow::Result<()> {
        ok(self.put::<kinds::Positions>(position.clone()))
    }

    fn add_position_snapshot(&self, snapshot: &PositionSnapshot) -> anyhow::Result<()> {
        ok(self.put::<kinds::PositionSnapshots>(snapshot.clone()))
    }

    fn add_order_book(&self, order_book: &OrderBook) -> anyhow::Result<()> {
        let deltas = order_book.to_deltas(order_book.ts_last, order_book.ts_last);
        let book = Book {
            instrument_id: order_book.instrument_id,
            book_type: order_book.book_type,
            deltas: deltas.deltas.clone(),
        };
        ok(self.put::<kinds::OrderBooks>(book))
    }

    fn add_signal(&self, signal: &Signal) -> anyhow::Result<()> {
        ok(self.append_series::<kinds::Signals>(signal.name.as_str(), signal.clone()))
    }

    fn add_custom_data(&self, data: &CustomData) -> anyhow::Result<()> {
        let json = serde_json::to_string(data).map_err(|e| decode_err("custom data", e))?;
        ok(self.append_series::<kinds::Custom>(
            &data.data_type.to_string(),
            CustomJson { data_type: data.data_type.to_string(), json },
        ))
    }

    fn add_quote(&self, quote: &QuoteTick) -> anyhow::Result<()> {
        ok(self.append_series::<kinds::Quotes>(&quote.instrument_id.to_string(), *quote))
    }

    fn add_trade(&self, trade: &TradeTick) -> anyhow::Result<()> {
        ok(self.append_series::<kinds::Trades>(&trade.instrument_id.to_string(), *trade))
    }

    fn add_funding_rate(&self, funding_rate: &FundingRateUpdate) -> anyhow::Result<()> {
        ok(self.append_series::<kinds::FundingRates>(&funding_rate.instrument_id.to_string(), *funding_rate))
    }

    fn add_bar(&self, bar: &Bar) -> anyhow::Result<()> {
        ok(self.append_series::<kinds::Bars>(&bar.bar_type.instrument_id().to_string(), *bar))
    }

    fn add_greeks(&self, greeks: &GreeksData) -> anyhow::Result<()> {
        ok(self.put::<kinds::GreeksEntries>(Greeks::from(greeks)))
    }

    fn add_yield_curve(&self, yield_curve: &YieldCurveData) -> anyhow::Result<()> {
        ok(self.put::<kinds::YieldCurves>(YieldCurve::from(yield_curve)))
    }

    fn delete_actor(&self, component_id: &ComponentId) -> anyhow::Result<()> {
        ok(self.delete::<kinds::Actors>(component_id.as_str()))
    }

    fn delete_strategy(&self, component_id: &StrategyId) -> anyhow::Result<()> {
        ok(self.delete::<kinds::Strategies>(component_id.as_str()))
    }

    /// Deletes the order, its event log and its index entries.
    fn delete_order(&self, client_order_id: &ClientOrderId) -> anyhow::Result<()> {
        let id = client_order_id.as_str();
        ok(self.delete::<kinds::Orders>(id))?;
        ok(self.delete::<kinds::OrderSnapshots>(id))?;
        ok(self.delete::<kinds::VenueOrderIds>(id))?;
        ok(self.delete::<kinds::OrderPositions>(id))?;
        ok(self.delete::<kinds::OrderClients>(id))
    }

    fn delete_position(&self, position_id: &PositionId) -> anyhow::Result<()> {
        ok(self.delete::<kinds::Positions>(position_id.as_str()))?;
        ok(self.delete::<kinds::PositionSnapshots>(position_id.as_str()))
    }

    /// Records the event id as deleted: loads of the account leave it out
    /// (the account is rebuilt from its remaining events).
    fn delete_account_event(&self, account_id: &AccountId, event_id: &str) -> anyhow::Result<()> {
        let mut tomb = ok(self.get::<kinds::AccountTombstones>(account_id.as_str()))?
            .unwrap_or_else(|| Tombstones { account_id: account_id.to_string(), event_ids: Vec::new() });
        if !tomb.event_ids.iter().any(|e| e == event_id) {
            tomb.event_ids.push(event_id.to_string());
        }
        ok(self.put::<kinds::AccountTombstones>(tomb))
    }

    fn index_venue_order_id(
        &self,
        client_order_id: ClientOrderId,
        venue_order_id: VenueOrderId,
    ) -> anyhow::Result<()> {
        ok(self.index_entry::<kinds::VenueOrderIds>(&client_order_id, venue_order_id.to_string()))
    }

    fn index_order_position(
        &self,
        client_order_id: ClientOrderId,
        position_id: PositionId,
    ) -> anyhow::Result<()> {
        ok(self.index_entry::<kinds::OrderPositions>(&client_order_id, position_id.to_string()))
    }

    /// Writes every actor state staged with
    /// [`TradecacheDatabase::stage_actor_state`] since the last call.
    fn update_actor(&self) -> anyhow::Result<()> {
        let staged = std::mem::take(
            &mut *self.staged_actors.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (id, state) in staged {
            ok(self.put::<kinds::Actors>(State { id: id.to_string(), state }))?;
        }
        Ok(())
    }

    /// Writes every strategy state staged with
    /// [`TradecacheDatabase::stage_strategy_state`] since the last call.
    fn update_strategy(&self) -> anyhow::Result<()> {
        let staged = std::mem::take(
            &mut *self.staged_strategies.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (id, state) in staged {
            ok(self.put::<kinds::Strategies>(State { id: id.to_string(), state }))?;
        }
        Ok(())
    }

    /// Appends the account's last event to its log (with
    /// `persist_account_events`), or replaces the stored account (without).
    fn update_account(&self, account: &AccountAny) -> anyhow::Result<()> {
        if self.opts.persist_account_events {
            if let Some(event) = account.last_event() {
                return ok(self.append::<kinds::AccountEvents>(account.id().as_str(), event));
            }
        }
        ok(self.put::<kinds::Accounts>(account.clone()))
    }

    /// Appends the event to its order's log; never reads the log.
    fn update_order(&self, order_event: &OrderEventAny) -> anyhow::Result<()> {
        ok(self.append::<kinds::OrderEvents>(order_event.client_order_id().as_str(), order_event.clone()))
    }

    fn update_position(&self, position: &Position) -> anyhow::Result<()> {
        ok(self.put::<kinds::Positions>(position.clone()))
    }

    fn snapshot_order_state(&self, order: &OrderAny) -> anyhow::Result<()> {
        let snapshot = OrderSnapshot::from(order.clone());
        self.add_order_snapshot(&snapshot)
    }

    fn snapshot_position_state(&self, position: &Position) -> anyhow::Result<()> {
        let snapshot = PositionSnapshot::from(position, None);
        self.add_position_snapshot(&snapshot)
    }

    fn heartbeat(&self, timestamp: UnixNanos) -> anyhow::Result<()> {
        ok(self.put::<kinds::Health>(crate::records::Beat { ts: timestamp.as_u64() }))
    }
}
