//! `Health`, `Stats` (and kv's) as dicts; the Python side wraps them in
//! dataclasses with a readable repr.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use tradecache::kv::{BreakerState, KvHealth, KvStats};
use tradecache::{DroppedWrite, Health, Stats};

pub fn dropped<'py>(py: Python<'py>, d: &DroppedWrite) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("seq", d.seq.get())?;
    out.set_item("writes", d.writes)?;
    out.set_item("key", &d.key)?;
    out.set_item("class", d.class.name())?;
    out.set_item("detail", &d.detail)?;
    Ok(out)
}

pub fn health(py: Python<'_>, h: &Health) -> PyResult<PyObject> {
    let d = PyDict::new(py);
    d.set_item("connected", h.connected)?;
    d.set_item("flusher_running", h.flusher_running)?;
    d.set_item("backlog", h.backlog)?;
    d.set_item("reconnects", h.reconnects)?;
    d.set_item("last_error", h.last_error.clone())?;
    d.set_item("last_error_class", h.last_error_class.map(|c| c.name()))?;
    d.set_item("last_error_age", h.last_error_age.map(|a| a.as_secs_f64()))?;
    d.set_item("backpressure", h.backpressure.clone())?;
    d.set_item("fenced", h.fenced.clone())?;
    d.set_item("marker_lost", h.marker_lost.clone())?;
    Ok(d.into_any().unbind())
}

pub fn stats(py: Python<'_>, s: &Stats) -> PyResult<PyObject> {
    let d = PyDict::new(py);
    d.set_item("accepted", s.accepted)?;
    d.set_item("acked", s.acked)?;
    d.set_item("backlog", s.backlog)?;
    d.set_item("rejected", s.rejected)?;
    d.set_item("batches", s.batches)?;
    d.set_item("commands", s.commands)?;
    d.set_item("coalesced", s.coalesced)?;
    d.set_item("reconnects", s.reconnects)?;
    d.set_item("replays", s.replays)?;
    d.set_item("purged", s.purged)?;
    d.set_item("marker_losses", s.marker_losses)?;
    d.set_item("dropped", s.dropped)?;
    let errors = PyDict::new(py);
    for (class, n) in &s.errors {
        errors.set_item(*class, *n)?;
    }
    d.set_item("errors", errors)?;
    d.set_item("batch_latency_p50_us", s.batch_latency_p50_us)?;
    d.set_item("batch_latency_p99_us", s.batch_latency_p99_us)?;
    Ok(d.into_any().unbind())
}

fn breaker(b: &BreakerState) -> String {
    match b {
        BreakerState::Closed => "closed".into(),
        BreakerState::Open { retry_in } => format!("open (retry in {:.1} s)", retry_in.as_secs_f64()),
        _ => "half-open".into(),
    }
}

pub fn kv_health(py: Python<'_>, h: &KvHealth) -> PyResult<PyObject> {
    let d = PyDict::new(py);
    d.set_item("writer_connected", h.writer_connected)?;
    d.set_item("writer_running", h.writer_running)?;
    d.set_item("backlog", h.backlog)?;
    d.set_item("breaker", breaker(&h.breaker))?;
    d.set_item("near_tracking", h.near_tracking)?;
    d.set_item("last_error", h.last_error.clone())?;
    d.set_item("backpressure", h.backpressure.clone())?;
    d.set_item("healthy", h.is_healthy())?;
    Ok(d.into_any().unbind())
}

pub fn kv_stats(py: Python<'_>, s: &KvStats) -> PyResult<PyObject> {
    let d = PyDict::new(py);
    d.set_item("hits", s.hits)?;
    d.set_item("misses", s.misses)?;
    d.set_item("hit_rate", s.hit_rate)?;
    d.set_item("near_hits", s.near_hits)?;
    d.set_item("overlay_hits", s.overlay_hits)?;
    d.set_item("corrupt", s.corrupt)?;
    d.set_item("computed", s.computed)?;
    d.set_item("flight_waits", s.flight_waits)?;
    d.set_item("accepted", s.accepted)?;
    d.set_item("acked", s.acked)?;
    d.set_item("written", s.written)?;
    d.set_item("coalesced", s.coalesced)?;
    d.set_item("dropped", s.dropped)?;
    d.set_item("rejected", s.rejected)?;
    d.set_item("reconnects", s.reconnects)?;
    d.set_item("breaker", breaker(&s.breaker))?;
    d.set_item("breaker_opened", s.breaker_opened)?;
    d.set_item("short_circuited", s.short_circuited)?;
    d.set_item("slow_ops", s.slow_ops)?;
    d.set_item("near_entries", s.near_entries)?;
    d.set_item("near_invalidations", s.near_invalidations)?;
    let lat = PyDict::new(py);
    for (op, l) in &s.latency {
        let e = PyDict::new(py);
        e.set_item("count", l.count)?;
        e.set_item("p50_us", l.p50.as_secs_f64() * 1e6)?;
        e.set_item("p99_us", l.p99.as_secs_f64() * 1e6)?;
        e.set_item("p999_us", l.p999.as_secs_f64() * 1e6)?;
        lat.set_item(op.name(), e)?;
    }
    d.set_item("latency", lat)?;
    Ok(d.into_any().unbind())
}
