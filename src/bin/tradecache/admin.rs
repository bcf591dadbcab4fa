//! The crate's own connection ([`Admin`]), key layout ([`Layout`]) and
//! codecs, as the CLI reads and repairs the stored state with them: values
//! to and from JSON.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;

use crate::config::Config;
use crate::entity::{Entity, Event};
use crate::model::{
    Account, AccountEvent, Bar, Instrument, Order, OrderEvent, Position, PositionSide, QuoteTick, TradeTick,
};
use crate::net;
use crate::store::codec::{self, Encoding};
use redis::{Cmd, Value};

pub(crate) use crate::store::keys::{ENTITY_COLLECTIONS as REFERENCE_COLLECTIONS, MARKET_DATA_COLLECTIONS};

use super::util::{bytes, err, CliError, Progress};

/// One connection to the server a [`Config`] names, made as
/// [`Cache::open`](crate::Cache::open) makes its own (Sentinel, Cluster
/// slot owner, TLS, ACL, timeouts), in one attempt (an operator wants the
/// error now). A client of its own: never a `Cache`'s connection.
pub(crate) struct Admin {
    conn: net::Conn,
}

impl Admin {
    /// Validates `cfg` and connects; an error names the address and cause.
    pub(crate) fn connect(cfg: &Config) -> Result<Admin, CliError> {
        cfg.validate()?;
        cfg.check_files()?;
        let marker = layout(cfg).writer(&cfg.writer_id);
        Ok(net::connect(cfg, &marker, None).map(|conn| Admin { conn }).map_err(|f| f.into_error())?)
    }

    /// `host:port` of the server (never credentials).
    pub(crate) fn addr(&self) -> &str {
        &self.conn.addr
    }

    /// Sends `cmds` in pipelines of `chunk` and returns one reply per
    /// command, server errors as `Value::ServerError` (never a failure of
    /// the whole pipeline).
    pub(crate) fn pipeline(
        &mut self,
        cmds: &[Cmd],
        chunk: usize,
        mut progress: Option<&mut Progress>,
    ) -> Result<Vec<Value>, CliError> {
        let mut out = Vec::with_capacity(cmds.len());
        for part in cmds.chunks(chunk.max(1)) {
            let mut packed = net::Packer::default();
            packed.buf = part.iter().flat_map(Cmd::get_packed_command).collect();
            packed.commands = part.len();
            out.extend(self.conn.round_trip(&packed).map_err(net::Failure::into_error)?);
            if let Some(p) = progress.as_deref_mut() {
                p.add(part.len() as u64);
            }
        }
        Ok(out)
    }

    /// One command's reply, a server error as `Value::ServerError`.
    pub(crate) fn raw(&mut self, cmd: &Cmd) -> Result<Value, CliError> {
        Ok(self.pipeline(std::slice::from_ref(cmd), 1, None)?.pop().unwrap_or(Value::Nil))
    }

    /// One command; a server error reply is an error.
    pub(crate) fn query(&mut self, cmd: &Cmd) -> Result<Value, CliError> {
        match self.raw(cmd)? {
            Value::ServerError(e) => Err(err(format!("{}: {e}", self.conn.addr))),
            v => Ok(v),
        }
    }

    /// `cmds` in `MULTI`/`EXEC`: their replies (`None` when a watched key
    /// changed meanwhile). A command refused when queued (an ACL rule, a
    /// wrong argument) aborts the transaction: an error with its own reason,
    /// not `EXECABORT`'s; one that failed when applied is an error `{what}: {reason}`.
    pub(crate) fn exec(
        &mut self,
        cmds: impl IntoIterator<Item = Cmd>,
        what: &str,
    ) -> Result<Option<Vec<Value>>, CliError> {
        let mut all = vec![redis::cmd("MULTI")];
        all.extend(cmds);
        all.push(redis::cmd("EXEC"));
        let mut replies = self.pipeline(&all, all.len(), None)?;
        if let Some(e) = refused(&replies) {
            return Err(err(format!("{}: transaction refused: {e}", self.conn.addr)));
        }
        match replies.pop() {
            Some(Value::Array(r)) => match refused(&r) {
                Some(e) => Err(err(format!("{what}: {e}"))),
                None => Ok(Some(r)),
            },
            Some(Value::Nil) => Ok(None),
            other => Err(err(format!("{}: unexpected EXEC reply {other:?}", self.conn.addr))),
        }
    }

