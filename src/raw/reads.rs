//! The raw reads: `get_raw`, `get_events_raw`, `load_raw`, `collections`,
//! on the cache's read connections and the core's loader.

use std::time::Instant;

use redis::Value;

use super::{Collection, RawEntity, RawEntry, RawItem, RawSnapshot};
use crate::error::{Error, Result};
use crate::ident;
use crate::load::{check_strict, decode_events, LoadReport, Reader};
use crate::Cache;

/// How many times `load_raw` reads while batches keep landing (as `load`).
const LOAD_ATTEMPTS: u32 = 3;

impl Cache {
    /// The stored bytes of entity `id` of `collection`, or `None`. One
    /// `GET` on the read connection, read-your-writes as [`Cache::get`].
    /// The bytes are not checked: any value stored there (by this API, the
    /// typed one, or another client) comes back as it is.
    ///
    /// # Errors
    ///
    /// As [`Cache::get`] ([`Error::InvalidId`], [`Error::WaitTimeout`],
    /// [`Error::Closed`], connection failures, [`Error::Redis`] for a key
    /// of another type).
    ///
    /// # Example
    ///
    /// See [`Cache::put_raw`].
    pub fn get_raw(&self, collection: Collection, id: &str) -> Result<Option<Vec<u8>>> {
        ident::validate(id)?;
        self.settle_reads(crate::load::reads::settle_timeout(self))?;
        let key = self.keys().entity(collection.0, id);
        match self.raw_read(|p| p.cmd(&[b"GET", key.as_bytes()]))? {
            Value::Nil => Ok(None),
            Value::BulkString(b) => Ok(Some(b)),
            Value::ServerError(e) => Err(crate::load::reads::server_error(self, &key, &e)),
            other => Err(Error::Codec { key, detail: format!("unexpected reply {other:?}") }),
        }
    }

    /// The stored entries of the event log of entity `id` of `collection`,
    /// in append order (empty when there is none). One `LRANGE` on the
    /// read connection, read-your-writes as [`Cache::get`].
    ///
    /// # Errors
    ///
    /// As [`Cache::get_raw`].
    ///
    /// # Example
    ///
    /// See [`Cache::append_raw`].
    pub fn get_events_raw(&self, collection: Collection, id: &str) -> Result<Vec<Vec<u8>>> {
        ident::validate(id)?;
        self.settle_reads(crate::load::reads::settle_timeout(self))?;
        let key = self.keys().events(collection.0, id);
        let reply = self.raw_read(|p| p.cmd(&[b"LRANGE", key.as_bytes(), b"0", b"-1"]))?;
        if let Value::ServerError(e) = &reply {
            return Err(crate::load::reads::server_error(self, &key, e));
        }
        let mut report = LoadReport::default();
        let entries = decode_events::<RawEntry>(reply, &key, self.config().encoding, &mut report);
        match report.issues.into_iter().next() {
            None => Ok(entries.into_iter().map(|e| e.0).collect()),
            Some(issue) => Err(Error::Codec { key: issue.key, detail: issue.problem }),
        }
    }

