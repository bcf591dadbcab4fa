//! The writer's commit marker, `{trader_key}:writer:{writer_id}`: which
//! writer owns the key space (its epoch) and the number of its last
//! applied batch. One parser, used at `open` and by the flusher.
//!
//! Stored as the text `{epoch}:{batch}` (`1764550000123456:42`); a bare
//! `{batch}`, as written before epochs existed, reads as epoch 0.
//!
//! Fencing (docs/guarantees.md, "Writers and fencing"; Kafka's producer epoch):
//! `open` claims the marker with an epoch larger than any before it
//! (`WATCH` + `MULTI`/`EXEC`, so two opens cannot both win), and the
//! flusher keeps a `WATCH` on the marker between its transactions. A batch
//! whose `EXEC` comes after another writer's claim is aborted by Redis,
//! atomically, so a fenced writer's late batch never lands.

use redis::Value;

use crate::error::{Error, Result};
use crate::net::{Cause, Conn, Failure};

/// The content of a commit marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Marker {
    /// The epoch of the writer that wrote it last (0 before epochs).
    pub(crate) epoch: u64,
    /// The number of the last batch applied under it.
    pub(crate) batch: u64,
}

impl Marker {
    /// Parses `{epoch}:{batch}` or a bare `{batch}`. Both numbers stay far
    /// below `u64::MAX`, so they have room to grow.
    pub(crate) fn parse(b: &[u8]) -> Option<Marker> {
        let s = std::str::from_utf8(b).ok()?;
        // Digits only: `parse` alone takes a leading `+`.
        let num = |t: &str| {
            let n = t.parse::<u64>().ok().filter(|_| t.bytes().all(|c| c.is_ascii_digit()));
            n.filter(|n| *n < u64::MAX / 2)
        };
        match s.split_once(':') {
            Some((e, n)) => Some(Marker { epoch: num(e)?, batch: num(n)? }),
            None => Some(Marker { epoch: 0, batch: num(s)? }),
        }
    }

    /// The stored form, `{epoch}:{batch}`.
    pub(crate) fn format(self) -> String {
        format!("{}:{}", self.epoch, self.batch)
    }
}

/// What a `GET` of the marker returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Read {
    /// No marker (never written, or deleted by someone).
    Missing,
    /// A marker this crate wrote.
    Valid(Marker),
    /// Something else: shown (cut to 64 bytes) in the error.
    Foreign(String),
}

impl Read {
    pub(crate) fn from_reply(v: &Value) -> Read {
        match v {
            Value::Nil => Read::Missing,
            Value::BulkString(b) => match Marker::parse(b) {
                Some(m) => Read::Valid(m),
                None => Read::Foreign(format!("{:?}", String::from_utf8_lossy(&b[..b.len().min(64)]))),
            },
            Value::ServerError(e) => Read::Foreign(format!("an error reply ({e})")),
            other => Read::Foreign(format!("{other:?}")),
        }
    }

    /// Whether a writer with `epoch` has been fenced by what this marker
    /// shows: a newer writer's epoch, or a value this crate did not write.
    /// A missing marker or an older epoch (a restarted Redis that lost the
    /// claim) fences nobody: the live writer writes its epoch again with its
    /// next batch.
    pub(crate) fn fences(&self, epoch: u64) -> bool {
        match self {
            Read::Missing => false,
            Read::Valid(m) => m.epoch > epoch,
            Read::Foreign(_) => true,
        }
    }

    /// The last batch this writer (`epoch`) applied, as far as the marker
    /// shows (0: none of its batches).
    pub(crate) fn applied_batch(&self, epoch: u64) -> u64 {
        match self {
            Read::Valid(m) if m.epoch == epoch => m.batch,
            _ => 0,
        }
    }

    /// A description for the fencing error.
    pub(crate) fn describe(&self) -> String {
        match self {
            Read::Missing => "no marker".into(),
            Read::Valid(m) => format!("epoch {}", m.epoch),
            Read::Foreign(what) => format!("{what}, not a commit marker"),
        }
    }
}

/// A new epoch: larger than `previous`, and normally the wall clock in
/// microseconds, so that a writer opened later wins even when the marker
/// was deleted in between.
fn next_epoch(previous: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    now.max(previous.saturating_add(1))
}

