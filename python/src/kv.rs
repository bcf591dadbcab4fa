//! `tradecache.kv.Kv`: the core's namespaced TTL cache for Python values.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tradecache::kv::{Kv, KvConfig, Ttl};
use tradecache::Seq;

use crate::args::{self, Flag, SeqArg, Timeout, TtlArg};
use crate::config::Vars;
use crate::errors;
use crate::handle::Handle;
use crate::pack;
use crate::stats;
use crate::value::{self, Mp};

/// A value queued for the kv writer: shared, so the core's clone is a count.
#[derive(Clone)]
struct Val(Arc<Mp>);

impl Serialize for Val {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Val {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Val(Arc::new(Mp::deserialize(d)?)))
    }
}

/// The default `timeout` of the calls that wait.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A namespaced key-value cache with TTLs in Redis (`{key_prefix}:{namespace}:{key}`).
///
/// Writes are queued (no I/O on the calling thread); reads see them at
/// once, then the near cache (if `near_capacity` > 0), then Redis. A
/// circuit breaker keeps calls away from a Redis that keeps failing.
#[pyclass(module = "tradecache._tradecache", name = "Kv", subclass)]
pub struct PyKv {
    inner: Handle<Kv>,
    /// Computations of the `cached` decorator (python/tradecache/kv.py,
    /// its own single flight), reported with the core's `get_or_compute`
    /// ones in `stats()`.
    computed: AtomicU64,
    /// Decorated calls that waited for another caller's computation.
    flight_waits: AtomicU64,
}

impl PyKv {
    fn with<T>(&self, py: Python<'_>, f: impl FnOnce(&Kv) -> PyResult<T>) -> PyResult<T> {
        self.inner.with(py, None, f)
    }
}

/// The `(key, value)` pairs of `set_many`'s items: a dict or an iterable
/// of pairs; keys are names (`InvalidId`), values are packed (`EncodeError`).
fn items_of(items: &Bound<'_, PyAny>) -> PyResult<Vec<(String, Val)>> {
    let py = items.py();
    let pairs: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = if let Ok(d) = items.downcast::<PyDict>() {
        // A snapshot first: packing a value may run code that changes the dict.
        d.items().iter().map(|p| p.extract()).collect::<PyResult<_>>()?
    } else {
        let bad =
            || errors::config_error(py, "items must be a dict or an iterable of (key, value) pairs".into());
        if items.is_instance_of::<PyString>() {
            return Err(bad());
        }
        let mut out = Vec::new();
        for p in items.try_iter().map_err(|_| bad())? {
            out.push(p.and_then(|p| p.extract()).map_err(|_| bad())?);
        }
        out
    };
    let mut out = Vec::with_capacity(pairs.len());
    for (k, v) in &pairs {
        out.push((args::name(k, "key")?.to_owned(), Val(Arc::new(pack::from_py(v)?))));
    }
    Ok(out)
}

#[pymethods]
impl PyKv {
    /// Opens the cache. Keyword arguments name the variables of
    /// `KvConfig.from_env` (`url`, `key_prefix`, `default_ttl`,
    /// `portfolio_ttl`, `near_capacity`, `breaker_failures`, … or
    /// `REDIS_URL`, `CACHE_*`); unless `env=False` the environment fills in
    /// the rest.
    #[new]
    #[pyo3(signature = (*, env = Flag(true), **options))]
    fn new(py: Python<'_>, env: Flag, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let vars = Vars::from_kwargs(py, options, env.0)?;
        let config =
            KvConfig::from_vars(|name| vars.get(name)).map_err(|e| errors::from_core(py, e.into()))?;
        let kv = py.allow_threads(|| Kv::open(config)).map_err(|e| errors::from_core(py, e))?;
        Ok(PyKv {
            inner: Handle::new(kv, "kv cache"),
            computed: AtomicU64::new(0),
            flight_waits: AtomicU64::new(0),
        })
    }

