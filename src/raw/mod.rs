//! The runtime-collection API: entities and events whose collection is
//! named at run time ([`Collection`]) and whose values arrive already
//! encoded ([`RawValue`]), for callers that are not Rust types (the Python
//! bindings, a gateway) and for tools that copy values without decoding
//! them. Keys are the typed API's (docs/usage.md, "Keys") and the flusher
//! treats both alike: a typed read of a raw value decodes it with serde.

use std::collections::BTreeSet;

use parking_lot::Mutex;

use crate::channel::msg::{DynEntity, DynEvent, EventRecord, Msg, Record};
use crate::entity::{collection_problem, CollectionOf};
use crate::error::{ConfigError, Error, PushError, Result};
use crate::ident::Ident;
use crate::model::UnixNanos;
use crate::read::{LoadEvent, LoadItem, LoadReport};
use crate::seq::Seq;
use crate::store::codec::{EncodeError, Encoding};
use crate::Cache;

mod raw_value;

pub use raw_value::{decode, RawValue};

/// A collection name checked at run time: what [`crate::Entity::COLLECTION`]
/// is for a Rust type, for writes and reads whose collection is data.
///
/// The name follows the rule of [`crate::Entity::COLLECTION`]. Names are
/// interned: the first use of a name keeps one copy of it for the life of
/// the process, at most [`Collection::MAX_NAMES`] names in all, so a
/// `Collection` is `Copy` and costs nothing on the hot path.
///
/// ```
/// use tradecache::raw::Collection;
///
/// let signals = Collection::new("signals")?;
/// assert_eq!(signals.as_str(), "signals");
/// assert_eq!(Collection::new("signals")?, signals);   // the same interned name
/// assert!(Collection::new("index").is_err());          // the key layout's own
/// assert!(Collection::new("a:b").is_err());            // part of every key
/// # Ok::<(), tradecache::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Collection(&'static str);

impl std::fmt::Display for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// The interned names (leaked once each; bounded by `MAX_NAMES`).
static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

impl Collection {
    /// The most distinct names a process may intern (each is kept for the
    /// life of the process).
    pub const MAX_NAMES: usize = 4096;

    /// Checks `name` and interns it.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] (field `collection`) saying why the name breaks
    /// the rule, or that [`Collection::MAX_NAMES`] names are interned
    /// already. Never panics.
    pub fn new(name: &str) -> Result<Collection> {
        let refused = |why: String| Error::Config(ConfigError::one("collection", shown(name), why));
        if let Some(why) = collection_problem(name, CollectionOf::Entity) {
            return Err(refused(why.into()));
        }
        let mut set = NAMES.lock();
        if let Some(&known) = set.get(name) {
            return Ok(Collection(known));
        }
        if set.len() >= Self::MAX_NAMES {
            let max = Self::MAX_NAMES;
            return Err(refused(format!(
                "at most {max} distinct collection names per process (each is kept for its life)"
            )));
        }
        let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
        set.insert(leaked);
        Ok(Collection(leaked))
    }

    /// The name.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

/// A name as an error shows it: escaped, and cut at 64 characters.
fn shown(name: &str) -> String {
    let mut s: String = name.chars().take(64).collect::<String>().escape_debug().collect();
    if name.chars().count() > 64 {
        s.push('…');
    }
    s
}

/// A raw entity on its way to the flusher.
struct RawRecord {
    collection: &'static str,
    id: Ident,
    value: RawValue,
    state: RawState,
}

impl DynEntity for RawRecord {
    fn collection(&self) -> &'static str {
        self.collection
    }
    fn id(&self) -> &str {
        self.id.as_str()
    }
    fn is_closed(&self) -> bool {
        self.state.closed
    }
    fn last_updated(&self) -> Option<UnixNanos> {
        self.state.last_updated
    }
    fn encode(&self, encoding: Encoding, out: &mut Vec<u8>) -> std::result::Result<(), EncodeError> {
        DynEvent::encode(&self.value, encoding, out)
    }
}

