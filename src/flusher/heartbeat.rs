//! The heartbeat (`heartbeat_interval`): the flusher sets
//! `{trader}:heartbeat:{writer_id}` to
//! `{"writer":…,"epoch":…,"ts_ms":…,"acked_seq":…,"backlog":…}` with a TTL
//! of three intervals. While writes flow it rides inside a batch's
//! transaction (one more command, no round trip of its own); when the
//! flusher is idle it is a small transaction of its own, sent only when
//! nothing is pending, guarded by the marker's `WATCH` like a batch (so a
//! fenced writer cannot keep it alive). It never delays a batch. When the
//! engine hangs, dies or loses Redis, the key expires within the TTL.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Instant;

use crate::net::{self, Packer};

use super::Flusher;

impl Flusher {
    /// The heartbeat is due (never while shutting down).
    pub(super) fn heartbeat_due(&self) -> bool {
        self.shutdown.is_none() && self.next_heartbeat.is_some_and(|t| Instant::now() >= t)
    }

    /// When idle work (the heartbeat, a `retain_closed_for` pass) is due
    /// next.
    pub(super) fn idle_work_at(&self) -> Option<Instant> {
        match (self.next_heartbeat, self.next_auto_purge) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The packed `SET {key} {value} PX {3 × interval}` when the heartbeat
    /// is due, and the next one scheduled.
    pub(super) fn heartbeat_command(&mut self) -> Option<Packer> {
        let interval = self.cfg.heartbeat_interval?;
        if !self.heartbeat_due() {
            return None;
        }
        self.next_heartbeat = Some(net::deadline_after(interval));
        let acked = self.shared.acked_seq.load(SeqCst);
        let accepted = self.shared.accepted_seq.load(SeqCst).max(self.received_seq);
        let value = format!(
            "{{\"writer\":{},\"epoch\":{},\"ts_ms\":{},\"acked_seq\":{acked},\"backlog\":{}}}",
            serde_json::Value::from(self.cfg.writer_id.as_str()),
            self.epoch,
            super::index::now_ms(),
            accepted.saturating_sub(acked)
        );
        let ttl = interval.as_millis().saturating_mul(3).max(1).to_string();
        let mut p = Packer::default();
        p.cmd(&[b"SET", &self.heartbeat_key, value.as_bytes(), b"PX", ttl.as_bytes()]);
        Some(p)
    }

    /// The heartbeat on its own, while idle: `MULTI`, `SET … PX`, `EXEC`,
    /// then `WATCH` and `GET` of the marker (re-armed as after a batch).
    pub(super) fn idle_heartbeat(&mut self) {
        if !self.ensure_watching() {
            return;
        }
        let Some(cmd) = self.heartbeat_command() else { return };
        // An aborted EXEC (the marker moved) only skips this beat; the
        // marker's GET says whether this writer was fenced.
        let result = self.guarded_tx(&cmd.buf, 1);
        if let Err(f) = result {
            self.fail(f);
        }
    }
}
