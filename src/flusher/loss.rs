//! Redis losing acknowledged batches: the commit marker found missing or
//! behind what this writer had acknowledged (an AOF `everysec` loss, a
//! failover to a lagging replica, a restore from an old backup, an
//! operator's `DEL`). It is reported loudly, never replayed over or
//! ignored: counted (`Stats::marker_losses`, the `marker_lost` error
//! class), shown in `Health::marker_lost`, logged, and the acknowledged
//! writes that may be gone listed by `take_dropped`.
//!
//! A batch in doubt when the marker is found gone cannot be settled by it
//! (`settle_without_marker`). It is acknowledged only when proven applied,
//! and nothing else proves that: its events are stored as themselves, and
//! identical events are normal, so a log that ends with what the batch
//! appends may have ended so before. It is replayed when it is proven not
//! applied (its only `EXEC`s were aborted by the marker's `WATCH`, or its
//! last log does not end with what it appends), or when replaying it is
//! harmless (it appends nothing: snapshots, deletes and index entries
//! written twice are written once). Otherwise its writes are reported
//! like the marker's own losses (`Loss::report_unproven`): counted, listed by
//! `take_dropped`, `Error::Dropped` from `wait`/`flush`; never replayed
//! (that could apply them twice) and never acknowledged as written.
//!
//! A marker that is there but behind settles the batch as usual: Redis
//! loses whole transactions, as a prefix (the marker is written in every
//! batch's transaction), so a batch after what the marker shows is not in
//! Redis.

use std::collections::VecDeque;

use redis::Value;

use crate::channel::Shared;
use crate::net::{Failure, Packer};
use crate::store::marker::{Marker, Read};
use crate::ErrorKind;

use super::batch::Batch;
use super::link::Link;

/// How many acknowledged batches are remembered (their first sequence
/// numbers), to name the writes a regressed marker may have lost.
const RECENT_BATCHES: usize = 4096;

/// What this writer knows Redis applied: its marker and epoch, the last
/// batch it acknowledged, and the batches acknowledged recently.
pub(super) struct Loss {
    marker_key: Vec<u8>,
    /// This writer's epoch (see `marker.rs`).
    epoch: u64,
    /// The last batch number this writer acknowledged: a marker behind it
    /// means Redis lost acknowledged batches.
    floor: u64,
    /// Recently acknowledged batches: (number, first sequence number).
    recent: VecDeque<(u64, u64)>,
}

impl Loss {
    /// For the writer at `epoch` whose marker (`marker_key`) showed batch
    /// `floor` at `open`.
    pub(super) fn new(marker_key: Vec<u8>, epoch: u64, floor: u64) -> Loss {
        Loss { marker_key, epoch, floor, recent: VecDeque::new() }
    }

    /// Batch `no`, whose first write is `first_seq`, was acknowledged: a
    /// marker behind it from now on is a loss. (Applied but
    /// unacknowledged, waiting for replicas, it may still be lost in a
    /// failover without anyone told wrong.)
    pub(super) fn acknowledged(&mut self, no: u64, first_seq: u64) {
        if self.recent.len() >= RECENT_BATCHES {
            self.recent.pop_front();
        }
        self.recent.push_back((no, first_seq));
        self.floor = self.floor.max(no);
    }

    /// Whether `read` (this writer's marker, not fenced) is behind what
    /// this writer knows was applied.
    fn marker_regressed(&self, read: &Read) -> bool {
        match read {
            Read::Missing => true,
            Read::Valid(Marker { epoch, batch }) => {
                *epoch < self.epoch || (*epoch == self.epoch && *batch < self.floor)
            }
            // (Judged as fencing before this is asked.)
            Read::Foreign(_) => false,
        }
    }

