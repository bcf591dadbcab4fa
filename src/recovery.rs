//! Loading a trader's state back: ids from the index sets, values from
//! pipelined reads in chunks, decode problems reported by key.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use redis::Value;

use crate::cache::Cache;
use crate::codec;
use crate::config::Config;
use crate::connection::{self, Conn, Packer};
use crate::entity::{Entity, Event};
use crate::error::{Error, Result};
use crate::ident::Ident;
use crate::keys::Keys;
use crate::model::{Account, AccountEvent, Instrument, Order, OrderEvent, Position};

/// One value that could not be used during a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadIssue {
    /// The Redis key concerned.
    pub key: String,
    /// What is wrong with it.
    pub problem: String,
}

impl std::fmt::Display for LoadIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

/// What a load found besides the values themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadReport {
    /// Values that did not decode, keys of the wrong Redis type, index
    /// entries without a value.
    pub issues: Vec<LoadIssue>,
    /// Repeated event ids dropped from event logs.
    pub duplicate_events: u64,
    /// Keys read.
    pub keys_read: u64,
    /// Round trips made.
    pub round_trips: u64,
    /// How long the load took.
    pub elapsed: Duration,
    /// [`Cache::load`] only: no batch of this writer was applied while it
    /// read (its commit marker was the same before and after), so the
    /// state is exactly what some prefix of the acknowledged batches
    /// produced. `false` when batches kept landing through every attempt;
    /// each entity is then read whole, but entities (and an entity and its
    /// log) may be from different batches.
    pub consistent: bool,
    /// How many times [`Cache::load`] read the state (it reads again when a
    /// batch landed meanwhile, up to three times).
    pub attempts: u32,
}

impl LoadReport {
    fn merge(&mut self, other: LoadReport) {
        self.issues.extend(other.issues);
        self.duplicate_events += other.duplicate_events;
        self.keys_read += other.keys_read;
        self.round_trips += other.round_trips;
    }

    /// No issue was found.
    pub fn is_clean(&self) -> bool {
        self.issues.is_empty()
    }
}

/// Everything a trader had persisted, as loaded by [`Cache::load`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Snapshot {
    /// Every instrument, sorted by id.
    pub instruments: Vec<Instrument>,
    /// Every account, sorted by id.
    pub accounts: Vec<Account>,
    /// Each account's events in append order (duplicates dropped).
    pub account_events: HashMap<Ident, Vec<AccountEvent>>,
    /// Every order, sorted by id.
    pub orders: Vec<Order>,
    /// Each order's events in append order (duplicates dropped).
    pub order_events: HashMap<Ident, Vec<OrderEvent>>,
    /// Every position, sorted by id.
    pub positions: Vec<Position>,
    /// What else the load found.
    pub report: LoadReport,
}

/// Entities of one collection with their (optional) event logs.
pub(crate) struct Loaded<T, E> {
    pub(crate) items: Vec<T>,
    pub(crate) events: HashMap<Ident, Vec<E>>,
    pub(crate) report: LoadReport,
}

/// A short-lived reader on its own connection (the flusher's stays free).
pub(crate) struct Reader<'a> {
    conn: Conn,
    /// The configured encoding, which decides the rare value that reads as
    /// either (see `codec::decode`).
    encoding: crate::config::Encoding,
    keys: &'a Keys,
    chunk: usize,
    packer: Packer,
    scratch: Vec<u8>,
}

impl<'a> Reader<'a> {
    pub(crate) fn open(cfg: &Config, keys: &'a Keys) -> Result<Self> {
        let marker = keys.writer(&cfg.writer_id);
        let conn = connection::connect(cfg, &marker, None).map_err(|f| f.into_error())?;
        Ok(Reader {
            conn,
            encoding: cfg.encoding,
            keys,
            chunk: cfg.load_chunk.max(1),
            packer: Packer::default(),
            scratch: Vec::new(),
        })
    }

    /// Sends the packed commands and reads one reply per command.
    fn round_trip(&mut self, report: &mut LoadReport) -> Result<Vec<Value>> {
        report.round_trips += 1;
        let addr = self.conn.addr.clone();
        self.conn
            .con
            .send_packed_command(&self.packer.buf)
            .map_err(|e| connection::failure(&e, &addr).into_error())?;
        let mut out = Vec::with_capacity(self.packer.commands);
        for _ in 0..self.packer.commands {
            out.push(self.conn.con.recv_response().map_err(|e| connection::failure(&e, &addr).into_error())?);
        }
        self.packer.clear();
        Ok(out)
    }

