//! The write path: sending the held batch and `EXEC`, queueing the next
//! batch behind it, reading what Redis did, settling a batch whose reply
//! was lost by the commit marker, and acknowledging; and what a failure
//! does, by its `net::Action`: fencing, or dropping the connection and
//! reconnecting. Every `EXEC` is guarded by the `WATCH` on the marker,
//! re-armed behind it (`guard.rs`).

use std::time::Instant;

use redis::Value;

use crate::channel::Count;
use crate::channel::Shared;
use crate::net::{self, reply_error, Action, Failure, Packer};
use crate::store::marker;
use crate::ErrorKind;

use super::guard::Guard;
use super::loss::{self, Loss, Settled};
use super::Flusher;

/// What became of the held batch.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Applied; a failure met afterwards (reading the marker behind it) is
    /// handled once the batch is acknowledged.
    Applied(Option<Failure>),
    /// Definitely not applied (the transaction was refused).
    NotApplied(Failure),
    /// Aborted by the `WATCH` on the marker: something changed the marker
    /// since the last look. Not applied by this `EXEC`; the marker decides
    /// whether an earlier connection of ours applied it.
    Aborted,
    /// The connection failed after the batch was (partly) sent.
    InDoubt(Failure),
}

/// What became of the held batch, from its replies: applied (with enough
/// replicas), aborted by the `WATCH`, refused, and the marker read behind.
fn outcome(applied: bool, aborted: bool, refused: Option<Failure>, watch: Result<(), Failure>) -> Outcome {
    match (applied, aborted, refused, watch) {
        (true, _, _, Ok(())) => Outcome::Applied(None),
        (true, _, _, Err(f)) => Outcome::Applied(Some(f)),
        // A newer writer comes first: it decides what happens next.
        (false, _, _, Err(f)) if f.action() == Action::Fence => Outcome::NotApplied(f),
        (false, _, Some(f), Ok(())) => Outcome::NotApplied(f),
        (false, _, Some(f), Err(_)) => Outcome::NotApplied(f.unsettled()),
        (false, true, None, Ok(())) => Outcome::Aborted,
        (false, _, None, Err(f)) => Outcome::InDoubt(f),
        // Not applied, not refused, not aborted: cannot happen.
        (false, false, None, Ok(())) => Outcome::Aborted,
    }
}

/// The type a key must hold for a batch's command `name` to apply, for the
/// commands Redis refuses inside a transaction when it does not.
fn expected_type(name: &[u8]) -> Option<&'static str> {
    match name {
        b"SADD" | b"SREM" => Some("set"),
        b"ZADD" | b"ZREM" => Some("zset"),
        b"RPUSH" => Some("list"),
        b"XADD" => Some("stream"),
        _ => None,
    }
}

/// A command of an applied batch that Redis refused: the writes it
/// carried are dropped (`wait` reports them); one that carries none (the
/// registry's `SADD`, weight 0) is counted as an error only.
fn record_refused(shared: &Shared, seq: u64, writes: u64, key: String, class: ErrorKind, detail: String) {
    if writes == 0 {
        shared.count_error(class, format!("{key}: {detail}"));
    } else {
        shared.record_drop(seq, writes, key, class, detail);
    }
}

