//! The read calls of [`Kv`]: read-your-writes (the queued writes), then
//! the near cache, then Redis through the circuit breaker and the read
//! pool; compute on miss with single flight.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::breaker::{BreakerState, Permit};
use super::counters::Op;
use super::flight::Role;
use super::frame;
use super::near::Ticket;
use super::op;
use super::overlay::Found;
use super::pool::Reply;
use super::{with_scratch, Kv, Ttl};
use crate::channel::msg::DynEvent;
use crate::error::{Error, Result};
use crate::ident;
use crate::net::Failure;
use crate::store::codec;
use crate::{Encoding, ErrorKind};

/// A value as a `get` would read it back: encoded, then decoded as `T`.
fn decode_value<T: DeserializeOwned>(v: &dyn DynEvent, enc: Encoding) -> std::result::Result<T, String> {
    with_scratch(|s| {
        v.encode(enc, s).map_err(|e| format!("the queued value cannot be encoded: {e}"))?;
        codec::decode(s, enc)
    })
}

impl Kv {
    /// The value cached under `namespace`/`key`, if any: from this
    /// process's queued writes, the near cache, or Redis. `Ok(None)` when
    /// absent, expired, or corrupt (counted in [`super::KvStats::corrupt`] and
    /// logged), and at once while the breaker is open.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] for a bad namespace or key; a connection error
    /// ([`Error::Connect`], [`Error::Redis`], with
    /// [`crate::ErrorKind::ConnectionRefused`], [`crate::ErrorKind::Io`],
    /// [`crate::ErrorKind::Timeout`], …) when Redis cannot answer.
    pub fn get<T: DeserializeOwned>(&self, namespace: &str, key: &str) -> Result<Option<T>> {
        let t0 = self.clock();
        let out = self.lookup(self.item(namespace, key)?.as_str())?.flatten();
        self.count(out.is_some());
        self.timed(Op::Get, t0, namespace, key);
        Ok(out)
    }

    /// The values of several keys of one namespace, in order: queued
    /// writes and the near cache first, the rest with one `MGET` per
    /// `max_batch_size` keys, all sent in one write (pipelined `GET`s per
    /// master in a cluster).
    ///
    /// # Errors
    ///
    /// As [`Kv::get`], for any key.
    pub fn get_many<T: DeserializeOwned>(&self, namespace: &str, keys: &[&str]) -> Result<Vec<Option<T>>> {
        let t0 = self.clock();
        let full = keys.iter().map(|key| self.item(namespace, key)).collect::<Result<Vec<_>>>()?;
        let mut out: Vec<Option<T>> = Vec::with_capacity(keys.len());
        // The keys Redis must be asked for: their index and near-cache ticket.
        let mut remote = Vec::new();
        for (i, k) in full.iter().enumerate() {
            let found = self.local(k).unwrap_or_else(|ticket| {
                remote.push((i, ticket));
                None
            });
            out.push(found);
        }
        if !remote.is_empty() {
            let replies = self.call(|| {
                let ask: Vec<Vec<u8>> = remote.iter().map(|&(i, _)| full[i].as_bytes().to_vec()).collect();
                self.pool.mget(&ask, self.cfg.max_batch_size)
            })?;
            for ((i, ticket), reply) in remote.into_iter().zip(replies.into_iter().flatten()) {
                out[i] = self.found_in(&full[i], reply, ticket);
            }
        }
        for v in &out {
            self.count(v.is_some());
        }
        self.timed(Op::GetMany, t0, namespace, "*");
        Ok(out)
    }

    /// Whether `namespace`/`key` holds a value (this process's queued
    /// writes first). `false` at once while the breaker is open, as `get`
    /// is a miss then.
    ///
    /// # Errors
    ///
    /// As [`Kv::get`].
    pub fn exists(&self, namespace: &str, key: &str) -> Result<bool> {
        let t0 = self.clock();
        let item = self.item(namespace, key)?;
        let full = item.as_str();
        // The near cache before the queued writes, as in `local`.
        let near = self.near.as_ref().map(|n| n.get(full.as_bytes()));
        let found = match self.overlay.lookup(full, self.writer.shared.acked()) {
            Found::Value(_) => true,
            Found::Absent => false,
            Found::Unknown => match near {
                Some(Ok(_)) => true,
                _ => self.call(|| self.pool.exists(full.as_bytes()))?.unwrap_or(false),
            },
        };
        self.timed(Op::Exists, t0, namespace, key);
        Ok(found)
    }

