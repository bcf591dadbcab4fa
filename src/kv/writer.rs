//! The kv writer thread: drains the channel, coalesces per key, and writes
//! `SET key value PX ms` / `DEL` / `PEXPIRE` / `PERSIST` in batches, one
//! `MULTI … EXEC` each (outside a cluster), over its own connection(s).
//!
//! Why kv does not use the `Cache` flusher: the guarantees differ. The
//! flusher carries state: every accepted write is applied exactly once and
//! in order, so it keeps a commit marker to settle in-doubt batches, holds
//! every event through an outage and, when it cannot hold more, stops
//! draining so the channel fills and callers are refused. A cache is not
//! state: a write may be replaced by a newer one or lost without harm
//! beyond a miss, and a cache must never push back on a trading loop. So
//! this writer keeps one pending write per key (the newest), always drains
//! the channel, drops (and counts) writes to new keys past
//! `max_pending_keys`, resends a batch whose reply was lost (`SET`, `DEL`
//! and `PEXPIRE` with the same arguments are idempotent, and anything newer
//! for the key is sent after it), and routes each key to its own master in
//! a cluster, where a batch cannot be one transaction. A connection given
//! up on is killed on its server before anything is written there again
//! (`link.rs`), so its bytes, if they arrive late, never apply after newer
//! writes.
//!
//! The shape is the flusher's: a bounded crossbeam channel, sequence
//! numbers with `acked_seq` for `wait`/`flush`, poll-then-park when idle,
//! reconnect with capped, jittered backoff, shutdown through the channel.
//! TTLs are turned into `PX` at send time from the deadline the call set,
//! so a value held through an outage does not outlive its TTL (and one that
//! expired meanwhile is sent as a `DEL`).
//!
//! (Over 600 lines: one thread's loop with its two ways of sending, one
//! transaction or per-master pipelines, kept together like the flusher.)

use std::collections::HashMap;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use redis::Value;

use super::config::KvConfig;
use super::link::WriterLinks;
use super::op::{ItemKey, KeyHash, KvMsg, Op};
use super::overlay::Overlay;
use super::route::{self, Links, Node, Topology};
use super::value;
use crate::error::CloseReport;
use crate::error_class::ErrorClass;
use crate::net::{self, reply_error, Action, Backoff, Failure, Packer};
use crate::pipeline::shared::{Shared, Waiters};

/// The newest pending write of one key.
struct Pend {
    /// The oldest write merged into it (none of them is applied yet).
    first_seq: u64,
    /// The newest: what the overlay entry carries.
    seq: u64,
    op: Op,
}

pub(crate) struct WriterInit {
    pub(crate) cfg: KvConfig,
    pub(crate) topo: Arc<Topology>,
    pub(crate) rx: Receiver<KvMsg>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) waiters: Arc<Waiters>,
    pub(crate) overlay: Arc<Overlay>,
    pub(crate) done: Sender<CloseReport>,
    pub(crate) links: Links,
}

pub(crate) struct Writer {
    cfg: KvConfig,
    topo: Arc<Topology>,
    rx: Receiver<KvMsg>,
    shared: Arc<Shared>,
    waiters: Arc<Waiters>,
    overlay: Arc<Overlay>,
    done: Sender<CloseReport>,
    links: WriterLinks,
    pending: HashMap<ItemKey, Pend, KeyHash>,
    received_seq: u64,
    backoff: Backoff,
    retry_at: Option<Instant>,
    shutdown: Option<Instant>,
    /// The class of the last failure: what a write dropped in an outage is
    /// counted under.
    last_class: ErrorClass,
    packer: Packer,
    /// A value as encoded, then as stored (header, maybe compressed).
    raw: Vec<u8>,
    framed: Vec<u8>,
}

/// Marks the writer dead and wakes waiters however the thread ends.
struct AliveGuard(Arc<Shared>, Arc<Waiters>);
impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.flusher_alive.store(false, SeqCst);
        self.0.connected.store(false, Relaxed);
        let _g = self.1.lock.lock();
        self.1.cv.notify_all();
    }
}

