//! The reader of a load: workers on connections of their own read chunks of
//! ids (`MGET` of the snapshots, `LRANGE` of their logs) in parallel, and
//! the long logs in slices afterwards; the calling thread merges in order.

use std::collections::{HashMap, HashSet};

use super::values::{
    check_reply, decode_chunk, decode_events, get_reply, members_to_ids, reply_error, ChunkOut, LoadEvent,
    LoadItem, LOG_SLICE, NO_VALUE,
};
use super::{LoadIssue, LoadReport};
use crate::config::Config;
use crate::entity::{Entity, Event};
use crate::error::{Error, Result};
use crate::ident::Ident;
use crate::net::{self, Conn, Packer};
use crate::store::keys::Keys;
use redis::Value;

/// Where [`Reader::load_in`] hands each chunk, in id order: its items, the
/// event logs read with them, and the ids whose logs are read on after.
pub(crate) type Sink<'s, T, E> =
    &'s mut dyn FnMut(&mut Vec<T>, &mut Vec<(Ident, Vec<E>)>, &[Ident]) -> std::ops::ControlFlow<()>;

/// Entities of one collection, and their event logs by id.
pub(crate) type Loaded<T, E> = (Vec<T>, HashMap<Ident, Vec<E>>);

/// At most this many connections (each with its own thread) read one
/// collection in parallel during a load.
const MAX_LOAD_CONNECTIONS: usize = 4;

/// A short-lived reader on connections of its own (the flusher's stays
/// free); see [`Reader::load_in`].
pub(crate) struct Reader<'a> {
    conn: Conn,
    /// The other workers' connections, opened at the first large load.
    extra: Vec<Conn>,
    cfg: &'a Config,
    keys: &'a Keys,
    packer: Packer,
}

impl<'a> Reader<'a> {
    pub(crate) fn open(cfg: &'a Config, keys: &'a Keys) -> Result<Self> {
        let conn = Self::connect(cfg, keys)?;
        Ok(Reader { conn, extra: Vec::new(), cfg, keys, packer: Packer::default() })
    }

    fn connect(cfg: &Config, keys: &Keys) -> Result<Conn> {
        let marker = keys.writer(&cfg.writer_id);
        net::connect(cfg, &marker, None).map_err(|f| f.into_error())
    }

    /// [`check_reply`] against this reader's server.
    fn check(&self, reply: &Value, key: impl FnOnce() -> String) -> Result<()> {
        check_reply(reply, key, &self.cfg.redacted_url())
    }

    /// Sends the packed commands and reads one reply per command; the
    /// packer is left empty.
    fn round_trip(&mut self, report: &mut LoadReport) -> Result<Vec<Value>> {
        report.round_trips += 1;
        let out = self.conn.round_trip(&self.packer);
        self.packer.clear();
        out.map_err(|f| f.into_error())
    }

    pub(crate) fn ids(&mut self, collection: &str, report: &mut LoadReport) -> Result<Vec<Ident>> {
        let index = self.keys.index(collection);
        self.packer.cmd(&[b"SMEMBERS", index.as_bytes()]);
        let reply = self.round_trip(report)?.pop().unwrap_or(Value::Nil);
        self.check(&reply, || index.clone())?;
        let mut ids = members_to_ids(reply, &index, report);
        ids.sort_unstable();
        Ok(ids)
    }

