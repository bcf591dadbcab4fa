//! `Cache::clear` on the flusher: a barrier that waits for every write
//! before it to be acknowledged, then deletes this cache's keys
//! (`crate::store::own_keys` finds them) in guarded transactions, then
//! acknowledges the `clear` itself. The heartbeat goes on between its
//! round trips (`Beating`): a `clear` walks the whole database.

use crossbeam_channel::Sender;
use redis::Value;

use crate::net::{self, Failure, Packer};

use super::heartbeat::Heartbeat;
use super::link::Link;

/// The link as a `clear` walks the keys through it, writing the heartbeat
/// when it is due before each round trip.
pub(super) struct Beating<'a> {
    pub(super) link: &'a mut Link,
    /// `None` while shutting down (no heartbeat then).
    pub(super) heartbeat: Option<&'a mut Heartbeat>,
    /// (acknowledged, accepted) sequence numbers (nothing is acknowledged
    /// while a `clear` runs).
    pub(super) seqs: (u64, u64),
}

impl crate::store::own_keys::Session for Beating<'_> {
    fn query(&mut self, packed: &[u8]) -> Result<Value, Failure> {
        if let Some(heartbeat) = self.heartbeat.as_deref_mut() {
            heartbeat.beat(self.link, self.seqs.0, self.seqs.1)?;
        }
        crate::store::own_keys::Session::query(self.link, packed)
    }

    fn addr(&self) -> &str {
        self.link.addr()
    }
}

/// A `clear` waiting for every write before it to be acknowledged.
pub(super) struct Barrier {
    pub(super) seq: u64,
    pub(super) reply: Sender<crate::Result<u64>>,
    /// Keys deleted by its passes so far (a pass the marker aborted
    /// starts again; what it deleted before counts).
    pub(super) deleted: u64,
}

/// `UNLINK` of some of this cache's keys in a transaction the marker's
/// `WATCH` guards (a fenced writer deletes nothing) and that moves the
/// marker to `batch` (a `load` running meanwhile sees the change).
pub(super) fn guarded_unlink(link: &mut Link, batch: u64, keys: &[Vec<u8>]) -> Result<u64, Failure> {
    let mut p = Packer::default();
    p.array(keys.len() + 1);
    p.bulk(b"UNLINK");
    for k in keys {
        p.bulk(k);
    }
    link.set_marker(&mut p, batch);
    // A refused WATCH or a newer writer behind it is a failure, as after
    // any other `EXEC`.
    let reply = link.guarded_tx(&p.buf, 2)?;
    match &reply.exec {
        Value::Array(r) => Ok(match r.first() {
            Some(Value::Int(n)) => *n as u64,
            _ => 0,
        }),
        // Aborted by the WATCH (the marker was written, but not by a newer
        // writer): nothing was deleted, and the scan cursor has moved past
        // these keys, so the whole `clear` starts again (it is idempotent)
        // rather than report keys it never deleted.
        Value::Nil => Err(Failure::new(
            net::Cause::ExecAbort,
            link.addr(),
            "clear: the commit marker was written while deleting; clear starts again",
        )),
        _ => Err(reply.refused(link.addr(), "clear")),
    }
}
