//! Loading a trader's state back: ids from the index sets, values from
//! pipelined reads in chunks on parallel workers, long event logs in
//! slices, decode problems reported by key.
//!
//! Over 600 lines: the two worker loops (chunks, then the slices of long
//! logs), their decoders and the in-order merge share the report and the
//! connection set, and read best side by side. The `Cache` wrappers at the
//! bottom are the public surface (DESIGN.md's `src/load/` split would put
//! the workers in a file of their own).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use redis::Value;

use crate::config::Config;
use crate::entity::{Entity, Event};
use crate::error::{Error, Result};
use crate::ident::Ident;
use crate::keys::Keys;
use crate::model::{Account, AccountEvent, Instrument, Order, OrderEvent, Position};
use crate::net::{self, Conn, Packer};
use crate::Cache;

mod decode;
pub(crate) mod reads;

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
    /// [`Cache::load_open`] only: ids in a collection's index that were in
    /// neither its open nor its closed index (written before those
    /// existed), read in full and kept when open.
    pub unclassified: u64,
}

impl LoadReport {
    fn merge(&mut self, other: LoadReport) {
        self.issues.extend(other.issues);
        self.duplicate_events += other.duplicate_events;
        self.keys_read += other.keys_read;
        self.round_trips += other.round_trips;
        self.unclassified += other.unclassified;
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

/// At most this many connections (each with its own thread) read one
/// collection in parallel during a load.
const MAX_LOAD_CONNECTIONS: usize = 4;

/// How many connections a load reads on: one per core, at least two (so
/// that Redis always has a request queued while a worker decodes) and at
/// most [`MAX_LOAD_CONNECTIONS`].
fn load_connections() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, MAX_LOAD_CONNECTIONS)
}

/// A short-lived reader on connections of its own (the flusher's stays
/// free).
///
/// `load` splits the sorted ids into chunks of `load_chunk` and hands
/// them round-robin to workers, one thread and one connection each. A
/// worker asks for a chunk with one `MGET` of the snapshots and one
/// `LRANGE` per event log, keeps its next chunk's request in flight while
/// it reads and decodes the current one, and passes the decoded chunk to
/// the calling thread, which appends the chunks in id order and fills the
/// event map. Redis, the reply parsing and the decoding all run at once.
pub(crate) struct Reader<'a> {
    pub(crate) conn: Conn,
    /// The other workers' connections, opened at the first large load and
    /// reused by the next.
    extra: Vec<Conn>,
    cfg: &'a Config,
    /// The configured encoding, which decides the rare value that reads as
    /// either (see `codec::decode`).
    encoding: crate::config::Encoding,
    keys: &'a Keys,
    chunk: usize,
    packer: Packer,
}

/// One chunk of a load, decoded by a worker.
struct ChunkOut<T, E> {
    items: Vec<T>,
    events: Vec<(Ident, Vec<E>)>,
    /// Ids whose log filled its first slice: the rest is read after.
    long: Vec<Ident>,
    report: LoadReport,
}

/// One decoded slice of a long log, and what its decoding found.
type Slice<E> = (Vec<E>, LoadReport);

/// A load reads event logs in slices of this many entries: the first with
/// the log's chunk, the rest (of long logs, such as an account's balance
/// events) spread over the workers afterwards.
const LOG_SLICE: usize = 4096;

impl<'a> Reader<'a> {
    pub(crate) fn open(cfg: &'a Config, keys: &'a Keys) -> Result<Self> {
        let conn = Self::connect(cfg, keys)?;
        Ok(Reader {
            conn,
            extra: Vec::new(),
            cfg,
            encoding: cfg.encoding,
            keys,
            chunk: cfg.load_chunk.max(1),
            packer: Packer::default(),
        })
    }

    fn connect(cfg: &Config, keys: &Keys) -> Result<Conn> {
        let marker = keys.writer(&cfg.writer_id);
        net::connect(cfg, &marker, None).map_err(|f| f.into_error())
    }

