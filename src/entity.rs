//! The traits that make a type persistable, and their implementations for
//! the reference model (which itself knows nothing of persistence). The
//! channel payloads they turn into are in `channel/msg.rs`.

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use crate::channel::msg::SeriesCapacity;
use crate::channel::msg::{DynEntity, DynEvent, EventRecord, Record};
use crate::model::{
    Account, AccountEvent, Bar, Instrument, Order, OrderEvent, Position, PositionSide, QuoteTick, TradeTick,
    UnixNanos,
};
use crate::store::codec::{self, EncodeError, Encoding};
use crate::store::keys;

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
    /// The collection name, part of every key: `"positions"`.
    ///
    /// The rule for every collection name, of entities and of
    /// [`MarketData`] alike (docs/usage.md, "Keys"):
    ///
    /// - 1 to 256 bytes of ASCII letters, digits and punctuation other than
    ///   `:`, `{` and `}`: no whitespace, control or non-ASCII characters,
    ///   since the name is part of a Redis key;
    /// - not a name the key layout uses itself: `index`, `writer`, `stream`,
    ///   `heartbeat` (an entity `heartbeat` with the writer id as its id
    ///   would be the writer's heartbeat key, one `stream` with id `orders`
    ///   the orders' event stream);
    /// - for an entity, not a market-data series' collection: `quotes`,
    ///   `trades`, `bars`;
    /// - for market data, not a reference entity's collection
    ///   (`instruments`, `accounts`, `orders`, `positions`: the lists would
    ///   be their event logs), and `quotes`, `trades`, `bars` only for the
    ///   crate's own [`QuoteTick`], [`TradeTick`] and [`Bar`].
    ///
    /// The check runs at compile time: a program that writes or reads a
    /// type with a bad name (`put`, `append`, `delete`, `get`, `get_events`,
    /// `load_events`, `append_market_data`, `load_ticks`) does not build
    /// (`error[E0080]` naming the type, with the reason; `cargo check`
    /// may not show it, `cargo build` does):
    ///
    /// ```compile_fail,E0080
    /// # use serde::{Deserialize, Serialize};
    /// # use tradecache::{Cache, Config, Entity};
    /// #[derive(Clone, Serialize, Deserialize)]
    /// struct Beat { writer: String }
    ///
    /// impl Entity for Beat {
    ///     const COLLECTION: &'static str = "heartbeat"; // the layout's own
    ///     fn id(&self) -> &str { &self.writer }
    /// }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?)?;
    /// cache.put(&Beat { writer: "main".into() })?; // error[E0080]
    /// # Ok(()) }
    /// ```
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

    /// As [`Entity::to_record`].
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
    /// The collection name, part of the key: `"quotes"`. Checked at compile
    /// time by the rule of [`Entity::COLLECTION`].
    const COLLECTION: &'static str;

    /// The capacity that bounds each series.
    const CAPACITY: SeriesCapacity;

    /// Set by the crate's [`QuoteTick`], [`TradeTick`] and [`Bar`], which
    /// own the `quotes`, `trades` and `bars` collections.
    #[doc(hidden)]
    const CRATE_SERIES: bool = false;

    /// The series this item belongs to (an instrument id, a bar type);
    /// validated on every append.
    fn series_id(&self) -> &str;

    /// As [`Entity::to_record`].
    #[doc(hidden)]
    fn to_record(&self) -> EventRecord {
        EventRecord::Series(Box::new(self.clone()), Self::CAPACITY)
    }
}

// The reference model's implementations: the hot types travel by value.

macro_rules! entity {
    ($t:ty, $coll:literal, $field:ident, $rec:expr $(, $closed:expr, $ts:ident)?) => {
        impl Entity for $t {
            const COLLECTION: &'static str = $coll;
            fn id(&self) -> &str {
                &self.$field
            }
            $(
                fn is_closed(&self) -> bool {
                    $closed(self)
                }
                fn last_updated(&self) -> Option<UnixNanos> {
                    Some(self.$ts)
                }
            )?
            fn to_record(&self) -> Record {
                $rec(self.clone())
            }
        }
    };
}

