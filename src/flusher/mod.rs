//! The flusher thread: drains the channel, coalesces, encodes, and writes
//! each batch as one `MULTI … EXEC` that also sets the writer's commit
//! marker. Owns the connection; callers never reach in here.
//!
//! `Flusher` is the run loop (this file: waiting, draining, shutting
//! down, and driving the heartbeat, purges and `clear` between batches)
//! and owns one value of each sub-state, each in its own file;
//! `commit.rs` holds the write path and what a failure does. The map of
//! the files is in docs/architecture.md.

/// The connection with what a look at the marker updates (`guard.rs`),
/// borrowed field by field (a purge step borrows `purges` beside it).
macro_rules! guard {
    ($f:ident) => {
        Guard { link: &mut $f.link, loss: &mut $f.loss, inflight: &mut $f.inflight, shared: &$f.shared }
    };
}

mod batch;
mod clear;
mod commit;
mod guard;
mod heartbeat;
mod inbox;
mod index;
mod inflight;
mod ledger;
mod link;
mod loss;
mod pending;
mod purge;
mod streams;

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::channel::intake::{self, AliveGuard, Intake, Wake};
use crate::channel::msg::{Msg, PurgeRequest};
use crate::channel::Shared;
use crate::config::Config;
use crate::error::CloseReport;
use crate::net::{self, Action, Conn, Failure, Retry};
use crate::store::keys::Keys;
use crate::store::marker::Marker;

use clear::Beating;
use guard::Guard;
use heartbeat::Heartbeat;
use inbox::Inbox;
pub(crate) use index::now_ms;
use inflight::InFlight;
use link::Link;
use loss::Loss;
use purge::PurgeScheduler;

/// The hasher of the flusher's per-key maps: every write is hashed on
/// arrival and when its batch is built (SipHash showed in throughput
/// profiles); the keys are the engine's own ids.
type FastState = foldhash::fast::RandomState;

pub(crate) struct Flusher {
    cfg: Config,
    keys: Keys,
    link: Link,
    inbox: Inbox,
    inflight: InFlight,
    retry: Retry,
    purges: PurgeScheduler,
    loss: Loss,
    heartbeat: Heartbeat,
    shared: Arc<Shared>,
    done: Sender<CloseReport>,
}

impl Intake for Flusher {
    type Msg = Msg;

    fn channel(&self) -> &Receiver<Msg> {
        self.inbox.rx()
    }

    fn receive(&mut self, msg: Msg) {
        match self.inbox.absorb(msg, &self.shared) {
            Some(Msg::Purge(req)) => self.queue_purge(req),
            Some(Msg::Shutdown { deadline }) => self.begin_shutdown(deadline),
            // (Writes and `clear` stay in the inbox.)
            _ => {}
        }
    }

    fn senders_gone(&mut self) {
        self.begin_shutdown(net::deadline_after(self.cfg.close_timeout));
    }
}

impl Flusher {
    /// The flusher on `conn` of the writer whose `marker` `open` claimed.
    pub(crate) fn new(
        cfg: Config,
        keys: Keys,
        rx: Receiver<Msg>,
        shared: Arc<Shared>,
        done: Sender<CloseReport>,
        conn: Conn,
        marker: Marker,
    ) -> Self {
        let marker_key = keys.writer(&cfg.writer_id).into_bytes();
        let heartbeat_key = keys.heartbeat(&cfg.writer_id).into_bytes();
        let heartbeat = Heartbeat::new(cfg.heartbeat_interval, heartbeat_key, &cfg.writer_id);
        shared.set_connected(true);
        shared.set_alive(true);
        Flusher {
            link: Link::new(conn, marker_key, marker.epoch),
            loss: Loss::new(marker.batch),
            retry: Retry::new(cfg.reconnect_backoff_min, cfg.reconnect_backoff_max),
            keys,
            inbox: Inbox::new(rx),
            shared,
            done,
            inflight: InFlight::new(marker.batch),
            purges: PurgeScheduler::new(cfg.retain_closed_for.is_some()),
            heartbeat,
            cfg,
        }
    }