    /// Looks at a marker just read: reports a loss in `shared` (once per
    /// regression; the floor drops to what the marker shows).
    pub(super) fn note_marker(&mut self, read: &Read, shared: &Shared) {
        if !self.marker_regressed(read) {
            return;
        }
        let key = String::from_utf8_lossy(&self.marker_key).into_owned();
        let (shown, back_to) = match read {
            Read::Valid(m) if m.epoch == self.epoch => (format!("batch {}", m.batch), m.batch),
            Read::Valid(m) => (format!("batch {} of an older epoch ({})", m.batch, m.epoch), 0),
            _ => ("nothing (it is gone)".to_string(), 0),
        };
        let acked = shared.acked();
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
            self.epoch, self.floor
        );
        log::error!("tradecache: {detail}");
        shared.note_marker_lost(detail.clone());
        match affected {
            Some((from, n)) => shared.record_drop(from, n, key, ErrorKind::MarkerLost, detail),
            None => shared.count_error(ErrorKind::MarkerLost, detail),
        }
        self.floor = back_to;
    }

    /// `batch` was in doubt when the marker was lost, and whether Redis
    /// applied it cannot be proven: its writes are reported dropped in
    /// `shared` (class `marker_lost`), not replayed and not acknowledged
    /// as written.
    pub(super) fn report_unproven(&self, batch: &Batch, shared: &Shared) {
        let key = batch.probe.as_ref().map_or_else(
            || String::from_utf8_lossy(&self.marker_key).into_owned(),
            |p| String::from_utf8_lossy(&p.key).into_owned(),
        );
        let writes = (batch.max_seq + 1).saturating_sub(batch.first_seq).max(1);
        let detail = format!(
            "batch {} (seq {} to {}) was in doubt when the commit marker was lost, and nothing proves \
             whether Redis applied it: its last log {key} ends with what it appends (which identical \
             earlier events leave too) or could not be read; not replayed (it could apply twice)",
            batch.no, batch.first_seq, batch.max_seq
        );
        log::error!("tradecache: {detail}");
        shared.record_drop(batch.first_seq, writes, key, ErrorKind::MarkerLost, detail);
    }
}

/// Settles `batch`, in doubt, when the marker is gone (see the module
/// docs), reading its probe over `link`.
pub(super) fn settle_without_marker(batch: &Batch, link: &mut Link) -> Result<Settled, Failure> {
    let no = batch.no;
    let settled = match &batch.probe {
        // Only ever aborted by the WATCH: not applied.
        _ if !batch.maybe_applied() => Settled::Replay,
        // Appends nothing: written twice is written once.
        None => Settled::Replay,
        Some(probe) if probe.tail.is_empty() => Settled::Unproven,
        Some(probe) => {
            let from = format!("-{}", probe.tail.len());
            let mut p = Packer::default();
            p.cmd(&[b"LRANGE", &probe.key, from.as_bytes(), b"-1"]);
            let [reply] = link.round_trip::<1>(&p.buf)?;
            // An error reply (a key of another type, say) proves
            // nothing either.
            let ends_with_it = matches!(&reply, Value::Array(items)
                if items.len() == probe.tail.len()
                    && items
                        .iter()
                        .zip(&probe.tail)
                        .all(|(v, want)| matches!(v, Value::BulkString(b) if b == want)));
            let readable = matches!(reply, Value::Array(_));
            if readable && !ends_with_it {
                // The log never got what the batch appends.
                Settled::Replay
            } else {
                Settled::Unproven
            }
        }
    };
    let what = match settled {
        Settled::Replay => "not applied, or harmless to apply again: replayed",
        Settled::Unproven => "cannot be proven applied or not: reported, not replayed",
    };
    log::warn!("tradecache: batch {no} in doubt with the commit marker gone: {what}");
    Ok(settled)
}

/// How a batch in doubt with the marker gone is settled
/// (`settle_without_marker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settled {
    /// Proven not applied, or harmless to apply again: sent again.
    Replay,
    /// Neither proven applied nor proven not applied: reported.
    Unproven,
}
