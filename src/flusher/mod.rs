//! The flusher thread: drains the channel, coalesces, encodes, and writes
//! each batch as one `MULTI … EXEC` that also sets the writer's commit
//! marker. Owns the connection; callers never reach in here.
//!
//! Between its transactions the flusher keeps a `WATCH` on the commit
//! marker (re-armed right after every `EXEC`, with a `GET` that shows who
//! owns it): a batch whose `EXEC` comes after another writer claimed the
//! marker, or after a dropped connection of ours applied a batch behind
//! our back, is aborted by Redis (see `marker.rs`).
//!
//! This file is over 600 lines: it is the one state machine of a batch
//! (built, queued, sent, in doubt, applied) and splitting it would spread
//! that state over files; intake and coalescing are in `pending.rs`.
//! What issue 15 added sits in files of its own, each a set of helpers
//! the state machine calls: the open and closed indexes a batch keeps
//! (`index.rs`), purges taking turns with batches (`purge.rs`), the
//! heartbeat (`heartbeat.rs`) and the event streams (`streams.rs`).

mod heartbeat;
mod index;
mod pending;
mod purge;
mod streams;

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use redis::Value;

use crate::codec;
use crate::config::Config;
use crate::error::{CloseReport, Error};
use crate::error_class::ErrorClass;
use crate::keys::Keys;
use crate::marker::{self, Marker};
use crate::net::{self, reply_error, Action, Args, Backoff, Conn, Failure, Packer};
use crate::pipeline::msg::Msg;
use crate::pipeline::shared::{Shared, Waiters};

pub(crate) use index::now_ms;
use index::{Indexed, Skipped, StateBufs};
use pending::{Item, Pending, Snap};
use purge::PurgeJob;
pub(crate) use purge::PurgeRequest;

/// The hasher of the flusher's per-key maps: every write is hashed on
/// arrival and when its batch is built (SipHash showed in throughput
/// profiles); the keys are the engine's own ids.
type FastState = foldhash::fast::RandomState;

/// A packed transaction, kept until Redis confirms it.
struct Batch {
    no: u64,
    /// `MULTI` and the commands, packed once and sent as they are; `EXEC`
    /// (and `WAIT`) go after them (see `send_exec`).
    tx: Vec<u8>,
    /// How many writes each command between `MULTI` and `EXEC` carries, in
    /// order: what a command that fails inside the transaction drops.
    weights: Vec<u64>,
    /// Puts whose index commands were skipped because the id was known to
    /// be indexed in the same state, open or closed (once the batches
    /// before this one apply), on the connection the batch was built for.
    unindexed: Vec<Skipped>,
    /// The sequence numbers this batch covers: acknowledging it
    /// acknowledges every write up to `max_seq`.
    first_seq: u64,
    max_seq: u64,
    /// The connection generation `tx` was built for.
    generation: u64,
    /// Sent, but the reply was lost: applied or not, the marker decides.
    in_doubt: bool,
    /// `EXEC` succeeded; only the replica `WAIT` is outstanding.
    applied: bool,
    /// Where the batch is on the current connection.
    stage: Stage,
    /// The first error among the replies to its queued commands, once read.
    queued_error: Option<(String, String)>,
}

/// How far a batch has gone on the current connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Not sent (or sent on a connection since dropped).
    Built,
    /// `MULTI` and its commands sent and their replies read; `EXEC` is held
    /// back until the batch before it is confirmed.
    Queued,
}

impl Batch {
    /// Replies to `tx` (`MULTI` and the commands): `OK`, then one `QUEUED` each.
    fn head_replies(&self) -> usize {
        self.weights.len() + 1
    }
}

