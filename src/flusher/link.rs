//! The flusher's connection, with everything that is true of it, in one
//! owner: every byte the flusher sends and every reply it reads goes
//! through a [`Link`]. Three invariants are facts of this type rather
//! than of its callers:
//!
//! - **The reply stream stays in step.** Each send says how many replies
//!   it asks for and each read takes one; a fresh round trip starts only
//!   when nothing is owed, so forgotten replies (a queued batch's
//!   `QUEUED`s, say) are never taken for the marker: the link refuses,
//!   with a failure that drops the connection (debug builds stop on it).
//! - **The guard is what was last sent and read.** Only the link sends
//!   `WATCH`, `EXEC`, `DISCARD` and `UNWATCH`: anything that ends a
//!   `WATCH` turns the guard off, and only reading the `GET` of the marker
//!   sent right after its `WATCH`, showing no newer writer, with nothing
//!   ending that `WATCH` since, arms it. It also knows whether a `MULTI`
//!   is open, so a `WATCH` or a `MULTI` is never sent inside one.
//! - **A failed stream is never read again.** A send or read that fails
//!   drops the connection there and then (`lose`); whatever comes next
//!   gets a not-connected failure, whose action is to reconnect, and the
//!   batch in doubt is settled by the marker on the next connection.
//!
//! The bookkeeping is the `Ledger` (`ledger.rs`, pure and unit-tested).

use redis::Value;

use crate::net::{self, Action, ClientIdentity, Conn, Failure, Packer};
use crate::store::marker;

use super::guard::judge_marker;
use super::ledger::{Ledger, Refusal};

pub(super) struct Link {
    conn: Option<Conn>,
    ledger: Ledger,
    /// The last dropped connection, and the server (`host:port`) it was on.
    dead_client: Option<(ClientIdentity, String)>,
    /// The largest value the server takes (`proto-max-bulk-len`), when the
    /// last connection said; kept while disconnected, for building batches.
    bulk_limit: Option<usize>,
    marker_key: Vec<u8>,
    epoch: u64,
    /// The commands the link appends itself (`EXEC`, `WATCH`, `GET`, …).
    tail: Packer,
}

/// What a guarded transaction got back ([`Link::guarded_tx`]).
pub(super) struct GuardedReply {
    /// The replies to `MULTI` and to each queued command (`QUEUED`, or
    /// the error that refused the command).
    pub(super) head: Vec<Value>,
    /// `EXEC`'s reply: `Nil` when the `WATCH` aborted it.
    pub(super) exec: Value,
    /// The marker as read right after.
    pub(super) read: marker::Read,
}

impl GuardedReply {
    /// Why `EXEC`, neither applied nor aborted, refused the transaction
    /// (`what`, on `addr`): its error, or the first queued command's.
    pub(super) fn refused(&self, addr: &str, what: &str) -> Failure {
        let (code, text) = net::reply_error(&self.exec)
            .or_else(|| self.head.iter().find_map(net::reply_error))
            .unwrap_or_else(|| ("EXECABORT".into(), format!("unexpected reply {:?}", self.exec)));
        Failure::new(net::Cause::of_exec_error(&code, &text), addr, format!("{what}: {text}"))
    }
}

impl Link {
    pub(super) fn new(conn: Conn, marker_key: Vec<u8>, epoch: u64) -> Link {
        Link {
            bulk_limit: conn.bulk_limit,
            conn: Some(conn),
            ledger: Ledger::default(),
            dead_client: None,
            marker_key,
            epoch,
            tail: Packer::default(),
        }
    }

    /// `{trader}:writer:{writer_id}`.
    pub(super) fn marker_key(&self) -> &[u8] {
        &self.marker_key
    }

    /// This writer's epoch (see `marker.rs`).
    pub(super) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Packs `MSET` of the marker to `batch` of this writer's epoch.
    pub(super) fn set_marker(&self, p: &mut Packer, batch: u64) {
        let marker = marker::Marker { epoch: self.epoch, batch }.format();
        p.cmd(&[b"MSET", &self.marker_key, marker.as_bytes()]);
    }

    pub(super) fn is_up(&self) -> bool {
        self.conn.is_some()
    }

    /// The address of the connection (empty when there is none).
    pub(super) fn addr(&self) -> &str {
        self.conn.as_ref().map_or("", |c| c.addr.as_str())
    }

    pub(super) fn bulk_limit(&self) -> Option<usize> {
        self.bulk_limit
    }

    pub(super) fn server_now_ms(&self) -> Option<u64> {
        self.conn.as_ref().and_then(|c| c.server_clock).map(|c| c.now_ms())
    }

    pub(super) fn is_guarded(&self) -> bool {
        self.ledger.is_guarded()
    }

    /// A new connection: nothing is owed on it, nothing is watched.
    pub(super) fn install(&mut self, conn: Conn) {
        self.bulk_limit = conn.bulk_limit;
        self.conn = Some(conn);
        self.ledger = Ledger::default();
    }

