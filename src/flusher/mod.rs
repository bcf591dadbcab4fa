//! The flusher thread: drains the channel, coalesces, encodes, and writes
//! each batch as one `MULTI … EXEC` that also sets the writer's commit
//! marker. Owns the connection; callers never reach in here.
//!
//! This file is the run loop: waiting for work, draining the channel into
//! `pending` (`absorb`, `drain`, `linger`, on the channel side the kv
//! writer shares, `crate::writer::intake`), and shutting down. The rest, by
//! concern:
//! - `pending.rs`: writes received but not yet in a batch (coalescing);
//! - `batch.rs`: building one transaction from them (pure, unit-tested)
//!   and the state of a batch until Redis confirms it;
//! - `pipeline.rs`: sending, queueing the next batch behind the held one,
//!   `EXEC`, settling a batch in doubt by the commit marker, acknowledging;
//! - `guard.rs`: the `WATCH` on the commit marker that guards every
//!   transaction, and what its `GET` says (fenced or not);
//! - `link.rs`: the connection, its one owner: every send and reply read
//!   goes through it; `ledger.rs` keeps what is true of its stream (the
//!   replies owed, the `WATCH` state, an open `MULTI`);
//! - `reconnect.rs`: failures, fencing, dropping and reconnecting;
//! - `loss.rs`: a commit marker found behind what this writer applied;
//! - `clear.rs`: `Cache::clear`, a barrier then guarded deletes;
//! - `index.rs`: the open and closed indexes a batch keeps;
//! - `purge.rs`: purges taking turns with batches;
//! - `heartbeat.rs` and `streams.rs`: the heartbeat and the event streams.

mod batch;
mod clear;
mod guard;
mod heartbeat;
mod index;
mod ledger;
mod link;
mod loss;
mod pending;
mod pipeline;
mod purge;
mod reconnect;
mod streams;

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::config::Config;
use crate::error::{CloseReport, Error};
use crate::keys::Keys;
use crate::marker::Marker;
use crate::net::{self, Backoff, Conn, Packer};
use crate::writer::Count;

use crate::pipeline::msg::Msg;
use crate::writer::intake::{self, AliveGuard, Idle, Intake, Wake};
use crate::writer::{Shared, Waiters};
use link::Link;

use batch::{Batch, Bufs};
use clear::Barrier;
use heartbeat::Heartbeat;
pub(crate) use index::now_ms;
use index::Indexed;
use pending::Pending;
use purge::PurgeJob;

/// The hasher of the flusher's per-key maps: every write is hashed on
/// arrival and when its batch is built (SipHash showed in throughput
/// profiles); the keys are the engine's own ids.
type FastState = foldhash::fast::RandomState;

pub(crate) struct Flusher {
    cfg: Config,
    keys: Keys,
    marker_key: Vec<u8>,
    /// This writer's epoch (see `marker.rs`).
    epoch: u64,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    waiters: Arc<Waiters>,
    done: Sender<CloseReport>,
    /// The connection, and what is true of it (`link.rs`).
    link: Link,
    /// Bumped whenever the index sets may have changed under us
    /// (`forget_index`): a batch built for an older generation adds back
    /// the index entries it skipped before it is sent (`Batch::reindex`).
    generation: u64,
    pending: Pending,
    /// A `clear` that waits for everything before it.
    barrier: Option<Barrier>,
    /// The batch being written: the oldest not yet acknowledged.
    held: Option<Batch>,
    /// The batch after it, queued on the server behind it (`pipeline.rs`).
    next: Option<Batch>,
    batch_no: u64,
    received_seq: u64,
    /// The last sequence number packed into a batch.
    built_seq: u64,
    backoff: Backoff,
    retry_at: Option<Instant>,
    shutdown: Option<Instant>,
    /// Another writer took over: nothing more is written.
    fenced: bool,
    /// Ids in the index sets once every built batch applies, open or
    /// closed (updated as batches are built; forgotten when the connection
    /// or the data may have changed under us).
    indexed: Indexed,
    /// Collections written by this flusher (for `clear`).
    collections: Vec<&'static str>,
    packer: Packer,
    bufs: Bufs,
    /// Purges waiting or under way, oldest first (`purge.rs`).
    purges: std::collections::VecDeque<PurgeJob>,
    /// A purge step is owed: a batch was written since the last step (so
    /// purges and batches take turns).
    purge_owed: bool,
    /// When `retain_closed_for` starts its next pass.
    next_auto_purge: Option<Instant>,
    /// When the heartbeat is written next, and what (`heartbeat.rs`).
    heartbeat: Heartbeat,
    /// The last batch number this writer acknowledged (`loss.rs`): a
    /// marker behind it means Redis lost acknowledged batches.
    marker_floor: u64,
    /// Recently acknowledged batches: (number, first sequence number).
    recent: std::collections::VecDeque<(u64, u64)>,
}

