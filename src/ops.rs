//! What the operator CLI (`src/bin/tradecache/`, feature `cli`) needs
//! from the crate: connecting as the library does, the key layout, and the
//! crate's own decoding and encoding of stored values. Public only so that
//! the binary can reach it; not a stable API (`#[doc(hidden)]`).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;

use crate::codec;
use crate::config::Config;
use crate::encoding::Encoding;
use crate::entity::{Entity, Event};
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::model::{
    Account, AccountEvent, Bar, Instrument, Order, OrderEvent, Position, PositionSide, QuoteTick, TradeTick,
};
use crate::net;

/// The collections of the reference model, in the order they are loaded.
pub const REFERENCE_COLLECTIONS: [&str; 4] = crate::keys::ENTITY_COLLECTIONS;

/// The collections of the crate's market-data series (`quotes`, `trades`,
/// `bars`): lists without snapshots.
pub const MARKET_DATA_COLLECTIONS: [&str; 3] = crate::keys::MARKET_DATA_COLLECTIONS;

/// Why `name` cannot be an [`Entity`]'s collection (the rule of
/// [`Entity::COLLECTION`], which the compiler applies to types), or `None`.
pub fn entity_collection_problem(name: &str) -> Option<&'static str> {
    crate::entity::collection_problem(name, crate::entity::CollectionOf::Entity)
}

/// Why `name` cannot be the collection of a [`crate::MarketData`] type of
/// the user's, or `None`.
pub fn series_collection_problem(name: &str) -> Option<&'static str> {
    crate::entity::collection_problem(name, crate::entity::CollectionOf::Series)
}

/// Why `name` cannot be a collection of the stored state at all (an
/// entity's, or one of the crate's market-data series), or `None`: what
/// `import` accepts.
pub fn stored_collection_problem(name: &str) -> Option<&'static str> {
    let entity = entity_collection_problem(name);
    let series = crate::entity::collection_problem(name, crate::entity::CollectionOf::CrateSeries);
    entity.and(series)
}

/// One connection, made as `Cache::open` makes its own (Sentinel, Cluster
/// slot owner, TLS, ACL, timeouts), in one attempt.
pub struct Conn(net::Conn);

impl Conn {
    /// The underlying blocking connection.
    pub fn con(&mut self) -> &mut redis::Connection {
        &mut self.0.con
    }

    /// `host:port` (never credentials).
    pub fn addr(&self) -> &str {
        &self.0.addr
    }
}

/// Validates `cfg` and connects once (no retries: an operator wants the
/// error now).
///
/// # Errors
///
/// [`Error::Config`] or [`Error::Redis`] naming the address and cause.
pub fn connect(cfg: &Config) -> Result<Conn> {
    cfg.validate()?;
    cfg.check_files()?;
    let keys = layout(cfg);
    let marker = keys.keys.writer(&cfg.writer_id);
    net::connect(cfg, &marker, None).map(Conn).map_err(|f| f.into_error())
}

/// Settings of `cfg` the CLI shows or needs.
pub fn trader_id(cfg: &Config) -> &str {
    &cfg.trader_id
}

/// The instance id, when `use_instance_id` is on and one is set.
pub fn instance_id(cfg: &Config) -> Option<&str> {
    if cfg.use_instance_id {
        cfg.instance_id.as_deref()
    } else {
        None
    }
}

/// The configured value encoding.
pub fn encoding(cfg: &Config) -> Encoding {
    cfg.encoding
}

/// Whether `cfg` is for a Redis Cluster.
pub fn is_cluster(cfg: &Config) -> bool {
    !cfg.cluster_nodes.is_empty()
}

/// The key layout of one trader (and instance).
#[derive(Debug, Clone)]
pub struct Layout {
    keys: Keys,
}

/// The layout `cfg` writes with.
pub fn layout(cfg: &Config) -> Layout {
    Layout { keys: Keys::new(&cfg.trader_key(), is_cluster(cfg)) }
}