/// Reused buffers for packing a batch: one variadic command per kind of
/// change (DESIGN.md: batches are cheap for Redis to apply).
#[derive(Default)]
struct Bufs {
    /// `MSET` pairs of every snapshot put, and the commit marker.
    mset: Args,
    puts: u64,
    /// `DEL` of deleted entities, their logs, and logs restarted by a put.
    del: Args,
    deletes: u64,
    /// `SADD`/`SREM` members per index.
    sadd: Vec<(&'static str, Args)>,
    srem: Vec<(&'static str, Args)>,
    /// The open and closed indexes' commands (`index.rs`).
    state: StateBufs,
    /// The batch's events, encoded back to back, in order.
    events: Vec<BatchEvent>,
    event_bytes: Vec<u8>,
    /// One log's events, for its `RPUSH`.
    log: Args,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// One event of a batch, encoded in `Bufs::event_bytes`.
struct BatchEvent {
    collection: &'static str,
    id: crate::ident::Ident,
    /// End offset in `event_bytes` (it starts where the one before ends).
    end: usize,
    /// How many entries the list keeps (market data, account events with
    /// `max_account_events`): `LTRIM` after the `RPUSH`.
    cap: Option<usize>,
    /// Also added to the collection's stream (`publish_events`).
    publish: bool,
}

fn members<'a>(v: &'a mut Vec<(&'static str, Args)>, collection: &'static str) -> &'a mut Args {
    let i = match v.iter().position(|(c, _)| *c == collection) {
        Some(i) => i,
        None => {
            v.push((collection, Args::default()));
            v.len() - 1
        }
    };
    &mut v[i].1
}

/// What ended an idle wait.
// A message is moved on by value, as it came through the channel.
#[allow(clippy::large_enum_variant)]
enum Wake {
    Msg(Msg),
    /// Idle work is due.
    Tick,
    /// Every `Cache` handle is gone.
    Closed,
}

enum Outcome {
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

/// A `clear` waiting for every write before it to be acknowledged.
struct Barrier {
    seq: u64,
    reply: Sender<crate::Result<u64>>,
}

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
    conn: Option<Conn>,
    generation: u64,
    /// A `WATCH` on the marker is armed on `conn`, and the last look at
    /// the marker showed no newer writer.
    watching: bool,
    /// The largest value the server takes (`proto-max-bulk-len`), when it
    /// said.
    server_bulk_limit: Option<usize>,
    /// The last dropped connection, and the server (`host:port`) it was on.
    dead_client: Option<(net::ClientIdentity, String)>,
    pending: Pending,
    /// A `clear` that waits for everything before it.
    barrier: Option<Barrier>,
    /// The batch being written: the oldest not yet acknowledged.
    held: Option<Batch>,
    /// The batch after it, queued on the server behind it (see `write_held`).
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
    /// When the heartbeat is written next (`heartbeat.rs`).
    next_heartbeat: Option<Instant>,
    heartbeat_key: Vec<u8>,
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

/// Marks the flusher dead and wakes waiters however the thread ends.
struct AliveGuard(Arc<Shared>, Arc<Waiters>);
impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.flusher_alive.store(false, SeqCst);
        self.0.connected.store(false, Relaxed);
        let _g = self.1.lock.lock();
        self.1.cv.notify_all();
    }
}

impl Flusher {
    pub(crate) fn new(init: FlusherInit) -> Self {
        let marker_key = init.keys.writer(&init.cfg.writer_id).into_bytes();
        let heartbeat_key = init.keys.heartbeat(&init.cfg.writer_id).into_bytes();
        let now = Instant::now();
        let backoff = Backoff::new(init.cfg.reconnect_backoff_min, init.cfg.reconnect_backoff_max);
        init.shared.connected.store(true, Relaxed);
        init.shared.flusher_alive.store(true, SeqCst);
        Flusher {
            marker_key,
            epoch: init.marker.epoch,
            backoff,
            keys: init.keys,
            rx: init.rx,
            shared: init.shared,
            waiters: init.waiters,
            done: init.done,
            server_bulk_limit: init.conn.bulk_limit,
            conn: Some(init.conn),
            generation: 0,
            watching: false,
            dead_client: None,
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
            next_heartbeat: init.cfg.heartbeat_interval.map(|_| now),
            heartbeat_key,
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
                    match self.rx.try_recv() {
                        Ok(msg) => {
                            self.absorb(msg);
                            continue;
                        }
                        Err(_) => break,
                    }
                }
                // Nothing to write: wait for the next message. This is
                // where the thread yields.
                match self.wait_first() {
                    Wake::Msg(msg) => self.absorb(msg),
                    Wake::Tick => {}
                    Wake::Closed => self.begin_shutdown(net::deadline_after(self.cfg.close_timeout)),
                }
                continue;
            }
            if self.past_deadline() {
                break;
            }
            self.drain();
            if self.conn.is_none() || self.retry_at.is_some_and(|t| Instant::now() < t) {
                self.pause();
                if self.conn.is_none() && self.retry_at.is_none_or(|t| Instant::now() >= t) {
                    self.reconnect();
                }
                continue;
            }
            if self.held.is_none() {
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
                    } else if self.heartbeat_due() {
                        self.idle_heartbeat();
                    }
                    continue;
                }
                self.linger();
                self.held = self.build();
            }
            self.write_held();
        }
        let acked = self.shared.acked_seq.load(SeqCst);
        // Writes still in the channel were accepted too.
        let accepted = self.received_seq.max(self.shared.accepted_seq.load(SeqCst));
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
    fn wait_first(&mut self) -> Wake {
        let idle_since = Instant::now();
        let due = self.idle_work_at();
        loop {
            match self.rx.try_recv() {
                Ok(m) => return Wake::Msg(m),
                Err(TryRecvError::Disconnected) => return Wake::Closed,
                Err(TryRecvError::Empty) => {}
            }
            let now = Instant::now();
            if due.is_some_and(|d| now >= d) {
                return Wake::Tick;
            }
            if now.duration_since(idle_since) < self.cfg.idle_park_after {
                std::thread::sleep(self.cfg.idle_poll);
            } else {
                let mut park = Duration::from_millis(200);
                if let Some(d) = due {
                    park = park.min(d.saturating_duration_since(now));
                }
                match self.rx.recv_timeout(park) {
                    Ok(m) => return Wake::Msg(m),
                    Err(RecvTimeoutError::Disconnected) => return Wake::Closed,
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
        }
    }

    /// Moves queued messages into `pending`: up to a batch while writing,
    /// more while Redis is away or refusing (coalescing keeps that one value
    /// per key), but never more than `max_pending_events` events or
    /// `max_pending_snapshots` keys, so that an outage fills the channel
    /// and callers are told. Stops at a `clear`: what follows it waits.
    fn drain(&mut self) {
        let writing = self.conn.is_some() && self.retry_at.is_none();
        let limit = if writing { self.cfg.max_batch } else { usize::MAX };
        while self.barrier.is_none()
            && self.pending.len() < limit
            && self.pending.events() < self.cfg.max_pending_events
            && self.pending.snapshots() < self.cfg.max_pending_snapshots
        {
            match self.rx.try_recv() {
                Ok(m) => self.absorb(m),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.begin_shutdown(net::deadline_after(self.cfg.close_timeout));
                    break;
                }
            }
        }
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
                    self.shared.coalesced.fetch_add(1, Relaxed);
                }
                seq
            }
            Msg::Delete { seq, collection, id } => {
                let superseded = self.pending.delete(seq, collection, id);
                self.shared.coalesced.fetch_add(superseded, Relaxed);
                seq
            }
            Msg::Append { seq, collection, id, rec } => {
                self.pending.append(seq, collection, id, rec);
                seq
            }
            Msg::Clear { seq, reply } => {
                self.barrier = Some(Barrier { seq, reply });
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

    /// The largest value written: `max_value_bytes`, or less when the
    /// server takes less (`proto-max-bulk-len`).
    fn value_limit(&self) -> (usize, &'static str) {
        match self.server_bulk_limit {
            Some(n) if n < self.cfg.max_value_bytes => (n, "the server's proto-max-bulk-len"),
            _ => (self.cfg.max_value_bytes, "max_value_bytes"),
        }
    }

    /// Encodes the oldest pending writes into one transaction: at most
    /// `max_batch` entries and about `max_batch_bytes`, taken in sequence
    /// order (see `pending.rs`). `MULTI`, one `MSET` of every snapshot and
    /// the commit marker, one `DEL` of deleted keys and restarted logs,
    /// one `SADD`/`SREM` per index (and per open/closed index, `index.rs`),
    /// one `RPUSH` per run of appends to the same log (in order; with its
    /// `LTRIM` for capped lists and its `XADD`s with `publish_events`,
    /// `streams.rs`), and the heartbeat when due (`heartbeat.rs`); `EXEC`
    /// is sent separately. Snapshots come before events: a log restarted
    /// by a delete gets the events that followed the delete. Nothing is
    /// read from Redis to build it.
    fn build(&mut self) -> Option<Batch> {
        if self.pending.is_empty() {
            return None;
        }
        self.batch_no += 1;
        let mut batch = Batch {
            no: self.batch_no,
            tx: Vec::new(),
            weights: Vec::new(),
            unindexed: Vec::new(),
            first_seq: self.built_seq + 1,
            max_seq: 0,
            generation: self.generation,
            in_doubt: false,
            applied: false,
            stage: Stage::Built,
            queued_error: None,
        };
        let heartbeat = self.heartbeat_command();
        let now_ms = index::now_ms();
        let enc = self.cfg.encoding;
        let _iso = codec::IsoScope::enter(self.cfg.timestamps_as_iso8601 && enc == crate::Encoding::Json);
        let publish = self.cfg.publish_events;
        let (limit, limit_name) = self.value_limit();
        let b = &mut self.bufs;
        b.mset.clear();
        b.del.clear();
        b.puts = 0;
        b.deletes = 0;
        b.sadd.iter_mut().chain(b.srem.iter_mut()).for_each(|(_, a)| a.clear());
        b.state.clear();
        b.events.clear();
        b.event_bytes.clear();
        let mut taken = 0;
        let mut bytes = 0;
        while taken < self.cfg.max_batch && bytes < self.cfg.max_batch_bytes {
            let Some(item) = self.pending.take() else { break };
            taken += 1;
            match item {
                Item::Snap(entry) => {
                    let key = entry.key;
                    let collection = key.0;
                    if !self.collections.contains(&collection) {
                        self.collections.push(collection);
                    }
                    match entry.snap {
                        Snap::Put { rec, after_delete, since, puts } => {
                            b.value.clear();
                            let r = rec.encode(enc, &mut b.value);
                            let drop = drop_reason(r, b.value.len(), limit, limit_name);
                            match drop {
                                None => {
                                    b.key.clear();
                                    self.keys.write_entity(&mut b.key, collection, &key.1);
                                    bytes += b.key.len() + b.value.len();
                                    b.mset.bulk(&b.key);
                                    b.mset.bulk(&b.value);
                                    b.puts += 1;
                                    if after_delete {
                                        b.key.extend_from_slice(b":events");
                                        b.del.bulk(&b.key);
                                    }
                                    // Open or closed: asked of the record
                                    // here, on the flusher thread.
                                    let open = !rec.is_closed();
                                    let score = rec.last_updated().map_or(now_ms, |t| t.0 / 1_000_000);
                                    let skipped =
                                        b.state.put(&mut b.sadd, &mut self.indexed, key, open, score);
                                    batch.unindexed.extend(skipped);
                                    continue;
                                }
                                Some((class, detail)) => {
                                    // The value is lost (the caller is told);
                                    // a delete folded into it is not.
                                    let k = self.keys.entity(collection, &key.1);
                                    self.shared.record_drop(since, puts, k, class, detail);
                                    if !after_delete {
                                        continue;
                                    }
                                }
                            }
                        }
                        Snap::Delete => {}
                    }
                    // A delete (or a put after one that cannot be written).
                    b.key.clear();
                    self.keys.write_entity(&mut b.key, collection, &key.1);
                    b.del.bulk(&b.key);
                    b.key.extend_from_slice(b":events");
                    b.del.bulk(&b.key);
                    b.deletes += 1;
                    bytes += 2 * b.key.len();
                    members(&mut b.srem, collection).bulk(key.1.as_bytes());
                    b.state.delete(collection, &key.1);
                    self.indexed.remove(&key);
                }
                Item::Event(ev) => {
                    if !self.collections.contains(&ev.collection) {
                        self.collections.push(ev.collection);
                    }
                    let start = b.event_bytes.len();
                    let r = ev.rec.encode(enc, &mut b.event_bytes);
                    let len = b.event_bytes.len() - start;
                    if let Some((class, detail)) = drop_reason(r, len, limit, limit_name) {
                        b.event_bytes.truncate(start);
                        let k = self.keys.events(ev.collection, &ev.id);
                        self.shared.record_drop(ev.seq, 1, k, class, detail);
                        continue;
                    }
                    bytes += len;
                    b.events.push(BatchEvent {
                        collection: ev.collection,
                        id: ev.id,
                        end: b.event_bytes.len(),
                        cap: ev.rec.cap(&self.cfg),
                        publish: publish && !ev.rec.is_series(),
                    });
                }
            }
        }
        batch.max_seq = self.pending.covered_seq();
        self.built_seq = batch.max_seq;

        let p = &mut self.packer;
        p.clear();
        p.cmd(&[b"MULTI"]);
        let marker = Marker { epoch: self.epoch, batch: batch.no }.format();
        b.mset.bulk(&self.marker_key);
        b.mset.bulk(marker.as_bytes());
        p.cmd_args(&[b"MSET"], &b.mset);
        batch.weights.push(b.puts);
        if !b.del.is_empty() {
            p.cmd_args(&[b"DEL"], &b.del);
            batch.weights.push(b.deletes);
        }
        for (set, cmd) in [(&b.sadd, &b"SADD"[..]), (&b.srem, &b"SREM"[..])] {
            for (collection, ids) in set.iter().filter(|(_, a)| !a.is_empty()) {
                b.key.clear();
                self.keys.write_index(&mut b.key, collection);
                p.cmd_args(&[cmd, &b.key], ids);
                batch.weights.push(ids.n as u64);
            }
        }
        b.state.pack(p, &self.keys, &mut b.key, &mut batch.weights);
        // Events in order; consecutive appends to one log share an RPUSH.
        let mut i = 0;
        let mut start = 0;
        let mut streams = streams::Streams::default();
        while i < b.events.len() {
            let (collection, id) = (b.events[i].collection, &b.events[i].id);
            b.log.clear();
            let mut j = i;
            let first = start;
            while j < b.events.len() && b.events[j].collection == collection && b.events[j].id == *id {
                let end = b.events[j].end;
                b.log.bulk(&b.event_bytes[start..end]);
                start = end;
                j += 1;
            }
            b.key.clear();
            self.keys.write_events(&mut b.key, collection, id);
            p.cmd_args(&[b"RPUSH", &b.key], &b.log);
            batch.weights.push(b.log.n as u64);
            // Market data (issue 13) and account events with
            // `max_account_events` (issue 15): a capped list keeps its
            // newest `cap` entries, trimmed in the same transaction.
            if let Some(cap) = b.events[i].cap {
                let start = format!("-{cap}");
                p.cmd(&[b"LTRIM", &b.key, start.as_bytes(), b"-1"]);
                batch.weights.push(0);
            }
            if b.events[i].publish {
                streams.publish(p, &self.keys, &b.events[i..j], &b.event_bytes, first);
                batch.weights.extend(std::iter::repeat_n(0, j - i));
            }
            i = j;
        }
        streams.trim(p, &self.cfg, &self.keys, now_ms, &mut batch.weights);
        if let Some(cmd) = heartbeat {
            p.buf.extend_from_slice(&cmd);
            p.commands += 1;
            batch.weights.push(0);
        }
        batch.tx = std::mem::take(&mut p.buf);
        Some(batch)
    }

    /// The connection changed since `held` was built: the index commands
    /// it skipped may be missing (a restarted server), so add them inside
    /// the transaction, right after `MULTI`.
    fn reindex_held(&mut self) {
        let Some(batch) = self.held.as_mut() else { return };
        batch.generation = self.generation;
        if batch.unindexed.is_empty() {
            return;
        }
        let b = &mut self.bufs;
        let p = &mut self.packer;
        p.clear();
        p.cmd(&[b"MULTI"]);
        let multi_len = p.buf.len();
        let mut weights =
            index::pack_reindex(p, &self.keys, &batch.unindexed, &mut b.sadd, &mut b.state, &mut b.key);
        p.buf.extend_from_slice(&batch.tx[multi_len..]);
        weights.extend_from_slice(&batch.weights);
        batch.tx = std::mem::take(&mut p.buf);
        batch.weights = weights;
        batch.unindexed.clear();
    }

    /// The index sets may have changed under us (a reconnect: a restarted
    /// server; a `clear`): forget what is known to be indexed, and make
    /// batches already built, none of them queued on a connection, add back
    /// the entries they skipped.
    fn forget_index(&mut self) {
        self.indexed.clear();
        self.generation += 1;
    }

    /// Writes the held batch and, while Redis executes it, encodes the next
    /// one and queues it behind: `MULTI` and its commands are sent, but its
    /// `EXEC` only once the held batch is confirmed (`DISCARD` if it is
    /// not). Redis never waits for the flusher to encode, and batches still
    /// apply strictly in order, each whole or not at all. With
    /// `replica_wait` nothing is queued behind a batch.
    fn write_held(&mut self) {
        let Some(batch) = self.held.as_ref() else { return };
        if batch.in_doubt {
            if let Err(f) = self.resolve() {
                self.fail(f);
                return;
            }
            if self.held.as_ref().is_none_or(|b| b.in_doubt) {
                return;
            }
        }
        if !self.watching {
            if let Err(f) = self.watch() {
                self.fail(f);
                return;
            }
        }
        // `close`: nothing is sent once its deadline has passed.
        if self.past_deadline() {
            return;
        }
        let start = Instant::now();
        let outcome = match self.send_exec() {
            Err(f) => Outcome::InDoubt(f),
            Ok(()) => match self.queue_next() {
                // The held batch went out: applied or not, unknown.
                Err(f) => Outcome::InDoubt(f),
                Ok(()) => self.read_result(),
            },
        };
        match outcome {
            Outcome::Applied(after) => {
                self.shared.record_batch_latency(start.elapsed());
                self.ack();
                if let Some(f) = after {
                    self.fail(f);
                } else if let Some(f) = self.read_held_head() {
                    self.fail(f);
                }
            }
            Outcome::NotApplied(f) => {
                self.unqueue_next();
                self.fail(f)
            }
            Outcome::Aborted => {
                self.unqueue_next();
                if let Some(b) = self.held.as_mut() {
                    b.in_doubt = true;
                }
                log::info!("tradecache: the commit marker changed under a batch; resolving it by the marker");
                self.retry_at = Some(net::deadline_after(self.backoff.next_delay()));
            }
            Outcome::InDoubt(f) => {
                if let Some(b) = self.held.as_mut() {
                    b.in_doubt = true;
                }
                // Whatever the error, this connection's state is unknown.
                self.fail(f.unsettled())
            }
        }
    }

    /// Sends what the held batch still needs to be applied: its whole
    /// transaction, or only `EXEC` when it is already queued, or only the
    /// replica `WAIT` once applied; then `WATCH` and `GET` of the marker,
    /// which arm the guard for the next transaction.
    fn send_exec(&mut self) -> Result<(), Failure> {
        if self.held.as_ref().is_some_and(|b| !b.applied && b.generation != self.generation) {
            self.reindex_held();
        }
        let wait = self.cfg.replica_wait;
        let (Some(batch), Some(conn)) = (self.held.as_mut(), self.conn.as_mut()) else {
            return Err(not_connected());
        };
        let p = &mut self.packer;
        p.clear();
        if !batch.applied {
            p.cmd(&[b"EXEC"]);
        }
        push_wait(p, wait);
        p.cmd(&[b"WATCH", &self.marker_key]);
        p.cmd(&[b"GET", &self.marker_key]);
        // `EXEC` unwatches every key; `read_result` re-arms.
        self.watching = false;
        let sent = if batch.applied || batch.stage == Stage::Queued {
            conn.con.send_packed_command(&p.buf)
        } else {
            // One write: the transaction with EXEC (and WAIT) behind it.
            let head = batch.tx.len();
            batch.tx.extend_from_slice(&p.buf);
            let r = conn.con.send_packed_command(&batch.tx);
            batch.tx.truncate(head);
            r
        };
        sent.map_err(|e| net::Failure::of(&e, &conn.addr))
    }

    /// Builds the next batch from what is pending and sends its `MULTI` and
    /// commands, without `EXEC`.
    fn queue_next(&mut self) -> Result<(), Failure> {
        if self.cfg.replica_wait.is_some() || self.held.as_ref().is_some_and(|b| b.applied) {
            return Ok(());
        }
        if !self.purges.is_empty() {
            // A purge step goes between this batch and the next.
            return Ok(());
        }
        if self.next.is_none() {
            self.drain();
            self.next = self.build();
        }
        let (Some(next), Some(conn)) = (self.next.as_mut(), self.conn.as_mut()) else { return Ok(()) };
        if next.stage != Stage::Built || next.generation != self.generation {
            // Not built for this connection: it goes the plain way, once it
            // is the held batch (`send_exec` re-adds its index entries).
            return Ok(());
        }
        conn.con.send_packed_command(&next.tx).map_err(|e| net::Failure::of(&e, &conn.addr))?;
        next.stage = Stage::Queued;
        next.queued_error = None;
        Ok(())
    }

    /// Reads the replies to what `send_exec` sent, stopping at the first I/O
    /// error.
    fn read_result(&mut self) -> Outcome {
        let (Some(batch), Some(conn)) = (self.held.as_mut(), self.conn.as_mut()) else {
            return Outcome::InDoubt(not_connected());
        };
        let addr = conn.addr.clone();
        // What `EXEC` did: `None` while only the WAIT was outstanding.
        let mut refused: Option<Failure> = None;
        let mut aborted = false;
        if !batch.applied {
            if batch.stage == Stage::Built {
                // The transaction's own replies: OK, QUEUED… (or errors).
                for _ in 0..batch.head_replies() {
                    match conn.con.recv_response() {
                        Ok(v) => {
                            if batch.queued_error.is_none() {
                                batch.queued_error = reply_error(&v);
                            }
                        }
                        Err(e) => return Outcome::InDoubt(net::Failure::of(&e, &addr)),
                    }
                }
            }
            let exec = match conn.con.recv_response() {
                Ok(v) => v,
                Err(e) => return Outcome::InDoubt(net::Failure::of(&e, &addr)),
            };
            match exec {
                Value::Array(results) => {
                    // The batch applied, but a command in it failed (a key
                    // of the wrong type, say): the writes it carried are
                    // dropped. Which writes is not tracked per command, so
                    // they are recorded at the batch's first sequence
                    // number, where `wait` on any write of the batch sees
                    // them; the key is read back from the transaction.
                    for (i, (r, weight)) in results.iter().zip(&batch.weights).enumerate() {
                        if let Some((code, text)) = reply_error(r) {
                            let class = net::Cause::of_code(&code).class();
                            // Reply i answers command i + 1 (after MULTI).
                            let key = net::command_key(&batch.tx, i + 1).map_or_else(
                                || format!("batch {}", batch.no),
                                |k| String::from_utf8_lossy(k).into_owned(),
                            );
                            let detail = format!("refused inside batch {}: {text}", batch.no);
                            self.shared.record_drop(batch.first_seq, *weight, key, class, detail);
                        }
                    }
                    self.shared.written.fetch_add(results.len() as u64, Relaxed);
                    batch.applied = true;
                }
                // The WATCH on the marker fired.
                Value::Nil => {
                    batch.stage = Stage::Built;
                    aborted = true;
                }
                other => {
                    let (code, text) =
                        batch.queued_error.take().or_else(|| reply_error(&other)).unwrap_or_else(|| {
                            ("EXECABORT".into(), format!("unexpected EXEC reply {other:?}"))
                        });
                    batch.stage = Stage::Built;
                    refused = Some(Failure::new(net::Cause::of_exec_error(&code, &text), addr.clone(), text));
                }
            }
        }
        if let Some((n, _)) = self.cfg.replica_wait {
            let got = match conn.con.recv_response() {
                Ok(Value::Int(k)) => k,
                Ok(_) => 0,
                Err(e) => {
                    return match refused {
                        // Not applied whatever happened after.
                        Some(f) => Outcome::NotApplied(f.unsettled()),
                        None if aborted => Outcome::InDoubt(net::Failure::of(&e, &addr)),
                        None => Outcome::InDoubt(net::Failure::of(&e, &addr)),
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
        let applied = batch.applied && refused.is_none();
        let watch = self.read_watch();
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

    /// Reads the replies to `WATCH` and `GET` of the marker sent behind an
    /// `EXEC`: re-arms the guard, or finds this writer fenced.
    fn read_watch(&mut self) -> Result<(), Failure> {
        let Some(conn) = self.conn.as_mut() else { return Err(not_connected()) };
        let mut replies = [Value::Nil, Value::Nil];
        for r in &mut replies {
            *r = conn.con.recv_response().map_err(|e| net::Failure::of(&e, &conn.addr))?;
        }
        self.check_marker(&replies)
    }

    /// One round trip: `WATCH` and `GET` of the marker; what it holds.
    fn watch(&mut self) -> Result<marker::Read, Failure> {
        let Some(conn) = self.conn.as_mut() else { return Err(not_connected()) };
        let p = &mut self.packer;
        p.clear();
        p.cmd(&[b"WATCH", &self.marker_key]);
        p.cmd(&[b"GET", &self.marker_key]);
        conn.con.send_packed_command(&p.buf).map_err(|e| net::Failure::of(&e, &conn.addr))?;
        let mut replies = [Value::Nil, Value::Nil];
        for r in &mut replies {
            *r = conn.con.recv_response().map_err(|e| net::Failure::of(&e, &conn.addr))?;
        }
        self.check_marker(&replies)?;
        Ok(marker::Read::from_reply(&replies[1]))
    }

    /// Judges the replies to `WATCH` and `GET` of the marker.
    fn check_marker(&mut self, replies: &[Value; 2]) -> Result<(), Failure> {
        let addr = self.conn.as_ref().map_or_else(String::new, |c| c.addr.clone());
        if let Some((code, text)) = reply_error(&replies[0]) {
            let text = format!("WATCH of the commit marker: {text}");
            return Err(Failure::new(net::Cause::of_code(&code), addr, text));
        }
        let read = marker::Read::from_reply(&replies[1]);
        if let Value::ServerError(e) = &replies[1] {
            let text = format!("reading the commit marker: {e}");
            return Err(Failure::new(net::Cause::of_code(e.code()), addr, text));
        }
        if read.fences(self.epoch) {
            let text = format!(
                "writer {} was fenced: another Cache opened as this writer (the marker shows {}; \
                 this writer is epoch {})",
                String::from_utf8_lossy(&self.marker_key),
                read.describe(),
                self.epoch
            );
            return Err(Failure::new(net::Cause::Fenced, addr, text));
        }
        if read == marker::Read::Missing {
            // Someone deleted the marker (FLUSHDB, an operator): the index
            // sets may be gone too. (Batches already built keep what they
            // skipped: one may be queued on the server already.)
            self.indexed.clear();
        }
        self.watching = true;
        Ok(())
    }

    /// After the held batch was acknowledged (and `ack` made the next one
    /// the held one): reads the replies to its `MULTI` and commands, if it
    /// was queued. An I/O error here leaves it unapplied (its `EXEC` was
    /// never sent, and the dropped connection discards it).
    fn read_held_head(&mut self) -> Option<Failure> {
        let batch = self.held.as_mut()?;
        if batch.stage != Stage::Queued {
            return None;
        }
        let conn = self.conn.as_mut()?;
        for _ in 0..batch.head_replies() {
            match conn.con.recv_response() {
                Ok(v) => {
                    if batch.queued_error.is_none() {
                        batch.queued_error = reply_error(&v);
                    }
                }
                Err(e) => {
                    batch.stage = Stage::Built;
                    return Some(net::Failure::of(&e, &conn.addr));
                }
            }
        }
        None
    }

    /// The held batch was not applied: throw away the batch queued behind
    /// it (`DISCARD`), so nothing applies out of order; it is sent again
    /// after the held one.
    fn unqueue_next(&mut self) {
        let Some(next) = self.next.as_mut() else { return };
        if next.stage != Stage::Queued {
            return;
        }
        next.stage = Stage::Built;
        let Some(conn) = self.conn.as_mut() else { return };
        let mut ok = true;
        for _ in 0..next.head_replies() {
            if conn.con.recv_response().is_err() {
                ok = false;
                break;
            }
        }
        ok = ok
            && conn.con.send_packed_command(b"*1\r\n$7\r\nDISCARD\r\n").is_ok()
            && conn.con.recv_response().is_ok();
        // `DISCARD` unwatches too.
        self.watching = false;
        if !ok {
            // Unsure what the connection holds now: start afresh.
            self.drop_conn();
        }
    }

    /// After a reconnect (or an aborted `EXEC`): settles an in-doubt batch
    /// with the commit marker, under a fresh `WATCH`, so that a batch still
    /// on its way on a dropped connection cannot apply after the decision.
    fn resolve(&mut self) -> Result<(), Failure> {
        if let (Some(conn), Some((old, addr))) = (self.conn.as_mut(), self.dead_client.take()) {
            // Not needed for correctness (the WATCH aborts a late EXEC of
            // the old connection), but it frees the server of it. Only on
            // the server it was on, by id and client address together (a
            // restarted server reuses ids).
            if addr == conn.addr {
                log::debug!("tradecache: killing dropped connection {} ({}) on {addr}", old.id, old.addr);
                if let Err(e) = conn.query(&old.kill_cmd()) {
                    let f = net::Failure::of(&e, &conn.addr);
                    self.shared
                        .count_error(f.class(), format!("CLIENT KILL of the dropped connection: {}", f.text));
                }
            }
        }
        let read = self.watch()?;
        let Some(batch) = self.held.as_mut() else { return Ok(()) };
        batch.in_doubt = false;
        if read.applied_batch(self.epoch) < batch.no {
            batch.applied = false;
            self.shared.replays.fetch_add(1, Relaxed);
            return Ok(());
        }
        self.check_refused()?;
        if self.cfg.replica_wait.is_some() {
            // This connection has written nothing yet, so a bare WAIT
            // would return at once: write the marker again, behind the
            // batch in the replication stream, and WAIT for that.
            self.touch_marker(&read)?;
        } else {
            self.ack();
        }
        Ok(())
    }

    /// Rewrites the marker with what it holds (a write for `WAIT` to
    /// cover), guarded by the `WATCH`; re-arms it. The held batch then
    /// waits for its replicas.
    fn touch_marker(&mut self, read: &marker::Read) -> Result<(), Failure> {
        let marker::Read::Valid(m) = read else { return Ok(()) };
        let Some(conn) = self.conn.as_mut() else { return Err(not_connected()) };
        let p = &mut self.packer;
        p.clear();
        p.cmd(&[b"MULTI"]);
        p.cmd(&[b"MSET", &self.marker_key, m.format().as_bytes()]);
        p.cmd(&[b"EXEC"]);
        p.cmd(&[b"WATCH", &self.marker_key]);
        p.cmd(&[b"GET", &self.marker_key]);
        self.watching = false;
        conn.con.send_packed_command(&p.buf).map_err(|e| net::Failure::of(&e, &conn.addr))?;
        let mut replies = [Value::Nil, Value::Nil, Value::Nil, Value::Nil, Value::Nil];
        for r in &mut replies {
            *r = conn.con.recv_response().map_err(|e| net::Failure::of(&e, &conn.addr))?;
        }
        let [_, _, exec, watch, get] = replies;
        self.check_marker(&[watch, get])?;
        let Some(batch) = self.held.as_mut() else { return Ok(()) };
        match exec {
            Value::Array(_) => batch.applied = true,
            // The marker moved again: decide again.
            _ => batch.in_doubt = true,
        }
        Ok(())
    }

    /// A batch settled as applied by the marker: its `EXEC` reply, with the
    /// result of each command, was lost. The only commands of a batch that
    /// Redis can refuse once queued are those on a key of the wrong type
    /// (`SADD`/`SREM` on an index, `RPUSH` on a log): ask for those keys'
    /// types and record the writes of each command that must have failed.
    fn check_refused(&mut self) -> Result<(), Failure> {
        let (Some(batch), Some(conn)) = (self.held.as_ref(), self.conn.as_mut()) else { return Ok(()) };
        let mut checks = Vec::new();
        let p = &mut self.packer;
        p.clear();
        for (i, weight) in batch.weights.iter().enumerate() {
            let Some((name, key)) = net::command_name_key(&batch.tx, i + 1) else { continue };
            let expected = match name {
                b"SADD" | b"SREM" => "set",
                b"ZADD" | b"ZREM" => "zset",
                b"RPUSH" => "list",
                b"XADD" => "stream",
                _ => continue,
            };
            p.cmd(&[b"TYPE", key]);
            checks.push((key.to_vec(), expected, *weight));
        }
        if checks.is_empty() {
            return Ok(());
        }
        conn.con.send_packed_command(&p.buf).map_err(|e| net::Failure::of(&e, &conn.addr))?;
        for (key, expected, weight) in checks {
            let reply = conn.con.recv_response().map_err(|e| net::Failure::of(&e, &conn.addr))?;
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
                self.shared.record_drop(batch.first_seq, weight, key, ErrorClass::Command, detail);
            }
        }
        Ok(())
    }

    fn ack(&mut self) {
        let Some(mut batch) = self.held.take() else { return };
        // Recycle the transaction's buffer for the next one.
        if batch.tx.capacity() > self.packer.buf.capacity() {
            batch.tx.clear();
            std::mem::swap(&mut self.packer.buf, &mut batch.tx);
        }
        self.backoff.reset();
        self.retry_at = None;
        if self.shared.backpressure.lock().take().is_some() {
            log::info!("tradecache: Redis accepts writes again");
        }
        self.shared.batches.fetch_add(1, Relaxed);
        self.purge_owed = true;
        self.publish_ack(batch.max_seq);
        // The batch queued or built behind it is next, before anything
        // still pending (however this one was settled: reply or marker).
        self.held = self.next.take();
    }

    fn publish_ack(&self, seq: u64) {
        // Last: a caller woken by this sees the health that goes with it.
        self.shared.acked_seq.store(seq, SeqCst);
        self.waiters.wake();
    }

    /// Executes a `clear` once everything before it is acknowledged: deletes
    /// this cache's keys (`clear.rs`) in guarded transactions, then
    /// acknowledges it.
    fn run_clear(&mut self) {
        if self.barrier.is_none() {
            return;
        }
        if !self.watching {
            if let Err(f) = self.watch() {
                self.fail(f);
                return;
            }
        }
        let Some(conn) = self.conn.as_mut() else { return };
        let mut fence = None;
        let marker_key = self.marker_key.clone();
        let epoch = self.epoch;
        let mut no = self.batch_no;
        let result = crate::clear::delete_own_keys(conn, &self.keys, &self.collections, |conn, keys| {
            no += 1;
            let r = guarded_unlink(conn, &marker_key, Marker { epoch, batch: no }, keys);
            if let Err(f) = &r {
                if f.action() == Action::Fence {
                    fence = Some(f.clone());
                }
            }
            r
        });
        self.batch_no = no;
        self.watching = fence.is_none() && result.is_ok();
        match result {
            Ok(n) => {
                self.forget_index();
                if let Some(b) = self.barrier.take() {
                    self.publish_ack(b.seq);
                    self.built_seq = b.seq;
                    let _ = b.reply.try_send(Ok(n));
                }
            }
            Err(f) => self.fail(fence.unwrap_or(f)),
        }
    }

    fn fail(&mut self, f: Failure) {
        if f.action() == Action::Fence {
            self.enter_fenced(f);
            return;
        }
        log::warn!("tradecache: {} ({}): {}", f.addr, f.class().name(), f.text);
        self.shared.count_error(f.class(), f.text.clone());
        match f.action() {
            Action::Reconnect => self.drop_conn(),
            Action::Backpressure => {
                *self.shared.backpressure.lock() = Some(format!("{}: {}", f.class().name(), f.text));
            }
            Action::WaitRetry | Action::Drop | Action::Fence => {}
        }
        self.retry_at = Some(net::deadline_after(self.backoff.next_delay()));
    }

    /// Another writer claimed the marker: stop for good. Nothing held or
    /// pending is written; callers learn it from `wait`, `flush`, `close`,
    /// their next write, and `health()`.
    fn enter_fenced(&mut self, f: Failure) {
        log::error!("tradecache: {}", f.text);
        self.shared.count_error(f.class(), f.text.clone());
        self.shared.set_fenced(String::from_utf8_lossy(&self.marker_key).into_owned(), f.text);
        self.held = None;
        self.next = None;
        self.pending.discard();
        if let Some(b) = self.barrier.take() {
            let _ = b.reply.try_send(Err(self.stopped_error()));
        }
        self.fenced = true;
        let _g = self.waiters.lock.lock();
        self.waiters.cv.notify_all();
    }

    fn drop_conn(&mut self) {
        if let Some(c) = self.conn.take() {
            self.dead_client = c.client.map(|id| (id, c.addr)).or(self.dead_client.take());
        }
        self.watching = false;
        // Whatever was queued on that connection is gone with it.
        for b in self.held.iter_mut().chain(self.next.iter_mut()) {
            b.stage = Stage::Built;
            b.queued_error = None;
        }
        self.shared.connected.store(false, Relaxed);
    }

    fn reconnect(&mut self) {
        let deadline = self.shutdown;
        match net::connect(&self.cfg, &String::from_utf8_lossy(&self.marker_key), deadline) {
            Ok(c) => {
                log::info!("tradecache: reconnected to {}", c.addr);
                self.server_bulk_limit = c.bulk_limit;
                self.conn = Some(c);
                self.watching = false;
                // A restarted server may have lost recent index entries.
                self.forget_index();
                self.shared.connected.store(true, Relaxed);
                self.shared.reconnects.fetch_add(1, Relaxed);
                if let Some(b) = self.held.as_mut() {
                    if b.applied {
                        // Only the replica WAIT was outstanding; after a
                        // failover the marker decides.
                        b.in_doubt = true;
                    }
                }
                self.retry_at = None;
            }
            Err(f) => {
                self.shared.count_error(f.class(), f.text.clone());
                if f.action() == Action::Backpressure {
                    *self.shared.backpressure.lock() = Some(format!("{}: {}", f.class().name(), f.text));
                }
                log::debug!("tradecache: reconnect to {} failed: {}", f.addr, f.text);
                self.retry_at = Some(net::deadline_after(self.backoff.next_delay()));
            }
        }
    }

    /// Sleeps a little while waiting to retry, bounded by the retry time and
    /// the shutdown deadline, so the channel keeps being drained.
    fn pause(&mut self) {
        net::pause(self.retry_at, self.shutdown);
    }
}

fn not_connected() -> Failure {
    Failure::not_connected()
}

/// `UNLINK` of some of this cache's keys, in a transaction the marker's
/// `WATCH` guards (a fenced writer deletes nothing) and that moves the
/// marker on (so a `load` running meanwhile sees that the state changed);
/// re-arms the guard.
fn guarded_unlink(
    conn: &mut Conn,
    marker_key: &[u8],
    marker: Marker,
    keys: &[Vec<u8>],
) -> Result<u64, Failure> {
    let epoch = marker.epoch;
    let mut p = Packer::default();
    p.cmd(&[b"MULTI"]);
    p.array(keys.len() + 1);
    p.bulk(b"UNLINK");
    for k in keys {
        p.bulk(k);
    }
    p.cmd(&[b"MSET", marker_key, marker.format().as_bytes()]);
    p.cmd(&[b"EXEC"]);
    p.cmd(&[b"WATCH", marker_key]);
    p.cmd(&[b"GET", marker_key]);
    let io = |e: redis::RedisError, addr: &str| net::Failure::of(&e, addr);
    conn.con.send_packed_command(&p.buf).map_err(|e| io(e, &conn.addr))?;
    let mut replies = Vec::with_capacity(6);
    for _ in 0..6 {
        replies.push(conn.con.recv_response().map_err(|e| io(e, &conn.addr))?);
    }
    let read = marker::Read::from_reply(&replies[5]);
    if read.fences(epoch) {
        let text = format!(
            "writer {} was fenced during clear (the marker shows {})",
            String::from_utf8_lossy(marker_key),
            read.describe()
        );
        return Err(Failure::new(net::Cause::Fenced, conn.addr.clone(), text));
    }
    match &replies[3] {
        Value::Array(r) => Ok(match r.first() {
            Some(Value::Int(n)) => *n as u64,
            _ => 0,
        }),
        // Aborted by the WATCH (the marker moved, but no newer writer):
        // nothing deleted; the scan goes on and finds these keys again.
        Value::Nil => Ok(0),
        other => {
            let (code, text) = reply_error(other)
                .unwrap_or_else(|| ("EXECABORT".into(), format!("unexpected reply {other:?}")));
            Err(net::Failure::new(
                net::Cause::of_exec_error(&code, &text),
                conn.addr.clone(),
                format!("clear: {text}"),
            ))
        }
    }
}

/// Why a value cannot be written, if it cannot: it did not encode, or it
/// is larger than `limit` (named `limit_name`).
fn drop_reason(
    r: Result<(), codec::EncodeError>,
    len: usize,
    limit: usize,
    limit_name: &str,
) -> Option<(ErrorClass, String)> {
    match r {
        Err(e) => Some((ErrorClass::Encode, format!("cannot encode the value: {e}"))),
        Ok(()) if len > limit => {
            Some((ErrorClass::TooLarge, format!("the value is {len} bytes; {limit_name} is {limit}")))
        }
        Ok(()) => None,
    }
}

fn push_wait(p: &mut Packer, wait: Option<(u32, Duration)>) {
    if let Some((n, t)) = wait {
        p.cmd(&[b"WAIT", n.to_string().as_bytes(), t.as_millis().to_string().as_bytes()]);
    }
}
