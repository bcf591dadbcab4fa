//! Retention: deleting closed entities whose last update is
//! older than a cutoff, with their event logs and index entries.
//!
//! A purge runs on the flusher, in bounded steps that take turns with the
//! batches of writes (a step, a batch, a step…), each step only when
//! nothing is in flight (every built batch is acknowledged). Each step is
//! a control operation with a place in the sequence of writes:
//!
//! - when the flusher first tries a step it fixes the step's sequence
//!   number, the last write accepted then (`PurgeJob::at_seq`); the step
//!   runs once every write up to it has been taken from the channel
//!   (`absorb_until`), and batches keep going meanwhile. It never waits
//!   for writes accepted after it, so a purge finishes under any write
//!   load, each step waiting at most for the backlog of its own moment;
//! - it then acts at the point of the sequence the applied batches
//!   reached: candidates come from `index:{collection}:closed`, which every
//!   batch keeps in step with its writes (an entity reopened by an applied
//!   write is no longer a candidate), and an id with a write still pending
//!   in the flusher is kept whole (skipped), so a write accepted before the
//!   step is never separated from its entity: applied, it goes with it;
//!   pending, the entity stays. A write still in the channel (accepted
//!   after the step's number) applies after it, as after a `delete`;
//! - each step is one transaction guarded by the marker's `WATCH` (a fenced
//!   writer deletes nothing) and by a `WATCH` on the closed index (any
//!   other change to it, say by another `writer_id`, aborts the step,
//!   which is then taken again), and it moves the marker on, so a `load`
//!   running meanwhile sees that the state changed. A step whose reply was
//!   lost is settled by the marker, and, when the marker says it did not
//!   apply, only after the marker was moved past it (`settle_purge`), so
//!   its transaction cannot land later unreported.
//!
//! The caller's thread only sends the request and waits for the reply;
//! steps are `purge_batch` entities, one `ZRANGEBYSCORE` and one
//! transaction each.

use redis::Value;

use crate::ident::Ident;
use crate::marker::Marker;
use crate::net::{self, reply_error, Action, Failure};
use crate::pipeline::msg::{PurgeRequest, Purged};
use crate::writer::Count;

use super::Flusher;

/// A purge under way.
pub(super) struct PurgeJob {
    req: PurgeRequest,
    /// The collection being purged (an index into `req.collections`).
    at: usize,
    /// Candidates of this collection the last step kept (a write pending):
    /// the next step reads them again (they may be gone, or purgeable now)
    /// and as many more as it may delete. (Not an offset past them: one
    /// that left the index meanwhile would make it skip a candidate.)
    kept: usize,
    /// The sequence number of the step under way, fixed when the flusher
    /// first tried it: the step runs once every write up to it is out of
    /// the channel (`absorb_until`), never waiting for later ones.
    at_seq: Option<u64>,
    result: Purged,
    /// A step's transaction sent, its reply lost: (its marker batch number,
    /// the ids it deletes, candidates kept, collection exhausted). The
    /// marker settles it before anything else is written.
    in_doubt: Option<(u64, Vec<Ident>, usize, bool)>,
}

/// The collections a `retain_closed_for` pass covers besides those this
/// cache wrote.
const REFERENCE: [&str; 4] = ["instruments", "accounts", "orders", "positions"];