    /// Sends the packed commands and reads one reply per command.
    fn round_trip(&mut self, report: &mut LoadReport) -> Result<Vec<Value>> {
        report.round_trips += 1;
        let addr = self.conn.addr.clone();
        self.conn
            .con
            .send_packed_command(&self.packer.buf)
            .map_err(|e| net::Failure::of(&e, &addr).into_error())?;
        let mut out = Vec::with_capacity(self.packer.commands);
        for _ in 0..self.packer.commands {
            out.push(self.conn.con.recv_response().map_err(|e| net::Failure::of(&e, &addr).into_error())?);
        }
        self.packer.clear();
        Ok(out)
    }

    pub(crate) fn ids(&mut self, collection: &str, report: &mut LoadReport) -> Result<Vec<Ident>> {
        let index = self.keys.index(collection);
        self.packer.clear();
        self.packer.cmd(&[b"SMEMBERS", index.as_bytes()]);
        let reply = self.round_trip(report)?.pop().unwrap_or(Value::Nil);
        let mut ids = members_to_ids(reply, &index, report);
        ids.sort_unstable();
        Ok(ids)
    }

    /// The ids of the open entities of `collection`, sorted: the members
    /// of `index:{collection}:open`, plus (when the counts say some ids of
    /// `index:{collection}` are in neither the open nor the closed index,
    /// as ids written before those existed) those ids, found with one
    /// `ZDIFF` (Redis 6.2+; sets are taken as sorted sets). Returns whether
    /// such ids were added (the caller then keeps only the open ones).
    pub(crate) fn open_ids(
        &mut self,
        collection: &str,
        report: &mut LoadReport,
    ) -> Result<(Vec<Ident>, bool)> {
        let (index, open, closed) = (
            self.keys.index(collection),
            self.keys.open_index(collection),
            self.keys.closed_index(collection),
        );
        self.packer.clear();
        self.packer.cmd(&[b"SMEMBERS", open.as_bytes()]);
        self.packer.cmd(&[b"SCARD", index.as_bytes()]);
        self.packer.cmd(&[b"SCARD", open.as_bytes()]);
        self.packer.cmd(&[b"ZCARD", closed.as_bytes()]);
        let mut replies = self.round_trip(report)?.into_iter();
        let members = replies.next().unwrap_or(Value::Nil);
        let count = |v: Option<Value>| match v {
            Some(Value::Int(n)) => n,
            _ => 0,
        };
        let (all, open_n, closed_n) = (count(replies.next()), count(replies.next()), count(replies.next()));
        let mut ids = members_to_ids(members, &open, report);
        let mut unclassified = false;
        if all != open_n + closed_n {
            self.packer.clear();
            self.packer.cmd(&[b"ZDIFF", b"3", index.as_bytes(), open.as_bytes(), closed.as_bytes()]);
            let reply = self.round_trip(report)?.pop().unwrap_or(Value::Nil);
            let extra = members_to_ids(reply, &index, report);
            report.unclassified += extra.len() as u64;
            unclassified = !extra.is_empty();
            ids.extend(extra);
        }
        ids.sort_unstable();
        ids.dedup();
        Ok((ids, unclassified))
    }