    /// Deletes every key of `namespace` (on every master in a cluster) with
    /// `SCAN` + `UNLINK`, after the writes queued before the call are
    /// written; forgets the namespace in the near cache. Returns how many
    /// keys were deleted.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] for a bad namespace; [`Error::Unavailable`]
    /// while the breaker is open; a connection error when Redis cannot
    /// answer.
    pub fn clear_namespace(&self, namespace: &str) -> Result<u64> {
        let t0 = self.clock();
        ident::validate(namespace)?;
        if matches!(self.breaker.state(), BreakerState::Open { .. }) {
            self.breaker.short_circuited.fetch_add(1, Relaxed);
            return Err(self.unavailable());
        }
        // What was queued before the call goes first, so it is cleared too.
        match self.flush(self.cfg.redis.response_timeout) {
            Ok(()) | Err(Error::Dropped { .. }) => {}
            Err(e) => log::debug!("tradecache::kv: clear_namespace({namespace}): flush: {e}"),
        }
        let n = self.call(|| self.pool.scan_unlink(&self.keys.namespace_pattern(namespace)))?;
        let n = n.ok_or_else(|| self.unavailable())?;
        let head = self.keys.namespace_head(namespace);
        self.overlay.forget_prefix(&head);
        if let Some(near) = &self.near {
            near.clear(&head);
        }
        self.timed(Op::ClearNamespace, t0, namespace, "*");
        Ok(n)
    }

