//! Retention: deleting closed entities whose last update is older than a
//! cutoff, with their event logs and index entries, in bounded steps that
//! take turns with the batches of writes, each only when nothing is in
//! flight. Each step is a control operation with a place in the sequence
//! of writes (see docs/guarantees.md, "purge_closed"):
//!
//! - its sequence number is the last write accepted when the flusher first
//!   tries it (`PurgeJob::at_seq`); it runs once every write up to it is
//!   out of the channel (`Flusher::absorb_until`), never waiting for later
//!   ones, so a purge finishes under any write load;
//! - candidates come from `index:{collection}:closed`, which every batch
//!   keeps in step with its writes, and an id with a write pending in the
//!   flusher is kept whole (skipped): a write accepted before the step is
//!   never separated from its entity;
//! - each step is one transaction guarded by the marker's `WATCH` and by a
//!   `WATCH` on the closed index (any other change to it aborts the step,
//!   which is taken again), and it moves the marker on. A step whose reply
//!   was lost is settled by the marker and, when it did not apply, only
//!   after the marker was moved past it (`PurgeScheduler::settle`), so its
//!   transaction cannot land later unreported.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use redis::Value;

use crate::channel::msg::{PurgeRequest, Purged};
use crate::channel::Count;
use crate::error::Error;
use crate::ident::Ident;
use crate::net::{self, reply_error, Failure, Packer};
use crate::store::keys::Keys;

use super::guard::Guard;
use super::pending::Pending;

/// What one step does with the candidates it read.
#[derive(Debug, PartialEq)]
struct Choice {
    /// Up to `purge_batch` candidates without a write pending.
    delete: Vec<Ident>,
    /// Candidates before the last one deleted that have a write pending
    /// (or a member that is not an id): read again by the next step.
    kept: usize,
    /// Every candidate of the collection was looked at: it was read whole
    /// (fewer members than asked for) and none was left unconsidered.
    exhausted: bool,
}

