//! `tradecache.Cache`: the core `Cache` for Python values.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tradecache::{Cache, Config, Entity, Event, PushError, Seq};

use crate::config::Vars;
use crate::errors;
use crate::reader::{Dedup, Reader};
use crate::stats;
use crate::value::{self, Mp};

/// A Python value on its way to the flusher: its id and its value, shared
/// (the core clones the entity it is given; this makes that a count).
#[derive(Clone)]
pub struct Rec(Arc<(String, Mp)>);

/// An event: its id and value.
#[derive(Clone)]
pub struct EvRec(Arc<(u64, Mp)>);

impl Serialize for Rec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0 .1.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Rec {
    // Never used to read (the bindings read with their own reader), but
    // `Entity` asks for it: the value, without its id.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Rec(Arc::new((String::new(), Mp::deserialize(d)?))))
    }
}

impl Serialize for EvRec {
    // Stored as the array [event_id, event].
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.0 .0, &self.0 .1).serialize(s)
    }
}

impl<'de> Deserialize<'de> for EvRec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (id, v) = <(u64, Mp)>::deserialize(d)?;
        Ok(EvRec(Arc::new((id, v))))
    }
}

/// One Rust type per collection the bindings can write (a collection is a
/// compile-time constant of the core's `Entity`), with its event type.
macro_rules! collections {
    ($($ty:ident / $ev:ident => $name:literal),* $(,)?) => {
        $(
            #[derive(Clone, Serialize, Deserialize)]
            #[serde(transparent)]
            struct $ty(Rec);
            impl Entity for $ty {
                const COLLECTION: &'static str = $name;
                fn id(&self) -> &str {
                    &self.0 .0 .0
                }
            }
            #[derive(Clone, Serialize, Deserialize)]
            #[serde(transparent)]
            struct $ev(EvRec);
            impl Event for $ev {
                type Of = $ty;
                fn event_id(&self) -> u64 {
                    self.0 .0 .0
                }
            }
        )*

        /// The collections `put`, `append` and `delete` accept.
        pub const COLLECTIONS: &[&str] = &[$($name),*];

        fn put_in(cache: &Cache, collection: &str, rec: Rec) -> Option<Result<Seq, PushError<()>>> {
            Some(match collection {
                $($name => cache.put(&$ty(rec)).map_err(unit),)*
                _ => return None,
            })
        }

        fn append_in(cache: &Cache, collection: &str, id: &str, ev: EvRec) -> Option<Result<Seq, PushError<()>>> {
            Some(match collection {
                $($name => cache.append(id, &$ev(ev)).map_err(unit),)*
                _ => return None,
            })
        }

        fn delete_in(cache: &Cache, collection: &str, id: &str) -> Option<Result<Seq, PushError<()>>> {
            Some(match collection {
                $($name => cache.delete::<$ty>(id).map_err(unit),)*
                _ => return None,
            })
        }
    };
}

fn unit<T>(e: PushError<T>) -> PushError<()> {
    match e {
        PushError::Full(_) => PushError::Full(()),
        PushError::Closed(_) => PushError::Closed(()),
        PushError::Fenced(_) => PushError::Fenced(()),
        PushError::InvalidId(i) => PushError::InvalidId(i),
    }
}

collections! {
    Orders / OrdersEv => "orders",
    Positions / PositionsEv => "positions",
    Accounts / AccountsEv => "accounts",
    Instruments / InstrumentsEv => "instruments",
    Strategies / StrategiesEv => "strategies",
    Signals / SignalsEv => "signals",
    Portfolios / PortfoliosEv => "portfolios",
    Balances / BalancesEv => "balances",
    Fills / FillsEv => "fills",
    Executions / ExecutionsEv => "executions",
    Risk / RiskEv => "risk",
    State / StateEv => "state",
    Sessions / SessionsEv => "sessions",
    Bots / BotsEv => "bots",
    Custom / CustomEv => "custom",
}