    /// The cached value, or else `compute()`'s, which is then cached for
    /// `ttl` and returned. Never fails because of Redis: when Redis is
    /// down or the breaker is open, it computes and caches nothing.
    /// Concurrent calls for one key that all miss run `compute` once; the
    /// others wait for its value (single flight).
    ///
    /// ```no_run
    /// # use tradecache::kv::{Kv, KvConfig, Ttl};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let kv = Kv::open(KvConfig::from_env()?)?;
    /// let var: f64 = kv.get_or_compute("risk", "P-123:var99", Ttl::Policy, || 1_250.5)?;
    /// assert_eq!(var, 1_250.5);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Only for bad input: [`Error::InvalidId`] for a bad namespace or key,
    /// [`Error::Config`] for a TTL under 1 ms (`compute` is not called).
    pub fn get_or_compute<T, F>(&self, namespace: &str, key: &str, ttl: Ttl, compute: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> T,
    {
        let t0 = self.clock();
        let item = self.item(namespace, key)?;
        let full = item.as_str();
        let expires = self.expires_at(namespace, ttl)?;
        let finish = |v: T, hit: bool| {
            self.count(hit);
            self.timed(Op::GetOrCompute, t0, namespace, key);
            Ok(v)
        };
        let cacheable = match self.lookup(full) {
            Ok(Some(Some(v))) => return finish(v, true),
            Ok(Some(None)) => true,
            // The breaker kept the call away from Redis, or Redis failed.
            Ok(None) | Err(_) => false,
        };
        let enc = self.cfg.redis.encoding;
        // From here on the call returns a computed value (its own or,
        // waiting, another caller's): a miss, unless the re-check below
        // finds the value cached after all.
        let value = match self.flights.join(full.as_bytes()) {
            Role::Follower(shared) => {
                self.metrics.flight_waits.fetch_add(1, Relaxed);
                shared.and_then(|v| decode_value::<T>(&*v, enc).ok()).unwrap_or_else(|| self.compute(compute))
            }
            Role::Leader(leader) => {
                // A caller that finished just before us may have cached it.
                if let Found::Value(queued) = self.overlay.lookup(full, self.writer.shared.acked()) {
                    if let Ok(v) = decode_value::<T>(&*queued, enc) {
                        leader.publish(Some(queued));
                        return finish(v, true);
                    }
                }
                let v = self.compute(compute);
                let shared: op::Value = Arc::new(v.clone());
                let set =
                    || self.push(op::Change::Set { item: item.clone(), value: shared.clone(), expires });
                if let Some(Err(e)) = cacheable.then(set) {
                    log::debug!("tradecache::kv: get_or_compute did not cache {namespace}:{key}: {e}");
                }
                leader.publish(Some(shared));
                v
            }
        };
        finish(value, false)
    }

    fn compute<T>(&self, f: impl FnOnce() -> T) -> T {
        self.metrics.computed.fetch_add(1, Relaxed);
        f()
    }

    /// The local layers, then Redis (through the breaker, as `call`: `None`
    /// when it kept the call away from Redis).
    fn lookup<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Option<T>>> {
        let ticket = match self.local(key) {
            Ok(found) => return Ok(Some(found)),
            Err(t) => t,
        };
        Ok(self.call(|| self.pool.get(key.as_bytes()))?.map(|reply| self.found_in(key, reply, ticket)))
    }

    /// The queued writes, then the near cache; `Err` with the near cache's
    /// ticket when Redis must be asked.
    ///
    /// The near cache is asked first: a write records itself in the overlay
    /// and then evicts the key there (bumping the ticket's epoch), both
    /// before `set` returns. So either the near answer or ticket comes after
    /// that eviction, and the overlay check sees the write (or it is settled:
    /// Redis holds it or newer); or before, and `fill` refuses a value read
    /// from Redis on that ticket. The other way round, a write between the
    /// two let an older value from Redis be kept and served once settled.
    fn local<T: DeserializeOwned>(&self, key: &str) -> std::result::Result<Option<T>, Option<Ticket>> {
        let near = self.near.as_ref().map(|n| n.get(key.as_bytes()));
        match self.overlay.lookup(key, self.writer.shared.acked()) {
            Found::Value(item) => {
                self.metrics.overlay_hits.fetch_add(1, Relaxed);
                return Ok(self.decoded(key, decode_value(&*item, self.cfg.redis.encoding)));
            }
            Found::Absent => return Ok(None),
            Found::Unknown => {}
        }
        match (near, &self.near) {
            (Some(Ok((body, enc))), Some(n)) => {
                n.hits.fetch_add(1, Relaxed);
                Ok(self.decoded(key, codec::decode(&body, enc)))
            }
            (Some(Err(ticket)), _) => Err(Some(ticket)),
            _ => Err(None),
        }
    }

    fn found_in<T: DeserializeOwned>(&self, key: &str, reply: Reply, ticket: Option<Ticket>) -> Option<T> {
        let value = match reply {
            Reply::Nil => return None,
            Reply::Refused(text) => Err(text),
            Reply::Value(stored) => {
                frame::unframe(&stored, self.cfg.redis.max_value_bytes).and_then(|(enc, body)| {
                    if let (Some(near), Some(t)) = (&self.near, ticket) {
                        near.fill(t, key.as_bytes(), Arc::from(&body[..]), enc);
                    }
                    codec::decode(&body, enc)
                })
            }
        };
        self.decoded(key, value)
    }

    /// A decoded value is a hit; an undecodable one a miss, counted as
    /// corrupt and logged.
    fn decoded<T>(&self, key: &str, r: std::result::Result<T, String>) -> Option<T> {
        r.map_err(|text| {
            self.metrics.corrupt.fetch_add(1, Relaxed);
            log::warn!("tradecache::kv: unusable value at {key} (counted as a miss): {text}");
        })
        .ok()
    }

    /// Counts one lookup of one key (see [`super::KvStats::misses`]).
    fn count(&self, hit: bool) {
        let c = &self.metrics;
        if hit { &c.hits } else { &c.misses }.fetch_add(1, Relaxed);
    }

    /// Runs a Redis call under the breaker, counting its outcome; `None`
    /// when the breaker keeps it away from Redis.
    fn call<R>(&self, f: impl FnOnce() -> std::result::Result<R, Failure>) -> Result<Option<R>> {
        let permit = self.breaker.permit();
        if permit == Permit::Deny {
            return Ok(None);
        }
        match f() {
            Ok(r) => {
                self.breaker.success(permit);
                Ok(Some(r))
            }
            Err(mut fail) => {
                self.metrics.read_errors[fail.class().index()].fetch_add(1, Relaxed);
                if fail.class() == ErrorKind::Command {
                    self.breaker.release(permit);
                } else {
                    self.breaker.failure(permit);
                }
                if fail.addr.is_empty() {
                    fail.addr = self.cfg.redis.redacted_url();
                }
                Err(fail.into_error())
            }
        }
    }

    fn unavailable(&self) -> Error {
        let retry = match self.breaker.state() {
            BreakerState::Open { retry_in } => format!("for another {retry_in:?}"),
            _ => "while a probe is under way".into(),
        };
        Error::Unavailable(format!(
            "the kv circuit breaker is open {retry} after {} consecutive failure(s)",
            self.cfg.breaker_failures
        ))
    }
}