pub(crate) struct FlusherInit {
    pub(crate) cfg: Config,
    pub(crate) keys: Keys,
    pub(crate) rx: Receiver<Msg>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) waiters: Arc<Waiters>,
    pub(crate) done: Sender<CloseReport>,
    pub(crate) conn: Conn,
    /// The marker as claimed at `open`: this writer's epoch and the last
    /// batch number.
    pub(crate) marker: Marker,
}

impl Intake for Flusher {
    type Msg = Msg;

    fn channel(&self) -> &Receiver<Msg> {
        &self.rx
    }

    fn receive(&mut self, msg: Msg) {
        self.absorb(msg);
    }

    fn senders_gone(&mut self) {
        self.begin_shutdown(net::deadline_after(self.cfg.close_timeout));
    }
}

impl Flusher {
    pub(crate) fn new(init: FlusherInit) -> Self {
        let marker_key = init.keys.writer(&init.cfg.writer_id).into_bytes();
        let heartbeat_key = init.keys.heartbeat(&init.cfg.writer_id).into_bytes();
        let heartbeat = Heartbeat::new(
            init.cfg.heartbeat_interval,
            heartbeat_key,
            &init.cfg.writer_id,
            init.marker.epoch,
        );
        let now = Instant::now();
        let backoff = Backoff::new(init.cfg.reconnect_backoff_min, init.cfg.reconnect_backoff_max);
        init.shared.set_connected(true);
        init.shared.set_alive(true);
        Flusher {
            marker_key: marker_key.clone(),
            epoch: init.marker.epoch,
            backoff,
            keys: init.keys,
            rx: init.rx,
            shared: init.shared,
            waiters: init.waiters,
            done: init.done,
            link: Link::new(init.conn, marker_key, init.marker.epoch),
            generation: 0,
            pending: Pending::default(),
            barrier: None,
            held: None,
            next: None,
            batch_no: init.marker.batch,
            received_seq: 0,
            built_seq: 0,
            retry_at: None,
            shutdown: None,
            fenced: false,
            indexed: Indexed::default(),
            collections: Vec::new(),
            packer: Packer::default(),
            bufs: Bufs::default(),
            purges: std::collections::VecDeque::new(),
            purge_owed: false,
            next_auto_purge: init.cfg.retain_closed_for.map(|_| now),
            heartbeat,
            marker_floor: init.marker.batch,
            recent: std::collections::VecDeque::new(),
            cfg: init.cfg,
        }
    }

    pub(crate) fn run(mut self) {
        let _alive = AliveGuard(self.shared.clone(), self.waiters.clone());
        loop {
            self.check_stop();
            if self.fenced {
                break;
            }
            self.start_auto_purge();
            // (`next` is only ever set while `held` is: `ack` promotes it.)
            let work = !self.pending.is_empty()
                || self.held.is_some()
                || self.barrier.is_some()
                || !self.purges.is_empty()
                || self.heartbeat_due();
            if !work {
                if self.shutdown.is_some() {
                    // Told to stop through `Shared` rather than by the
                    // message: writes may still be queued behind it.
                    if self.take_next() {
                        continue;
                    }
                    break;
                }
                // Nothing to write: wait for the next message. This is
                // where the thread yields.
                match self.wait_first() {
                    Wake::Msg(msg) => self.absorb(msg),
                    Wake::Tick | Wake::Stop => {}
                    Wake::Closed => self.senders_gone(),
                }
                continue;
            }
            if self.past_deadline() {
                break;
            }
            self.drain();
            if !self.link.is_up() || self.retry_at.is_some_and(|t| Instant::now() < t) {
                self.pause();
                if !self.link.is_up() && self.retry_at.is_none_or(|t| Instant::now() >= t) {
                    self.reconnect();
                }
                continue;
            }
            if self.held.is_none() {
                if self.heartbeat_due() && (self.pending.is_empty() || self.purge_turn()) {
                    // No batch next to carry it: the heartbeat goes on its
                    // own, before a purge step or a `clear`, so that a long
                    // purge never starves it (`heartbeat.rs`).
                    self.idle_heartbeat();
                    continue;
                }
                if self.purge_turn() {
                    // Nothing in flight: one bounded purge step, between
                    // two batches (`purge.rs`).
                    self.purge_step();
                    continue;
                }
                if self.pending.is_empty() {
                    if self.barrier.is_some() {
                        // Only a `clear` is left, and everything before it
                        // is acknowledged.
                        self.run_clear();
                    }
                    continue;
                }
                self.linger();
                self.held = self.build();
            }
            self.write_held();
        }
        let acked = self.shared.acked();
        // Writes still in the channel were accepted too.
        let accepted = self.received_seq.max(self.shared.accepted());
        let report = CloseReport { acked_seq: acked, unpersisted: accepted.saturating_sub(acked) };
        if report.unpersisted > 0 {
            log::error!(
                "tradecache: flusher stopped with {} accepted write(s) not persisted",
                report.unpersisted
            );
        }
        if let Some(b) = self.barrier.take() {
            let _ = b.reply.try_send(Err(self.stopped_error()));
        }
        self.abandon_purges();
        let _ = self.done.try_send(report);
    }