    /// Loads every entity of `T` (only the open ones with `open_only`, see
    /// [`Reader::open_ids`]), and with `E` their event logs.
    pub(crate) fn load<T: Entity, E: Event>(
        &mut self,
        with_events: bool,
        open_only: bool,
    ) -> Result<Loaded<T, E>> {
        let mut report = LoadReport::default();
        let (ids, filter) = if open_only {
            self.open_ids(T::COLLECTION, &mut report)?
        } else {
            (self.ids(T::COLLECTION, &mut report)?, false)
        };
        let chunks: Vec<&[Ident]> = ids.chunks(self.chunk).collect();
        // Small collections stay on the one connection; larger ones get
        // their workers (connections opened once, reused by later loads).
        let workers = load_connections().min(chunks.len()).max(1);
        while self.extra.len() + 1 < workers {
            self.extra.push(Self::connect(self.cfg, self.keys)?);
        }
        let mut items = Vec::with_capacity(ids.len());
        let mut events = HashMap::with_capacity(if with_events { ids.len() } else { 0 });
        let mut long = Vec::new();
        let (tx, rx) = crossbeam_channel::unbounded::<(usize, Result<ChunkOut<T, E>>)>();
        // Emptied chunk buffers go back to the workers: fresh memory for
        // every chunk (then freed) cost page faults at a million orders.
        let (spare_tx, spare_rx) = crossbeam_channel::bounded::<ChunkOut<T, E>>(2 * workers);
        let (keys, encoding) = (self.keys, self.encoding);
        let conns = std::iter::once(&mut self.conn).chain(self.extra.iter_mut()).take(workers);
        std::thread::scope(|scope| -> Result<()> {
            for (w, conn) in conns.enumerate() {
                let (tx, spare) = (tx.clone(), spare_rx.clone());
                let mine: Vec<(usize, &[Ident])> =
                    chunks.iter().copied().enumerate().skip(w).step_by(workers).collect();
                let spawned = std::thread::Builder::new()
                    .name("tradecache-load".into())
                    .spawn_scoped(scope, move || {
                        read_chunks::<T, E>(conn, keys, encoding, with_events, &mine, &tx, &spare)
                    });
                if let Err(e) = spawned {
                    return Err(Error::Redis {
                        addr: self.cfg.redacted_url(),
                        kind: crate::ErrorKind::Io,
                        detail: format!("cannot start a load thread: {e}"),
                    });
                }
            }
            drop(tx);
            // Chunks arrive in any order; they are appended in id order.
            let mut slots: Vec<Option<ChunkOut<T, E>>> = (0..chunks.len()).map(|_| None).collect();
            let mut next = 0;
            while next < chunks.len() {
                let (i, out) = rx.recv().map_err(|_| Error::Closed)?;
                slots[i] = Some(out?);
                while let Some(mut out) = slots.get_mut(next).and_then(Option::take) {
                    items.append(&mut out.items);
                    events.extend(out.events.drain(..));
                    long.append(&mut out.long);
                    report.merge(std::mem::take(&mut out.report));
                    let _ = spare_tx.try_send(out);
                    next += 1;
                }
            }
            Ok(())
        })?;
        if !long.is_empty() {
            self.load_tails::<T, E>(&long, &mut events, &mut report)?;
        }
        self.explain_missing(&mut report)?;
        if filter {
            // Unclassified ids were read too: keep the open ones.
            let closed: HashSet<Ident> =
                items.iter().filter(|t| t.is_closed()).filter_map(|t| Ident::new(t.id()).ok()).collect();
            items.retain(|t| !t.is_closed());
            events.retain(|id, _| !closed.contains(id));
        }
        Ok(Loaded { items, events, report })
    }

