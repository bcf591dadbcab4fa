//! The near cache (opt-in): values read from Redis kept in process for
//! `near_ttl`, bounded by `near_capacity` (split over shards; a full shard
//! evicts an expired entry, or else an arbitrary one: no LRU upkeep on
//! every hit).
//!
//! With `near_tracking` (standalone and Sentinel) the server evicts sooner:
//! a listener thread subscribes one connection to `__redis__:invalidate`
//! and turns on `CLIENT TRACKING … REDIRECT <listener> BCAST PREFIX
//! <key_prefix>:` on another (the RESP2 two-connection form: redis-rs's
//! blocking `Connection` surfaces RESP3 pushes only while reading a reply,
//! while a pubsub connection's `get_message` blocks on exactly that). When
//! either connection is lost, the near cache is emptied and both are set
//! up again.
//!
//! How writes, lookups and fills are ordered so that a `get` never brings
//! back a value older than one this process wrote: `Kv::local`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::Value;

use super::op::KeyHash;
use super::route::{Node, Topology};
use crate::net::{self, Retry};

const SHARDS: usize = 32;

struct Entry {
    /// The encoded value (decompressed, without the header).
    body: Arc<[u8]>,
    encoding: crate::Encoding,
    until: Instant,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Box<[u8]>, Entry, KeyHash>,
    /// Bumped by every eviction by key: a read that began before it does
    /// not keep its value.
    epoch: u64,
}

#[derive(Default)]
pub(crate) struct Near {
    hasher: KeyHash,
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    ttl: Duration,
    pub(crate) hits: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    /// The tracking listener is subscribed (when tracking is on).
    subscribed: AtomicBool,
    /// Set to stop the tracking listener.
    stop: AtomicBool,
    /// The tracking listener, while it runs (with `near_tracking`).
    listener: Mutex<Option<JoinHandle<()>>>,
}

/// What a read that may fill the near cache saw before going to Redis.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(u64);

