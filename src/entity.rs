//! The traits that make a type persistable, and the by-value message
//! payloads the hot path moves through the channel.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{self, EncodeError};
use crate::config::Encoding;
use crate::model::{
    Account, AccountEvent, Bar, Instrument, Order, OrderEvent, Position, QuoteTick, TradeTick, UnixNanos,
};

/// A type whose latest state is kept as one Redis string
/// (`{trader}:{COLLECTION}:{id}`) and listed in `{trader}:index:{COLLECTION}`.
///
/// Implement it for your own types to persist them next to the reference
/// model; the value is cloned and boxed on the calling thread, then encoded on
/// the flusher thread. (The reference types in [`crate::model`] travel by
/// value without allocating.)
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use tradecache::Entity;
///
/// #[derive(Clone, Serialize, Deserialize)]
/// struct Strategy { id: String, state: u32 }
///
/// impl Entity for Strategy {
///     const COLLECTION: &'static str = "strategies";
///     fn id(&self) -> &str { &self.id }
/// }
/// # let s = Strategy { id: "EMA-1".into(), state: 1 };
/// # assert_eq!(s.id(), "EMA-1");
/// ```
pub trait Entity: Serialize + DeserializeOwned + Clone + Send + 'static {
    /// The collection name, part of every key: `"positions"`. It must be a
    /// valid [`crate::Ident`] and must not be `index` or `writer`.
    const COLLECTION: &'static str;

    /// The entity's id within its collection; validated on every write.
    fn id(&self) -> &str;

    /// Whether the entity is done: a filled or canceled order, a flat
    /// position. Closed entities leave `{trader}:index:{COLLECTION}:open`
    /// (kept by the flusher in the same transaction as the write), so
    /// [`crate::Cache::load_open`] skips them, and
    /// [`crate::Cache::purge_closed`] may delete them once they are old
    /// enough. A closed entity written again as open (a position reopened)
    /// joins the open index again.
    ///
    /// Defaults to `false`: an entity that never closes is always loaded
    /// and never purged. Evaluated on the flusher thread, not the caller's.
    fn is_closed(&self) -> bool {
        false
    }

    /// When the entity last changed (nanoseconds since the epoch), the age
    /// [`crate::Cache::purge_closed`] compares with its cutoff.
    ///
    /// Defaults to `None`: the time the flusher wrote the value is used.
    fn last_updated(&self) -> Option<UnixNanos> {
        None
    }

    /// Turns a clone of the value into a channel payload. The default boxes
    /// it; there is no need to override this.
    #[doc(hidden)]
    fn to_record(&self) -> Record {
        Record::Dyn(Box::new(self.clone()))
    }
}

/// An event appended to the log of an [`Entity`]
/// (`{trader}:{Of::COLLECTION}:{id}:events`, a Redis list in append order).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use tradecache::{Entity, Event};
/// # #[derive(Clone, Serialize, Deserialize)]
/// # struct Strategy { id: String }
/// # impl Entity for Strategy {
/// #     const COLLECTION: &'static str = "strategies";
/// #     fn id(&self) -> &str { &self.id }
/// # }
///
/// #[derive(Clone, Serialize, Deserialize)]
/// struct Signal { seq: u64, value: i64 }
///
/// impl Event for Signal {
///     type Of = Strategy;
///     fn event_id(&self) -> u64 { self.seq }
/// }
/// # assert_eq!(Signal { seq: 7, value: 1 }.event_id(), 7);
/// ```
pub trait Event: Serialize + DeserializeOwned + Clone + Send + 'static {
    /// The entity whose log this event joins.
    type Of: Entity;

    /// Unique within one entity's log; recovery drops repeats of an id.
    fn event_id(&self) -> u64;

    /// Turns a clone of the value into a channel payload. The default boxes
    /// it; there is no need to override this.
    #[doc(hidden)]
    fn to_record(&self) -> EventRecord {
        EventRecord::Dyn(Box::new(self.clone()))
    }
}

/// Which configured capacity bounds a market-data series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeriesCapacity {
    /// `tick_capacity` (quote and trade ticks).
    Ticks,
    /// `bar_capacity` (bars).
    Bars,
}

