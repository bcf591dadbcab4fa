//! The kv writer's connections (one per node), and the guard that keeps a
//! connection it gave up on from applying anything later.
//!
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

use redis::Value;

use super::route::{Links, Node, Topology};
use crate::net::{self, reply_error, ClientIdentity, Conn, Failure};

/// At most this many dropped connections are remembered for killing (the
/// oldest is forgotten, the loss counted by the caller).
const MAX_SUSPECTS: usize = 64;

#[derive(Default)]
pub(crate) struct WriterLinks {
    links: Links,
    /// Nodes whose current connection has carried writes.
    used: HashSet<Node>,
    /// Dropped connections that carried writes, and their `host:port`.
    suspects: Vec<(String, ClientIdentity)>,
}

impl WriterLinks {
    pub(crate) fn new(links: Links) -> Self {
        WriterLinks { links, ..WriterLinks::default() }
    }

    /// The connection to `node`, ready to write on: no connection dropped
    /// before it can apply anything after this returns.
    pub(crate) fn get(&mut self, topo: &Topology, node: &Node) -> Result<&mut Conn, Failure> {
        let WriterLinks { links, used, suspects } = self;
        let conn = links.get(topo, node)?.0;
        if conn.client.is_none() {
            let text = "the kv writer cannot name its connection (CLIENT INFO refused), so it could not keep a \
                        dropped connection's late writes out: it needs +client|info and +client|kill (docs/kv.md, \
                        the kv ACL)";
            let f = Failure::new(net::Cause::Auth, conn.addr.clone(), text);
            links.drop_node(node);
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
                    links.drop_node(node);
                    return Err(f);
                }
            }
        }
        used.insert(node.clone());
        links.get(topo, node).map(|(c, _)| c)
    }

    /// Drops the connection to `node` (killed before the next write to its
    /// server if it carried writes); `true` when a suspect was forgotten.
    pub(crate) fn drop_node(&mut self, node: &Node) -> bool {
        let carried = self.used.remove(node);
        let mut lost = false;
        if let Some(conn) = self.links.drop_node(node) {
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

    /// Drops every connection, as [`WriterLinks::drop_node`].
    pub(crate) fn clear(&mut self) -> bool {
        let mut lost = false;
        for node in self.links.nodes() {
            lost |= self.drop_node(&node);
        }
        lost
    }
}