/// Chooses among `members`, the first `ask` candidates of the closed index
/// (oldest first), up to `n` to delete: those not `touched` by a pending
/// write.
fn choose(members: &[Value], touched: &HashSet<Ident>, ask: usize, n: usize) -> Choice {
    let (mut delete, mut kept) = (Vec::new(), 0usize);
    let mut looked = 0;
    for m in members {
        let id = match m {
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
        looked += 1;
    }
    // A step that stopped at `n` with members left over has not seen the
    // collection's end, even when the index held fewer than `ask` (a kept
    // candidate left it since the last step).
    Choice { delete, kept, exhausted: members.len() < ask && looked == members.len() }
}

/// A purge under way.
struct PurgeJob {
    req: PurgeRequest,
    /// The collection being purged (an index into `req.collections`).
    at: usize,
    /// Candidates of this collection the last step kept (a write pending):
    /// the next step reads them again and as many more as it may delete
    /// (not an offset past them: one that left the index meanwhile would
    /// make it skip a candidate).
    kept: usize,
    /// The sequence number of the step under way (see the module docs).
    at_seq: Option<u64>,
    result: Purged,
    /// A step's transaction sent, its reply lost: (its marker batch number,
    /// the ids it deletes, candidates kept, collection exhausted).
    in_doubt: Option<(u64, Vec<Ident>, usize, bool)>,
}

/// The collections a `retain_closed_for` pass covers besides those this
/// cache wrote.
const REFERENCE: [&str; 4] = ["instruments", "accounts", "orders", "positions"];

/// How often a `retain_closed_for` pass starts, at most.
const AUTO_PURGE_EVERY: Duration = Duration::from_secs(60);

/// Purges waiting or under way, oldest first (`Flusher::purge_step`).
pub(super) struct PurgeScheduler {
    jobs: VecDeque<PurgeJob>,
    /// A purge step is owed: a batch was written since the last step (so
    /// purges and batches take turns).
    owed: bool,
    /// When `retain_closed_for` starts its next pass (`None`: never).
    next_auto: Option<Instant>,
}

impl PurgeScheduler {
    /// No purge yet; with `auto` (`retain_closed_for` set), the first
    /// retention pass is due now.
    pub(super) fn new(auto: bool) -> PurgeScheduler {
        PurgeScheduler { jobs: VecDeque::new(), owed: false, next_auto: auto.then(Instant::now) }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// A batch was acknowledged: a purge step is owed.
    pub(super) fn owe_turn(&mut self) {
        self.owed = true;
    }

    /// A purge step takes the turn owed.
    pub(super) fn take_turn(&mut self) {
        self.owed = false;
    }

    /// When the next `retain_closed_for` pass is due.
    pub(super) fn next_auto(&self) -> Option<Instant> {
        self.next_auto
    }

    /// Queues a purge behind those under way.
    pub(super) fn push(&mut self, req: PurgeRequest) {
        self.jobs.push_back(PurgeJob {
            req,
            at: 0,
            kept: 0,
            at_seq: None,
            result: Purged::default(),
            in_doubt: None,
        });
    }

    /// The flusher is stopping: purges under way end with `error()`.
    pub(super) fn abandon(&mut self, error: impl Fn() -> Error) {
        for r in self.jobs.drain(..).filter_map(|j| j.req.reply) {
            let _ = r.try_send(Err(error()));
        }
    }

    /// A purge step may run now (the caller checks that nothing is in
    /// flight): purges take turns with batches while writes are pending,
    /// and none runs while a `clear` (`barrier`) waits.
    pub(super) fn turn(&self, barrier: bool, pending_empty: bool) -> bool {
        let Some(job) = self.jobs.front() else { return false };
        // A step in doubt is settled first: no batch may move the marker
        // before it is read.
        job.in_doubt.is_some() || (!barrier && (pending_empty || self.owed))
    }

    /// `retain_closed_for` (`retain`): the pass over the reference
    /// collections and `collections` (those written since `open`) when
    /// one is due and the last one has finished.
    pub(super) fn auto_due(
        &mut self,
        retain: Option<Duration>,
        collections: &[&'static str],
    ) -> Option<PurgeRequest> {
        let (Some(retain), Some(at)) = (retain, self.next_auto) else { return None };
        if Instant::now() < at {
            return None;
        }
        self.next_auto = Some(net::deadline_after(retain.min(AUTO_PURGE_EVERY)));
        if self.jobs.iter().any(|j| j.req.reply.is_none()) {
            return None; // the last pass is still going
        }
        let mut all = REFERENCE.to_vec();
        all.extend(collections.iter().filter(|c| !REFERENCE.contains(*c)));
        let retain_ms = u64::try_from(retain.as_millis()).unwrap_or(u64::MAX);
        let cutoff_ms = super::index::now_ms().saturating_sub(retain_ms);
        Some(PurgeRequest { collections: all, cutoff_ms, reply: None })
    }

    /// Whether the oldest purge's last step is in doubt (its reply lost).
    pub(super) fn in_doubt(&self) -> bool {
        self.jobs.front().is_some_and(|j| j.in_doubt.is_some())
    }

    /// The sequence number of the oldest purge's step under way: fixed
    /// the first time it is asked, at `accepted` (the last write accepted
    /// then). `None` when no purge is waiting.
    pub(super) fn step_seq(&mut self, accepted: u64) -> Option<u64> {
        self.jobs.front_mut().map(|j| *j.at_seq.get_or_insert(accepted))
    }

    /// The oldest purge ends with `error` (refused for a reason a retry
    /// will not fix); writes go on.
    pub(super) fn fail_oldest(&mut self, error: Error) {
        if let Some(r) = self.jobs.pop_front().and_then(|j| j.req.reply) {
            let _ = r.try_send(Err(error));
        }
    }

    /// A step whose reply was lost: applied if the marker reached its batch
    /// number. Otherwise its transaction may still be on its way on the
    /// dropped connection, so the marker is moved past it first (a guarded
    /// `MSET`: the late transaction, guarded by the same key, can no longer
    /// apply); if the marker moved under that touch, it is read again: the
    /// late transaction may have landed. Only then is the step taken again.
    pub(super) fn settle(&mut self, g: &mut Guard<'_>) -> Result<(), Failure> {
        let Some(no) = self.jobs.front().and_then(|j| j.in_doubt.as_ref()).map(|d| d.0) else {
            return Ok(());
        };
        let epoch = g.link.epoch();
        let read = g.watch()?;
        if read.applied_batch(epoch) >= no {
            self.applied_late(g);
            return Ok(());
        }
        let mut cmd = Packer::default();
        g.link.set_marker(&mut cmd, g.inflight.next_no());
        let reply = g.guarded_tx(&cmd.buf, 1)?;
        match reply.exec {
            // Moved past it: it never applies. The step is taken again.
            Value::Array(_) => {
                if let Some(job) = self.jobs.front_mut() {
                    job.in_doubt = None;
                }
            }
            // The marker moved since the WATCH: the late step, or another
            // writer (then the GET behind it fenced this one).
            Value::Nil if reply.read.applied_batch(epoch) >= no => self.applied_late(g),
            Value::Nil => {}
            _ => return Err(reply.refused(g.link.addr(), "purge, settling a step")),
        }
        Ok(())
    }

    /// The step in doubt applied: what it deleted is removed.
    fn applied_late(&mut self, g: &mut Guard<'_>) {
        let Some((_, ids, kept, exhausted)) = self.jobs.front_mut().and_then(|j| j.in_doubt.take()) else {
            return;
        };
        // (How many keys it unlinked was in the lost reply.)
        self.advance(g, kept, exhausted, ids, 0);
    }

    /// One step of the oldest purge: reads up to `purge_batch` candidates
    /// of its current collection and deletes, in one guarded transaction,
    /// those without a write in `pending`.
    pub(super) fn try_step(
        &mut self,
        g: &mut Guard<'_>,
        keys: &Keys,
        pending: &Pending,
        purge_batch: usize,
    ) -> Result<(), Failure> {
        let Some(job) = self.jobs.front() else { return Ok(()) };
        let Some(&collection) = job.req.collections.get(job.at) else { return Ok(()) };
        let (cutoff, kept_before, n) = (job.req.cutoff_ms, job.kept, purge_batch);
        let ask = kept_before.saturating_add(n);
        let closed_key = keys.closed_index(collection);

        // 1. The oldest candidates, with a WATCH on the closed index.
        let mut p = Packer::default();
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
        let [watch, range] = g.link.watch_also(closed_key.as_bytes(), &p.buf)?;
        let addr = g.link.addr().to_string();
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
        let Choice { delete, kept, exhausted } = choose(&members, &pending.touched(collection), ask, n);

        if delete.is_empty() {
            // Nothing to delete: drop the index's WATCH, keep the marker's.
            g.watch()?;
            self.advance(g, kept, exhausted, Vec::new(), 0);
            return Ok(());
        }

        // 2. One transaction: the entities, their logs, their index entries.
        let no = g.inflight.next_no();
        p.clear();
        p.array(1 + 2 * delete.len());
        p.bulk(b"UNLINK");
        let mut key = Vec::new();
        for id in &delete {
            key.clear();
            keys.write_entity(&mut key, collection, id);
            p.bulk(&key);
            key.extend_from_slice(b":events");
            p.bulk(&key);
        }
        let (index_key, open_key) = (keys.index(collection), keys.open_index(collection));
        for (cmd, k) in [(&b"SREM"[..], &index_key), (b"SREM", &open_key), (b"ZREM", &closed_key)] {
            p.array(2 + delete.len());
            p.bulk(cmd);
            p.bulk(k.as_bytes());
            for id in &delete {
                p.bulk(id.as_bytes());
            }
        }
        g.link.set_marker(&mut p, no);
        if let Some(job) = self.jobs.front_mut() {
            job.in_doubt = Some((no, delete.clone(), kept, exhausted));
        }
        // UNLINK, 3 × SREM/ZREM, MSET: guarded by the marker's WATCH and
        // the closed index's.
        let reply = g.guarded_tx(&p.buf, 5)?;
        if let Some(job) = self.jobs.front_mut() {
            job.in_doubt = None;
        }
        match &reply.exec {
            Value::Array(results) => {
                let unlinked = match results.first() {
                    Some(Value::Int(k)) => u64::try_from(*k).unwrap_or(0),
                    _ => 0,
                };
                self.advance(g, kept, exhausted, delete, unlinked);
                Ok(())
            }
            // The closed index (or the marker) changed between the read and
            // the EXEC: nothing was deleted; the step is taken again.
            Value::Nil => Ok(()),
            _ => Err(reply.refused(g.link.addr(), "purge")),
        }
    }

    /// Records a step's outcome (what it deleted unindexed and counted) and
    /// moves to the next collection when the current one has no candidates
    /// left (those still kept then are the purge's `skipped`).
    fn advance(
        &mut self,
        g: &mut Guard<'_>,
        kept: usize,
        exhausted: bool,
        deleted: Vec<Ident>,
        unlinked: u64,
    ) {
        let Some(job) = self.jobs.front_mut() else { return };
        if let Some(&collection) = job.req.collections.get(job.at) {
            for id in &deleted {
                g.inflight.unindex(collection, id);
            }
        }
        g.shared.add(Count::Purged, deleted.len() as u64);
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

    /// Answers the oldest purge once it has gone through its collections.
    pub(super) fn finish_if_done(&mut self) {
        if self.jobs.front().is_none_or(|j| j.at < j.req.collections.len()) {
            return;
        }
        let Some(job) = self.jobs.pop_front() else { return };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<Value> {
        v.iter().map(|s| Value::BulkString(s.as_bytes().to_vec())).collect()
    }

    fn set(v: &[&str]) -> HashSet<Ident> {
        v.iter().map(|s| Ident::new(s).expect("id")).collect()
    }

    fn choice(delete: &[&str], kept: usize, exhausted: bool) -> Choice {
        Choice { delete: delete.iter().map(|s| Ident::new(s).expect("id")).collect(), kept, exhausted }
    }

    #[test]
    fn a_step_deletes_up_to_the_batch_and_keeps_the_touched() {
        // The index read whole: exhausted.
        assert_eq!(choose(&ids(&["A", "B"]), &set(&["A"]), 4, 2), choice(&["B"], 1, true));
        // As many as asked for: there may be more.
        assert_eq!(
            choose(&ids(&["A", "B", "C", "D"]), &set(&["A", "B"]), 4, 2),
            choice(&["C", "D"], 2, false)
        );
        // Members that are not ids are kept (skipped), never deleted.
        let mut m = ids(&["A"]);
        m.push(Value::Int(3));
        assert_eq!(choose(&m, &set(&[]), 3, 2), choice(&["A"], 1, true));
        assert_eq!(choose(&[], &set(&[]), 2, 2), choice(&[], 0, true));
    }

    /// Found by `make fuzz` (model_purge): the last step kept D and E (a
    /// write pending), then D left the index; the next step asked for 4,
    /// got E, C, A, deleted E and C (its batch of 2) and stopped before A.
    /// Fewer than asked for, but A was never looked at: not exhausted, or
    /// the purge would end with A, closed and old, kept and unreported.
    #[test]
    fn a_step_cut_at_its_batch_has_not_seen_the_end() {
        assert_eq!(choose(&ids(&["E", "C", "A"]), &set(&[]), 4, 2), choice(&["E", "C"], 0, false));
    }
}
