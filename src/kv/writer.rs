//! The kv writer thread: drains the channel, coalesces per key, and writes
//! `SET key value PX ms` / `DEL` / `PEXPIRE` / `PERSIST` in batches (one
//! `MULTI … EXEC` outside a cluster, per-master pipelines in one) through
//! its I/O thread (`io.rs`), so that it keeps draining while a batch waits.
//!
//! Why not the `Cache` flusher: state applies exactly once and in order, so
//! the flusher holds every event through an outage and refuses callers when
//! full. A cache may lose a write at the cost of a miss and must never push
//! back on a trading loop: this writer keeps the newest write per key,
//! always drains, drops (and counts) new keys past `max_pending_keys`, and
//! resends a batch whose reply was lost (idempotent; anything newer is sent
//! after it). The intake loop and backoff are the flusher's.
//!
//! TTLs become `PX` at send time from the call's deadline, so a value held
//! through an outage does not outlive its TTL (one already expired is sent
//! as a `DEL`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use redis::Value;

use super::config::KvConfig;
use super::frame;
use super::io::{self, Done, Io, Job, Outcome, Work};
use super::op::{Change, KeyHash, KvMsg};
use super::overlay::{Overlay, Undo};
use super::route::{Links, Topology};
use crate::channel::intake::{self, AliveGuard, Intake, Wake};
use crate::channel::{Count, Handle, Shared};
use crate::error::CloseReport;
use crate::net::{self, reply_error, Action, Failure, Packer, Retry};
use crate::ErrorKind;

/// The batch the I/O thread is writing.
struct InFlight {
    batch: Vec<Pend>,
    started: Instant,
}

/// The newest pending write of one key.
struct Pend {
    /// The oldest write merged into it (none of them is applied yet).
    first_seq: u64,
    /// The newest: what the overlay entry carries.
    seq: u64,
    op: Change,
}

pub(crate) struct Writer {
    cfg: KvConfig,
    topo: Arc<Topology>,
    rx: Receiver<KvMsg>,
    shared: Arc<Shared>,
    overlay: Arc<Overlay>,
    done: Sender<CloseReport>,
    io: Io,
    in_flight: Option<InFlight>,
    /// The next job drops every connection first.
    reset: bool,
    pending: HashMap<crate::ident::Ident, Pend, KeyHash>,
    received_seq: u64,
    retry: Retry,
    shutdown: Option<Instant>,
    /// The class of the last failure: what a write dropped in an outage is
    /// counted under.
    last_class: ErrorKind,
    packer: Packer,
    /// A value as encoded, then as stored (header, maybe compressed).
    raw: Vec<u8>,
    framed: Vec<u8>,
}

impl Intake for Writer {
    type Msg = KvMsg;

    fn channel(&self) -> &Receiver<KvMsg> {
        &self.rx
    }

    fn receive(&mut self, msg: KvMsg) {
        match msg {
            KvMsg::Shutdown { deadline } => _ = self.shutdown.get_or_insert(deadline),
            KvMsg::Write { seq, op } => {
                self.received_seq = seq;
                self.queue(Pend { first_seq: seq, seq, op }, false);
            }
        }
    }

    fn senders_gone(&mut self) {
        let _ = self.shutdown.get_or_insert(net::deadline_after(self.cfg.redis.close_timeout));
    }
}

impl Writer {
    /// Starts the writer thread `tradecache-kv-writer` and its I/O thread:
    /// the channel to it, and the callers' handle on it.
    pub(crate) fn spawn(
        cfg: KvConfig,
        topo: Arc<Topology>,
        overlay: Arc<Overlay>,
        links: Links,
    ) -> std::io::Result<(Sender<KvMsg>, Handle)> {
        let (tx, rx) = crossbeam_channel::bounded(cfg.channel_capacity);
        let (done, done_rx) = crossbeam_channel::bounded(1);
        let shared = Arc::new(Shared::default());
        // `open` has just reached Redis (in a cluster the writer connects to
        // each master on first use).
        shared.set_connected(true);
        let io = io::spawn(topo.clone(), links, shared.clone())?;
        shared.set_alive(true);
        let writer = Writer {
            retry: Retry::new(cfg.redis.reconnect_backoff_min, cfg.redis.reconnect_backoff_max),
            topo,
            rx,
            shared: shared.clone(),
            overlay,
            done,
            io,
            in_flight: None,
            reset: false,
            pending: HashMap::default(),
            received_seq: 0,
            shutdown: None,
            last_class: ErrorKind::Io,
            packer: Packer::default(),
            raw: Vec::new(),
            framed: Vec::new(),
            cfg,
        };
        let thread =
            std::thread::Builder::new().name("tradecache-kv-writer".into()).spawn(move || writer.run())?;
        Ok((tx, Handle::new(shared, done_rx, thread)))
    }

