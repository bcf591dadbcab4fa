//! `Cache::clear` on the flusher: a barrier that waits for every write
//! before it to be acknowledged, then deletes this cache's keys
//! (`crate::clear` finds them) in transactions guarded by the marker's
//! `WATCH`, then acknowledges the `clear` itself. The heartbeat goes on
//! between its round trips (`Beating`): a `clear` walks the whole
//! database, which may take long.

use std::time::Instant;

use crossbeam_channel::Sender;
use redis::Value;

use crate::marker::Marker;
use crate::net::{self, reply_error, Failure, Packer};

use super::heartbeat::Heartbeat;
use super::link::Link;
use super::Flusher;

/// The link as a `clear` walks the keys through it, writing the heartbeat
/// when it is due before each round trip.
struct Beating<'a> {
    link: &'a mut Link,
    /// `None` while shutting down (no heartbeat then).
    heartbeat: Option<&'a mut Heartbeat>,
    /// (acknowledged, accepted) sequence numbers (nothing is acknowledged
    /// while a `clear` runs).
    seqs: (u64, u64),
}

impl crate::clear::Session for Beating<'_> {
    fn query(&mut self, packed: &[u8]) -> Result<Value, Failure> {
        if let Some(heartbeat) = self.heartbeat.as_deref_mut() {
            heartbeat.beat(self.link, self.seqs.0, self.seqs.1)?;
        }
        crate::clear::Session::query(self.link, packed)
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

impl Flusher {
    /// Executes a `clear` once everything before it is acknowledged: deletes
    /// this cache's keys (`crate::clear`) in guarded transactions, then
    /// acknowledges it.
    pub(super) fn run_clear(&mut self) {
        if self.barrier.is_none() {
            return;
        }
        if !self.ensure_watching() {
            return;
        }
        let marker_key = self.marker_key.clone();
        let (epoch, shutdown, shared) = (self.epoch, self.shutdown, self.shared.clone());
        let mut no = self.batch_no;
        let (mut deleted, mut interrupted) = (0, false);
        let seqs = self.heartbeat_seqs();
        let heartbeat = self.shutdown.is_none().then_some(&mut self.heartbeat);
        let mut session = Beating { link: &mut self.link, heartbeat, seqs };
        let result =
            crate::clear::delete_own_keys(&mut session, &self.keys, &self.collections, |session, keys| {
                let link = &mut *session.link;
                // (`close` leaves its deadline in `Shared` first.)
                if shutdown.or_else(|| shared.stop_requested()).is_some_and(|d| Instant::now() >= d) {
                    // `close` does not wait for a long clear past its deadline:
                    // nothing is deleted once it has returned.
                    interrupted = true;
                    return Err(Failure::new(net::Cause::ExecAbort, link.addr(), "clear: stopped by close"));
                }
                no += 1;
                let n = guarded_unlink(link, &marker_key, Marker { epoch, batch: no }, keys)?;
                deleted += n;
                Ok(n)
            });
        self.batch_no = no;
        if let Some(b) = self.barrier.as_mut() {
            b.deleted += deleted;
        }
        match result {
            Ok(_) => {
                self.forget_index();
                if let Some(b) = self.barrier.take() {
                    self.publish_ack(b.seq);
                    self.built_seq = b.seq;
                    let _ = b.reply.try_send(Ok(b.deleted));
                }
            }
            // The run loop stops at the deadline; the clear is answered
            // `Closed` then.
            Err(_) if interrupted => {}
            Err(f) => self.fail(f),
        }
    }
}

/// `UNLINK` of some of this cache's keys, in a transaction the marker's
/// `WATCH` guards (a fenced writer deletes nothing) and that moves the
/// marker on (so a `load` running meanwhile sees that the state changed);
/// re-arms the guard (`Link::guarded_tx`).
fn guarded_unlink(
    link: &mut Link,
    marker_key: &[u8],
    marker: Marker,
    keys: &[Vec<u8>],
) -> Result<u64, Failure> {
    let mut p = Packer::default();
    p.array(keys.len() + 1);
    p.bulk(b"UNLINK");
    for k in keys {
        p.bulk(k);
    }
    p.cmd(&[b"MSET", marker_key, marker.format().as_bytes()]);
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
        Value::Nil => Err(net::Failure::new(
            net::Cause::ExecAbort,
            link.addr(),
            "clear: the commit marker was written while deleting; clear starts again",
        )),
        other => {
            let (code, text) = reply_error(other)
                .or_else(|| reply.head.iter().find_map(reply_error))
                .unwrap_or_else(|| ("EXECABORT".into(), format!("unexpected reply {other:?}")));
            Err(net::Failure::new(
                net::Cause::of_exec_error(&code, &text),
                link.addr(),
                format!("clear: {text}"),
            ))
        }
    }
}
