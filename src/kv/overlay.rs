//! Read-your-writes: the writes this process has queued and Redis has not
//! applied yet, by key. `get` looks here first, so it returns the new value
//! (or the deletion) even before the writer has sent it.
//!
//! An entry carries the sequence number of the latest write to its key.
//! The calling thread inserts it before the write enters the channel (under
//! the producer lock, so entries follow channel order); the writer removes
//! it once the write with that very number is applied or dropped, so a
//! newer write's entry is never removed by an older write's completion.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::time::Instant;

use parking_lot::Mutex;

use super::op::{Item, ItemKey, KeyHash, Op};

const SHARDS: usize = 64;

/// What the overlay knows about a key.
pub(crate) enum Found {
    /// A queued value.
    Value(Item),
    /// Deleted, or its queued value has expired.
    Absent,
    /// Nothing queued: ask the next layer.
    Unknown,
}

enum State {
    Value { item: Item, expires: Option<Instant> },
    Deleted,
}

struct Entry {
    seq: u64,
    state: State,
}

/// The previous entry of a key, to put back if the write is not accepted.
pub(crate) struct Undo(Option<Entry>);

type Shard = Mutex<HashMap<ItemKey, Entry, KeyHash>>;

pub(crate) struct Overlay {
    hasher: KeyHash,
    shards: Box<[Shard]>,
}

impl Overlay {
    pub(crate) fn new() -> Self {
        let hasher = KeyHash::default();
        Overlay { hasher, shards: (0..SHARDS).map(|_| Mutex::new(HashMap::with_hasher(hasher))).collect() }
    }

    #[inline]
    fn shard(&self, key: &[u8]) -> &Shard {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// Records write `seq`. A `touch` (`Expire`) changes an entry that is
    /// there and adds none (the value is in Redis already).
    pub(crate) fn record(&self, seq: u64, op: &Op) -> Undo {
        let key = op.item().key();
        let mut map = self.shard(key).lock();
        let state = match op {
            Op::Set { item, expires } => State::Value { item: item.clone(), expires: *expires },
            Op::Del { .. } => State::Deleted,
            Op::Expire { expires, .. } => {
                let Some(e) = map.get_mut(key) else { return Undo(None) };
                let old = Entry {
                    seq: e.seq,
                    state: match &e.state {
                        State::Value { item, expires } => {
                            State::Value { item: item.clone(), expires: *expires }
                        }
                        State::Deleted => State::Deleted,
                    },
                };
                e.seq = seq;
                if let State::Value { expires: x, .. } = &mut e.state {
                    *x = *expires;
                }
                return Undo(Some(old));
            }
        };
        match map.get_mut(key) {
            Some(e) => Undo(Some(std::mem::replace(e, Entry { seq, state }))),
            None => {
                map.insert(ItemKey(op.item().clone()), Entry { seq, state });
                Undo(None)
            }
        }
    }

    /// Write `seq` was not accepted: puts back what was there before it.
    pub(crate) fn undo(&self, seq: u64, item: &Item, undo: Undo) {
        let key = item.key();
        let mut map = self.shard(key).lock();
        if map.get(key).is_some_and(|e| e.seq == seq) {
            match undo.0 {
                Some(old) => {
                    map.insert(ItemKey(item.clone()), old);
                }
                None => {
                    map.remove(key);
                }
            }
        }
    }

    /// Write `seq` is applied (or dropped): forget it unless a newer one
    /// to the same key is queued.
    pub(crate) fn settle(&self, key: &[u8], seq: u64) {
        let mut map = self.shard(key).lock();
        if map.get(key).is_some_and(|e| e.seq == seq) {
            map.remove(key);
        }
    }

    pub(crate) fn lookup(&self, key: &[u8]) -> Found {
        let map = self.shard(key).lock();
        match map.get(key) {
            None => Found::Unknown,
            Some(Entry { state: State::Deleted, .. }) => Found::Absent,
            Some(Entry { state: State::Value { item, expires }, .. }) => {
                if expires.is_some_and(|t| t <= Instant::now()) {
                    Found::Absent
                } else {
                    Found::Value(item.clone())
                }
            }
        }
    }

    /// Forgets every entry whose key starts with `head` (`clear_namespace`,
    /// after the writer has applied everything queued before it).
    pub(crate) fn forget_prefix(&self, head: &[u8]) {
        for s in self.shards.iter() {
            s.lock().retain(|k, _| !k.0.key().starts_with(head));
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &[u8], value: &[u8]) -> Op {
        let mut b = key.to_vec();
        b.extend_from_slice(value);
        Op::Set { item: Item::new(&b, key.len()), expires: None }
    }

    fn value(o: &Overlay, key: &[u8]) -> Option<Vec<u8>> {
        match o.lookup(key) {
            Found::Value(i) => Some(i.value().to_vec()),
            Found::Absent => Some(Vec::new()),
            Found::Unknown => None,
        }
    }

    #[test]
    fn newest_write_wins_and_older_settles_do_not_remove_it() {
        let o = Overlay::new();
        o.record(1, &set(b"k", b"a"));
        o.record(2, &set(b"k", b"b"));
        o.settle(b"k", 1);
        assert_eq!(value(&o, b"k"), Some(b"b".to_vec()));
        o.settle(b"k", 2);
        assert_eq!(value(&o, b"k"), None);
        o.record(3, &Op::Del { key: Item::new(b"k", 1) });
        assert_eq!(value(&o, b"k"), Some(vec![]));
    }

    #[test]
    fn undo_restores_the_previous_write() {
        let o = Overlay::new();
        o.record(1, &set(b"k", b"a"));
        let u = o.record(2, &set(b"k", b"b"));
        o.undo(2, &Item::new(b"k", 1), u);
        assert_eq!(value(&o, b"k"), Some(b"a".to_vec()));
        let u = o.record(3, &set(b"j", b"c"));
        o.undo(3, &Item::new(b"j", 1), u);
        assert_eq!(value(&o, b"j"), None);
        // A touch only changes what is there.
        let past = Some(Instant::now());
        o.record(4, &Op::Expire { key: Item::new(b"x", 1), expires: past });
        assert_eq!(value(&o, b"x"), None);
        o.record(5, &Op::Expire { key: Item::new(b"k", 1), expires: past });
        assert_eq!(value(&o, b"k"), Some(vec![]), "expired");
        assert_eq!(o.len(), 1);
        o.forget_prefix(b"k");
        assert_eq!(o.len(), 0);
    }
}
