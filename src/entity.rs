//! The traits that make a type persistable, and their implementations for
//! the reference model (which itself knows nothing of persistence). The
//! channel payloads they turn into are in `pipeline/msg.rs`.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{self, EncodeError};
use crate::encoding::Encoding;
use crate::model::{
    Account, AccountEvent, Bar, Instrument, Order, OrderEvent, Position, PositionSide, QuoteTick, TradeTick,
    UnixNanos,
};
pub use crate::pipeline::msg::SeriesCapacity;
use crate::pipeline::msg::{DynEntity, DynEvent, DynSeries, EventRecord, Record};

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

// The reference model's implementations: the hot types travel by value.

macro_rules! entity {
    ($t:ty, $coll:literal, $field:ident, $rec:expr) => {
        entity!($t, $coll, $field, $rec, |_s: &$t| false, |_s: &$t| None);
    };
    ($t:ty, $coll:literal, $field:ident, $rec:expr, $closed:expr, $updated:expr) => {
        impl Entity for $t {
            const COLLECTION: &'static str = $coll;
            fn id(&self) -> &str {
                &self.$field
            }
            fn is_closed(&self) -> bool {
                $closed(self)
            }
            fn last_updated(&self) -> Option<UnixNanos> {
                $updated(self)
            }
            fn to_record(&self) -> Record {
                $rec(self.clone())
            }
        }
    };
}

entity!(Instrument, "instruments", id, Record::Instrument);
// An order is closed once rejected, canceled, expired or filled; a
// position once flat. Both changed last at `ts_last`.
entity!(Order, "orders", client_order_id, Record::Order, |o: &Order| o.status.is_closed(), |o: &Order| Some(
    o.ts_last
));
entity!(
    Position,
    "positions",
    id,
    Record::Position,
    |p: &Position| p.side == PositionSide::Flat,
    |p: &Position| Some(p.ts_last)
);
// Accounts are large (fixed slots) and rarely written: boxed on the channel.
entity!(Account, "accounts", id, |a| Record::Account(Box::new(a)));

impl Event for OrderEvent {
    type Of = Order;
    fn event_id(&self) -> u64 {
        self.event_id
    }
    fn to_record(&self) -> EventRecord {
        EventRecord::Order(self.clone())
    }
}

impl Event for AccountEvent {
    type Of = Account;
    fn event_id(&self) -> u64 {
        self.event_id
    }
    fn to_record(&self) -> EventRecord {
        EventRecord::Account(Box::new(self.clone()))
    }
}

macro_rules! market_data {
    ($t:ty, $coll:literal, $cap:expr, $field:ident, $rec:expr) => {
        impl MarketData for $t {
            const COLLECTION: &'static str = $coll;
            const CAPACITY: SeriesCapacity = $cap;
            fn series_id(&self) -> &str {
                &self.$field
            }
            fn to_record(&self) -> EventRecord {
                $rec(self.clone())
            }
        }
    };
}

market_data!(QuoteTick, "quotes", SeriesCapacity::Ticks, instrument_id, EventRecord::Quote);
market_data!(TradeTick, "trades", SeriesCapacity::Ticks, instrument_id, EventRecord::Trade);
market_data!(Bar, "bars", SeriesCapacity::Bars, bar_type, EventRecord::Bar);

// The object-safe views the channel payloads use (`pipeline/msg.rs`).

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

impl<E: Event> DynEvent for E {
    fn encode(&self, encoding: Encoding, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        codec::encode(self, encoding, out)
    }
}

impl<D: MarketData> DynSeries for D {
    fn encode(&self, encoding: Encoding, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        codec::encode(self, encoding, out)
    }
}