fn unknown_collection(py: Python<'_>, collection: &str) -> PyErr {
    errors::make(
        py,
        "UnknownCollection",
        format!(
            "collection {collection:?} is not one the Python bindings can write; they write: {} \
             (the core's collections are compile-time constants; see python/README.md)",
            COLLECTIONS.join(", ")
        ),
        "Config",
        &[],
    )
}

fn secs(py: Python<'_>, timeout: f64) -> PyResult<Duration> {
    if !timeout.is_finite() || timeout < 0.0 {
        return Err(errors::config_error(
            py,
            format!("timeout must be a non-negative number of seconds, got {timeout}"),
        ));
    }
    Ok(Duration::from_secs_f64(timeout))
}

/// Splits a stored event `[event_id, event]` into its id and the event's
/// bytes.
fn split_event(b: &[u8]) -> Option<(u64, &[u8])> {
    let (&head, rest) = b.split_first()?;
    if head != 0x92 {
        return None;
    }
    let (&m, rest) = rest.split_first()?;
    let (n, rest) = match m {
        0x00..=0x7f => return Some((u64::from(m), rest)),
        0xcc => (1, rest),
        0xcd => (2, rest),
        0xce => (4, rest),
        0xcf => (8, rest),
        _ => return None,
    };
    if rest.len() < n {
        return None;
    }
    let id = rest[..n].iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
    Some((id, &rest[n..]))
}

/// A write-behind cache of a trading engine's state in Redis.
///
/// Open it with keyword arguments or the environment (the variables of
/// the core's `Config.from_env`: `Cache(url="redis://…", trader_id="T1")`,
/// or `REDIS_URL`, `CACHE_TRADER_ID`, …). Writes (`put`, `append`,
/// `delete`) return a sequence number at once, without I/O; `wait`/`flush`
/// block until Redis has them. Values are stored as MessagePack.
#[pyclass(module = "tradecache._tradecache", name = "Cache", subclass)]
pub struct PyCache {
    /// Read with `read_recursive` while the GIL is held (a waiting `close`
    /// must not make a GIL holder wait behind a reader that needs the GIL).
    inner: RwLock<Option<Cache>>,
    reader: Reader,
    close_timeout: Duration,
    /// `overflow=block`: a write may wait for room, so it releases the GIL.
    block: bool,
}

impl PyCache {
    fn with<T>(&self, py: Python<'_>, f: impl FnOnce(&Cache) -> PyResult<T>) -> PyResult<T> {
        let guard = self.inner.read_recursive();
        match guard.as_ref() {
            Some(c) => f(c),
            None => Err(errors::make(py, "Closed", "the cache is closed".into(), "Closed", &[])),
        }
    }

    /// Waits until every write accepted so far is acknowledged (a read's
    /// read-your-writes); a dropped write is not an error here (the read
    /// returns what Redis has; `flush` reports it).
    fn settle(&self, py: Python<'_>, timeout: Duration) -> PyResult<()> {
        if let Some(why) = self.reader.unsupported() {
            return Err(errors::unsupported(py, why.to_string()));
        }
        let guard = self.inner.read_recursive();
        let Some(cache) = guard.as_ref() else {
            return Err(errors::make(py, "Closed", "the cache is closed".into(), "Closed", &[]));
        };
        let r = py.allow_threads(|| cache.wait(cache.last_seq(), timeout));
        match r {
            Ok(()) | Err(tradecache::Error::Dropped { .. }) | Err(tradecache::Error::Fenced { .. }) => Ok(()),
            Err(e) => Err(errors::from_core(py, e)),
        }
    }

    fn read_err(py: Python<'_>, e: String) -> PyErr {
        errors::make(py, "IoError", e, "Io", &[])
    }

