//! Python bindings of tradecache (`import tradecache`): the write-behind
//! `Cache` and the `kv` caching layer, for Python values stored as
//! MessagePack. Built as an abi3 wheel with maturin (python/pyproject.toml);
//! the Python package around this module is python/tradecache/.
//!
//! Nothing here panics across the boundary: every failure is a Python
//! exception of the hierarchy under `tradecache.Error`
//! (python/tradecache/_errors.py).
#![forbid(unsafe_code)]

mod args;
mod cache;
mod config;
mod errors;
mod handle;
mod kv;
mod pack;
mod stats;
mod value;

use pyo3::prelude::*;

/// Encodes a Python value as the bindings store it (MessagePack with the
/// Decimal/datetime/date extension types).
#[pyfunction]
fn packb<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    let mut out = Vec::new();
    pack::pack(value, &mut out)?;
    Ok(pyo3::types::PyBytes::new(py, &out))
}

/// Decodes MessagePack bytes (or a bytearray) as the bindings read them.
#[pyfunction]
fn unpackb(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<PyObject> {
    if let Ok(b) = data.downcast::<pyo3::types::PyBytes>() {
        return value::decode(py, b.as_bytes());
    }
    if let Ok(b) = data.downcast::<pyo3::types::PyByteArray>() {
        return value::decode(py, &b.to_vec());
    }
    let ty = args::type_name(data);
    Err(errors::decode_error(py, format!("unpackb takes bytes or a bytearray, got {ty}")))
}

#[pymodule]
fn _tradecache(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<cache::PyCache>()?;
    m.add_class::<cache::Packed>()?;
    m.add_class::<kv::PyKv>()?;
    m.add_function(wrap_pyfunction!(packb, m)?)?;
    m.add_function(wrap_pyfunction!(unpackb, m)?)?;
    handle::register(m)?;
    Ok(())
}
