//! Turning replies into values (snapshots, logs, index members), and what
//! could not be used into the report.

use std::collections::HashSet;

use super::{LoadIssue, LoadReport};
use crate::entity::{Entity, Event};
use crate::error::{Error, Result};
use crate::ident::Ident;
use crate::store::codec::{self, Encoding};
use crate::store::keys::Keys;
use redis::Value;

/// One chunk of a load, decoded by a worker.
pub(super) struct ChunkOut<T, E> {
    pub(super) items: Vec<T>,
    pub(super) events: Vec<(Ident, Vec<E>)>,
    /// Ids whose log filled its first slice: the rest is read after.
    pub(super) long: Vec<Ident>,
    pub(super) report: LoadReport,
}

/// A load reads event logs in slices of this many entries: the first with
/// the log's chunk, the rest spread over the workers afterwards.
pub(super) const LOG_SLICE: usize = 4096;

/// What a load decodes a snapshot into: an [`Entity`] (through serde), or
/// the stored bytes themselves (`raw.rs`).
pub(crate) trait LoadItem: Send + Sized {
    /// The value of the key of entity `id`, or why it cannot be used.
    fn decode_item(bytes: Vec<u8>, id: &Ident, encoding: Encoding) -> Result<Self, String>;
    /// The entity's id when it is closed ([`Entity::is_closed`],
    /// `load_open`'s filter).
    fn closed_id(&self) -> Option<&str> {
        None
    }
}

impl<T: Entity> LoadItem for T {
    fn decode_item(bytes: Vec<u8>, id: &Ident, encoding: Encoding) -> Result<Self, String> {
        let v = codec::decode::<T>(&bytes, encoding)?;
        if v.id() != id.as_str() {
            return Err(format!("value has id {:?}, key says {id:?}", v.id()));
        }
        Ok(v)
    }
    fn closed_id(&self) -> Option<&str> {
        self.is_closed().then(|| self.id())
    }
}

/// What a load decodes an event-log entry into: an [`Event`], or the
/// stored bytes.
pub(crate) trait LoadEvent: Send + Sized {
    /// The entry, or why it cannot be used.
    fn decode_event(bytes: Vec<u8>, encoding: Encoding) -> Result<Self, String>;
    /// The id repeats are dropped by; `None`: entries are kept as stored.
    fn dedup_id(&self) -> Option<u64>;
}

impl<E: Event> LoadEvent for E {
    fn decode_event(bytes: Vec<u8>, encoding: Encoding) -> Result<Self, String> {
        codec::decode::<E>(&bytes, encoding)
    }
    fn dedup_id(&self) -> Option<u64> {
        Some(self.event_id())
    }
}

/// A server error other than `WRONGTYPE` (`NOPERM`, a server still
/// loading) fails the whole load: read as empty, it would give a shorter
/// result. `WRONGTYPE` is a problem of that key, which the caller reports.
/// `key` names what was read (made only for the error).
pub(crate) fn check_reply(reply: &Value, key: impl FnOnce() -> String, addr: &str) -> Result<()> {
    match reply {
        Value::ServerError(e) if e.code() != "WRONGTYPE" => {
            Err(reply_error(addr, crate::net::Cause::of_code(e.code()).kind(), &key(), e))
        }
        _ => Ok(()),
    }
}

/// The error reply `e` to a read of `what` from the server at `addr`.
pub(crate) fn reply_error(addr: &str, kind: crate::ErrorKind, what: &str, e: &redis::ServerError) -> Error {
    let (addr, detail, source) = (addr.to_string(), format!("{what}: {e}"), Some(crate::net::source_of(e)));
    Error::Redis { addr, kind, detail, source }
}

/// The value a `GET` answered, `None` for nil; an error reply goes through
/// `refused`, another reply is [`Error::Codec`] naming `key`.
pub(crate) fn get_reply(
    reply: Value,
    key: &str,
    refused: impl FnOnce(&redis::ServerError) -> Error,
) -> Result<Option<Vec<u8>>> {
    match reply {
        Value::BulkString(b) => Ok(Some(b)),
        Value::Nil => Ok(None),
        Value::ServerError(e) => Err(refused(&e)),
        other => Err(Error::Codec { key: key.to_string(), detail: format!("unexpected reply {other:?}") }),
    }
}

