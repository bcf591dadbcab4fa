//! Finding the node to write to: the master through Sentinel (checked
//! with `ROLE`), or the owner of the trader's hash slot in a Cluster
//! (`CLUSTER SLOTS`). Run again on every reconnect, so failovers and
//! resharding are followed.

use std::time::Instant;

use redis::{FromRedisValue, Value};

use super::connect::{connect_to, Conn};
use super::retry::{Cause, Failure};
use crate::config::{Config, HostPort};

/// Asks each sentinel in turn for the master's address (each step bounded
/// by our timeouts: redis-rs's sync Sentinel client has none), connects to
/// it and checks with `ROLE` that it is a master, since a sentinel may not
/// have caught up with a failover yet.
pub(crate) fn connect_sentinel(cfg: &Config, deadline: Option<Instant>) -> Result<Conn, Failure> {
    let master = cfg.sentinel_master.clone().unwrap_or_default();
    // Sentinels usually have no password (or another one than the data
    // nodes): connect without credentials.
    let sentinel_cfg = Config { username: None, password: None, db: 0, ..cfg.clone() };
    first_usable(&cfg.sentinels, &format!("master {master:?}"), "sentinel", |s| {
        master_from_sentinel(cfg, &sentinel_cfg, s, &master, deadline)
    })
}

fn master_from_sentinel(
    cfg: &Config,
    sentinel_cfg: &Config,
    s: &HostPort,
    master: &str,
    deadline: Option<Instant>,
) -> Result<Conn, Failure> {
    let addr = s.to_string();
    let mut sc = connect_to(sentinel_cfg, &s.host, s.port, deadline)?;
    let reply = sc
        .query(redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(master))
        .map_err(|e| Failure::of(&e, &addr))?;
    if matches!(reply, Value::Nil) {
        return Err(Failure::new(Cause::UnknownMaster, addr, format!("does not know master {master:?}")));
    }
    let Ok((host, port)) = <(String, u16)>::from_redis_value_ref(&reply) else {
        let text = format!("unexpected reply for master {master:?}: {reply:?}");
        return Err(Failure::new(Cause::Protocol, addr, text));
    };
    drop(sc);
    let its_master = |mut f: Failure| {
        f.text = format!("its master {host}:{port}: {}", f.text);
        f
    };
    let mut conn = connect_to(cfg, &host, port, deadline).map_err(its_master)?;
    match conn.query(&redis::cmd("ROLE")) {
        Ok(Value::Array(items)) if items.first().and_then(text).as_deref() == Some("master") => Ok(conn),
        // What the server would answer to a write: READONLY.
        Ok(_) => Err(Failure::new(
            Cause::ReadOnly,
            &conn.addr,
            format!("its master {host}:{port} is not a master (yet)"),
        )),
        Err(e) => Err(its_master(Failure::of(&e, &conn.addr))),
    }
}

/// Tries `nodes` in turn until one leads to a usable master. Stops at a
/// permanent failure (the master refused our credentials or certificate:
/// another node will not change that); otherwise one failure names every
/// node with what went wrong, and keeps the last one's class for counting.
fn first_usable(
    nodes: &[HostPort],
    what: &str,
    role: &str,
    mut attempt: impl FnMut(&HostPort) -> Result<Conn, Failure>,
) -> Result<Conn, Failure> {
    let mut tried = Vec::with_capacity(nodes.len());
    for node in nodes {
        match attempt(node) {
            Ok(conn) => return Ok(conn),
            Err(f) if f.cause.is_permanent() => return Err(f),
            Err(f) => tried.push((node.to_string(), f)),
        }
    }
    let addr = nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let Some((_, last)) = tried.last() else {
        let cause = Cause::Discovery(Box::new(Cause::Protocol));
        return Err(Failure::new(cause, addr, format!("no usable master for {what}: no {role} configured")));
    };
    let cause = Cause::Discovery(Box::new(last.cause.clone()));
    let detail =
        tried.iter().map(|(node, f)| format!("{role} {node}: {}", f.text)).collect::<Vec<_>>().join("; ");
    let source = last.source.clone();
    Err(Failure { source, ..Failure::new(cause, addr, format!("no usable master for {what} ({detail})")) })
}