    pub(crate) fn run(mut self) {
        let _alive = AliveGuard(self.shared.clone());
        loop {
            self.check_stop();
            // (Only this thread fences its writer: `enter_fenced`.)
            if self.shared.is_fenced() {
                break;
            }
            self.start_auto_purge();
            // (The next batch is only ever built while one is held.)
            let work = !self.inbox.pending().is_empty()
                || self.inflight.held().is_some()
                || self.inbox.has_barrier()
                || !self.purges.is_empty()
                || self.heartbeat_due();
            if !work {
                if self.inbox.shutdown().is_some() {
                    // Told to stop through `Shared` rather than by the
                    // message: writes may still be queued behind it.
                    if self.take_next() {
                        continue;
                    }
                    break;
                }
                // Nothing to write: the thread yields here, until a
                // message or idle work (the heartbeat, a retention pass).
                let due = [self.heartbeat.next_due(), self.purges.next_auto()].into_iter().flatten().min();
                match intake::wait_first(self.inbox.rx(), self.cfg.idle_poll, due, || false) {
                    Wake::Msg(msg) => self.receive(msg),
                    Wake::Tick | Wake::Stop => {}
                    Wake::Closed => self.senders_gone(),
                }
                continue;
            }
            if self.past_deadline() {
                break;
            }
            self.drain();
            if !self.link.is_up() || self.retry.is_waiting() {
                // A short sleep, so the channel keeps being drained.
                self.retry.pause(self.inbox.shutdown());
                if !self.link.is_up() && !self.retry.is_waiting() {
                    self.reconnect();
                }
                continue;
            }
            if self.inflight.held().is_none() {
                if self.heartbeat_due() && (self.inbox.pending().is_empty() || self.purge_turn()) {
                    // No batch to carry it: the heartbeat goes on its own,
                    // before a purge step or a `clear` (never starved).
                    self.idle_heartbeat();
                    continue;
                }
                if self.purge_turn() {
                    // Nothing in flight: one bounded purge step.
                    self.purge_step();
                    continue;
                }
                if self.inbox.pending().is_empty() {
                    if self.inbox.has_barrier() {
                        // Only a `clear` is left, and everything before it
                        // is acknowledged.
                        self.run_clear();
                    }
                    continue;
                }
                self.linger();
                self.build();
            }
            self.write_held();
        }
        // What was not persisted is reported once, by the caller's side:
        // `close` returns it (`Error::Unpersisted`), `Drop` logs it.
        let report = self.shared.close_report(self.inbox.received_seq());
        if let Some(b) = self.inbox.take_barrier() {
            let _ = b.reply.try_send(Err(self.shared.stopped_error()));
        }
        self.purges.abandon(|| self.shared.stopped_error());
        let _ = self.done.try_send(report);
    }

    /// Whether `close`'s deadline has passed (`check_stop` first).
    fn past_deadline(&mut self) -> bool {
        self.check_stop();
        self.inbox.shutdown().is_some_and(|d| Instant::now() >= d)
    }

    /// `close`/`Drop` leave their deadline in `Shared` too: with Redis down
    /// and `pending` full, the `Shutdown` message may never arrive.
    fn check_stop(&mut self) {
        if self.inbox.shutdown().is_none() {
            if let Some(deadline) = self.shared.stop_requested() {
                self.begin_shutdown(deadline);
            }
        }
    }

    fn begin_shutdown(&mut self, deadline: Instant) {
        if self.inbox.begin_shutdown(deadline) {
            // Writes are what `close` waits for; a purge is given up.
            self.purges.abandon(|| self.shared.stopped_error());
        }
    }

    /// Moves queued messages into `pending`: up to a batch while writing,
    /// more while Redis is away or refusing (coalescing keeps one value per
    /// key), within the `max_pending_*` bounds, so that an outage fills the
    /// channel and callers are told. Stops at a `clear`.
    fn drain(&mut self) {
        let writing = self.link.is_up() && !self.retry.is_scheduled();
        let limit = if writing { self.cfg.max_batch } else { usize::MAX };
        self.take_queued(|f, _| f.inbox.has_room(limit, &f.cfg));
    }

    /// Keeps draining for `buffer_interval` after the first message (fewer,
    /// larger batches; off by default).
    fn linger(&mut self) {
        if self.cfg.buffer_interval.is_zero() || self.inbox.shutdown().is_some() {
            return;
        }
        let until = net::deadline_after(self.cfg.buffer_interval);
        while self.inbox.pending().len() < self.cfg.max_batch
            && !self.inbox.has_barrier()
            && Instant::now() < until
        {
            self.drain();
            std::thread::sleep(self.cfg.idle_poll.min(until.saturating_duration_since(Instant::now())));
        }
    }

    /// Builds the next batch from the oldest pending writes, with the
    /// heartbeat when due, and records the writes it could not include.
    fn build(&mut self) {
        if self.inbox.pending().is_empty() {
            return;
        }
        let (acked, accepted) = self.heartbeat_seqs();
        let heartbeat = self
            .heartbeat_due()
            .then(|| self.heartbeat.command(self.link.epoch(), acked, accepted))
            .flatten();
        let dropped = self.inflight.build(
            &self.cfg,
            &self.keys,
            &self.link,
            heartbeat.as_ref(),
            self.inbox.for_batch(),
        );
        for d in dropped {
            self.shared.record_drop(d.seq.get(), d.writes, d.key, d.class, d.detail);
        }
    }

    /// The heartbeat is due (never while shutting down).
    fn heartbeat_due(&self) -> bool {
        self.inbox.shutdown().is_none() && self.heartbeat.due()
    }

    /// (acknowledged, accepted) sequence numbers, for the heartbeat.
    fn heartbeat_seqs(&self) -> (u64, u64) {
        let acked = self.shared.acked();
        (acked, self.shared.accepted().max(self.inbox.received_seq()))
    }

    /// The heartbeat on its own (idle, or before a purge step or a clear).
    fn idle_heartbeat(&mut self) {
        if !self.heartbeat_due() || !self.ensure_watching() {
            return;
        }
        let (acked, accepted) = self.heartbeat_seqs();
        if let Err(f) = self.heartbeat.beat(&mut self.link, acked, accepted) {
            self.fail(f);
        }
    }

