//! The read pool: up to `max_connections` blocking connections (opened on
//! demand, not the writer's) for the calls answered on the calling thread:
//! `GET`, pipelined `MGET`s, `EXISTS`, `SCAN`/`UNLINK`. A caller takes a
//! free connection (trying each once before waiting for one). A failure
//! drops the connection (replies of a pipeline may be left unread).

use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use redis::Value;

use super::route::{self, Links, Node, Topology};
use crate::net::{self, reply_error, Action, Failure, Packer};
use crate::ErrorKind;

pub(crate) struct Pool {
    topo: Arc<Topology>,
    slots: Box<[Mutex<Slot>]>,
}

#[derive(Default)]
struct Slot {
    links: Links,
    packer: Packer,
}

/// A reply to one key.
pub(crate) enum Reply {
    Value(Vec<u8>),
    Nil,
    /// A server error for this key alone (`WRONGTYPE`: not a string).
    Refused(String),
}

impl Pool {
    pub(crate) fn new(topo: Arc<Topology>, size: usize) -> Self {
        Pool { topo, slots: (0..size.max(1)).map(|_| Mutex::default()).collect() }
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        let n = self.slots.len();
        let start = super::THREAD_HASH.with(|h| *h) % n;
        for i in 0..n {
            if let Some(g) = self.slots[(start + i) % n].try_lock() {
                return g;
            }
        }
        self.slots[start].lock()
    }

