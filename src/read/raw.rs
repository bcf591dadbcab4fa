//! The raw reads: `get_raw`, `get_events_raw`, `load_raw`, `collections`,
//! on the cache's read connections and the core's loader.

use std::ops::ControlFlow;

use redis::Value;

use super::point::server_error;
use crate::error::{Error, Result};
use crate::ident::{self, Ident};
use crate::raw::{Collection, RawEntity, RawPart, RawSnapshot};
use crate::read::LoadReport;
use crate::Cache;

impl Cache {
    /// The stored bytes of entity `id` of `collection`, or `None`. One
    /// `GET` on the read connection, read-your-writes as [`Cache::get`].
    /// The bytes are not checked: any value stored there (by this API, the
    /// typed one, or another client) comes back as it is.
    ///
    /// # Errors
    ///
    /// As [`Cache::get`].
    ///
    /// # Example
    ///
    /// See [`Cache::put_raw`].
    pub fn get_raw(&self, collection: Collection, id: &str) -> Result<Option<Vec<u8>>> {
        ident::validate(id)?;
        self.get_bytes(&self.keys().entity(collection.as_str(), id))
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
        self.get_log(&self.keys().events(collection.as_str(), id))
    }

    /// Loads every entity of `collections` (with `with_events`, their event
    /// logs too) as stored bytes, with the parallel, pipelined reads and
    /// the consistent cut of [`Cache::load`] ([`LoadReport::consistent`],
    /// [`LoadReport::attempts`]), on connections made as [`Cache::open`]
    /// makes them. Entities listed in an index without a value are reported
    /// in [`LoadReport::issues`] and left out; the bytes are not checked.
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
        let mut got: Vec<(Collection, Vec<RawEntity>)> = Vec::new();
        let report = self.read_consistent(|r, _| {
            // Read again: what an earlier attempt gave is dropped.
            got.clear();
            let mut report = LoadReport::default();
            for c in unique(collections) {
                let (items, mut logs) = r.load_in(c.as_str(), with_events, false, None, &mut report)?;
                let entities = items.into_iter().map(|(id, value): (Ident, Vec<u8>)| {
                    let events = logs.remove(&id).unwrap_or_default();
                    RawEntity { id, value, events }
                });
                got.push((c, entities.collect()));
            }
            Ok((report, false))
        })?;
        Ok(RawSnapshot { collections: got, report })
    }

    /// As [`Cache::load_raw`], handing the entities to `each` as they
    /// arrive instead of collecting them: one [`RawPart`] per chunk of
    /// `load_chunk` ids, in id order (entities whose log holds more than
    /// 4,096 events come after their collection's chunks), on this thread
    /// while the workers read on. Returns the load's report.
    ///
    /// When the state is read again (a batch landed meanwhile), the parts
    /// carry the next [`RawPart::attempt`] and what the earlier parts gave
    /// is to be dropped. `each` returning [`ControlFlow::Break`] stops the
    /// calls (the read in progress completes, uncalled).
    ///
    /// ```no_run
    /// # use std::ops::ControlFlow;
    /// # use tradecache::{Cache, Config};
    /// use tradecache::raw::Collection;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// let mut values = 0;
    /// let mut attempt = 0;
    /// let report = cache.load_raw_each(&cache.collections()?, true, |part| {
    ///     if part.attempt != attempt {
    ///         (attempt, values) = (part.attempt, 0); // read again: start over
    ///     }
    ///     values += part.entities.len();
    ///     ControlFlow::Continue(())
    /// })?;
    /// assert!(report.consistent || report.attempts == 3);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::load_raw`].
    pub fn load_raw_each(
        &self,
        collections: &[Collection],
        with_events: bool,
        mut each: impl FnMut(&mut RawPart) -> ControlFlow<()>,
    ) -> Result<LoadReport> {
        let unique = unique(collections);
        let mut stopped = false;
        self.read_consistent(|r, attempt| {
            let mut report = LoadReport::default();
            for &c in &unique {
                let mut part = RawPart { attempt, collection: c, entities: Vec::new() };
                let mut held: Vec<(Ident, Vec<u8>)> = Vec::new();
                let mut sink = |items: &mut Vec<(Ident, Vec<u8>)>,
                                events: &mut Vec<(Ident, Vec<Vec<u8>>)>,
                                long: &[Ident]| {
                    part.entities.clear();
                    part.entities.reserve(items.len());
                    // Both in id order: a merge.
                    let mut evs = events.drain(..).peekable();
                    for (id, value) in items.drain(..) {
                        if long.contains(&id) {
                            held.push((id, value));
                            continue;
                        }
                        while evs.next_if(|(e, _)| *e < id).is_some() {}
                        let events = evs.next_if(|(e, _)| *e == id).map(|(_, l)| l).unwrap_or_default();
                        part.entities.push(RawEntity { id, value, events });
                    }
                    if stopped || part.entities.is_empty() {
                        return ControlFlow::Continue(());
                    }
                    let flow = each(&mut part);
                    stopped = flow.is_break();
                    flow
                };
                let (_, mut logs) =
                    r.load_in(c.as_str(), with_events, false, Some(&mut sink), &mut report)?;
                if !held.is_empty() && !stopped {
                    part.entities.clear();
                    for (id, value) in held {
                        let events = logs.remove(&id).unwrap_or_default();
                        part.entities.push(RawEntity { id, value, events });
                    }
                    stopped = each(&mut part).is_break();
                }
            }
            Ok((report, stopped))
        })
    }

    /// The collections of this cache that have an index set
    /// (`{trader}:index:{collection}`), sorted: every collection written
    /// through either API (and not since emptied by deletes). Two round
    /// trips, whatever else the database holds: the registry of
    /// collections (`{trader}:index:`, docs/usage.md "Keys"), then the type
    /// of each index set it names; one `SCAN` of this trader's index keys
    /// when the registry is not complete (it lacks its empty member).
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
    /// Connection failures and server errors (a refused `SMEMBERS`,
    /// `SCAN` or `TYPE`); [`Error::Config`] (field `collection`) when an
    /// index set's name cannot be a [`Collection`] (more than
    /// [`Collection::MAX_NAMES`] names interned in this process, or a name
    /// against the rule): a collection is never left out silently.
    pub fn collections(&self) -> Result<Vec<Collection>> {
        self.settle_reads()?;
        if let Some(registry) = self.keys().registry() {
            let reply = self.read(|p| p.cmd(&[b"SMEMBERS", registry.as_bytes()]))?;
            // Refused, it is an error (a `SCAN` would need more rights
            // still); of another type, the index sets are scanned.
            crate::read::check_reply(&reply, || registry.clone(), &self.config().redacted_url())?;
            if let Some(names) = crate::store::registry::members(reply) {
                return self.registered(&names);
            }
        }
        let prefix = self.keys().index("");
        let pattern = self.keys().index_pattern().unwrap_or_else(|| "index:*".into());
        let mut cursor = b"0".to_vec();
        let mut found = Vec::new();
        loop {
            let reply = self.read(|p| {
                p.cmd(&[b"SCAN", &cursor, b"MATCH", pattern.as_bytes(), b"COUNT", b"1000", b"TYPE", b"set"])
            })?;
            let (next, keys) = match reply {
                Value::Array(mut v) if v.len() == 2 => (v.swap_remove(0), v.pop()),
                Value::ServerError(e) => return Err(server_error(self, &pattern, &e)),
                other => {
                    return Err(Error::Codec { key: pattern, detail: format!("unexpected reply {other:?}") })
                }
            };
            if let Some(Value::Array(keys)) = keys {
                for k in keys {
                    let Value::BulkString(k) = k else { continue };
                    let Some(rest) = k.strip_prefix(prefix.as_bytes()) else { continue };
                    // `index:{c}:open` is a set too, and so is the registry
                    // (`index:`); a collection has no ':'.
                    if rest.is_empty() || rest.contains(&b':') {
                        continue;
                    }
                    found.push(found_collection(rest)?);
                }
            }
            match next {
                Value::BulkString(c) if c != b"0" => cursor = c,
                _ => break,
            }
        }
        found.sort_unstable_by_key(|c| c.as_str());
        found.dedup();
        Ok(found)
    }

    /// The names of a complete registry whose index set exists, sorted (one
    /// `TYPE` each, one round trip); interned only then, as the registry may
    /// name collections emptied since.
    fn registered(&self, names: &[Vec<u8>]) -> Result<Vec<Collection>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let indexes: Vec<String> =
            names.iter().map(|n| self.keys().index(&String::from_utf8_lossy(n))).collect();
        let slot_key = || self.keys().writer(&self.config().writer_id);
        let types = self.reads.pipeline(self.config(), slot_key, |p| {
            indexes.iter().for_each(|k| p.cmd(&[b"TYPE", k.as_bytes()]))
        })?;
        let mut found = Vec::new();
        for (name, t) in names.iter().zip(&types) {
            if let Value::ServerError(e) = t {
                return Err(server_error(self, &String::from_utf8_lossy(name), e));
            }
            if crate::net::discovery::text(t).as_deref() != Some("set") {
                continue;
            }
            found.push(found_collection(name)?);
        }
        found.sort_unstable_by_key(|c| c.as_str());
        found.dedup();
        Ok(found)
    }
}

/// Each collection once, in the order first named.
fn unique(collections: &[Collection]) -> Vec<Collection> {
    let first = |(i, c): &(usize, &Collection)| !collections[..*i].contains(c);
    collections.iter().enumerate().filter(first).map(|(_, &c)| c).collect()
}

/// The collection of an index set found by [`Cache::collections`]; a name
/// that cannot be one is an error, never left out of the list.
fn found_collection(name: &[u8]) -> Result<Collection> {
    let name = std::str::from_utf8(name).map_err(|_| {
        Error::Config(crate::error::ConfigError::one(
            "collection",
            String::from_utf8_lossy(name).escape_debug().to_string(),
            "an index set of this name exists, but a collection name is ASCII".to_string(),
        ))
    })?;
    Collection::new(name)
}