impl Flusher {
    /// Writes the held batch and, while Redis executes it, encodes the next
    /// one and queues it behind (`MULTI` and its commands; its `EXEC` only
    /// once the held batch is confirmed, else `DISCARD`): batches still
    /// apply strictly in order, each whole or not at all. With
    /// `replica_wait` nothing is queued behind a batch.
    pub(super) fn write_held(&mut self) {
        let Some(batch) = self.inflight.held() else { return };
        if batch.is_in_doubt() {
            if let Err(f) = self.resolve() {
                self.fail(f);
                return;
            }
            if self.inflight.held().is_none_or(|b| b.is_in_doubt()) {
                return;
            }
        }
        // `close`: nothing is sent once its deadline has passed.
        if !self.ensure_watching() || self.past_deadline() {
            return;
        }
        let start = Instant::now();
        // Once the held batch went out, applied or not is unknown.
        let outcome = match self.send_exec().and_then(|()| self.queue_next()) {
            Err(f) => Outcome::InDoubt(f),
            Ok(()) => self.read_result(),
        };
        match outcome {
            Outcome::Applied(after) => {
                self.shared.record_batch_latency(start.elapsed());
                self.ack();
                // The batch `ack` promoted may be queued on the connection:
                // its replies come next in the stream, whatever `after` is.
                let head = self.read_held_head();
                if let Some(f) = after {
                    // The guard was not re-armed (a refused WATCH, say): the
                    // promoted batch sits in a MULTI that no WATCH guards,
                    // so it is discarded and sent again once guarded.
                    self.discard_held();
                    self.fail(f);
                } else if let Some(f) = head {
                    self.fail(f);
                }
            }
            Outcome::NotApplied(f) => {
                self.unqueue_next();
                self.fail(f)
            }
            Outcome::Aborted => {
                self.unqueue_next();
                if let Some(b) = self.inflight.held_mut() {
                    b.aborted();
                }
                log::info!("tradecache: the commit marker changed under a batch; resolving it by the marker");
                self.retry.schedule();
            }
            Outcome::InDoubt(f) => {
                if let Some(b) = self.inflight.held_mut() {
                    b.lost();
                }
                // Whatever the error, this connection's state is unknown.
                self.fail(f.unsettled())
            }
        }
    }

    /// Sends what the held batch still needs: its whole transaction, or
    /// only `EXEC` (queued), or only the replica `WAIT` (applied); then
    /// `WATCH` and `GET` of the marker.
    fn send_exec(&mut self) -> Result<(), Failure> {
        self.inflight.reindex_held(&self.keys);
        let wait = self.cfg.replica_wait;
        let Some(batch) = self.inflight.held_mut() else { return Err(Failure::not_connected()) };
        let exec = !batch.is_applied();
        if batch.is_applied() || batch.is_queued() {
            self.link.send_exec(&mut Vec::new(), 0, exec, wait, false)
        } else {
            // One write: the transaction with EXEC (and WAIT) behind it.
            let replies = batch.head_replies();
            self.link.send_exec(&mut batch.tx, replies, exec, wait, false)
        }
    }

    /// Builds the next batch from what is pending and sends its `MULTI` and
    /// commands, without `EXEC`.
    fn queue_next(&mut self) -> Result<(), Failure> {
        // (With a purge waiting, a step goes between this batch and the next.)
        let applied = self.inflight.held().is_some_and(|b| b.is_applied());
        if self.cfg.replica_wait.is_some() || applied || !self.purges.is_empty() {
            return Ok(());
        }
        if self.inflight.next_mut().is_none() {
            self.drain();
            self.build();
        }
        let Some(next) = self.inflight.next_to_queue().filter(|_| self.link.is_up()) else { return Ok(()) };
        self.link.send_queued(&next.tx, next.head_replies())?;
        next.sent_queued();
        Ok(())
    }

