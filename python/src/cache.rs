//! `tradecache.Cache`: the core `Cache` for Python values, through the
//! core's runtime-collection API (`tradecache::raw`): any collection name
//! (checked by the core's rule), values encoded to MessagePack on the
//! calling thread and handed over as `RawValue`s, reads (`get`,
//! `get_events`, `load`) on the core's own read connections and loader
//! (so TLS, Sentinel and Cluster deployments read as they write).

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use tradecache::raw::{RawState, RawValue};
use tradecache::{Cache, Config, Seq};

use crate::args::{self, Flag, SeqArg, Timeout};
use crate::config::Vars;
use crate::errors;
use crate::handle::Handle;
use crate::pack;
use crate::stats;
use crate::value;

/// Python's cyclic garbage collector paused while a load builds its
/// objects: they hold no cycles, yet every few hundred new dicts and lists
/// set off a collection, and the older generations' collections walk the
/// whole heap again and again (a fifth of a large load's time). Built, the
/// young generation is collected once ([`GcPause::end`]); a load that
/// fails turns the collector back on as it was ([`Drop`]). While the pause
/// lasts (the GIL is released between parts), other threads' garbage waits
/// too. A collector the application had turned off stays off.
struct GcPause {
    /// The `gc` module, while the collector is paused by this load.
    paused: Option<Py<PyModule>>,
}

impl GcPause {
    fn start(py: Python<'_>) -> PyResult<Self> {
        let gc = py.import("gc")?;
        let on: bool = gc.call_method0("isenabled")?.extract()?;
        if on {
            gc.call_method0("disable")?;
        }
        Ok(GcPause { paused: on.then(|| gc.unbind()) })
    }

    /// Turns the collector back on and collects the young generation (what
    /// the load built goes to the next one, as it would have).
    fn end(mut self, py: Python<'_>) -> PyResult<()> {
        if let Some(gc) = self.paused.take() {
            let gc = gc.bind(py);
            gc.call_method0("enable")?;
            gc.call_method1("collect", (0,))?;
        }
        Ok(())
    }
}

impl Drop for GcPause {
    fn drop(&mut self) {
        if let Some(gc) = self.paused.take() {
            // `_load` holds the GIL here: taking it again is immediate.
            Python::with_gil(|py| {
                if let Err(e) = gc.bind(py).call_method0("enable") {
                    e.write_unraisable(py, None);
                }
            });
        }
    }
}

/// The most a thread's packing buffer keeps between writes (a larger value
/// is packed, then the buffer shrinks back to this).
const SCRATCH_KEEP: usize = 64 * 1024;