/// Asks the seed nodes in turn which master owns the trader's slot and
/// connects to it.
pub(crate) fn connect_cluster(
    cfg: &Config,
    slot_key: &str,
    deadline: Option<Instant>,
) -> Result<Conn, Failure> {
    first_usable(&cfg.cluster_nodes, &format!("key {slot_key}"), "seed", |HostPort { host, port }| {
        let mut seed = connect_to(cfg, host, *port, deadline)?;
        let (h, p) = cluster_owner(&mut seed, slot_key)?;
        if h == *host && p == *port {
            Ok(seed)
        } else {
            drop(seed);
            connect_to(cfg, &h, p, deadline)
        }
    })
}

/// The cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag (the
/// part between the first `{` and the next `}`, if not empty) or of the
/// whole key, modulo 16384 (Redis Cluster specification, "Keys hash tags").
/// Computed here rather than asked with `CLUSTER KEYSLOT`: one round trip
/// and one ACL permission less.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter().position(|&b| b == b'}').map(|close| &rest[..close])
        })
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc % 16384
}

/// Finds the master that owns `key`'s slot.
fn cluster_owner(seed: &mut Conn, key: &str) -> Result<(String, u16), Failure> {
    let addr = seed.addr.clone();
    let slot = i64::from(key_slot(key.as_bytes()));
    let reply = seed.query(redis::cmd("CLUSTER").arg("SLOTS")).map_err(|e| Failure::of(&e, &addr))?;
    let seed_host = addr.rsplit_once(':').map_or("", |(h, _)| h);
    let ranges = cluster_slots(&reply, seed_host)
        .ok_or_else(|| Failure::new(Cause::Protocol, &addr, "unexpected CLUSTER SLOTS reply"))?;
    let owner = ranges.into_iter().find(|(lo, hi, ..)| (*lo..=*hi).contains(&slot));
    // What a node answers while a slot has no owner: CLUSTERDOWN.
    owner
        .map(|(.., host, port)| (host, port))
        .ok_or_else(|| Failure::new(Cause::Busy, addr, format!("no master owns slot {slot}")))
}

/// The slot ranges of a `CLUSTER SLOTS` reply, each `(first, last, host,
/// port)` of its master (`seed_host` where the node leaves its host empty:
/// the node asked); ranges of another shape are skipped. `None` when the
/// reply is not a list.
pub(crate) fn cluster_slots(reply: &Value, seed_host: &str) -> Option<Vec<(i64, i64, String, u16)>> {
    let Value::Array(ranges) = reply else { return None };
    let range = |r: &Value| {
        let Value::Array(items) = r else { return None };
        let (Some(Value::Int(lo)), Some(Value::Int(hi)), Some(Value::Array(master))) =
            (items.first(), items.get(1), items.get(2))
        else {
            return None;
        };
        let host = master.first().and_then(text)?;
        let host = if host.is_empty() { seed_host.to_string() } else { host };
        let Some(Value::Int(port)) = master.get(1) else { return None };
        Some((*lo, *hi, host, *port as u16))
    };
    Some(ranges.iter().filter_map(range).collect())
}

/// A bulk, simple or verbatim string reply as text (a `TYPE` reply's type
/// name, a node's address).
pub(crate) fn text(v: &Value) -> Option<String> {
    String::from_redis_value_ref(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_match_redis() {
        // The specification's check value, then `CLUSTER KEYSLOT` answers
        // of Redis 7.0.15.
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        for (key, slot) in [
            (&b"somekey"[..], 11058),
            (b"foo{hash_tag}", 2515),
            (b"{user1000}.following", 3443),
            (b"user1000", 3443),
            // An empty tag does not count; only the first `{` opens one.
            (b"foo{}{bar}", 8363),
            (b"foo{{bar}}zap", 4015),
            (b"{bar", 4015),
            (b"{trader-T1}:writer:main", 12116),
            (b"trader-T1", 12116),
            (b"no-brace}", 8241),
            (b"{}", 15257),
            (b"", 0),
        ] {
            assert_eq!(key_slot(key), slot, "{}", String::from_utf8_lossy(key));
        }
    }
}