/// How often a `retain_closed_for` pass starts, at most.
const AUTO_PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Flusher {
    pub(super) fn queue_purge(&mut self, req: PurgeRequest) {
        if self.fenced || self.shutdown.is_some() {
            if let Some(r) = &req.reply {
                let _ = r.try_send(Err(self.stopped_error()));
            }
            return;
        }
        self.purges.push_back(PurgeJob {
            req,
            at: 0,
            kept: 0,
            at_seq: None,
            result: Purged::default(),
            in_doubt: None,
        });
    }

    /// The flusher is stopping: purges under way end with an error.
    pub(super) fn abandon_purges(&mut self) {
        let jobs: Vec<PurgeJob> = self.purges.drain(..).collect();
        for job in jobs {
            if let Some(r) = &job.req.reply {
                let _ = r.try_send(Err(self.stopped_error()));
            }
        }
    }

    /// A purge step may run now (the caller checks that nothing is in
    /// flight): purges take turns with batches while writes are pending.
    pub(super) fn purge_turn(&self) -> bool {
        let Some(job) = self.purges.front() else { return false };
        // A step in doubt is settled first: no batch may move the marker
        // before it is read.
        job.in_doubt.is_some() || (self.barrier.is_none() && (self.pending.is_empty() || self.purge_owed))
    }

    /// `retain_closed_for`: starts a pass over the reference collections
    /// and those written since `open` when one is due.
    pub(super) fn start_auto_purge(&mut self) {
        let (Some(retain), Some(at)) = (self.cfg.retain_closed_for, self.next_auto_purge) else { return };
        if std::time::Instant::now() < at || self.shutdown.is_some() {
            return;
        }
        self.next_auto_purge = Some(net::deadline_after(retain.min(AUTO_PURGE_EVERY)));
        if self.purges.iter().any(|j| j.req.reply.is_none()) {
            return; // the last pass is still going
        }
        let mut collections: Vec<&'static str> = REFERENCE.to_vec();
        for c in &self.collections {
            if !collections.contains(c) {
                collections.push(c);
            }
        }
        let retain_ms = u64::try_from(retain.as_millis()).unwrap_or(u64::MAX);
        let cutoff_ms = super::index::now_ms().saturating_sub(retain_ms);
        self.queue_purge(PurgeRequest { collections, cutoff_ms, reply: None });
    }

    /// One step of the oldest purge: reads up to `purge_batch` candidates
    /// of its current collection and deletes those without a pending write
    /// in one guarded transaction.
    pub(super) fn purge_step(&mut self) {
        self.purge_owed = false;
        if self.purges.front().is_some_and(|j| j.in_doubt.is_some()) {
            if let Err(f) = self.settle_purge() {
                self.fail(f);
                return;
            }
            if self.purges.front().is_some_and(|j| j.in_doubt.is_some()) {
                // Not settled (the marker moved under the touch): try again.
                return;
            }
        }
        // The step's place in the sequence: the last write accepted when it
        // is first tried (Acquire: its message is in the channel then).
        let accepted = self.shared.accepted();
        let Some(at_seq) = self.purges.front_mut().map(|j| *j.at_seq.get_or_insert(accepted)) else { return };
        if !self.absorb_until(at_seq) {
            // Writes accepted before this step are still in the channel and
            // `pending` is full (or a `clear` came first): batches go first.
            return;
        }
        if !self.ensure_watching() {
            return;
        }
        match self.try_purge_step() {
            Ok(()) => self.finish_purge_if_done(),
            Err(f) if f.action() == Action::Fence => self.enter_fenced(f),
            Err(f) if f.action() == Action::Drop => {
                // Refused for a reason a retry will not fix (an index key
                // of another type): this purge ends with the error; writes
                // go on.
                self.shared.count_error(f.class(), f.text.clone());
                if let Some(job) = self.purges.pop_front() {
                    if let Some(r) = &job.req.reply {
                        let _ = r.try_send(Err(f.clone().into_error()));
                    }
                }
                if let Err(f) = self.watch() {
                    self.fail(f);
                }
            }
            Err(f) => self.fail(f),
        }
    }

    /// Takes the writes up to `seq` from the channel into `pending`, so
    /// that a step sees each write accepted before it: one still queued
    /// behind a batch's worth of others would otherwise be invisible, and
    /// the step would delete the entity it reopened or appended to.
    /// Writes after `seq` stay in the channel (they are after the step).
    /// `false` when that cannot be done now: `pending` is at its bounds, or
    /// a `clear` was met (what follows it waits for it).
    fn absorb_until(&mut self, seq: u64) -> bool {
        while self.received_seq < seq {
            if self.barrier.is_some()
                || self.pending.events() >= self.cfg.max_pending_events
                || self.pending.snapshots() >= self.cfg.max_pending_snapshots
            {
                return false;
            }
            match self.rx.try_recv() {
                Ok(m) => self.absorb(m),
                // (The store of `accepted_seq` follows its send.)
                Err(_) => return false,
            }
        }
        self.barrier.is_none()
    }

    /// A step whose reply was lost: applied if the marker reached its batch
    /// number. Otherwise its transaction may still be on its way on the
    /// dropped connection, so the marker is moved past it first (a guarded
    /// `MSET`: the late transaction, guarded by the same key, can no longer
    /// apply); if the marker moved under that touch, it is read again: the
    /// late transaction may have landed. Only then is the step taken again.
    fn settle_purge(&mut self) -> Result<(), Failure> {
        let Some(no) = self.purges.front().and_then(|j| j.in_doubt.as_ref()).map(|d| d.0) else {
            return Ok(());
        };
        let read = self.watch()?;
        if read.applied_batch(self.epoch) >= no {
            self.purge_applied_late();
            return Ok(());
        }
        let touch = self.batch_no + 1;
        let mut cmd = crate::net::Packer::default();
        cmd.cmd(&[b"MSET", &self.marker_key, Marker { epoch: self.epoch, batch: touch }.format().as_bytes()]);
        self.batch_no = touch;
        let reply = self.guarded_tx(&cmd.buf, 1)?;
        match reply.exec {
            // Moved past it: it never applies. The step is taken again.
            Value::Array(_) => {
                if let Some(job) = self.purges.front_mut() {
                    job.in_doubt = None;
                }
            }
            // The marker moved since the WATCH: the late step, or another
            // writer (then the GET behind it fenced this one).
            Value::Nil if reply.read.applied_batch(self.epoch) >= no => self.purge_applied_late(),
            Value::Nil => {}
            other => {
                let (code, text) = reply_error(&other)
                    .or_else(|| reply.head.iter().find_map(reply_error))
                    .unwrap_or_else(|| ("EXECABORT".into(), format!("unexpected reply {other:?}")));
                return Err(net::Failure::new(
                    net::Cause::of_exec_error(&code, &text),
                    self.link.addr(),
                    format!("purge, settling a step: {text}"),
                ));
            }
        }
        Ok(())
    }

    /// The step in doubt applied: what it deleted is removed.
    fn purge_applied_late(&mut self) {
        let Some(job) = self.purges.front_mut() else { return };
        let Some((_, ids, kept, exhausted)) = job.in_doubt.take() else { return };
        if let Some(&collection) = job.req.collections.get(job.at) {
            for id in &ids {
                self.indexed.remove(&(collection, id.clone()));
            }
        }
        self.shared.add(Count::Purged, ids.len() as u64);
        // (How many keys it unlinked was in the lost reply.)
        self.advance_purge(kept, exhausted, ids, 0);
    }

    fn try_purge_step(&mut self) -> Result<(), Failure> {
        let Some(job) = self.purges.front() else { return Ok(()) };
        let Some(&collection) = job.req.collections.get(job.at) else { return Ok(()) };
        let (cutoff, kept_before, n) = (job.req.cutoff_ms, job.kept, self.cfg.purge_batch);
        let ask = kept_before.saturating_add(n);
        let closed_key = self.keys.closed_index(collection);

        // 1. The oldest candidates, with a WATCH on the closed index.
        let p = &mut self.packer;
        p.clear();
        p.cmd(&[
            b"ZRANGEBYSCORE",
            closed_key.as_bytes(),
            b"-inf",
            format!("({cutoff}").as_bytes(),
            b"LIMIT",
            b"0",
            ask.to_string().as_bytes(),
        ]);
        // The WATCH on the closed index stays armed until the EXEC or
        // the UNWATCH below.
        let [watch, range] = self.link.watch_also(closed_key.as_bytes(), &p.buf)?;
        let addr = self.link.addr().to_string();
        let server_error = |what: &str, v: &Value| {
            reply_error(v).map(|(code, text)| {
                net::Failure::new(net::Cause::of_code(&code), addr.clone(), format!("purge, {what}: {text}"))
            })
        };
        if let Some(f) = server_error("WATCH", &watch).or_else(|| server_error("ZRANGEBYSCORE", &range)) {
            return Err(f);
        }
        let members = match range {
            Value::Array(v) | Value::Set(v) => v,
            _ => Vec::new(),
        };
        let exhausted = members.len() < ask;
        let touched = self.pending.touched(collection);
        let (mut delete, mut kept) = (Vec::new(), 0usize);
        for m in members {
            let id = match &m {
                Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| Ident::new(s).ok()),
                _ => None,
            };
            match id {
                Some(id) if !touched.contains(&id) => {
                    if delete.len() == n {
                        break;
                    }
                    delete.push(id);
                }
                _ => kept += 1,
            }
        }

        if delete.is_empty() {
            // Nothing to delete: drop the index's WATCH, keep the marker's.
            self.watch()?;
            self.advance_purge(kept, exhausted, Vec::new(), 0);
            return Ok(());
        }

        // 2. One transaction: the entities, their logs, their index entries.
        let no = self.batch_no + 1;
        let marker = Marker { epoch: self.epoch, batch: no }.format();
        let p = &mut self.packer;
        p.clear();
        p.array(1 + 2 * delete.len());
        p.bulk(b"UNLINK");
        let mut key = Vec::new();
        for id in &delete {
            key.clear();
            self.keys.write_entity(&mut key, collection, id);
            p.bulk(&key);
            key.extend_from_slice(b":events");
            p.bulk(&key);
        }
        let (index_key, open_key) = (self.keys.index(collection), self.keys.open_index(collection));
        for (cmd, k) in [(&b"SREM"[..], &index_key), (b"SREM", &open_key), (b"ZREM", &closed_key)] {
            p.array(2 + delete.len());
            p.bulk(cmd);
            p.bulk(k.as_bytes());
            for id in &delete {
                p.bulk(id.as_bytes());
            }
        }
        p.cmd(&[b"MSET", &self.marker_key, marker.as_bytes()]);
        self.batch_no = no;
        if let Some(job) = self.purges.front_mut() {
            job.in_doubt = Some((no, delete.clone(), kept, exhausted));
        }
        // UNLINK, 3 × SREM/ZREM, MSET: guarded by the marker's WATCH and
        // the closed index's.
        let cmd = std::mem::take(&mut self.packer.buf);
        let reply = self.guarded_tx(&cmd, 5);
        self.packer.buf = cmd;
        let reply = reply?;
        if let Some(job) = self.purges.front_mut() {
            job.in_doubt = None;
        }
        let head = reply.head;
        match reply.exec {
            Value::Array(results) => {
                let unlinked = match results.first() {
                    Some(Value::Int(k)) => u64::try_from(*k).unwrap_or(0),
                    _ => 0,
                };
                for id in &delete {
                    self.indexed.remove(&(collection, id.clone()));
                }
                self.shared.add(Count::Purged, delete.len() as u64);
                self.advance_purge(kept, exhausted, delete, unlinked);
                Ok(())
            }
            // The closed index (or the marker) changed between the read and
            // the EXEC: nothing was deleted; the step is taken again.
            Value::Nil => Ok(()),
            other => {
                let (code, text) = reply_error(&other)
                    .or_else(|| head.iter().find_map(reply_error))
                    .unwrap_or_else(|| ("EXECABORT".into(), format!("unexpected reply {other:?}")));
                Err(net::Failure::new(
                    net::Cause::of_exec_error(&code, &text),
                    self.link.addr(),
                    format!("purge: {text}"),
                ))
            }
        }
    }

    /// Records a step's outcome and moves to the next collection when the
    /// current one has no candidates left (those still kept then are the
    /// purge's `skipped`).
    fn advance_purge(&mut self, kept: usize, exhausted: bool, deleted: Vec<Ident>, unlinked: u64) {
        let Some(job) = self.purges.front_mut() else { return };
        job.result.steps += 1;
        job.result.keys += unlinked;
        job.result.removed.extend(deleted);
        job.at_seq = None;
        job.kept = kept;
        if exhausted {
            job.result.skipped += kept as u64;
            job.at += 1;
            job.kept = 0;
        }
    }

    fn finish_purge_if_done(&mut self) {
        let done = self.purges.front().is_some_and(|j| j.at >= j.req.collections.len());
        if !done {
            return;
        }
        let Some(job) = self.purges.pop_front() else { return };
        match job.req.reply {
            Some(r) => {
                let _ = r.try_send(Ok(job.result));
            }
            None if !job.result.removed.is_empty() => log::info!(
                "tradecache: retention purged {} closed entit(ies) ({} keys) in {} step(s)",
                job.result.removed.len(),
                job.result.keys,
                job.result.steps
            ),
            None => {}
        }
    }
}
