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

// Pending values are kept unboxed: boxing each would allocate per write.
#[allow(clippy::large_enum_variant)]
enum Snap {
    Put { rec: Record, clear_events: bool },
    Delete,
}

struct PendingEvent {
    collection: &'static str,
    id: Ident,
    rec: EventRecord,
}

/// Writes received but not yet packed into a batch, coalesced per key.
#[derive(Default)]
struct Pending {
    snaps: HashMap<Key, Snap>,
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
    /// `MULTI`, the commands, `EXEC` (and `WAIT`), exactly as sent.
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
}

impl Batch {
    /// Replies `tx` produces: `MULTI`, one `QUEUED` per command, `EXEC`.
    fn tx_replies(&self) -> usize {
        self.weights.len() + 2
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
    /// `CLIENT ID` of the last dropped connection, and the server it was on.
    dead_client: Option<(i64, String)>,
    pending: Pending,
    held: Option<Batch>,
    batch_no: u64,
    received_seq: u64,
    backoff: Backoff,
    retry_at: Option<Instant>,
    shutdown: Option<Instant>,
    indexed: HashSet<Key>,
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
            batch_no: init.batch_no,
            received_seq: 0,
            retry_at: None,
            shutdown: None,
            indexed: HashSet::new(),
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
            if self.pending.is_empty() && self.held.is_none() {
                if self.shutdown.is_some() {
                    break;
                }
                // Nothing to write: wait for the next message. This is
                // where the thread yields.
                match self.wait_first() {
                    Some(msg) => self.absorb(msg),
                    None => self.begin_shutdown(Instant::now() + self.cfg.close_timeout),
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
                self.build();
            }
            self.write_held();
        }
        let acked = self.shared.acked_seq.load(SeqCst);
        let report = CloseReport { acked_seq: acked, unpersisted: self.received_seq.saturating_sub(acked) };
        if report.unpersisted > 0 {
            log::error!(
                "tradecache: flusher stopped with {} accepted write(s) not persisted",
                report.unpersisted
            );
        }
        let _ = self.done.try_send(report);
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

    /// Moves queued messages into `pending`: up to a batch when writing,
    /// more while the batch is held (coalescing keeps it one value per
    /// key), but never more than `max_pending_events` events, so that an
    /// outage fills the channel and callers are told.
    fn drain(&mut self) {
        let limit = if self.held.is_none() && self.conn.is_some() { self.cfg.max_batch } else { usize::MAX };
        while self.pending.msgs < limit && self.pending.events.len() < self.cfg.max_pending_events {
            match self.rx.try_recv() {
                Ok(m) => self.absorb(m),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.begin_shutdown(Instant::now() + self.cfg.close_timeout);
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
        let until = Instant::now() + self.cfg.buffer_interval;
        while self.pending.msgs < self.cfg.max_batch && Instant::now() < until {
            self.drain();
            std::thread::sleep(self.cfg.idle_poll.min(until.saturating_duration_since(Instant::now())));
        }
    }

    fn absorb(&mut self, msg: Msg) {
        let seq = match msg {
            Msg::Put { seq, rec } => {
                let key = (rec.collection(), Ident::new_unchecked(rec.id()));
                let clear_events = match self.pending.snaps.remove(&key) {
                    Some(Snap::Put { clear_events, .. }) => {
                        self.shared.coalesced.fetch_add(1, Relaxed);
                        clear_events
                    }
                    Some(Snap::Delete) => {
                        self.shared.coalesced.fetch_add(1, Relaxed);
                        true
                    }
                    None => false,
                };
                self.pending.snaps.insert(key, Snap::Put { rec, clear_events });
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
                self.pending.events.push(PendingEvent { collection, id, rec });
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
    /// appends to the same log (in order), `EXEC`. Snapshots come before
    /// events, so a log restarted by a put gets the events that followed it.
    fn build(&mut self) {
        if self.pending.is_empty() {
            return;
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
                Snap::Put { rec, clear_events } => {
                    b.value.clear();
                    let r = rec.encode(enc, &mut b.value);
                    if !encode_ok(&self.cfg, &self.shared, &self.keys, r, b.value.len(), collection, id) {
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
                if encode_ok(&self.cfg, &self.shared, &self.keys, r, b.value.len(), collection, id) {
                    b.events.bulk(&b.value);
                }
                j += 1;
            }
            if !b.events.is_empty() {
                b.key.clear();
                self.keys.write_events(&mut b.key, collection, id);
                p.cmd_args(&[b"RPUSH", &b.key], &b.events);
                batch.weights.push(b.events.n as u64);
            }
            i = j;
        }
        self.pending.events = events;
        self.pending.events.clear();
        self.pending.msgs = 0;
        p.cmd(&[b"EXEC"]);
        if let Some((n, t)) = self.cfg.replica_wait {
            p.cmd(&[b"WAIT", n.to_string().as_bytes(), t.as_millis().to_string().as_bytes()]);
        }
        batch.tx = p.buf.clone();
        self.held = Some(batch);
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
        let outcome = self.send_held();
        match outcome {
            Outcome::Applied => {
                self.shared.record_batch_latency(start.elapsed());
                self.ack();
            }
            Outcome::NotApplied(f) => self.fail(f),
            Outcome::InDoubt(f) => {
                if let Some(b) = self.held.as_mut() {
                    b.in_doubt = true;
                }
                self.fail(f)
            }
        }
    }

    /// Sends the held batch (or only its `WAIT`, once applied) and reads
    /// every reply, stopping at the first I/O error.
    fn send_held(&mut self) -> Outcome {
        if self.held.as_ref().is_some_and(|b| !b.applied && b.generation != self.generation) {
            self.reindex_held();
        }
        let batch = self.held.as_ref().expect("held batch");
        let conn = self.conn.as_mut().expect("connected");
        let wait_only = batch.applied;
        let sent = if wait_only {
            let Some((n, t)) = self.cfg.replica_wait else { return Outcome::Applied };
            self.packer.clear();
            self.packer.cmd(&[b"WAIT", n.to_string().as_bytes(), t.as_millis().to_string().as_bytes()]);
            conn.con.send_packed_command(&self.packer.buf)
        } else {
            conn.con.send_packed_command(&batch.tx)
        };
        if let Err(e) = sent {
            return Outcome::InDoubt(connection::failure(&e, &conn.addr));
        }
        let addr = conn.addr.clone();
        let exec_index = if wait_only { usize::MAX } else { batch.tx_replies() - 1 };
        let replies =
            if wait_only { 0 } else { batch.tx_replies() } + usize::from(self.cfg.replica_wait.is_some());
        let mut queued_error: Option<(String, String)> = None;
        let mut exec: Option<Value> = None;
        let mut wait_reply: Option<Value> = None;
        for i in 0..replies {
            let v = match conn.con.recv_response() {
                Ok(v) => v,
                Err(e) => return Outcome::InDoubt(connection::failure(&e, &addr)),
            };
            if i == exec_index {
                exec = Some(v);
            } else if wait_only || i > exec_index {
                wait_reply = Some(v);
            } else if queued_error.is_none() {
                queued_error = reply_error(&v);
            }
        }
        if !wait_only {
            match exec {
                Some(Value::Array(results)) => {
                    let mut failed = 0u64;
                    for (r, weight) in results.iter().zip(&batch.weights) {
                        if let Some((code, text)) = reply_error(r) {
                            failed += weight;
                            let (class, _) = connection::classify_code(&code);
                            self.shared.count_error(class, format!("in batch {}: {text}", batch.no));
                        }
                    }
                    if failed > 0 {
                        self.shared.dropped.fetch_add(failed, Relaxed);
                    }
                    self.shared.written.fetch_add(results.len() as u64, Relaxed);
                    if let Some(b) = self.held.as_mut() {
                        b.applied = true;
                    }
                }
                other => {
                    let (code, text) = queued_error
                        .or_else(|| other.as_ref().and_then(reply_error))
                        .unwrap_or_else(|| ("EXECABORT".into(), format!("unexpected EXEC reply {other:?}")));
                    let (class, action) = connection::classify_code(&code);
                    return Outcome::NotApplied(Failure { class, action, addr, text });
                }
            }
        }
        if let Some((n, _)) = self.cfg.replica_wait {
            let got = match wait_reply {
                Some(Value::Int(k)) => k,
                _ => 0,
            };
            if got < i64::from(n) {
                return Outcome::NotApplied(Failure {
                    class: ErrorClass::Busy,
                    action: Action::WaitRetry,
                    addr,
                    text: format!("only {got} of {n} replica(s) acknowledged the batch"),
                });
            }
        }
        Outcome::Applied
    }

    /// After a reconnect: settles an in-doubt batch with the commit marker.
    /// Returns `Ok(true)` when the batch was acked or must be resent.
    fn resolve(&mut self) -> Result<bool, Failure> {
        let conn = self.conn.as_mut().expect("connected");
        // Make sure the dropped connection can no longer apply the batch
        // behind our back (its bytes may still sit in the server's socket).
        // Only on the server it was on: after a failover or a `MOVED` the
        // id means some other client of the new server.
        if let Some((old, addr)) = self.dead_client.take().filter(|(_, addr)| *addr == conn.addr) {
            log::debug!("tradecache: killing dropped connection {old} on {addr}");
            let _ = conn.query(redis::cmd("CLIENT").arg("KILL").arg("ID").arg(old));
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
        let Some(batch) = self.held.take() else { return };
        for k in batch.indexed.into_iter().chain(batch.unindexed) {
            self.indexed.insert(k);
        }
        for k in &batch.removed {
            self.indexed.remove(k);
        }
        self.shared.batches.fetch_add(1, Relaxed);
        self.shared.acked_seq.store(batch.max_seq, SeqCst);
        self.waiters.wake();
        self.backoff.reset();
        self.retry_at = None;
        if self.shared.backpressure.lock().take().is_some() {
            log::info!("tradecache: Redis accepts writes again");
        }
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
        self.retry_at = Some(Instant::now() + self.backoff.next_delay());
    }

    fn drop_conn(&mut self) {
        if let Some(c) = self.conn.take() {
            self.dead_client = c.client_id.map(|id| (id, c.addr)).or(self.dead_client.take());
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
                if f.class == ErrorClass::Auth {
                    *self.shared.backpressure.lock() = Some(format!("auth: {}", f.text));
                }
                log::debug!("tradecache: reconnect to {} failed: {}", f.addr, f.text);
                self.retry_at = Some(Instant::now() + self.backoff.next_delay());
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

/// Checks an encode result and the size limit; counts what is dropped.
fn encode_ok(
    cfg: &Config,
    shared: &Shared,
    keys: &Keys,
    r: Result<(), codec::EncodeError>,
    len: usize,
    collection: &str,
    id: &str,
) -> bool {
    let key = || keys.entity(collection, id);
    match r {
        Err(e) => {
            shared.dropped.fetch_add(1, Relaxed);
            shared.count_error(ErrorClass::Encode, format!("cannot encode {}: {e}", key()));
            false
        }
        Ok(()) if len > cfg.max_value_bytes => {
            shared.dropped.fetch_add(1, Relaxed);
            shared.count_error(
                ErrorClass::TooLarge,
                format!("value for {} is {len} bytes; max_value_bytes is {}", key(), cfg.max_value_bytes),
            );
            false
        }
        Ok(()) => true,
    }
}
