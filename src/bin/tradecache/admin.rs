//! What the CLI reads and repairs the stored state with, using the crate's
//! own connection code, key layout and decoders (this module is compiled
//! into the library's hidden `cli` module, so none of it is public).
//!
//! - [`Admin`]: one connection, made as [`Cache::open`](crate::Cache::open)
//!   makes its own (Sentinel, Cluster slot owner, TLS, ACL, timeouts), with
//!   `SCAN`, any command (pipelined with [`Admin::send`] and
//!   [`Admin::read_reply`]) and fencing a writer ([`Admin::fence`]).
//! - [`Layout`] and [`KeyKind`]: where a trader's state lives, and what a
//!   key under its prefix is.
//! - The crate's own decoding and encoding of stored values as JSON
//!   ([`entity_to_json`], [`event_to_json`], [`entity_from_json`],
//!   [`event_from_json`]) and the rules an import checks
//!   ([`stored_collection_problem`], …).
//!
//! The connection is never the flusher's: an `Admin` is a client of its
//! own, and nothing it does goes through a `Cache`.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;

use crate::config::Config;
use crate::entity::{Entity, Event};
use crate::error::Result;
use crate::model::{
    Account, AccountEvent, Bar, Instrument, Order, OrderEvent, Position, PositionSide, QuoteTick, TradeTick,
};
use crate::net;
use crate::store::codec;
use crate::store::codec::Encoding;
use redis::Value;

use super::util::bytes;

/// The collections of the reference model, in the order they are loaded.
pub(crate) const REFERENCE_COLLECTIONS: [&str; 4] = crate::store::keys::ENTITY_COLLECTIONS;

/// The collections of the crate's market-data series (`quotes`, `trades`,
/// `bars`): lists without snapshots.
pub(crate) const MARKET_DATA_COLLECTIONS: [&str; 3] = crate::store::keys::MARKET_DATA_COLLECTIONS;

/// Why `name` cannot be an [`Entity`]'s collection (the rule of
/// [`Entity::COLLECTION`], which the compiler applies to types), or `None`.
pub(crate) fn entity_collection_problem(name: &str) -> Option<&'static str> {
    crate::entity::collection_problem(name, crate::entity::CollectionOf::Entity)
}

/// Why `name` cannot be a collection of the stored state at all (an
/// entity's, or one of the crate's market-data series), or `None`: what
/// `import` accepts.
pub(crate) fn stored_collection_problem(name: &str) -> Option<&'static str> {
    let entity = entity_collection_problem(name);
    let series = crate::entity::collection_problem(name, crate::entity::CollectionOf::CrateSeries);
    entity.and(series)
}

/// One connection to the server a [`Config`] names, made as
/// [`Cache::open`](crate::Cache::open) makes its own (Sentinel, Cluster
/// slot owner, TLS, ACL, timeouts), in one attempt. A client of its own:
/// never a `Cache`'s connection.
pub(crate) struct Admin {
    conn: net::Conn,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").field("addr", &self.conn.addr).finish_non_exhaustive()
    }
}

