//! The guard on the commit marker: between its transactions the flusher
//! keeps a `WATCH` on `{trader}:writer:{writer_id}`, re-armed right after
//! every `EXEC` with a `GET` that shows who owns it. A transaction sent
//! after another writer claimed the marker, or after a dropped connection
//! of ours applied a batch behind our back, is aborted by Redis, and the
//! `GET` tells this writer that it was fenced (see `marker.rs`).

use redis::Value;

use crate::net::{self, reply_error, Failure};
use crate::store::marker;

use crate::channel::Shared;

use super::inflight::InFlight;
use super::link::{GuardedReply, Link};
use super::loss::Loss;

/// Judges the replies to `WATCH` and `GET` of the marker (`marker_key`, on
/// `addr`) for the writer at `epoch`: what the marker holds, or why this
/// writer may not write (an error reply; a newer writer or a value that is
/// not a marker: fenced).
pub(super) fn judge_marker(
    replies: &[Value; 2],
    epoch: u64,
    marker_key: &[u8],
    addr: &str,
) -> Result<marker::Read, Failure> {
    let [watch, get] = replies;
    if let Some((code, text)) = reply_error(watch) {
        let text = format!("WATCH of the commit marker: {text}");
        return Err(Failure::new(net::Cause::of_code(&code), addr, text));
    }
    if let Value::ServerError(e) = get {
        let text = format!("reading the commit marker: {e}");
        return Err(Failure::new(net::Cause::of_code(e.code()), addr, text));
    }
    let read = marker::Read::from_reply(get);
    if read.fences(epoch) {
        let text = format!(
            "writer {} was fenced: another Cache opened as this writer (the marker shows {}; \
             this writer is epoch {epoch})",
            String::from_utf8_lossy(marker_key),
            read.describe(),
        );
        return Err(Failure::new(net::Cause::Fenced, addr, text));
    }
    Ok(read)
}

/// The connection, with what every look at the marker that does not fence
/// this writer updates: loss detection and what the batches in flight
/// know of the index sets. Borrowed for one operation (`guard!`).
pub(super) struct Guard<'a> {
    pub(super) link: &'a mut Link,
    pub(super) loss: &'a mut Loss,
    pub(super) inflight: &'a mut InFlight,
    pub(super) shared: &'a Shared,
}

impl Guard<'_> {
    /// Reads the replies to `WATCH` and `GET` of the marker sent behind an
    /// `EXEC`: re-arms the guard, or finds this writer fenced.
    pub(super) fn read_watch(&mut self) -> Result<(), Failure> {
        let read = self.link.read_guard()?;
        self.saw_marker(&read);
        Ok(())
    }

    /// One round trip: `WATCH` and `GET` of the marker; what it holds.
    pub(super) fn watch(&mut self) -> Result<marker::Read, Failure> {
        let read = self.link.watch()?;
        self.saw_marker(&read);
        Ok(read)
    }

    /// What every look at the marker that does not fence this writer tells.
    fn saw_marker(&mut self, read: &marker::Read) {
        if *read == marker::Read::Missing {
            // Someone deleted the marker (FLUSHDB, an operator): the index
            // sets may be gone too.
            self.inflight.index_gone();
        }
        self.loss.note_marker(read, self.link, self.shared);
    }

    /// [`Link::guarded_tx`]: `EXEC`'s reply is `Nil` when the marker moved.
    pub(super) fn guarded_tx(&mut self, command: &[u8], commands: usize) -> Result<GuardedReply, Failure> {
        let reply = self.link.guarded_tx(command, commands)?;
        self.saw_marker(&reply.read);
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Action;

    fn reply(resp: &[u8]) -> Value {
        redis::parse_redis_value(resp).expect("valid RESP")
    }

    fn marker_replies(get: &[u8]) -> [Value; 2] {
        [reply(b"+OK\r\n"), reply(get)]
    }

    #[test]
    fn the_marker_shows_what_this_writer_applied_or_fences_it() {
        let judge = |get: &[u8]| judge_marker(&marker_replies(get), 3, b"t:writer:main", "a:1");
        let read = judge(b"$3\r\n3:9\r\n").expect("our own marker");
        assert_eq!(read.applied_batch(3), 9);
        assert_eq!(judge(b"$-1\r\n").expect("no marker"), marker::Read::Missing);
        // An older epoch (a writer before this one): not fenced.
        assert_eq!(judge(b"$3\r\n2:5\r\n").expect("older writer").applied_batch(3), 0);

        let newer = judge(b"$3\r\n4:1\r\n").expect_err("a newer writer");
        assert_eq!(newer.action(), Action::Fence);
        assert!(
            newer.text.contains("t:writer:main") && newer.text.contains("this writer is epoch 3"),
            "{}",
            newer.text
        );
        assert_eq!(judge(b"$5\r\nhello\r\n").expect_err("not a marker").action(), Action::Fence);

        // Error replies are classified by their code, never taken for a marker.
        let get_error = judge(b"-LOADING Redis is loading\r\n").expect_err("GET refused");
        assert_eq!(get_error.action(), Action::WaitRetry);
        assert!(get_error.text.starts_with("reading the commit marker"), "{}", get_error.text);
        let replies =
            [reply(b"-READONLY You can't write against a read only replica.\r\n"), reply(b"$-1\r\n")];
        let watch_error = judge_marker(&replies, 3, b"k", "a:1").expect_err("WATCH refused");
        assert_eq!(watch_error.action(), Action::Reconnect);
        assert_eq!(watch_error.addr, "a:1");
    }
}
