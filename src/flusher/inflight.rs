//! The batches between `pending` and Redis: the held batch (the oldest not
//! yet acknowledged) and the one queued behind it (`commit.rs`), how
//! batches are numbered, the last sequence number built, and what the
//! built batches know of the index sets (`index.rs`).

use crate::config::Config;
use crate::error::DroppedWrite;
use crate::ident::Ident;
use crate::net::Packer;
use crate::store::keys::Keys;
use crate::store::marker::Marker;

use super::batch::{self, Batch, Bufs};
use super::index::{self, Indexed};
use super::link::Link;
use super::pending::Pending;

/// The batches built and not yet acknowledged, and what they were built with.
pub(super) struct InFlight {
    /// The batch being written: the oldest not yet acknowledged.
    held: Option<Batch>,
    /// The batch after it, queued on the server behind it (`commit.rs`).
    /// Only ever set while `held` is: `take_held` promotes it.
    next: Option<Batch>,
    /// The last batch number used (by a batch, or by a control
    /// transaction: a purge step, a `clear`, a marker touch).
    batch_no: u64,
    /// The last sequence number packed into a batch.
    built_seq: u64,
    /// Bumped whenever the index sets may have changed under us: a batch
    /// built for an older generation adds back the entries it skipped.
    generation: u64,
    /// Ids in the index sets once every built batch applies (`index.rs`).
    indexed: Indexed,
    /// Collections written by this flusher (for `clear` and retention).
    collections: Vec<&'static str>,
    packer: Packer,
    bufs: Bufs,
}

impl InFlight {
    /// Nothing built yet; the last batch number is `batch_no` (the
    /// marker's, as claimed at `open`).
    pub(super) fn new(batch_no: u64) -> InFlight {
        InFlight {
            held: None,
            next: None,
            batch_no,
            built_seq: 0,
            generation: 0,
            indexed: Indexed::default(),
            collections: Vec::new(),
            packer: Packer::default(),
            bufs: Bufs::default(),
        }
    }

    /// Builds the next batch from the oldest pending writes into the first
    /// free place (held, else next); returns the writes it could not include.
    pub(super) fn build(
        &mut self,
        cfg: &Config,
        keys: &Keys,
        link: &Link,
        heartbeat: Option<&Packer>,
        pending: &mut Pending,
    ) -> Vec<DroppedWrite> {
        self.batch_no += 1;
        let spec = batch::Spec {
            cfg,
            keys,
            marker_key: link.marker_key(),
            marker: Marker { epoch: link.epoch(), batch: self.batch_no },
            first_seq: self.built_seq + 1,
            generation: self.generation,
            value_limit: batch::value_limit(cfg, link.bulk_limit()),
            heartbeat,
            now_ms: index::now_ms().saturating_add_signed(cfg.clock_skew_for_tests),
            server_now_ms: link.server_now_ms(),
        };
        let built = batch::build(
            &spec,
            pending,
            &mut self.indexed,
            &mut self.collections,
            &mut self.bufs,
            &mut self.packer,
        );
        let Some((batch, dropped)) = built else { return Vec::new() };
        self.built_seq = batch.max_seq;
        if self.held.is_none() {
            self.held = Some(batch);
        } else {
            self.next = Some(batch);
        }
        dropped
    }

    /// The held batch, not applied, was built for an older index
    /// generation: it adds back the index entries it skipped.
    pub(super) fn reindex_held(&mut self, keys: &Keys) {
        let generation = self.generation;
        if let Some(b) = self.held.as_mut().filter(|b| !b.is_applied() && b.generation != generation) {
            b.reindex(generation, keys, &mut self.bufs, &mut self.packer);
        }
    }

    pub(super) fn held(&self) -> Option<&Batch> {
        self.held.as_ref()
    }

    pub(super) fn held_mut(&mut self) -> Option<&mut Batch> {
        self.held.as_mut()
    }

    /// The batch behind the held one.
    pub(super) fn next_mut(&mut self) -> Option<&mut Batch> {
        self.next.as_mut()
    }

    /// The batch behind the held one when it may be queued behind it: built
    /// for the current index generation (else it goes the plain way once
    /// held, adding back its index entries).
    pub(super) fn next_to_queue(&mut self) -> Option<&mut Batch> {
        self.next.as_mut().filter(|b| b.is_built() && b.generation == self.generation)
    }

    /// Fenced: nothing built is written.
    pub(super) fn drop_all(&mut self) {
        (self.held, self.next) = (None, None);
    }

    pub(super) fn collections(&self) -> &[&'static str] {
        &self.collections
    }

    /// Takes the held batch out (settled) and makes the batch behind it the
    /// held one.
    pub(super) fn take_held(&mut self) -> Option<Batch> {
        let batch = self.held.take();
        if batch.is_some() {
            self.held = self.next.take();
        }
        batch
    }

    /// Keeps the buffers of an acknowledged batch for the next one.
    pub(super) fn recycle(&mut self, mut batch: Batch) {
        if batch.tx.capacity() > self.packer.buf.capacity() {
            batch.tx.clear();
            std::mem::swap(&mut self.packer.buf, &mut batch.tx);
        }
        if batch.spans.capacity() > self.packer.spans.capacity() {
            batch.spans.clear();
            std::mem::swap(&mut self.packer.spans, &mut batch.spans);
        }
    }

    /// Nothing is queued on the connection any more (dropped, or new).
    pub(super) fn unqueue_all(&mut self) {
        for b in self.held.iter_mut().chain(self.next.iter_mut()) {
            b.unqueued();
        }
    }

    /// The index sets may have changed under us (a reconnect, a `clear`):
    /// forget what is known indexed, and make batches already built (none
    /// queued on a connection) add back the entries they skipped.
    pub(super) fn forget_index(&mut self) {
        self.indexed.clear();
        self.generation += 1;
    }

    /// The marker was found deleted: the index sets may be gone too (built
    /// batches keep what they skipped: one may be queued already).
    pub(super) fn index_gone(&mut self) {
        self.indexed.clear();
    }

    /// `id` of `collection` was deleted by a purge.
    pub(super) fn unindex(&mut self, collection: &'static str, id: &Ident) {
        self.indexed.remove(&(collection, id.clone()));
    }

    /// The next batch number, for a control transaction (a purge step, a
    /// `clear`'s deletes, a marker touch).
    pub(super) fn next_no(&mut self) -> u64 {
        self.batch_no += 1;
        self.batch_no
    }

    /// A `clear` at `seq` was acknowledged: the next batch starts after it.
    pub(super) fn cleared(&mut self, seq: u64) {
        self.built_seq = seq;
    }
}