impl Near {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::default()).collect();
        Near { shards, per_shard: capacity.div_ceil(SHARDS).max(1), ttl, ..Near::default() }
    }

    #[inline]
    fn shard(&self, key: &[u8]) -> &Mutex<Shard> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// The value if held and fresh, else a ticket for [`Near::fill`].
    pub(crate) fn get(&self, key: &[u8]) -> Result<(Arc<[u8]>, crate::Encoding), Ticket> {
        let mut s = self.shard(key).lock();
        match s.map.get(key) {
            // Counted as a hit by the caller, if it uses it (queued writes
            // take precedence).
            Some(e) if e.until > Instant::now() => Ok((e.body.clone(), e.encoding)),
            Some(_) => {
                s.map.remove(key);
                Err(Ticket(s.epoch))
            }
            None => Err(Ticket(s.epoch)),
        }
    }

    /// Keeps a value read from Redis, unless its shard saw a write or an
    /// invalidation since `ticket` was taken.
    pub(crate) fn fill(&self, ticket: Ticket, key: &[u8], body: Arc<[u8]>, encoding: crate::Encoding) {
        let mut s = self.shard(key).lock();
        if s.epoch != ticket.0 {
            return;
        }
        if s.map.len() >= self.per_shard && !s.map.contains_key(key) {
            let now = Instant::now();
            let victim = s
                .map
                .iter()
                .find(|(_, e)| e.until <= now)
                .or_else(|| s.map.iter().next())
                .map(|(k, _)| k.clone());
            if let Some(k) = victim {
                s.map.remove(&k);
            }
        }
        let until = net::deadline_after(self.ttl);
        s.map.insert(key.into(), Entry { body, encoding, until });
    }

    /// Forgets `key` (written here, or changed elsewhere).
    pub(crate) fn evict(&self, key: &[u8]) {
        let mut s = self.shard(key).lock();
        s.epoch += 1;
        s.map.remove(key);
    }

    /// Forgets everything (tracking lost, or `clear_namespace` with a
    /// prefix `head`).
    pub(crate) fn clear(&self, head: &[u8]) {
        for s in self.shards.iter() {
            let mut s = s.lock();
            s.epoch += 1;
            if head.is_empty() {
                s.map.clear();
            } else {
                s.map.retain(|k, _| !k.starts_with(head));
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }

    /// Whether the tracking listener is subscribed; `None` when none runs.
    pub(crate) fn tracking(&self) -> Option<bool> {
        self.listener.lock().is_some().then(|| self.subscribed.load(Relaxed))
    }

    /// Stops the tracking listener, if any, and joins it.
    pub(crate) fn stop_tracking(&self) {
        self.stop.store(true, SeqCst);
        let listener = self.listener.lock().take();
        if let Some(t) = listener {
            let _ = t.join();
        }
    }
}

/// Starts the tracking listener thread (until [`Near::stop_tracking`]).
pub(crate) fn spawn_tracking(topo: Arc<Topology>, owner: &Arc<Near>, prefix: Vec<u8>) -> std::io::Result<()> {
    let near = owner.clone();
    let t = std::thread::Builder::new().name("tradecache-kv-tracking".into()).spawn(move || {
        let mut retry = Retry::new(topo.cfg.reconnect_backoff_min, topo.cfg.reconnect_backoff_max);
        while !near.stop.load(SeqCst) {
            let result = listen(&topo, &near, &prefix);
            near.subscribed.store(false, SeqCst);
            // Invalidations may have been missed while not listening.
            near.clear(b"");
            if let Err(text) = result {
                log::debug!("tradecache::kv: near-cache invalidation: {text}");
                retry.schedule();
                while !near.stop.load(SeqCst) && retry.is_waiting() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            } else {
                retry.reset();
            }
        }
    })?;
    *owner.listener.lock() = Some(t);
    Ok(())
}

/// One session: subscribe, enable tracking, evict what the server names.
fn listen(topo: &Topology, near: &Near, prefix: &[u8]) -> Result<(), String> {
    let mut listener = topo.connect(&Node::Main).map_err(|f| f.text)?;
    let id = match listener.query(redis::cmd("CLIENT").arg("ID")) {
        Ok(Value::Int(id)) => id,
        other => return Err(format!("CLIENT ID: {other:?}")),
    };
    let mut tracker = topo.connect(&Node::Main).map_err(|f| f.text)?;
    let mut ps = listener.con.as_pubsub();
    ps.subscribe("__redis__:invalidate").map_err(|e| e.to_string())?;
    let mut cmd = redis::cmd("CLIENT");
    cmd.arg("TRACKING").arg("on").arg("REDIRECT").arg(id).arg("BCAST");
    if !prefix.is_empty() {
        cmd.arg("PREFIX").arg(prefix);
    }
    tracker.query(&cmd).map_err(|e| format!("CLIENT TRACKING: {e}"))?;
    // The near cache may hold values from before the subscription.
    near.clear(b"");
    near.subscribed.store(true, SeqCst);
    ps.set_read_timeout(Some(Duration::from_millis(100))).map_err(|e| e.to_string())?;
    let mut last_ping = Instant::now();
    while !near.stop.load(SeqCst) {
        match ps.get_message() {
            Ok(msg) => match msg.get_payload::<Value>() {
                Ok(Value::Array(keys)) => {
                    for k in keys {
                        if let Value::BulkString(k) = k {
                            near.invalidations.fetch_add(1, Relaxed);
                            near.evict(&k);
                        }
                    }
                }
                // A null payload: the server flushed its keyspace.
                _ => near.clear(b""),
            },
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(format!("invalidation connection: {e}")),
        }
        // Tracking lives and dies with the tracker's connection: check it.
        if last_ping.elapsed() >= Duration::from_secs(1) {
            last_ping = Instant::now();
            tracker.query(&redis::cmd("PING")).map_err(|e| format!("tracking connection: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_respects_writes_since_the_ticket() {
        let n = Near::new(64, Duration::from_secs(10));
        let body: Arc<[u8]> = Arc::from(&b"v"[..]);
        let t = n.get(b"k").unwrap_err();
        n.evict(b"k");
        n.fill(t, b"k", body.clone(), crate::Encoding::MsgPack);
        assert!(n.get(b"k").is_err(), "a read older than a write is not kept");
        let t = n.get(b"k").unwrap_err();
        n.fill(t, b"k", body, crate::Encoding::MsgPack);
        assert_eq!(&*n.get(b"k").unwrap().0, b"v");
        n.clear(b"k");
        assert_eq!(n.len(), 0);
    }

    #[test]
    fn bounded_and_expiring() {
        let n = Near::new(SHARDS, Duration::from_millis(20));
        for i in 0..1000u32 {
            let k = i.to_le_bytes();
            let t = n.get(&k).unwrap_err();
            n.fill(t, &k, Arc::from(&b"v"[..]), crate::Encoding::MsgPack);
        }
        assert!(n.len() <= SHARDS, "{}", n.len());
        std::thread::sleep(Duration::from_millis(30));
        assert!((0..1000u32).all(|i| n.get(&i.to_le_bytes()).is_err()), "expired");
    }
}