/// What a key under a trader's prefix is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyKind {
    /// `{prefix}:{collection}:{id}`: a snapshot (a string).
    Entity {
        /// The collection.
        collection: String,
        /// The id.
        id: String,
    },
    /// `{prefix}:{collection}:{id}:events`: an event log (a list).
    Events {
        /// The collection.
        collection: String,
        /// The entity's id.
        id: String,
    },
    /// `{prefix}:index:{collection}`: the ids of a collection (a set).
    Index {
        /// The collection.
        collection: String,
    },
    /// `{prefix}:writer:{writer_id}`: a writer's commit marker.
    Writer {
        /// The writer id.
        writer_id: String,
    },
    /// `{prefix}:index:{collection}:open` (a set) or `…:closed` (a sorted
    /// set by last update): which entities are open and closed.
    OpenClosed {
        /// The collection.
        collection: String,
        /// `true` for the open index.
        open: bool,
    },
    /// `{prefix}:stream:{collection}` (published events) or
    /// `{prefix}:heartbeat:{writer_id}`: live signals, not state.
    Live,
}

impl Layout {
    /// The prefix (`trader-T1`, `trader-T1:I1`, `{trader-T1}`).
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// `{prefix}:{collection}:{id}`.
    pub fn entity(&self, collection: &str, id: &str) -> String {
        self.keys.entity(collection, id)
    }

    /// `{prefix}:{collection}:{id}:events`.
    pub fn events(&self, collection: &str, id: &str) -> String {
        self.keys.events(collection, id)
    }

    /// `{prefix}:index:{collection}`.
    pub fn index(&self, collection: &str) -> String {
        self.keys.index(collection)
    }

    /// `{prefix}:writer:{writer_id}`.
    pub fn writer(&self, writer_id: &str) -> String {
        self.keys.writer(writer_id)
    }

    /// `{prefix}:index:{collection}:open`.
    pub fn open_index(&self, collection: &str) -> String {
        self.keys.open_index(collection)
    }

    /// `{prefix}:index:{collection}:closed`.
    pub fn closed_index(&self, collection: &str) -> String {
        self.keys.closed_index(collection)
    }

    /// The `SCAN` pattern of every key under the prefix (instances' keys
    /// included when there is no instance: [`Layout::classify`] tells).
    /// `None` without a trader prefix.
    pub fn pattern(&self) -> Option<String> {
        self.keys.pattern()
    }

    /// What `key` is, if it is this trader's (and instance's): `None` for
    /// another trader's, an instance's (when this layout has none), or a
    /// key of another shape. `collections` are the collections known to
    /// exist (those with an index set, plus the reference ones): they tell
    /// `{collection}:{id}:events` from an instance's `{instance}:{c}:{id}`.
    pub fn classify(&self, key: &[u8], collections: &[&[u8]]) -> Option<KeyKind> {
        let prefix = self.keys.prefix().as_bytes();
        let rest = key.strip_prefix(prefix)?.strip_prefix(b":")?;
        let rest = std::str::from_utf8(rest).ok()?;
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.as_slice() {
            ["writer", w] => return Some(KeyKind::Writer { writer_id: (*w).to_string() }),
            ["heartbeat", _] | ["stream", _] => return Some(KeyKind::Live),
            ["index", c, which @ ("open" | "closed")] => {
                return Some(KeyKind::OpenClosed { collection: (*c).to_string(), open: *which == "open" })
            }
            _ => {}
        }
        if !self.keys.owns(key, collections) {
            return None;
        }
        match parts.as_slice() {
            ["index", c] => Some(KeyKind::Index { collection: (*c).to_string() }),
            [c, id] => Some(KeyKind::Entity { collection: (*c).to_string(), id: (*id).to_string() }),
            [c, id, "events"] => {
                Some(KeyKind::Events { collection: (*c).to_string(), id: (*id).to_string() })
            }
            _ => None,
        }
    }
}

fn to_json<T: Serialize>(v: &T) -> std::result::Result<Json, String> {
    serde_json::to_value(v).map_err(|e| format!("to JSON: {e}"))
}

fn decode<T: DeserializeOwned>(bytes: &[u8], enc: Encoding) -> std::result::Result<T, String> {
    codec::decode::<T>(bytes, enc).map_err(|e| e.to_string())
}

fn typed_entity<T: Entity>(bytes: &[u8], enc: Encoding, id: &str) -> std::result::Result<Json, String> {
    let v: T = decode(bytes, enc)?;
    if v.id() != id {
        return Err(format!("value has id {:?}, key says {id:?}", v.id()));
    }
    to_json(&v)
}