    /// Loads every entity of `collections` (with `with_events`, their event
    /// logs too) as stored bytes: the parallel, pipelined reads of
    /// [`Cache::load`] (ids from the index sets, sorted, in chunks of
    /// `load_chunk` on up to four connections of their own, long logs in
    /// slices), and its consistent cut: the commit marker is read before
    /// and after, and everything read again (three times at most) when a
    /// batch landed in between ([`LoadReport::consistent`],
    /// [`LoadReport::attempts`]). Connections are made as [`Cache::open`]
    /// makes them: TLS, Sentinel and Cluster alike.
    ///
    /// Entities listed in an index without a value are reported in
    /// [`LoadReport::issues`] and left out; the bytes themselves are not
    /// checked.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// use tradecache::raw::{Collection, RawValue};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// let bots = Collection::new("bots")?;
    /// cache.put_raw(bots, "B-1", RawValue::msgpack(vec![0x2a])?)?;
    /// cache.append_raw(bots, "B-1", RawValue::msgpack(vec![0x01])?)?;
    /// cache.flush(Duration::from_secs(1))?;
    /// let snap = cache.load_raw(&[bots], true)?;
    /// assert!(snap.report.consistent);
    /// let (collection, entities) = &snap.collections[0];
    /// assert_eq!(*collection, bots);
    /// let b1 = entities.iter().find(|e| e.id.as_str() == "B-1").unwrap();
    /// assert_eq!((b1.value.as_slice(), b1.events.as_slice()), (&[0x2a][..], &[vec![0x01]][..]));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Connection failures; with `strict_load`, [`Error::Load`] when any
    /// issue was found.
    pub fn load_raw(&self, collections: &[Collection], with_events: bool) -> Result<RawSnapshot> {
        let start = Instant::now();
        let mut r = Reader::open(self.config(), self.keys())?;
        let marker = self.keys().writer(&self.config().writer_id);
        let mut attempts = 0;
        let mut snap = loop {
            attempts += 1;
            let before = r.marker(&marker)?;
            let mut snap = RawSnapshot::default();
            for &c in collections {
                let loaded = r.load_in::<RawItem, RawEntry>(c.0, with_events, false)?;
                let mut events = loaded.events;
                let entities = loaded
                    .items
                    .into_iter()
                    .map(|RawItem(id, value)| {
                        let events = events.remove(&id).map(|l| l.into_iter().map(|e| e.0).collect());
                        RawEntity { id, value, events: events.unwrap_or_default() }
                    })
                    .collect();
                snap.collections.push((c, entities));
                snap.report.merge(loaded.report);
            }
            snap.report.consistent = r.marker(&marker)? == before;
            if snap.report.consistent || attempts == LOAD_ATTEMPTS {
                break snap;
            }
        };
        snap.report.attempts = attempts;
        snap.report.elapsed = start.elapsed();
        check_strict(self.config(), &snap.report)?;
        Ok(snap)
    }

    /// The collections of this cache that have an index set
    /// (`{trader}:index:{collection}`), sorted: every collection written
    /// through either API (and not since emptied by deletes). One `SCAN`
    /// of this trader's index keys on a read connection.
    ///
    /// ```no_run
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// let snap = cache.load_raw(&cache.collections()?, true)?;
    /// # let _ = snap;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Connection failures and server errors.
    pub fn collections(&self) -> Result<Vec<Collection>> {
        self.settle_reads(crate::load::reads::settle_timeout(self))?;
        let prefix = self.keys().index("");
        let pattern = self.keys().index_pattern().unwrap_or_else(|| "index:*".into());
        let mut cursor = b"0".to_vec();
        let mut found = Vec::new();
        loop {
            let reply = self.raw_read(|p| {
                p.cmd(&[b"SCAN", &cursor, b"MATCH", pattern.as_bytes(), b"COUNT", b"1000", b"TYPE", b"set"])
            })?;
            let (next, keys) = match reply {
                Value::Array(mut v) if v.len() == 2 => {
                    let keys = v.pop();
                    (v.pop(), keys)
                }
                Value::ServerError(e) => return Err(crate::load::reads::server_error(self, &pattern, &e)),
                other => {
                    return Err(Error::Codec { key: pattern, detail: format!("unexpected reply {other:?}") })
                }
            };
            if let Some(Value::Array(keys)) = keys {
                for k in keys {
                    let Value::BulkString(k) = k else { continue };
                    let Some(rest) = k.strip_prefix(prefix.as_bytes()) else { continue };
                    // `index:{c}:open` is a set too; a collection has no ':'.
                    if let Some(c) = std::str::from_utf8(rest).ok().and_then(|c| Collection::new(c).ok()) {
                        found.push(c);
                    }
                }
            }
            match next {
                Some(Value::BulkString(c)) if c != b"0" => cursor = c,
                _ => break,
            }
        }
        found.sort_unstable_by_key(|c| c.0);
        found.dedup();
        Ok(found)
    }

    fn raw_read(&self, pack: impl Fn(&mut crate::net::Packer)) -> Result<Value> {
        let slot_key = || self.keys().writer(&self.config().writer_id);
        self.read_link().round_trip(self.config(), slot_key, pack)
    }
}