    /// Reads the replies to what `send_exec` sent, up to the first I/O error.
    fn read_result(&mut self) -> Outcome {
        let Some(batch) = self.inflight.held_mut() else {
            return Outcome::InDoubt(Failure::not_connected());
        };
        let link = &mut self.link;
        let addr = link.addr().to_string();
        // What `EXEC` did: `None` while only the WAIT was outstanding.
        let mut refused: Option<Failure> = None;
        let mut aborted = false;
        if !batch.is_applied() {
            // A queued batch's replies were read when it became the held one
            // (`read_held_head`).
            let mut queued_error = batch.take_queued_error();
            if batch.is_built() {
                // The transaction's own replies: OK, QUEUED… (or errors).
                for _ in 0..batch.head_replies() {
                    let v = match link.recv() {
                        Ok(v) => v,
                        Err(f) => return Outcome::InDoubt(f),
                    };
                    queued_error = queued_error.or_else(|| reply_error(&v));
                }
            }
            let exec = match link.recv() {
                Ok(v) => v,
                Err(f) => return Outcome::InDoubt(f),
            };
            match exec {
                Value::Array(results) => {
                    // Applied, but a command in it failed (a key of the
                    // wrong type, say): its writes are dropped, recorded at
                    // the batch's first sequence number (where `wait` on
                    // any write of the batch sees them).
                    for (i, (r, weight)) in results.iter().zip(&batch.weights).enumerate() {
                        if let Some((code, text)) = reply_error(r) {
                            let class = net::Cause::of_code(&code).class();
                            // Reply i answers command i + 1 (after MULTI).
                            let key = batch.command(i + 1).map_or_else(
                                || format!("batch {}", batch.no),
                                |(_, k)| String::from_utf8_lossy(k).into_owned(),
                            );
                            let detail = format!("refused inside batch {}: {text}", batch.no);
                            record_refused(&self.shared, batch.first_seq, *weight, key, class, detail);
                        }
                    }
                    self.shared.add(Count::Written, results.len() as u64);
                    batch.exec_applied();
                }
                // The WATCH on the marker fired.
                Value::Nil => {
                    batch.unqueued();
                    aborted = true;
                }
                other => {
                    let (code, text) = queued_error
                        .or_else(|| reply_error(&other))
                        .unwrap_or_else(|| ("EXECABORT".into(), format!("unexpected EXEC reply {other:?}")));
                    batch.unqueued();
                    refused = Some(Failure::new(net::Cause::of_exec_error(&code, &text), addr.clone(), text));
                }
            }
        }
        if let Some((n, _)) = self.cfg.replica_wait {
            let got = match link.recv() {
                Ok(Value::Int(k)) => k,
                // `WAIT` itself refused (an ACL without `+wait`, say): that
                // cause, not "no replica acknowledged", is what health
                // and stats report.
                Ok(v) => {
                    if let (None, false, Some((code, text))) = (&refused, aborted, reply_error(&v)) {
                        let text = format!("WAIT after the batch: {text}");
                        refused = Some(Failure::new(net::Cause::of_code(&code), addr.clone(), text));
                    }
                    0
                }
                Err(f) => {
                    return match refused {
                        // Not applied whatever happened after.
                        Some(refused) => Outcome::NotApplied(refused.unsettled()),
                        None => Outcome::InDoubt(f),
                    };
                }
            };
            if refused.is_none() && !aborted && got < i64::from(n) {
                // Classified like Redis's own NOREPLICAS.
                refused = Some(Failure::new(
                    net::Cause::Busy,
                    addr.clone(),
                    format!("only {got} of {n} replica(s) acknowledged the batch"),
                ));
            }
        }
        let applied = batch.is_applied() && refused.is_none();
        let watch = guard!(self).read_watch();
        outcome(applied, aborted, refused, watch)
    }

    /// Once `ack` made the next batch the held one: reads the replies to
    /// its `MULTI` and commands, if it was queued. An I/O error leaves it
    /// unapplied (its `EXEC` was never sent).
    fn read_held_head(&mut self) -> Option<Failure> {
        let batch = self.inflight.held_mut()?;
        if !batch.is_queued() {
            return None;
        }
        for _ in 0..batch.head_replies() {
            match self.link.recv() {
                Ok(v) => batch.head_reply(reply_error(&v)),
                Err(f) => {
                    batch.unqueued();
                    return Some(f);
                }
            }
        }
        None
    }

    /// `DISCARD` of the held batch's queued transaction, its head replies
    /// already read (`read_held_head`): it goes out whole next time.
    fn discard_held(&mut self) {
        let Some(held) = self.inflight.held_mut().filter(|b| b.is_queued()) else { return };
        held.unqueued();
        if let Err(f) = self.link.discard() {
            self.shared.count_error(f.class(), f.text);
            self.drop_conn();
        }
    }