    /// The value of `key` in `namespace`, or None (a miss, an expired key,
    /// or an open breaker). May wait for Redis (without the GIL).
    fn get(
        &self,
        py: Python<'_>,
        namespace: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
    ) -> PyResult<PyObject> {
        let (namespace, key) = (args::name(namespace, "namespace")?, args::name(key, "key")?);
        let v = self.with(py, |k| {
            py.allow_threads(|| k.get::<Mp>(namespace, key)).map_err(|e| errors::from_core(py, e))
        })?;
        match v {
            None => Ok(py.None()),
            Some(v) => value::to_py(py, &v),
        }
    }

    /// Queues `value` under `key` with `ttl` (None: the namespace's policy;
    /// 0: never expires; else seconds). Returns its sequence number.
    #[pyo3(signature = (namespace, key, value, ttl = TtlArg(Ttl::Policy)))]
    fn set(
        &self,
        py: Python<'_>,
        namespace: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: TtlArg,
    ) -> PyResult<u64> {
        let (namespace, key) = (args::name(namespace, "namespace")?, args::name(key, "key")?);
        let v = Val(Arc::new(pack::from_py(value)?));
        self.inner.with(py, Some(value), |k| {
            k.set(namespace, key, &v, ttl.0).map(Seq::get).map_err(|e| errors::from_core(py, e))
        })
    }

    /// Queues the deletion of `key`.
    fn delete(&self, py: Python<'_>, namespace: &Bound<'_, PyAny>, key: &Bound<'_, PyAny>) -> PyResult<u64> {
        let (namespace, key) = (args::name(namespace, "namespace")?, args::name(key, "key")?);
        self.with(py, |k| k.delete(namespace, key).map(Seq::get).map_err(|e| errors::from_core(py, e)))
    }

    /// Whether `key` exists (queued writes first, then Redis).
    fn exists(&self, py: Python<'_>, namespace: &Bound<'_, PyAny>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let (namespace, key) = (args::name(namespace, "namespace")?, args::name(key, "key")?);
        self.with(py, |k| py.allow_threads(|| k.exists(namespace, key)).map_err(|e| errors::from_core(py, e)))
    }

