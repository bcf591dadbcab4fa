//! Redis losing acknowledged batches: the commit marker found missing or
//! behind what this writer had acknowledged (an AOF `everysec` loss, a
//! failover to a lagging replica, an operator's `DEL`). It is reported
//! loudly, never replayed over or ignored: counted, shown in
//! `Health::marker_lost`, logged, and the writes that may be gone listed
//! by `take_dropped`.
//!
//! A batch in doubt when the marker is gone is acknowledged only when
//! proven applied, and nothing proves that (identical events are normal,
//! so a log that ends with what the batch appends may have ended so
//! before). It is replayed when proven not applied (only ever aborted by
//! the `WATCH`, or its last log does not end with what it appends) or when
//! replaying is harmless (it appends nothing); otherwise its writes are
//! reported (`Loss::report_unproven`), never replayed nor acknowledged.
//! A marker that is there but behind settles a batch as usual: Redis loses
//! whole transactions, as a prefix.

use std::collections::VecDeque;

use redis::Value;

use crate::channel::Shared;
use crate::net::{Failure, Packer};
use crate::store::marker::Read;
use crate::ErrorKind;

use super::batch::Batch;
use super::link::Link;

/// How many acknowledged batches are remembered (their first sequence
/// numbers), to name the writes a regressed marker may have lost.
const RECENT_BATCHES: usize = 4096;

/// What this writer knows Redis applied: the last batch it acknowledged,
/// and the batches acknowledged recently.
pub(super) struct Loss {
    /// The last batch number this writer acknowledged: a marker behind it
    /// means Redis lost acknowledged batches.
    floor: u64,
    /// Recently acknowledged batches: (number, first sequence number).
    recent: VecDeque<(u64, u64)>,
}

impl Loss {
    /// For a writer whose marker showed batch `floor` at `open`.
    pub(super) fn new(floor: u64) -> Loss {
        Loss { floor, recent: VecDeque::new() }
    }

    /// Batch `no`, whose first write is `first_seq`, was acknowledged: a
    /// marker behind it from now on is a loss.
    pub(super) fn acknowledged(&mut self, no: u64, first_seq: u64) {
        if self.recent.len() >= RECENT_BATCHES {
            self.recent.pop_front();
        }
        self.recent.push_back((no, first_seq));
        self.floor = self.floor.max(no);
    }

    /// Looks at the marker of `link`'s writer just read (not fenced): when
    /// it is behind what this writer knows was applied, reports a loss in
    /// `shared` (once per regression; the floor drops to what it shows).
    pub(super) fn note_marker(&mut self, read: &Read, link: &Link, shared: &Shared) {
        let epoch = link.epoch();
        let regressed = match read {
            Read::Missing => true,
            Read::Valid(m) => m.epoch < epoch || (m.epoch == epoch && m.batch < self.floor),
            // (Judged as fencing before this is asked.)
            Read::Foreign(_) => false,
        };
        if !regressed {
            return;
        }
        let key = String::from_utf8_lossy(link.marker_key()).into_owned();
        let (shown, back_to) = match read {
            Read::Valid(m) if m.epoch == epoch => (format!("batch {}", m.batch), m.batch),
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
            epoch, self.floor
        );
        log::error!("tradecache: {detail}");
        shared.note_marker_lost(detail.clone());
        match affected {
            Some((from, n)) => shared.record_drop(from, n, key, ErrorKind::MarkerLost, detail),
            None => shared.count_error(ErrorKind::MarkerLost, detail),
        }
        self.floor = back_to;
    }

    /// `batch` was in doubt when the marker was lost, and cannot be proven
    /// applied: its writes are reported dropped (class `marker_lost`).
    pub(super) fn report_unproven(batch: &Batch, link: &Link, shared: &Shared) {
        let key = batch.probe.as_ref().map_or(link.marker_key(), |p| &p.key);
        let key = String::from_utf8_lossy(key).into_owned();
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

/// Settles `batch`, in doubt, when the marker is gone (module docs).
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

/// How a batch in doubt with the marker gone is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settled {
    /// Proven not applied, or harmless to apply again: sent again.
    Replay,
    /// Neither proven applied nor proven not applied: reported.
    Unproven,
}
