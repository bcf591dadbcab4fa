//! Read-your-writes: the writes this process has queued and Redis may not
//! have applied yet, by key, which `get` looks at first.
//!
//! An entry carries the sequence number of the latest write to its key,
//! inserted by the calling thread before the write enters the channel
//! (under the producer lock, so entries follow channel order). It counts
//! only while its write is not settled (`seq > acked_seq`): after that Redis
//! holds that value or a newer one, and later inserts sweep it away. So the
//! writer never touches the overlay on the hot path (cross-core traffic on
//! every write was most of `set`'s cost); it only removes the entry of a
//! write it drops, so that a dropped value is not read back.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::time::Instant;

use parking_lot::Mutex;

use super::op::{Change, KeyHash, Value};
use crate::ident::Ident;

const SHARDS: usize = 64;
/// A shard is swept of settled entries past this size (then past twice what
/// the last sweep left): O(1) per write.
const SWEEP_AT: usize = 256;

/// What the overlay knows about a key.
pub(crate) enum Found {
    /// A queued value.
    Value(Value),
    /// Deleted, or its queued value has expired.
    Absent,
    /// Nothing queued: ask the next layer.
    Unknown,
}

enum State {
    Value {
        value: Value,
        expires: Option<Instant>,
    },
    Deleted,
    /// A new TTL (`touch`) for a key whose value is not queued here: gone
    /// for this process once it passes, sent or not; until then Redis
    /// answers.
    Expires(Option<Instant>),
}

struct Entry {
    seq: u64,
    state: State,
}

/// The previous entry of a key, to put back if the write is not accepted.
#[derive(Default)]
pub(crate) struct Undo(Option<Entry>);

struct ShardMap {
    map: HashMap<Ident, Entry, KeyHash>,
    sweep_at: usize,
}

pub(crate) struct Overlay {
    hasher: KeyHash,
    shards: Box<[Mutex<ShardMap>]>,
}

impl Overlay {
    pub(crate) fn new() -> Self {
        let shard = |_| Mutex::new(ShardMap { map: HashMap::default(), sweep_at: SWEEP_AT });
        Overlay { hasher: KeyHash::default(), shards: (0..SHARDS).map(shard).collect() }
    }

    #[inline]
    fn shard(&self, key: &str) -> &Mutex<ShardMap> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// Records write `seq`; `acked` is how far writes are settled. A
    /// `touch` gives an unsettled entry its new TTL, or records it alone.
    pub(crate) fn record(&self, seq: u64, op: &Change, acked: impl Fn() -> u64) -> Undo {
        let key = op.item().as_str();
        let mut s = self.shard(key).lock();
        let state = match op {
            Change::Set { value, expires, .. } => State::Value { value: value.clone(), expires: *expires },
            Change::Del { .. } => State::Deleted,
            Change::Expire { expires, .. } => {
                let acked = acked();
                match s.map.get(key).filter(|e| e.seq > acked).map(|e| &e.state) {
                    Some(State::Value { value, .. }) => {
                        State::Value { value: value.clone(), expires: *expires }
                    }
                    Some(State::Deleted) => State::Deleted,
                    _ => State::Expires(*expires),
                }
            }
        };
        if let Some(e) = s.map.get_mut(key) {
            return Undo(Some(std::mem::replace(e, Entry { seq, state })));
        }
        s.map.insert(op.item().clone(), Entry { seq, state });
        if s.map.len() > s.sweep_at {
            let acked = acked();
            s.map.retain(|_, e| e.seq > acked);
            s.sweep_at = (s.map.len() * 2).max(SWEEP_AT);
        }
        Undo(None)
    }

    /// Takes write `seq` back unless a newer write to its key is recorded:
    /// puts back the entry it replaced (the channel refused it), or none
    /// (`Undo::default()`: the writer dropped it, not to be read back).
    pub(crate) fn undo(&self, seq: u64, item: &Ident, undo: Undo) {
        let key = item.as_str();
        let mut s = self.shard(key).lock();
        if s.map.get(key).is_some_and(|e| e.seq == seq) {
            match undo.0 {
                Some(old) => s.map.insert(item.clone(), old),
                None => s.map.remove(key),
            };
        }
    }

    /// What is queued for `key`, if its write is not settled (`acked`).
    pub(crate) fn lookup(&self, key: &str, acked: u64) -> Found {
        let s = self.shard(key).lock();
        match s.map.get(key) {
            Some(e) if e.seq > acked => match &e.state {
                State::Deleted => Found::Absent,
                State::Value { expires: Some(t), .. } | State::Expires(Some(t)) if *t <= Instant::now() => {
                    Found::Absent
                }
                State::Value { value, .. } => Found::Value(value.clone()),
                State::Expires(_) => Found::Unknown,
            },
            _ => Found::Unknown,
        }
    }

