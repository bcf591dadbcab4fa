//! The traits that make a type persistable, and the by-value message
//! payloads the hot path moves through the channel.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{self, EncodeError};
use crate::config::Encoding;
use crate::model::{Account, AccountEvent, Instrument, Order, OrderEvent, Position};

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

/// Object-safe view of a user entity, encoded on the flusher thread.
#[doc(hidden)]
pub trait DynEntity: Send {
    fn collection(&self) -> &'static str;
    fn id(&self) -> &str;
    fn encode(&self, encoding: Encoding, out: &mut Vec<u8>) -> Result<(), EncodeError>;
}

impl<T: Entity> DynEntity for T {
    fn collection(&self) -> &'static str {
        T::COLLECTION
    }
    fn id(&self) -> &str {
        Entity::id(self)
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

/// An event append as it travels through the channel.
#[doc(hidden)]
pub enum EventRecord {
    Order(OrderEvent),
    Account(Box<AccountEvent>),
    Dyn(Box<dyn DynEvent>),
}

impl EventRecord {
    pub(crate) fn encode(&self, encoding: Encoding, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            EventRecord::Order(v) => codec::encode(v, encoding, out),
            EventRecord::Account(v) => codec::encode(v, encoding, out),
            EventRecord::Dyn(d) => d.encode(encoding, out),
        }
    }
}