    fn decode_events<'py>(
        py: Python<'py>,
        key: impl Fn() -> String,
        raw: &[Vec<u8>],
        with_ids: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        let mut seen = Dedup::new();
        let single = raw.len() == 1;
        for (i, b) in raw.iter().enumerate() {
            // An entry not written by the bindings (a Rust engine's event,
            // a map with its own id field) is read whole, without an id.
            let (id, body) = match split_event(b) {
                Some((id, body)) => (Some(id), body),
                None => (None, b.as_slice()),
            };
            if let Some(id) = id {
                if !single && !seen.first(id) {
                    continue;
                }
            }
            let v = value::decode(py, body)
                .map_err(|e| errors::decode_error(py, format!("{}[{i}]: {e}", key())))?;
            if with_ids {
                out.append((id, v))?;
            } else {
                out.append(v)?;
            }
        }
        Ok(out)
    }
}

#[pymethods]
impl PyCache {
    /// Opens the cache (connects, reads the commit marker, starts the
    /// flusher). Keyword arguments name the variables of the core's
    /// `Config.from_env` (`url`, `trader_id`, `writer_id`, `channel_capacity`,
    /// … or `REDIS_URL`, …); unless `env=False` the environment fills in
    /// the rest.
    #[new]
    #[pyo3(signature = (*, env = true, **options))]
    fn new(py: Python<'_>, env: bool, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let vars = Vars::from_kwargs(py, options, env)?;
        let config = Config::from_vars(|name| vars.get(name)).map_err(|e| errors::from_core(py, e.into()))?;
        if vars.set("CACHE_ENCODING").is_some_and(|e| e.trim().eq_ignore_ascii_case("json")) {
            return Err(errors::config_error(
                py,
                "CACHE_ENCODING: the Python bindings store MessagePack only".into(),
            ));
        }
        let close_timeout = vars
            .set("CACHE_CLOSE_TIMEOUT_MS")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(5));
        let reader = Reader::new(&vars);
        let cache = py.allow_threads(|| Cache::open(config)).map_err(|e| errors::from_core(py, e))?;
        let block = vars.set("CACHE_OVERFLOW").is_some_and(|o| o.trim().eq_ignore_ascii_case("block"));
        Ok(PyCache { inner: RwLock::new(Some(cache)), reader, close_timeout, block })
    }

    /// Queues the latest value of entity `id` in `collection`; returns its
    /// sequence number. No I/O: the value is converted here and encoded on
    /// the flusher thread. Raises `Full` (the value handed back as
    /// `.value`) when the channel is full, `InvalidId`, `EncodeError`,
    /// `UnknownCollection`, `Fenced`, `Closed`.
    fn put(&self, py: Python<'_>, collection: &str, id: &str, value: &Bound<'_, PyAny>) -> PyResult<u64> {
        let mp = value::from_py(value)?;
        let rec = Rec(Arc::new((id.to_owned(), mp)));
        let block = self.block;
        self.with(py, |c| {
            let r = if block {
                py.allow_threads(|| put_in(c, collection, rec))
            } else {
                put_in(c, collection, rec)
            };
            match r {
                None => Err(unknown_collection(py, collection)),
                Some(Ok(seq)) => Ok(seq.get()),
                Some(Err(e)) => Err(errors::from_push(py, e, value.clone().unbind())),
            }
        })
    }

    /// Appends `event` (id `event_id`, unique within the log) to the event
    /// log of entity `id` in `collection`; returns its sequence number.
    /// Stored as the MessagePack array `[event_id, event]`.
    fn append(
        &self,
        py: Python<'_>,
        collection: &str,
        id: &str,
        event_id: u64,
        event: &Bound<'_, PyAny>,
    ) -> PyResult<u64> {
        let mp = value::from_py(event)?;
        let ev = EvRec(Arc::new((event_id, mp)));
        let block = self.block;
        self.with(py, |c| {
            let r = if block {
                py.allow_threads(|| append_in(c, collection, id, ev))
            } else {
                append_in(c, collection, id, ev)
            };
            match r {
                None => Err(unknown_collection(py, collection)),
                Some(Ok(seq)) => Ok(seq.get()),
                Some(Err(e)) => Err(errors::from_push(py, e, event.clone().unbind())),
            }
        })
    }

    /// Queues the deletion of entity `id` (its value, event log and index
    /// entries); returns its sequence number.
    fn delete(&self, py: Python<'_>, collection: &str, id: &str) -> PyResult<u64> {
        self.with(py, |c| match delete_in(c, collection, id) {
            None => Err(unknown_collection(py, collection)),
            Some(Ok(seq)) => Ok(seq.get()),
            Some(Err(e)) => Err(errors::from_push(py, e, id.into_pyobject(py)?.into_any().unbind())),
        })
    }

    /// Blocks (without the GIL) until the write `seq` and every write
    /// before it are in Redis. Raises `WaitTimeout`, `Dropped`, `Fenced`.
    #[pyo3(signature = (seq, timeout = 5.0))]
    fn wait(&self, py: Python<'_>, seq: u64, timeout: f64) -> PyResult<()> {
        let t = secs(py, timeout)?;
        self.with(py, |c| py.allow_threads(|| c.wait(Seq::new(seq), t)).map_err(|e| errors::from_core(py, e)))
    }

    /// Blocks (without the GIL) until every write accepted so far is in
    /// Redis. Raises `WaitTimeout`, `Dropped`, `Fenced`.
    #[pyo3(signature = (timeout = 5.0))]
    fn flush(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        let t = secs(py, timeout)?;
        self.with(py, |c| py.allow_threads(|| c.flush(t)).map_err(|e| errors::from_core(py, e)))
    }

    /// Flushes, stops the flusher and closes; returns
    /// `{"acked_seq": …, "unpersisted": 0}`. Raises `Unpersisted` when
    /// accepted writes could not be written within `timeout`. Closing twice
    /// is a no-op.
    #[pyo3(signature = (timeout = None))]
    fn close(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<PyObject> {
        let t = match timeout {
            Some(t) => secs(py, t)?,
            None => self.close_timeout,
        };
        // Without the GIL: a reader may hold the lock while it waits (GIL
        // released) and needs the GIL back to finish.
        let taken = py.allow_threads(|| self.inner.write().take());
        let d = PyDict::new(py);
        let Some(cache) = taken else {
            return Ok(d.into_any().unbind());
        };
        let report = py.allow_threads(|| cache.close(t)).map_err(|e| errors::from_core(py, e))?;
        d.set_item("acked_seq", report.acked_seq)?;
        d.set_item("unpersisted", report.unpersisted)?;
        Ok(d.into_any().unbind())
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.read_recursive().is_none()
    }

    /// The sequence number of the last accepted write (0 before any).
    fn last_seq(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(py, |c| Ok(c.last_seq().get()))
    }

    /// The sequence number up to which every write is in Redis.
    fn acked_seq(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(py, |c| Ok(c.acked_seq().get()))
    }

    /// The latest value of entity `id`, or None. Sees every write this
    /// process made before it (waits, without the GIL, until they are
    /// acknowledged), then one `GET`.
    #[pyo3(signature = (collection, id, timeout = 5.0))]
    fn get(&self, py: Python<'_>, collection: &str, id: &str, timeout: f64) -> PyResult<PyObject> {
        tradecache::Ident::new(id).map_err(|e| errors::from_core(py, e.into()))?;
        check_collection(py, collection)?;
        self.settle(py, secs(py, timeout)?)?;
        let raw = py.allow_threads(|| self.reader.get(collection, id)).map_err(|e| Self::read_err(py, e))?;
        match raw {
            None => Ok(py.None()),
            Some(b) => value::decode(py, &b).map_err(|e| {
                errors::decode_error(py, format!("{}: {e}", self.reader.entity_key(collection, id)))
            }),
        }
    }

    /// The event log of entity `id`, in append order (repeated event ids
    /// dropped); `with_ids=True` gives `(event_id, event)` pairs. Read-your-
    /// writes as `get`.
    #[pyo3(signature = (collection, id, with_ids = false, timeout = 5.0))]
    fn get_events<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        id: &str,
        with_ids: bool,
        timeout: f64,
    ) -> PyResult<Bound<'py, PyList>> {
        tradecache::Ident::new(id).map_err(|e| errors::from_core(py, e.into()))?;
        check_collection(py, collection)?;
        self.settle(py, secs(py, timeout)?)?;
        let raw =
            py.allow_threads(|| self.reader.get_events(collection, id)).map_err(|e| Self::read_err(py, e))?;
        Self::decode_events(py, || self.reader.events_key(collection, id), &raw, with_ids)
    }

    /// Everything this trader persisted: `{"entities": {collection: {id:
    /// value}}, "events": {collection: {id: [event, …]}}, "report": {…}}`
    /// (the Python `load()` wraps it in a `Snapshot`). `collections`: the
    /// ones to read (default: those of `COLLECTIONS` that have an index
    /// set). A thread of its own reads chunks of `load_chunk` ids (one
    /// pipeline of an `MGET` and an `LRANGE` per id each) while this one,
    /// with the GIL, builds the Python objects of the chunk before. The
    /// commit marker is read before and after; the state is read again
    /// (three times at most) when a batch landed in between.
    #[pyo3(signature = (collections = None, events = true, timeout = 5.0))]
    fn _load(
        &self,
        py: Python<'_>,
        collections: Option<Vec<String>>,
        events: bool,
        timeout: f64,
    ) -> PyResult<PyObject> {
        self.settle(py, secs(py, timeout)?)?;
        let started = std::time::Instant::now();
        let reader = &self.reader;
        let names: Vec<String> = match collections {
            Some(c) => c,
            None => py.allow_threads(|| reader.present(COLLECTIONS)).map_err(|e| Self::read_err(py, e))?,
        };
        for n in &names {
            check_collection(py, n)?;
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut keys_read = 0u64;
            let mut round_trips = 2u64; // the marker, before and after
            let mut waited = Duration::ZERO;
            let entities = PyDict::new(py);
            let event_map = PyDict::new(py);
            let issues = PyList::empty(py);
            let mut dicts = Vec::with_capacity(names.len());
            for n in &names {
                let (e, v) = (PyDict::new(py), PyDict::new(py));
                entities.set_item(n, &e)?;
                if events {
                    event_map.set_item(n, &v)?;
                }
                dicts.push((e, v));
            }
            let before = py.allow_threads(|| reader.marker()).map_err(|e| Self::read_err(py, e))?;
            // The ids of every collection, then their chunks, fetched by
            // FETCHERS threads (a connection each) taking turns, and
            // decoded here, in order, as they arrive.
            let mut tasks: Vec<(usize, Vec<String>)> = Vec::new();
            for (ci, name) in names.iter().enumerate() {
                let ids = py.allow_threads(|| reader.ids(name)).map_err(|e| Self::read_err(py, e))?;
                for chunk in ids.chunks(reader.chunk) {
                    tasks.push((ci, chunk.to_vec()));
                }
            }
            let fetchers = FETCHERS.min(tasks.len()).max(1);
            let (tx, rx) =
                crossbeam_channel::bounded::<(usize, Result<Vec<crate::reader::Raw>, String>)>(2 * fetchers);
            let tasks_ref = &tasks;
            let names_ref = &names;
            let done: PyResult<()> = std::thread::scope(|s| {
                let rx = rx; // dropped when this closure returns: the fetchers' next send fails and they end
                for w in 0..fetchers {
                    let tx = tx.clone();
                    s.spawn(move || {
                        for (t, (ci, ids)) in tasks_ref.iter().enumerate().skip(w).step_by(fetchers) {
                            let r = reader.chunk(&names_ref[*ci], ids, events);
                            let failed = r.is_err();
                            if tx.send((t, r)).is_err() || failed {
                                return;
                            }
                        }
                    });
                }
                drop(tx);
                let mut early: std::collections::BTreeMap<usize, Vec<crate::reader::Raw>> =
                    Default::default();
                let mut next = 0;
                while next < tasks_ref.len() {
                    let raws = match early.remove(&next) {
                        Some(r) => r,
                        None => {
                            let w0 = std::time::Instant::now();
                            let got = py.allow_threads(|| rx.recv());
                            waited += w0.elapsed();
                            let Ok((t, msg)) = got else {
                                return Err(Self::read_err(py, "a load fetcher stopped".into()));
                            };
                            let raws = msg.map_err(|e| Self::read_err(py, e))?;
                            if t != next {
                                early.insert(t, raws);
                                continue;
                            }
                            raws
                        }
                    };
                    let ci = tasks_ref[next].0;
                    next += 1;
                    round_trips += 1;
                    let (ents, evs) = &dicts[ci];
                    let name = &names[ci];
                    for raw in raws {
                        keys_read += 1 + u64::from(events);
                        let Some(b) = raw.value else {
                            continue; // deleted between SMEMBERS and MGET
                        };
                        let id = PyString::new(py, &raw.id);
                        match value::decode(py, &b) {
                            Ok(v) => ents.set_item(&id, v)?,
                            Err(e) => {
                                issues.append((reader.entity_key(name, &raw.id), e.to_string()))?;
                                continue;
                            }
                        }
                        if events && !raw.events.is_empty() {
                            let ekey = || reader.events_key(name, &raw.id);
                            match Self::decode_events(py, ekey, &raw.events, false) {
                                Ok(l) => evs.set_item(&id, l)?,
                                Err(e) => issues.append((ekey(), e.to_string()))?,
                            }
                        }
                    }
                }
                Ok(())
            });
            done?;
            let after = py.allow_threads(|| reader.marker()).map_err(|e| Self::read_err(py, e))?;
            let consistent = after == before;
            if !consistent && attempts < 3 {
                continue;
            }
            round_trips += names.len() as u64; // the SMEMBERS
            let report = PyDict::new(py);
            report.set_item("consistent", consistent)?;
            report.set_item("attempts", attempts)?;
            report.set_item("keys_read", keys_read)?;
            report.set_item("round_trips", round_trips)?;
            report.set_item("elapsed", started.elapsed().as_secs_f64())?;
            report.set_item("issues", issues)?;
            // Time the decoding thread waited for the fetchers (diagnostics).
            report.set_item("waited_for_redis", waited.as_secs_f64())?;
            let out = PyDict::new(py);
            out.set_item("entities", entities)?;
            out.set_item("events", event_map)?;
            out.set_item("report", report)?;
            return Ok(out.into_any().unbind());
        }
    }

    /// Writes the flusher dropped (too large, a key of another type, …),
    /// as dicts; taking them clears the list.
    fn take_dropped<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.with(py, |c| {
            let out = PyList::empty(py);
            for d in c.take_dropped() {
                out.append(stats::dropped(py, &d)?)?;
            }
            Ok(out)
        })
    }

    /// The flusher's health as a dict (`tradecache.Health` wraps it).
    fn _health(&self, py: Python<'_>) -> PyResult<PyObject> {
        self.with(py, |c| stats::health(py, &c.health()))
    }

    /// The counters as a dict (`tradecache.Stats` wraps it).
    fn _stats(&self, py: Python<'_>) -> PyResult<PyObject> {
        self.with(py, |c| stats::stats(py, &c.stats()))
    }

    /// The key prefix of this cache (`trader-T1`), as the bindings read it.
    #[getter]
    fn key_prefix(&self) -> String {
        self.reader.prefix.clone()
    }

    /// The collections `put`/`append`/`delete` accept.
    #[classattr]
    #[pyo3(name = "COLLECTIONS")]
    fn collections() -> Vec<&'static str> {
        COLLECTIONS.to_vec()
    }
}

/// Threads (and connections) fetching chunks for `load`.
const FETCHERS: usize = 2;

fn check_collection(py: Python<'_>, collection: &str) -> PyResult<()> {
    if collection.is_empty()
        || !collection.bytes().all(|b| b.is_ascii_graphic() && b != b':' && b != b'{' && b != b'}')
        || matches!(collection, "index" | "writer" | "stream" | "heartbeat")
    {
        return Err(errors::config_error(py, format!("{collection:?} is not a collection name")));
    }
    Ok(())
}
