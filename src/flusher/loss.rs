//! Redis losing acknowledged batches: the commit marker found missing or
//! behind what this writer had acknowledged (an AOF `everysec` loss, a
//! failover to a lagging replica, a restore from an old backup, an
//! operator's `DEL`). It is reported loudly, never replayed over or
//! ignored: counted (`Stats::marker_losses`, the `marker_lost` error
//! class), shown in `Health::marker_lost`, logged, and the acknowledged
//! writes that may be gone listed by `take_dropped`. A batch in doubt at
//! that moment cannot be settled by the marker, so it is settled by what
//! it wrote (`probe_applied`).

use std::sync::atomic::Ordering::{Relaxed, SeqCst};

use redis::Value;

use crate::error_class::ErrorClass;
use crate::marker::{Marker, Read};
use crate::net::Failure;

use super::Flusher;

/// How many acknowledged batches are remembered (their first sequence
/// numbers), to name the writes a regressed marker may have lost.
pub(super) const RECENT_BATCHES: usize = 4096;

impl Flusher {
    /// Whether `read` (this writer's marker, not fenced) is behind what
    /// this writer knows was applied.
    fn marker_regressed(&self, read: &Read) -> bool {
        match read {
            Read::Missing => true,
            Read::Valid(Marker { epoch, batch }) => {
                *epoch < self.epoch || (*epoch == self.epoch && *batch < self.marker_floor)
            }
            // (Judged as fencing before this is asked.)
            Read::Foreign(_) => false,
        }
    }

    /// Looks at a marker just read: reports a loss (once per regression;
    /// the floor drops to what the marker shows) and remembers whether the
    /// last read was one, for `resolve`.
    pub(super) fn note_marker(&mut self, read: &Read) {
        self.marker_lost_now = self.marker_regressed(read);
        if !self.marker_lost_now {
            return;
        }
        let key = String::from_utf8_lossy(&self.marker_key).into_owned();
        let (shown, back_to) = match read {
            Read::Valid(m) if m.epoch == self.epoch => (format!("batch {}", m.batch), m.batch),
            Read::Valid(m) => (format!("batch {} of an older epoch ({})", m.batch, m.epoch), 0),
            _ => ("nothing (it is gone)".to_string(), 0),
        };
        let acked = self.shared.acked_seq.load(SeqCst);
        // The first write of the first batch the marker no longer covers;
        // the oldest remembered when it is older than that.
        let first = self
            .recent
            .iter()
            .find(|(no, _)| *no > back_to)
            .or(self.recent.front())
            .map_or(1, |(_, seq)| *seq);
        let affected = if acked >= first { Some((first, acked - first + 1)) } else { None };
        let writes = affected.map_or_else(
            || "no acknowledged write is known to be affected".to_string(),
            |(from, n)| format!("the {n} acknowledged write(s) from seq {from} to {acked} may be gone"),
        );
        let detail = format!(
            "the commit marker {key} shows {shown}, but this writer (epoch {}) had applied batch {}: \
             Redis lost acknowledged batches or the marker was deleted; {writes} (not replayed)",
            self.epoch, self.marker_floor
        );
        log::error!("tradecache: {detail}");
        self.shared.marker_losses.fetch_add(1, Relaxed);
        *self.shared.marker_lost.lock() = Some(detail.clone());
        match affected {
            Some((from, n)) => self.shared.record_drop(from, n, key, ErrorClass::MarkerLost, detail),
            None => self.shared.count_error(ErrorClass::MarkerLost, detail),
        }
        self.marker_floor = back_to;
    }

    /// Settles the held batch without the marker: applied if the last log
    /// it appends to ends with what it appended (a transaction applies
    /// whole or not at all, and nothing of this writer's came after it).
    /// A batch that appends nothing is replayed: its snapshots, deletes and
    /// index entries are the same written twice.
    pub(super) fn probe_applied(&mut self) -> Result<bool, Failure> {
        let Some(batch) = self.held.as_ref() else { return Ok(false) };
        let Some(probe) = &batch.probe else { return Ok(false) };
        let from = format!("-{}", probe.tail.len());
        let p = &mut self.packer;
        p.clear();
        p.cmd(&[b"LRANGE", &probe.key, from.as_bytes(), b"-1"]);
        let [reply] = self.link.round_trip::<1>(&p.buf)?;
        let applied = match &reply {
            Value::Array(items) => {
                items.len() == probe.tail.len()
                    && items
                        .iter()
                        .zip(&probe.tail)
                        .all(|(v, want)| matches!(v, Value::BulkString(b) if b == want))
            }
            _ => false,
        };
        log::warn!(
            "tradecache: batch {} in doubt with the commit marker lost: settled by its log's tail as {}",
            batch.no,
            if applied { "applied" } else { "not applied (replayed)" }
        );
        Ok(applied)
    }
}