    /// The rest of the logs that filled their first slice: their lengths
    /// (one `LLEN` each, one round trip), then slices of `LOG_SLICE`
    /// entries spread round-robin over the workers, appended in order.
    /// Repeated event ids are dropped across slices too.
    fn load_tails<T: Entity, E: Event>(
        &mut self,
        long: &[Ident],
        events: &mut HashMap<Ident, Vec<E>>,
        report: &mut LoadReport,
    ) -> Result<()> {
        let keys: Vec<String> = long.iter().map(|id| self.keys.events(T::COLLECTION, id)).collect();
        self.packer.clear();
        for key in &keys {
            self.packer.cmd(&[b"LLEN", key.as_bytes()]);
        }
        let lens = self.round_trip(report)?;
        // (log, first entry, last entry)
        let mut slices: Vec<(usize, usize, usize)> = Vec::new();
        for (log, len) in lens.into_iter().enumerate() {
            let len = match len {
                Value::Int(n) => usize::try_from(n).unwrap_or(0),
                _ => 0,
            };
            slices.extend(
                (LOG_SLICE..len).step_by(LOG_SLICE).map(|at| (log, at, (at + LOG_SLICE).min(len) - 1)),
            );
        }
        if slices.is_empty() {
            return Ok(());
        }
        let workers = load_connections().min(slices.len());
        while self.extra.len() + 1 < workers {
            self.extra.push(Self::connect(self.cfg, self.keys)?);
        }
        let (tx, rx) = crossbeam_channel::unbounded::<(usize, Result<Slice<E>>)>();
        let encoding = self.encoding;
        let (keys, slices) = (&keys, &slices);
        let conns = std::iter::once(&mut self.conn).chain(self.extra.iter_mut()).take(workers);
        std::thread::scope(|scope| -> Result<()> {
            for (w, conn) in conns.enumerate() {
                let tx = tx.clone();
                let mine: Vec<usize> = (w..slices.len()).step_by(workers).collect();
                let spawned = std::thread::Builder::new()
                    .name("tradecache-load".into())
                    .spawn_scoped(scope, move || read_slices::<E>(conn, keys, slices, &mine, encoding, &tx));
                if let Err(e) = spawned {
                    return Err(Error::Redis {
                        addr: self.cfg.redacted_url(),
                        kind: crate::ErrorKind::Io,
                        detail: format!("cannot start a load thread: {e}"),
                    });
                }
            }
            drop(tx);
            let mut slots: Vec<Option<Slice<E>>> = (0..slices.len()).map(|_| None).collect();
            let mut seen: HashMap<usize, HashSet<u64>> = HashMap::new();
            let mut next = 0;
            while next < slices.len() {
                let (i, out) = rx.recv().map_err(|_| Error::Closed)?;
                slots[i] = Some(out?);
                while let Some((list, mut slice_report)) = slots.get_mut(next).and_then(Option::take) {
                    let log = slices[next].0;
                    let all = events.entry(long[log].clone()).or_default();
                    let seen = seen.entry(log).or_insert_with(|| all.iter().map(Event::event_id).collect());
                    for ev in list {
                        if seen.insert(ev.event_id()) {
                            all.push(ev);
                        } else {
                            slice_report.duplicate_events += 1;
                        }
                    }
                    // The log was counted once, with its first slice.
                    slice_report.keys_read = 0;
                    report.merge(slice_report);
                    next += 1;
                }
            }
            Ok(())
        })
    }