    /// The ids of the open entities of `collection`, sorted: the members
    /// of `index:{collection}:open`, plus, when the counts say some ids of
    /// `index:{collection}` are in neither the open nor the closed index
    /// (written before those existed), those ids, found with one `ZDIFF`
    /// (Redis 6.2+). Returns whether such ids were added (the caller then
    /// keeps only the open ones).
    ///
    /// The counts are exact while the open and closed indexes are disjoint
    /// subsets of `index:{collection}`, as every write of tradecache keeps
    /// them; indexes edited by hand can hide an unclassified id (one id in
    /// both, another in neither), which `tradecache verify` reports.
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
        self.packer.cmd(&[b"SMEMBERS", open.as_bytes()]);
        self.packer.cmd(&[b"SCARD", index.as_bytes()]);
        self.packer.cmd(&[b"SCARD", open.as_bytes()]);
        self.packer.cmd(&[b"ZCARD", closed.as_bytes()]);
        let replies = self.round_trip(report)?;
        let names = [&open, &index, &open, &closed];
        for (reply, key) in replies.iter().zip(names) {
            self.check(reply, || key.clone())?;
        }
        let mut replies = replies.into_iter();
        let members = replies.next().unwrap_or(Value::Nil);
        // A count that is not a number (a key of another type) is
        // reported, and the ids are then looked for with `ZDIFF`.
        let mut count = |v: Option<Value>, key: &str| match v {
            Some(Value::Int(n)) => Some(n),
            other => {
                report.issues.push(LoadIssue { key: key.to_string(), problem: format!("count: {other:?}") });
                None
            }
        };
        let all = count(replies.next(), &index);
        let open_n = count(replies.next(), &open);
        let closed_n = count(replies.next(), &closed);
        let mut ids = members_to_ids(members, &open, report);
        let mut unclassified = false;
        let balanced = matches!((all, open_n, closed_n), (Some(a), Some(o), Some(c)) if a == o + c);
        if !balanced {
            self.packer.cmd(&[b"ZDIFF", b"3", index.as_bytes(), open.as_bytes(), closed.as_bytes()]);
            let reply = self.round_trip(report)?.pop().unwrap_or(Value::Nil);
            self.check(&reply, || format!("ZDIFF of {index}"))?;
            let extra = members_to_ids(reply, &index, report);
            report.unclassified += extra.len() as u64;
            unclassified = !extra.is_empty();
            ids.extend(extra);
        }
        ids.sort_unstable();
        ids.dedup();
        Ok((ids, unclassified))
    }

    /// Loads every entity of `T` (see [`Reader::load_in`]), and with
    /// `with_events` their logs as `E` (any `E`, such as `Vec<u8>`, without).
    pub(crate) fn load<T: Entity, E: LoadEvent>(
        &mut self,
        with_events: bool,
        open_only: bool,
        report: &mut LoadReport,
    ) -> Result<Loaded<T, E>> {
        self.load_in::<T, E>(T::COLLECTION, with_events, open_only, None, report)
    }

    /// Loads every entity of `collection` (only the open ones with
    /// `open_only`; the caller has checked the name), with their event logs
    /// when `with_events`, merging the load's report into `into`. The
    /// sorted ids are read in chunks of `load_chunk` by [`Reader::parallel`]
    /// (one `MGET` of the snapshots and one `LRANGE` per log each), and
    /// appended in id order.
    ///
    /// With a `sink` (and not `open_only`), each chunk is handed to it in
    /// id order instead of collected: its items (drained by the sink) and
    /// logs, except the logs that filled their first slice (the `long` ids,
    /// also given), which are completed afterwards and returned. A sink that
    /// breaks is not called again (the load still completes).
    pub(crate) fn load_in<T: LoadItem, E: LoadEvent>(
        &mut self,
        collection: &str,
        with_events: bool,
        open_only: bool,
        mut sink: Option<Sink<'_, T, E>>,
        into: &mut LoadReport,
    ) -> Result<Loaded<T, E>> {
        let mut report = LoadReport::default();
        let (ids, filter) = if open_only {
            self.open_ids(collection, &mut report)?
        } else {
            (self.ids(collection, &mut report)?, false)
        };
        let chunks: Vec<&[Ident]> = ids.chunks(self.cfg.load_chunk.max(1)).collect();
        let mut items = Vec::with_capacity(ids.len());
        let mut events = HashMap::with_capacity(if with_events { ids.len() } else { 0 });
        let mut long = Vec::new();
        // A sink that broke: what is read from then on is dropped.
        let mut broken = false;
        // Emptied chunk buffers go back to the workers: fresh memory for
        // every chunk (then freed) cost page faults at a million orders.
        let (spare_tx, spare_rx) = crossbeam_channel::bounded::<ChunkOut<T, E>>(2 * MAX_LOAD_CONNECTIONS);
        let (keys, encoding, chunks) = (self.keys, self.cfg.encoding, &chunks);
        let slice_last = (LOG_SLICE - 1).to_string();
        let work = |conn: &mut Conn, mine: &[usize], tx: &Sender<ChunkOut<T, E>>| {
            let (addr, mut key) = (conn.addr.clone(), Vec::new());
            let pack = |p: &mut Packer, c: usize| {
                p.array(chunks[c].len() + 1);
                p.bulk(b"MGET");
                for id in chunks[c] {
                    key.clear();
                    keys.write_entity(&mut key, collection, id);
                    p.bulk(&key);
                }
                for id in chunks[c].iter().filter(|_| with_events) {
                    key.clear();
                    keys.write_events(&mut key, collection, id);
                    p.cmd(&[b"LRANGE", &key, b"0", slice_last.as_bytes()]);
                }
            };
            let replies = |c: usize| 1 + if with_events { chunks[c].len() } else { 0 };
            pipeline(conn, mine, tx, pack, replies, |c, mut replies| {
                let logs = replies.split_off(1);
                let snapshots = replies.pop().unwrap_or(Value::Nil);
                let spare = spare_rx.try_recv().ok();
                decode_chunk(keys, collection, encoding, &addr, chunks[c], snapshots, logs, spare)
            });
        };
        self.parallel(chunks.len(), work, |_, mut out| {
            match sink.as_mut() {
                None => {
                    items.append(&mut out.items);
                    events.extend(out.events.drain(..));
                }
                Some(f) => {
                    events.extend(out.events.extract_if(.., |(id, _)| out.long.contains(id)));
                    if !broken {
                        broken = f(&mut out.items, &mut out.events, &out.long).is_break();
                    }
                    out.items.clear();
                    out.events.clear();
                }
            }
            long.append(&mut out.long);
            report.merge(std::mem::take(&mut out.report));
            let _ = spare_tx.try_send(out);
        })?;
        if !long.is_empty() {
            self.load_tails::<E>(collection, &long, &mut events, &mut report)?;
        }
        self.explain_missing(&mut report)?;
        if filter {
            // Unclassified ids were read too: keep the open ones.
            let closed: HashSet<Ident> =
                items.iter().filter_map(|t| Ident::new(t.closed_id()?).ok()).collect();
            items.retain(|t| t.closed_id().is_none());
            events.retain(|id, _| !closed.contains(id));
        }
        into.merge(report);
        Ok((items, events))
    }

    /// Runs `jobs` jobs on workers, one thread and connection each (opened
    /// once, reused by later loads): one per core, at least two (so that
    /// Redis always has a request queued while a worker decodes), at most
    /// [`MAX_LOAD_CONNECTIONS`]. Worker `w` runs `work` on jobs `w`,
    /// `w + workers`, …, and `take` gets the results on the calling thread
    /// in job order, whatever order they arrive in. The first error ends
    /// the run.
    fn parallel<O: Send>(
        &mut self,
        jobs: usize,
        work: impl Fn(&mut Conn, &[usize], &Sender<O>) + Sync,
        mut take: impl FnMut(usize, O),
    ) -> Result<()> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // Small collections stay on the one connection.
        let workers = cores.clamp(2, MAX_LOAD_CONNECTIONS).min(jobs).max(1);
        while self.extra.len() + 1 < workers {
            self.extra.push(Self::connect(self.cfg, self.keys)?);
        }
        let (tx, rx) = crossbeam_channel::unbounded::<(usize, Result<O>)>();
        let (cfg, work) = (self.cfg, &work);
        let conns = std::iter::once(&mut self.conn).chain(self.extra.iter_mut()).take(workers);
        std::thread::scope(|scope| -> Result<()> {
            for (w, conn) in conns.enumerate() {
                let tx = tx.clone();
                let mine: Vec<usize> = (w..jobs).step_by(workers).collect();
                let spawned = std::thread::Builder::new()
                    .name("tradecache-load".into())
                    .spawn_scoped(scope, move || work(conn, &mine, &tx));
                spawned.map_err(|e| Error::no_thread("a load thread", cfg.redacted_url(), &e))?;
            }
            drop(tx);
            let mut slots: Vec<Option<O>> = (0..jobs).map(|_| None).collect();
            let mut next = 0;
            while next < jobs {
                let (i, out) = rx.recv().map_err(|_| Error::Closed)?;
                slots[i] = Some(out?);
                while let Some(out) = slots.get_mut(next).and_then(Option::take) {
                    take(next, out);
                    next += 1;
                }
            }
            Ok(())
        })
    }

    /// The rest of the logs that filled their first slice: their lengths
    /// (one `LLEN` each, one round trip), then slices of `LOG_SLICE`
    /// entries spread round-robin over the workers, appended in order.
    /// Repeated event ids are dropped across slices too.
    fn load_tails<E: LoadEvent>(
        &mut self,
        collection: &str,
        long: &[Ident],
        events: &mut HashMap<Ident, Vec<E>>,
        report: &mut LoadReport,
    ) -> Result<()> {
        let keys: Vec<String> = long.iter().map(|id| self.keys.events(collection, id)).collect();
        for key in &keys {
            self.packer.cmd(&[b"LLEN", key.as_bytes()]);
        }
        let lens = self.round_trip(report)?;
        // (log, first entry, last entry)
        let mut slices: Vec<(usize, usize, usize)> = Vec::new();
        for (log, len) in lens.into_iter().enumerate() {
            // A refused `LLEN` fails the load (read as 0, it cut every long
            // log to its first slice); another reply is reported.
            self.check(&len, || format!("LLEN {}", keys[log]))?;
            let len = match len {
                Value::Int(n) if n >= 0 => n as usize,
                other => {
                    report.issues.push(LoadIssue {
                        key: keys[log].clone(),
                        problem: format!(
                            "length unknown ({other:?}): only its first {LOG_SLICE} entries read"
                        ),
                    });
                    0
                }
            };
            slices.extend(
                (LOG_SLICE..len).step_by(LOG_SLICE).map(|at| (log, at, (at + LOG_SLICE).min(len) - 1)),
            );
        }
        if slices.is_empty() {
            return Ok(());
        }
        let (encoding, keys, slices) = (self.cfg.encoding, &keys, &slices);
        let work = |conn: &mut Conn, mine: &[usize], tx: &Sender<(Vec<E>, LoadReport)>| {
            let addr = conn.addr.clone();
            let pack = |p: &mut Packer, s: usize| {
                let (log, first, last) = slices[s];
                let (first, last) = (first.to_string(), last.to_string());
                p.cmd(&[b"LRANGE", keys[log].as_bytes(), first.as_bytes(), last.as_bytes()]);
            };
            pipeline(
                conn,
                mine,
                tx,
                pack,
                |_| 1,
                |s, mut replies| {
                    let reply = replies.pop().unwrap_or(Value::Nil);
                    let (log, first, _) = slices[s];
                    check_reply(&reply, || keys[log].clone(), &addr)?;
                    let mut report = LoadReport { round_trips: 1, ..LoadReport::default() };
                    let list = decode_events::<E>(reply, &keys[log], first, encoding, &mut report);
                    Ok((list, report))
                },
            );
        };
        let mut seen: HashMap<usize, HashSet<u64>> = HashMap::new();
        self.parallel(slices.len(), work, |s, (list, mut slice_report)| {
            let log = slices[s].0;
            let all = events.entry(long[log].clone()).or_default();
            let seen = seen.entry(log).or_insert_with(|| all.iter().filter_map(E::dedup_id).collect());
            for ev in list {
                if ev.dedup_id().is_none_or(|id| seen.insert(id)) {
                    all.push(ev);
                } else {
                    slice_report.duplicate_events += 1;
                }
            }
            // The log was counted once, with its first slice.
            slice_report.keys_read = 0;
            report.merge(slice_report);
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
        for &i in &missing {
            self.packer.cmd(&[b"GET", report.issues[i].key.as_bytes()]);
        }
        let replies = self.round_trip(report)?;
        for (&i, reply) in missing.iter().zip(replies) {
            self.check(&reply, || report.issues[i].key.clone())?;
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
        self.packer.cmd(&[b"GET", key.as_bytes()]);
        let reply = self.round_trip(&mut LoadReport::default())?.pop().unwrap_or(Value::Nil);
        // A refused read is not "no marker": two refusals would compare
        // equal and call any read a consistent cut.
        get_reply(reply, key, |e| {
            let kind = crate::net::Cause::of_code(e.code()).kind();
            reply_error(&self.cfg.redacted_url(), kind, &format!("reading the commit marker {key}"), e)
        })
    }

    /// Loads one entity's event log.
    pub(crate) fn events<E: Event>(&mut self, id: &str, report: &mut LoadReport) -> Result<Vec<E>> {
        let key = self.keys.events(<E::Of as Entity>::COLLECTION, id);
        self.packer.cmd(&[b"LRANGE", key.as_bytes(), b"0", b"-1"]);
        let reply = self.round_trip(report)?.pop().unwrap_or(Value::Nil);
        self.check(&reply, || key.clone())?;
        Ok(decode_events::<E>(reply, &key, 0, self.cfg.encoding, report))
    }
}

/// Where a worker sends each job's result, by job index.
type Sender<O> = crossbeam_channel::Sender<(usize, Result<O>)>;

/// A worker of [`Reader::parallel`]: requests its jobs (`mine`) on `conn`,
/// up to two ahead of the one it reads (`pack` packs a job's commands,
/// `replies` counts their replies), hands each job's replies to `decode`
/// and sends the result. Stops at the first error (sent as the job's
/// result) or when the calling thread has gone.
fn pipeline<O>(
    conn: &mut Conn,
    mine: &[usize],
    tx: &Sender<O>,
    mut pack: impl FnMut(&mut Packer, usize),
    replies: impl Fn(usize) -> usize,
    mut decode: impl FnMut(usize, Vec<Value>) -> Result<O>,
) {
    let addr = conn.addr.clone();
    let fail = |e: redis::RedisError| net::Failure::of(&e, &addr).into_error();
    let mut packer = Packer::default();
    let mut sent = 0;
    for (i, &job) in mine.iter().enumerate() {
        let mut result = Ok(());
        while result.is_ok() && sent < mine.len() && sent <= i + 2 {
            packer.clear();
            pack(&mut packer, mine[sent]);
            result = conn.con.send_packed_command(&packer.buf);
            sent += 1;
        }
        let out = result.map_err(fail).and_then(|()| {
            let got = (0..replies(job)).map(|_| conn.con.recv_response().map_err(fail));
            decode(job, got.collect::<Result<_>>()?)
        });
        let failed = out.is_err();
        if tx.send((job, out)).is_err() || failed {
            return;
        }
    }
}