    /// Forgets every entry whose key starts with `head` (`clear_namespace`).
    pub(crate) fn forget_prefix(&self, head: &[u8]) {
        for s in self.shards.iter() {
            s.lock().map.retain(|k, _| !k.as_bytes().starts_with(head));
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, value: &[u8]) -> Change {
        let v: Value = std::sync::Arc::new(value.to_vec());
        Change::Set { item: Ident::new_unchecked(key), value: v, expires: None }
    }

    fn value(o: &Overlay, key: &str, acked: u64) -> Option<Vec<u8>> {
        match o.lookup(key, acked) {
            Found::Value(v) => {
                let mut out = Vec::new();
                v.encode(crate::Encoding::Json, &mut out).unwrap();
                Some(serde_json::from_slice::<Vec<u8>>(&out).unwrap())
            }
            Found::Absent => Some(Vec::new()),
            Found::Unknown => None,
        }
    }

    #[test]
    fn newest_write_wins_until_it_is_settled() {
        let o = Overlay::new();
        o.record(1, &set("k", b"a"), || 0);
        o.record(2, &set("k", b"b"), || 0);
        assert_eq!(value(&o, "k", 1), Some(b"b".to_vec()), "write 1 settled, 2 not");
        assert_eq!(value(&o, "k", 2), None, "settled: Redis answers");
        o.record(3, &Change::Del { key: Ident::new_unchecked("k") }, || 2);
        assert_eq!(value(&o, "k", 2), Some(vec![]));
        // A dropped write is forgotten, unless a newer one is queued.
        o.record(4, &set("j", b"c"), || 2);
        o.undo(3, &Ident::new_unchecked("j"), Undo::default());
        assert_eq!(value(&o, "j", 2), Some(b"c".to_vec()));
        o.undo(4, &Ident::new_unchecked("j"), Undo::default());
        assert_eq!(value(&o, "j", 2), None);
    }

    #[test]
    fn undo_restores_the_previous_write() {
        let o = Overlay::new();
        o.record(1, &set("k", b"a"), || 0);
        let u = o.record(2, &set("k", b"b"), || 0);
        o.undo(2, &Ident::new_unchecked("k"), u);
        assert_eq!(value(&o, "k", 0), Some(b"a".to_vec()));
        let u = o.record(3, &set("j", b"c"), || 0);
        o.undo(3, &Ident::new_unchecked("j"), u);
        assert_eq!(value(&o, "j", 0), None);
        // A touch of a key with no queued value: Redis answers until the
        // new TTL passes, then the key is gone here, written or not.
        let past = Some(Instant::now());
        let later = Instant::now().checked_add(std::time::Duration::from_secs(60));
        o.record(4, &Change::Expire { key: Ident::new_unchecked("x"), expires: later }, || 0);
        assert_eq!(value(&o, "x", 0), None, "not expired: ask Redis");
        o.record(5, &Change::Expire { key: Ident::new_unchecked("x"), expires: past }, || 0);
        assert_eq!(value(&o, "x", 0), Some(vec![]), "expired");
        assert_eq!(value(&o, "x", 5), None, "settled: Redis answers");
        // A touch of a queued value changes its TTL.
        let u = o.record(6, &Change::Expire { key: Ident::new_unchecked("k"), expires: past }, || 0);
        assert_eq!(value(&o, "k", 0), Some(vec![]), "expired");
        o.undo(6, &Ident::new_unchecked("k"), u);
        assert_eq!(value(&o, "k", 0), Some(b"a".to_vec()), "undone");
        assert_eq!(o.len(), 2);
        o.forget_prefix(b"k");
        assert_eq!(o.len(), 1);
    }

    #[test]
    fn settled_entries_are_swept() {
        let o = Overlay::new();
        for i in 1..=100_000u64 {
            o.record(i, &set(&i.to_string(), b"v"), || i - 1);
        }
        assert!(o.len() <= SHARDS * SWEEP_AT * 2, "{}", o.len());
        // Unsettled entries are never swept.
        let o = Overlay::new();
        for i in 1..=20_000u64 {
            o.record(i, &set(&i.to_string(), b"v"), || 0);
        }
        assert_eq!(o.len(), 20_000);
    }
}
