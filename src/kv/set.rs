//! The write calls of [`Kv`]: check the key, queue the write for the
//! writer thread (with its sequence number, recorded for read-your-writes),
//! return. No I/O and no encoding here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use serde::Serialize;

use super::op::{self, KvMsg};
use super::{with_scratch, Kv, Ttl};
use crate::channel::Count;
use crate::error::{Error, Result};
use crate::ident::Ident;
use crate::seq::Seq;

impl Kv {
    /// Caches `value` under `namespace`/`key` for `ttl`. Hot path: checks
    /// the key and queues a clone behind an `Arc` (no I/O, no encoding); the
    /// writer thread encodes it and sends `SET key value PX ttl`. A `get` in
    /// this process returns it at once. A value that is not encodable, or
    /// over `max_value_bytes` encoded, is dropped by the writer, counted in
    /// [`super::KvStats::dropped`] and reported by [`Kv::take_dropped`] and
    /// `wait`/`flush` ([`Error::Dropped`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] for a bad namespace or key; [`Error::Config`]
    /// for a TTL under 1 ms; [`Error::Unavailable`] when the writer's
    /// channel is full (the write is not queued); [`Error::Closed`] after
    /// `close`.
    pub fn set<T>(&self, namespace: &str, key: &str, value: &T, ttl: Ttl) -> Result<Seq>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let item = self.item(namespace, key)?;
        let expires = self.expires_at(namespace, ttl)?;
        self.push(op::Change::Set { item, value: Arc::new(value.clone()), expires })
    }

    /// [`Kv::set`] for several keys of one namespace; every key is checked
    /// before any write is queued. Returns the last write's sequence
    /// number.
    ///
    /// # Errors
    ///
    /// As [`Kv::set`]; on an error nothing is queued, except with
    /// [`Error::Unavailable`] (the channel filled part-way), when the
    /// writes before it are.
    pub fn set_many<T>(&self, namespace: &str, items: &[(&str, &T)], ttl: Ttl) -> Result<Seq>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let expires = self.expires_at(namespace, ttl)?;
        let items =
            items.iter().map(|(key, v)| Ok((self.item(namespace, key)?, *v))).collect::<Result<Vec<_>>>()?;
        let mut last = self.last_seq();
        for (item, value) in items {
            last = self.push(op::Change::Set { item, value: Arc::new(value.clone()), expires })?;
        }
        Ok(last)
    }

    /// Removes a key (queued, as for [`Kv::set`]; a `get` here sees it gone
    /// at once).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], [`Error::Unavailable`], [`Error::Closed`] as
    /// for [`Kv::set`].
    pub fn delete(&self, namespace: &str, key: &str) -> Result<Seq> {
        self.push(op::Change::Del { key: self.item(namespace, key)? })
    }

    /// Gives an existing key a new TTL from now (`PEXPIRE`, or `PERSIST`
    /// for [`Ttl::Never`]): extends a session. Nothing happens to a key
    /// that does not exist.
    ///
    /// # Errors
    ///
    /// As [`Kv::delete`], and [`Error::Config`] for a TTL under 1 ms.
    pub fn touch(&self, namespace: &str, key: &str, ttl: Ttl) -> Result<Seq> {
        let key = self.item(namespace, key)?;
        let expires = self.expires_at(namespace, ttl)?;
        self.push(op::Change::Expire { key, expires })
    }

    /// The full key, checked (see the module docs for the rules).
    pub(super) fn item(&self, namespace: &str, key: &str) -> Result<Ident> {
        crate::ident::validate(namespace)?;
        super::keyspace::validate_key(key)?;
        Ok(with_scratch(|s| {
            self.keys.write(s, namespace, key);
            Ident::new_unchecked(&String::from_utf8_lossy(s))
        }))
    }

    /// When a write made now expires.
    pub(super) fn expires_at(&self, namespace: &str, ttl: Ttl) -> Result<Option<Instant>> {
        let d = match ttl {
            Ttl::Policy => self.cfg.ttl_of(namespace),
            Ttl::After(d) => Some(d),
            Ttl::Never => None,
        };
        match d {
            Some(d) if d < Duration::from_millis(1) => Err(Error::Config(crate::ConfigError::one(
                "ttl",
                format!("{d:?}"),
                "at least 1ms (Redis counts in milliseconds), or Ttl::Never",
            ))),
            // Capped: a TTL of `Duration::MAX` is "very long", not a panic.
            Some(d) => Ok(Some(crate::net::deadline_after(d))),
            None => Ok(None),
        }
    }

    #[inline]
    pub(super) fn push(&self, op: op::Change) -> Result<Seq> {
        let tx = self.producer.lock();
        if self.writer.is_closed() {
            return Err(Error::Closed);
        }
        // Only this call, under the lock, moves `accepted`.
        let seq = self.writer.shared.accepted() + 1;
        let item = op.item().clone();
        let undo = self.overlay.record(seq, &op, || self.writer.shared.acked());
        if let Some(near) = &self.near {
            near.evict(item.as_bytes());
        }
        match tx.try_send(KvMsg::Write { seq, op }) {
            Ok(()) => {
                self.writer.shared.note_accepted(seq);
                Ok(Seq::new(seq))
            }
            Err(e) => {
                self.overlay.undo(seq, &item, undo);
                if let TrySendError::Disconnected(_) = e {
                    return Err(Error::Closed);
                }
                self.writer.shared.add(Count::Rejected, 1);
                Err(Error::Unavailable(format!(
                    "the kv writer's channel is full ({} writes queued): write to {} not queued",
                    self.cfg.channel_capacity, item
                )))
            }
        }
    }
}
