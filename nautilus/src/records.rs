//! The values stored in Redis: each is a Nautilus value in Nautilus's own
//! serde form (so any MessagePack or JSON client reads it), wrapped in a
//! type that tells tradecache its collection and id.

use std::marker::PhantomData;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tradecache::{Entity, Event, MarketData, SeriesCapacity};

/// What kind of Nautilus value a [`Stored`] entity holds: its collection
/// and value type, and whether it is done.
pub trait Kind: Send + Sync + 'static {
    /// The tradecache collection (part of every key).
    const COLLECTION: &'static str;
    /// The Nautilus value, stored in its own serde form.
    type Value: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// Whether the value is done (a closed order or position): it then
    /// leaves the open index, and `purge_closed` may remove it.
    fn closed(_value: &Self::Value) -> bool {
        false
    }
    /// The value's id (unescaped): the last part of its key.
    fn id(value: &Self::Value) -> String;
}

/// A Nautilus value kept as one tradecache entity; the value alone is
/// serialized (the id is part of the key).
pub struct Stored<K: Kind> {
    /// The escaped id (see [`crate::escape_id`]).
    pub(crate) id: String,
    /// The value.
    pub(crate) value: K::Value,
}

impl<K: Kind> Stored<K> {
    pub(crate) fn new(value: K::Value) -> Self {
        Stored { id: crate::escape_id(&K::id(&value)), value }
    }
}

impl<K: Kind> Clone for Stored<K> {
    fn clone(&self) -> Self {
        Stored { id: self.id.clone(), value: self.value.clone() }
    }
}

impl<K: Kind> Serialize for Stored<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<'de, K: Kind> Deserialize<'de> for Stored<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Stored::new(K::Value::deserialize(d)?))
    }
}

impl<K: Kind> Entity for Stored<K> {
    const COLLECTION: &'static str = K::COLLECTION;
    fn id(&self) -> &str {
        &self.id
    }
    fn is_closed(&self) -> bool {
        K::closed(&self.value)
    }
}

/// What kind of event a [`Logged`] holds, and the entity whose log it
/// joins.
pub trait EventKind: Send + Sync + 'static {
    /// The entity kind whose log the event joins.
    type Of: Kind;
    /// The Nautilus event, stored in its own serde form.
    type Value: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// A 64-bit id derived from the event's UUID: repeats of it are
    /// dropped on load.
    fn event_id(value: &Self::Value) -> u64;
}

/// A Nautilus event appended to an entity's log.
pub struct Logged<E: EventKind> {
    pub(crate) value: E::Value,
    _k: PhantomData<E>,
}

impl<E: EventKind> Logged<E> {
    pub(crate) fn new(value: E::Value) -> Self {
        Logged { value, _k: PhantomData }
    }
}

impl<E: EventKind> Clone for Logged<E> {
    fn clone(&self) -> Self {
        Logged::new(self.value.clone())
    }
}

impl<E: EventKind> Serialize for Logged<E> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<'de, E: EventKind> Deserialize<'de> for Logged<E> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Logged::new(E::Value::deserialize(d)?))
    }
}

impl<E: EventKind> Event for Logged<E> {
    type Of = Stored<E::Of>;
    fn event_id(&self) -> u64 {
        E::event_id(&self.value)
    }
}

/// What kind of market data a [`Series`] item holds.
pub trait SeriesKind: Send + Sync + 'static {
    /// The tradecache collection.
    const COLLECTION: &'static str;
    /// Which capacity bounds each series.
    const CAPACITY: SeriesCapacity;
    /// The Nautilus value, stored in its own serde form.
    type Value: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// The series the value belongs to (unescaped).
    fn series(value: &Self::Value) -> String;
}

/// One item of a capped market-data series; `series` is the escaped
/// series id.
pub struct Series<S: SeriesKind> {
    pub(crate) series: String,
    pub(crate) value: S::Value,
}

impl<S: SeriesKind> Clone for Series<S> {
    fn clone(&self) -> Self {
        Series { series: self.series.clone(), value: self.value.clone() }
    }
}

impl<S: SeriesKind> Serialize for Series<S> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        self.value.serialize(s)
    }
}

impl<'de, S: SeriesKind> Deserialize<'de> for Series<S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = S::Value::deserialize(d)?;
        Ok(Series { series: crate::escape_id(&S::series(&value)), value })
    }
}

impl<S: SeriesKind> MarketData for Series<S> {
    const COLLECTION: &'static str = S::COLLECTION;
    const CAPACITY: SeriesCapacity = S::CAPACITY;
    fn series_id(&self) -> &str {
        &self.series
    }
}

/// A byte map (actor or strategy state): names to bytes, stored as a
/// MessagePack map of binaries.
pub type StateMap = std::collections::BTreeMap<String, Bytes>;

/// An actor's or a strategy's state.
#[derive(Clone, Serialize, Deserialize)]
pub struct State {
    /// The component or strategy id.
    pub id: String,
    /// The state.
    pub state: StateMap,
}

/// A generic entry of [`nautilus_common::cache::database::CacheDatabaseAdapter::add`].
#[derive(Clone, Serialize, Deserialize)]
pub struct General {
    /// The key as Nautilus gave it (unescaped).
    pub key: String,
    /// The value.
    pub value: Bytes,
}

