//! Administration: what an operator's tool (the `tradecache` CLI, feature
//! `cli`, or one of your own) needs to read and repair the state a
//! [`Cache`](crate::Cache) keeps, with tradecache's own types only.
//!
//! - [`Admin`]: one connection, made as [`Cache::open`](crate::Cache::open)
//!   makes its own (Sentinel, Cluster slot owner, TLS, ACL, timeouts), with
//!   point reads ([`Admin::scan`], [`Admin::get`], [`Admin::key_type`],
//!   [`Admin::list`], [`Admin::members`]), any command ([`Admin::query`],
//!   pipelined with [`Admin::send`] and [`Admin::read_reply`]) and fencing
//!   a writer ([`Admin::fence`]).
//! - [`Command`] and [`Reply`]: a command and what the server answered.
//! - [`Layout`] and [`KeyKind`]: where a trader's state lives, and what a
//!   key under its prefix is.
//! - The crate's own decoding and encoding of stored values:
//!   [`entity_to_json`], [`event_to_json`], [`entity_from_json`],
//!   [`event_from_json`], [`decode_value`], [`encode_value`], and the
//!   rules an import checks ([`stored_collection_problem`], …).
//!
//! The connection is never the flusher's: an `Admin` is a client of its
//! own, and nothing it does goes through a `Cache`.
//!
//! # Example
//!
//! ```no_run
//! use tradecache::admin::{self, Admin, KeyKind};
//! use tradecache::Config;
//!
//! # fn main() -> Result<(), tradecache::Error> {
//! let config = Config::default().trader_id("T1");
//! let layout = admin::layout(&config);
//! let mut conn = Admin::connect(&config)?;
//! let pattern = layout.pattern().expect("a trader prefix");
//! for key in conn.scan(&pattern)? {
//!     if let Some(KeyKind::Entity { collection, id }) =
//!         layout.classify(&key, &[b"orders".as_slice()])
//!     {
//!         if let Some(bytes) = conn.get(&key)? {
//!             let json = admin::entity_to_json(&collection, &id, &bytes, admin::encoding(&config));
//!             println!("{collection}/{id}: {json:?}");
//!         }
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;

use crate::codec;
use crate::config::Config;
use crate::encoding::Encoding;
use crate::entity::{Entity, Event};
use crate::error::Result;
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

/// One connection to the server a [`Config`] names, made as
/// [`Cache::open`](crate::Cache::open) makes its own (Sentinel, Cluster
/// slot owner, TLS, ACL, timeouts), in one attempt. A client of its own:
/// never a `Cache`'s connection.
pub struct Admin {
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
    pub fn connect(cfg: &Config) -> Result<Admin> {
        cfg.validate()?;
        cfg.check_files()?;
        let keys = layout(cfg);
        let marker = keys.keys.writer(&cfg.writer_id);
        net::connect(cfg, &marker, None).map(|conn| Admin { conn }).map_err(|f| f.into_error())
    }

