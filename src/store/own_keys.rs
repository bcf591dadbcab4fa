//! Deleting a cache's own keys (`clear`, `flush_on_start`): `SCAN` +
//! `UNLINK` of exactly the keys [`Keys::owns`] says are this cache's, never
//! another trader's, instance's or application's, and never `FLUSHDB`.

use redis::{FromRedisValue, Value};

use crate::net::{self, Conn, Failure, Packer};
use crate::store::keys::{Keys, ENTITY_COLLECTIONS};

/// Where `delete_own_keys` sends its reads: a plain connection (at
/// `open`), or the flusher's, whose round trips keep its reply stream in
/// step.
pub(crate) trait Session {
    /// Sends one packed command and reads its reply.
    fn query(&mut self, packed: &[u8]) -> Result<Value, Failure>;
    /// `host:port` of the server, for failures.
    fn addr(&self) -> &str;
}

impl Session for Conn {
    fn query(&mut self, packed: &[u8]) -> Result<Value, Failure> {
        self.con.send_packed_command(packed).map_err(|e| Failure::of(&e, &self.addr))?;
        self.con.recv_response().map_err(|e| Failure::of(&e, &self.addr))
    }

    fn addr(&self) -> &str {
        &self.addr
    }
}

/// Deletes this cache's keys, except writers' commit markers, handing each
/// `SCAN` page's keys to `unlink` (which returns how many it deleted).
/// The event logs of a collection are recognised when it is a reference
/// collection, has an index set, is named by the registry of collections
/// (so an event-only collection is found too), or is in `written`
/// (collections this flusher wrote). Returns how many keys were deleted.
///
/// Keys written while the scan runs may or may not be deleted (`SCAN`'s
/// guarantee); the flusher runs it with nothing of its own in flight.
pub(crate) fn delete_own_keys<S: Session>(
    conn: &mut S,
    keys: &Keys,
    written: &[&'static str],
    mut unlink: impl FnMut(&mut S, &[Vec<u8>]) -> Result<u64, Failure>,
) -> Result<u64, Failure> {
    let (Some(pattern), Some(index_pattern)) = (keys.pattern(), keys.index_pattern()) else {
        // No trader prefix: which keys are ours cannot be told from a
        // pattern (refused by `Config::validate` and `Cache::clear`).
        return Ok(0);
    };
    let mut collections: Vec<Vec<u8>> =
        ENTITY_COLLECTIONS.iter().chain(written).map(|c| c.as_bytes().to_vec()).collect();
    index_collections(conn, keys, &index_pattern, &mut collections)?;
    registry_collections(conn, keys, &mut collections)?;
    let known: Vec<&[u8]> = collections.iter().map(Vec::as_slice).collect();
    let mut deleted = 0;
    scan(conn, &pattern, |conn, page| {
        let own: Vec<Vec<u8>> = page.into_iter().filter(|k| keys.owns(k, &known)).collect();
        if !own.is_empty() {
            deleted += unlink(conn, &own)?;
        }
        Ok(())
    })?;
    Ok(deleted)
}

/// Adds to `found` the collection of every index set `index_pattern`
/// matches (`SCAN`), each once.
pub(crate) fn index_collections<S: Session>(
    conn: &mut S,
    keys: &Keys,
    index_pattern: &str,
    found: &mut Vec<Vec<u8>>,
) -> Result<(), Failure> {
    scan(conn, index_pattern, |_, page| {
        for k in page {
            if let Some(c) = keys.index_collection(&k) {
                if !found.iter().any(|known| known == c) {
                    found.push(c.to_vec());
                }
            }
        }
        Ok(())
    })
}

/// Adds to `found` the collections the registry of collections names
/// (`crate::store::registry`), each once. A registry of another type names none
/// (`open` logged it); a refused `SMEMBERS` is an error.
fn registry_collections<S: Session>(
    conn: &mut S,
    keys: &Keys,
    found: &mut Vec<Vec<u8>>,
) -> Result<(), Failure> {
    let Some(registry) = keys.registry() else { return Ok(()) };
    let mut p = Packer::default();
    p.cmd(&[b"SMEMBERS", registry.as_bytes()]);
    match conn.query(&p.buf)? {
        Value::Array(names) | Value::Set(names) => {
            for name in names {
                if let Value::BulkString(c) = name {
                    if !c.is_empty() && !found.contains(&c) {
                        found.push(c);
                    }
                }
            }
            Ok(())
        }
        Value::ServerError(e) if e.code() == "WRONGTYPE" => Ok(()),
        Value::ServerError(e) => {
            Err(Failure::new(net::Cause::of_code(e.code()), conn.addr(), format!("SMEMBERS {registry}: {e}")))
        }
        _ => Err(Failure::new(net::Cause::Protocol, conn.addr(), "unexpected SMEMBERS reply")),
    }
}

/// A plain `UNLINK` (at `open`, before the flusher exists; the marker was
/// claimed just before, so a fenced writer cannot write behind it).
pub(crate) fn unlink(conn: &mut Conn, keys: &[Vec<u8>]) -> Result<u64, Failure> {
    let deleted = conn.query(redis::cmd("UNLINK").arg(keys)).map_err(|e| Failure::of(&e, &conn.addr))?;
    Ok(u64::from_redis_value(deleted).unwrap_or(0))
}

/// Walks `SCAN … MATCH pattern`, handing each page of keys to `page`.
fn scan<S: Session>(
    conn: &mut S,
    pattern: &str,
    mut page: impl FnMut(&mut S, Vec<Vec<u8>>) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut cursor: u64 = 0;
    let mut p = Packer::default();
    loop {
        p.clear();
        p.cmd(&[b"SCAN", cursor.to_string().as_bytes(), b"MATCH", pattern.as_bytes(), b"COUNT", b"1000"]);
        let reply = conn.query(&p.buf)?;
        if let Some((code, text)) = net::reply_error(&reply) {
            return Err(Failure::new(net::Cause::of_code(&code), conn.addr(), format!("SCAN: {text}")));
        }
        let Ok((next, keys)) = <(u64, Vec<Vec<u8>>)>::from_redis_value(reply) else {
            return Err(Failure::new(net::Cause::Protocol, conn.addr(), "unexpected SCAN reply"));
        };
        page(conn, keys)?;
        cursor = next;
        if cursor == 0 {
            return Ok(());
        }
    }
}
