//! Where a key lives, and connections to it. Standalone and Sentinel: one
//! master (Sentinel re-resolved on every connect). Cluster: unlike the
//! trader state (one hash-tag slot), cache keys spread over every master,
//! each routed by its slot with the table from `CLUSTER SLOTS`, read again
//! after `MOVED`/`ASK` or a failure. Connecting is `crate::net`'s.

use std::collections::hash_map::{Entry, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;
use redis::Value;

use crate::config::Config;
use crate::net::{self, Conn, Failure};

/// A node to talk to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Node {
    /// The master (standalone, or found through Sentinel).
    Main,
    /// A cluster master, `host:port`.
    At(Arc<str>, u16),
}

/// The cluster's slot table.
pub(crate) struct Slots {
    /// The owner of each of the 16384 slots, as an index into `masters`
    /// (`u16::MAX`: no owner).
    owner: Vec<u16>,
    masters: Vec<Node>,
}

impl Slots {
    fn parse(reply: &Value, seed_host: &str) -> Option<Slots> {
        let mut owner = vec![u16::MAX; 16384];
        let mut masters: Vec<Node> = Vec::new();
        for (lo, hi, host, port) in net::discovery::cluster_slots(reply, seed_host)? {
            let node = Node::At(host.into(), port);
            let i = masters.iter().position(|n| *n == node).unwrap_or_else(|| {
                masters.push(node);
                masters.len() - 1
            });
            let (lo, hi) = (lo.clamp(0, 16383) as usize, hi.clamp(0, 16383) as usize);
            for slot in owner.iter_mut().take(hi + 1).skip(lo) {
                *slot = i as u16;
            }
        }
        (!masters.is_empty()).then_some(Slots { owner, masters })
    }
}

/// The deployment's shape, shared by the writer and the read pool.
pub(crate) struct Topology {
    pub(crate) cfg: Config,
    slots: RwLock<Option<Arc<Slots>>>,
}

impl Topology {
    pub(crate) fn new(cfg: Config) -> Self {
        Topology { cfg, slots: RwLock::new(None) }
    }

    pub(crate) fn clustered(&self) -> bool {
        !self.cfg.cluster_nodes.is_empty()
    }

    /// The node that owns `key`.
    pub(crate) fn route(&self, key: &[u8]) -> Result<Node, Failure> {
        if !self.clustered() {
            return Ok(Node::Main);
        }
        let slots = self.slots()?;
        let i = slots.owner[usize::from(net::discovery::key_slot(key))];
        slots.masters.get(usize::from(i)).cloned().ok_or_else(|| {
            net::Failure::new(net::Cause::Busy, self.cfg.redacted_url(), "a slot has no owner")
        })
    }

    /// Every master (one outside a cluster).
    pub(crate) fn masters(&self) -> Result<Vec<Node>, Failure> {
        if !self.clustered() {
            return Ok(vec![Node::Main]);
        }
        Ok(self.slots()?.masters.clone())
    }

    fn slots(&self) -> Result<Arc<Slots>, Failure> {
        if let Some(s) = self.slots.read().as_ref() {
            return Ok(s.clone());
        }
        self.refresh()
    }

    /// Reads the slot table again from the first seed that answers.
    pub(crate) fn refresh(&self) -> Result<Arc<Slots>, Failure> {
        let mut last = None;
        for seed in &self.cfg.cluster_nodes {
            let addr = seed.to_string();
            let got = net::connect_to(&self.cfg, &seed.host, seed.port, None).and_then(|mut c| {
                let reply =
                    c.query(redis::cmd("CLUSTER").arg("SLOTS")).map_err(|e| net::Failure::of(&e, &addr))?;
                Slots::parse(&reply, &seed.host).ok_or_else(|| {
                    Failure::new(net::Cause::Busy, addr.clone(), "CLUSTER SLOTS lists no master")
                })
            });
            match got {
                Ok(s) => {
                    let s = Arc::new(s);
                    *self.slots.write() = Some(s.clone());
                    return Ok(s);
                }
                Err(f) if f.cause.is_permanent() => return Err(f),
                Err(f) => last = Some(f),
            }
        }
        Err(last.unwrap_or_else(|| Failure::new(net::Cause::Protocol, "", "no cluster seed configured")))
    }

    /// Forgets the slot table (after `MOVED`, `ASK` or a failure), so the
    /// next route reads it again.
    pub(crate) fn invalidate(&self) {
        *self.slots.write() = None;
    }

    /// The indexes of `keys` grouped by the master owning each key, in
    /// order of first appearance. A key that cannot be routed is left out
    /// and its failure handed to `unrouted`, which may stop there (`Err`).
    pub(crate) fn by_node<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k [u8]>,
        mut unrouted: impl FnMut(Failure) -> Result<(), Failure>,
    ) -> Result<Vec<(Node, Vec<usize>)>, Failure> {
        let mut groups: Vec<(Node, Vec<usize>)> = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            let node = match self.route(key) {
                Ok(node) => node,
                Err(f) => {
                    unrouted(f)?;
                    continue;
                }
            };
            match groups.iter_mut().find(|(n, _)| *n == node) {
                Some((_, g)) => g.push(i),
                None => groups.push((node, vec![i])),
            }
        }
        Ok(groups)
    }

    /// The connection to `node` in `links`, connecting if there is none, and
    /// whether it was opened just now (a reused one may have died while idle).
    pub(crate) fn link<'a>(
        &self,
        links: &'a mut Links,
        node: &Node,
    ) -> Result<(&'a mut Conn, bool), Failure> {
        match links.entry(node.clone()) {
            Entry::Occupied(e) => Ok((e.into_mut(), false)),
            Entry::Vacant(e) => Ok((e.insert(self.connect(node)?), true)),
        }
    }

    pub(crate) fn connect(&self, node: &Node) -> Result<Conn, Failure> {
        match node {
            Node::Main => net::connect(&self.cfg, "", None),
            Node::At(host, port) => net::connect_to(&self.cfg, host, *port, None),
        }
    }
}

/// Connections to the nodes one user (the writer, one pool slot) talks
/// to, opened on demand by [`Topology::link`].
pub(crate) type Links = HashMap<Node, Conn>;

/// What a reply error asks of the router: `MOVED`/`ASK` mean the slot
/// table is out of date.
pub(crate) fn is_redirect(code: &str) -> bool {
    code == "MOVED" || code == "ASK"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_table_from_cluster_slots() {
        let node = |h: &str, p: i64| Value::Array(vec![Value::BulkString(h.into()), Value::Int(p)]);
        let reply = Value::Array(vec![
            Value::Array(vec![Value::Int(0), Value::Int(8000), node("", 7000)]),
            Value::Array(vec![Value::Int(8001), Value::Int(16383), node("10.0.0.2", 7001)]),
        ]);
        let s = Slots::parse(&reply, "seed").unwrap();
        assert_eq!(s.masters, vec![Node::At("seed".into(), 7000), Node::At("10.0.0.2".into(), 7001)]);
        assert_eq!((s.owner[0], s.owner[8000], s.owner[8001], s.owner[16383]), (0, 0, 1, 1));
        assert!(Slots::parse(&Value::Array(vec![]), "x").is_none());
        assert!(Slots::parse(&Value::Nil, "x").is_none());
    }
}