    /// Drops the connection (remembering its client, to kill it once
    /// reconnected to the same server): whatever was queued on it is gone.
    pub(super) fn drop_conn(&mut self) {
        self.ledger = Ledger::default();
        if let Some(c) = self.conn.take() {
            self.dead_client = c.client.map(|id| (id, c.addr)).or(self.dead_client.take());
        }
    }

    /// The dropped connection to kill, when it was on the server this one
    /// is on (by id and client address together: a restarted server
    /// reuses ids). Forgotten either way.
    pub(super) fn take_dead_client(&mut self) -> Option<ClientIdentity> {
        let (old, addr) = self.dead_client.take()?;
        (addr == self.addr()).then_some(old)
    }

    /// The stream failed (`f`): the connection is dropped, and the failure
    /// says to reconnect (what the server got or will answer is unknown).
    fn lose(&mut self, f: Failure) -> Failure {
        self.drop_conn();
        if f.action() == Action::Reconnect {
            f
        } else {
            f.unsettled()
        }
    }

    /// A send or read the ledger refused: a bug of the caller. The
    /// connection goes (its stream would be out of step).
    fn refused(&mut self, problem: Refusal) -> Failure {
        debug_assert!(false, "the flusher's connection refused {problem}");
        let f = Failure::new(
            net::Cause::Protocol,
            self.addr(),
            format!("the flusher's connection refused {problem}: the reply stream would be out of step"),
        );
        self.lose(f)
    }

    /// Whether there is a connection, and the ledger allows `verdict`.
    fn check(&mut self, verdict: Result<(), Refusal>) -> Result<(), Failure> {
        if self.conn.is_none() {
            return Err(Failure::not_connected());
        }
        verdict.map_err(|problem| self.refused(problem))
    }

    /// Writes packed commands; a failure drops the connection.
    fn write(&mut self, buf: &[u8]) -> Result<(), Failure> {
        let conn = self.conn.as_mut().ok_or_else(Failure::not_connected)?;
        let sent = conn.con.send_packed_command(buf).map_err(|e| Failure::of(&e, &conn.addr));
        sent.map_err(|f| self.lose(f))
    }

    /// Sends a transaction without its `EXEC` (`tx`: `MULTI` and the
    /// commands, `replies` replies), applied by `send_exec` or thrown away
    /// by `discard`. Allowed with replies owed: it queues behind a batch.
    pub(super) fn send_queued(&mut self, tx: &[u8], replies: usize) -> Result<(), Failure> {
        self.check(self.ledger.can_queue())?;
        self.write(tx)?;
        self.ledger.sent_queued(replies);
        Ok(())
    }

    /// Sends packed reads (that leave the `WATCH` as it is), asking for
    /// `replies` replies.
    pub(super) fn send_reads(&mut self, buf: &[u8], replies: usize) -> Result<(), Failure> {
        self.check(self.ledger.fresh("reads", false))?;
        self.write(buf)?;
        self.ledger.sent(replies);
        Ok(())
    }

    /// Reads one reply owed; a failure drops the connection.
    pub(super) fn recv(&mut self) -> Result<Value, Failure> {
        self.check(self.ledger.can_recv())?;
        let conn = self.conn.as_mut().ok_or_else(Failure::not_connected)?;
        let reply = conn.con.recv_response().map_err(|e| Failure::of(&e, &conn.addr));
        let reply = reply.map_err(|f| self.lose(f))?;
        self.ledger.received();
        Ok(reply)
    }

    /// Reads `N` replies owed, stopping at the first failure.
    fn recv_n<const N: usize>(&mut self) -> Result<[Value; N], Failure> {
        let mut replies = std::array::from_fn(|_| Value::Nil);
        for r in &mut replies {
            *r = self.recv()?;
        }
        Ok(replies)
    }

    /// `send_reads`, then reads the `N` replies.
    pub(super) fn round_trip<const N: usize>(&mut self, buf: &[u8]) -> Result<[Value; N], Failure> {
        self.send_reads(buf, N)?;
        self.recv_n()
    }