    /// `MGET` answers nil both for a missing key and for a key of another
    /// type: a `GET` of each key reported without a value tells them apart
    /// (one more round trip, only when there are such keys).
    fn explain_missing(&mut self, report: &mut LoadReport) -> Result<()> {
        let missing: Vec<usize> =
            (0..report.issues.len()).filter(|&i| report.issues[i].problem == NO_VALUE).collect();
        if missing.is_empty() {
            return Ok(());
        }
        self.packer.clear();
        for &i in &missing {
            self.packer.cmd(&[b"GET", report.issues[i].key.as_bytes()]);
        }
        let replies = self.round_trip(report)?;
        for (&i, reply) in missing.iter().zip(replies) {
            match reply {
                Value::ServerError(e) => report.issues[i].problem = e.to_string(),
                Value::Nil => {}
                _ => report.issues[i].problem = format!("{NO_VALUE} (it had one when checked again)"),
            }
        }
        Ok(())
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

/// A worker of `Reader::load`: requests its chunks on `conn`, one ahead of
/// the one it reads, decodes each and sends it to the calling thread.
/// Stops at the first connection error (sent as the chunk's result) or
/// when the calling thread has gone.
fn read_chunks<T: Entity, E: Event>(
    conn: &mut Conn,
    keys: &Keys,
    encoding: crate::config::Encoding,
    with_events: bool,
    chunks: &[(usize, &[Ident])],
    tx: &crossbeam_channel::Sender<(usize, Result<ChunkOut<T, E>>)>,
    spare: &crossbeam_channel::Receiver<ChunkOut<T, E>>,
) {
    let addr = conn.addr.clone();
    let fail = |e: &redis::RedisError| net::Failure::of(e, &addr).into_error();
    let mut packer = Packer::default();
    let mut key = Vec::new();
    let slice_last = (LOG_SLICE - 1).to_string();
    let mut send = |conn: &mut Conn, ids: &[Ident]| -> redis::RedisResult<()> {
        packer.clear();
        packer.array(ids.len() + 1);
        packer.bulk(b"MGET");
        for id in ids {
            key.clear();
            keys.write_entity(&mut key, T::COLLECTION, id);
            packer.bulk(&key);
        }
        if with_events {
            for id in ids {
                key.clear();
                keys.write_events(&mut key, T::COLLECTION, id);
                packer.cmd(&[b"LRANGE", &key, b"0", slice_last.as_bytes()]);
            }
        }
        conn.con.send_packed_command(&packer.buf)
    };
    let mut sent = 0;
    for (i, &(index, ids)) in chunks.iter().enumerate() {
        let mut result = Ok(());
        while result.is_ok() && sent < chunks.len() && sent <= i + 2 {
            result = send(conn, chunks[sent].1);
            sent += 1;
        }
        let out = result.map_err(|e| fail(&e)).and_then(|()| {
            let snapshots = conn.con.recv_response().map_err(|e| fail(&e))?;
            let mut logs = Vec::with_capacity(if with_events { ids.len() } else { 0 });
            for _ in 0..logs.capacity() {
                logs.push(conn.con.recv_response().map_err(|e| fail(&e))?);
            }
            Ok(decode_chunk::<T, E>(keys, encoding, ids, snapshots, logs, spare.try_recv().ok()))
        });
        let failed = out.is_err();
        if tx.send((index, out)).is_err() || failed {
            return;
        }
    }
}

/// A worker of `Reader::load_tails`: reads its slices (`mine`, indexes
/// into `slices`) with one request ahead, decodes each and sends it back.
fn read_slices<E: Event>(
    conn: &mut Conn,
    keys: &[String],
    slices: &[(usize, usize, usize)],
    mine: &[usize],
    encoding: crate::config::Encoding,
    tx: &crossbeam_channel::Sender<(usize, Result<Slice<E>>)>,
) {
    let addr = conn.addr.clone();
    let fail = |e: &redis::RedisError| net::Failure::of(e, &addr).into_error();
    let mut packer = Packer::default();
    let mut send = |conn: &mut Conn, slice: usize| -> redis::RedisResult<()> {
        let (log, first, last) = slices[slice];
        packer.clear();
        packer.cmd(&[
            b"LRANGE",
            keys[log].as_bytes(),
            first.to_string().as_bytes(),
            last.to_string().as_bytes(),
        ]);
        conn.con.send_packed_command(&packer.buf)
    };
    let mut sent = 0;
    for (i, &slice) in mine.iter().enumerate() {
        let mut result = Ok(());
        while result.is_ok() && sent < mine.len() && sent <= i + 2 {
            result = send(conn, mine[sent]);
            sent += 1;
        }
        let out = result.map_err(|e| fail(&e)).and_then(|()| {
            let reply = conn.con.recv_response().map_err(|e| fail(&e))?;
            let (log, first, _) = slices[slice];
            let mut report = LoadReport { round_trips: 1, ..LoadReport::default() };
            let list = decode_events_from::<E>(reply, &keys[log], first, encoding, &mut report);
            Ok((list, report))
        });
        let failed = out.is_err();
        if tx.send((slice, out)).is_err() || failed {
            return;
        }
    }
}

/// Decodes one chunk's replies: the `MGET` of the snapshots and, with
/// events, one `LRANGE` reply per id. Problems are reported by key in id
/// order (a snapshot before its log).
fn decode_chunk<T: Entity, E: Event>(
    keys: &Keys,
    encoding: crate::config::Encoding,
    ids: &[Ident],
    snapshots: Value,
    logs: Vec<Value>,
    reuse: Option<ChunkOut<T, E>>,
) -> ChunkOut<T, E> {
    let mut report = LoadReport { round_trips: 1, ..LoadReport::default() };
    let (mut items, mut events) = match reuse {
        // Emptied by the calling thread.
        Some(out) => (out.items, out.events),
        None => (Vec::with_capacity(ids.len()), Vec::with_capacity(logs.len())),
    };
    let mut long = Vec::new();
    let key = |id: &Ident| keys.entity(T::COLLECTION, id);
    let values = match snapshots {
        Value::Array(v) if v.len() == ids.len() => v,
        Value::ServerError(e) => {
            let problem = format!("MGET of {} snapshots failed: {e}", ids.len());
            report.issues.extend(ids.iter().map(|id| LoadIssue { key: key(id), problem: problem.clone() }));
            Vec::new()
        }
        other => {
            let problem = format!("unexpected reply to MGET: {other:?}");
            report.issues.extend(ids.iter().map(|id| LoadIssue { key: key(id), problem: problem.clone() }));
            Vec::new()
        }
    };
    let mut values = values.into_iter();
    let mut logs = logs.into_iter();
    for id in ids {
        if let Some(value) = values.next() {
            report.keys_read += 1;
            match value {
                Value::BulkString(b) => match decode::decode::<T>(&b, encoding) {
                    Ok(v) if v.id() == id.as_str() => items.push(v),
                    Ok(v) => report.issues.push(LoadIssue {
                        key: key(id),
                        problem: format!("value has id {:?}, key says {id:?}", v.id()),
                    }),
                    Err(e) => report.issues.push(LoadIssue { key: key(id), problem: e.to_string() }),
                },
                // `MGET` answers nil for a missing key and for a key of
                // another type alike: `explain_nil` tells them apart.
                Value::Nil => report.issues.push(LoadIssue { key: key(id), problem: NO_VALUE.into() }),
                other => report
                    .issues
                    .push(LoadIssue { key: key(id), problem: format!("unexpected reply {other:?}") }),
            }
        }
        if let Some(reply) = logs.next() {
            if matches!(&reply, Value::Array(v) if v.len() == LOG_SLICE) {
                long.push(id.clone());
            }
            let key = keys.events(T::COLLECTION, id);
            let list = decode_events::<E>(reply, &key, encoding, &mut report);
            if !list.is_empty() {
                events.push((id.clone(), list));
            }
        }
    }
    ChunkOut { items, events, long, report }
}

const NO_VALUE: &str = "in the index but has no value";

/// The ids in a reply listing an index's members (`SMEMBERS`, `ZDIFF`);
/// errors and invalid ids are reported against `index`.
fn members_to_ids(reply: Value, index: &str, report: &mut LoadReport) -> Vec<Ident> {
    let members = match reply {
        Value::Array(v) | Value::Set(v) => v,
        Value::Nil => Vec::new(),
        Value::ServerError(e) => {
            report.issues.push(LoadIssue { key: index.to_string(), problem: e.to_string() });
            return Vec::new();
        }
        other => {
            report
                .issues
                .push(LoadIssue { key: index.to_string(), problem: format!("unexpected reply {other:?}") });
            return Vec::new();
        }
    };
    let mut ids = Vec::with_capacity(members.len());
    for m in members {
        let Value::BulkString(b) = m else { continue };
        match std::str::from_utf8(&b).ok().map(Ident::new) {
            Some(Ok(id)) => ids.push(id),
            _ => report.issues.push(LoadIssue {
                key: index.to_string(),
                problem: format!("invalid id {:?} in index", String::from_utf8_lossy(&b)),
            }),
        }
    }
    ids
}

pub(crate) fn decode_events<E: Event>(
    reply: Value,
    key: &str,
    encoding: crate::config::Encoding,
    report: &mut LoadReport,
) -> Vec<E> {
    decode_events_from(reply, key, 0, encoding, report)
}

/// As [`decode_events`] for a slice of a log that starts at entry
/// `offset` (which names entries in issues).
fn decode_events_from<E: Event>(
    reply: Value,
    key: &str,
    offset: usize,
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
    // Repeated event ids are dropped: a short log is searched, a long one
    // hashed.
    let mut seen = (items.len() > 16).then(|| HashSet::with_capacity(items.len()));
    let mut out: Vec<E> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::BulkString(b) = item else { continue };
        match decode::decode::<E>(&b, encoding) {
            Ok(ev) => {
                let id = ev.event_id();
                let new = match seen.as_mut() {
                    Some(seen) => seen.insert(id),
                    None => out.iter().all(|e| e.event_id() != id),
                };
                if new {
                    out.push(ev);
                } else {
                    report.duplicate_events += 1;
                }
            }
            Err(e) => report
                .issues
                .push(LoadIssue { key: format!("{key}[{}]", offset + i), problem: e.to_string() }),
        }
    }
    out
}

pub(crate) fn check_strict(cfg: &Config, report: &LoadReport) -> Result<()> {
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
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// use tradecache::model::Position;
    /// cache.put(&Position::example("P-1"))?;
    /// cache.flush(Duration::from_secs(1))?;
    /// let snapshot = cache.load()?;
    /// assert!(snapshot.report.consistent);
    /// assert!(snapshot.positions.iter().any(|p| p.id.as_str() == "P-1"));
    /// # Ok(()) }
    /// ```
    pub fn load(&self) -> Result<Snapshot> {
        self.load_with(false)
    }

    /// As [`Cache::load`], but only the open entities ([`Entity::is_closed`]
    /// is `false`) with their event logs: orders that are still working,
    /// positions that are not flat, and every instrument and account
    /// (which never close). The ids come from `index:{collection}:open`,
    /// which every batch keeps in step with its writes, so a restart reads
    /// live state, not history: 1,000 open orders next to 100,000 closed
    /// ones cost what 1,000 orders cost.
    ///
    /// Entities written before the open index existed (in
    /// `index:{collection}` but in neither `…:open` nor `…:closed`) are
    /// read in full and kept when open; [`LoadReport::unclassified`] counts
    /// them (their next write classifies them).
    ///
    /// ```no_run
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = Cache::open(Config::from_env()?.trader_id("T1"))?;
    /// let live = cache.load_open()?;
    /// assert!(live.orders.iter().all(|o| !o.status.is_closed()));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::load`].
    pub fn load_open(&self) -> Result<Snapshot> {
        self.load_with(true)
    }

    fn load_with(&self, open_only: bool) -> Result<Snapshot> {
        let start = Instant::now();
        let mut r = Reader::open(self.config(), self.keys())?;
        let marker = self.keys().writer(&self.config().writer_id);
        let mut attempts = 0;
        let mut snap = loop {
            attempts += 1;
            let before = r.marker(&marker)?;
            let mut snap = load_state(&mut r, open_only)?;
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

/// One read of the whole state (or of its open entities).
fn load_state(r: &mut Reader<'_>, open_only: bool) -> Result<Snapshot> {
    let mut snap = Snapshot::default();
    let inst = r.load::<Instrument, OrderEvent>(false, open_only)?;
    snap.instruments = inst.items;
    snap.report.merge(inst.report);
    let acc = r.load::<Account, AccountEvent>(true, open_only)?;
    snap.accounts = acc.items;
    snap.account_events = acc.events;
    snap.report.merge(acc.report);
    let ord = r.load::<Order, OrderEvent>(true, open_only)?;
    snap.orders = ord.items;
    snap.order_events = ord.events;
    snap.report.merge(ord.report);
    let pos = r.load::<Position, OrderEvent>(false, open_only)?;
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
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// use tradecache::model::Position;
    /// cache.put(&Position::example("P-1"))?;
    /// cache.flush(Duration::from_secs(1))?;
    /// let (positions, report) = cache.load_all::<Position>()?;
    /// assert!(report.issues.is_empty());
    /// assert!(positions.iter().any(|p| p.id.as_str() == "P-1"));
    /// # Ok(()) }
    /// ```
    pub fn load_all<T: Entity>(&self) -> Result<(Vec<T>, LoadReport)> {
        let start = Instant::now();
        let mut r = Reader::open(self.config(), self.keys())?;
        let mut loaded = r.load::<T, NoEvent<T>>(false, false)?;
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
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// use tradecache::model::{Order, OrderEvent, OrderEventKind, UnixNanos};
    /// use tradecache::Ident;
    /// cache.put(&Order::example("O-1"))?;
    /// let event = OrderEvent {
    ///     event_id: 1,
    ///     client_order_id: Ident::new("O-1")?,
    ///     ts_event: UnixNanos(1),
    ///     kind: OrderEventKind::Canceled,
    /// };
    /// cache.append("O-1", &event)?;
    /// cache.flush(Duration::from_secs(1))?;
    /// let (events, _report) = cache.load_events::<OrderEvent>("O-1")?;
    /// assert_eq!(events.last(), Some(&event));
    /// # Ok(()) }
    /// ```
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