thread_local! {
    /// Each thread's buffer for packing a value: a write packs into it and
    /// hands the core one allocation of the value's exact size, instead of
    /// a fresh buffer that grows (reallocates) as the walk fills it. The
    /// flusher thread frees what a write allocated, and with glibc every
    /// such allocation and free takes the same arena lock: the fewer a
    /// write makes, the less often the calling thread meets the flusher on
    /// that lock (a futex wait or wake on the calling thread).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The flusher thread started as a background thread (Linux): while the
/// core opens the cache, the calling thread runs under `SCHED_BATCH`, which
/// the flusher it starts inherits, and then gets its own policy back.
///
/// Why: a `SCHED_BATCH` thread never preempts another thread when it wakes
/// up (it runs on an idle CPU, or when the running thread's time slice
/// ends), and otherwise gets its fair share of the CPU as before. Without
/// it, the flusher woken by Redis's reply (or by its poll) took the CPU
/// from the thread that writes, in the middle of a call: on two busy
/// cores, 96% of that thread's preemptions during a burst of Nautilus
/// `Cache` calls were by the flusher, ~100 µs each, which made the calls'
/// p99 (python/bench/README.md, "Where the calling thread's p99 went").
///
/// Only a thread under the default policy (`SCHED_OTHER`) is switched (a
/// real-time or already-background caller, and its flusher, stay as they
/// are), and only where the system lets it (`os.sched_setscheduler`; not
/// on other systems, nor where a sandbox refuses it: the flusher then
/// runs as before).
struct Background {
    /// `os` and the caller's policy, while the calling thread runs as
    /// `SCHED_BATCH`.
    switched: Option<(Py<PyModule>, PyObject)>,
}

impl Background {
    fn start(py: Python<'_>) -> Self {
        let switch = || -> PyResult<Option<(Py<PyModule>, PyObject)>> {
            let os = py.import("os")?;
            let (Ok(batch), Ok(other)) = (os.getattr("SCHED_BATCH"), os.getattr("SCHED_OTHER")) else {
                return Ok(None);
            };
            let policy = os.call_method1("sched_getscheduler", (0,))?;
            if !policy.eq(&other)? {
                return Ok(None);
            }
            let param = os.getattr("sched_param")?.call1((0,))?;
            os.call_method1("sched_setscheduler", (0, batch, param))?;
            Ok(Some((os.unbind(), policy.unbind())))
        };
        // Not switched (refused, or no such call here): the flusher
        // starts under the caller's policy, as it always did.
        Background { switched: switch().ok().flatten() }
    }

    /// Gives the calling thread its policy back.
    fn end(mut self, py: Python<'_>) -> PyResult<()> {
        match self.switched.take() {
            Some((os, policy)) => Self::restore(py, &os, &policy),
            None => Ok(()),
        }
    }

    fn restore(py: Python<'_>, os: &Py<PyModule>, policy: &PyObject) -> PyResult<()> {
        let os = os.bind(py);
        let param = os.getattr("sched_param")?.call1((0,))?;
        os.call_method1("sched_setscheduler", (0, policy, param))?;
        Ok(())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some((os, policy)) = self.switched.take() {
            // Only on an early return (`end` restores otherwise); the GIL
            // is held there.
            Python::with_gil(|py| {
                if let Err(e) = Self::restore(py, &os, &policy) {
                    e.write_unraisable(py, None);
                }
            });
        }
    }
}

/// A value packed once (`tradecache.Packed(value)`, the bytes `packb`
/// gives): `Cache.put` and `Cache.append` store its bytes as they are, with
/// no packing or checking again, so a value written more than once (an
/// entity's value put again with `closed=True`) costs its packing once.
/// Immutable; `bytes(p)` gives the bytes, `len(p)` their length.
#[pyclass(module = "tradecache._tradecache", name = "Packed", frozen)]
pub struct Packed(RawValue);

#[pymethods]
impl Packed {
    #[new]
    fn new(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Self> {
        raw_value(py, value).map(Packed)
    }

    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, pyo3::types::PyBytes> {
        pyo3::types::PyBytes::new(py, self.0.as_bytes())
    }

    fn __len__(&self) -> usize {
        self.0.as_bytes().len()
    }

    fn __repr__(&self) -> String {
        format!("Packed(<{} bytes>)", self.0.as_bytes().len())
    }
}

/// Encodes a Python value as the `RawValue` the core stores (a `Packed`'s
/// as it is: its bytes are shared, not copied).
fn raw_value(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<RawValue> {
    if let Ok(p) = v.downcast::<Packed>() {
        return Ok(p.get().0.clone());
    }
    let out = SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            // One allocation of the value's size: the shared bytes.
            let packed = pack::pack(v, &mut buf).map(|()| std::sync::Arc::<[u8]>::from(&buf[..]));
            if buf.capacity() > SCRATCH_KEEP {
                buf.clear();
                buf.shrink_to(SCRATCH_KEEP);
            }
            packed
        }
        // A write made by Python code the walk runs (a `Decimal`
        // subclass's `__str__`) while this thread's buffer is in use.
        Err(_) => {
            let mut own = Vec::new();
            pack::pack(v, &mut own).map(|()| own.into())
        }
    })?;
    RawValue::msgpack(out).map_err(|e| errors::encode_error(py, e.to_string()))
}

/// Splits an event entry of the old format, the array `[event_id, event]`
/// written by versions before the runtime-collection API, into its id and
/// the event's bytes.
fn split_legacy(b: &[u8]) -> Option<(u64, &[u8])> {
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

/// Decodes an event log's entries: each is the event itself, or with
/// `legacy` an old-format `[event_id, event]` entry is split (its id kept
/// with `with_ids`, repeats of an id dropped, as the old reads did).
fn decode_events<'py>(
    py: Python<'py>,
    key: &dyn Fn() -> String,
    raw: &[Vec<u8>],
    with_ids: bool,
    legacy: bool,
) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    let mut seen = std::collections::HashSet::new();
    for (i, b) in raw.iter().enumerate() {
        let (id, body) = match legacy.then(|| split_legacy(b)).flatten() {
            Some((id, body)) => (Some(id), body),
            None => (None, b.as_slice()),
        };
        if let Some(id) = id {
            if !seen.insert(id) {
                continue;
            }
        }
        let v =
            value::decode(py, body).map_err(|e| errors::decode_error(py, format!("{}[{i}]: {e}", key())))?;
        if with_ids {
            out.append((id, v))?;
        } else {
            out.append(v)?;
        }
    }
    Ok(out)
}