    /// The error a `clear` left unexecuted gets.
    fn stopped_error(&self) -> Error {
        self.shared.fence_error().unwrap_or(Error::Closed)
    }

    /// Whether `close`'s deadline has passed (asked through `Shared` too:
    /// the `Shutdown` message may still be in the channel).
    fn past_deadline(&mut self) -> bool {
        self.check_stop();
        self.shutdown.is_some_and(|d| Instant::now() >= d)
    }

    /// `close`/`Drop` leave their deadline in `Shared` as well as sending
    /// `Shutdown`: when Redis is down and the flusher holds its maximum of
    /// pending writes, it stops draining, the channel fills, and the
    /// message would never arrive (the thread would outlive the `Cache`).
    fn check_stop(&mut self) {
        if self.shutdown.is_none() {
            if let Some(deadline) = self.shared.stop_requested() {
                self.begin_shutdown(deadline);
            }
        }
    }

    fn begin_shutdown(&mut self, deadline: Instant) {
        if self.shutdown.is_none() {
            self.shutdown = Some(deadline);
            // Writes are what `close` waits for; a purge is given up.
            self.abandon_purges();
        }
    }

    /// Waits for the first message of a batch: polls with a short sleep
    /// so a producer's push does not have to wake a parked thread, and
    /// parks only after being idle for `idle_park_after`.
    ///
    /// Returns `Wake::Tick` when idle work is due (the heartbeat, a
    /// `retain_closed_for` pass).
    fn wait_first(&mut self) -> Wake<Msg> {
        let idle = Idle { poll: self.cfg.idle_poll, park_after: self.cfg.idle_park_after };
        intake::wait_first(&self.rx, idle, self.idle_work_at(), || false)
    }

    /// Moves queued messages into `pending`: up to a batch while writing,
    /// more while Redis is away or refusing (coalescing keeps that one value
    /// per key), but never more than `max_pending_events` events or
    /// `max_pending_snapshots` keys, so that an outage fills the channel
    /// and callers are told. Stops at a `clear`: what follows it waits.
    fn drain(&mut self) {
        let writing = self.link.is_up() && self.retry_at.is_none();
        let limit = if writing { self.cfg.max_batch } else { usize::MAX };
        self.take_queued(|f, _| {
            f.barrier.is_none()
                && f.pending.len() < limit
                && f.pending.events() < f.cfg.max_pending_events
                && f.pending.snapshots() < f.cfg.max_pending_snapshots
        });
    }

    /// Keeps draining for `buffer_interval` after the first message, for
    /// users who prefer fewer, larger batches. Off (0) by default.
    fn linger(&mut self) {
        if self.cfg.buffer_interval.is_zero() || self.shutdown.is_some() {
            return;
        }
        let until = net::deadline_after(self.cfg.buffer_interval);
        while self.pending.len() < self.cfg.max_batch && self.barrier.is_none() && Instant::now() < until {
            self.drain();
            std::thread::sleep(self.cfg.idle_poll.min(until.saturating_duration_since(Instant::now())));
        }
    }

    fn absorb(&mut self, msg: Msg) {
        let seq = match msg {
            Msg::Put { seq, rec } => {
                if self.pending.put(seq, rec) {
                    self.shared.add(Count::Coalesced, 1);
                }
                seq
            }
            Msg::Delete { seq, collection, id } => {
                let superseded = self.pending.delete(seq, collection, id);
                self.shared.add(Count::Coalesced, superseded);
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
            Msg::Purge(req) => {
                // Not a write: it takes no sequence number.
                self.queue_purge(req);
                return;
            }
            Msg::Shutdown { deadline } => {
                self.begin_shutdown(deadline);
                return;
            }
        };
        self.received_seq = seq;
    }

    /// Builds the next batch from the oldest pending writes
    /// (`batch::build`), and records the writes it could not include.
    fn build(&mut self) -> Option<Batch> {
        if self.pending.is_empty() {
            return None;
        }
        self.batch_no += 1;
        let heartbeat = self.heartbeat_command();
        let spec = batch::Spec {
            cfg: &self.cfg,
            keys: &self.keys,
            marker_key: &self.marker_key,
            marker: Marker { epoch: self.epoch, batch: self.batch_no },
            first_seq: self.built_seq + 1,
            generation: self.generation,
            value_limit: batch::value_limit(&self.cfg, self.link.bulk_limit()),
            heartbeat: heartbeat.as_ref(),
            now_ms: index::now_ms().saturating_add_signed(self.cfg.clock_skew_ms),
            server_now_ms: self.link.server_now_ms(),
        };
        let work = batch::Work {
            pending: &mut self.pending,
            indexed: &mut self.indexed,
            collections: &mut self.collections,
            bufs: &mut self.bufs,
            packer: &mut self.packer,
        };
        let (batch, dropped) = batch::build(&spec, work)?;
        for d in dropped {
            self.shared.record_drop(d.seq, d.writes, d.key, d.class, d.detail);
        }
        self.built_seq = batch.max_seq;
        Some(batch)
    }
}
