//! Writes received but not yet packed into a batch: snapshots coalesced
//! per key, in the order each key first arrived, and events in arrival
//! order. A batch takes a prefix of both by sequence number, so batches
//! apply in the order the writes were made.
//!
//! Folding moves a write to an earlier place (a put coalesced into a key's
//! entry, a delete that supersedes pending events), so every item carries
//! its *reach*, the last write it stands for, and a batch that takes an
//! item takes everything up to its reach: a batch is exactly the writes of
//! a sequence range, whatever was folded.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use crate::channel::msg::{EventRecord, Record};
use crate::ident::Ident;

use super::FastState;

/// A snapshot key: collection and id.
pub(super) type Key = (&'static str, Ident);

/// The state a snapshot key is pending in.
// Pending values are kept unboxed: boxing each would allocate per write.
#[allow(clippy::large_enum_variant)]
pub(super) enum Snap {
    Put {
        rec: Record,
        /// A delete was folded into this put: the log and the index entry
        /// are restarted (the `DEL` applies even if the put is dropped).
        after_delete: bool,
        /// The first put folded into this one since it was a delete, and
        /// how many: what is reported lost if the value cannot be written.
        since: u64,
        puts: u64,
    },
    Delete,
}

pub(super) struct SnapEntry {
    pub(super) key: Key,
    pub(super) snap: Snap,
    /// The first write folded into this entry: entries are ordered by it.
    pub(super) first_seq: u64,
    /// The last write folded into it (its reach).
    pub(super) last_seq: u64,
}

pub(super) struct PendingEvent {
    pub(super) collection: &'static str,
    pub(super) id: Ident,
    pub(super) rec: EventRecord,
    pub(super) seq: u64,
    /// The delete of its entity that superseded it: not written, it keeps
    /// its place, and reaches the delete.
    pub(super) superseded_by: Option<u64>,
}

/// One item taken for a batch, in sequence order.
pub(super) enum Item {
    Snap(SnapEntry),
    Event(PendingEvent),
}

impl Item {
    /// The last write it stands for (see the module docs).
    pub(super) fn reach(&self) -> u64 {
        match self {
            Item::Snap(e) => e.last_seq,
            Item::Event(e) => e.superseded_by.unwrap_or(e.seq),
        }
    }
}

#[derive(Default)]
pub(super) struct Pending {
    snaps: VecDeque<SnapEntry>,
    /// Where each key's entry is: `base` + its index in `snaps`.
    slots: HashMap<Key, u64, FastState>,
    base: u64,
    events: VecDeque<PendingEvent>,
    /// The highest sequence number absorbed.
    max_seq: u64,
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.snaps.is_empty() && self.events.is_empty()
    }

    /// Entries pending (coalesced snapshots plus events).
    pub(super) fn len(&self) -> usize {
        self.snaps.len() + self.events.len()
    }

    pub(super) fn snapshots(&self) -> usize {
        self.snaps.len()
    }

    pub(super) fn events(&self) -> usize {
        self.events.len()
    }

    /// Folds a put in; returns whether it superseded a pending write.
    pub(super) fn put(&mut self, seq: u64, rec: Record) -> bool {
        let key = (rec.as_dyn().collection(), Ident::new_unchecked(rec.as_dyn().id()));
        let entry = match self.entry(seq, key) {
            Ok(entry) => entry,
            Err(key) => {
                self.push(seq, key, Snap::Put { rec, after_delete: false, since: seq, puts: 1 });
                return false;
            }
        };
        let (after_delete, since, puts) = match &entry.snap {
            Snap::Put { after_delete, since, puts, .. } => (*after_delete, *since, puts + 1),
            Snap::Delete => (true, seq, 1),
        };
        entry.snap = Snap::Put { rec, after_delete, since, puts };
        true
    }

    /// Folds a delete in; returns how many pending writes it superseded
    /// (events of that entity, and a pending put).
    pub(super) fn delete(&mut self, seq: u64, collection: &'static str, id: Ident) -> u64 {
        let mut superseded = 0;
        for e in self.events.iter_mut().filter(|e| e.superseded_by.is_none()) {
            if e.collection == collection && e.id == id {
                e.superseded_by = Some(seq);
                superseded += 1;
            }
        }
        match self.entry(seq, (collection, id)) {
            Ok(entry) => {
                superseded += u64::from(matches!(entry.snap, Snap::Put { .. }));
                entry.snap = Snap::Delete;
            }
            Err(key) => self.push(seq, key, Snap::Delete),
        }
        superseded
    }

    /// The pending entry of `key`, which write `seq` now reaches; else
    /// `Err(key)`, its slot set to the back, where `push` puts its entry.
    fn entry(&mut self, seq: u64, key: Key) -> Result<&mut SnapEntry, Key> {
        self.max_seq = seq;
        let back = self.base + self.snaps.len() as u64;
        match self.slots.entry(key) {
            Entry::Occupied(mut e) => match slot(&mut self.snaps, self.base, *e.get()) {
                Some(entry) => {
                    entry.last_seq = seq;
                    Ok(entry)
                }
                // (Cannot happen: every slot points into `snaps`.)
                None => {
                    e.insert(back);
                    Err(e.key().clone())
                }
            },
            Entry::Vacant(e) => {
                let key = e.key().clone();
                e.insert(back);
                Err(key)
            }
        }
    }

    /// Starts `key`'s entry at the back with write `seq`.
    fn push(&mut self, seq: u64, key: Key, snap: Snap) {
        self.snaps.push_back(SnapEntry { key, snap, first_seq: seq, last_seq: seq });
    }

    pub(super) fn append(&mut self, seq: u64, collection: &'static str, id: Ident, rec: EventRecord) {
        self.max_seq = seq;
        self.events.push_back(PendingEvent { collection, id, rec, seq, superseded_by: None });
    }

    /// Takes the next item in sequence order: the snapshot entry or the
    /// event whose (first) sequence number is lower.
    pub(super) fn take(&mut self) -> Option<Item> {
        let snap = self.snaps.front().map(|e| e.first_seq);
        let event = self.events.front().map(|e| e.seq);
        match (snap, event) {
            (Some(s), e) if e.is_none_or(|e| s < e) => {
                let entry = self.snaps.pop_front()?;
                self.slots.remove(&entry.key);
                self.base += 1;
                Some(Item::Snap(entry))
            }
            _ => self.events.pop_front().map(Item::Event),
        }
    }

    /// The place of the next item [`Pending::take`] returns (its first
    /// sequence number): a batch may stop before it only when no item
    /// taken reaches that far.
    pub(super) fn next_position(&self) -> Option<u64> {
        let snap = self.snaps.front().map(|e| e.first_seq);
        snap.into_iter().chain(self.events.front().map(|e| e.seq)).min()
    }

    /// The last sequence number covered once everything taken is applied:
    /// just below the first write pending, else the last write absorbed.
    pub(super) fn covered_seq(&self) -> u64 {
        self.next_position().map_or(self.max_seq, |p| p.saturating_sub(1))
    }

    /// The ids of `collection` with a write still pending (a snapshot or an
    /// event): a purge leaves them alone.
    pub(super) fn touched(&self, collection: &str) -> std::collections::HashSet<Ident> {
        let snaps = self.slots.keys().filter(|(c, _)| *c == collection).map(|(_, id)| id.clone());
        let events = self
            .events
            .iter()
            .filter(|e| e.collection == collection && e.superseded_by.is_none())
            .map(|e| e.id.clone());
        snaps.chain(events).collect()
    }

    /// Throws everything away (a fenced writer), returning how many entries
    /// there were.
    pub(super) fn discard(&mut self) -> usize {
        let n = self.len();
        self.base += self.snaps.len() as u64;
        self.snaps.clear();
        self.slots.clear();
        self.events.clear();
        n
    }
}

