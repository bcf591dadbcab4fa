//! `tradecache.kv.Kv`: the core's namespaced TTL cache for Python values.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tradecache::kv::{Kv, KvConfig, Ttl};
use tradecache::Seq;

use crate::config::Vars;
use crate::errors;
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

fn ttl_of(py: Python<'_>, ttl: Option<f64>) -> PyResult<Ttl> {
    match ttl {
        None => Ok(Ttl::Policy),
        Some(0.0) => Ok(Ttl::Never),
        Some(t) if t.is_finite() && t > 0.0 => Ok(Ttl::After(Duration::from_secs_f64(t))),
        Some(t) => Err(errors::config_error(
            py,
            format!(
                "ttl must be None (the namespace's policy), 0 (never expires) or seconds above zero, got {t}"
            ),
        )),
    }
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

/// A namespaced key-value cache with TTLs in Redis (`{key_prefix}:{namespace}:{key}`).
///
/// Writes are queued (no I/O on the calling thread); reads see them at
/// once, then the near cache (if `near_capacity` > 0), then Redis. A
/// circuit breaker keeps calls away from a Redis that keeps failing.
#[pyclass(module = "tradecache._tradecache", name = "Kv", subclass)]
pub struct PyKv {
    /// Read with `read_recursive` while the GIL is held (a waiting `close`
    /// must not make a GIL holder wait behind a reader that needs the GIL).
    inner: RwLock<Option<Kv>>,
}

impl PyKv {
    fn with<T>(&self, py: Python<'_>, f: impl FnOnce(&Kv) -> PyResult<T>) -> PyResult<T> {
        let guard = self.inner.read_recursive();
        match guard.as_ref() {
            Some(k) => f(k),
            None => Err(errors::make(py, "Closed", "the kv cache is closed".into(), "Closed", &[])),
        }
    }
}

#[pymethods]
impl PyKv {
    /// Opens the cache. Keyword arguments name the variables of
    /// `KvConfig.from_env` (`url`, `key_prefix`, `default_ttl`,
    /// `portfolio_ttl`, `near_capacity`, `breaker_failures`, … or
    /// `REDIS_URL`, `CACHE_*`); unless `env=False` the environment fills in
    /// the rest.
    #[new]
    #[pyo3(signature = (*, env = true, **options))]
    fn new(py: Python<'_>, env: bool, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let vars = Vars::from_kwargs(py, options, env)?;
        let config =
            KvConfig::from_vars(|name| vars.get(name)).map_err(|e| errors::from_core(py, e.into()))?;
        let kv = py.allow_threads(|| Kv::open(config)).map_err(|e| errors::from_core(py, e))?;
        Ok(PyKv { inner: RwLock::new(Some(kv)) })
    }

    /// The value of `key` in `namespace`, or None (a miss, an expired key,
    /// or an open breaker). May wait for Redis (without the GIL).
    fn get(&self, py: Python<'_>, namespace: &str, key: &str) -> PyResult<PyObject> {
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
    #[pyo3(signature = (namespace, key, value, ttl = None))]
    fn set(
        &self,
        py: Python<'_>,
        namespace: &str,
        key: &str,
        value: &Bound<'_, PyAny>,
        ttl: Option<f64>,
    ) -> PyResult<u64> {
        let ttl = ttl_of(py, ttl)?;
        let v = Val(Arc::new(value::from_py(value)?));
        self.with(py, |k| k.set(namespace, key, &v, ttl).map(Seq::get).map_err(|e| errors::from_core(py, e)))
    }

    /// Queues the deletion of `key`.
    fn delete(&self, py: Python<'_>, namespace: &str, key: &str) -> PyResult<u64> {
        self.with(py, |k| k.delete(namespace, key).map(Seq::get).map_err(|e| errors::from_core(py, e)))
    }

    /// Whether `key` exists (queued writes first, then Redis).
    fn exists(&self, py: Python<'_>, namespace: &str, key: &str) -> PyResult<bool> {
        self.with(py, |k| py.allow_threads(|| k.exists(namespace, key)).map_err(|e| errors::from_core(py, e)))
    }

    /// The values of `keys` in order (None for a miss): one `MGET` per
    /// `max_batch_size` keys, pipelined.
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        namespace: &str,
        keys: Vec<String>,
    ) -> PyResult<Bound<'py, PyList>> {
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
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
    #[pyo3(signature = (namespace, items, ttl = None))]
    fn set_many(
        &self,
        py: Python<'_>,
        namespace: &str,
        items: &Bound<'_, PyAny>,
        ttl: Option<f64>,
    ) -> PyResult<u64> {
        let ttl = ttl_of(py, ttl)?;
        let pairs: Vec<(String, Bound<'_, PyAny>)> = if let Ok(d) = items.downcast::<PyDict>() {
            d.iter().map(|(k, v)| Ok((k.extract::<String>()?, v))).collect::<PyResult<_>>()?
        } else {
            items.try_iter()?.map(|p| p?.extract::<(String, Bound<'_, PyAny>)>()).collect::<PyResult<_>>()?
        };
        let mut vals = Vec::with_capacity(pairs.len());
        for (key, v) in &pairs {
            vals.push((key.as_str(), Val(Arc::new(value::from_py(v)?))));
        }
        let refs: Vec<(&str, &Val)> = vals.iter().map(|(k, v)| (*k, v)).collect();
        self.with(py, |k| {
            k.set_many(namespace, &refs, ttl).map(Seq::get).map_err(|e| errors::from_core(py, e))
        })
    }

    /// Deletes every key of `namespace` (`SCAN` + `UNLINK`); returns how
    /// many. Waits for Redis without the GIL.
    fn clear_namespace(&self, py: Python<'_>, namespace: &str) -> PyResult<u64> {
        self.with(py, |k| {
            py.allow_threads(|| k.clear_namespace(namespace)).map_err(|e| errors::from_core(py, e))
        })
    }

    /// Queues a new TTL for `key` (None: the policy; 0: never expires).
    #[pyo3(signature = (namespace, key, ttl = None))]
    fn touch(&self, py: Python<'_>, namespace: &str, key: &str, ttl: Option<f64>) -> PyResult<u64> {
        let ttl = ttl_of(py, ttl)?;
        self.with(py, |k| k.touch(namespace, key, ttl).map(Seq::get).map_err(|e| errors::from_core(py, e)))
    }

    /// Blocks (without the GIL) until write `seq` and those before it are
    /// written.
    #[pyo3(signature = (seq, timeout = 5.0))]
    fn wait(&self, py: Python<'_>, seq: u64, timeout: f64) -> PyResult<()> {
        let t = secs(py, timeout)?;
        self.with(py, |k| py.allow_threads(|| k.wait(Seq::new(seq), t)).map_err(|e| errors::from_core(py, e)))
    }

    /// Blocks (without the GIL) until every queued write is written.
    #[pyo3(signature = (timeout = 5.0))]
    fn flush(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        let t = secs(py, timeout)?;
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

    /// Flushes and stops the writer. Closing twice is a no-op.
    #[pyo3(signature = (timeout = 5.0))]
    fn close(&self, py: Python<'_>, timeout: f64) -> PyResult<PyObject> {
        let t = secs(py, timeout)?;
        // Without the GIL: a reader may hold the lock while it waits (GIL
        // released) and needs the GIL back to finish.
        let taken = py.allow_threads(|| self.inner.write().take());
        let d = PyDict::new(py);
        let Some(kv) = taken else {
            return Ok(d.into_any().unbind());
        };
        let report = py.allow_threads(|| kv.close(t)).map_err(|e| errors::from_core(py, e))?;
        d.set_item("acked_seq", report.acked_seq)?;
        d.set_item("unpersisted", report.unpersisted)?;
        Ok(d.into_any().unbind())
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.read_recursive().is_none()
    }

    fn _health(&self, py: Python<'_>) -> PyResult<PyObject> {
        self.with(py, |k| stats::kv_health(py, &k.health()))
    }

    fn _stats(&self, py: Python<'_>) -> PyResult<PyObject> {
        self.with(py, |k| stats::kv_stats(py, &k.stats()))
    }
}
