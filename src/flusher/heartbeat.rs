//! The heartbeat (`heartbeat_interval`): the flusher sets
//! `{trader}:heartbeat:{writer_id}` to
//! `{"writer":…,"epoch":…,"ts_ms":…,"acked_seq":…,"backlog":…}` with a TTL
//! of three intervals. While writes flow it rides inside a batch's
//! transaction (one more command, no round trip of its own); otherwise it
//! is a small transaction of its own, guarded by the marker's `WATCH` like
//! a batch (so a fenced writer cannot keep it alive): when idle, before a
//! purge step whenever one is due (a long purge never starves it), and
//! between the pages of a long `clear` (`clear.rs`). It never delays a
//! batch. When the engine hangs, dies or loses Redis, the key expires
//! within the TTL.

use std::time::{Duration, Instant};

use crate::net::{self, Packer};

use super::link::Link;
use super::Flusher;

/// When the heartbeat is due, and what it writes.
pub(super) struct Heartbeat {
    interval: Option<Duration>,
    next: Option<Instant>,
    key: Vec<u8>,
    /// The writer id, as a JSON string.
    writer: String,
    epoch: u64,
}

impl Heartbeat {
    pub(super) fn new(interval: Option<Duration>, key: Vec<u8>, writer_id: &str, epoch: u64) -> Heartbeat {
        let writer = serde_json::Value::from(writer_id).to_string();
        Heartbeat { interval, next: interval.map(|_| Instant::now()), key, writer, epoch }
    }

    fn due(&self) -> bool {
        self.next.is_some_and(|t| Instant::now() >= t)
    }

    /// The packed `SET {key} {value} PX {3 × interval}` when due (the next
    /// one scheduled), for a writer that has acknowledged `acked` of
    /// `accepted` writes.
    pub(super) fn command(&mut self, acked: u64, accepted: u64) -> Option<Packer> {
        let interval = self.interval.filter(|_| self.due())?;
        self.next = Some(net::deadline_after(interval));
        let value = format!(
            "{{\"writer\":{},\"epoch\":{},\"ts_ms\":{},\"acked_seq\":{acked},\"backlog\":{}}}",
            self.writer,
            self.epoch,
            super::index::now_ms(),
            accepted.saturating_sub(acked)
        );
        let ttl = interval.as_millis().saturating_mul(3).max(1).to_string();
        let mut p = Packer::default();
        p.cmd(&[b"SET", &self.key, value.as_bytes(), b"PX", ttl.as_bytes()]);
        Some(p)
    }

    /// The heartbeat on its own when due, on `link` (its `WATCH` on the
    /// marker armed): `MULTI`, `SET … PX`, `EXEC`, then `WATCH` and `GET`
    /// of the marker (re-armed as after a batch). An aborted `EXEC` (the
    /// marker moved) only skips this beat; the `GET` says whether this
    /// writer was fenced (an error then).
    pub(super) fn beat(&mut self, link: &mut Link, acked: u64, accepted: u64) -> Result<(), net::Failure> {
        let Some(cmd) = self.command(acked, accepted) else { return Ok(()) };
        link.guarded_tx(&cmd.buf, 1).map(|_| ())
    }
}

impl Flusher {
    /// The heartbeat is due (never while shutting down).
    pub(super) fn heartbeat_due(&self) -> bool {
        self.shutdown.is_none() && self.heartbeat.due()
    }

    /// When idle work (the heartbeat, a `retain_closed_for` pass) is due
    /// next.
    pub(super) fn idle_work_at(&self) -> Option<Instant> {
        match (self.heartbeat.next, self.next_auto_purge) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// (acknowledged, accepted) sequence numbers, for the heartbeat.
    pub(super) fn heartbeat_seqs(&self) -> (u64, u64) {
        let acked = self.shared.acked();
        (acked, self.shared.accepted().max(self.received_seq))
    }

    /// The packed heartbeat `SET` when it is due, for a batch to carry.
    pub(super) fn heartbeat_command(&mut self) -> Option<Packer> {
        if self.shutdown.is_some() {
            return None;
        }
        let (acked, accepted) = self.heartbeat_seqs();
        self.heartbeat.command(acked, accepted)
    }

    /// The heartbeat on its own (idle, or before a purge step or a clear).
    pub(super) fn idle_heartbeat(&mut self) {
        if !self.heartbeat_due() || !self.ensure_watching() {
            return;
        }
        let (acked, accepted) = self.heartbeat_seqs();
        let result = self.heartbeat.beat(&mut self.link, acked, accepted);
        if let Err(f) = result {
            self.fail(f);
        }
    }
}
