//! What travels through the channel from the callers to the flusher:
//! [`Msg`], and the write payloads [`Record`] (a snapshot) and
//! [`EventRecord`] (an event or market-data append). The hot reference
//! types travel by value, without allocating; everything else is boxed.
//!
//! This module knows the persistence traits only through the object-safe
//! `Dyn*` views below; `entity.rs` implements them for every `Entity`,
//! `Event` and `MarketData` (so the two files do not import each other).

use crate::error::Result;
use crate::ident::Ident;
use crate::model::{
    Account, AccountEvent, Bar, Instrument, Order, OrderEvent, Position, QuoteTick, TradeTick, UnixNanos,
};
use crate::store::codec::Encoding;
use crate::store::codec::{self, EncodeError};

/// Which configured capacity bounds a market-data series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeriesCapacity {
    /// `tick_capacity` (quote and trade ticks).
    Ticks,
    /// `bar_capacity` (bars).
    Bars,
}

/// A message from the callers to the flusher thread. Shutdown travels
/// through the same channel, so it arrives after every write before it.
pub(crate) enum Msg {
    Put {
        seq: u64,
        rec: Record,
    },
    /// A put whose entity starts again: its event log and index entry are
    /// deleted by this same write ([`crate::Cache::replace`]).
    Replace {
        seq: u64,
        rec: Record,
    },
    Append {
        seq: u64,
        collection: &'static str,
        id: Ident,
        rec: EventRecord,
    },
    Delete {
        seq: u64,
        collection: &'static str,
        id: Ident,
    },
    /// `Cache::clear`: applied once every write before it is.
    Clear {
        seq: u64,
        reply: crossbeam_channel::Sender<Result<u64>>,
    },
    /// `Cache::purge_closed`: not a write, it takes no sequence number.
    Purge(PurgeRequest),
    Shutdown {
        deadline: std::time::Instant,
    },
}

impl Msg {
    /// Gives a write its sequence number, under the producer lock, right
    /// before it is sent (it is built outside the lock with none).
    pub(crate) fn set_seq(&mut self, n: u64) {
        match self {
            Msg::Put { seq, .. }
            | Msg::Replace { seq, .. }
            | Msg::Append { seq, .. }
            | Msg::Delete { seq, .. }
            | Msg::Clear { seq, .. } => *seq = n,
            Msg::Purge(_) | Msg::Shutdown { .. } => {}
        }
    }
}

/// What a purge removed. See [`crate::Cache::purge_closed`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Purged {
    /// The ids of the entities deleted (with their event logs and index
    /// entries), oldest first.
    pub removed: Vec<Ident>,
    /// Keys deleted: snapshots and event logs.
    pub keys: u64,
    /// Closed entities old enough, but kept because a write to them was
    /// waiting in the flusher when their step ran (they go in a later
    /// purge if they are still closed and old).
    pub skipped: u64,
    /// Steps taken: transactions of at most `purge_batch` entities, each
    /// between two batches of writes.
    pub steps: u64,
}

/// A purge asked for by [`crate::Cache::purge_closed`] (or started by the
/// `retain_closed_for` policy, without a reply).
pub(crate) struct PurgeRequest {
    /// The collections to purge, in order.
    pub(crate) collections: Vec<&'static str>,
    /// Closed entities last updated before this (ms since the epoch) go.
    pub(crate) cutoff_ms: u64,
    pub(crate) reply: Option<crossbeam_channel::Sender<Result<Purged>>>,
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

/// Object-safe view of a user event or market-data value, encoded on the
/// flusher thread.
#[doc(hidden)]
pub trait DynEvent: Send {
    fn encode(&self, encoding: Encoding, out: &mut Vec<u8>) -> Result<(), EncodeError>;
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
    /// The entity, asked on the flusher thread (collection, id, whether
    /// closed, last update) and encoded there.
    pub(crate) fn as_dyn(&self) -> &dyn DynEntity {
        match self {
            Record::Instrument(v) => v,
            Record::Account(v) => v.as_ref(),
            Record::Order(v) => v,
            Record::Position(v) => v,
            Record::Dyn(d) => d.as_ref(),
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
    Series(Box<dyn DynEvent>, SeriesCapacity),
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
        match self {
            EventRecord::Quote(_) | EventRecord::Trade(_) | EventRecord::Series(_, SeriesCapacity::Ticks) => {
                Some(cfg.tick_capacity)
            }
            EventRecord::Bar(_) | EventRecord::Series(_, SeriesCapacity::Bars) => Some(cfg.bar_capacity),
            EventRecord::Account(_) => cfg.max_account_events,
            EventRecord::Order(_) | EventRecord::Dyn(_) => None,
        }
    }
}