/// An order book, as its deltas (Nautilus's `OrderBook` has no serde form).
#[derive(Clone, Serialize, Deserialize)]
pub struct Book {
    /// The instrument.
    pub instrument_id: nautilus_model::identifiers::InstrumentId,
    /// The book type.
    pub book_type: nautilus_model::enums::BookType,
    /// The book as a clear followed by adds (`OrderBook::to_deltas`).
    pub deltas: Vec<nautilus_model::data::OrderBookDelta>,
}

/// One index entry: a client order id to something.
#[derive(Clone, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The client order id.
    pub client_order_id: String,
    /// The venue order id, position id or client id.
    pub value: String,
}

/// The heartbeat record.
#[derive(Clone, Serialize, Deserialize)]
pub struct Beat {
    /// The timestamp Nautilus passed (nanoseconds since the epoch).
    pub ts: u64,
}

/// Account event ids deleted with `delete_account_event`.
#[derive(Clone, Serialize, Deserialize, Default)]
pub struct Tombstones {
    /// The account.
    pub account_id: String,
    /// The deleted events' UUIDs.
    pub event_ids: Vec<String>,
}

/// Custom data: its own JSON form (Nautilus's `CustomData` serializes to
/// JSON and decodes through its type registry).
#[derive(Clone, Serialize, Deserialize)]
pub struct CustomJson {
    /// The data type (`DataType`'s display form): the series.
    pub data_type: String,
    /// `serde_json` of the `CustomData`.
    pub json: String,
}

/// A 64-bit id of a UUID: its first eight bytes.
pub(crate) fn uuid_u64(id: &nautilus_core::UUID4) -> u64 {
    let b = id.as_bytes();
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Nautilus's `GreeksData` field by field (it has no serde form).
#[derive(Clone, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Greeks {
    pub ts_init: u64,
    pub ts_event: u64,
    pub instrument_id: nautilus_model::identifiers::InstrumentId,
    pub is_call: bool,
    pub strike: f64,
    pub expiry: i32,
    pub expiry_in_days: i32,
    pub expiry_in_years: f64,
    pub multiplier: f64,
    pub quantity: f64,
    pub underlying_price: f64,
    pub interest_rate: f64,
    pub cost_of_carry: f64,
    pub vol: f64,
    pub pnl: f64,
    pub price: f64,
    pub delta: f64,
    pub gamma: f64,
    pub vega: f64,
    pub theta: f64,
    pub rho: f64,
    pub itm_prob: f64,
}

impl From<&nautilus_model::data::greeks::GreeksData> for Greeks {
    fn from(g: &nautilus_model::data::greeks::GreeksData) -> Self {
        Greeks {
            ts_init: g.ts_init.as_u64(),
            ts_event: g.ts_event.as_u64(),
            instrument_id: g.instrument_id,
            is_call: g.is_call,
            strike: g.strike,
            expiry: g.expiry,
            expiry_in_days: g.expiry_in_days,
            expiry_in_years: g.expiry_in_years,
            multiplier: g.multiplier,
            quantity: g.quantity,
            underlying_price: g.underlying_price,
            interest_rate: g.interest_rate,
            cost_of_carry: g.cost_of_carry,
            vol: g.vol,
            pnl: g.pnl,
            price: g.price,
            delta: g.greeks.delta,
            gamma: g.greeks.gamma,
            vega: g.greeks.vega,
            theta: g.greeks.theta,
            rho: g.greeks.rho,
            itm_prob: g.itm_prob,
        }
    }
}

impl From<Greeks> for nautilus_model::data::greeks::GreeksData {
    fn from(g: Greeks) -> Self {
        nautilus_model::data::greeks::GreeksData {
            ts_init: g.ts_init.into(),
            ts_event: g.ts_event.into(),
            instrument_id: g.instrument_id,
            is_call: g.is_call,
            strike: g.strike,
            expiry: g.expiry,
            expiry_in_days: g.expiry_in_days,
            expiry_in_years: g.expiry_in_years,
            multiplier: g.multiplier,
            quantity: g.quantity,
            underlying_price: g.underlying_price,
            interest_rate: g.interest_rate,
            cost_of_carry: g.cost_of_carry,
            vol: g.vol,
            pnl: g.pnl,
            price: g.price,
            greeks: nautilus_model::data::greeks::OptionGreekValues {
                delta: g.delta,
                gamma: g.gamma,
                vega: g.vega,
                theta: g.theta,
                rho: g.rho,
            },
            itm_prob: g.itm_prob,
        }
    }
}

/// Nautilus's `YieldCurveData` field by field (it has no serde form).
#[derive(Clone, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct YieldCurve {
    pub ts_init: u64,
    pub ts_event: u64,
    pub curve_name: String,
    pub tenors: Vec<f64>,
    pub interest_rates: Vec<f64>,
}

impl From<&nautilus_model::data::greeks::YieldCurveData> for YieldCurve {
    fn from(y: &nautilus_model::data::greeks::YieldCurveData) -> Self {
        YieldCurve {
            ts_init: y.ts_init.as_u64(),
            ts_event: y.ts_event.as_u64(),
            curve_name: y.curve_name.clone(),
            tenors: y.tenors.clone(),
            interest_rates: y.interest_rates.clone(),
        }
    }
}

impl From<YieldCurve> for nautilus_model::data::greeks::YieldCurveData {
    fn from(y: YieldCurve) -> Self {
        nautilus_model::data::greeks::YieldCurveData::new(
            y.ts_init.into(),
            y.ts_event.into(),
            y.curve_name,
            y.tenors,
            y.interest_rates,
        )
    }
}