impl Admin {
    /// Validates `cfg` and connects once (no retries: an operator wants the
    /// error now).
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) for an invalid
    /// configuration, [`Error::Redis`](crate::Error::Redis) naming the
    /// address and cause when the server cannot be reached or refuses the
    /// connection.
    pub(crate) fn connect(cfg: &Config) -> Result<Admin> {
        cfg.validate()?;
        cfg.check_files()?;
        let keys = layout(cfg);
        let marker = keys.writer(&cfg.writer_id);
        net::connect(cfg, &marker, None).map(|conn| Admin { conn }).map_err(|f| f.into_error())
    }

    /// `host:port` of the server (never credentials).
    pub(crate) fn addr(&self) -> &str {
        &self.conn.addr
    }

    fn failed(&self, e: &redis::RedisError) -> crate::Error {
        net::Failure::of(e, &self.conn.addr).into_error()
    }

    /// Sends `cmds` in one write, without reading the replies: read them,
    /// one per command and in order, with [`Admin::read_reply`].
    ///
    /// # Errors
    ///
    /// [`Error::Redis`](crate::Error::Redis) when the write fails.
    pub(crate) fn send(&mut self, cmds: &[redis::Cmd]) -> Result<()> {
        let packed: Vec<u8> = cmds.iter().flat_map(redis::Cmd::get_packed_command).collect();
        let r = self.conn.con.send_packed_command(&packed);
        r.map_err(|e| self.failed(&e))
    }

    /// Reads the reply to the oldest command sent and not yet answered. A
    /// server's error reply is a `Value::ServerError`, not an `Err`.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`](crate::Error::Redis) when the read fails (timeout,
    /// connection lost, a reply that is not RESP).
    pub(crate) fn read_reply(&mut self) -> Result<Value> {
        let r = self.conn.con.recv_response();
        r.map_err(|e| self.failed(&e))
    }

    /// Sends `cmd` and reads its reply (a server's error reply is a
    /// `Value::ServerError`).
    ///
    /// # Errors
    ///
    /// As [`Admin::send`] and [`Admin::read_reply`].
    pub(crate) fn query(&mut self, cmd: &redis::Cmd) -> Result<Value> {
        self.send(std::slice::from_ref(cmd))?;
        self.read_reply()
    }

    /// [`Admin::query`], with a server's error reply as an `Err`.
    fn checked(&mut self, cmd: &redis::Cmd) -> Result<Value> {
        match self.query(cmd)? {
            Value::ServerError(e) => {
                let cause = net::Cause::of_code(e.code());
                Err(net::Failure::new(cause, self.conn.addr.clone(), e.to_string()).into_error())
            }
            r => Ok(r),
        }
    }

    fn unexpected(&self, what: &str, r: &Value) -> crate::Error {
        let text = format!("unexpected {what} reply {r:?}");
        net::Failure::new(net::Cause::Command, self.conn.addr.clone(), text).into_error()
    }

    /// Every key matching `pattern` (a `SCAN` `MATCH` pattern, such as
    /// [`Layout::pattern`]), by `SCAN` (never `KEYS`, which would block the
    /// server for the whole keyspace), sorted, without duplicates.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`](crate::Error::Redis) when a `SCAN` fails or its
    /// reply is not a cursor and keys.
    pub(crate) fn scan(&mut self, pattern: &str) -> Result<Vec<Vec<u8>>> {
        let mut cursor = b"0".to_vec();
        let mut keys = Vec::new();
        loop {
            let mut c = redis::cmd("SCAN");
            c.arg(&cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
            match self.checked(&c)? {
                Value::Array(mut parts) if parts.len() == 2 => {
                    if let Some(Value::Array(found)) = parts.pop() {
                        keys.extend(found.into_iter().filter_map(bytes));
                    }
                    cursor = parts.pop().and_then(bytes).unwrap_or_else(|| b"0".to_vec());
                }
                other => return Err(self.unexpected("SCAN", &other)),
            }
            if cursor == b"0" {
                break;
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Claims the commit marker `key` with a new epoch, as
    /// [`Cache::open`](crate::Cache::open) does, so that the writer holding
    /// it stops writing (its next transaction is aborted by Redis and it
    /// reports [`ErrorKind::Fenced`](crate::ErrorKind::Fenced)). Returns
    /// the new `(epoch, batch)`.
    ///
    /// # Errors
    ///
    /// As `Cache::open`'s claim: a marker this crate did not write, or a
    /// failed command.
    pub(crate) fn fence(&mut self, key: &str) -> Result<(u64, u64)> {
        let m = crate::store::marker::claim(&mut self.conn, key, false)?;
        Ok((m.epoch, m.batch))
    }
}

/// The configured value encoding.
pub(crate) fn encoding(cfg: &Config) -> Encoding {
    cfg.encoding
}

/// Whether `cfg` is for a Redis Cluster.
pub(crate) fn is_cluster(cfg: &Config) -> bool {
    !cfg.cluster_nodes.is_empty()
}

/// The key layout of one trader (and instance): the flusher's own.
pub(crate) use crate::store::keys::Keys as Layout;

/// The layout `cfg` writes with.
pub(crate) fn layout(cfg: &Config) -> Layout {
    Layout::new(&cfg.trader_key(), is_cluster(cfg))
}

/// What a key under a trader's prefix is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum KeyKind {
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

/// What `key` is, if it is this trader's (and instance's): `None` for
/// another trader's, an instance's (when this layout has none), or a
/// key of another shape. `collections` are the collections known to
/// exist (those with an index set, plus the reference ones): they tell
/// `{collection}:{id}:events` from an instance's `{instance}:{c}:{id}`.
pub(crate) fn classify(layout: &Layout, key: &[u8], collections: &[&[u8]]) -> Option<KeyKind> {
    let prefix = layout.prefix().as_bytes();
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
    if !layout.owns(key, collections) {
        return None;
    }
    match parts.as_slice() {
        ["index", c] => Some(KeyKind::Index { collection: (*c).to_string() }),
        [c, id] => Some(KeyKind::Entity { collection: (*c).to_string(), id: (*id).to_string() }),
        [c, id, "events"] => Some(KeyKind::Events { collection: (*c).to_string(), id: (*id).to_string() }),
        _ => None,
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
pub(crate) fn entity_to_json(
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
pub(crate) fn event_to_json(
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
    encode(&T::deserialize(json).map_err(|e| e.to_string())?, enc)
}

fn encode<T: Serialize>(v: &T, enc: Encoding) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    codec::encode(v, enc, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Encodes timestamps on this thread as the flusher does for `cfg` (ISO
/// 8601 strings with JSON and `timestamps_as_iso8601`) while the returned
/// guard lives.
#[must_use]
pub(crate) fn use_timestamp_format_of(cfg: &Config) -> impl Drop {
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
pub(crate) fn entity_from_json(
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
        encode(&v, enc)
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
pub(crate) fn event_from_json(
    collection: &str,
    json: &Json,
    enc: Encoding,
) -> std::result::Result<Vec<u8>, String> {
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
pub(crate) fn closed_at(
    collection: &str,
    bytes: &[u8],
    enc: Encoding,
) -> std::result::Result<Option<u64>, String> {
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
pub(crate) fn open_closed_state(
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
pub(crate) fn parse_marker(bytes: &[u8]) -> Option<(u64, u64)> {
    crate::store::marker::Marker::parse(bytes).map(|m| (m.epoch, m.batch))
}