/// A raw event on its way to the flusher (and a raw entity's value): its
/// bytes, in the cache's encoding (checked by the write that queued it).
impl DynEvent for RawValue {
    fn encode(&self, _: Encoding, out: &mut Vec<u8>) -> std::result::Result<(), EncodeError> {
        out.extend_from_slice(&self.bytes);
        Ok(())
    }
}

/// What [`Cache::put_raw_with`] says of the entity besides its value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawState {
    /// [`crate::Entity::is_closed`]: the entity leaves the open index, and
    /// [`Cache::purge_closed`] (or `retain_closed_for`) may delete it once
    /// it is old enough.
    pub closed: bool,
    /// [`crate::Entity::last_updated`]; `None`: when the flusher wrote it.
    pub last_updated: Option<UnixNanos>,
    /// The entity starts again: its event log is deleted by the same
    /// write, as [`Cache::replace`] does.
    pub restart: bool,
}

impl RawState {
    /// Open (the default), or closed.
    pub fn closed(closed: bool) -> RawState {
        RawState { closed, last_updated: None, restart: false }
    }

    /// Starting again, as [`Cache::replace`]: the event log is deleted by
    /// the same write.
    pub fn restart(mut self) -> RawState {
        self.restart = true;
        self
    }

    /// With the time the entity last changed.
    pub fn last_updated(mut self, at: UnixNanos) -> RawState {
        self.last_updated = Some(at);
        self
    }
}

/// One entity read back by [`Cache::load_raw`]: its id, its value's bytes
/// and its events' bytes, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawEntity {
    /// The id.
    pub id: Ident,
    /// The value's bytes.
    pub value: Vec<u8>,
    /// The event log's entries in append order (empty without events, or
    /// when the load was asked for none).
    pub events: Vec<Vec<u8>>,
}

/// What [`Cache::load_raw_each`] hands its callback: entities of one
/// collection, read in one chunk.
#[derive(Debug)]
#[non_exhaustive]
pub struct RawPart {
    /// Which read of the state this is from: 1, or 2 and 3 when a batch
    /// landed during the read before (drop what earlier attempts gave).
    pub attempt: u32,
    /// The collection.
    pub collection: Collection,
    /// Entities in id order, with their events when asked for; take them
    /// (`std::mem::take`) to keep them.
    pub entities: Vec<RawEntity>,
}

/// What [`Cache::load_raw`] returns.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RawSnapshot {
    /// Per collection asked for, in the order asked: its entities sorted
    /// by id.
    pub collections: Vec<(Collection, Vec<RawEntity>)>,
    /// What the load read and what it could not use (an index entry
    /// without a value, a key of another type), as for [`Cache::load`].
    pub report: LoadReport,
}

/// A stored value, as a load item: the id of its key, and the bytes.
impl LoadItem for (Ident, Vec<u8>) {
    fn decode_item(bytes: Vec<u8>, id: &Ident, _: Encoding) -> std::result::Result<Self, String> {
        Ok((id.clone(), bytes))
    }
}

/// A stored event, as a load event: the bytes, kept as stored (no id to
/// drop repeats by: a raw log is what was appended, exactly once).
impl LoadEvent for Vec<u8> {
    fn decode_event(bytes: Vec<u8>, _: Encoding) -> std::result::Result<Self, String> {
        Ok(bytes)
    }
    fn dedup_id(&self) -> Option<u64> {
        None
    }
}