entity!(Instrument, "instruments", id, Record::Instrument);
// An order is closed once rejected, canceled, expired or filled; a
// position once flat. Both changed last at `ts_last`.
entity!(Order, "orders", client_order_id, Record::Order, |o: &Order| o.status.is_closed(), ts_last);
entity!(Position, "positions", id, Record::Position, |p: &Position| p.side == PositionSide::Flat, ts_last);
// Accounts are large (fixed slots) and rarely written: boxed on the channel.
entity!(Account, "accounts", id, |a| Record::Account(Box::new(a)));

macro_rules! event {
    ($t:ty, $of:ty, $rec:expr) => {
        impl Event for $t {
            type Of = $of;
            fn event_id(&self) -> u64 {
                self.event_id
            }
            fn to_record(&self) -> EventRecord {
                $rec(self.clone())
            }
        }
    };
}

event!(OrderEvent, Order, EventRecord::Order);
event!(AccountEvent, Account, |e| EventRecord::Account(Box::new(e)));

macro_rules! market_data {
    ($t:ty, $coll:literal, $cap:expr, $field:ident, $rec:expr) => {
        impl MarketData for $t {
            const COLLECTION: &'static str = $coll;
            const CAPACITY: SeriesCapacity = $cap;
            const CRATE_SERIES: bool = true;
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

// The collection rule of `Entity::COLLECTION`, evaluated at compile time.

/// What a collection name is checked as.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum CollectionOf {
    /// An [`Entity`]'s (and so its events' log).
    Entity,
    /// A [`MarketData`] type of the user's.
    Series,
    /// One of the crate's own market-data types.
    CrateSeries,
}

/// Whether `name` is one of `names` (loops: `==` on slices is not `const`).
const fn one_of(name: &[u8], names: &[&str]) -> bool {
    let mut i = 0;
    while i < names.len() {
        let n = names[i].as_bytes();
        let mut j = 0;
        while j < n.len() && n.len() == name.len() && n[j] == name[j] {
            j += 1;
        }
        if j == n.len() && n.len() == name.len() {
            return true;
        }
        i += 1;
    }
    false
}

/// Why `name` cannot be a collection of `of`, or `None` when it can (the
/// rule of [`Entity::COLLECTION`]).
pub(crate) const fn collection_problem(name: &str, of: CollectionOf) -> Option<&'static str> {
    let b = name.as_bytes();
    if b.is_empty() {
        return Some("the collection name is empty");
    }
    if b.len() > crate::ident::MAX_LEN {
        return Some("the collection name is longer than 256 bytes");
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !c.is_ascii_graphic() || c == b':' || c == b'{' || c == b'}' {
            return Some(
                "the collection name may hold only ASCII letters, digits and punctuation other than ':', \
                 '{' and '}' (no whitespace, control or non-ASCII characters): it is part of every key",
            );
        }
        i += 1;
    }
    if one_of(b, &keys::LAYOUT_NAMES) {
        return Some(
            "the collection name is one the key layout uses itself (index, writer, stream, heartbeat): \
             its keys would be the layout's own",
        );
    }
    match of {
        CollectionOf::Entity if one_of(b, &keys::MARKET_DATA_COLLECTIONS) => Some(
            "an entity's collection may not be a market-data series' (quotes, trades, bars): its event \
             logs would be those series",
        ),
        CollectionOf::Series | CollectionOf::CrateSeries if one_of(b, &keys::ENTITY_COLLECTIONS) => Some(
            "a market-data collection may not be a reference entity's (instruments, accounts, orders, \
             positions): its lists would be their event logs",
        ),
        CollectionOf::Series if one_of(b, &keys::MARKET_DATA_COLLECTIONS) => Some(
            "quotes, trades and bars are the collections of the crate's QuoteTick, TradeTick and Bar: a \
             type of your own would mix its items into their lists",
        ),
        _ => None,
    }
}

const fn refuse(problem: Option<&'static str>) {
    if let Some(why) = problem {
        panic!("{}", why);
    }
}

/// The compile-time check of a type's collection name: the calls that
/// build keys from it refer to [`Checked::ENTITY`] or [`Checked::SERIES`],
/// so a bad name fails the build where such a call is instantiated.
pub(crate) struct Checked<T>(std::marker::PhantomData<T>);

impl<T: Entity> Checked<T> {
    /// Fails to evaluate when `T::COLLECTION` breaks the rule.
    pub(crate) const ENTITY: () = refuse(collection_problem(T::COLLECTION, CollectionOf::Entity));
}

impl<D: MarketData> Checked<D> {
    /// Fails to evaluate when `D::COLLECTION` breaks the rule.
    pub(crate) const SERIES: () = refuse(collection_problem(
        D::COLLECTION,
        if D::CRATE_SERIES { CollectionOf::CrateSeries } else { CollectionOf::Series },
    ));
}

// The object-safe views the channel payloads use (`channel/msg.rs`).

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

// (Every `Event` and `MarketData`; `RawValue`, not `Serialize`, has its own.)
impl<T: Serialize + Send> DynEvent for T {
    fn encode(&self, encoding: Encoding, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        codec::encode(self, encoding, out)
    }
}

// Compile-time tests of the collection rule (`cargo test --doc`): each
// reserved or malformed name fails to build where it is used.
macro_rules! refused {
    ($($test:ident: $coll:literal via $call:literal;)*) => {$(
        #[cfg(doctest)]
        #[doc = concat!(
            "```compile_fail,E0080\n",
            "use serde::{Deserialize, Serialize};\n",
            "use tradecache::{Cache, Config, Entity, Event, MarketData, SeriesCapacity};\n",
            "#[derive(Clone, Serialize, Deserialize)]\n",
            "struct T { id: String }\n",
            "impl Entity for T {\n",
            "    const COLLECTION: &'static str = \"", $coll, "\";\n",
            "    fn id(&self) -> &str { &self.id }\n",
            "}\n",
            "#[derive(Clone, Serialize, Deserialize)]\n",
            "struct E { n: u64 }\n",
            "impl Event for E { type Of = T; fn event_id(&self) -> u64 { self.n } }\n",
            "#[derive(Clone, Serialize, Deserialize)]\n",
            "struct D { s: String }\n",
            "impl MarketData for D {\n",
            "    const COLLECTION: &'static str = \"", $coll, "\";\n",
            "    const CAPACITY: SeriesCapacity = SeriesCapacity::Ticks;\n",
            "    fn series_id(&self) -> &str { &self.s }\n",
            "}\n",
            "fn main() {\n",
            "    let cache = Cache::open(Config::from_env().unwrap()).unwrap();\n",
            "    let (t, e, d) = (T { id: \"main\".into() }, E { n: 1 }, D { s: \"X\".into() });\n",
            "    let _ = (&t, &e, &d);\n",
            "    ", $call, ";\n",
            "}\n",
            "```"
        )]
        #[allow(dead_code)]
        struct $test;
    )*};
}