/// Decodes a stored snapshot of `collection` with the crate's own decoder
/// and returns it as JSON. Reference collections are decoded into their
/// types (so a value they would not load is an error, and the id must match
/// `id`); others as schemaless values.
///
/// # Errors
///
/// A description of why the value cannot be decoded.
pub fn entity_to_json(
    collection: &str,
    id: &str,
    bytes: &[u8],
    enc: Encoding,
) -> std::result::Result<Json, String> {
    match collection {
        "instruments" => typed_entity::<Instrument>(bytes, enc, id),
        "accounts" => typed_entity::<Account>(bytes, enc, id),
        "orders" => typed_entity::<Order>(bytes, enc, id),
        "positions" => typed_entity::<Position>(bytes, enc, id),
        _ => decode::<Json>(bytes, enc),
    }
}

/// Decodes a stored event of `collection`'s log as JSON, with its event id
/// for the reference collections' events (`None` for others). The crate's
/// market-data series (`quotes`, `trades`, `bars`) are decoded into their
/// types, so that an import writes them as the flusher would.
///
/// # Errors
///
/// A description of why the value cannot be decoded.
pub fn event_to_json(
    collection: &str,
    bytes: &[u8],
    enc: Encoding,
) -> std::result::Result<(Json, Option<u64>), String> {
    fn typed<E: Event>(bytes: &[u8], enc: Encoding) -> std::result::Result<(Json, Option<u64>), String> {
        let e: E = decode(bytes, enc)?;
        Ok((to_json(&e)?, Some(e.event_id())))
    }
    fn series<D: DeserializeOwned + Serialize>(
        bytes: &[u8],
        enc: Encoding,
    ) -> std::result::Result<(Json, Option<u64>), String> {
        Ok((to_json(&decode::<D>(bytes, enc)?)?, None))
    }
    match collection {
        "orders" => typed::<OrderEvent>(bytes, enc),
        "accounts" => typed::<AccountEvent>(bytes, enc),
        "quotes" => series::<QuoteTick>(bytes, enc),
        "trades" => series::<TradeTick>(bytes, enc),
        "bars" => series::<Bar>(bytes, enc),
        _ => Ok((decode::<Json>(bytes, enc)?, None)),
    }
}

