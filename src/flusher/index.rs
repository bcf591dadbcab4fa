//! Open and closed entities: besides `index:{collection}` (every id with a
//! snapshot), each batch keeps `index:{collection}:open` (a set) and
//! `index:{collection}:closed` (a sorted set scored by last update, in ms)
//! in step with its writes, in the same transaction, asking the record
//! ([`crate::Entity::is_closed`]) as it builds the batch.
//!
//! What is known to be indexed (`Indexed`) lets a batch skip the commands
//! of an id whose state did not change; it keeps those ids (`Skipped`) to
//! add them back at its front if the connection changes before it is
//! sent (a restarted server may have lost entries, `pack_reindex`).

use std::collections::HashMap;

use crate::ident::Ident;
use crate::net::{Args, Packer};
use crate::store::keys::Keys;

use super::pending::Key;
use super::FastState;

/// Ids in the index sets once every built batch applies, with whether each
/// is open (in `…:open`) or closed (in `…:closed`).
pub(super) type Indexed = HashMap<Key, bool, FastState>;

/// A put whose index commands were skipped (the id was known indexed in
/// the same state), and whether it is open.
pub(super) type Skipped = (Key, bool);

/// One batch's commands on the open and closed indexes (`SADD`/`SREM` of
/// `…:open`, `ZADD`/`ZREM` of `…:closed`).
#[derive(Default)]
pub(super) struct StateBufs {
    open_add: Vec<(&'static str, Args)>,
    open_rem: Vec<(&'static str, Args)>,
    /// `ZADD …:closed` (score, member pairs).
    closed_add: Vec<(&'static str, Args)>,
    closed_rem: Vec<(&'static str, Args)>,
}

impl StateBufs {
    pub(super) fn clear(&mut self) {
        for v in [&mut self.open_add, &mut self.open_rem, &mut self.closed_add, &mut self.closed_rem] {
            v.iter_mut().for_each(|(_, a)| a.clear());
        }
    }

    /// `id` is open (into `…:open`, out of `…:closed`) or closed (out of
    /// `…:open`; its score goes into `…:closed` apart).
    fn set_state(&mut self, collection: &'static str, id: &Ident, open: bool) {
        if open {
            add_member(&mut self.open_add, collection, id.as_bytes());
            add_member(&mut self.closed_rem, collection, id.as_bytes());
        } else {
            add_member(&mut self.open_rem, collection, id.as_bytes());
        }
    }

    /// A put of `key`, open or closed (last updated at `score_ms`): adds the
    /// commands that keep the indexes in step to this batch, and to `sadd`
    /// (the `index:{collection}` members) when the id is not known to be
    /// indexed. Returns `Some` when nothing but a closed entity's new score
    /// was needed: the batch lists it as skipped (see `pack_reindex`).
    pub(super) fn put(
        &mut self,
        sadd: &mut Vec<(&'static str, Args)>,
        indexed: &mut Indexed,
        key: Key,
        open: bool,
        score_ms: u64,
    ) -> Option<Skipped> {
        let collection = key.0;
        if !open {
            // The last update moves with every put of a closed entity.
            add_member(&mut self.closed_add, collection, score_ms.to_string().as_bytes());
            add_member(&mut self.closed_add, collection, key.1.as_bytes());
        }
        if indexed.get(&key) == Some(&open) {
            return Some((key, open));
        }
        add_member(sadd, collection, key.1.as_bytes());
        self.set_state(collection, &key.1, open);
        indexed.insert(key, open);
        None
    }

    /// A delete (or a purge) of `id`: out of both.
    pub(super) fn delete(&mut self, collection: &'static str, id: &Ident) {
        add_member(&mut self.open_rem, collection, id.as_bytes());
        add_member(&mut self.closed_rem, collection, id.as_bytes());
    }

    /// Packs the batch's commands, each with its weight (the writes it
    /// carries: dropped if Redis refuses it, a key of the wrong type).
    pub(super) fn pack(&self, p: &mut Packer, keys: &Keys, key: &mut Vec<u8>, weights: &mut Vec<u64>) {
        let sets = [
            (&self.open_add, &b"SADD"[..], false, 1),
            (&self.open_rem, &b"SREM"[..], false, 1),
            (&self.closed_add, &b"ZADD"[..], true, 2),
            (&self.closed_rem, &b"ZREM"[..], true, 1),
        ];
        for (set, cmd, closed, per) in sets {
            for (collection, ids) in set.iter().filter(|(_, a)| !a.is_empty()) {
                key.clear();
                if closed {
                    keys.write_closed_index(key, collection);
                } else {
                    keys.write_open_index(key, collection);
                }
                p.cmd_args(&[cmd, key], ids);
                weights.push((ids.n / per) as u64);
            }
        }
    }
}

/// The commands a batch skipped for ids known indexed, to put back at its
/// front when it is sent on a connection it was not built for: `SADD` to
/// `index:{collection}`, and the id's open or closed state (a closed id's
/// score is in the batch already). Returns each command's weight.
pub(super) fn pack_reindex(
    p: &mut Packer,
    keys: &Keys,
    skipped: &[Skipped],
    sadd: &mut Vec<(&'static str, Args)>,
    state: &mut StateBufs,
    key: &mut Vec<u8>,
) -> Vec<u64> {
    sadd.iter_mut().for_each(|(_, a)| a.clear());
    state.clear();
    for ((collection, id), open) in skipped {
        add_member(sadd, collection, id.as_bytes());
        state.set_state(collection, id, *open);
    }
    let mut weights = Vec::new();
    for (collection, ids) in sadd.iter().filter(|(_, a)| !a.is_empty()) {
        key.clear();
        keys.write_index(key, collection);
        p.cmd_args(&[b"SADD", key], ids);
        weights.push(ids.n as u64);
    }
    state.pack(p, keys, key, &mut weights);
    weights
}

/// Milliseconds since the epoch, the score of a closed entity without
/// [`crate::Entity::last_updated`] and the clock of purges and streams.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Adds `member` to the arguments kept for `collection` in `v`.
pub(super) fn add_member(v: &mut Vec<(&'static str, Args)>, collection: &'static str, member: &[u8]) {
    match v.iter_mut().find(|(c, _)| *c == collection) {
        Some((_, a)) => a.bulk(member),
        None => {
            let mut a = Args::default();
            a.bulk(member);
            v.push((collection, a));
        }
    }
}
