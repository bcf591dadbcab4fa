//! What a Python `Cache` or `Kv` owns of the core: its handle, closed at
//! most once, and the process that opened it.
//!
//! **Fork.** A child made by `os.fork()` (multiprocessing's `fork` start
//! method, pre-forking servers) inherits the object, but not the writer
//! thread, and shares the parent's sockets: a request sent there would be
//! answered to whichever process reads first. So a handle counts the
//! forks of the interpreter (`os.register_at_fork`): in a child every
//! call raises `Forked` (a `Closed`) before touching anything, `close()`
//! just lets go of it, and when the object is dropped there (the child's
//! exit included) the core handle is forgotten, not closed: nothing is
//! sent, nothing waited for. The parent's handle goes on as before.
//!
//! **Drop.** The core's drop flushes for up to `close_timeout`; a handle
//! dropped without `close()` does that without the GIL, so the other
//! threads run meanwhile.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors;

/// How many times this interpreter's process is a forked child of the
/// one before (`os.fork()` runs [`after_fork_in_child`] in the child).
static FORKS: AtomicU64 = AtomicU64::new(0);

#[pyfunction]
fn after_fork_in_child() {
    FORKS.fetch_add(1, Ordering::SeqCst);
}

/// Registers the fork hook (at import).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let hook = wrap_pyfunction!(after_fork_in_child, m)?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("after_in_child", hook)?;
    py.import("os")?.getattr("register_at_fork")?.call((), Some(&kwargs))?;
    Ok(())
}

/// A core handle (`Cache`, `Kv`) owned by one process.
pub struct Handle<T: Send + Sync> {
    /// Read with `read_recursive` while the GIL is held (a waiting `close`
    /// must not make a GIL holder wait behind a reader that needs the GIL).
    inner: RwLock<Option<T>>,
    /// `"cache"`, `"kv cache"`: for messages.
    what: &'static str,
    /// The process that opened it (for messages).
    pid: u32,
    /// [`FORKS`] when it was opened.
    forks: u64,
}

impl<T: Send + Sync> Handle<T> {
    pub fn new(core: T, what: &'static str) -> Self {
        Handle {
            inner: RwLock::new(Some(core)),
            what,
            pid: std::process::id(),
            forks: FORKS.load(Ordering::SeqCst),
        }
    }

    /// Whether this process is a forked child of the one that opened it.
    fn inherited(&self) -> bool {
        FORKS.load(Ordering::Relaxed) != self.forks
    }

    /// Runs `f` on the core handle; `Forked` in a forked child, `Closed`
    /// once closed (a refused write hands `value` back in both).
    pub fn with<R>(
        &self,
        py: Python<'_>,
        value: Option<&Bound<'_, PyAny>>,
        f: impl FnOnce(&T) -> PyResult<R>,
    ) -> PyResult<R> {
        let value = || value.map(|v| v.clone().unbind());
        if self.inherited() {
            let extra: Vec<(&str, PyObject)> = value().into_iter().map(|v| ("value", v)).collect();
            return Err(errors::make(
                py,
                "Forked",
                format!(
                    "this {} was opened by process {} and process {} inherited it through fork(): its \
                     connections and writer thread are the parent's; open a new one in this process",
                    self.what,
                    self.pid,
                    std::process::id()
                ),
                "Closed",
                &extra,
            ));
        }
        let guard = self.inner.read_recursive();
        match guard.as_ref() {
            Some(core) => f(core),
            None => Err(errors::closed(py, self.what, value())),
        }
    }

    /// Closes the core handle with `close` (without the GIL):
    /// `{"acked_seq", "unpersisted"}`, or `{}` when it is closed already,
    /// or in a forked child (where it is let go of, untouched).
    pub fn close(
        &self,
        py: Python<'_>,
        close: impl FnOnce(T) -> tradecache::Result<tradecache::CloseReport> + Send,
    ) -> PyResult<PyObject> {
        let d = PyDict::new(py);
        if self.inherited() {
            return Ok(d.into_any().unbind());
        }
        // Without the GIL: a reader may hold the lock while it waits (GIL
        // released) and needs the GIL back to finish.
        let Some(core) = py.allow_threads(|| self.inner.write().take()) else {
            return Ok(d.into_any().unbind());
        };
        let report = py.allow_threads(|| close(core)).map_err(|e| errors::from_core(py, e))?;
        d.set_item("acked_seq", report.acked_seq)?;
        d.set_item("unpersisted", report.unpersisted)?;
        Ok(d.into_any().unbind())
    }

    /// Closed, or inherited through a fork (unusable here either way).
    pub fn closed(&self) -> bool {
        self.inherited() || self.inner.read_recursive().is_none()
    }
}

impl<T: Send + Sync> Drop for Handle<T> {
    fn drop(&mut self) {
        // No lock taken: in a child, a thread of the parent may have held it.
        let Some(core) = self.inner.get_mut().take() else {
            return;
        };
        if self.inherited() {
            // The parent's: closing it here would wait for a writer thread
            // this process does not have and could touch shared sockets.
            std::mem::forget(core);
            return;
        }
        Python::with_gil(|py| py.allow_threads(move || drop(core)));
    }
}
