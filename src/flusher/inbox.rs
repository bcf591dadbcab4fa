//! What the callers asked of the flusher and it has not yet put in a
//! batch: the channel, the writes taken from it (`pending`, coalesced), a
//! `clear` waiting for everything before it, the last sequence number
//! received, and `close`'s deadline.

use std::time::Instant;

use crossbeam_channel::Receiver;

use crate::channel::msg::Msg;
use crate::channel::{Count, Shared};
use crate::config::Config;
use crate::ident::Ident;

use super::clear::Barrier;
use super::pending::Pending;

/// The flusher's side of the channel, and what it received.
pub(super) struct Inbox {
    rx: Receiver<Msg>,
    pending: Pending,
    /// A `clear` that waits for everything before it.
    barrier: Option<Barrier>,
    /// The sequence number of the last write taken from the channel.
    received_seq: u64,
    /// `close`'s deadline, once it asked (by message or through `Shared`).
    shutdown: Option<Instant>,
}

impl Inbox {
    pub(super) fn new(rx: Receiver<Msg>) -> Inbox {
        Inbox { rx, pending: Pending::default(), barrier: None, received_seq: 0, shutdown: None }
    }

    /// Takes one message in: a write joins `pending` (counting what it
    /// superseded in `shared`), a `clear` becomes the barrier; anything
    /// else (a purge, `Shutdown`) is returned to the flusher.
    pub(super) fn absorb(&mut self, msg: Msg, shared: &Shared) -> Option<Msg> {
        let seq = match msg {
            Msg::Put { seq, rec } => {
                if self.pending.put(seq, rec) {
                    shared.add(Count::Coalesced, 1);
                }
                seq
            }
            // A delete and a put folded into one entry under one sequence
            // number: no batch can hold one without the other.
            Msg::Replace { seq, rec } => {
                let id = Ident::new_unchecked(rec.as_dyn().id());
                let superseded = self.pending.delete(seq, rec.as_dyn().collection(), id);
                self.pending.put(seq, rec);
                shared.add(Count::Coalesced, superseded);
                seq
            }
            Msg::Delete { seq, collection, id } => {
                let superseded = self.pending.delete(seq, collection, id);
                shared.add(Count::Coalesced, superseded);
                seq
            }
            Msg::Append { seq, collection, id, rec } => {
                self.pending.append(seq, collection, id, rec);
                seq
            }
            Msg::Clear { seq, reply } => {
                self.barrier = Some(Barrier { seq, reply, deleted: 0 });
                seq
            }
            // Not a write: it takes no sequence number.
            other @ (Msg::Purge(_) | Msg::Shutdown { .. }) => return Some(other),
        };
        self.received_seq = seq;
        None
    }

    /// Whether more may be taken from the channel: no `clear` waits,
    /// `pending` holds fewer than `limit` items and fewer events and
    /// snapshots than `max_pending_events` and `max_pending_snapshots`.
    pub(super) fn has_room(&self, limit: usize, cfg: &Config) -> bool {
        self.barrier.is_none()
            && self.pending.len() < limit
            && self.pending.events() < cfg.max_pending_events
            && self.pending.snapshots() < cfg.max_pending_snapshots
    }

    pub(super) fn rx(&self) -> &Receiver<Msg> {
        &self.rx
    }

    pub(super) fn pending(&self) -> &Pending {
        &self.pending
    }

    /// The pending writes, for the next batch to take the oldest
    /// (`InFlight::build`).
    pub(super) fn for_batch(&mut self) -> &mut Pending {
        &mut self.pending
    }

    pub(super) fn received_seq(&self) -> u64 {
        self.received_seq
    }

    pub(super) fn has_barrier(&self) -> bool {
        self.barrier.is_some()
    }

    /// Counts keys the waiting `clear` deleted.
    pub(super) fn count_cleared(&mut self, deleted: u64) {
        if let Some(b) = self.barrier.as_mut() {
            b.deleted += deleted;
        }
    }

    /// The waiting `clear`, to answer.
    pub(super) fn take_barrier(&mut self) -> Option<Barrier> {
        self.barrier.take()
    }

    /// Fenced: nothing pending is written; the waiting `clear` is returned
    /// to be answered.
    pub(super) fn discard(&mut self) -> Option<Barrier> {
        self.pending.discard();
        self.barrier.take()
    }

    pub(super) fn shutdown(&self) -> Option<Instant> {
        self.shutdown
    }

    /// `close` asked to stop by `deadline`; `false` when it already had.
    pub(super) fn begin_shutdown(&mut self, deadline: Instant) -> bool {
        let first = self.shutdown.is_none();
        self.shutdown.get_or_insert(deadline);
        first
    }
}
