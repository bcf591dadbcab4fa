//! Point reads: `get`, `get_events`, and the newest market data
//! (`load_ticks`, `load_bars`), each one round trip on a read connection of
//! the cache's own (never the flusher's). Read-your-writes: a read first
//! waits until every write accepted before it is acknowledged
//! (`Cache::settle_reads`), with no bookkeeping on the write path.

use std::time::Instant;

use redis::Value;

use crate::entity::{Entity, Event, MarketData};
use crate::error::{Error, Result};
use crate::model::Bar;
use crate::net::Packer;
use crate::read::{decode_events, get_reply, reply_error, LoadEvent, LoadIssue, LoadItem, LoadReport};
use crate::Cache;

impl Cache {
    /// One round trip on the read connection (`net/read_link.rs`).
    pub(super) fn read(&self, pack: impl Fn(&mut Packer)) -> Result<Value> {
        let slot_key = || self.keys().writer(&self.config().writer_id);
        Ok(self.reads.pipeline(self.config(), slot_key, pack)?.pop().unwrap_or(Value::Nil))
    }

    /// The value of `key` (one `GET`, read-your-writes), or `None`.
    pub(super) fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.settle_reads()?;
        let reply = self.read(|p| p.cmd(&[b"GET", key.as_bytes()]))?;
        get_reply(reply, key, |e| server_error(self, key, e))
    }

    /// The log at `key` (one `LRANGE`, read-your-writes), decoded;
    /// [`Error::Codec`] names the first entry that does not decode.
    pub(super) fn get_log<E: LoadEvent>(&self, key: &str) -> Result<Vec<E>> {
        self.settle_reads()?;
        let reply = self.read(|p| p.cmd(&[b"LRANGE", key.as_bytes(), b"0", b"-1"]))?;
        if let Value::ServerError(e) = &reply {
            return Err(server_error(self, key, e));
        }
        let mut report = LoadReport::default();
        let events = decode_events::<E>(reply, key, 0, self.config().encoding, &mut report);
        match report.issues.into_iter().next() {
            None => Ok(events),
            Some(issue) => Err(Error::Codec { key: issue.key, detail: issue.problem }),
        }
    }

    /// The latest stored state of entity `id`, or `None` when it has none.
    ///
    /// One `GET` on the cache's read connection (opened at the first read,
    /// never the flusher's). Read-your-writes within the process: after a
    /// [`Cache::put`] of the same id, acknowledged or merely accepted, `get`
    /// returns that value or a newer one. The read first waits until every
    /// write accepted before it is acknowledged, which costs nothing when
    /// none is pending, and at most `response_timeout` +
    /// `reconnect_backoff_max` when Redis is slow or reconnecting. A write
    /// the flusher dropped (see [`Cache::take_dropped`]) is not in Redis, so
    /// `get` returns the value before it.
    ///
    /// ```no_run
    /// # use tradecache::{Cache, Config};
    /// # use tradecache::model::Position;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = Cache::open(Config::from_env()?)?;
    /// let p = Position::example("P-1");
    /// cache.put(&p)?;                                   // accepted, not yet in Redis
    /// assert_eq!(cache.get::<Position>("P-1")?, Some(p)); // read-your-writes
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`]; [`Error::WaitTimeout`] when earlier writes are
    /// still unacknowledged after the bound above; [`Error::Closed`] when
    /// the flusher has stopped; connection failures; [`Error::Codec`]
    /// naming the key when the stored value does not decode as `T` or holds
    /// another id; [`Error::Redis`] for a server error (a key of another
    /// type, say).
    pub fn get<T: Entity>(&self, id: &str) -> Result<Option<T>> {
        let () = crate::entity::Checked::<T>::ENTITY;
        let id = crate::Ident::new(id)?;
        let key = self.keys().entity(T::COLLECTION, &id);
        let Some(b) = self.get_bytes(&key)? else { return Ok(None) };
        T::decode_item(b, &id, self.config().encoding)
            .map(Some)
            .map_err(|detail| Error::Codec { key, detail })
    }

    /// The event log of entity `id` (`E::Of`'s collection), in append
    /// order, repeated event ids dropped; empty when there is none.
    ///
    /// One `LRANGE` on the read connection, read-your-writes as
    /// [`Cache::get`] (an accepted [`Cache::append`] is in the result).
    ///
    /// # Errors
    ///
    /// As [`Cache::get`]; [`Error::Codec`] names the first entry that does
    /// not decode (`key[index]`).
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
    /// cache.append("O-1", &event)?;
    /// // No flush needed: a read sees every write accepted before it.
    /// let events = cache.get_events::<OrderEvent>("O-1")?;
    /// assert_eq!(events.last(), Some(&event));
    /// # Ok(()) }
    /// ```
    pub fn get_events<E: Event>(&self, id: &str) -> Result<Vec<E>> {
        let () = crate::entity::Checked::<E::Of>::ENTITY;
        crate::ident::validate(id)?;
        self.get_log(&self.keys().events(<E::Of as Entity>::COLLECTION, id))
    }

    /// The newest `n` entries of a market-data series (quote or trade
    /// ticks of an instrument, or a type of your own), oldest first: what an
    /// indicator needs to warm up after a restart. At most the configured
    /// capacity is stored, so at most that many come back.
    ///
    /// One `LRANGE … -n -1` on the read connection, read-your-writes as
    /// [`Cache::get`]. Entries that do not decode are listed in the report
    /// (or fail the call under `strict_load`), as for [`Cache::load`].
    ///
    /// ```no_run
    /// # use tradecache::{Cache, Config};
    /// # use tradecache::model::QuoteTick;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?)?;
    /// let (quotes, report) = cache.load_ticks::<QuoteTick>("BTCUSDT-PERP.BINANCE", 1_000)?;
    /// assert!(quotes.len() <= 1_000 && report.is_clean());
    /// assert!(quotes.windows(2).all(|w| w[0].ts_event <= w[1].ts_event));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] for a bad series id; otherwise as
    /// [`Cache::get`], and [`Error::Load`] under `strict_load`.
    pub fn load_ticks<D: MarketData>(&self, series_id: &str, n: usize) -> Result<(Vec<D>, LoadReport)> {
        let () = crate::entity::Checked::<D>::SERIES;
        crate::ident::validate(series_id)?;
        let start = Instant::now();
        let mut report = LoadReport::default();
        if n == 0 {
            return Ok((Vec::new(), report));
        }
        self.settle_reads()?;
        let key = self.keys().events(D::COLLECTION, series_id);
        let from = format!("-{n}");
        let reply = self.read(|p| p.cmd(&[b"LRANGE", key.as_bytes(), from.as_bytes(), b"-1"]))?;
        report.round_trips = 1;
        let items = match reply {
            Value::Array(v) => v,
            Value::Nil => Vec::new(),
            Value::ServerError(e) => return Err(server_error(self, &key, &e)),
            other => return Err(Error::Codec { key, detail: format!("unexpected reply {other:?}") }),
        };
        report.keys_read = 1;
        let mut out = Vec::with_capacity(items.len());
        let len = items.len();
        for (i, item) in items.into_iter().enumerate() {
            let decoded = match item {
                Value::BulkString(b) => crate::store::codec::decode::<D>(&b, self.config().encoding),
                item => Err(format!("unexpected entry {item:?}")),
            };
            match decoded {
                Ok(v) => out.push(v),
                Err(problem) => {
                    report.issues.push(LoadIssue { key: format!("{key}[{i} of the newest {len}]"), problem })
                }
            }
        }
        report.elapsed = start.elapsed();
        crate::read::check_strict(self.config(), &report)?;
        Ok((out, report))
    }

    /// The newest `n` bars of `bar_type`, oldest first: as
    /// [`Cache::load_ticks`] for [`Bar`].
    ///
    /// # Errors
    ///
    /// As [`Cache::load_ticks`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// use tradecache::model::{Bar, UnixNanos};
    /// let bar_type = "BTCUSDT-PERP.BINANCE-1-MINUTE-LAST-EXTERNAL";
    /// for ts in 1..=3 {
    ///     cache.append_market_data(&Bar::example(bar_type, UnixNanos(ts)))?;
    /// }
    /// let (bars, _report) = cache.load_bars(bar_type, 2)?;
    /// assert_eq!(bars.len(), 2);
    /// assert!(bars[0].ts_event < bars[1].ts_event); // oldest first
    /// # Ok(()) }
    /// ```
    pub fn load_bars(&self, bar_type: &str, n: usize) -> Result<(Vec<Bar>, LoadReport)> {
        self.load_ticks::<Bar>(bar_type, n)
    }
}

/// A server's error reply to a read of `key`.
pub(super) fn server_error(cache: &Cache, key: &str, e: &redis::ServerError) -> Error {
    reply_error(&cache.config().redacted_url(), crate::ErrorKind::Server, key, e)
}