/// Market data kept in a capped Redis list per series
/// (`{trader}:{COLLECTION}:{series_id}:events`): every append also trims
/// the list to the newest `tick_capacity` or `bar_capacity` entries, in the
/// same transaction, so Redis memory stays bounded however long the
/// engine runs.
///
/// The crate's [`QuoteTick`], [`TradeTick`] and [`Bar`] implement it (and
/// travel through the channel by value, without allocating); a type of
/// your own is cloned and boxed.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use tradecache::{MarketData, SeriesCapacity};
///
/// #[derive(Clone, Serialize, Deserialize)]
/// struct FundingRate { instrument_id: String, rate_bps: i32, ts: u64 }
///
/// impl MarketData for FundingRate {
///     const COLLECTION: &'static str = "funding";
///     const CAPACITY: SeriesCapacity = SeriesCapacity::Bars;
///     fn series_id(&self) -> &str { &self.instrument_id }
/// }
/// # let f = FundingRate { instrument_id: "BTCUSDT-PERP.BINANCE".into(), rate_bps: 1, ts: 0 };
/// # assert_eq!(f.series_id(), "BTCUSDT-PERP.BINANCE");
/// ```
pub trait MarketData: Serialize + DeserializeOwned + Clone + Send + 'static {
    /// The collection name, part of the key: `"quotes"`. It must be a valid
    /// [`crate::Ident`] and must not be `index` or `writer`.
    const COLLECTION: &'static str;

    /// The capacity that bounds each series.
    const CAPACITY: SeriesCapacity;

    /// The series this item belongs to (an instrument id, a bar type);
    /// validated on every append.
    fn series_id(&self) -> &str;

    /// Turns a clone of the value into a channel payload. The default boxes
    /// it; there is no need to override this.
    #[doc(hidden)]
    fn to_record(&self) -> EventRecord {
        EventRecord::Series(Box::new(self.clone()), Self::CAPACITY)
    }
}

/// Object-safe view of a user entity, encoded on the flusher thread.
#[doc(hidden)]
pub trait DynEntity: Send {
    fn collection(&self) -> &'static str;
    fn id(&self) -> &str;
    fn is_closed(&self) -> bool;
    fn last_updated(&self) -> Option<UnixNanos>;
    fn encode(&self, encoding: Encoding, out: &mut Vec<u8>) -> Result<(), EncodeError>;
}

impl<T: Entity> DynEntity for T {
    fn collection(&self) -> &'static str {
        T::COLLECTION
    }
    fn id(&self) -> &str {
        Entity::id(self)
    }
    fn is_closed(&self) -> bool {
        Entity::is_closed(self)
    }
    fn last_updated(&self) -> Option<UnixNanos> {
        Entity::last_updated(self)
    }
    fn encode(&self, encoding: Encoding, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        codec::encode(self, encoding, out)
    }
}

/// Object-safe view of a user event, encoded on the flusher thread.
#[doc(hidden)]
pub trait DynEvent: Send {
    fn encode(&self, encoding: Encoding, out: &mut Vec<u8>) -> Result<(), EncodeError>;
}

impl<E: Event> DynEvent for E {
    fn encode(&self, encoding: Encoding, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        codec::encode(self, encoding, out)
    }
}

/// Object-safe view of a user market-data type, encoded on the flusher
/// thread. (A separate trait: a type could be both an event and market
/// data.)
#[doc(hidden)]
pub trait DynSeries: Send {
    fn encode(&self, encoding: Encoding, out: &mut Vec<u8>) -> Result<(), EncodeError>;
}

impl<D: MarketData> DynSeries for D {
    fn encode(&self, encoding: Encoding, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        codec::encode(self, encoding, out)
    }
}

/// A snapshot write as it travels through the channel: the hot reference
/// types (orders, positions, instruments) by value, without allocating;
/// accounts (large, and rarely written) and user types boxed.
#[doc(hidden)]
pub enum Record {
    Instrument(Instrument),
    Account(Box<Account>),
    Order(Order),
    Position(Position),
    Dyn(Box<dyn DynEntity>),
}