fn encode_json<T: DeserializeOwned + Serialize>(
    json: &Json,
    enc: Encoding,
) -> std::result::Result<Vec<u8>, String> {
    let v = T::deserialize(json).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    codec::encode(&v, enc, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Encodes timestamps on this thread as the flusher does for `cfg` (ISO
/// 8601 strings with JSON and `timestamps_as_iso8601`) while the returned
/// guard lives.
#[must_use]
pub fn use_timestamp_format_of(cfg: &Config) -> impl Drop {
    codec::IsoScope::enter(cfg.timestamps_as_iso8601 && cfg.encoding == Encoding::Json)
}

/// Encodes a snapshot given as JSON (as [`entity_to_json`] returns it) the
/// way the flusher would store it. Reference collections go through their
/// types, so what is written is what the engine would have written.
///
/// # Errors
///
/// A description of why the value is not a valid `collection` value, or
/// its id differs from `id`.
pub fn entity_from_json(
    collection: &str,
    id: &str,
    json: &Json,
    enc: Encoding,
) -> std::result::Result<Vec<u8>, String> {
    fn typed<T: Entity>(json: &Json, enc: Encoding, id: &str) -> std::result::Result<Vec<u8>, String> {
        let v = T::deserialize(json).map_err(|e| e.to_string())?;
        if v.id() != id {
            return Err(format!("value has id {:?}, line says {id:?}", v.id()));
        }
        let mut out = Vec::new();
        codec::encode(&v, enc, &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }
    match collection {
        "instruments" => typed::<Instrument>(json, enc, id),
        "accounts" => typed::<Account>(json, enc, id),
        "orders" => typed::<Order>(json, enc, id),
        "positions" => typed::<Position>(json, enc, id),
        _ => encode_json::<Json>(json, enc),
    }
}

/// Encodes an event given as JSON for `collection`'s log.
///
/// # Errors
///
/// A description of why the value is not a valid event.
pub fn event_from_json(collection: &str, json: &Json, enc: Encoding) -> std::result::Result<Vec<u8>, String> {
    match collection {
        "orders" => encode_json::<OrderEvent>(json, enc),
        "accounts" => encode_json::<AccountEvent>(json, enc),
        "quotes" => encode_json::<QuoteTick>(json, enc),
        "trades" => encode_json::<TradeTick>(json, enc),
        "bars" => encode_json::<Bar>(json, enc),
        _ => encode_json::<Json>(json, enc),
    }
}

/// For `purge`: when a stored order or position was closed, if it is
/// (orders: rejected, canceled, expired or filled, at their last event;
/// positions: flat, at `ts_closed`), in nanoseconds since the epoch.
/// `Ok(None)` for open ones and other collections.
///
/// # Errors
///
/// A description of why the value cannot be decoded.
pub fn closed_at(collection: &str, bytes: &[u8], enc: Encoding) -> std::result::Result<Option<u64>, String> {
    match collection {
        "orders" => {
            let o: Order = decode(bytes, enc)?;
            Ok(o.status.is_closed().then_some(o.ts_last.0))
        }
        "positions" => {
            let p: Position = decode(bytes, enc)?;
            Ok(if p.side == PositionSide::Flat { p.ts_closed.map(|t| t.0) } else { None })
        }
        _ => Ok(None),
    }
}

/// For `verify`: whether a stored snapshot of a reference collection is
/// closed ([`Entity::is_closed`], which decides whether the flusher lists
/// it in `index:{collection}:open` or `…:closed`) and its last update in
/// milliseconds since the epoch ([`Entity::last_updated`], the closed
/// index's score), if it has one. `Ok(None)` for other collections, whose
/// rule only their own type knows.
///
/// # Errors
///
/// A description of why the value cannot be decoded.
pub fn open_closed_state(
    collection: &str,
    bytes: &[u8],
    enc: Encoding,
) -> std::result::Result<Option<(bool, Option<u64>)>, String> {
    fn state<T: Entity>(
        bytes: &[u8],
        enc: Encoding,
    ) -> std::result::Result<Option<(bool, Option<u64>)>, String> {
        let v: T = decode(bytes, enc)?;
        Ok(Some((v.is_closed(), v.last_updated().map(|t| t.0 / 1_000_000))))
    }
    match collection {
        "instruments" => state::<Instrument>(bytes, enc),
        "accounts" => state::<Account>(bytes, enc),
        "orders" => state::<Order>(bytes, enc),
        "positions" => state::<Position>(bytes, enc),
        _ => Ok(None),
    }
}

/// A commit marker's `(epoch, batch)`, if `bytes` is one.
pub fn parse_marker(bytes: &[u8]) -> Option<(u64, u64)> {
    crate::marker::Marker::parse(bytes).map(|m| (m.epoch, m.batch))
}

/// Claims the commit marker `key` with a new epoch, as `Cache::open` does,
/// so that the writer holding it stops writing (its next transaction is
/// aborted by Redis and it reports `ErrorKind::Fenced`). Returns the new
/// `(epoch, batch)`.
///
/// # Errors
///
/// As `Cache::open`'s claim: a marker this crate did not write, or a
/// failed command.
pub fn fence(conn: &mut Conn, key: &str) -> Result<(u64, u64)> {
    let m = crate::marker::claim(&mut conn.0, key, false)?;
    Ok((m.epoch, m.batch))
}

/// An error for the CLI's own failures, shaped like the library's.
pub fn redis_error(conn: &Conn, e: &redis::RedisError) -> Error {
    net::Failure::of(e, &conn.0.addr).into_error()
}

/// Decodes a stored value exactly as `load` does, with the crate's one
/// decode rule: a first byte at `0x80` or above is MessagePack (nothing may
/// follow the value), a longer value starting below is JSON, and a single
/// byte is read in `enc`, the configured encoding, then in the other. For
/// the fuzz tests and `examples/inspect.rs`, so that neither keeps a copy
/// of the rule.
///
/// # Errors
///
/// A description of why `bytes` is not a `T` in either encoding.
pub fn decode_value<T: DeserializeOwned>(bytes: &[u8], enc: Encoding) -> std::result::Result<T, String> {
    decode(bytes, enc)
}

/// Encodes `value` as the flusher stores it in `enc` (MessagePack maps
/// with field names, or JSON).
///
/// # Errors
///
/// A description of why `value` cannot be encoded.
pub fn encode_value<T: Serialize>(value: &T, enc: Encoding) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    codec::encode(value, enc, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}