/// Claims the marker for a new writer: returns the new epoch and the last
/// batch number applied under the marker (the new writer continues the
/// numbering). With `overwrite_foreign`, a marker this crate did not write
/// is replaced (`flush_on_start`); otherwise it is an error, since the
/// marker decides what is replayed after a lost reply.
///
/// # Errors
///
/// [`Error::Codec`] naming the key for a foreign marker; [`Error::Redis`]
/// when a command fails or the claim keeps racing with other opens.
pub(crate) fn claim(conn: &mut Conn, key: &str, overwrite_foreign: bool) -> Result<Marker> {
    let fail = |mut f: Failure| {
        f.text = format!("claiming the commit marker {key}: {}", f.text);
        f.into_error()
    };
    let redis_err = |conn: &Conn, e: &redis::RedisError| fail(Failure::of(e, &conn.addr));
    // Another open racing for the same marker makes `EXEC` return nil:
    // read again and retry; a handful of rounds settles any real race.
    for _ in 0..16 {
        conn.query(redis::cmd("WATCH").arg(key)).map_err(|e| redis_err(conn, &e))?;
        let read = match conn.query(redis::cmd("GET").arg(key)) {
            Ok(v) => Read::from_reply(&v),
            // A key of another type (WRONGTYPE): replaced by flush_on_start.
            Err(e) if overwrite_foreign && e.code().is_some() => {
                Read::Foreign(format!("an error reply ({e})"))
            }
            Err(e) => return Err(redis_err(conn, &e)),
        };
        let previous = match read {
            Read::Missing => Marker::default(),
            Read::Valid(m) => m,
            Read::Foreign(what) if overwrite_foreign => {
                log::warn!("tradecache: flush_on_start replaces the commit marker {key}, which held {what}");
                Marker::default()
            }
            Read::Foreign(what) => {
                let _ = conn.query(&redis::cmd("UNWATCH"));
                return Err(Error::Codec {
                    key: key.to_string(),
                    detail: format!(
                        "the commit marker holds {what}, not a batch number; delete the key \
                         (or open with flush_on_start, or another writer_id)"
                    ),
                });
            }
        };
        let mine = Marker { epoch: next_epoch(previous.epoch), batch: previous.batch };
        let mut p = crate::net::Packer::default();
        p.cmd(&[b"MULTI"]);
        p.cmd(&[b"MSET", key.as_bytes(), mine.format().as_bytes()]);
        p.cmd(&[b"EXEC"]);
        let replies = conn.round_trip(&p).map_err(fail)?;
        if let Some(Value::ServerError(e)) = replies.iter().find(|v| matches!(v, Value::ServerError(_))) {
            return Err(redis_err(conn, &e.clone().into()));
        }
        match replies.last() {
            // The marker changed since WATCH: another open raced us.
            Some(Value::Nil) => continue,
            _ => return Ok(mine),
        }
    }
    Err(fail(Failure::new(Cause::Command, &conn.addr, "other writers kept claiming it at the same time")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_refuses_the_rest() {
        assert_eq!(Marker::parse(b"42"), Some(Marker { epoch: 0, batch: 42 }));
        assert_eq!(Marker::parse(b"7:42"), Some(Marker { epoch: 7, batch: 42 }));
        for bad in
            [&b""[..], b":", b"7:", b":4", b"x", b"-1", b"1:2:3", b"+5", b" 5", b"18446744073709551615"]
        {
            assert_eq!(Marker::parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        let m = Marker { epoch: 3, batch: 9 };
        assert_eq!(Marker::parse(m.format().as_bytes()), Some(m));
    }

    #[test]
    fn who_is_fenced() {
        let mine = 10;
        assert!(!Read::Missing.fences(mine));
        assert!(!Read::Valid(Marker { epoch: 9, batch: 1 }).fences(mine));
        assert!(!Read::Valid(Marker { epoch: 10, batch: 1 }).fences(mine));
        assert!(Read::Valid(Marker { epoch: 11, batch: 1 }).fences(mine));
        assert!(Read::Foreign("x".into()).fences(mine));
        assert_eq!(Read::Valid(Marker { epoch: 10, batch: 5 }).applied_batch(mine), 5);
        assert_eq!(Read::Valid(Marker { epoch: 9, batch: 5 }).applied_batch(mine), 0);
        assert_eq!(Read::Missing.applied_batch(mine), 0);
    }

    #[test]
    fn epochs_grow() {
        let far = u64::MAX / 4;
        assert_eq!(next_epoch(far), far + 1);
        assert!(next_epoch(0) > 1_600_000_000_000_000);
    }
}