impl Record {
    pub(crate) fn collection(&self) -> &'static str {
        match self {
            Record::Instrument(_) => Instrument::COLLECTION,
            Record::Account(_) => Account::COLLECTION,
            Record::Order(_) => Order::COLLECTION,
            Record::Position(_) => Position::COLLECTION,
            Record::Dyn(d) => d.collection(),
        }
    }

    pub(crate) fn id(&self) -> &str {
        match self {
            Record::Instrument(v) => Entity::id(v),
            Record::Account(v) => Entity::id(v.as_ref()),
            Record::Order(v) => Entity::id(v),
            Record::Position(v) => Entity::id(v),
            Record::Dyn(d) => d.id(),
        }
    }

    /// [`Entity::is_closed`], asked on the flusher thread.
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Record::Instrument(v) => Entity::is_closed(v),
            Record::Account(v) => Entity::is_closed(v.as_ref()),
            Record::Order(v) => Entity::is_closed(v),
            Record::Position(v) => Entity::is_closed(v),
            Record::Dyn(d) => d.is_closed(),
        }
    }

    /// [`Entity::last_updated`], asked on the flusher thread.
    pub(crate) fn last_updated(&self) -> Option<UnixNanos> {
        match self {
            Record::Instrument(v) => Entity::last_updated(v),
            Record::Account(v) => Entity::last_updated(v.as_ref()),
            Record::Order(v) => Entity::last_updated(v),
            Record::Position(v) => Entity::last_updated(v),
            Record::Dyn(d) => d.last_updated(),
        }
    }

    pub(crate) fn encode(&self, encoding: Encoding, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Record::Instrument(v) => codec::encode(v, encoding, out),
            Record::Account(v) => codec::encode(v, encoding, out),
            Record::Order(v) => codec::encode(v, encoding, out),
            Record::Position(v) => codec::encode(v, encoding, out),
            Record::Dyn(d) => d.encode(encoding, out),
        }
    }
}

/// An event (or market-data) append as it travels through the channel.
#[doc(hidden)]
pub enum EventRecord {
    Order(OrderEvent),
    Account(Box<AccountEvent>),
    Dyn(Box<dyn DynEvent>),
    Quote(QuoteTick),
    Trade(TradeTick),
    Bar(Bar),
    Series(Box<dyn DynSeries>, SeriesCapacity),
}

impl EventRecord {
    pub(crate) fn encode(&self, encoding: Encoding, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            EventRecord::Order(v) => codec::encode(v, encoding, out),
            EventRecord::Account(v) => codec::encode(v, encoding, out),
            EventRecord::Dyn(d) => d.encode(encoding, out),
            EventRecord::Quote(v) => codec::encode(v, encoding, out),
            EventRecord::Trade(v) => codec::encode(v, encoding, out),
            EventRecord::Bar(v) => codec::encode(v, encoding, out),
            EventRecord::Series(d, _) => d.encode(encoding, out),
        }
    }

    /// Market data (capped lists), as opposed to an entity's event log
    /// (which `publish_events` also sends to a stream).
    pub(crate) fn is_series(&self) -> bool {
        matches!(
            self,
            EventRecord::Quote(_) | EventRecord::Trade(_) | EventRecord::Bar(_) | EventRecord::Series(..)
        )
    }

    /// How many entries its list keeps (`LTRIM` after the `RPUSH`): the
    /// capacity for market data, `max_account_events` for account events;
    /// `None` for other event logs, which are never trimmed.
    pub(crate) fn cap(&self, cfg: &crate::config::Config) -> Option<usize> {
        let capacity = match self {
            EventRecord::Quote(_) | EventRecord::Trade(_) => SeriesCapacity::Ticks,
            EventRecord::Bar(_) => SeriesCapacity::Bars,
            EventRecord::Series(_, c) => *c,
            EventRecord::Account(_) => return cfg.max_account_events,
            EventRecord::Order(_) | EventRecord::Dyn(_) => return None,
        };
        Some(match capacity {
            SeriesCapacity::Ticks => cfg.tick_capacity,
            SeriesCapacity::Bars => cfg.bar_capacity,
        })
    }
}