    /// The values of `keys` in order (None for a miss): one `MGET` per
    /// `max_batch_size` keys, pipelined.
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        namespace: &Bound<'_, PyAny>,
        keys: &Bound<'_, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let namespace = args::name(namespace, "namespace")?;
        let bad = || errors::make(py, "InvalidId", "keys must be a list of str".into(), "InvalidId", &[]);
        if keys.is_instance_of::<PyString>() {
            return Err(bad());
        }
        let keys: Vec<Bound<'_, PyAny>> =
            keys.try_iter().map_err(|_| bad())?.collect::<PyResult<_>>().map_err(|_| bad())?;
        let refs: Vec<&str> = keys.iter().map(|k| args::name(k, "key")).collect::<PyResult<_>>()?;
        let vals = self.with(py, |k| {
            py.allow_threads(|| k.get_many::<Mp>(namespace, &refs)).map_err(|e| errors::from_core(py, e))
        })?;
        let out = PyList::empty(py);
        for v in vals {
            match v {
                None => out.append(py.None())?,
                Some(v) => out.append(value::to_py(py, &v)?)?,
            }
        }
        Ok(out)
    }

    /// Queues every `(key, value)` of `items` (a dict or pairs) with one TTL.
    #[pyo3(signature = (namespace, items, ttl = TtlArg(Ttl::Policy)))]
    fn set_many(
        &self,
        py: Python<'_>,
        namespace: &Bound<'_, PyAny>,
        items: &Bound<'_, PyAny>,
        ttl: TtlArg,
    ) -> PyResult<u64> {
        let namespace = args::name(namespace, "namespace")?;
        let vals = items_of(items)?;
        let refs: Vec<(&str, &Val)> = vals.iter().map(|(k, v)| (k.as_str(), v)).collect();
        self.inner.with(py, Some(items), |k| {
            k.set_many(namespace, &refs, ttl.0).map(Seq::get).map_err(|e| errors::from_core(py, e))
        })
    }

    /// Deletes every key of `namespace` (`SCAN` + `UNLINK`); returns how
    /// many. Waits for Redis without the GIL.
    fn clear_namespace(&self, py: Python<'_>, namespace: &Bound<'_, PyAny>) -> PyResult<u64> {
        let namespace = args::name(namespace, "namespace")?;
        self.with(py, |k| {
            py.allow_threads(|| k.clear_namespace(namespace)).map_err(|e| errors::from_core(py, e))
        })
    }

    /// Queues a new TTL for `key` (None: the policy; 0: never expires).
    #[pyo3(signature = (namespace, key, ttl = TtlArg(Ttl::Policy)))]
    fn touch(
        &self,
        py: Python<'_>,
        namespace: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
        ttl: TtlArg,
    ) -> PyResult<u64> {
        let (namespace, key) = (args::name(namespace, "namespace")?, args::name(key, "key")?);
        self.with(py, |k| k.touch(namespace, key, ttl.0).map(Seq::get).map_err(|e| errors::from_core(py, e)))
    }

    /// Blocks (without the GIL) until write `seq` and those before it are
    /// written.
    #[pyo3(signature = (seq, timeout = Timeout(DEFAULT_TIMEOUT)))]
    fn wait(&self, py: Python<'_>, seq: SeqArg, timeout: Timeout) -> PyResult<()> {
        let t = timeout.0;
        self.with(py, |k| {
            py.allow_threads(|| k.wait(Seq::new(seq.0), t)).map_err(|e| errors::from_core(py, e))
        })
    }

    /// Blocks (without the GIL) until every queued write is written.
    #[pyo3(signature = (timeout = Timeout(DEFAULT_TIMEOUT)))]
    fn flush(&self, py: Python<'_>, timeout: Timeout) -> PyResult<()> {
        let t = timeout.0;
        self.with(py, |k| py.allow_threads(|| k.flush(t)).map_err(|e| errors::from_core(py, e)))
    }

    /// The sequence number of the last queued write.
    fn last_seq(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(py, |k| Ok(k.last_seq().get()))
    }

    /// Writes the writer dropped (as dicts); taking them clears the list.
    fn take_dropped<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.with(py, |k| {
            let out = PyList::empty(py);
            for d in k.take_dropped() {
                out.append(stats::dropped(py, &d)?)?;
            }
            Ok(out)
        })
    }

    /// Flushes and stops the writer. Closing twice is a no-op, and so is
    /// closing in a forked child (`{}`: the parent's is left untouched).
    #[pyo3(signature = (timeout = Timeout(DEFAULT_TIMEOUT)))]
    fn close(&self, py: Python<'_>, timeout: Timeout) -> PyResult<PyObject> {
        let t = timeout.0;
        self.inner.close(py, |kv| kv.close(t))
    }

    /// Whether `close` was called (or the cache was inherited through a
    /// fork: unusable here too).
    #[getter]
    fn closed(&self) -> bool {
        self.inner.closed()
    }

    /// Counts a computation of the `cached` decorator (`waited`: a caller
    /// that waited for another's instead).
    fn _count_computed(&self, waited: bool) {
        let n = if waited { &self.flight_waits } else { &self.computed };
        n.fetch_add(1, Ordering::Relaxed);
    }

    fn _health(&self, py: Python<'_>) -> PyResult<PyObject> {
        self.with(py, |k| stats::kv_health(py, &k.health()))
    }

    fn _stats(&self, py: Python<'_>) -> PyResult<PyObject> {
        self.with(py, |k| {
            let mut s = k.stats();
            s.computed += self.computed.load(Ordering::Relaxed);
            s.flight_waits += self.flight_waits.load(Ordering::Relaxed);
            stats::kv_stats(py, &s)
        })
    }
}