    /// Sends what makes a transaction apply, then what re-arms the guard:
    /// `body` (`MULTI` first, unless already queued; `body_replies`
    /// replies), `EXEC` (unless `exec` is false: applied, only the replica
    /// `WAIT` is outstanding), the `WAIT`, and `WATCH` and `GET` of the
    /// marker (read last, `read_guard`). Allowed with replies owed (a
    /// queued batch's). `widened`: a guard widened by more `WATCH`es (a
    /// guarded transaction's) counts as armed.
    pub(super) fn send_exec(
        &mut self,
        body: &mut Vec<u8>,
        body_replies: usize,
        exec: bool,
        wait: Option<(u32, std::time::Duration)>,
        widened: bool,
    ) -> Result<(), Failure> {
        self.check(self.ledger.can_exec(!body.is_empty(), exec, widened))?;
        let p = &mut self.tail;
        p.clear();
        if exec {
            p.cmd(&[b"EXEC"]);
        }
        if let Some((n, t)) = wait {
            p.cmd(&[b"WAIT", n.to_string().as_bytes(), t.as_millis().to_string().as_bytes()]);
        }
        p.cmd(&[b"WATCH", &self.marker_key]);
        p.cmd(&[b"GET", &self.marker_key]);
        let replies = body_replies + usize::from(exec) + usize::from(wait.is_some()) + 2;
        // One write: the body with its tail.
        let head = body.len();
        body.extend_from_slice(&self.tail.buf);
        let r = self.write(body);
        body.truncate(head);
        r?;
        self.ledger.sent_exec(replies);
        Ok(())
    }

    /// Reads the replies to the marker's `WATCH` and `GET` sent last, and
    /// judges them: the guard is armed when this writer may go on.
    pub(super) fn read_guard(&mut self) -> Result<marker::Read, Failure> {
        let replies = self.recv_n::<2>()?;
        let read = judge_marker(&replies, self.epoch, &self.marker_key, self.addr());
        self.ledger.marker_read(read.is_ok());
        read
    }

    /// One round trip: `WATCH` and `GET` of the marker (after `UNWATCH`
    /// when other keys are watched); what it holds. Arms the guard.
    pub(super) fn watch(&mut self) -> Result<marker::Read, Failure> {
        self.check(self.ledger.fresh("a WATCH", false))?;
        let widened = self.ledger.is_widened();
        let p = &mut self.tail;
        p.clear();
        if widened {
            p.cmd(&[b"UNWATCH"]);
        }
        p.cmd(&[b"WATCH", &self.marker_key]);
        p.cmd(&[b"GET", &self.marker_key]);
        let buf = std::mem::take(&mut self.tail.buf);
        let sent = self.write(&buf);
        self.tail.buf = buf;
        sent?;
        self.ledger.sent_watch(usize::from(widened) + 2);
        if widened {
            self.recv()?;
        }
        self.read_guard()
    }

    /// `WATCH` of `key` as well as the marker, and `then` (one packed read
    /// command) in the same round trip: their replies. The next
    /// transaction is guarded by both, or `watch` drops the extra one.
    pub(super) fn watch_also(&mut self, key: &[u8], then: &[u8]) -> Result<[Value; 2], Failure> {
        self.check(self.ledger.fresh("a WATCH", false))?;
        let p = &mut self.tail;
        p.clear();
        p.cmd(&[b"WATCH", key]);
        p.buf.extend_from_slice(then);
        let buf = std::mem::take(&mut self.tail.buf);
        let sent = self.write(&buf);
        self.tail.buf = buf;
        sent?;
        self.ledger.sent_watch_also(2);
        self.recv_n()
    }

    /// One small transaction of `command` (packed; `commands` of them),
    /// guarded by the `WATCH`s armed, then `WATCH` and `GET` of the marker.
    pub(super) fn guarded_tx(&mut self, command: &[u8], commands: usize) -> Result<GuardedReply, Failure> {
        self.check(self.ledger.fresh("a transaction", false))?;
        let mut body = Packer::default();
        body.cmd(&[b"MULTI"]);
        body.buf.extend_from_slice(command);
        self.send_exec(&mut body.buf, 1 + commands, true, None, true)?;
        let mut head = Vec::with_capacity(1 + commands);
        for _ in 0..=commands {
            head.push(self.recv()?);
        }
        let exec = self.recv()?;
        let read = self.read_guard()?;
        Ok(GuardedReply { head, exec, read })
    }

    /// `DISCARD` of the transaction queued on the connection. A refusal (an
    /// ACL without `+discard`) leaves the `MULTI` open: the connection is
    /// dropped, which discards it as surely.
    pub(super) fn discard(&mut self) -> Result<(), Failure> {
        self.check(self.ledger.fresh("a DISCARD", true))?;
        self.write(b"*1\r\n$7\r\nDISCARD\r\n")?;
        self.ledger.sent_discard();
        let reply = self.recv()?;
        match net::reply_error(&reply) {
            None => Ok(()),
            Some((code, text)) => {
                let f = Failure::new(net::Cause::of_code(&code), self.addr(), format!("DISCARD: {text}"));
                Err(self.lose(f))
            }
        }
    }
}

/// `crate::store::own_keys` walks and deletes keys through the link.
impl crate::store::own_keys::Session for Link {
    fn query(&mut self, packed: &[u8]) -> Result<Value, Failure> {
        let [reply] = self.round_trip::<1>(packed)?;
        Ok(reply)
    }

    fn addr(&self) -> &str {
        Link::addr(self)
    }
}