    /// The held batch was not applied: throw away the batch queued behind
    /// it (`DISCARD`), so nothing applies out of order; it is sent again
    /// after the held one.
    fn unqueue_next(&mut self) {
        let Some(next) = self.inflight.next_mut().filter(|b| b.is_queued()) else { return };
        next.unqueued();
        if !self.link.is_up() {
            return;
        }
        let replies = next.head_replies();
        if (0..replies).any(|_| self.link.recv().is_err()) {
            // Unsure what the connection holds now: start afresh.
            self.drop_conn();
        } else if let Err(f) = self.link.discard() {
            self.shared.count_error(f.class(), f.text);
            self.drop_conn();
        }
    }

    /// After a reconnect (or an aborted `EXEC`): settles an in-doubt batch
    /// by the commit marker, under a fresh `WATCH` (a batch still on its
    /// way on a dropped connection cannot apply after the decision):
    /// replayed when the marker is behind it, else its refused commands
    /// checked and it acknowledged (or rewritten for the replica `WAIT`).
    /// A failure on the way leaves it in doubt.
    fn resolve(&mut self) -> Result<(), Failure> {
        if let Some(old) = self.link.take_dead_client() {
            // Not needed for correctness (the WATCH aborts a late EXEC of
            // the old connection), but it frees the server of it. Only on
            // the server it was on, by id and client address together (a
            // restarted server reuses ids).
            log::debug!(
                "tradecache: killing dropped connection {} ({}) on {}",
                old.id,
                old.addr,
                self.link.addr()
            );
            let [reply] = self.link.round_trip::<1>(&old.kill_cmd().get_packed_command())?;
            if let Some((code, text)) = reply_error(&reply) {
                let class = net::Cause::of_code(&code).class();
                self.shared.count_error(class, format!("CLIENT KILL of the dropped connection: {text}"));
            }
        }
        let read = guard!(self).watch()?;
        let epoch = self.link.epoch();
        // The marker gone, it cannot say (`loss.rs`).
        let held = self.inflight.held().filter(|_| read == marker::Read::Missing);
        let without_marker = held.map(|b| loss::settle_without_marker(b, &mut self.link)).transpose()?;
        if without_marker == Some(Settled::Unproven) {
            self.drop_unproven();
            return Ok(());
        }
        let Some(batch) = self.inflight.held_mut() else { return Ok(()) };
        let applied = read.applied_batch(epoch);
        if without_marker.is_some() || applied < batch.no {
            batch.replay();
            self.shared.add(Count::Replays, 1);
            return Ok(());
        }

        self.check_refused()?;
        if self.cfg.replica_wait.is_some() {
            // This connection has written nothing yet, so a bare WAIT
            // would return at once: write the marker again, behind the
            // batch in the replication stream, and WAIT for that.
            self.touch_marker(applied)?;
        } else {
            self.ack();
        }
        Ok(())
    }

    /// The held batch was in doubt when the marker was lost, and cannot be
    /// proven applied: its writes are reported dropped, and the batch
    /// behind it is next.
    fn drop_unproven(&mut self) {
        let Some(batch) = self.inflight.take_held() else { return };
        Loss::report_unproven(&batch, &self.link, &self.shared);
        // Whether its index entries are in is unknown: the batches built
        // after it add back the ones they skipped.
        self.inflight.forget_index();
        // Settled (reported): the writes after it go on.
        self.shared.note_acked(batch.max_seq);
    }

    /// Rewrites the marker with what it holds (`batch`: a write for `WAIT`
    /// to cover), guarded by the `WATCH`; re-arms it. The held batch then
    /// waits for its replicas.
    fn touch_marker(&mut self, batch: u64) -> Result<(), Failure> {
        let mut cmd = Packer::default();
        self.link.set_marker(&mut cmd, batch);
        let exec = guard!(self).guarded_tx(&cmd.buf, 1)?.exec;
        let Some(batch) = self.inflight.held_mut() else { return Ok(()) };
        match exec {
            Value::Array(_) => batch.exec_applied(),
            // The marker moved again: decide again.
            _ => batch.lost(),
        }
        Ok(())
    }