    /// Runs `f` against the node owning `key`, once more after a failure
    /// of a connection that had been idle in the pool (a server restart
    /// leaves it dead), and in a cluster after a `MOVED`/`ASK` or a lost
    /// node (the slot table is read again in between).
    fn with_node<T>(
        &self,
        key: &[u8],
        mut f: impl FnMut(&mut net::Conn, &mut Packer) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let mut slot = self.slot();
        let Slot { links, packer } = &mut *slot;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let node = self.topo.route(key)?;
            let mut reused = false;
            let result = self.topo.link(links, &node).and_then(|(c, fresh)| {
                reused = !fresh;
                f(c, packer)
            });
            let e = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            // Replies may be left unread after an error: never reuse it.
            links.remove(&node);
            // `MOVED` (class ReadOnly), `ASK`, `CLUSTERDOWN`, `TRYAGAIN`
            // (Busy) or a lost node: the slot table may be out of date.
            let stale = self.topo.clustered()
                && (matches!(e.class(), ErrorKind::ReadOnly | ErrorKind::Busy)
                    || e.action() == Action::Reconnect);
            if stale {
                self.topo.invalidate();
            }
            let retry = stale || (reused && e.action() == Action::Reconnect);
            if !retry || attempt >= 2 {
                return Err(e);
            }
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Reply, Failure> {
        self.with_node(key, |c, p| one_reply(roundtrip(c, p, &[b"GET", key])?))
    }

    pub(crate) fn exists(&self, key: &[u8]) -> Result<bool, Failure> {
        self.with_node(key, |c, p| match roundtrip(c, p, &[b"EXISTS", key])? {
            Value::Int(n) => Ok(n > 0),
            v => Err(server_failure(c, &v)),
        })
    }

    /// The values of `keys`, in order, sent to each master in one write:
    /// one `MGET` per `chunk` keys, or in a cluster a `GET` per key (keys
    /// of several slots cannot share a command).
    pub(crate) fn mget(&self, keys: &[Vec<u8>], chunk: usize) -> Result<Vec<Reply>, Failure> {
        let (per_key, chunk) = (self.topo.clustered(), chunk.max(1));
        let mut out: Vec<Reply> = keys.iter().map(|_| Reply::Nil).collect();
        for (_, idx) in self.topo.by_node(keys.iter().map(|k| &k[..]), Err)? {
            let replies = self.with_node(&keys[idx[0]], |c, p| {
                p.clear();
                if per_key {
                    idx.iter().for_each(|&i| p.cmd(&[b"GET", &keys[i]]));
                } else {
                    for part in idx.chunks(chunk) {
                        p.array(part.len() + 1);
                        p.bulk(b"MGET");
                        part.iter().for_each(|&i| p.bulk(&keys[i]));
                    }
                }
                let mut vs = c.round_trip(p)?;
                if !per_key {
                    let mut items = Vec::with_capacity(idx.len());
                    for (v, part) in vs.into_iter().zip(idx.chunks(chunk)) {
                        match v {
                            Value::Array(v) if v.len() == part.len() => items.extend(v),
                            other => return Err(server_failure(c, &other)),
                        }
                    }
                    vs = items;
                }
                if let Some(v) =
                    vs.iter().find(|v| reply_error(v).is_some_and(|(code, _)| route::is_redirect(&code)))
                {
                    return Err(server_failure(c, v));
                }
                Ok(vs.into_iter().map(|v| one_reply(v).unwrap_or(Reply::Nil)).collect::<Vec<_>>())
            })?;
            for (i, r) in idx.into_iter().zip(replies) {
                out[i] = r;
            }
        }
        Ok(out)
    }

    /// Deletes every key matching `pattern` on every master (`SCAN` +
    /// `UNLINK`); returns how many were deleted.
    pub(crate) fn scan_unlink(&self, pattern: &[u8]) -> Result<u64, Failure> {
        let mut deleted = 0;
        for node in self.topo.masters()? {
            let mut slot = self.slot();
            let Slot { links, .. } = &mut *slot;
            let c = self.topo.link(links, &node)?.0;
            match scan_unlink_on(c, pattern, self.topo.clustered()) {
                Ok(n) => deleted += n,
                Err(f) => {
                    links.remove(&node);
                    return Err(f);
                }
            }
        }
        Ok(deleted)
    }

    /// Opens one connection now (at `open`, so a first `get` does not pay
    /// for it).
    pub(crate) fn warm(&self, node: Node, conn: net::Conn) {
        self.slots[0].lock().links.insert(node, conn);
    }
}

/// `SCAN` + `UNLINK` on one node: each step's keys with one `UNLINK`, or
/// in a cluster one per key, pipelined (keys of several slots cannot share
/// a command).
fn scan_unlink_on(c: &mut net::Conn, pattern: &[u8], per_key: bool) -> Result<u64, Failure> {
    let (mut cursor, mut deleted) = (String::from("0"), 0);
    loop {
        let scan = redis::cmd("SCAN").arg(&cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000).clone();
        let reply = c.query(&scan).map_err(|e| Failure::of(&e, &c.addr))?;
        let keys: Vec<Vec<u8>>;
        (cursor, keys) = redis::from_redis_value_ref(&reply).map_err(|_| server_failure(c, &reply))?;
        if !keys.is_empty() {
            let mut p = Packer::default();
            if per_key {
                keys.iter().for_each(|k| p.cmd(&[b"UNLINK", k]));
            } else {
                p.array(keys.len() + 1);
                p.bulk(b"UNLINK");
                keys.iter().for_each(|k| p.bulk(k));
            }
            for v in c.round_trip(&p)? {
                match v {
                    Value::Int(n) => deleted += n.max(0) as u64,
                    v => return Err(server_failure(c, &v)),
                }
            }
        }
        if cursor == "0" {
            return Ok(deleted);
        }
    }
}

/// One command's reply.
fn roundtrip(c: &mut net::Conn, p: &mut Packer, cmd: &[&[u8]]) -> Result<Value, Failure> {
    p.clear();
    p.cmd(cmd);
    Ok(c.round_trip(p)?.pop().unwrap_or(Value::Nil))
}

fn one_reply(v: Value) -> Result<Reply, Failure> {
    match v {
        Value::Nil => Ok(Reply::Nil),
        Value::BulkString(b) => Ok(Reply::Value(b)),
        Value::ServerError(e) => {
            let code = e.code().to_string();
            let cause = net::Cause::of_code(&code);
            if cause.action() == Action::Drop {
                Ok(Reply::Refused(e.to_string()))
            } else {
                Err(Failure::new(cause, String::new(), e.to_string()).with_source(net::source_of(&e)))
            }
        }
        other => Ok(Reply::Refused(format!("unexpected reply {other:?}"))),
    }
}

fn server_failure(c: &net::Conn, v: &Value) -> Failure {
    match reply_error(v) {
        Some((code, text)) => net::Failure::new(net::Cause::of_code(&code), c.addr.clone(), text),
        None => Failure::new(net::Cause::Protocol, c.addr.clone(), format!("unexpected reply {v:?}")),
    }
}
