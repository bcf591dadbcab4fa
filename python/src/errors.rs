//! Errors as Python exceptions. The classes are defined in Python
//! (`tradecache/_errors.py`, a hierarchy under `tradecache.Error` that
//! mirrors `tradecache::ErrorKind`, with the builtin bases a Python user
//! expects: `InvalidId` is a `ValueError`, `WaitTimeout` a `TimeoutError`);
//! this module picks the class and fills in `kind` and the details.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use tradecache::{Error, ErrorKind, PushError};

/// The name of the Python class for an `ErrorKind` a call returns. The
/// kinds only the flusher's counters use (`Oom`, `MarkerLost`, …) are never
/// returned by `Error::kind`; they get their returned kind's class.
pub fn kind_class(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Config => "ConfigError",
        ErrorKind::ConnectionRefused => "ConnectionRefused",
        ErrorKind::Timeout => "Timeout",
        ErrorKind::Auth => "AuthError",
        ErrorKind::Tls => "TlsError",
        ErrorKind::Io => "IoError",
        ErrorKind::Server => "ServerError",
        ErrorKind::Codec => "CodecError",
        ErrorKind::InvalidId => "InvalidId",
        ErrorKind::TooLarge => "TooLarge",
        ErrorKind::Closed => "Closed",
        ErrorKind::Discovery => "DiscoveryError",
        ErrorKind::Fenced => "Fenced",
        ErrorKind::Unavailable => "Unavailable",
        ErrorKind::Busy
        | ErrorKind::ReadOnly
        | ErrorKind::Oom
        | ErrorKind::Misconf
        | ErrorKind::Command
        | ErrorKind::MarkerLost
        | ErrorKind::Other => "ServerError",
        ErrorKind::Encode => "CodecError",
        _ => "Error",
    }
}

/// `ErrorKind`'s variant name (`"Fenced"`), the exceptions' `kind`.
pub fn kind_name(kind: ErrorKind) -> String {
    format!("{kind:?}")
}

/// An instance of `tradecache.<class>` with `message`, `kind` and the given
/// extra attributes.
pub fn make(py: Python<'_>, class: &str, message: String, kind: &str, extra: &[(&str, PyObject)]) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let cls = py.import("tradecache._errors")?.getattr(class)?;
        let exc = cls.call1((message.clone(),))?;
        exc.setattr("kind", kind)?;
        for (name, value) in extra {
            exc.setattr(*name, value)?;
        }
        Ok(PyErr::from_value(exc))
    };
    build().unwrap_or_else(|e| e)
}

/// A core error as the exception of its kind (`Dropped`, `WaitTimeout`,
/// `Unpersisted` have classes of their own, under their kind's).
pub fn from_core(py: Python<'_>, e: Error) -> PyErr {
    let kind = e.kind();
    let kind_s = kind_name(kind);
    let message = e.to_string();
    match e {
        Error::WaitTimeout(d) => make(
            py,
            "WaitTimeout",
            message,
            &kind_s,
            &[("timeout", d.as_secs_f64().into_pyobject(py).unwrap().into_any().unbind())],
        ),
        Error::Dropped { count, first } => {
            let d = PyDict::new(py);
            let _ = d.set_item("seq", first.seq.get());
            let _ = d.set_item("writes", first.writes);
            let _ = d.set_item("key", first.key.clone());
            let _ = d.set_item("class", first.class.name());
            let _ = d.set_item("detail", first.detail.clone());
            make(
                py,
                "Dropped",
                message,
                &kind_s,
                &[
                    ("count", count.into_pyobject(py).unwrap().into_any().unbind()),
                    ("first", d.into_any().unbind()),
                ],
            )
        }
        Error::Unpersisted(report) => make(
            py,
            "Unpersisted",
            message,
            &kind_s,
            &[
                ("acked_seq", report.acked_seq.into_pyobject(py).unwrap().into_any().unbind()),
                ("unpersisted", report.unpersisted.into_pyobject(py).unwrap().into_any().unbind()),
            ],
        ),
        Error::Config(c) => {
            let problems: Vec<String> = c.problems.iter().map(|p| p.to_string()).collect();
            let list =
                problems.into_pyobject(py).map(|l| l.into_any().unbind()).unwrap_or_else(|_| py.None());
            make(py, "ConfigError", message, &kind_s, &[("problems", list)])
        }
        _ => make(py, kind_class(kind), message, &kind_s, &[]),
    }
}

/// A refused write: `Full`, `Closed` or `Fenced` with the value handed back
/// as `value`, or `InvalidId`.
pub fn from_push<T>(py: Python<'_>, e: PushError<T>, value: PyObject) -> PyErr {
    let message = e.to_string();
    let (class, kind) = match &e {
        PushError::Full(_) => ("Full", "Full"),
        PushError::Closed(_) => ("Closed", "Closed"),
        PushError::Fenced(_) => ("Fenced", "Fenced"),
        PushError::InvalidId(_) => ("InvalidId", "InvalidId"),
        PushError::WrongEncoding(_) => ("EncodeError", "Codec"),
    };
    make(py, class, message, kind, &[("value", value)])
}

/// A value that cannot be stored (`EncodeError`, also a `TypeError`).
pub fn encode_error(py: Python<'_>, message: String) -> PyErr {
    make(py, "EncodeError", message, "Codec", &[])
}

/// Stored bytes that do not decode (`DecodeError`).
pub fn decode_error(py: Python<'_>, message: String) -> PyErr {
    make(py, "DecodeError", message, "Codec", &[])
}

/// A problem of the arguments of a call (`ConfigError`, a `ValueError`).
pub fn config_error(py: Python<'_>, message: String) -> PyErr {
    make(py, "ConfigError", message, "Config", &[])
}

/// `Closed`: the handle was closed; a refused write hands `value` back.
pub fn closed(py: Python<'_>, what: &str, value: Option<PyObject>) -> PyErr {
    let extra: Vec<(&str, PyObject)> = value.into_iter().map(|v| ("value", v)).collect();
    make(py, "Closed", format!("the {what} is closed"), "Closed", &extra)
}

/// Whether `e` is already one of the bindings' exceptions, or not an
/// `Exception` at all (`KeyboardInterrupt`, `SystemExit`: never wrapped).
fn passes_through(py: Python<'_>, e: &PyErr) -> bool {
    if !e.is_instance_of::<pyo3::exceptions::PyException>(py) {
        return true;
    }
    match py.import("tradecache._errors").and_then(|m| m.getattr("Error")) {
        Ok(base) => e.value(py).is_instance(&base).unwrap_or(false),
        Err(_) => true,
    }
}

/// `e` as the exception of `class`, unless it already is one of the
/// bindings' (then unchanged): Python code that a conversion ran (a
/// `__str__`, `__float__`, `isoformat`) or a failed conversion raised it.
/// The original is kept as `__cause__`.
pub fn reclass(py: Python<'_>, e: PyErr, class: &str, kind: &str, what: &str) -> PyErr {
    if passes_through(py, &e) {
        return e;
    }
    let out = make(py, class, format!("{what}: {}", e.value(py)), kind, &[]);
    out.set_cause(py, Some(e));
    out
}