    /// `host:port` of the server (never credentials).
    pub fn addr(&self) -> &str {
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
    pub fn send(&mut self, cmds: &[Command]) -> Result<()> {
        let mut p = net::Packer::default();
        for c in cmds {
            let args: Vec<&[u8]> = c.args.iter().map(Vec::as_slice).collect();
            p.cmd(&args);
        }
        let r = self.conn.con.send_packed_command(&p.buf);
        r.map_err(|e| self.failed(&e))
    }

    /// Reads the reply to the oldest command sent and not yet answered. A
    /// server's error reply is a [`Reply::ServerError`], not an `Err`.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`](crate::Error::Redis) when the read fails (timeout,
    /// connection lost, a reply that is not RESP).
    pub fn read_reply(&mut self) -> Result<Reply> {
        let r = self.conn.con.recv_response();
        r.map(reply).map_err(|e| self.failed(&e))
    }

    /// Sends `cmd` and reads its reply (a server's error reply is a
    /// [`Reply::ServerError`]).
    ///
    /// # Errors
    ///
    /// As [`Admin::send`] and [`Admin::read_reply`].
    pub fn query(&mut self, cmd: &Command) -> Result<Reply> {
        self.send(std::slice::from_ref(cmd))?;
        self.read_reply()
    }

    /// [`Admin::query`], with a server's error reply as an `Err`.
    fn checked(&mut self, cmd: &Command) -> Result<Reply> {
        match self.query(cmd)? {
            Reply::ServerError(e) => {
                let code = e.split_whitespace().next().unwrap_or("");
                let cause = net::Cause::of_code(code);
                Err(net::Failure::new(cause, self.conn.addr.clone(), e).into_error())
            }
            r => Ok(r),
        }
    }

    fn unexpected(&self, what: &str, r: &Reply) -> crate::Error {
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
    pub fn scan(&mut self, pattern: &str) -> Result<Vec<Vec<u8>>> {
        let mut cursor = b"0".to_vec();
        let mut keys = Vec::new();
        loop {
            let mut c = Command::new("SCAN");
            c.arg(&cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
            match self.checked(&c)? {
                Reply::Array(mut parts) if parts.len() == 2 => {
                    if let Some(Reply::Array(found)) = parts.pop() {
                        keys.extend(found.into_iter().filter_map(Reply::into_bytes));
                    }
                    cursor = parts.pop().and_then(Reply::into_bytes).unwrap_or_else(|| b"0".to_vec());
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

    /// The value of the string `key` (`GET`), `None` if there is none.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`](crate::Error::Redis) when the command fails (for
    /// example `WRONGTYPE`: `key` is not a string).
    pub fn get(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        let mut c = Command::new("GET");
        c.arg(key.as_ref());
        Ok(self.checked(&c)?.into_bytes())
    }

    /// What `key` holds (`TYPE`): `string`, `list`, `set`, `zset`, `hash`,
    /// `stream`, or `none`.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`](crate::Error::Redis) when the command fails.
    pub fn key_type(&mut self, key: impl AsRef<[u8]>) -> Result<String> {
        let mut c = Command::new("TYPE");
        c.arg(key.as_ref());
        let r = self.checked(&c)?;
        match r.as_text() {
            Some(t) => Ok(t),
            None => Err(self.unexpected("TYPE", &r)),
        }
    }

    /// Every item of the list `key` (`LRANGE key 0 -1`), such as an event
    /// log.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`](crate::Error::Redis) when the command fails.
    pub fn list(&mut self, key: impl AsRef<[u8]>) -> Result<Vec<Vec<u8>>> {
        let mut c = Command::new("LRANGE");
        c.arg(key.as_ref()).arg(0).arg(-1);
        let r = self.checked(&c)?;
        r.clone().into_items().ok_or_else(|| self.unexpected("LRANGE", &r))
    }

    /// The members of the set `key` (`SMEMBERS`), such as an index.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`](crate::Error::Redis) when the command fails.
    pub fn members(&mut self, key: impl AsRef<[u8]>) -> Result<Vec<Vec<u8>>> {
        let mut c = Command::new("SMEMBERS");
        c.arg(key.as_ref());
        let r = self.checked(&c)?;
        r.clone().into_items().ok_or_else(|| self.unexpected("SMEMBERS", &r))
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
    pub fn fence(&mut self, key: &str) -> Result<(u64, u64)> {
        let m = crate::marker::claim(&mut self.conn, key, false)?;
        Ok((m.epoch, m.batch))
    }
}

/// One command for [`Admin::query`] or [`Admin::send`]: a name and its
/// arguments, each sent as one bulk string.
///
/// ```
/// use tradecache::admin::Command;
///
/// let mut c = Command::new("LRANGE");
/// c.arg("trader-T1:orders:O-1:events").arg(0).arg(-1);
/// assert_eq!(c.name(), "LRANGE");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    args: Vec<Vec<u8>>,
}

impl Command {
    /// A command `name` (`GET`, `SCAN`, `MULTI`, …) without arguments yet.
    pub fn new(name: &str) -> Command {
        Command { args: vec![name.as_bytes().to_vec()] }
    }

    /// Adds one argument: a string, bytes, or an integer (sent in decimal).
    pub fn arg<A: Arg>(&mut self, a: A) -> &mut Command {
        self.args.push(a.to_arg());
        self
    }

    /// The command's name, as given to [`Command::new`].
    pub fn name(&self) -> &str {
        std::str::from_utf8(&self.args[0]).unwrap_or("")
    }
}

mod sealed {
    /// What makes an [`super::Arg`]: its bytes on the wire.
    pub trait Sealed {
        fn to_arg(&self) -> Vec<u8>;
    }
}

/// A value that can be one argument of a [`Command`]: `str`, `String`,
/// byte slices and vectors, integers, and references to them. Sealed: the
/// crate decides how each is written.
pub trait Arg: sealed::Sealed {}

impl<T: Arg + ?Sized> sealed::Sealed for &T {
    fn to_arg(&self) -> Vec<u8> {
        (**self).to_arg()
    }
}
impl<T: Arg + ?Sized> Arg for &T {}

macro_rules! bytes_arg {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {
            fn to_arg(&self) -> Vec<u8> {
                AsRef::<[u8]>::as_ref(self).to_vec()
            }
        }
        impl Arg for $t {}
    )*};
}
bytes_arg!(str, String, [u8], Vec<u8>);

macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {
            fn to_arg(&self) -> Vec<u8> {
                self.to_string().into_bytes()
            }
        }
        impl Arg for $t {}
    )*};
}
int_arg!(i32, i64, u32, u64, usize);

/// A server's reply (RESP2 and RESP3 types).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// No value (a missing key, an aborted `EXEC`).
    Nil,
    /// An integer.
    Int(i64),
    /// A bulk string: a stored value, a key.
    BulkString(Vec<u8>),
    /// A status line other than `OK`.
    SimpleString(String),
    /// The status `OK`.
    Okay,
    /// An array, such as `LRANGE`'s or `EXEC`'s.
    Array(Vec<Reply>),
    /// A set (RESP3).
    Set(Vec<Reply>),
    /// A map (RESP3), as pairs in the server's order.
    Map(Vec<(Reply, Reply)>),
    /// A double (RESP3).
    Double(f64),
    /// A boolean (RESP3).
    Boolean(bool),
    /// Verbatim text (RESP3), such as `INFO`'s.
    VerbatimString {
        /// The text.
        text: String,
    },
    /// A number too large for an integer (RESP3), as the server sent it.
    BigNumber(String),
    /// The server refused the command: its error reply (code and message,
    /// `WRONGTYPE Operation against a key …`).
    ServerError(String),
}

impl Reply {
    /// The bytes of a bulk string or a status, `None` for other replies.
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Reply::BulkString(b) => Some(b),
            Reply::SimpleString(s) => Some(s.into_bytes()),
            Reply::Okay => Some(b"OK".to_vec()),
            Reply::VerbatimString { text } => Some(text.into_bytes()),
            _ => None,
        }
    }

    /// The bytes of each item of an array or set of strings, `None` for
    /// other replies (items that are not strings are left out).
    pub fn into_items(self) -> Option<Vec<Vec<u8>>> {
        match self {
            Reply::Array(v) | Reply::Set(v) => Some(v.into_iter().filter_map(Reply::into_bytes).collect()),
            _ => None,
        }
    }

    /// A string or status as text (lossy UTF-8), `None` for other replies.
    pub fn as_text(&self) -> Option<String> {
        self.clone().into_bytes().map(|b| String::from_utf8_lossy(&b).into_owned())
    }
}

