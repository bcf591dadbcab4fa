//! The kv writer's I/O thread, `tradecache-kv-writer-io`: the one owner of
//! the writer's connections (one per node). Connecting, handshakes, the
//! guard below and replies block here, up to a timeout each against a
//! frozen server, while the writer thread keeps taking writes from the
//! channel (a burst is held, coalesced, not refused). One batch is in
//! flight at a time, so batches apply in order.
//!
//! The guard keeps a connection given up on from applying anything later.
//! A batch whose reply does not come in time is sent again on a new
//! connection, newer writes after it; the old connection's bytes may still
//! be on their way (a stalled network or proxy), and an old `SET` applied
//! after them would replace a newer value for good. So before anything is
//! written on a new connection to a server, every dropped connection to it
//! that carried writes is killed there with `CLIENT KILL ID … ADDR …` (both:
//! a restarted server numbers its clients from 1 again). Redis runs one
//! command at a time, so once the kill has answered (0 included: gone
//! already), the old connection has applied its bytes or never will.
//!
//! A connection that cannot be named (`CLIENT INFO` refused) is not written
//! on, and a refused kill (`NOPERM`) stops writes to that server: failures
//! of the writer, counted and shown in `health()`, so that the guard is
//! never skipped silently.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use redis::Value;

use super::route::{self, Links, Node, Topology};
use crate::channel::Shared;
use crate::net::{self, reply_error, Action, ClientIdentity, Conn, Failure};
use crate::ErrorKind;

/// What to send.
pub(crate) enum Work {
    /// Standalone and Sentinel: one `MULTI … EXEC` with this many replies.
    Single { replies: usize },
    /// Cluster: per command, the key it routes by and its bytes in the
    /// buffer; sent as a pipeline per master.
    Cluster { cmds: Vec<(Vec<u8>, Range<usize>)> },
}

pub(crate) struct Job {
    pub(crate) buf: Vec<u8>,
    pub(crate) work: Work,
    /// Drop every connection first (the writer was told to reconnect).
    pub(crate) reset: bool,
}

/// What came of a job.
pub(crate) enum Outcome {
    /// Every reply and the server's address, or why not (the connection is
    /// dropped then).
    Single(Result<(Vec<Value>, String), Failure>),
    /// Per command its reply and the server (`host:port`) that gave it
    /// (`None`: not sent, or lost), and the last failure met.
    Cluster(Vec<Option<(Value, Arc<str>)>>, Option<Failure>),
}

pub(crate) struct Done {
    /// The job's buffer, handed back for reuse.
    pub(crate) buf: Vec<u8>,
    pub(crate) outcome: Outcome,
}

/// The writer thread's end of the I/O thread.
pub(crate) struct Io {
    pub(crate) jobs: Sender<Job>,
    pub(crate) done: Receiver<Done>,
    /// Disconnected when the thread has ended.
    exited: Receiver<()>,
    thread: JoinHandle<()>,
}

/// At most this many dropped connections are remembered for killing (the
/// oldest is forgotten, and the loss counted).
const MAX_SUSPECTS: usize = 64;

struct IoThread {
    topo: Arc<Topology>,
    links: Links,
    /// Nodes whose current connection has carried writes.
    used: HashSet<Node>,
    /// Dropped connections that carried writes, and their `host:port`.
    suspects: Vec<(String, ClientIdentity)>,
    shared: Arc<Shared>,
}

pub(crate) fn spawn(topo: Arc<Topology>, links: Links, shared: Arc<Shared>) -> std::io::Result<Io> {
    let (jobs, job_rx) = crossbeam_channel::bounded::<Job>(1);
    let (done_tx, done) = crossbeam_channel::bounded::<Done>(1);
    let (exit_tx, exited) = crossbeam_channel::bounded::<()>(0);
    let mut t = IoThread { topo, links, used: HashSet::new(), suspects: Vec::new(), shared };
    let thread = std::thread::Builder::new().name("tradecache-kv-writer-io".into()).spawn(move || {
        let _exit = exit_tx;
        while let Ok(job) = job_rx.recv() {
            let done = t.run(job);
            if done_tx.send(done).is_err() {
                break;
            }
        }
    })?;
    Ok(Io { jobs, done, exited, thread })
}

impl Io {
    /// Ends the thread: joined if it finishes its job by `deadline`, else
    /// left to end by itself (bounded by the timeouts).
    pub(crate) fn stop(self, deadline: Instant) {
        let Io { jobs, done, exited, thread } = self;
        drop(jobs);
        drop(done);
        if let Err(RecvTimeoutError::Disconnected) = exited.recv_deadline(deadline) {
            let _ = thread.join();
        }
    }
}

impl IoThread {
    fn run(&mut self, job: Job) -> Done {
        let reset: Vec<Node> = if job.reset { self.links.keys().cloned().collect() } else { Vec::new() };
        if reset.iter().fold(false, |lost, node| self.forget(node) | lost) {
            self.unguarded();
        }
        let outcome = match &job.work {
            Work::Single { replies } => Outcome::Single(self.single(&job.buf, *replies)),
            Work::Cluster { cmds } => self.cluster(&job.buf, cmds),
        };
        Done { buf: job.buf, outcome }
    }

    fn drop_link(&mut self, node: &Node) {
        if self.forget(node) {
            self.unguarded();
        }
    }

