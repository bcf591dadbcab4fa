//! The heartbeat (`heartbeat_interval`): `{trader}:heartbeat:{writer_id}`
//! set to `{"writer":…,"epoch":…,"ts_ms":…,"acked_seq":…,"backlog":…}`
//! with a TTL of three intervals. It rides inside a batch's transaction
//! while writes flow; otherwise it is a small transaction of its own,
//! guarded by the marker's `WATCH` (a fenced writer cannot keep it alive):
//! when idle, before a purge step when due (a long purge never starves
//! it), and between the pages of a long `clear`. It never delays a batch.

use std::time::{Duration, Instant};

use crate::net::{self, Packer};

use super::link::Link;

/// When the heartbeat is due, and what it writes.
pub(super) struct Heartbeat {
    interval: Option<Duration>,
    /// When it is due next (`None`: no heartbeat).
    next: Option<Instant>,
    key: Vec<u8>,
    /// The writer id, as a JSON string.
    writer: String,
}

impl Heartbeat {
    pub(super) fn new(interval: Option<Duration>, key: Vec<u8>, writer_id: &str) -> Heartbeat {
        let writer = serde_json::Value::from(writer_id).to_string();
        Heartbeat { interval, next: interval.map(|_| Instant::now()), key, writer }
    }

    pub(super) fn next_due(&self) -> Option<Instant> {
        self.next
    }

    /// Whether the heartbeat is due now.
    pub(super) fn due(&self) -> bool {
        self.next.is_some_and(|t| Instant::now() >= t)
    }

    /// The packed `SET {key} {value} PX {3 × interval}` when due (the next
    /// one scheduled), for the writer at `epoch` that has acknowledged
    /// `acked` of `accepted` writes.
    pub(super) fn command(&mut self, epoch: u64, acked: u64, accepted: u64) -> Option<Packer> {
        let interval = self.interval.filter(|_| self.due())?;
        self.next = Some(net::deadline_after(interval));
        let value = format!(
            "{{\"writer\":{},\"epoch\":{epoch},\"ts_ms\":{},\"acked_seq\":{acked},\"backlog\":{}}}",
            self.writer,
            super::index::now_ms(),
            accepted.saturating_sub(acked)
        );
        let ttl = interval.as_millis().saturating_mul(3).max(1).to_string();
        let mut p = Packer::default();
        p.cmd(&[b"SET", &self.key, value.as_bytes(), b"PX", ttl.as_bytes()]);
        Some(p)
    }

    /// The heartbeat on its own when due, a guarded transaction on `link`:
    /// an aborted `EXEC` (the marker moved) only skips this beat.
    pub(super) fn beat(&mut self, link: &mut Link, acked: u64, accepted: u64) -> Result<(), net::Failure> {
        let Some(cmd) = self.command(link.epoch(), acked, accepted) else { return Ok(()) };
        link.guarded_tx(&cmd.buf, 1).map(|_| ())
    }
}