impl Writer {
    pub(crate) fn new(init: WriterInit) -> Self {
        let backoff =
            Backoff::new(init.cfg.redis.reconnect_backoff_min, init.cfg.redis.reconnect_backoff_max);
        // `open` has just reached Redis (in a cluster the writer connects to
        // each master on first use).
        init.shared.connected.store(true, Relaxed);
        init.shared.flusher_alive.store(true, SeqCst);
        Writer {
            backoff,
            topo: init.topo,
            rx: init.rx,
            shared: init.shared,
            waiters: init.waiters,
            overlay: init.overlay,
            done: init.done,
            links: WriterLinks::new(init.links),
            pending: HashMap::default(),
            received_seq: 0,
            retry_at: None,
            shutdown: None,
            last_class: ErrorClass::Io,
            packer: Packer::default(),
            raw: Vec::new(),
            framed: Vec::new(),
            cfg: init.cfg,
        }
    }

    pub(crate) fn run(mut self) {
        let _alive = AliveGuard(self.shared.clone(), self.waiters.clone());
        loop {
            if self.shutdown.is_none() {
                if let Some(deadline) = self.shared.stop_requested() {
                    self.shutdown = Some(deadline);
                }
            }
            if self.pending.is_empty() {
                self.advance();
                if self.shutdown.is_some() {
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
                    None => self.begin_shutdown(net::deadline_after(self.cfg.redis.close_timeout)),
                }
                continue;
            }
            if self.shutdown.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            self.drain();
            if self.retry_at.is_some_and(|t| Instant::now() < t) {
                self.pause();
                continue;
            }
            self.write_batch();
        }
        let acked = self.shared.acked_seq.load(SeqCst);
        let accepted = self.received_seq.max(self.shared.accepted_seq.load(SeqCst));
        let report = CloseReport { acked_seq: acked, unpersisted: accepted.saturating_sub(acked) };
        if report.unpersisted > 0 {
            log::warn!(
                "tradecache::kv: writer stopped with {} cache write(s) not written",
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

    /// Polls with a short sleep so a caller's push does not have to wake a
    /// parked thread; parks after `idle_park_after` without work.
    fn wait_first(&mut self) -> Option<KvMsg> {
        let idle_since = Instant::now();
        loop {
            match self.rx.try_recv() {
                Ok(m) => return Some(m),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            if self.shared.stop_requested().is_some() {
                return None;
            }
            if idle_since.elapsed() < self.cfg.redis.idle_park_after {
                std::thread::sleep(self.cfg.redis.idle_poll);
            } else {
                match self.rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(m) => return Some(m),
                    Err(RecvTimeoutError::Disconnected) => return None,
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
        }
    }

    /// Takes what is queued: up to a batch while writing; everything while
    /// waiting to retry (coalescing keeps one write per key, and keys past
    /// `max_pending_keys` are dropped), so the channel never fills because
    /// Redis is away.
    fn drain(&mut self) {
        let waiting = self.retry_at.is_some();
        let limit = if waiting { usize::MAX } else { self.cfg.redis.max_batch };
        let mut n = 0;
        // While writing, what does not fit waits in the channel; only an
        // outage drops writes (`queue`).
        while n < limit && (waiting || self.pending.len() < self.cfg.max_pending_keys) {
            match self.rx.try_recv() {
                Ok(m) => self.absorb(m),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.begin_shutdown(net::deadline_after(self.cfg.redis.close_timeout));
                    break;
                }
            }
            n += 1;
        }
    }

    fn absorb(&mut self, msg: KvMsg) {
        match msg {
            KvMsg::Shutdown { deadline } => self.begin_shutdown(deadline),
            KvMsg::Write { seq, op } => {
                self.received_seq = seq;
                self.queue(Pend { first_seq: seq, seq, op }, false);
            }
        }
    }

    /// Adds a write to `pending`, merged with the one there. `older`: it
    /// comes back from a failed batch, so what is pending is newer.
    fn queue(&mut self, p: Pend, older: bool) {
        use std::collections::hash_map::Entry;
        let full = self.pending.len() >= self.cfg.max_pending_keys;
        match self.pending.entry(ItemKey(p.op.item().clone())) {
            Entry::Occupied(mut e) => {
                let cur = e.get_mut();
                let (first, last) = if older { (p.op, cur.op.clone()) } else { (cur.op.clone(), p.op) };
                cur.op = first.then(last);
                cur.first_seq = cur.first_seq.min(p.first_seq);
                cur.seq = cur.seq.max(p.seq);
                if !older {
                    self.shared.coalesced.fetch_add(1, Relaxed);
                }
            }
            Entry::Vacant(e) if !full => {
                e.insert(p);
            }
            Entry::Vacant(_) => {
                let key = String::from_utf8_lossy(p.op.item().key()).into_owned();
                let detail = format!(
                    "Redis is unavailable and {} keys are already pending (max_pending_keys): a cache \
                     drops rather than grow",
                    self.pending.len()
                );
                self.drop_write(&p, key, self.last_class, detail);
            }
        }
    }

    fn drop_write(&mut self, p: &Pend, key: String, class: ErrorClass, detail: String) {
        self.shared.record_drop(p.first_seq, 1, key, class, detail);
        self.overlay.forget(p.op.item().key(), p.seq);
    }

    /// Publishes how far every write is settled: up to just before the
    /// oldest write still pending.
    fn advance(&mut self) {
        let upto = match self.pending.values().map(|p| p.first_seq).min() {
            Some(first) => first - 1,
            None => self.received_seq,
        };
        if upto > self.shared.acked_seq.load(SeqCst) {
            self.shared.acked_seq.store(upto, SeqCst);
            self.waiters.wake();
        }
    }

    fn take_batch(&mut self) -> Vec<Pend> {
        let mut n = 0;
        let max = self.cfg.redis.max_batch;
        self.pending
            .extract_if(|_, _| {
                n += 1;
                n <= max
            })
            .map(|(_, p)| p)
            .collect()
    }

    fn write_batch(&mut self) {
        let batch = self.take_batch();
        let started = Instant::now();
        let outcome = if self.topo.clustered() { self.send_cluster(batch) } else { self.send_single(batch) };
        match outcome {
            Ok(()) => {
                self.shared.record_batch_latency(started.elapsed());
                self.shared.batches.fetch_add(1, Relaxed);
                self.backoff.reset();
                self.retry_at = None;
                if self.shared.backpressure.lock().take().is_some() {
                    log::info!("tradecache::kv: Redis accepts writes again");
                }
                self.advance();
            }
            Err(f) => self.fail(f),
        }
    }

    /// Appends one op's command to the packer: encodes a value (the
    /// calling thread did not), frames it (compressing above the
    /// threshold), and turns a deadline into `PX`. A value that cannot be
    /// encoded or is too large is not packed: the error says why.
    fn pack(&mut self, op: &Op) -> Result<(), (ErrorClass, String)> {
        let now = Instant::now();
        match op {
            Op::Set { item, value, expires } => {
                let ms = match expires {
                    Some(t) => match remaining_ms(*t, now) {
                        Some(ms) => Some(ms),
                        None => {
                            self.packer.cmd(&[b"DEL", item.key()]);
                            return Ok(());
                        }
                    },
                    None => None,
                };
                self.raw.clear();
                value
                    .encode(self.cfg.encoding(), &mut self.raw)
                    .map_err(|e| (ErrorClass::Encode, format!("cannot encode the value: {e}")))?;
                let max = self.cfg.redis.max_value_bytes;
                if self.raw.len() > max {
                    let detail = format!("the value is {} bytes; max_value_bytes is {max}", self.raw.len());
                    return Err((ErrorClass::TooLarge, detail));
                }
                self.framed.clear();
                value::frame(&self.raw, self.cfg.encoding(), self.cfg.compress_threshold, &mut self.framed);
                let p = &mut self.packer;
                match ms {
                    Some(ms) => p.cmd(&[b"SET", item.key(), &self.framed, b"PX", ms.to_string().as_bytes()]),
                    None => p.cmd(&[b"SET", item.key(), &self.framed]),
                }
            }
            Op::Del { key } => self.packer.cmd(&[b"DEL", key.key()]),
            Op::Expire { key, expires: None } => self.packer.cmd(&[b"PERSIST", key.key()]),
            Op::Expire { key, expires: Some(t) } => match remaining_ms(*t, now) {
                Some(ms) => self.packer.cmd(&[b"PEXPIRE", key.key(), ms.to_string().as_bytes()]),
                None => self.packer.cmd(&[b"DEL", key.key()]),
            },
        }
        Ok(())
    }

    /// Packs every op of `batch`; returns those packed, in order. The
    /// others are dropped and recorded (`take_dropped`, `flush`).
    fn pack_batch(&mut self, batch: Vec<Pend>) -> Vec<Pend> {
        let mut packed = Vec::with_capacity(batch.len());
        for p in batch {
            match self.pack(&p.op) {
                Ok(()) => packed.push(p),
                Err((class, detail)) => {
                    let key = String::from_utf8_lossy(p.op.item().key()).into_owned();
                    self.drop_write(&p, key, class, detail);
                }
            }
        }
        packed
    }

    /// Standalone and Sentinel: the batch as one `MULTI … EXEC`.
    fn send_single(&mut self, batch: Vec<Pend>) -> Result<(), Failure> {
        self.packer.clear();
        self.packer.cmd(&[b"MULTI"]);
        let batch = self.pack_batch(batch);
        if batch.is_empty() {
            return Ok(());
        }
        self.packer.cmd(&[b"EXEC"]);
        let conn = match self.links.get(&self.topo, &Node::Main) {
            Ok(c) => c,
            Err(f) => return Err(self.requeue(batch, f)),
        };
        let mut io = conn.con.send_packed_command(&self.packer.buf).err();
        let mut queued_error: Option<(usize, String, String)> = None;
        let mut exec = None;
        if io.is_none() {
            for i in 0..=batch.len() {
                match conn.con.recv_response() {
                    Ok(v) => {
                        if let (None, Some((code, text))) = (&queued_error, reply_error(&v)) {
                            // Reply 0 answers MULTI; reply i the i-th op.
                            queued_error = Some((i.saturating_sub(1), code, text));
                        }
                    }
                    Err(e) => {
                        io = Some(e);
                        break;
                    }
                }
            }
        }
        if io.is_none() {
            match conn.con.recv_response() {
                Ok(v) => exec = Some(v),
                Err(e) => io = Some(e),
            }
        }
        let addr = conn.addr.clone();
        if let Some(e) = io {
            self.drop_link(&Node::Main);
            self.shared.connected.store(false, Relaxed);
            let f = net::Failure::of(&e, &addr);
            return Err(self.requeue(batch, f));
        }
        self.note_connected();
        match exec {
            Some(Value::Array(results)) => {
                for (r, p) in results.iter().zip(batch) {
                    if let Some((code, text)) = reply_error(r) {
                        let class = net::Cause::of_code(&code).class();
                        let key = String::from_utf8_lossy(p.op.item().key()).into_owned();
                        self.drop_write(&p, key, class, format!("refused: {text}"));
                    }
                }
                self.shared.written.fetch_add(results.len() as u64, Relaxed);
                Ok(())
            }
            other => {
                // Aborted: a command was refused when queued (`OOM`, …).
                let (at, code, text) = queued_error.unwrap_or_else(|| {
                    (usize::MAX, "EXECABORT".into(), format!("unexpected EXEC reply {other:?}"))
                });
                let cause = net::Cause::of_code(&code);
                let class = cause.class();
                if cause.action() == Action::Drop {
                    // That one command is at fault: drop it, retry the rest.
                    let mut batch = batch;
                    if at < batch.len() {
                        let p = batch.swap_remove(at);
                        let key = String::from_utf8_lossy(p.op.item().key()).into_owned();
                        self.drop_write(&p, key, class, format!("refused: {text}"));
                    }
                    for p in batch {
                        self.queue(p, true);
                    }
                    return Ok(());
                }
                Err(self.requeue(batch, Failure::new(cause, addr, text)))
            }
        }
    }

    /// Cluster: each master gets its keys as a plain pipeline (keys in
    /// different slots cannot share a transaction); a `MOVED`/`ASK` reply
    /// refreshes the slot table and the write is sent again.
    fn send_cluster(&mut self, batch: Vec<Pend>) -> Result<(), Failure> {
        let mut groups: Vec<(Node, Vec<Pend>)> = Vec::new();
        let mut failure = None;
        for p in batch {
            match self.topo.route(p.op.item().key()) {
                Ok(node) => match groups.iter_mut().find(|(n, _)| *n == node) {
                    Some((_, g)) => g.push(p),
                    None => groups.push((node, vec![p])),
                },
                Err(f) => {
                    self.queue(p, true);
                    failure = Some(f);
                }
            }
        }
        for (node, group) in groups {
            self.packer.clear();
            let group = self.pack_batch(group);
            if group.is_empty() {
                continue;
            }
            let conn = match self.links.get(&self.topo, &node) {
                Ok(c) => c,
                Err(f) => {
                    self.topo.invalidate();
                    failure = Some(self.requeue(group, f));
                    continue;
                }
            };
            let addr = conn.addr.clone();
            let mut replies = Vec::with_capacity(group.len());
            let mut io = conn.con.send_packed_command(&self.packer.buf).err();
            if io.is_none() {
                for _ in 0..group.len() {
                    match conn.con.recv_response() {
                        Ok(v) => replies.push(v),
                        Err(e) => {
                            io = Some(e);
                            break;
                        }
                    }
                }
            }
            let mut rest = Vec::new();
            for (i, p) in group.into_iter().enumerate() {
                match replies.get(i).map(reply_error) {
                    None => rest.push(p),
                    Some(None) => {
                        self.shared.written.fetch_add(1, Relaxed);
                    }
                    Some(Some((code, text))) => {
                        let cause = net::Cause::of_code(&code);
                        let (class, action) = (cause.class(), cause.action());
                        if route::is_redirect(&code) {
                            self.topo.invalidate();
                        }
                        if action == Action::Drop {
                            let key = String::from_utf8_lossy(p.op.item().key()).into_owned();
                            self.drop_write(&p, key, class, format!("refused: {text}"));
                        } else {
                            if action == Action::Reconnect {
                                self.drop_link(&node);
                            }
                            failure = Some(Failure::new(cause, addr.clone(), text));
                            rest.push(p);
                        }
                    }
                }
            }
            if let Some(e) = io {
                self.drop_link(&node);
                self.topo.invalidate();
                failure = Some(net::Failure::of(&e, &addr));
            }
            for p in rest {
                self.queue(p, true);
            }
        }
        match failure {
            Some(f) => Err(f),
            None => {
                self.note_connected();
                Ok(())
            }
        }
    }

    /// Puts a batch that was not (or may not have been) applied back into
    /// `pending`, behind nothing: anything newer for its keys stays newer.
    fn requeue(&mut self, batch: Vec<Pend>, f: Failure) -> Failure {
        for p in batch {
            self.queue(p, true);
        }
        f
    }

    /// Drops the connection to `node` (see `link.rs`: if it carried writes,
    /// it is killed before the next write to its server).
    fn drop_link(&mut self, node: &Node) {
        if self.links.drop_node(node) {
            self.unguarded();
        }
    }

    /// A dropped connection had to be forgotten without being killed.
    fn unguarded(&mut self) {
        let text =
            "more dropped writer connections than the writer remembers: the oldest will not be killed, so \
                    its late writes, if any reach Redis, may replace newer ones";
        log::warn!("tradecache::kv: {text}");
        self.shared.count_error(ErrorClass::Other, text.into());
    }

    fn note_connected(&mut self) {
        if !self.shared.connected.swap(true, Relaxed) {
            self.shared.reconnects.fetch_add(1, Relaxed);
            log::info!("tradecache::kv: writer connected again");
        }
    }

    fn fail(&mut self, f: Failure) {
        log::debug!("tradecache::kv: writer: {} ({}): {}", f.addr, f.class().name(), f.text);
        self.shared.count_error(f.class(), f.text.clone());
        self.last_class = f.class();
        match f.action() {
            Action::Reconnect => {
                if self.links.clear() {
                    self.unguarded();
                }
                self.shared.connected.store(false, Relaxed);
            }
            Action::Backpressure => {
                *self.shared.backpressure.lock() = Some(format!("{}: {}", f.class().name(), f.text));
            }
            // WaitRetry, Drop (and any action the state writer adds, such
            // as its fencing, which a cache never meets): back off, retry.
            _ => {}
        }
        if self.links.is_empty() {
            self.shared.connected.store(false, Relaxed);
        }
        self.retry_at = Some(net::deadline_after(self.backoff.next_delay()));
    }

    /// Sleeps a little while waiting to retry (so the channel keeps being
    /// drained), bounded by the retry time and the shutdown deadline.
    fn pause(&mut self) {
        net::pause(self.retry_at, self.shutdown);
    }
}

/// Milliseconds from `now` to `t`, rounded up; `None` once `t` has passed.
fn remaining_ms(t: Instant, now: Instant) -> Option<u128> {
    let left = t.checked_duration_since(now).filter(|d| !d.is_zero())?;
    Some(left.as_nanos().div_ceil(1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_left_is_rounded_up_and_none_once_past() {
        let now = Instant::now();
        assert_eq!(remaining_ms(now + Duration::from_micros(1), now), Some(1));
        assert_eq!(remaining_ms(now + Duration::from_millis(1500), now), Some(1500));
        assert_eq!(remaining_ms(now, now), None);
        assert_eq!(remaining_ms(now, now + Duration::from_secs(1)), None);
    }
}