    fn queue_purge(&mut self, req: PurgeRequest) {
        if self.shared.is_fenced() || self.inbox.shutdown().is_some() {
            if let Some(r) = &req.reply {
                let _ = r.try_send(Err(self.shared.stopped_error()));
            }
            return;
        }
        self.purges.push(req);
    }

    /// A purge step may run now (nothing is in flight: the caller checks).
    fn purge_turn(&self) -> bool {
        self.purges.turn(self.inbox.has_barrier(), self.inbox.pending().is_empty())
    }

    /// `retain_closed_for`: starts a pass over the reference collections
    /// and those written since `open` when one is due.
    fn start_auto_purge(&mut self) {
        if self.inbox.shutdown().is_some() {
            return;
        }
        if let Some(req) = self.purges.auto_due(self.cfg.retain_closed_for, self.inflight.collections()) {
            self.queue_purge(req);
        }
    }

    /// One step of the oldest purge, once a step in doubt is settled and
    /// every write accepted before the step is out of the channel.
    fn purge_step(&mut self) {
        self.purges.take_turn();
        if self.purges.in_doubt() {
            if let Err(f) = self.purges.settle(&mut guard!(self)) {
                self.fail(f);
                return;
            }
            if self.purges.in_doubt() {
                // Not settled (the marker moved under the touch): try again.
                return;
            }
        }
        // The step's place in the sequence: the last write accepted when it
        // is first tried (its message is in the channel then).
        let Some(at_seq) = self.purges.step_seq(self.shared.accepted()) else { return };
        // Writes accepted before this step still in the channel and
        // `pending` full (or a `clear` first): batches go first.
        if !self.absorb_until(at_seq) || !self.ensure_watching() {
            return;
        }
        match self.purges.try_step(&mut guard!(self), &self.keys, self.inbox.pending(), self.cfg.purge_batch)
        {
            Ok(()) => self.purges.finish_if_done(),
            Err(f) if f.action() == Action::Fence => self.enter_fenced(f),
            Err(f) if f.action() == Action::Drop => {
                // Refused for a reason a retry will not fix (an index key of
                // another type): this purge ends with the error.
                self.shared.count_error(f.class(), f.text.clone());
                self.purges.fail_oldest(f.into_error());
                if let Err(f) = guard!(self).watch() {
                    self.fail(f);
                }
            }
            Err(f) => self.fail(f),
        }
    }

    /// Takes the writes up to `seq` from the channel into `pending`, so
    /// that a step sees each write accepted before it (else it could
    /// delete an entity one of them reopened); later writes stay in the
    /// channel. `false` when `pending` is at its bounds or a `clear` was met.
    fn absorb_until(&mut self, seq: u64) -> bool {
        while self.inbox.received_seq() < seq {
            if !self.inbox.has_room(usize::MAX, &self.cfg) {
                return false;
            }
            match self.inbox.rx().try_recv() {
                Ok(m) => self.receive(m),
                // (The store of `accepted_seq` follows its send.)
                Err(_) => return false,
            }
        }
        !self.inbox.has_barrier()
    }

    /// Executes a `clear` once everything before it is acknowledged
    /// (`clear.rs`).
    fn run_clear(&mut self) {
        if !self.inbox.has_barrier() || !self.ensure_watching() {
            return;
        }
        let (shutdown, shared) = (self.inbox.shutdown(), self.shared.clone());
        let (mut deleted, mut interrupted) = (0, false);
        let seqs = self.heartbeat_seqs();
        let heartbeat = shutdown.is_none().then_some(&mut self.heartbeat);
        let mut session = Beating { link: &mut self.link, heartbeat, seqs };
        let collections = self.inflight.collections().to_vec();
        let inflight = &mut self.inflight;
        let result = crate::store::own_keys::delete_own_keys(
            &mut session,
            &self.keys,
            &collections,
            |session, keys| {
                let link = &mut *session.link;
                // (`close` leaves its deadline in `Shared` first.)
                if shutdown.or_else(|| shared.stop_requested()).is_some_and(|d| Instant::now() >= d) {
                    // `close` does not wait for a long clear past its deadline:
                    // nothing is deleted once it has returned.
                    interrupted = true;
                    return Err(Failure::new(net::Cause::ExecAbort, link.addr(), "clear: stopped by close"));
                }
                let n = clear::guarded_unlink(link, inflight.next_no(), keys)?;
                deleted += n;
                Ok(n)
            },
        );
        self.inbox.count_cleared(deleted);
        match result {
            Ok(_) => {
                self.inflight.forget_index();
                if let Some(b) = self.inbox.take_barrier() {
                    self.shared.note_acked(b.seq);
                    self.inflight.cleared(b.seq);
                    let _ = b.reply.try_send(Ok(b.deleted));
                }
            }
            // The run loop stops at the deadline; the clear is answered
            // `Closed` then.
            Err(_) if interrupted => {}
            Err(f) => self.fail(f),
        }
    }
}