/// The default `timeout` of the calls that wait.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A write-behind cache of a trading engine's state in Redis.
///
/// Open it with keyword arguments or the environment (the variables of
/// the core's `Config.from_env`: `Cache(url="redis://…", trader_id="T1")`,
/// or `REDIS_URL`, `CACHE_TRADER_ID`, …). Writes (`put`, `append`,
/// `delete`) return a sequence number at once, without I/O; `wait`/`flush`
/// block until Redis has them. Values are stored as MessagePack.
#[pyclass(module = "tradecache._tradecache", name = "Cache", subclass)]
pub struct PyCache {
    inner: Handle<Cache>,
    /// `trader-T1` (`{trader-T1}` in a Cluster): what the keys start with.
    key_prefix: String,
    close_timeout: Duration,
    /// `overflow=block`: a write may wait for room, so it releases the GIL.
    block: bool,
}

impl PyCache {
    fn with<T>(&self, py: Python<'_>, f: impl FnOnce(&Cache) -> PyResult<T>) -> PyResult<T> {
        self.inner.with(py, None, f)
    }

    /// Waits until every write accepted so far is acknowledged (a read's
    /// read-your-writes); a dropped write is not an error here (the read
    /// returns what Redis has; `flush` reports it).
    fn settle(&self, py: Python<'_>, cache: &Cache, timeout: Duration) -> PyResult<()> {
        let r = py.allow_threads(|| cache.wait(cache.last_seq(), timeout));
        match r {
            Ok(()) | Err(tradecache::Error::Dropped { .. }) | Err(tradecache::Error::Fenced { .. }) => Ok(()),
            Err(e) => Err(errors::from_core(py, e)),
        }
    }

    fn key(&self, rest: std::fmt::Arguments<'_>) -> String {
        if self.key_prefix.is_empty() {
            rest.to_string()
        } else {
            format!("{}:{rest}", self.key_prefix)
        }
    }

    /// Decodes one part of a load into the result's dicts.
    #[allow(clippy::too_many_arguments)]
    fn build_part(
        &self,
        py: Python<'_>,
        part: &tradecache::raw::RawPart,
        entities: &Bound<'_, PyDict>,
        event_map: &Bound<'_, PyDict>,
        issues: &Bound<'_, PyList>,
        events: bool,
        legacy: bool,
    ) -> PyResult<()> {
        let name = part.collection.as_str();
        let ents = entities.get_item(name)?.ok_or_else(|| errors::config_error(py, format!("{name}?")))?;
        let ents = ents.downcast::<PyDict>()?;
        let evs = match event_map.get_item(name)? {
            Some(d) if events => Some(d.downcast_into::<PyDict>()?),
            _ => None,
        };
        for e in &part.entities {
            let id = PyString::new(py, e.id.as_str());
            match value::decode(py, &e.value) {
                Ok(v) => ents.set_item(&id, v)?,
                Err(err) => {
                    issues.append((self.key(format_args!("{name}:{}", e.id)), err.value(py).to_string()))?;
                    continue;
                }
            }
            if let Some(evs) = &evs {
                if !e.events.is_empty() {
                    let key = || self.key(format_args!("{name}:{}:events", e.id));
                    match decode_events(py, &key, &e.events, false, legacy) {
                        Ok(l) => evs.set_item(&id, l)?,
                        Err(err) => issues.append((key(), err.value(py).to_string()))?,
                    }
                }
            }
        }
        Ok(())
    }