    fn run(mut self) {
        let _alive = AliveGuard(self.shared.clone());
        loop {
            if self.shutdown.is_none() {
                self.shutdown = self.shared.stop_requested();
            }
            if self.pending.is_empty() && self.in_flight.is_none() {
                self.advance();
                if self.shutdown.is_some() {
                    if self.take_next() {
                        continue;
                    }
                    break;
                }
                // Nothing to write: wait for the next message (polls, then
                // parks after `IDLE_PARK_AFTER`, as the flusher).
                let shared = &self.shared;
                let poll = self.cfg.redis.idle_poll;
                match intake::wait_first(&self.rx, poll, None, || shared.stop_requested().is_some()) {
                    Wake::Msg(msg) => self.receive(msg),
                    Wake::Stop | Wake::Closed => self.senders_gone(),
                    // No idle work is given to wait for.
                    Wake::Tick => {}
                }
                continue;
            }
            if self.shutdown.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            if self.in_flight.is_some() {
                self.await_io();
                continue;
            }
            self.drain();
            if self.retry.is_waiting() {
                self.retry.pause(self.shutdown);
                continue;
            }
            self.write_batch();
        }
        self.io.stop(self.shutdown.unwrap_or_else(Instant::now));
        // What is left unwritten is `close`'s error, or `Drop`'s warning.
        let _ = self.done.try_send(self.shared.close_report(self.received_seq));
    }

    /// Takes what is queued: up to a batch while writing; everything while
    /// waiting to retry (coalesced, and past `max_pending_keys` dropped), so
    /// the channel never fills because Redis is away.
    fn drain(&mut self) {
        let waiting = self.retry.is_scheduled();
        let limit = if waiting { usize::MAX } else { self.cfg.redis.max_batch };
        self.take_queued(|w, n| n < limit && (waiting || w.held() < w.cfg.max_pending_keys));
    }

    /// The keys held, pending and in flight: at most `max_pending_keys`, so
    /// a failed batch always fits back into `pending`.
    fn held(&self) -> usize {
        self.pending.len() + self.in_flight.as_ref().map_or(0, |f| f.batch.len())
    }

    /// Adds a write to `pending`, merged with the one there. `older`: it
    /// comes back from a failed batch (what is pending is newer; it always
    /// finds room). A new key past `max_pending_keys` is dropped.
    fn queue(&mut self, p: Pend, older: bool) {
        use std::collections::hash_map::Entry;
        let full = !older && self.held() >= self.cfg.max_pending_keys;
        match self.pending.entry(p.op.item().clone()) {
            Entry::Occupied(mut e) => {
                let cur = e.get_mut();
                let (first, last) = if older { (p.op, cur.op.clone()) } else { (cur.op.clone(), p.op) };
                cur.op = first.then(last);
                cur.first_seq = cur.first_seq.min(p.first_seq);
                cur.seq = cur.seq.max(p.seq);
                if !older {
                    self.shared.add(Count::Coalesced, 1);
                }
            }
            Entry::Vacant(e) if !full => {
                e.insert(p);
            }
            Entry::Vacant(_) => {
                let detail = format!(
                    "Redis is unavailable and {} keys are already pending (max_pending_keys): a cache \
                     drops rather than grow",
                    self.held(),
                );
                self.drop_write(&p, self.last_class, detail);
            }
        }
    }

    fn drop_write(&mut self, p: &Pend, class: ErrorKind, detail: String) {
        let key = p.op.item().to_string();
        self.shared.record_drop(p.first_seq, 1, key, class, detail);
        self.overlay.undo(p.seq, p.op.item(), Undo::default());
    }

    /// Publishes how far writes are settled: up to the oldest one held.
    fn advance(&mut self) {
        let in_flight = self.in_flight.iter().flat_map(|f| f.batch.iter());
        let oldest = self.pending.values().chain(in_flight).map(|p| p.first_seq).min();
        let upto = oldest.map_or(self.received_seq, |first| first - 1);
        if upto > self.shared.acked() {
            self.shared.note_acked(upto);
        }
    }

