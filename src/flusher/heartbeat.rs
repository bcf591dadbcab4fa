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

    /// Whether the heartbeat is due now.
    pub(super) fn due(&self) -> bool {
        self.next.is_some_and(|t| Instant::now() >= t)
    }

    /// When the heartbeat is due next (`None`: no heartbeat).
    pub(super) fn next_at(&self) -> Option<Instant> {
        self.next
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
