//! The kv writer's I/O thread, `tradecache-kv-writer-io`: the one owner of
//! the writer's connections. It sends the batches the writer packed and
//! reads their replies; connecting, handshakes, the guard against a dropped
//! connection (`writer_links.rs`) and reply timeouts all block here, not on the
//! writer thread.
//!
//! Why a thread of its own: against a frozen or unreachable server each of
//! those calls blocks up to a timeout (a second by default). The writer
//! thread meanwhile keeps taking writes from the channel into its pending
//! set, coalesced per key, so a burst while Redis is away is held, not
//! refused because the channel filled behind a blocked thread. One batch
//! is in flight at a time (the writer waits for its outcome before sending
//! the next), so batches still apply in order.

use std::ops::Range;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use redis::Value;

use super::route::{self, Links, Node, Topology};
use super::writer_links::WriterLinks;
use crate::channel::Shared;
use crate::net::{self, reply_error, Action, Failure};
use crate::ErrorKind;

/// What to send.
pub(crate) enum Work {
    /// Standalone and Sentinel: one `MULTI … EXEC` expecting `replies`
    /// replies (`MULTI`, one per command, `EXEC`).
    Single { replies: usize },
    /// Cluster: one command per entry (the key it routes by, and its bytes
    /// in the buffer), sent as a pipeline per master.
    Cluster { cmds: Vec<(Vec<u8>, Range<usize>)> },
}

pub(crate) struct Job {
    pub(crate) buf: Vec<u8>,
    pub(crate) work: Work,
    /// Drop every connection first (the writer was told to reconnect).
    pub(crate) reset: bool,
}

/// A command's reply and the server (`host:port`) that gave it.
pub(crate) type Reply = Option<(Value, Arc<str>)>;

/// What came of a job.
pub(crate) enum Outcome {
    /// Every reply, and the server's address; or why they are not all
    /// there (the connection is dropped then).
    Single(Result<(Vec<Value>, String), Failure>),
    /// Per command: its reply and the server's address, or `None` when it
    /// was not sent or its reply was lost; and the last failure met.
    Cluster(Vec<Reply>, Option<Failure>),
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

struct IoThread {
    topo: Arc<Topology>,
    links: WriterLinks,
    shared: Arc<Shared>,
}

pub(crate) fn spawn(topo: Arc<Topology>, links: Links, shared: Arc<Shared>) -> std::io::Result<Io> {
    let (jobs, job_rx) = crossbeam_channel::bounded::<Job>(1);
    let (done_tx, done) = crossbeam_channel::bounded::<Done>(1);
    let (exit_tx, exited) = crossbeam_channel::bounded::<()>(0);
    let mut t = IoThread { topo, links: WriterLinks::new(links), shared };
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
    /// Ends the thread: it finishes what it is doing (bounded by the
    /// connect and response timeouts) and is joined if it ends by
    /// `deadline`; otherwise it ends by itself.
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
        if job.reset && self.links.clear() {
            self.unguarded();
        }
        let outcome = match &job.work {
            Work::Single { replies } => Outcome::Single(self.single(&job.buf, *replies)),
            Work::Cluster { cmds } => {
                let (out, failure) = self.cluster(&job.buf, cmds);
                Outcome::Cluster(out, failure)
            }
        };
        Done { buf: job.buf, outcome }
    }

    fn drop_link(&mut self, node: &Node) {
        if self.links.drop_node(node) {
            self.unguarded();
        }
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
        let conn = self.links.get(&self.topo, &Node::Main)?;
        let addr = conn.addr.clone();
        let mut out = Vec::with_capacity(replies);
        let mut io = conn.con.send_packed_command(buf).err();
        if io.is_none() {
            for _ in 0..replies {
                match conn.con.recv_response() {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        io = Some(e);
                        break;
                    }
                }
            }
        }
        if let Some(e) = io {
            self.drop_link(&Node::Main);
            self.shared.set_connected(false);
            return Err(Failure::of(&e, &addr));
        }
        Ok((out, addr))
    }

    /// Routes each command to its master and sends each master its
    /// commands as one pipeline. A `MOVED`/`ASK` reply or a failure makes
    /// the slot table be read again; a reply that asks to reconnect, or a
    /// lost connection, drops that master's connection.
    fn cluster(&mut self, buf: &[u8], cmds: &[(Vec<u8>, Range<usize>)]) -> (Vec<Reply>, Option<Failure>) {
        let mut out: Vec<Reply> = vec![None; cmds.len()];
        let mut failure = None;
        let mut groups: Vec<(Node, Vec<usize>)> = Vec::new();
        for (i, (key, _)) in cmds.iter().enumerate() {
            match self.topo.route(key) {
                Ok(node) => match groups.iter_mut().find(|(n, _)| *n == node) {
                    Some((_, g)) => g.push(i),
                    None => groups.push((node, vec![i])),
                },
                Err(f) => failure = Some(f),
            }
        }
        let mut packed = Vec::new();
        for (node, group) in groups {
            packed.clear();
            for &i in &group {
                if let Some(bytes) = buf.get(cmds[i].1.clone()) {
                    packed.extend_from_slice(bytes);
                }
            }
            let conn = match self.links.get(&self.topo, &node) {
                Ok(c) => c,
                Err(f) => {
                    self.topo.invalidate();
                    failure = Some(f);
                    continue;
                }
            };
            let addr: Arc<str> = conn.addr.as_str().into();
            let mut io = conn.con.send_packed_command(&packed).err();
            if io.is_none() {
                for &i in &group {
                    match conn.con.recv_response() {
                        Ok(v) => out[i] = Some((v, addr.clone())),
                        Err(e) => {
                            io = Some(e);
                            break;
                        }
                    }
                }
            }
            let mut reconnect = false;
            for &i in &group {
                if let Some((code, _)) = out[i].as_ref().and_then(|(v, _)| reply_error(v)) {
                    if route::is_redirect(&code) {
                        self.topo.invalidate();
                    }
                    reconnect |= net::Cause::of_code(&code).action() == Action::Reconnect;
                }
            }
            if let Some(e) = io {
                reconnect = true;
                self.topo.invalidate();
                failure = Some(Failure::of(&e, &addr));
            }
            if reconnect {
                self.drop_link(&node);
            }
        }
        (out, failure)
    }
}
