//! The registry of collections, `{prefix}:index:` ([`Keys::registry`]): a
//! set of the names of the collections that have an index set, so that
//! [`crate::Cache::collections`] costs two round trips, not a `SCAN` of
//! the whole keyspace.
//!
//! How it stays true:
//! - every batch that adds ids to `index:{c}` adds `c` to the registry in
//!   the same transaction (`flusher/batch.rs`, `flusher/index.rs`), and so
//!   does the first batch of a flusher that writes to `c` at all (an
//!   event-only collection has no index set, but its logs are the cache's:
//!   `clear`, `flush_on_start` and the CLI find them through the registry);
//!   `tradecache import` registers every collection it writes, then marks
//!   the registry complete (it replaced the trader's whole state);
//! - `open`, once its marker is claimed (an older writer can no longer
//!   add a collection behind it), makes sure the registry is complete: a
//!   registry without its empty member (written before registries
//!   existed, or deleted by hand) is seeded from a `SCAN` of the index
//!   sets, then given the empty member ([`prepare`]);
//! - `clear` and `flush_on_start` keep it, like the commit markers (it may
//!   so name collections that no longer have an index set, or never had
//!   one: `collections()` keeps only the names whose index set exists).
//!
//! A reader trusts it only when it holds the empty member, and scans
//! otherwise: a registry deleted by hand and re-created by later batches
//! is not complete, and is not taken for it.

use redis::{FromRedisValue, Value};

use crate::net::{self, reply_error, Conn, Failure, Packer};
use crate::store::keys::Keys;

/// The member that says the registry is complete (no collection is named
/// with the empty string).
pub(crate) const COMPLETE: &[u8] = b"";

/// At `open`, once the marker is claimed: makes the registry complete if
/// it is not. Nothing without a trader prefix, or when the key holds
/// something else than a set (logged; the readers then scan, and each
/// batch's `SADD` to it is counted as an error).
pub(crate) fn prepare(conn: &mut Conn, keys: &Keys) -> Result<(), Failure> {
    let Some(key) = keys.registry() else { return Ok(()) };
    let mut p = Packer::default();
    // (`SMEMBERS`, not `SISMEMBER`: the commands docs/deployment.md's ACL
    // grants; the registry holds a few names.)
    p.cmd(&[b"TYPE", key.as_bytes()]);
    p.cmd(&[b"SMEMBERS", key.as_bytes()]);
    let mut replies = conn.round_trip(&p)?;
    let members_reply = replies.pop().unwrap_or(Value::Nil);
    let type_reply = replies.pop().unwrap_or(Value::Nil);
    let type_name = crate::net::discovery::text(&type_reply);
    if type_name.as_deref() == Some("set") && members(members_reply.clone()).is_some() {
        return Ok(());
    }
    if let Some(t) = type_name.filter(|t| t != "set" && t != "none") {
        log::warn!(
            "tradecache: {key} holds a {t}, not the registry of collections: collections() scans the \
             index sets instead"
        );
        return Ok(());
    }
    let addr = conn.addr.clone();
    let refused = |(code, text): (String, String), cmd: &str| {
        Failure::new(net::Cause::of_code(&code), addr.as_str(), format!("{cmd}{key}: {text}"))
    };
    if let Some(e) = reply_error(&type_reply).or_else(|| reply_error(&members_reply)) {
        return Err(refused(e, ""));
    }
    // Not complete: seed it with every index set there is.
    let mut found: Vec<Vec<u8>> = Vec::new();
    if let Some(pattern) = keys.index_pattern() {
        crate::store::own_keys::index_collections(conn, keys, &pattern, &mut found)?;
    }
    let mut args = net::Args::default();
    args.bulk(COMPLETE);
    for c in &found {
        args.bulk(c);
    }
    p.clear();
    p.cmd_args(&[b"SADD", key.as_bytes()], &args);
    let reply = conn.round_trip(&p)?.pop().unwrap_or(Value::Nil);
    reply_error(&reply).map_or(Ok(()), |e| Err(refused(e, "SADD ")))
}

/// The collection names a registry's `SMEMBERS` reply lists, when it is
/// complete (holds [`COMPLETE`]); `None` when it is not, or is not a set.
pub(crate) fn members(reply: Value) -> Option<Vec<Vec<u8>>> {
    let mut names = Vec::<Vec<u8>>::from_redis_value(reply).ok()?;
    let all = names.len();
    names.retain(|n| n != COMPLETE);
    (names.len() < all).then_some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_is_trusted_only_with_its_empty_member() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let names = members(Value::Array(vec![bulk("orders"), bulk(""), bulk("fills")])).expect("complete");
        assert_eq!(names, [b"orders".to_vec(), b"fills".to_vec()]);
        assert_eq!(members(Value::Set(vec![bulk("")])), Some(vec![]));
        assert_eq!(members(Value::Array(vec![bulk("orders")])), None);
        assert_eq!(members(Value::Array(vec![])), None);
        assert_eq!(members(Value::Nil), None);
    }
}
