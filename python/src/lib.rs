//! Python bindings of tradecache (`import tradecache`): the write-behind
//! `Cache` and the `kv` caching layer, for Python values stored as
//! MessagePack. Built as an abi3 wheel with maturin (python/pyproject.toml);
//! the Python package around this module is python/tradecache/.
//!
//! Nothing here panics across the boundary: every failure is a Python
//! exception of the hierarchy under `tradecache.Error`
//! (python/tradecache/_errors.py).
#![forbid(unsafe_code)]

mod cache;
mod config;
mod errors;
mod kv;
mod stats;
mod value;

use pyo3::prelude::*;

/// Encodes a Python value as the bindings store it (MessagePack with the
/// Decimal/datetime/date extension types).
#[pyfunction]
fn packb<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    let mut out = Vec::new();
    value::pack(value, &mut out)?;
    Ok(pyo3::types::PyBytes::new(py, &out))
}

/// Decodes MessagePack bytes as the bindings read them.
#[pyfunction]
fn unpackb(py: Python<'_>, data: &[u8]) -> PyResult<PyObject> {
    value::decode(py, data)
}

#[pymodule]
fn _tradecache(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<cache::PyCache>()?;
    m.add_class::<kv::PyKv>()?;
    m.add_function(wrap_pyfunction!(packb, m)?)?;
    m.add_function(wrap_pyfunction!(unpackb, m)?)?;
    Ok(())
}