    /// Packs the next batch and hands it to the I/O thread: one `MULTI …
    /// EXEC` (standalone, Sentinel), or each command on its own (cluster).
    fn write_batch(&mut self) {
        let (max, mut n) = (self.cfg.redis.max_batch, 0);
        let taken = self.pending.extract_if(|_, _| {
            n += 1;
            n <= max
        });
        let taken: Vec<Pend> = taken.map(|(_, p)| p).collect();
        let single = !self.topo.clustered();
        self.packer.clear();
        if single {
            self.packer.cmd(&[b"MULTI"]);
        }
        // Each op packed, with where its command is; the others dropped.
        let (mut batch, mut at) = (Vec::with_capacity(taken.len()), Vec::with_capacity(taken.len()));
        for p in taken {
            let start = self.packer.buf.len();
            match self.pack(&p.op) {
                Ok(()) => {
                    at.push(start..self.packer.buf.len());
                    batch.push(p);
                }
                Err((class, detail)) => {
                    self.packer.buf.truncate(start);
                    self.drop_write(&p, class, detail);
                }
            }
        }
        if batch.is_empty() {
            self.advance();
            return;
        }
        let work = if single {
            self.packer.cmd(&[b"EXEC"]);
            Work::Single { replies: batch.len() + 2 }
        } else {
            Work::Cluster {
                cmds: batch.iter().zip(at).map(|(p, r)| (p.op.item().as_bytes().to_vec(), r)).collect(),
            }
        };
        let job =
            Job { buf: std::mem::take(&mut self.packer.buf), work, reset: std::mem::take(&mut self.reset) };
        match self.io.jobs.send(job) {
            Ok(()) => self.in_flight = Some(InFlight { batch, started: Instant::now() }),
            Err(_) => self.io_lost(batch),
        }
    }

    /// Waits a little for the batch in flight, draining meanwhile.
    fn await_io(&mut self) {
        match self.io.done.recv_timeout(self.cfg.redis.idle_poll.max(Duration::from_micros(50))) {
            Ok(done) => self.finish(done),
            Err(RecvTimeoutError::Timeout) => self.drain(),
            Err(RecvTimeoutError::Disconnected) => {
                if let Some(flight) = self.in_flight.take() {
                    self.io_lost(flight.batch);
                }
            }
        }
    }

    /// Settles the batch in flight with what the I/O thread reports.
    fn finish(&mut self, done: Done) {
        let Some(InFlight { batch, started }) = self.in_flight.take() else { return };
        self.packer.buf = done.buf; // for reuse
        let outcome = match done.outcome {
            Outcome::Single(r) => self.settle_single(batch, r),
            Outcome::Cluster(replies, failure) => self.settle_cluster(batch, replies, failure),
        };
        match outcome {
            Ok(()) => {
                self.shared.record_batch_latency(started.elapsed());
                self.shared.add(Count::Batches, 1);
                self.retry.reset();
                if self.shared.set_backpressure(None) {
                    log::info!("tradecache::kv: Redis accepts writes again");
                }
                self.advance();
            }
            Err(f) => self.fail(f),
        }
    }

    /// Appends one op's command to the packer: encodes and frames a value,
    /// turns a deadline into `PX`. `Err`: the value is unencodable or too
    /// large.
    fn pack(&mut self, op: &Change) -> Result<(), (ErrorKind, String)> {
        let now = Instant::now();
        match op {
            Change::Set { item, value, expires } => {
                let ms = expires.map(|t| remaining_ms(t, now));
                if ms == Some(None) {
                    self.packer.cmd(&[b"DEL", item.as_bytes()]);
                    return Ok(());
                }
                self.raw.clear();
                value
                    .encode(self.cfg.redis.encoding, &mut self.raw)
                    .map_err(|e| (ErrorKind::Encode, format!("cannot encode the value: {e}")))?;
                let max = self.cfg.redis.max_value_bytes;
                if self.raw.len() > max {
                    let detail = format!("the value is {} bytes; max_value_bytes is {max}", self.raw.len());
                    return Err((ErrorKind::TooLarge, detail));
                }
                self.framed.clear();
                frame::frame(
                    &self.raw,
                    self.cfg.redis.encoding,
                    self.cfg.compress_threshold,
                    &mut self.framed,
                );
                let p = &mut self.packer;
                match ms.flatten() {
                    Some(ms) => {
                        p.cmd(&[b"SET", item.as_bytes(), &self.framed, b"PX", ms.to_string().as_bytes()])
                    }
                    None => p.cmd(&[b"SET", item.as_bytes(), &self.framed]),
                }
            }
            Change::Del { key } => self.packer.cmd(&[b"DEL", key.as_bytes()]),
            Change::Expire { key, expires: None } => self.packer.cmd(&[b"PERSIST", key.as_bytes()]),
            Change::Expire { key, expires: Some(t) } => match remaining_ms(*t, now) {
                Some(ms) => self.packer.cmd(&[b"PEXPIRE", key.as_bytes(), ms.to_string().as_bytes()]),
                None => self.packer.cmd(&[b"DEL", key.as_bytes()]),
            },
        }
        Ok(())
    }

