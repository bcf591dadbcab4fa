//! The flusher thread: drains the channel, coalesces, encodes, and writes
//! each batch as one `MULTI … EXEC` that also sets the writer's commit
//! marker. Owns the connection; callers never reach in here.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use redis::Value;

use crate::codec;
use crate::config::Config;
use crate::connection::{self, reply_error, Action, Args, Backoff, Conn, Failure, Packer};
use crate::entity::{EventRecord, Record};
use crate::error::CloseReport;
use crate::ident::Ident;
use crate::keys::Keys;
use crate::stats::{ErrorClass, Shared};
use crate::Msg;

/// Lets `wait`/`flush` sleep until `acked_seq` moves.
#[derive(Default)]
pub(crate) struct Waiters {
    pub(crate) count: std::sync::atomic::AtomicUsize,
    pub(crate) lock: parking_lot::Mutex<()>,
    pub(crate) cv: parking_lot::Condvar,
}

impl Waiters {
    pub(crate) fn wake(&self) {
        if self.count.load(SeqCst) > 0 {
            let _g = self.lock.lock();
            self.cv.notify_all();
        }
    }
}

type Key = (&'static str, Ident);

/// The hasher of the flusher's per-key maps: every write is hashed once on
/// arrival and once more when its batch is acknowledged, and SipHash showed
/// in throughput profiles. Multiply-rotate over 8-byte words with a
/// per-process random seed and a final avalanche; the keys are the
/// engine's own ids.
#[derive(Clone)]
struct FastState(u64);

impl Default for FastState {
    fn default() -> Self {
        use std::hash::BuildHasher;
        FastState(std::collections::hash_map::RandomState::new().hash_one(0x7261_6465_6361_6368u64))
    }
}

impl std::hash::BuildHasher for FastState {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.0)
    }
}

struct FastHasher(u64);

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, b: u8) {
        self.add(u64::from(b));
    }

    #[inline]
    fn finish(&self) -> u64 {
        // murmur3's fmix64: spreads the bits hashbrown takes its tags from.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

// Pending values are kept unboxed: boxing each would allocate per write.
#[allow(clippy::large_enum_variant)]
enum Snap {
    /// `seq`: the write whose value this is, named if it has to be dropped.
    Put {
        rec: Record,
        clear_events: bool,
        seq: u64,
    },
    Delete,
}

struct PendingEvent {
    collection: &'static str,
    id: Ident,
    rec: EventRecord,
    seq: u64,
}

/// Writes received but not yet packed into a batch, coalesced per key.
#[derive(Default)]
struct Pending {
    snaps: HashMap<Key, Snap, FastState>,
    events: Vec<PendingEvent>,
    max_seq: u64,
    msgs: usize,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.msgs == 0
    }
}