    /// A write of `value` (handed back if refused), with the GIL released
    /// when it may wait for room.
    fn write<E: Send>(
        &self,
        py: Python<'_>,
        value: &Bound<'_, PyAny>,
        f: impl FnOnce(&Cache) -> Result<Seq, tradecache::PushError<E>> + Send,
    ) -> PyResult<u64> {
        let block = self.block;
        let r =
            self.inner.with(py, Some(value), |c| Ok(if block { py.allow_threads(|| f(c)) } else { f(c) }))?;
        r.map(Seq::get).map_err(|e| errors::from_push(py, e, value.clone().unbind()))
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
    #[pyo3(signature = (*, env = Flag(true), **options))]
    fn new(py: Python<'_>, env: Flag, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let vars = Vars::from_kwargs(py, options, env.0)?;
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
        let background = Background::start(py);
        let cache = py.allow_threads(|| Cache::open(config));
        // Back to the caller's policy (before the cache is returned or its
        // error raised).
        background.end(py)?;
        let cache = cache.map_err(|e| errors::from_core(py, e))?;
        let block = vars.set("CACHE_OVERFLOW").is_some_and(|o| o.trim().eq_ignore_ascii_case("block"));
        let key_prefix = cache.key_prefix().to_string();
        Ok(PyCache { inner: Handle::new(cache, "cache"), key_prefix, close_timeout, block })
    }

    /// Queues the latest value of entity `id` in `collection` (any name
    /// the core's rule allows); returns its sequence number. No I/O: the
    /// value is encoded to MessagePack here and written by the flusher
    /// thread. `closed=True` marks the entity done (a filled order): it
    /// leaves the open index and `purge_closed` / `retain_closed_for` may
    /// remove it. `restart=True`: the entity starts again, its event log
    /// deleted by this same write (a crash keeps the old value with its
    /// log or this one without; never neither, as a `delete` then a `put`
    /// could). Raises `Full` (the value handed back as `.value`) when
    /// the channel is full, `InvalidId`, `EncodeError`,
    /// `UnknownCollection`, `Fenced`, `Closed` (`Forked` in a forked
    /// child; both hand the value back too).
    #[pyo3(signature = (collection, id, value, closed = Flag(false), restart = Flag(false)))]
    fn put(
        &self,
        py: Python<'_>,
        collection: &Bound<'_, PyAny>,
        id: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        closed: Flag,
        restart: Flag,
    ) -> PyResult<u64> {
        let c = args::collection(collection)?;
        let id = args::id(id)?;
        let raw = raw_value(py, value)?;
        let mut state = RawState::closed(closed.0);
        state.restart = restart.0;
        self.write(py, value, |cache| cache.put_raw_with(c, id, raw, state))
    }

    /// Appends `event` to the event log of entity `id` in `collection`;
    /// returns its sequence number. Stored as the event's own MessagePack
    /// (exactly once: no id is needed to drop repeats).
    /// `append(collection, id, event_id, event)`, the older form, is still
    /// accepted: `event_id` is checked (a non-negative int) but not stored
    /// (a `DeprecationWarning` says so); put the id inside the event if you
    /// need it back.
    #[pyo3(signature = (collection, id, *args))]
    fn append(
        &self,
        py: Python<'_>,
        collection: &Bound<'_, PyAny>,
        id: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<u64> {
        let event = match args.len() {
            1 => args.get_item(0)?,
            2 => {
                args::event_id(&args.get_item(0)?)?;
                PyErr::warn(
                    py,
                    &py.get_type::<pyo3::exceptions::PyDeprecationWarning>(),
                    c"append(collection, id, event_id, event): event_id is no longer stored; call append(collection, id, event)",
                    1,
                )?;
                args.get_item(1)?
            }
            n => {
                return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                    "append(collection, id, event) takes 3 arguments ({} given)",
                    n + 2
                )))
            }
        };
        let c = args::collection(collection)?;
        let id = args::id(id)?;
        let raw = raw_value(py, &event)?;
        self.write(py, &event, |cache| cache.append_raw(c, id, raw))
    }

    /// Queues the deletion of entity `id` (its value, event log and index
    /// entries); returns its sequence number. A refused delete hands the
    /// id back as `value`.
    fn delete(&self, py: Python<'_>, collection: &Bound<'_, PyAny>, id: &Bound<'_, PyAny>) -> PyResult<u64> {
        let c = args::collection(collection)?;
        let id_s = args::id(id)?;
        self.write(py, id, |cache| cache.delete_raw(c, id_s))
    }

    /// Blocks (without the GIL) until the write `seq` and every write
    /// before it are in Redis. Raises `WaitTimeout`, `Dropped`, `Fenced`.
    #[pyo3(signature = (seq, timeout = Timeout(DEFAULT_TIMEOUT)))]
    fn wait(&self, py: Python<'_>, seq: SeqArg, timeout: Timeout) -> PyResult<()> {
        let t = timeout.0;
        self.with(py, |c| {
            py.allow_threads(|| c.wait(Seq::new(seq.0), t)).map_err(|e| errors::from_core(py, e))
        })
    }

    /// Blocks (without the GIL) until every write accepted so far is in
    /// Redis. Raises `WaitTimeout`, `Dropped`, `Fenced`.
    #[pyo3(signature = (timeout = Timeout(DEFAULT_TIMEOUT)))]
    fn flush(&self, py: Python<'_>, timeout: Timeout) -> PyResult<()> {
        let t = timeout.0;
        self.with(py, |c| py.allow_threads(|| c.flush(t)).map_err(|e| errors::from_core(py, e)))
    }

    /// Deletes this cache's keys (its values, event logs and index sets;
    /// with an instance id, that instance's), never another trader's key,
    /// never `FLUSHDB` (the core's `Cache::clear`): a write like the
    /// others, applied after every write before it; blocks (without the
    /// GIL) until applied and returns the number of keys deleted. Raises
    /// `ConfigError` without a trader prefix, `WaitTimeout`, `Fenced`.
    #[pyo3(signature = (timeout = Timeout(DEFAULT_TIMEOUT)))]
    fn clear(&self, py: Python<'_>, timeout: Timeout) -> PyResult<u64> {
        let t = timeout.0;
        self.with(py, |c| py.allow_threads(|| c.clear(t)).map_err(|e| errors::from_core(py, e)))
    }

    /// Flushes, stops the flusher and closes; returns
    /// `{"acked_seq": …, "unpersisted": 0}`. Raises `Unpersisted` when
    /// accepted writes could not be written within `timeout`. Closing twice
    /// is a no-op, and so is closing in a forked child (it lets go of the
    /// parent's cache without touching it; `{}`).
    #[pyo3(signature = (timeout = None))]
    fn close(&self, py: Python<'_>, timeout: Option<Timeout>) -> PyResult<PyObject> {
        let t = timeout.map_or(self.close_timeout, |t| t.0);
        self.inner.close(py, |cache| cache.close(t))
    }

    /// Whether `close` was called (or the cache was inherited through a
    /// fork: unusable here too).
    #[getter]
    fn closed(&self) -> bool {
        self.inner.closed()
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
    /// acknowledged), then one `GET` on the core's read connection.
    #[pyo3(signature = (collection, id, timeout = Timeout(DEFAULT_TIMEOUT)))]
    fn get(
        &self,
        py: Python<'_>,
        collection: &Bound<'_, PyAny>,
        id: &Bound<'_, PyAny>,
        timeout: Timeout,
    ) -> PyResult<PyObject> {
        let id = args::id(id)?;
        tradecache::Ident::new(id).map_err(|e| errors::from_core(py, e.into()))?;
        let c = args::collection(collection)?;
        let t = timeout.0;
        let raw = self.with(py, |cache| {
            self.settle(py, cache, t)?;
            py.allow_threads(|| cache.get_raw(c, id)).map_err(|e| errors::from_core(py, e))
        })?;
        match raw {
            None => Ok(py.None()),
            Some(b) => value::decode(py, &b).map_err(|e| {
                errors::decode_error(py, format!("{}: {e}", self.key(format_args!("{}:{id}", c.as_str()))))
            }),
        }
    }

    /// The event log of entity `id`, in append order. `legacy=True` also
    /// reads entries of the old `[event_id, event]` format (as written
    /// before events were stored as themselves): their event is returned,
    /// repeats of an id dropped, and `with_ids=True` gives `(event_id,
    /// event)` pairs (`None` for an entry that is not of that shape).
    /// Read-your-writes as `get`.
    #[pyo3(signature = (collection, id, with_ids = Flag(false), timeout = Timeout(DEFAULT_TIMEOUT), legacy = Flag(false)))]
    fn get_events<'py>(
        &self,
        py: Python<'py>,
        collection: &Bound<'_, PyAny>,
        id: &Bound<'_, PyAny>,
        with_ids: Flag,
        timeout: Timeout,
        legacy: Flag,
    ) -> PyResult<Bound<'py, PyList>> {
        let id = args::id(id)?;
        tradecache::Ident::new(id).map_err(|e| errors::from_core(py, e.into()))?;
        let c = args::collection(collection)?;
        let t = timeout.0;
        let raw = self.with(py, |cache| {
            self.settle(py, cache, t)?;
            py.allow_threads(|| cache.get_events_raw(c, id)).map_err(|e| errors::from_core(py, e))
        })?;
        let key = || self.key(format_args!("{}:{id}:events", c.as_str()));
        decode_events(py, &key, &raw, with_ids.0, legacy.0)
    }

    /// Everything this trader persisted: `{"entities": {collection: {id:
    /// value}}, "events": {collection: {id: [event, …]}}, "report": {…}}`
    /// (the Python `load()` wraps it in a `Snapshot`). `collections`: the
    /// ones to read (default: every collection with an index set). The
    /// core's `load_raw` reads them (its parallel workers, without the
    /// GIL, and its consistent cut: the commit marker read before and
    /// after, everything read again, three times at most, when a batch
    /// landed in between); this thread then builds the Python objects.
    #[pyo3(signature = (collections = None, events = Flag(true), timeout = Timeout(DEFAULT_TIMEOUT), legacy_events = Flag(false)))]
    fn _load(
        &self,
        py: Python<'_>,
        collections: Option<&Bound<'_, PyAny>>,
        events: Flag,
        timeout: Timeout,
        legacy_events: Flag,
    ) -> PyResult<PyObject> {
        let (events, legacy_events, t) = (events.0, legacy_events.0, timeout.0);
        let wanted = match collections.filter(|c| !c.is_none()) {
            Some(names) => Some(args::collections(names)?),
            None => None,
        };
        let started = std::time::Instant::now();
        let gc = GcPause::start(py)?;
        // Built part by part as the core's workers read the next chunks:
        // the GIL is taken for each part only (the core's calling thread
        // runs the callback), so reading and building overlap.
        let entities = PyDict::new(py).unbind();
        let event_map = PyDict::new(py).unbind();
        let issues = PyList::empty(py).unbind();
        let mut failed: Option<PyErr> = None;
        let mut attempt = 0;
        let mut building = Duration::ZERO;
        let report = self.with(py, |cache| {
            self.settle(py, cache, t)?;
            let run = || {
                let names = match wanted {
                    Some(w) => w,
                    None => cache.collections()?,
                };
                cache
                    .load_raw_each(&names, events, |part| {
                        let t0 = std::time::Instant::now();
                        let r = Python::with_gil(|py| {
                            if part.attempt != attempt {
                                // Read again (a batch landed): start over.
                                attempt = part.attempt;
                                entities.bind(py).clear();
                                event_map.bind(py).clear();
                                issues.bind(py).call_method0("clear")?;
                                for n in &names {
                                    entities.bind(py).set_item(n.as_str(), PyDict::new(py))?;
                                    if events {
                                        event_map.bind(py).set_item(n.as_str(), PyDict::new(py))?;
                                    }
                                }
                            }
                            self.build_part(
                                py,
                                part,
                                entities.bind(py),
                                event_map.bind(py),
                                issues.bind(py),
                                events,
                                legacy_events,
                            )
                        });
                        building += t0.elapsed();
                        match r {
                            Ok(()) => std::ops::ControlFlow::Continue(()),
                            Err(e) => {
                                failed = Some(e);
                                std::ops::ControlFlow::Break(())
                            }
                        }
                    })
                    .map(|r| (r, names))
            };
            py.allow_threads(run).map_err(|e| errors::from_core(py, e))
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        let (report, names) = report;
        let (entities, event_map, issues) =
            (entities.into_bound(py), event_map.into_bound(py), issues.into_bound(py));
        if attempt != report.attempts {
            // The last read found nothing: what an earlier one gave goes.
            entities.clear();
            event_map.clear();
            issues.call_method0("clear")?;
        }
        // Collections without any entity (or all of them, when nothing
        // was read).
        for n in &names {
            if !entities.contains(n.as_str())? {
                entities.set_item(n.as_str(), PyDict::new(py))?;
                if events {
                    event_map.set_item(n.as_str(), PyDict::new(py))?;
                }
            }
        }
        for issue in &report.issues {
            issues.append((issue.key.as_str(), issue.problem.as_str()))?;
        }
        gc.end(py)?;
        let r = &report;
        let report = PyDict::new(py);
        report.set_item("consistent", r.consistent)?;
        report.set_item("attempts", r.attempts)?;
        report.set_item("keys_read", r.keys_read)?;
        report.set_item("round_trips", r.round_trips)?;
        report.set_item("elapsed", started.elapsed().as_secs_f64())?;
        report.set_item("issues", issues)?;
        // Diagnostics: the time spent building the Python objects (while
        // the core's workers read on).
        report.set_item("build_s", building.as_secs_f64())?;
        let out = PyDict::new(py);
        out.set_item("entities", entities)?;
        out.set_item("events", event_map)?;
        out.set_item("report", report)?;
        Ok(out.into_any().unbind())
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

    /// The key prefix of this cache (`trader-T1`; `{trader-T1}` in a
    /// Cluster): every key is `{key_prefix}:{collection}:{id}`.
    #[getter]
    fn key_prefix(&self) -> String {
        self.key_prefix.clone()
    }
}