/// The entry at position `at` (counted from `base`) in `snaps`.
fn slot(snaps: &mut VecDeque<SnapEntry>, base: u64, at: u64) -> Option<&mut SnapEntry> {
    let i = usize::try_from(at.checked_sub(base)?).ok()?;
    snaps.get_mut(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Order, OrderEvent, OrderEventKind, Position, UnixNanos};

    fn pos(id: &str) -> Record {
        Record::Position(Position::example(id))
    }

    fn ev(id: &str, n: u64) -> EventRecord {
        let order = Order::example(id);
        EventRecord::Order(OrderEvent {
            event_id: n,
            client_order_id: order.client_order_id,
            ts_event: UnixNanos(n),
            kind: OrderEventKind::Canceled,
        })
    }

    fn id(s: &str) -> Ident {
        Ident::new(s).unwrap()
    }

    /// (kind, id, first seq) of every item, in the order taken.
    fn drain(p: &mut Pending) -> Vec<(&'static str, String, u64)> {
        let mut out = Vec::new();
        while let Some(item) = p.take() {
            out.push(match item {
                Item::Snap(e) => match e.snap {
                    Snap::Put { .. } => ("put", e.key.1.to_string(), e.first_seq),
                    Snap::Delete => ("delete", e.key.1.to_string(), e.first_seq),
                },
                Item::Event(e) if e.superseded_by.is_some() => ("superseded", e.id.to_string(), e.seq),
                Item::Event(e) => ("event", e.id.to_string(), e.seq),
            });
        }
        out
    }

    #[test]
    fn takes_in_sequence_order_and_coalesces_in_place() {
        let mut p = Pending::default();
        p.append(1, "orders", id("O-1"), ev("O-1", 1));
        assert!(!p.put(2, pos("P-1")));
        p.append(3, "orders", id("O-1"), ev("O-1", 2));
        assert!(!p.put(4, pos("P-2")));
        assert!(p.put(5, pos("P-1"))); // keeps P-1's place (first seq 2)
        assert_eq!(p.len(), 4);
        assert_eq!(
            drain(&mut p),
            vec![
                ("event", "O-1".into(), 1),
                ("put", "P-1".into(), 2),
                ("event", "O-1".into(), 3),
                ("put", "P-2".into(), 4)
            ]
        );
        assert!(p.is_empty());
        assert_eq!(p.covered_seq(), 5);
    }

    #[test]
    fn covered_seq_stops_below_the_first_pending_write() {
        let mut p = Pending::default();
        p.put(1, pos("P-1"));
        p.append(2, "orders", id("O-1"), ev("O-1", 1));
        p.put(3, pos("P-2"));
        assert!(p.take().is_some());
        assert_eq!(p.covered_seq(), 1);
        assert!(p.take().is_some());
        assert_eq!(p.covered_seq(), 2);
        // A later put of a taken key starts a new entry at the back.
        p.put(4, pos("P-1"));
        assert!(p.take().is_some());
        assert_eq!(p.covered_seq(), 3);
        assert!(p.take().is_some());
        assert_eq!(p.covered_seq(), 4);
    }

    #[test]
    fn delete_drops_the_entitys_pending_events_and_a_put_after_it_remembers() {
        let mut p = Pending::default();
        p.put(1, pos("P-1"));
        p.append(2, "positions", id("P-1"), ev("P-1", 1));
        p.append(3, "orders", id("O-1"), ev("O-1", 1));
        assert_eq!(p.delete(4, "positions", id("P-1")), 2);
        p.put(5, pos("P-1"));
        let Some(Item::Snap(e)) = p.take() else { panic!("snapshot first") };
        assert_eq!(e.first_seq, 1);
        match e.snap {
            Snap::Put { after_delete, since, puts, .. } => {
                assert!(after_delete);
                assert_eq!((since, puts), (5, 1));
            }
            Snap::Delete => panic!("a put"),
        }
        // The superseded event keeps its place (it reaches the delete).
        assert_eq!(drain(&mut p), vec![("superseded", "P-1".into(), 2), ("event", "O-1".into(), 3)]);
    }

    #[test]
    fn discard_forgets_everything() {
        let mut p = Pending::default();
        p.put(1, pos("P-1"));
        p.append(2, "orders", id("O-1"), ev("O-1", 1));
        assert_eq!(p.discard(), 2);
        assert!(p.take().is_none());
        assert!(!p.put(3, pos("P-1")));
        assert_eq!(drain(&mut p), vec![("put", "P-1".into(), 3)]);
    }
}