refused! {
    EntityIndex: "index" via "let _ = cache.put(&t)";
    EntityWriter: "writer" via "let _ = cache.put(&t)";
    EntityStream: "stream" via "let _ = cache.put(&t)";
    EntityHeartbeat: "heartbeat" via "let _ = cache.put(&t)";
    EntityQuotes: "quotes" via "let _ = cache.put(&t)";
    EntityTrades: "trades" via "let _ = cache.put(&t)";
    EntityBars: "bars" via "let _ = cache.put(&t)";
    EntityEmpty: "" via "let _ = cache.put(&t)";
    EntityColon: "a:b" via "let _ = cache.put(&t)";
    EntityBraces: "{t}" via "let _ = cache.put(&t)";
    EntitySpace: "a b" via "let _ = cache.put(&t)";
    EntityControl: "a\\u{7}" via "let _ = cache.put(&t)";
    EntityNonAscii: "caf\\u{e9}" via "let _ = cache.put(&t)";
    ByDelete: "heartbeat" via "let _ = cache.delete::<T>(\"main\")";
    ByAppend: "stream" via "let _ = cache.append(\"orders\", &e)";
    ByGet: "index" via "let _ = cache.get::<T>(\"x\")";
    ByGetEvents: "stream" via "let _ = cache.get_events::<E>(\"x\")";
    ByLoadEvents: "writer" via "let _ = cache.load_events::<E>(\"x\")";
    SeriesOrders: "orders" via "let _ = cache.append_market_data(&d)";
    SeriesQuotes: "quotes" via "let _ = cache.append_market_data(&d)";
    SeriesHeartbeat: "heartbeat" via "let _ = cache.load_ticks::<D>(\"X\", 1)";
}