/// Decodes one chunk's replies: the `MGET` of the snapshots and, with
/// events, one `LRANGE` reply per id; problems reported by key in id order.
#[allow(clippy::too_many_arguments)]
pub(super) fn decode_chunk<T: LoadItem, E: LoadEvent>(
    keys: &Keys,
    collection: &str,
    encoding: crate::config::Encoding,
    addr: &str,
    ids: &[Ident],
    snapshots: Value,
    logs: Vec<Value>,
    reuse: Option<ChunkOut<T, E>>,
) -> Result<ChunkOut<T, E>> {
    let first = || ids.first().map(|id| keys.entity(collection, id)).unwrap_or_default();
    check_reply(&snapshots, || format!("MGET of {} snapshots from {}", ids.len(), first()), addr)?;
    for (id, log) in ids.iter().zip(&logs) {
        check_reply(log, || keys.events(collection, id), addr)?;
    }
    let mut report = LoadReport { round_trips: 1, ..LoadReport::default() };
    let (mut items, mut events) = match reuse {
        // Emptied by the calling thread.
        Some(out) => (out.items, out.events),
        None => (Vec::with_capacity(ids.len()), Vec::with_capacity(logs.len())),
    };
    let mut long = Vec::new();
    let key = |id: &Ident| keys.entity(collection, id);
    let values = match snapshots {
        Value::Array(v) if v.len() == ids.len() => v,
        other => {
            let problem = match other {
                Value::ServerError(e) => format!("MGET of {} snapshots failed: {e}", ids.len()),
                other => format!("unexpected reply to MGET: {other:?}"),
            };
            report.issues.extend(ids.iter().map(|id| LoadIssue { key: key(id), problem: problem.clone() }));
            Vec::new()
        }
    };
    let mut values = values.into_iter();
    let mut logs = logs.into_iter();
    for id in ids {
        if let Some(value) = values.next() {
            report.keys_read += 1;
            let decoded = match value {
                Value::BulkString(b) => T::decode_item(b, id, encoding),
                // `MGET` answers nil for a missing key and for a key of
                // another type alike: `explain_missing` tells them apart.
                Value::Nil => Err(NO_VALUE.into()),
                other => Err(format!("unexpected reply {other:?}")),
            };
            match decoded {
                Ok(v) => items.push(v),
                Err(problem) => report.issues.push(LoadIssue { key: key(id), problem }),
            }
        }
        if let Some(reply) = logs.next() {
            if matches!(&reply, Value::Array(v) if v.len() == LOG_SLICE) {
                long.push(id.clone());
            }
            let key = keys.events(collection, id);
            let list = decode_events::<E>(reply, &key, 0, encoding, &mut report);
            if !list.is_empty() {
                events.push((id.clone(), list));
            }
        }
    }
    Ok(ChunkOut { items, events, long, report })
}

pub(super) const NO_VALUE: &str = "in the index but has no value";

/// The entries of a list reply (`SMEMBERS`, `ZDIFF`, `LRANGE`; nil is
/// empty), or `None` with the problem reported against `key`.
fn entries(reply: Value, key: &str, report: &mut LoadReport) -> Option<Vec<Value>> {
    let problem = match reply {
        Value::Array(v) | Value::Set(v) => return Some(v),
        Value::Nil => return Some(Vec::new()),
        Value::ServerError(e) => e.to_string(),
        other => format!("unexpected reply {other:?}"),
    };
    report.issues.push(LoadIssue { key: key.to_string(), problem });
    None
}

/// The ids in a reply listing an index's members (`SMEMBERS`, `ZDIFF`);
/// errors and invalid ids are reported against `index`.
pub(super) fn members_to_ids(reply: Value, index: &str, report: &mut LoadReport) -> Vec<Ident> {
    let members = entries(reply, index, report).unwrap_or_default();
    let mut ids = Vec::with_capacity(members.len());
    for m in members {
        let problem = match &m {
            Value::BulkString(b) => match std::str::from_utf8(b).ok().map(Ident::new) {
                Some(Ok(id)) => {
                    ids.push(id);
                    continue;
                }
                _ => format!("invalid id {:?} in index", String::from_utf8_lossy(b)),
            },
            m => format!("unexpected member {m:?}"),
        };
        report.issues.push(LoadIssue { key: index.to_string(), problem });
    }
    ids
}

/// The entries of a log (or of a slice of it that starts at entry
/// `offset`, which names entries in issues), decoded; repeated event ids
/// are dropped and counted, problems reported.
pub(crate) fn decode_events<E: LoadEvent>(
    reply: Value,
    key: &str,
    offset: usize,
    encoding: crate::config::Encoding,
    report: &mut LoadReport,
) -> Vec<E> {
    let Some(items) = entries(reply, key, report) else { return Vec::new() };
    report.keys_read += 1;
    // Repeated event ids are dropped: a short log is searched, a long one
    // hashed.
    let mut seen = (items.len() > 16).then(|| HashSet::with_capacity(items.len()));
    let mut out: Vec<E> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let decoded = match item {
            Value::BulkString(b) => E::decode_event(b, encoding),
            item => Err(format!("unexpected entry {item:?}")),
        };
        match decoded {
            Ok(ev) => {
                let new = match (ev.dedup_id(), seen.as_mut()) {
                    (None, _) => true,
                    (Some(id), Some(seen)) => seen.insert(id),
                    (Some(id), None) => out.iter().all(|e| e.dedup_id() != Some(id)),
                };
                if new {
                    out.push(ev);
                } else {
                    report.duplicate_events += 1;
                }
            }
            Err(problem) => report.issues.push(LoadIssue { key: format!("{key}[{}]", offset + i), problem }),
        }
    }
    out
}