impl Cache {
    /// Queues the latest value of entity `id` of `collection`, open. Hot
    /// path, as [`Cache::put`]: validates the id, moves the value (shared
    /// bytes, no copy) into the channel; the flusher stores the bytes as
    /// they are and keeps `index:{collection}` (and `…:open`) in the same
    /// transaction.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// use tradecache::raw::{Collection, RawValue};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// let signals = Collection::new("signals")?;
    /// let value = RawValue::msgpack(vec![0x81, 0xa1, b'q', 0x01])?; // {"q": 1}
    /// let seq = cache.put_raw(signals, "S-1", value.clone())?;
    /// cache.wait(seq, Duration::from_secs(1))?;
    /// assert_eq!(cache.get_raw(signals, "S-1")?.as_deref(), Some(value.as_bytes()));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::put`]: [`PushError::InvalidId`], [`PushError::Full`],
    /// [`PushError::Closed`], [`PushError::Fenced`], the value handed back;
    /// and [`PushError::WrongEncoding`] for a value in another encoding
    /// than the cache's.
    pub fn put_raw(
        &self,
        collection: Collection,
        id: &str,
        value: RawValue,
    ) -> std::result::Result<Seq, PushError<RawValue>> {
        self.put_raw_with(collection, id, value, RawState::default())
    }

    /// As [`Cache::put_raw`], with the entity's [`RawState`] (whether it is
    /// closed, when it last changed): what the typed API asks of
    /// [`crate::Entity::is_closed`] and [`crate::Entity::last_updated`].
    ///
    /// ```no_run
    /// # use tradecache::{Cache, Config};
    /// use tradecache::raw::{Collection, RawState, RawValue};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// let bots = Collection::new("bots")?;
    /// cache.put_raw_with(bots, "B-1", RawValue::msgpack(vec![0xc0])?, RawState::closed(true))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::put_raw`].
    pub fn put_raw_with(
        &self,
        collection: Collection,
        id: &str,
        value: RawValue,
        state: RawState,
    ) -> std::result::Result<Seq, PushError<RawValue>> {
        let id = Ident::new(id).map_err(PushError::InvalidId)?;
        if value.encoding != self.config().encoding {
            return Err(PushError::WrongEncoding(value));
        }
        let back = value.clone();
        let restart = state.restart;
        let rec = Record::Dyn(Box::new(RawRecord { collection: collection.0, id, value, state }));
        self.push(|seq| if restart { Msg::Replace { seq, rec } } else { Msg::Put { seq, rec } }, move || back)
    }

    /// Appends `event` to the log of entity `id` of `collection`
    /// (`{collection}:{id}:events`), stored as its bytes. Hot path, as
    /// [`Cache::append`]. A raw log is never trimmed (not even
    /// `accounts`' by `max_account_events`, which counts typed account
    /// events), and its reads keep every entry: exactly-once delivery means
    /// an entry is there once per call.
    ///
    /// ```no_run
    /// # use tradecache::{Cache, Config};
    /// use tradecache::raw::{Collection, RawValue};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// let fills = Collection::new("fills")?;
    /// cache.append_raw(fills, "F-1", RawValue::msgpack(vec![0x01])?)?;
    /// cache.append_raw(fills, "F-1", RawValue::msgpack(vec![0x02])?)?;
    /// assert_eq!(cache.get_events_raw(fills, "F-1")?, vec![vec![0x01], vec![0x02]]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::put_raw`].
    pub fn append_raw(
        &self,
        collection: Collection,
        id: &str,
        event: RawValue,
    ) -> std::result::Result<Seq, PushError<RawValue>> {
        let id = Ident::new(id).map_err(PushError::InvalidId)?;
        if event.encoding != self.config().encoding {
            return Err(PushError::WrongEncoding(event));
        }
        let back = event.clone();
        let rec = EventRecord::Dyn(Box::new(event));
        self.push(|seq| Msg::Append { seq, collection: collection.0, id, rec }, move || back)
    }

    /// Deletes entity `id` of `collection`: its value, its event log and
    /// its index entries, in order with the writes around it (as
    /// [`Cache::delete`]).
    ///
    /// ```no_run
    /// # use tradecache::{Cache, Config};
    /// use tradecache::raw::Collection;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// let fills = Collection::new("fills")?;
    /// cache.delete_raw(fills, "F-1")?;
    /// assert_eq!(cache.get_raw(fills, "F-1")?, None);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::put_raw`]; the value handed back is the id.
    pub fn delete_raw(&self, collection: Collection, id: &str) -> std::result::Result<Seq, PushError<Ident>> {
        let id = Ident::new(id).map_err(PushError::InvalidId)?;
        let back = id.clone();
        self.push(move |seq| Msg::Delete { seq, collection: collection.0, id }, move || back)
    }

