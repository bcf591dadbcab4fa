//! The collections this adapter writes: one [`Kind`] per Nautilus value,
//! one [`EventKind`] per event log, one [`SeriesKind`] per market-data
//! series. Every collection name starts with `nt-` so that none collides
//! with tradecache's reference model (`orders`, `positions`, …).

use nautilus_common::signal::Signal;
use nautilus_model::{
    accounts::AccountAny,
    data::{Bar, FundingRateUpdate, QuoteTick, TradeTick},
    events::{position::snapshot::PositionSnapshot, AccountState, OrderEvent, OrderEventAny, OrderSnapshot},
    instruments::{Instrument, InstrumentAny, SyntheticInstrument},
    orders::{Order, OrderAny},
    position::Position,
    types::Currency,
};
use tradecache::SeriesCapacity;

use crate::records::{
    uuid_u64, Beat, Book, CustomJson, EventKind, General, Greeks, IndexEntry, Kind, SeriesKind, State,
    Tombstones, YieldCurve,
};

macro_rules! kind {
    ($(#[$m:meta])* $name:ident, $coll:literal, $v:ty, $id:expr) => {
        kind!($(#[$m])* $name, $coll, $v, $id, |_v: &$v| false);
    };
    ($(#[$m:meta])* $name:ident, $coll:literal, $v:ty, $id:expr, $closed:expr) => {
        $(#[$m])*
        pub enum $name {}
        impl Kind for $name {
            const COLLECTION: &'static str = $coll;
            type Value = $v;
            fn closed(value: &$v) -> bool {
                $closed(value)
            }
            fn id(value: &$v) -> String {
                $id(value)
            }
        }
    };
}

kind!(
    /// `nt-currencies:{code}`: a `Currency`.
    Currencies, "nt-currencies", Currency, |c: &Currency| c.code.to_string()
);
kind!(
    /// `nt-instruments:{instrument_id}`: an `InstrumentAny`.
    Instruments, "nt-instruments", InstrumentAny, |i: &InstrumentAny| i.id().to_string()
);
kind!(
    /// `nt-synthetics:{instrument_id}`: a `SyntheticInstrument`.
    Synthetics, "nt-synthetics", SyntheticInstrument, |s: &SyntheticInstrument| s.id.to_string()
);
kind!(
    /// `nt-accounts:{account_id}`: an `AccountAny` (as added), with its
    /// `AccountState` log in `nt-accounts:{account_id}:events`.
    Accounts, "nt-accounts", AccountAny, |a: &AccountAny| a.id().to_string()
);
kind!(
    /// `nt-orders:{client_order_id}`: the `OrderAny` as added, with its
    /// `OrderEventAny` log in `nt-orders:{client_order_id}:events`.
    Orders, "nt-orders", OrderAny, |o: &OrderAny| o.client_order_id().to_string(), |o: &OrderAny| o.is_closed()
);
kind!(
    /// `nt-positions:{position_id}`: the latest `Position`.
    Positions, "nt-positions", Position, |p: &Position| p.id.to_string(), |p: &Position| p.is_closed()
);
kind!(
    /// `nt-order-snapshots:{client_order_id}`: the latest `OrderSnapshot`.
    OrderSnapshots, "nt-order-snapshots", OrderSnapshot, |s: &OrderSnapshot| s.client_order_id.to_string()
);
kind!(
    /// `nt-position-snapshots:{position_id}`: the latest `PositionSnapshot`.
    PositionSnapshots, "nt-position-snapshots", PositionSnapshot, |s: &PositionSnapshot| s.position_id.to_string()
);
kind!(
    /// `nt-actors:{component_id}`: an actor's state map.
    Actors, "nt-actors", State, |s: &State| s.id.clone()
);
kind!(
    /// `nt-strategies:{strategy_id}`: a strategy's state map.
    Strategies, "nt-strategies", State, |s: &State| s.id.clone()
);
kind!(
    /// `nt-general:{key}`: an entry of `add(key, value)`.
    GeneralEntries, "nt-general", General, |g: &General| g.key.clone()
);
kind!(
    /// `nt-order-books:{instrument_id}`: an order book as its deltas.
    OrderBooks, "nt-order-books", Book, |b: &Book| b.instrument_id.to_string()
);
kind!(
    /// `nt-index-venue-order-ids:{client_order_id}`: the venue order id.
    VenueOrderIds, "nt-index-venue-order-ids", IndexEntry, |e: &IndexEntry| e.client_order_id.clone()
);
kind!(
    /// `nt-index-order-positions:{client_order_id}`: the position id.
    OrderPositions, "nt-index-order-positions", IndexEntry, |e: &IndexEntry| e.client_order_id.clone()
);
kind!(
    /// `nt-index-order-clients:{client_order_id}`: the client id.
    OrderClients, "nt-index-order-clients", IndexEntry, |e: &IndexEntry| e.client_order_id.clone()
);
kind!(
    /// `nt-health:heartbeat`: the last heartbeat timestamp.
    Health, "nt-health", Beat, |_b: &Beat| "heartbeat".to_string()
);
kind!(
    /// `nt-account-tombstones:{account_id}`: deleted account event ids.
    AccountTombstones, "nt-account-tombstones", Tombstones, |t: &Tombstones| t.account_id.clone()
);

kind!(
    /// `nt-greeks:{instrument_id}`: the latest greeks of an instrument.
    GreeksEntries, "nt-greeks", Greeks, |g: &Greeks| g.instrument_id.to_string()
);
kind!(
    /// `nt-yield-curves:{curve_name}`: a yield curve.
    YieldCurves, "nt-yield-curves", YieldCurve, |y: &YieldCurve| y.curve_name.clone()
);

/// The `OrderEventAny` log of an order.
pub enum OrderEvents {}
impl EventKind for OrderEvents {
    type Of = Orders;
    type Value = OrderEventAny;
    fn event_id(value: &OrderEventAny) -> u64 {
        uuid_u64(&order_event_id(value))
    }
}

/// The UUID of an order event.
pub(crate) fn order_event_id(e: &OrderEventAny) -> nautilus_core::UUID4 {
    match e {
        OrderEventAny::Initialized(e) => e.id(),
        OrderEventAny::Denied(e) => e.id(),
        OrderEventAny::Emulated(e) => e.id(),
        OrderEventAny::Released(e) => e.id(),
        OrderEventAny::Submitted(e) => e.id(),
        OrderEventAny::Accepted(e) => e.id(),
        OrderEventAny::Rejected(e) => e.id(),
        OrderEventAny::Canceled(e) => e.id(),
        OrderEventAny::Expired(e) => e.id(),
        OrderEventAny::Triggered(e) => e.id(),
        OrderEventAny::PendingUpdate(e) => e.id(),
        OrderEventAny::PendingCancel(e) => e.id(),
        OrderEventAny::ModifyRejected(e) => e.id(),
        OrderEventAny::CancelRejected(e) => e.id(),
        OrderEventAny::Updated(e) => e.id(),
        OrderEventAny::Filled(e) => e.id(),
    }
}

/// The `AccountState` log of an account.
pub enum AccountEvents {}
impl EventKind for AccountEvents {
    type Of = Accounts;
    type Value = AccountState;
    fn event_id(value: &AccountState) -> u64 {
        uuid_u64(&value.event_id)
    }
}

macro_rules! series {
    ($(#[$m:meta])* $name:ident, $coll:literal, $cap:expr, $v:ty, $series:expr) => {
        $(#[$m])*
        pub enum $name {}
        impl SeriesKind for $name {
            const COLLECTION: &'static str = $coll;
            const CAPACITY: SeriesCapacity = $cap;
            type Value = $v;
            fn series(value: &$v) -> String {
                $series(value)
            }
        }
    };
}

series!(
    /// `nt-quotes:{instrument_id}:events`, the newest `tick_capacity`.
    Quotes, "nt-quotes", SeriesCapacity::Ticks, QuoteTick, |q: &QuoteTick| q.instrument_id.to_string()
);
series!(
    /// `nt-trades:{instrument_id}:events`, the newest `tick_capacity`.
    Trades, "nt-trades", SeriesCapacity::Ticks, TradeTick, |t: &TradeTick| t.instrument_id.to_string()
);
series!(
    /// `nt-bars:{instrument_id}:events` (every bar type of the instrument,
    /// since `load_bars` takes an instrument id), the newest `bar_capacity`.
    Bars, "nt-bars", SeriesCapacity::Bars, Bar, |b: &Bar| b.bar_type.instrument_id().to_string()
);
series!(
    /// `nt-funding-rates:{instrument_id}:events`, the newest `bar_capacity`.
    FundingRates, "nt-funding-rates", SeriesCapacity::Bars, FundingRateUpdate, |f: &FundingRateUpdate| f.instrument_id.to_string()
);
series!(
    /// `nt-signals:{name}:events`, the newest `tick_capacity`.
    Signals, "nt-signals", SeriesCapacity::Ticks, Signal, |s: &Signal| s.name.to_string()
);
series!(
    /// `nt-custom:{data_type}:events`, the newest `tick_capacity`.
    Custom, "nt-custom", SeriesCapacity::Ticks, CustomJson, |c: &CustomJson| c.data_type.clone()
);