    /// The replies to a `MULTI … EXEC`: a refused command is dropped; an
    /// aborted transaction is retried without the command at fault, or
    /// requeued whole.
    fn settle_single(
        &mut self,
        mut batch: Vec<Pend>,
        r: Result<(Vec<Value>, String), Failure>,
    ) -> Result<(), Failure> {
        let (replies, addr) = match r {
            Ok(r) => r,
            Err(f) => return self.requeue(batch, Some(f)),
        };
        self.note_connected();
        // Reply 0 answers MULTI; reply i the i-th op; the last, EXEC.
        match replies.get(batch.len() + 1) {
            Some(Value::Array(results)) => {
                for (r, p) in results.iter().zip(batch) {
                    if let Some((code, text)) = reply_error(r) {
                        let class = net::Cause::of_code(&code).class();
                        self.drop_write(&p, class, format!("refused: {text}"));
                    }
                }
                self.shared.add(Count::Written, results.len() as u64);
                Ok(())
            }
            other => {
                // Aborted: a command was refused when queued (`OOM`, …).
                let queued_error =
                    replies.iter().take(batch.len() + 1).enumerate().find_map(|(i, v)| {
                        reply_error(v).map(|(code, text)| (i.saturating_sub(1), code, text))
                    });
                let (at, code, text) = queued_error.unwrap_or_else(|| {
                    (usize::MAX, "EXECABORT".into(), format!("unexpected EXEC reply {other:?}"))
                });
                let cause = net::Cause::of_code(&code);
                if cause.action() != Action::Drop {
                    return self.requeue(batch, Some(Failure::new(cause, addr, text)));
                }
                // That one command is at fault: drop it, retry the rest.
                if at < batch.len() {
                    let p = batch.swap_remove(at);
                    self.drop_write(&p, cause.class(), format!("refused: {text}"));
                }
                self.requeue(batch, None)
            }
        }
    }

    /// The replies of the per-master pipelines: a write without a reply, or
    /// refused with a wait or reconnect, is requeued; else a refused one is
    /// dropped.
    fn settle_cluster(
        &mut self,
        batch: Vec<Pend>,
        replies: Vec<Option<(Value, Arc<str>)>>,
        mut failure: Option<Failure>,
    ) -> Result<(), Failure> {
        let mut rest = Vec::new();
        for (p, reply) in batch.into_iter().zip(replies) {
            let Some((v, addr)) = reply else {
                rest.push(p);
                continue;
            };
            match reply_error(&v) {
                None => self.shared.add(Count::Written, 1),
                Some((code, text)) => {
                    let cause = net::Cause::of_code(&code);
                    if cause.action() == Action::Drop {
                        self.drop_write(&p, cause.class(), format!("refused: {text}"));
                    } else {
                        failure = Some(Failure::new(cause, addr.to_string(), text));
                        rest.push(p);
                    }
                }
            }
        }
        if failure.is_none() {
            self.note_connected();
        }
        self.requeue(rest, failure)
    }

    /// Puts writes that may not have been applied back into `pending`
    /// (anything newer for their keys stays newer); `Err` with `failure`.
    fn requeue(&mut self, batch: Vec<Pend>, failure: Option<Failure>) -> Result<(), Failure> {
        for p in batch {
            self.queue(p, true);
        }
        failure.map_or(Ok(()), Err)
    }

    /// The I/O thread has stopped: the batch goes back, as after a failure.
    fn io_lost(&mut self, batch: Vec<Pend>) {
        let f = Failure::new(net::Cause::Protocol, "", "the kv writer's I/O thread has stopped");
        let _ = self.requeue(batch, None);
        self.fail(f);
    }

    fn note_connected(&mut self) {
        if !self.shared.set_connected(true) {
            self.shared.add(Count::Reconnects, 1);
            log::info!("tradecache::kv: writer connected again");
        }
    }

    fn fail(&mut self, f: Failure) {
        log::debug!("tradecache::kv: writer: {} ({}): {}", f.addr, f.class().name(), f.text);
        self.shared.count_error(f.class(), f.text.clone());
        self.last_class = f.class();
        match f.action() {
            Action::Reconnect => {
                self.reset = true;
                self.shared.set_connected(false);
            }
            Action::Backpressure => {
                self.shared.set_backpressure(Some(format!("{}: {}", f.class().name(), f.text)));
            }
            // WaitRetry, Drop (and fencing, which a cache never meets).
            _ => {}
        }
        self.retry.schedule();
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