/// A packed transaction, kept until Redis confirms it.
struct Batch {
    no: u64,
    /// `MULTI` and the commands, packed once and sent as they are; `EXEC`
    /// (and `WAIT`) go after them (see `send_exec`).
    tx: Vec<u8>,
    /// How many writes each command between `MULTI` and `EXEC` carries, in
    /// order: what a command that fails inside the transaction drops.
    weights: Vec<u64>,
    /// Puts whose `SADD` to the index was skipped because the id was known
    /// to be indexed on the connection the batch was built for.
    unindexed: Vec<Key>,
    /// Index changes to remember once applied.
    indexed: Vec<Key>,
    removed: Vec<Key>,
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
    /// One log's events, for its `RPUSH`.
    events: Args,
    key: Vec<u8>,
    value: Vec<u8>,
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

enum Outcome {
    Applied,
    /// Definitely not applied (the transaction was aborted).
    NotApplied(Failure),
    /// The connection failed after the batch was (partly) sent.
    InDoubt(Failure),
}

pub(crate) struct Flusher {
    cfg: Config,
    keys: Keys,
    marker_key: Vec<u8>,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    waiters: Arc<Waiters>,
    done: Sender<CloseReport>,
    conn: Option<Conn>,
    generation: u64,
    /// The last dropped connection, and the server (`host:port`) it was on.
    dead_client: Option<(connection::ClientIdentity, String)>,
    pending: Pending,
    /// The batch being written: the oldest not yet acknowledged.
    held: Option<Batch>,
    /// The batch after it, queued on the server behind it (see `write_held`).
    next: Option<Batch>,
    batch_no: u64,
    received_seq: u64,
    backoff: Backoff,
    retry_at: Option<Instant>,
    shutdown: Option<Instant>,
    indexed: HashSet<Key, FastState>,
    packer: Packer,
    bufs: Bufs,
}

pub(crate) struct FlusherInit {
    pub(crate) cfg: Config,
    pub(crate) keys: Keys,
    pub(crate) rx: Receiver<Msg>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) waiters: Arc<Waiters>,
    pub(crate) done: Sender<CloseReport>,
    pub(crate) conn: Conn,
    pub(crate) batch_no: u64,
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
        let backoff = Backoff::new(init.cfg.reconnect_backoff_min, init.cfg.reconnect_backoff_max);
        codec::set_timestamps_as_iso8601(false);
        init.shared.connected.store(true, Relaxed);
        init.shared.flusher_alive.store(true, SeqCst);
        Flusher {
            marker_key,
            backoff,
            keys: init.keys,
            rx: init.rx,
            shared: init.shared,
            waiters: init.waiters,
            done: init.done,
            conn: Some(init.conn),
            generation: 0,
            dead_client: None,
            pending: Pending::default(),
            held: None,
            next: None,
            batch_no: init.batch_no,
            received_seq: 0,
            retry_at: None,
            shutdown: None,
            indexed: HashSet::default(),
            packer: Packer::default(),
            bufs: Bufs::default(),
            cfg: init.cfg,
        }
    }

    pub(crate) fn run(mut self) {
        let _alive = AliveGuard(self.shared.clone(), self.waiters.clone());
        codec::set_timestamps_as_iso8601(
            self.cfg.timestamps_as_iso8601 && self.cfg.encoding == crate::Encoding::Json,
        );
        loop {
            self.check_stop();
            // (`next` is only ever set while `held` is: `ack` promotes it.)
            if self.pending.is_empty() && self.held.is_none() {
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
                    Some(msg) => self.absorb(msg),
                    None => self.begin_shutdown(connection::deadline_after(self.cfg.close_timeout)),
                }
                continue;
            }
            if let Some(deadline) = self.shutdown {
                if Instant::now() >= deadline {
                    break;
                }
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
        let _ = self.done.try_send(report);
    }

    /// `close`/`Drop` leave their deadline in `Shared` as well as sending
    /// `Shutdown`: when Redis is down and the flusher holds
    /// `max_pending_events`, it stops draining, the channel fills, and the
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
        }
    }

    /// Waits for the first message of a batch: polls with a short sleep
    /// so a producer's push does not have to wake a parked thread, and
    /// parks only after being idle for `idle_park_after`.
    fn wait_first(&mut self) -> Option<Msg> {
        let idle_since = Instant::now();
        loop {
            match self.rx.try_recv() {
                Ok(m) => return Some(m),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            if idle_since.elapsed() < self.cfg.idle_park_after {
                std::thread::sleep(self.cfg.idle_poll);
            } else {
                match self.rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(m) => return Some(m),
                    Err(RecvTimeoutError::Disconnected) => return None,
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
        }
    }

    /// Moves queued messages into `pending`: up to a batch while writing,
    /// more while Redis is away or refusing (coalescing keeps that one value
    /// per key), but never more than `max_pending_events` events, so that an
    /// outage fills the channel and callers are told.
    fn drain(&mut self) {
        let writing = self.conn.is_some() && self.retry_at.is_none();
        let limit = if writing { self.cfg.max_batch } else { usize::MAX };
        while self.pending.msgs < limit && self.pending.events.len() < self.cfg.max_pending_events {
            match self.rx.try_recv() {
                Ok(m) => self.absorb(m),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.begin_shutdown(connection::deadline_after(self.cfg.close_timeout));
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
        let until = connection::deadline_after(self.cfg.buffer_interval);
        while self.pending.msgs < self.cfg.max_batch && Instant::now() < until {
            self.drain();
            std::thread::sleep(self.cfg.idle_poll.min(until.saturating_duration_since(Instant::now())));
        }
    }

    fn absorb(&mut self, msg: Msg) {
        let seq = match msg {
            Msg::Put { seq, rec } => {
                use std::collections::hash_map::Entry;
                let key = (rec.collection(), Ident::new_unchecked(rec.id()));
                match self.pending.snaps.entry(key) {
                    Entry::Vacant(e) => {
                        e.insert(Snap::Put { rec, clear_events: false, seq });
                    }
                    Entry::Occupied(mut e) => {
                        self.shared.coalesced.fetch_add(1, Relaxed);
                        // A put after a delete restarts the event log.
                        let clear_events = match e.get() {
                            Snap::Put { clear_events, .. } => *clear_events,
                            Snap::Delete => true,
                        };
                        e.insert(Snap::Put { rec, clear_events, seq });
                    }
                }
                seq
            }
            Msg::Delete { seq, collection, id } => {
                let before = self.pending.events.len();
                self.pending.events.retain(|e| !(e.collection == collection && e.id == id));
                let superseded = (before - self.pending.events.len()) as u64
                    + u64::from(self.pending.snaps.contains_key(&(collection, id.clone())));
                self.shared.coalesced.fetch_add(superseded, Relaxed);
                self.pending.snaps.insert((collection, id), Snap::Delete);
                seq
            }
            Msg::Append { seq, collection, id, rec } => {
                self.pending.events.push(PendingEvent { collection, id, rec, seq });
                seq
            }
            Msg::Shutdown { deadline } => {
                self.begin_shutdown(deadline);
                return;
            }
        };
        self.pending.msgs += 1;
        self.pending.max_seq = seq;
        self.received_seq = seq;
    }

    /// Encodes `pending` into one transaction: `MULTI`, one `MSET` of
    /// every snapshot and the commit marker, one `DEL` of deleted keys and
    /// restarted logs, one `SADD`/`SREM` per index, one `RPUSH` per run of
    /// appends to the same log (in order); `EXEC` is sent separately.
    /// Snapshots come before events, so a log restarted by a put gets the
    /// events that followed it.
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
            indexed: Vec::new(),
            removed: Vec::new(),
            max_seq: self.pending.max_seq,
            generation: self.generation,
            in_doubt: false,
            applied: false,
            stage: Stage::Built,
            queued_error: None,
        };
        let enc = self.cfg.encoding;
        let b = &mut self.bufs;
        b.mset.clear();
        b.del.clear();
        b.puts = 0;
        b.deletes = 0;
        b.sadd.iter_mut().chain(b.srem.iter_mut()).for_each(|(_, a)| a.clear());
        let mut snaps = std::mem::take(&mut self.pending.snaps);
        for (key, snap) in snaps.drain() {
            let (collection, id) = &key;
            match snap {
                Snap::Put { rec, clear_events, seq } => {
                    b.value.clear();
                    let r = rec.encode(enc, &mut b.value);
                    if !encode_ok(&self.cfg, &self.shared, r, b.value.len(), seq, || {
                        self.keys.entity(collection, id)
                    }) {
                        continue;
                    }
                    b.key.clear();
                    self.keys.write_entity(&mut b.key, collection, id);
                    b.mset.bulk(&b.key);
                    b.mset.bulk(&b.value);
                    b.puts += 1;
                    if clear_events {
                        b.key.extend_from_slice(b":events");
                        b.del.bulk(&b.key);
                    }
                    if self.indexed.contains(&key) {
                        batch.unindexed.push(key);
                    } else {
                        members(&mut b.sadd, collection).bulk(id.as_bytes());
                        batch.indexed.push(key);
                    }
                }
                Snap::Delete => {
                    b.key.clear();
                    self.keys.write_entity(&mut b.key, collection, id);
                    b.del.bulk(&b.key);
                    b.key.extend_from_slice(b":events");
                    b.del.bulk(&b.key);
                    b.deletes += 1;
                    members(&mut b.srem, collection).bulk(id.as_bytes());
                    batch.removed.push(key);
                }
            }
        }
        self.pending.snaps = snaps; // keeps its capacity for the next batch

        let p = &mut self.packer;
        p.clear();
        p.cmd(&[b"MULTI"]);
        let no = batch.no.to_string();
        b.mset.bulk(&self.marker_key);
        b.mset.bulk(no.as_bytes());
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
        // Events in order; consecutive appends to one log share an RPUSH.
        let events = std::mem::take(&mut self.pending.events);
        let mut i = 0;
        while i < events.len() {
            let (collection, id) = (events[i].collection, &events[i].id);
            b.events.clear();
            let mut j = i;
            while j < events.len() && events[j].collection == collection && events[j].id == *id {
                b.value.clear();
                let r = events[j].rec.encode(enc, &mut b.value);
                if encode_ok(&self.cfg, &self.shared, r, b.value.len(), events[j].seq, || {
                    self.keys.events(collection, id)
                }) {
                    b.events.bulk(&b.value);
                }
                j += 1;
            }
            if !b.events.is_empty() {
                b.key.clear();
                self.keys.write_events(&mut b.key, collection, id);
                p.cmd_args(&[b"RPUSH", &b.key], &b.events);
                batch.weights.push(b.events.n as u64);
                // Market data (issue 13): a capped list keeps its newest
                // `cap` entries, trimmed in the same transaction.
                if let Some(cap) = events[i].rec.cap(&self.cfg) {
                    use std::io::Write as _;
                    let mut start = [0u8; 24];
                    let mut w = &mut start[..];
                    let _ = write!(w, "-{cap}");
                    let len = 24 - w.len();
                    p.cmd(&[b"LTRIM", &b.key, &start[..len], b"-1"]);
                    batch.weights.push(0);
                }
            }
            i = j;
        }
        self.pending.events = events;
        self.pending.events.clear();
        self.pending.msgs = 0;
        batch.tx = std::mem::take(&mut p.buf);
        Some(batch)
    }

    /// The connection changed since `held` was built: the `SADD`s it
    /// skipped may be missing (a restarted server), so add them inside the
    /// transaction, right after `MULTI`.
    fn reindex_held(&mut self) {
        let Some(batch) = self.held.as_mut() else { return };
        batch.generation = self.generation;
        if batch.unindexed.is_empty() {
            return;
        }
        let b = &mut self.bufs;
        b.sadd.iter_mut().for_each(|(_, a)| a.clear());
        for (collection, id) in &batch.unindexed {
            members(&mut b.sadd, collection).bulk(id.as_bytes());
        }
        let p = &mut self.packer;
        p.clear();
        p.cmd(&[b"MULTI"]);
        let multi_len = p.buf.len();
        let mut weights = Vec::new();
        for (collection, ids) in b.sadd.iter().filter(|(_, a)| !a.is_empty()) {
            b.key.clear();
            self.keys.write_index(&mut b.key, collection);
            p.cmd_args(&[b"SADD", &b.key], ids);
            weights.push(ids.n as u64);
        }
        p.buf.extend_from_slice(&batch.tx[multi_len..]);
        weights.extend_from_slice(&batch.weights);
        batch.tx = std::mem::take(&mut p.buf);
        batch.weights = weights;
        batch.indexed.append(&mut batch.unindexed);
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
            match self.resolve() {
                Ok(true) => {} // settled (acked) or ready to resend
                Ok(false) => return,
                Err(f) => {
                    self.fail(f);
                    return;
                }
            }
            if self.held.is_none() {
                return;
            }
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
            Outcome::Applied => {
                self.shared.record_batch_latency(start.elapsed());
                self.ack();
                if let Some(f) = self.read_held_head() {
                    self.fail(f);
                }
            }
            Outcome::NotApplied(f) => {
                self.unqueue_next();
                self.fail(f)
            }
            Outcome::InDoubt(f) => {
                if let Some(b) = self.held.as_mut() {
                    b.in_doubt = true;
                }
                // Whatever the error, this connection's state is unknown.
                self.fail(Failure { action: Action::Reconnect, ..f })
            }
        }
    }

    /// Sends what the held batch still needs to be applied: its whole
    /// transaction, or only `EXEC` when it is already queued, or only the
    /// replica `WAIT` once applied.
    fn send_exec(&mut self) -> Result<(), Failure> {
        if self.held.as_ref().is_some_and(|b| !b.applied && b.generation != self.generation) {
            self.reindex_held();
        }
        let wait = self.cfg.replica_wait;
        let batch = self.held.as_mut().expect("held batch");
        let conn = self.conn.as_mut().expect("connected");
        let p = &mut self.packer;
        p.clear();
        let sent = if batch.applied {
            push_wait(p, wait);
            conn.con.send_packed_command(&p.buf)
        } else {
            p.cmd(&[b"EXEC"]);
            push_wait(p, wait);
            match batch.stage {
                Stage::Queued => conn.con.send_packed_command(&p.buf),
                Stage::Built => {
                    // One write: the transaction with EXEC (and WAIT) behind it.
                    let head = batch.tx.len();
                    batch.tx.extend_from_slice(&p.buf);
                    let r = conn.con.send_packed_command(&batch.tx);
                    batch.tx.truncate(head);
                    r
                }
            }
        };
        sent.map_err(|e| connection::failure(&e, &conn.addr))
    }

    /// Builds the next batch from what is pending and sends its `MULTI` and
    /// commands, without `EXEC`.
    fn queue_next(&mut self) -> Result<(), Failure> {
        if self.cfg.replica_wait.is_some() || self.held.as_ref().is_some_and(|b| b.applied) {
            return Ok(());
        }
        if self.next.is_none() {
            self.drain();
            self.next = self.build();
        }
        let Some(next) = self.next.as_mut() else { return Ok(()) };
        if next.stage != Stage::Built || next.generation != self.generation {
            // Not built for this connection: it goes the plain way, once it
            // is the held batch (`send_exec` re-adds its index entries).
            return Ok(());
        }
        let conn = self.conn.as_mut().expect("connected");
        conn.con.send_packed_command(&next.tx).map_err(|e| connection::failure(&e, &conn.addr))?;
        next.stage = Stage::Queued;
        next.queued_error = None;
        Ok(())
    }

    /// Reads the replies to what `send_exec` sent, stopping at the first I/O
    /// error.
    fn read_result(&mut self) -> Outcome {
        let batch = self.held.as_mut().expect("held batch");
        let conn = self.conn.as_mut().expect("connected");
        let addr = conn.addr.clone();
        let wait_only = batch.applied;
        if !wait_only {
            if batch.stage == Stage::Built {
                // The transaction's own replies: OK, QUEUED… (or errors).
                for _ in 0..batch.head_replies() {
                    match conn.con.recv_response() {
                        Ok(v) => {
                            if batch.queued_error.is_none() {
                                batch.queued_error = reply_error(&v);
                            }
                        }
                        Err(e) => return Outcome::InDoubt(connection::failure(&e, &addr)),
                    }
                }
            }
            let exec = match conn.con.recv_response() {
                Ok(v) => v,
                Err(e) => return Outcome::InDoubt(connection::failure(&e, &addr)),
            };
            match exec {
                Value::Array(results) => {
                    // The batch applied, but a command in it failed (a key
                    // of the wrong type, say): the writes it carried are
                    // dropped. Which writes is not tracked per command, so
                    // they are recorded at the batch's first sequence
                    // number, where `wait` on any write of the batch sees
                    // them; the key is read back from the transaction.
                    let first_seq = self.shared.acked_seq.load(SeqCst) + 1;
                    for (i, (r, weight)) in results.iter().zip(&batch.weights).enumerate() {
                        if let Some((code, text)) = reply_error(r) {
                            let (class, _) = connection::classify_code(&code);
                            // Reply i answers command i + 1 (after MULTI).
                            let key = connection::command_key(&batch.tx, i + 1).map_or_else(
                                || format!("batch {}", batch.no),
                                |k| String::from_utf8_lossy(k).into_owned(),
                            );
                            let detail = format!("refused inside batch {}: {text}", batch.no);
                            self.shared.record_drop(first_seq, *weight, key, class, detail);
                        }
                    }
                    self.shared.written.fetch_add(results.len() as u64, Relaxed);
                    batch.applied = true;
                }
                other => {
                    let (code, text) =
                        batch.queued_error.take().or_else(|| reply_error(&other)).unwrap_or_else(|| {
                            ("EXECABORT".into(), format!("unexpected EXEC reply {other:?}"))
                        });
                    batch.stage = Stage::Built;
                    let (class, mut action) = connection::classify_code(&code);
                    // The `WAIT` sent behind the `EXEC` still answers: read
                    // it, or the next reply read would be taken for it.
                    if self.cfg.replica_wait.is_some() && conn.con.recv_response().is_err() {
                        action = Action::Reconnect;
                    }
                    return Outcome::NotApplied(Failure { class, action, addr, text });
                }
            }
        }
        if let Some((n, _)) = self.cfg.replica_wait {
            let got = match conn.con.recv_response() {
                Ok(Value::Int(k)) => k,
                Ok(_) => 0,
                Err(e) => return Outcome::InDoubt(connection::failure(&e, &addr)),
            };
            if got < i64::from(n) {
                // Classified like Redis's own NOREPLICAS.
                let (class, action) = connection::classify_code("NOREPLICAS");
                return Outcome::NotApplied(Failure {
                    class,
                    action,
                    addr,
                    text: format!("only {got} of {n} replica(s) acknowledged the batch"),
                });
            }
        }
        Outcome::Applied
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
        let conn = self.conn.as_mut().expect("connected");
        for _ in 0..batch.head_replies() {
            match conn.con.recv_response() {
                Ok(v) => {
                    if batch.queued_error.is_none() {
                        batch.queued_error = reply_error(&v);
                    }
                }
                Err(e) => {
                    batch.stage = Stage::Built;
                    return Some(connection::failure(&e, &conn.addr));
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
        if !ok {
            // Unsure what the connection holds now: start afresh.
            self.drop_conn();
        }
    }

    /// After a reconnect: settles an in-doubt batch with the commit marker.
    /// Returns `Ok(true)` when the batch was acked or must be resent.
    fn resolve(&mut self) -> Result<bool, Failure> {
        let conn = self.conn.as_mut().expect("connected");
        // Make sure the dropped connection can no longer apply the batch
        // behind our back (its bytes may still sit in the server's socket).
        // Only on the server it was on (after a failover or a `MOVED` it
        // names nobody), and by id and client address together (a
        // restarted server reuses ids).
        if let Some((old, addr)) = self.dead_client.take().filter(|(_, addr)| *addr == conn.addr) {
            log::debug!("tradecache: killing dropped connection {} ({}) on {addr}", old.id, old.addr);
            let _ = conn.query(&old.kill_cmd());
        }
        let marker = conn
            .query(redis::cmd("GET").arg(&self.marker_key[..]))
            .map_err(|e| connection::failure(&e, &conn.addr))?;
        let applied_no: u64 = match marker {
            Value::BulkString(b) => std::str::from_utf8(&b).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
            _ => 0,
        };
        let batch = self.held.as_mut().expect("held batch");
        batch.in_doubt = false;
        if applied_no >= batch.no {
            batch.applied = true;
            if self.cfg.replica_wait.is_none() {
                self.ack();
            }
        } else {
            batch.applied = false;
            self.shared.replays.fetch_add(1, Relaxed);
        }
        Ok(true)
    }

    fn ack(&mut self) {
        let Some(mut batch) = self.held.take() else { return };
        // `unindexed` ids are in `indexed` already (a reconnect clears
        // both: see `reindex_held`).
        for k in batch.indexed.drain(..) {
            self.indexed.insert(k);
        }
        // Recycle the transaction's buffer for the next one.
        if batch.tx.capacity() > self.packer.buf.capacity() {
            batch.tx.clear();
            std::mem::swap(&mut self.packer.buf, &mut batch.tx);
        }
        for k in &batch.removed {
            self.indexed.remove(k);
        }
        self.backoff.reset();
        self.retry_at = None;
        if self.shared.backpressure.lock().take().is_some() {
            log::info!("tradecache: Redis accepts writes again");
        }
        self.shared.batches.fetch_add(1, Relaxed);
        // Last: a caller woken by this sees the health that goes with it.
        self.shared.acked_seq.store(batch.max_seq, SeqCst);
        self.waiters.wake();
        // The batch queued or built behind it is next, before anything
        // still pending (however this one was settled: reply or marker).
        self.held = self.next.take();
    }

    fn fail(&mut self, f: Failure) {
        log::warn!("tradecache: {} ({}): {}", f.addr, f.class.name(), f.text);
        self.shared.count_error(f.class, f.text.clone());
        match f.action {
            Action::Reconnect => self.drop_conn(),
            Action::Backpressure => {
                *self.shared.backpressure.lock() = Some(format!("{}: {}", f.class.name(), f.text));
            }
            Action::WaitRetry | Action::Drop => {}
        }
        self.retry_at = Some(connection::deadline_after(self.backoff.next_delay()));
    }

    fn drop_conn(&mut self) {
        if let Some(c) = self.conn.take() {
            self.dead_client = c.client.map(|id| (id, c.addr)).or(self.dead_client.take());
        }
        // Whatever was queued on that connection is gone with it.
        for b in self.held.iter_mut().chain(self.next.iter_mut()) {
            b.stage = Stage::Built;
            b.queued_error = None;
        }
        self.shared.connected.store(false, Relaxed);
    }

    fn reconnect(&mut self) {
        let deadline = self.shutdown;
        match connection::connect(&self.cfg, &String::from_utf8_lossy(&self.marker_key), deadline) {
            Ok(c) => {
                log::info!("tradecache: reconnected to {}", c.addr);
                self.conn = Some(c);
                self.generation += 1;
                // A restarted server may have lost recent index entries.
                self.indexed.clear();
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
                self.shared.count_error(f.class, f.text.clone());
                if f.action == Action::Backpressure {
                    *self.shared.backpressure.lock() = Some(format!("{}: {}", f.class.name(), f.text));
                }
                log::debug!("tradecache: reconnect to {} failed: {}", f.addr, f.text);
                self.retry_at = Some(connection::deadline_after(self.backoff.next_delay()));
            }
        }
    }

    /// Sleeps a little while waiting to retry, bounded by the retry time and
    /// the shutdown deadline, so the channel keeps being drained.
    fn pause(&mut self) {
        let now = Instant::now();
        let mut until = self.retry_at.unwrap_or(now);
        if let Some(d) = self.shutdown {
            until = until.min(d);
        }
        let slice = until.saturating_duration_since(now).min(Duration::from_millis(5));
        if !slice.is_zero() {
            std::thread::sleep(slice);
        }
    }
}

/// Checks an encode result and the size limit. A value that fails is
/// dropped (encoding stays on this thread, so the caller cannot be told at
/// the call): counted, and recorded for `Cache::take_dropped` and
/// `Cache::wait`, with its key (`key` is only called then).
fn encode_ok(
    cfg: &Config,
    shared: &Shared,
    r: Result<(), codec::EncodeError>,
    len: usize,
    seq: u64,
    key: impl FnOnce() -> String,
) -> bool {
    let (class, detail) = match r {
        Err(e) => (ErrorClass::Encode, format!("cannot encode the value: {e}")),
        Ok(()) if len > cfg.max_value_bytes => (
            ErrorClass::TooLarge,
            format!("the value is {len} bytes; max_value_bytes is {}", cfg.max_value_bytes),
        ),
        Ok(()) => return true,
    };
    shared.record_drop(seq, 1, key(), class, detail);
    false
}

fn push_wait(p: &mut Packer, wait: Option<(u32, Duration)>) {
    if let Some((n, t)) = wait {
        p.cmd(&[b"WAIT", n.to_string().as_bytes(), t.as_millis().to_string().as_bytes()]);
    }
}