    /// Every key matching `pattern`, sorted, without duplicates, by `SCAN`
    /// (`KEYS` would block the server). A refused `SCAN` is classified by
    /// its code, as the library's commands are.
    pub(crate) fn scan(&mut self, pattern: &str) -> Result<Vec<Vec<u8>>, CliError> {
        let mut cursor = b"0".to_vec();
        let mut keys = Vec::new();
        loop {
            let mut c = redis::cmd("SCAN");
            c.arg(&cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
            let mut parts = match self.raw(&c)? {
                Value::Array(parts) if parts.len() == 2 => parts,
                reply => {
                    let (cause, text) = match reply {
                        Value::ServerError(e) => (net::Cause::of_code(e.code()), e.to_string()),
                        other => (net::Cause::Command, format!("unexpected SCAN reply {other:?}")),
                    };
                    return Err(net::Failure::new(cause, self.conn.addr.clone(), text).into_error().into());
                }
            };
            if let Some(Value::Array(found)) = parts.pop() {
                keys.extend(found.into_iter().filter_map(bytes));
            }
            cursor = parts.pop().and_then(bytes).unwrap_or_else(|| b"0".to_vec());
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
    /// it is fenced. Returns the new epoch.
    pub(crate) fn fence(&mut self, key: &str) -> Result<u64, CliError> {
        Ok(crate::store::marker::claim(&mut self.conn, key, false)?.epoch)
    }
}

/// The first server error among `replies`.
fn refused(replies: &[Value]) -> Option<&redis::ServerError> {
    replies.iter().find_map(|r| match r {
        Value::ServerError(e) => Some(e),
        _ => None,
    })
}

/// The key layout of one trader (and instance): the flusher's own.
pub(crate) use crate::store::keys::Keys as Layout;

/// The layout `cfg` writes with.
pub(crate) fn layout(cfg: &Config) -> Layout {
    Layout::new(&cfg.trader_key(), !cfg.cluster_nodes.is_empty())
}

/// `$f::<T>(…)` with `T` the type of the reference collection `$c`, else
/// `$other`.
macro_rules! by_type {
    ($c:expr, $f:ident($($a:expr),*), $other:expr) => {
        match $c {
            "instruments" => $f::<Instrument>($($a),*),
            "accounts" => $f::<Account>($($a),*),
            "orders" => $f::<Order>($($a),*),
            "positions" => $f::<Position>($($a),*),
            _ => $other,
        }
    };
}

fn to_json<T: Serialize>(v: &T) -> Result<Json, String> {
    serde_json::to_value(v).map_err(|e| format!("to JSON: {e}"))
}

/// Decodes a stored snapshot of `collection` as JSON: reference collections
/// through their types (a value they would not load, or whose id is not
/// `id`, is an error), others as schemaless values.
pub(crate) fn entity_to_json(
    collection: &str,
    id: &str,
    bytes: &[u8],
    enc: Encoding,
) -> Result<Json, String> {
    fn typed<T: Entity>(bytes: &[u8], enc: Encoding, id: &str) -> Result<Json, String> {
        let v: T = codec::decode(bytes, enc)?;
        if v.id() != id {
            return Err(format!("value has id {:?}, key says {id:?}", v.id()));
        }
        to_json(&v)
    }
    by_type!(collection, typed(bytes, enc, id), codec::decode::<Json>(bytes, enc))
}

/// Decodes a stored event of `collection`'s log as JSON, with its event id
/// for the reference collections' events (`None` for others). The crate's
/// market-data series (`quotes`, `trades`, `bars`) are decoded into their
/// types, so that an import writes them as the flusher would.
pub(crate) fn event_to_json(
    collection: &str,
    bytes: &[u8],
    enc: Encoding,
) -> Result<(Json, Option<u64>), String> {
    fn typed<E: Event>(bytes: &[u8], enc: Encoding) -> Result<(Json, Option<u64>), String> {
        let e: E = codec::decode(bytes, enc)?;
        Ok((to_json(&e)?, Some(e.event_id())))
    }
    fn series<D: DeserializeOwned + Serialize>(
        bytes: &[u8],
        enc: Encoding,
    ) -> Result<(Json, Option<u64>), String> {
        Ok((to_json(&codec::decode::<D>(bytes, enc)?)?, None))
    }
    match collection {
        "orders" => typed::<OrderEvent>(bytes, enc),
        "accounts" => typed::<AccountEvent>(bytes, enc),
        "quotes" => series::<QuoteTick>(bytes, enc),
        "trades" => series::<TradeTick>(bytes, enc),
        "bars" => series::<Bar>(bytes, enc),
        _ => Ok((codec::decode::<Json>(bytes, enc)?, None)),
    }
}

fn encode<T: Serialize>(v: &T, enc: Encoding) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    codec::encode(v, enc, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn encode_json<T: DeserializeOwned + Serialize>(json: &Json, enc: Encoding) -> Result<Vec<u8>, String> {
    encode(&T::deserialize(json).map_err(|e| e.to_string())?, enc)
}

/// Encodes a snapshot given as JSON (as [`entity_to_json`] returns it) the
/// way the flusher would store it, reference collections through their
/// types (checking the id against `id`).
pub(crate) fn entity_from_json(
    collection: &str,
    id: &str,
    json: &Json,
    enc: Encoding,
) -> Result<Vec<u8>, String> {
    fn typed<T: Entity>(json: &Json, enc: Encoding, id: &str) -> Result<Vec<u8>, String> {
        let v = T::deserialize(json).map_err(|e| e.to_string())?;
        if v.id() != id {
            return Err(format!("value has id {:?}, line says {id:?}", v.id()));
        }
        encode(&v, enc)
    }
    by_type!(collection, typed(json, enc, id), encode_json::<Json>(json, enc))
}

/// Encodes an event given as JSON for `collection`'s log.
pub(crate) fn event_from_json(collection: &str, json: &Json, enc: Encoding) -> Result<Vec<u8>, String> {
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
pub(crate) fn closed_at(collection: &str, bytes: &[u8], enc: Encoding) -> Result<Option<u64>, String> {
    match collection {
        "orders" => {
            let o: Order = codec::decode(bytes, enc)?;
            Ok(o.status.is_closed().then_some(o.ts_last.0))
        }
        "positions" => {
            let p: Position = codec::decode(bytes, enc)?;
            Ok(if p.side == PositionSide::Flat { p.ts_closed.map(|t| t.0) } else { None })
        }
        _ => Ok(None),
    }
}

/// For `verify`: whether a stored snapshot of a reference collection is
/// closed ([`Entity::is_closed`]: which of the open/closed indexes lists it)
/// and its last update in ms since the epoch (the closed index's score).
/// `Ok(None)` for other collections, whose rule only their type knows.
pub(crate) fn open_closed_state(
    collection: &str,
    bytes: &[u8],
    enc: Encoding,
) -> Result<Option<(bool, Option<u64>)>, String> {
    fn state<T: Entity>(bytes: &[u8], enc: Encoding) -> Result<Option<(bool, Option<u64>)>, String> {
        let v: T = codec::decode(bytes, enc)?;
        Ok(Some((v.is_closed(), v.last_updated().map(|t| t.0 / 1_000_000))))
    }
    by_type!(collection, state(bytes, enc), Ok(None))
}