/// The crate's reply from redis-rs's (kept out of the public API).
fn reply(v: redis::Value) -> Reply {
    use redis::Value as V;
    match v {
        V::Nil => Reply::Nil,
        V::Int(n) => Reply::Int(n),
        V::BulkString(b) => Reply::BulkString(b),
        V::SimpleString(s) => Reply::SimpleString(s),
        V::Okay => Reply::Okay,
        V::Array(v) => Reply::Array(v.into_iter().map(reply).collect()),
        V::Set(v) => Reply::Set(v.into_iter().map(reply).collect()),
        V::Map(m) => Reply::Map(m.into_iter().map(|(k, v)| (reply(k), reply(v))).collect()),
        V::Attribute { data, .. } => reply(*data),
        V::Double(d) => Reply::Double(d),
        V::Boolean(b) => Reply::Boolean(b),
        V::VerbatimString { text, .. } => Reply::VerbatimString { text },
        V::BigNumber(n) => Reply::BigNumber(format!("{n:?}")),
        V::Push { data, .. } => Reply::Array(data.into_iter().map(reply).collect()),
        V::ServerError(e) => Reply::ServerError(e.to_string()),
        other => Reply::ServerError(format!("unsupported reply {other:?}")),
    }
}
/// The trader id `cfg` writes for.
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

    /// `{prefix}:index:`: the registry of collections, a set of the names
    /// of the collections with an index set, and the empty member once it
    /// is complete (docs/usage.md, "Keys"). `None` without a trader prefix.
    pub fn registry(&self) -> Option<String> {
        self.keys.registry()
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