    /// Deletes the closed entities of `collection` (written closed with
    /// [`Cache::put_raw_with`], or by the typed API) last updated before
    /// `cutoff`, with their event logs and index entries: what
    /// [`Cache::purge_closed_before`] does for a Rust type, in steps
    /// between batches of writes.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// use tradecache::model::UnixNanos;
    /// use tradecache::raw::{Collection, RawState, RawValue};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// let bots = Collection::new("bots")?;
    /// let done = RawState::closed(true).last_updated(UnixNanos(1_000_000));
    /// cache.put_raw_with(bots, "B-1", RawValue::msgpack(vec![0xc0])?, done)?;
    /// let purged = cache.purge_closed_raw(bots, UnixNanos(2_000_000), Duration::from_secs(5))?;
    /// assert_eq!(purged.removed.len(), 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::purge_closed`].
    pub fn purge_closed_raw(
        &self,
        collection: Collection,
        cutoff: UnixNanos,
        timeout: std::time::Duration,
    ) -> Result<crate::Purged> {
        self.purge_before(collection.0, cutoff.0 / 1_000_000, timeout)
    }

    /// What every key of this cache starts with, before the `:` that
    /// joins it to the rest (docs/usage.md, "Keys"): `trader-T1`,
    /// `trader-T1:I1` with an instance id, `{trader-T1}` in a Cluster (a
    /// hash tag), or empty without a trader prefix. For clients that read
    /// the stored keys themselves.
    ///
    /// ```no_run
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = Cache::open(Config::from_env()?.trader_id("T1"))?;
    /// assert_eq!(cache.key_prefix(), "trader-T1");
    /// # Ok(()) }
    /// ```
    pub fn key_prefix(&self) -> &str {
        self.keys().prefix()
    }
}

#[cfg(test)]
mod tests {
    use super::raw_value::check_msgpack;
    use super::*;

    #[test]
    fn raw_msgpack_check() {
        let ok: &[&[u8]] = &[
            &[0xc0],
            &[0x7f],
            &[0xff],
            &[0x92, 0x01, 0xa1, b'a'],
            &[0x81, 0xa1, b'k', 0x90],
            &[0xd4, 0x01, 0x00],
            &[0xc7, 0x02, 0x01, b'1', b'2'],
            &[0xcb, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xdc, 0x00, 0x01, 0xc3],
            &[0xc4, 0x00],
        ];
        for b in ok {
            assert_eq!(check_msgpack(b), Ok(()), "{b:x?}");
        }
        let bad: &[&[u8]] = &[
            &[],
            &[0xc1],
            &[0x92, 0x01],
            &[0x01, 0x02],
            &[0xa2, b'a'],
            &[0xa1, 0xff],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0xdf, 0xff, 0xff, 0xff, 0xff, 0x01],
            &[0xc6, 0xff, 0xff, 0xff, 0xff],
            &[0xcb, 0],
        ];
        for b in bad {
            assert!(check_msgpack(b).is_err(), "{b:x?}");
        }
        // Deep nesting costs no stack.
        let mut deep = vec![0x91; 1_000_000];
        deep.push(0xc0);
        assert_eq!(check_msgpack(&deep), Ok(()));
    }

    #[test]
    fn raw_collection_names() {
        for bad in ["", "index", "writer", "stream", "heartbeat", "quotes", "a:b", "{x}", "a b", "é"] {
            assert!(Collection::new(bad).is_err(), "{bad:?}");
        }
        let long = "x".repeat(257);
        assert!(Collection::new(&long).is_err());
        let a = Collection::new("raw-test.orders_1").unwrap();
        assert!(std::ptr::eq(a.as_str(), Collection::new("raw-test.orders_1").unwrap().as_str()));
    }
}