/// Collection names that would alias the key layout's own keys, or are not
/// key-safe, are refused. The compiler refuses them for types (the
/// `compile_fail` tests above); these check the same rule, one name at a
/// time, through the function the compiler evaluates (and `import`, the
/// CLI's, applies to a backup's lines).
#[cfg(test)]
mod collection_rule {
    use super::{collection_problem, CollectionOf};
    use crate::store::keys;

    /// What `import` accepts: an entity's collection or one of the crate's
    /// series (as the CLI's `transfer::parse` checks a line).
    fn stored(name: &str) -> Option<&'static str> {
        collection_problem(name, CollectionOf::Entity)
            .and(collection_problem(name, CollectionOf::CrateSeries))
    }

    #[track_caller]
    fn refused_entity(name: &str, why: &str) {
        let p = collection_problem(name, CollectionOf::Entity)
            .unwrap_or_else(|| panic!("{name:?} accepted for an entity"));
        assert!(p.contains(why), "{name:?}: {p}");
    }

    #[track_caller]
    fn refused_series(name: &str, why: &str) {
        let p = collection_problem(name, CollectionOf::Series)
            .unwrap_or_else(|| panic!("{name:?} accepted for market data"));
        assert!(p.contains(why), "{name:?}: {p}");
    }

    #[test]
    fn collection_index_is_reserved() {
        refused_entity("index", "key layout uses itself");
        refused_series("index", "key layout uses itself");
    }

    #[test]
    fn collection_writer_is_reserved() {
        refused_entity("writer", "key layout uses itself");
        refused_series("writer", "key layout uses itself");
    }

    #[test]
    fn collection_stream_is_reserved() {
        refused_entity("stream", "key layout uses itself");
        refused_series("stream", "key layout uses itself");
    }

    #[test]
    fn collection_heartbeat_is_reserved() {
        refused_entity("heartbeat", "key layout uses itself");
        refused_series("heartbeat", "key layout uses itself");
    }

    #[test]
    fn collection_quotes_is_reserved_for_quote_ticks() {
        refused_entity("quotes", "market-data series");
        refused_series("quotes", "crate's QuoteTick");
    }

    #[test]
    fn collection_trades_is_reserved_for_trade_ticks() {
        refused_entity("trades", "market-data series");
        refused_series("trades", "crate's QuoteTick, TradeTick");
    }

    #[test]
    fn collection_bars_is_reserved_for_bars() {
        refused_entity("bars", "market-data series");
        refused_series("bars", "TradeTick and Bar");
    }

    #[test]
    fn market_data_may_not_use_an_entity_collection() {
        for name in keys::ENTITY_COLLECTIONS {
            refused_series(name, "their event logs");
            assert_eq!(collection_problem(name, CollectionOf::Entity), None, "{name}");
        }
    }

    #[test]
    fn collection_names_must_be_key_safe() {
        refused_entity("", "empty");
        refused_entity(&"c".repeat(257), "longer than 256");
        for bad in ["a:b", "{t}", "a}", "a b", "a\tb", "a\nb", "a\u{7}", "caf\u{e9}", " "] {
            refused_entity(bad, "only ASCII letters");
            refused_series(bad, "only ASCII letters");
        }
    }

    #[test]
    fn ordinary_names_are_accepted() {
        for ok in ["strategies", "counters", "funding", "a-b_c.d", "events", "x", &"c".repeat(256)] {
            assert_eq!(collection_problem(ok, CollectionOf::Entity), None, "{ok}");
            assert_eq!(collection_problem(ok, CollectionOf::Series), None, "{ok}");
        }
        for md in keys::MARKET_DATA_COLLECTIONS {
            assert_eq!(stored(md), None, "{md}: the crate's series are stored state");
        }
    }
}