    /// Drops the connection to `node` (killed before the next write to its
    /// server if it carried writes); `true` when a suspect was forgotten.
    fn forget(&mut self, node: &Node) -> bool {
        let carried = self.used.remove(node);
        let mut lost = false;
        if let Some(conn) = self.links.remove(node) {
            if let (true, Some(id)) = (carried, conn.client) {
                if self.suspects.len() >= MAX_SUSPECTS {
                    self.suspects.remove(0);
                    lost = true;
                }
                self.suspects.push((conn.addr, id));
            }
        }
        lost
    }

    /// The connection to `node`, ready to write on: no connection dropped
    /// before it can apply anything after this returns.
    fn link(&mut self, node: &Node) -> Result<&mut Conn, Failure> {
        let IoThread { topo, links, used, suspects, .. } = self;
        let conn = topo.link(links, node)?.0;
        if conn.client.is_none() {
            let text = "the kv writer cannot name its connection (CLIENT INFO refused), so it could not keep a \
                        dropped connection's late writes out: it needs +client|info and +client|kill (docs/kv.md, \
                        the kv ACL)";
            let f = Failure::new(net::Cause::Auth, conn.addr.clone(), text);
            links.remove(node);
            return Err(f);
        }
        while let Some(i) = suspects.iter().position(|(addr, _)| *addr == conn.addr) {
            let old = &suspects[i].1;
            match conn.query(&old.kill_cmd()) {
                Ok(Value::Int(_)) => {
                    log::debug!("tradecache::kv: killed dropped writer connection {} ({})", old.id, old.addr);
                    suspects.swap_remove(i);
                }
                Ok(v) => {
                    let (code, text) = reply_error(&v).unwrap_or_else(|| ("ERR".into(), format!("{v:?}")));
                    let text = format!(
                        "CLIENT KILL of a dropped writer connection (needed before writing again, so that its \
                         late writes cannot replace newer ones): {text}"
                    );
                    return Err(Failure::new(net::Cause::of_code(&code), conn.addr.clone(), text));
                }
                Err(e) => {
                    let f = Failure::of(&e, &conn.addr);
                    // This one carried no write: nothing to kill later.
                    links.remove(node);
                    return Err(f);
                }
            }
        }
        used.insert(node.clone());
        topo.link(links, node).map(|(c, _)| c)
    }

    /// A dropped connection had to be forgotten without being killed.
    fn unguarded(&self) {
        let text =
            "more dropped writer connections than the writer remembers: the oldest will not be killed, so \
                    its late writes, if any reach Redis, may replace newer ones";
        log::warn!("tradecache::kv: {text}");
        self.shared.count_error(ErrorKind::Other, text.into());
    }

    fn single(&mut self, buf: &[u8], replies: usize) -> Result<(Vec<Value>, String), Failure> {
        let conn = self.link(&Node::Main)?;
        let addr = conn.addr.clone();
        match exchange(conn, buf, replies) {
            (out, None) => Ok((out, addr)),
            (_, Some(f)) => {
                self.drop_link(&Node::Main);
                Err(f)
            }
        }
    }

    /// Sends each master its commands as one pipeline. `MOVED`/`ASK` or a
    /// failure makes the slot table be read again; a reply that asks to
    /// reconnect, or a lost connection, drops that master's connection.
    fn cluster(&mut self, buf: &[u8], cmds: &[(Vec<u8>, Range<usize>)]) -> Outcome {
        let mut out = vec![None; cmds.len()];
        let mut failure = None;
        // A key that cannot be routed stays unsent; the others go.
        let unrouted = |f| {
            failure = Some(f);
            Ok(())
        };
        let groups = self.topo.by_node(cmds.iter().map(|(key, _)| &key[..]), unrouted).unwrap_or_default();
        let mut packed = Vec::new();
        for (node, group) in groups {
            packed.clear();
            for &i in &group {
                if let Some(bytes) = buf.get(cmds[i].1.clone()) {
                    packed.extend_from_slice(bytes);
                }
            }
            let conn = match self.link(&node) {
                Ok(c) => c,
                Err(f) => {
                    self.topo.invalidate();
                    failure = Some(f);
                    continue;
                }
            };
            let addr: Arc<str> = conn.addr.as_str().into();
            let (replies, io) = exchange(conn, &packed, group.len());
            let mut reconnect = false;
            for (&i, v) in group.iter().zip(replies) {
                if let Some((code, _)) = reply_error(&v) {
                    if route::is_redirect(&code) {
                        self.topo.invalidate();
                    }
                    reconnect |= net::Cause::of_code(&code).action() == Action::Reconnect;
                }
                out[i] = Some((v, addr.clone()));
            }
            if let Some(f) = io {
                reconnect = true;
                self.topo.invalidate();
                failure = Some(f);
            }
            if reconnect {
                self.drop_link(&node);
            }
        }
        Outcome::Cluster(out, failure)
    }
}

/// Sends `buf` and reads `n` replies: those read, and the failure that
/// stopped it, if any (the connection must be dropped then).
fn exchange(c: &mut net::Conn, buf: &[u8], n: usize) -> (Vec<Value>, Option<Failure>) {
    let mut out = Vec::with_capacity(n);
    if let Err(e) = c.con.send_packed_command(buf) {
        return (out, Some(Failure::of(&e, &c.addr)));
    }
    for _ in 0..n {
        match c.con.recv_response() {
            Ok(v) => out.push(v),
            Err(e) => return (out, Some(Failure::of(&e, &c.addr))),
        }
    }
    (out, None)
}