    /// A batch settled as applied by the marker, its `EXEC` reply lost: the
    /// only commands Redis can refuse once queued are on a key of the wrong
    /// type, so those keys' types are asked and the writes of each command
    /// that must have failed recorded.
    fn check_refused(&mut self) -> Result<(), Failure> {
        let Some(batch) = self.inflight.held() else { return Ok(()) };
        let mut checks = Vec::new();
        let mut p = Packer::default();
        for (i, weight) in batch.weights.iter().enumerate() {
            let Some((name, key)) = batch.command(i + 1) else { continue };
            let Some(expected) = expected_type(name) else { continue };
            p.cmd(&[b"TYPE", key]);
            checks.push((key.to_vec(), expected, *weight));
        }
        if checks.is_empty() {
            return Ok(());
        }
        let link = &mut self.link;
        link.send_reads(&p.buf, checks.len())?;
        for (key, expected, weight) in checks {
            let reply = link.recv()?;
            let found = match &reply {
                Value::SimpleString(s) => s.clone(),
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                _ => continue,
            };
            if found != "none" && found != expected {
                let detail = format!(
                    "refused inside batch {} (WRONGTYPE: the key holds a {found}; found by TYPE after \
                     the batch's reply was lost)",
                    batch.no
                );
                let key = String::from_utf8_lossy(&key).into_owned();
                record_refused(&self.shared, batch.first_seq, weight, key, ErrorKind::Command, detail);
            }
        }
        Ok(())
    }

    /// The held batch is in Redis: publish its last sequence number, and
    /// make the batch behind it (queued or built) the held one.
    pub(super) fn ack(&mut self) {
        let Some(batch) = self.inflight.take_held() else { return };
        self.retry.reset();
        if self.shared.set_backpressure(None) {
            log::info!("tradecache: Redis accepts writes again");
        }
        self.shared.add(Count::Batches, 1);
        self.loss.acknowledged(batch.no, batch.first_seq);
        self.purges.owe_turn();
        // Last: a caller woken by this sees the health that goes with it.
        self.shared.note_acked(batch.max_seq);
        self.inflight.recycle(batch);
    }

    /// Arms the `WATCH` on the marker unless it is armed. A failure is
    /// handled (`fail`), and `false` returned: nothing is sent then.
    pub(super) fn ensure_watching(&mut self) -> bool {
        if self.link.is_guarded() {
            return true;
        }
        let Err(f) = guard!(self).watch() else { return true };
        self.fail(f);
        false
    }

    /// Counts the failure and does what its action says; the next attempt
    /// waits for the backoff.
    pub(super) fn fail(&mut self, f: Failure) {
        if f.action() == Action::Fence {
            self.enter_fenced(f);
            return;
        }
        log::warn!("tradecache: {} ({}): {}", f.addr, f.class().name(), f.text);
        self.shared.count_error(f.class(), f.text.clone());
        match f.action() {
            Action::Reconnect => self.drop_conn(),
            Action::Backpressure => self.set_backpressure(&f),
            Action::WaitRetry | Action::Drop | Action::Fence => {}
        }
        if !self.link.is_up() {
            // The link dropped a connection whose stream failed (`Link::lose`):
            // what was queued on it is gone too.
            self.drop_conn();
        }
        self.retry.schedule();
    }

    /// Redis refuses writes for now (OOM, MISCONF, an auth change):
    /// `health()` shows why until a batch is acknowledged again.
    fn set_backpressure(&self, f: &Failure) {
        self.shared.set_backpressure(Some(format!("{}: {}", f.class().name(), f.text)));
    }

