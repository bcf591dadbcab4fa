//! The kv writer's I/O thread, `tradecache-kv-writer-io`: the one owner of
//! the writer's connections. Connecting, handshakes, the guard against a
//! dropped connection (`writer_links.rs`) and replies block here, up to a
//! timeout each against a frozen server, while the writer thread keeps
//! taking writes from the channel (a burst is held, coalesced, not refused).
//! One batch is in flight at a time, so batches apply in order.

use std::ops::Range;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use redis::Value;

use super::pool;
use super::route::{self, Links, Node, Topology};
use super::writer_links::WriterLinks;
use crate::channel::Shared;
use crate::net::{self, reply_error, Action, Failure};
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

/// A command's reply and the server (`host:port`) that gave it.
pub(crate) type Reply = Option<(Value, Arc<str>)>;

/// What came of a job.
pub(crate) enum Outcome {
    /// Every reply and the server's address, or why not (the connection is
    /// dropped then).
    Single(Result<(Vec<Value>, String), Failure>),
    /// Per command its reply (`None`: not sent, or lost), and the last
    /// failure met.
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
        if job.reset && self.links.clear() {
            self.unguarded();
        }
        let outcome = match &job.work {
            Work::Single { replies } => Outcome::Single(self.single(&job.buf, *replies)),
            Work::Cluster { cmds } => self.cluster(&job.buf, cmds),
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
        match pool::exchange(conn, buf, replies) {
            (out, None) => Ok((out, addr)),
            (_, Some(f)) => {
                self.drop_link(&Node::Main);
                self.shared.set_connected(false);
                Err(f)
            }
        }
    }

    /// Sends each master its commands as one pipeline. `MOVED`/`ASK` or a
    /// failure makes the slot table be read again; a reply that asks to
    /// reconnect, or a lost connection, drops that master's connection.
    fn cluster(&mut self, buf: &[u8], cmds: &[(Vec<u8>, Range<usize>)]) -> Outcome {
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
            let (replies, io) = pool::exchange(conn, &packed, group.len());
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
