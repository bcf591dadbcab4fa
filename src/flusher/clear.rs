//! `Cache::clear` on the flusher: a barrier that waits for every write
//! before it to be acknowledged, then deletes this cache's keys
//! (`crate::clear` finds them) in transactions guarded by the marker's
//! `WATCH`, then acknowledges the `clear` itself.

use crossbeam_channel::Sender;
use redis::Value;

use crate::marker::Marker;

use super::guard::judge_marker;
use crate::net::{self, reply_error, Action, Conn, Failure, Packer};

use super::link::round_trip;
use super::Flusher;

/// A `clear` waiting for every write before it to be acknowledged.
pub(super) struct Barrier {
    pub(super) seq: u64,
    pub(super) reply: Sender<crate::Result<u64>>,
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
        let Some(conn) = self.conn.as_mut() else { return };
        let mut fence = None;
        let marker_key = self.marker_key.clone();
        let epoch = self.epoch;
        let mut no = self.batch_no;
        let result = crate::clear::delete_own_keys(conn, &self.keys, &self.collections, |conn, keys| {
            no += 1;
            let r = guarded_unlink(conn, &marker_key, Marker { epoch, batch: no }, keys);
            if let Err(f) = &r {
                if f.action() == Action::Fence {
                    fence = Some(f.clone());
                }
            }
            r
        });
        self.batch_no = no;
        self.watching = fence.is_none() && result.is_ok();
        match result {
            Ok(n) => {
                self.forget_index();
                if let Some(b) = self.barrier.take() {
                    self.publish_ack(b.seq);
                    self.built_seq = b.seq;
                    let _ = b.reply.try_send(Ok(n));
                }
            }
            Err(f) => self.fail(fence.unwrap_or(f)),
        }
    }
}

/// `UNLINK` of some of this cache's keys, in a transaction the marker's
/// `WATCH` guards (a fenced writer deletes nothing) and that moves the
/// marker on (so a `load` running meanwhile sees that the state changed);
/// re-arms the guard.
fn guarded_unlink(
    conn: &mut Conn,
    marker_key: &[u8],
    marker: Marker,
    keys: &[Vec<u8>],
) -> Result<u64, Failure> {
    let epoch = marker.epoch;
    let mut p = Packer::default();
    p.cmd(&[b"MULTI"]);
    p.array(keys.len() + 1);
    p.bulk(b"UNLINK");
    for k in keys {
        p.bulk(k);
    }
    p.cmd(&[b"MSET", marker_key, marker.format().as_bytes()]);
    p.cmd(&[b"EXEC"]);
    p.cmd(&[b"WATCH", marker_key]);
    p.cmd(&[b"GET", marker_key]);
    let [_, _, _, exec, watch, get] = round_trip(conn, &p.buf)?;
    // The WATCH re-armed here guards the next batch: a refused WATCH or a
    // newer writer is a failure, as after any other `EXEC`.
    judge_marker(&[watch, get], epoch, marker_key, &conn.addr)?;
    match &exec {
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
            conn.addr.clone(),
            "clear: the commit marker was written while deleting; clear starts again",
        )),
        other => {
            let (code, text) = reply_error(other)
                .unwrap_or_else(|| ("EXECABORT".into(), format!("unexpected reply {other:?}")));
            Err(net::Failure::new(
                net::Cause::of_exec_error(&code, &text),
                conn.addr.clone(),
                format!("clear: {text}"),
            ))
        }
    }
}