    /// Another writer claimed the marker: stop for good. Nothing held or
    /// pending is written.
    pub(super) fn enter_fenced(&mut self, f: Failure) {
        log::error!("tradecache: {}", f.text);
        self.shared.count_error(f.class(), f.text.clone());
        self.shared.set_fenced(String::from_utf8_lossy(self.link.marker_key()).into_owned(), f.text);
        self.inflight.drop_all();
        if let Some(b) = self.inbox.discard() {
            let _ = b.reply.try_send(Err(self.shared.stopped_error()));
        }
        self.shared.wake_all();
    }

    /// Drops the connection: whatever was queued on it is gone.
    pub(super) fn drop_conn(&mut self) {
        self.link.drop_conn();
        self.inflight.unqueue_all();
        self.shared.set_connected(false);
    }

    pub(super) fn reconnect(&mut self) {
        let name = String::from_utf8_lossy(self.link.marker_key()).into_owned();
        match net::connect(&self.cfg, &name, self.inbox.shutdown()) {
            Ok(c) => {
                log::info!("tradecache: reconnected to {}", c.addr);
                self.link.install(c);
                // Nothing is queued on a new connection.
                self.inflight.unqueue_all();
                // A restarted server may have lost recent index entries.
                self.inflight.forget_index();
                self.shared.set_connected(true);
                self.shared.add(Count::Reconnects, 1);
                if let Some(b) = self.inflight.held_mut() {
                    // Only the replica WAIT was outstanding; after a
                    // failover the marker decides.
                    b.reconnected();
                }
                // The backoff keeps growing until a batch is acknowledged.
                self.retry.reconnected();
            }
            Err(f) => {
                self.shared.count_error(f.class(), f.text.clone());
                if f.action() == Action::Backpressure {
                    self.set_backpressure(&f);
                }
                log::debug!("tradecache: reconnect to {} failed: {}", f.addr, f.text);
                self.retry.schedule();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Cause;

    fn failure(cause: Cause) -> Failure {
        Failure::new(cause, "127.0.0.1:1", "test")
    }

    #[test]
    fn the_outcome_of_a_batch_follows_its_replies() {
        let io = || Err(failure(Cause::Io));
        assert!(matches!(outcome(true, false, None, Ok(())), Outcome::Applied(None)));
        // Applied, then the marker could not be read: acknowledged first.
        assert!(matches!(outcome(true, false, None, io()), Outcome::Applied(Some(_))));
        // A newer writer comes before a refusal.
        let fenced = outcome(false, false, Some(failure(Cause::Oom)), Err(failure(Cause::Fenced)));
        assert!(matches!(fenced, Outcome::NotApplied(f) if f.action() == Action::Fence));
        let refused = outcome(false, false, Some(failure(Cause::Oom)), Ok(()));
        assert!(matches!(refused, Outcome::NotApplied(f) if f.action() == Action::Backpressure));
        // Refused, and the connection failed behind it: not applied, but the
        // connection is not to be trusted.
        let refused_io = outcome(false, false, Some(failure(Cause::Oom)), io());
        assert!(matches!(refused_io, Outcome::NotApplied(f) if f.action() == Action::Reconnect));
        assert!(matches!(outcome(false, true, None, Ok(())), Outcome::Aborted));
        assert!(matches!(outcome(false, true, None, io()), Outcome::InDoubt(_)));
        assert!(matches!(outcome(false, false, None, Ok(())), Outcome::Aborted));
    }

    #[test]
    fn only_commands_redis_refuses_by_type_are_checked() {
        assert_eq!(expected_type(b"SADD"), Some("set"));
        assert_eq!(expected_type(b"ZREM"), Some("zset"));
        assert_eq!(expected_type(b"RPUSH"), Some("list"));
        assert_eq!(expected_type(b"XADD"), Some("stream"));
        for name in [&b"MSET"[..], b"DEL", b"LTRIM", b"XTRIM", b"SET"] {
            assert_eq!(expected_type(name), None);
        }
    }
}