    pub(crate) fn ids(&mut self, collection: &str, report: &mut LoadReport) -> Result<Vec<Ident>> {
        let index = self.keys.index(collection);
        self.packer.clear();
        self.packer.cmd(&[b"SMEMBERS", index.as_bytes()]);
        let reply = self.round_trip(report)?.pop().unwrap_or(Value::Nil);
        let members = match reply {
            Value::Array(v) | Value::Set(v) => v,
            Value::Nil => Vec::new(),
            Value::ServerError(e) => {
                report.issues.push(LoadIssue { key: index, problem: e.to_string() });
                return Ok(Vec::new());
            }
            other => {
                report.issues.push(LoadIssue { key: index, problem: format!("unexpected reply {other:?}") });
                return Ok(Vec::new());
            }
        };
        let mut ids = Vec::with_capacity(members.len());
        for m in members {
            let Value::BulkString(b) = m else { continue };
            match std::str::from_utf8(&b).ok().map(Ident::new) {
                Some(Ok(id)) => ids.push(id),
                _ => report.issues.push(LoadIssue {
                    key: index.clone(),
                    problem: format!("invalid id {:?} in index", String::from_utf8_lossy(&b)),
                }),
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Loads every entity of `T`, and with `E` its event logs.
    pub(crate) fn load<T: Entity, E: Event>(&mut self, with_events: bool) -> Result<Loaded<T, E>> {
        let mut report = LoadReport::default();
        let ids = self.ids(T::COLLECTION, &mut report)?;
        let mut items = Vec::with_capacity(ids.len());
        let mut events = HashMap::new();
        let chunks: Vec<&[Ident]> = ids.chunks(self.chunk).collect();
        let mut requests = Vec::with_capacity(chunks.len());
        for chunk in &chunks {
            for id in chunk.iter() {
                self.scratch.clear();
                self.keys.write_entity(&mut self.scratch, T::COLLECTION, id);
                self.packer.cmd(&[b"GET", &self.scratch]);
                if with_events {
                    self.scratch.extend_from_slice(b":events");
                    self.packer.cmd(&[b"LRANGE", &self.scratch, b"0", b"-1"]);
                }
            }
            requests.push((std::mem::take(&mut self.packer.buf), self.packer.commands));
            self.packer.clear();
        }
        report.round_trips += requests.len() as u64;
        // One thread talks to Redis (keeping the next chunk's request in
        // flight while it reads this one's replies); this one decodes.
        let (tx, rx) = crossbeam_channel::bounded::<Result<Vec<Value>>>(4);
        let conn = &mut self.conn;
        std::thread::scope(|scope| -> Result<()> {
            scope.spawn(move || {
                let addr = conn.addr.clone();
                let fail = |e: &redis::RedisError| connection::failure(e, &addr).into_error();
                let mut sent = 0;
                for i in 0..requests.len() {
                    while sent < requests.len() && sent <= i + 1 {
                        if let Err(e) = conn.con.send_packed_command(&requests[sent].0) {
                            let _ = tx.send(Err(fail(&e)));
                            return;
                        }
                        sent += 1;
                    }
                    let mut replies = Vec::with_capacity(requests[i].1);
                    for _ in 0..requests[i].1 {
                        match conn.con.recv_response() {
                            Ok(v) => replies.push(v),
                            Err(e) => {
                                let _ = tx.send(Err(fail(&e)));
                                return;
                            }
                        }
                    }
                    if tx.send(Ok(replies)).is_err() {
                        return;
                    }
                }
            });
            for chunk in &chunks {
                let replies = rx.recv().map_err(|_| Error::Closed)??;
                let mut it = replies.into_iter();
                for id in chunk.iter() {
                    let value = it.next().unwrap_or(Value::Nil);
                    report.keys_read += 1;
                    let key = || self.keys.entity(T::COLLECTION, id);
                    match value {
                        Value::BulkString(b) => match codec::decode::<T>(&b, self.encoding) {
                            Ok(v) if v.id() == id.as_str() => items.push(v),
                            Ok(v) => report.issues.push(LoadIssue {
                                key: key(),
                                problem: format!("value has id {:?}, key says {id:?}", v.id()),
                            }),
                            Err(e) => report.issues.push(LoadIssue { key: key(), problem: e.to_string() }),
                        },
                        Value::Nil => report
                            .issues
                            .push(LoadIssue { key: key(), problem: "in the index but has no value".into() }),
                        Value::ServerError(e) => {
                            report.issues.push(LoadIssue { key: key(), problem: e.to_string() })
                        }
                        other => report
                            .issues
                            .push(LoadIssue { key: key(), problem: format!("unexpected reply {other:?}") }),
                    }
                    if with_events {
                        let reply = it.next().unwrap_or(Value::Nil);
                        let key = self.keys.events(T::COLLECTION, id);
                        let list = decode_events::<E>(reply, &key, self.encoding, &mut report);
                        if !list.is_empty() {
                            events.insert(id.clone(), list);
                        }
                    }
                }
            }
            Ok(())
        })?;
        Ok(Loaded { items, events, report })
    }

    /// The commit marker's bytes (`None` when there is none).
    pub(crate) fn marker(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut report = LoadReport::default();
        self.packer.cmd(&[b"GET", key.as_bytes()]);
        match self.round_trip(&mut report)?.pop() {
            Some(Value::BulkString(b)) => Ok(Some(b)),
            _ => Ok(None),
        }
    }

    /// Loads one entity's event log.
    pub(crate) fn events<E: Event>(&mut self, id: &str, report: &mut LoadReport) -> Result<Vec<E>> {
        let key = self.keys.events(<E::Of as Entity>::COLLECTION, id);
        self.packer.cmd(&[b"LRANGE", key.as_bytes(), b"0", b"-1"]);
        let reply = self.round_trip(report)?.pop().unwrap_or(Value::Nil);
        Ok(decode_events::<E>(reply, &key, self.encoding, report))
    }
}

fn decode_events<E: Event>(
    reply: Value,
    key: &str,
    encoding: crate::config::Encoding,
    report: &mut LoadReport,
) -> Vec<E> {
    let items = match reply {
        Value::Array(v) => v,
        Value::Nil => Vec::new(),
        Value::ServerError(e) => {
            report.issues.push(LoadIssue { key: key.to_string(), problem: e.to_string() });
            return Vec::new();
        }
        other => {
            report
                .issues
                .push(LoadIssue { key: key.to_string(), problem: format!("unexpected reply {other:?}") });
            return Vec::new();
        }
    };
    report.keys_read += 1;
    let mut seen = HashSet::with_capacity(items.len());
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::BulkString(b) = item else { continue };
        match codec::decode::<E>(&b, encoding) {
            Ok(ev) => {
                if seen.insert(ev.event_id()) {
                    out.push(ev);
                } else {
                    report.duplicate_events += 1;
                }
            }
            Err(e) => report.issues.push(LoadIssue { key: format!("{key}[{i}]"), problem: e.to_string() }),
        }
    }
    out
}

fn check_strict(cfg: &Config, report: &LoadReport) -> Result<()> {
    if cfg.strict_load && !report.issues.is_empty() {
        return Err(Error::Load { count: report.issues.len(), first: report.issues[0].to_string() });
    }
    Ok(())
}

impl Cache {
    /// Loads every instrument, account (with its events), order (with its
    /// events) and position of this trader, on a connection of its own.
    ///
    /// The result is a consistent cut (what some prefix of this writer's
    /// acknowledged batches produced) when [`LoadReport::consistent`] says
    /// so: the commit marker is read before and after, and the state read
    /// again (up to three times in all) when a batch landed in between. At
    /// startup, before writing, the first read is consistent. Writes of
    /// other writer ids to the same trader are not watched.
    ///
    /// # Errors
    ///
    /// Connection failures; with `strict_load`, [`Error::Load`] when any
    /// value could not be used (otherwise such values are listed in
    /// [`Snapshot::report`]).
    pub fn load(&self) -> Result<Snapshot> {
        let start = Instant::now();
        let mut r = Reader::open(self.config(), self.keys())?;
        let marker = self.keys().writer(&self.config().writer_id);
        let mut attempts = 0;
        let mut snap = loop {
            attempts += 1;
            let before = r.marker(&marker)?;
            let mut snap = load_state(&mut r)?;
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
}

/// How many times `Cache::load` reads while batches keep landing.
const LOAD_ATTEMPTS: u32 = 3;

/// One read of the whole state.
fn load_state(r: &mut Reader<'_>) -> Result<Snapshot> {
    let mut snap = Snapshot::default();
    let inst = r.load::<Instrument, OrderEvent>(false)?;
    snap.instruments = inst.items;
    snap.report.merge(inst.report);
    let acc = r.load::<Account, AccountEvent>(true)?;
    snap.accounts = acc.items;
    snap.account_events = acc.events;
    snap.report.merge(acc.report);
    let ord = r.load::<Order, OrderEvent>(true)?;
    snap.orders = ord.items;
    snap.order_events = ord.events;
    snap.report.merge(ord.report);
    let pos = r.load::<Position, OrderEvent>(false)?;
    snap.positions = pos.items;
    snap.report.merge(pos.report);
    Ok(snap)
}

impl Cache {
    /// Loads every entity of one type (any [`Entity`], including your own),
    /// sorted by id.
    ///
    /// # Errors
    ///
    /// As [`Cache::load`].
    pub fn load_all<T: Entity>(&self) -> Result<(Vec<T>, LoadReport)> {
        let start = Instant::now();
        let mut r = Reader::open(self.config(), self.keys())?;
        let mut loaded = r.load::<T, NoEvent<T>>(false)?;
        loaded.report.elapsed = start.elapsed();
        check_strict(self.config(), &loaded.report)?;
        Ok((loaded.items, loaded.report))
    }

    /// Loads one entity's event log, in append order, duplicates dropped.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] for an id that [`Cache::append`] would refuse;
    /// otherwise as [`Cache::load`].
    pub fn load_events<E: Event>(&self, id: &str) -> Result<(Vec<E>, LoadReport)> {
        crate::ident::validate(id)?;
        let start = Instant::now();
        let mut r = Reader::open(self.config(), self.keys())?;
        let mut report = LoadReport::default();
        let events = r.events::<E>(id, &mut report)?;
        report.elapsed = start.elapsed();
        check_strict(self.config(), &report)?;
        Ok((events, report))
    }
}

/// A stand-in event type for loads without event logs.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct NoEvent<T>(#[serde(skip)] std::marker::PhantomData<T>);

impl<T: Entity> Event for NoEvent<T> {
    type Of = T;
    fn event_id(&self) -> u64 {
        0
    }
}
