//! The one checked path of every argument of a public call: each kind of
//! argument is converted here, and a bad one raises the documented
//! `tradecache.Error` subclass (python/README.md, "Exceptions"), never
//! `TypeError`, `OverflowError`, `UnicodeEncodeError` or a panic:
//!
//! | argument | bad | raises |
//! | --- | --- | --- |
//! | collection | not a str, not valid Unicode, refused by the core's rule | `UnknownCollection` |
//! | id, kv namespace / key | not a str, not valid Unicode (refused by the core's rule: at the call) | `InvalidId` |
//! | timeout | not a number, NaN, infinite, negative | `ConfigError` |
//! | ttl | not None or a number, NaN, infinite, negative | `ConfigError` |
//! | seq, event_id | not an int from 0 to 2**64-1 | `ConfigError` |
//! | a flag (`closed`, `events`, …) | not a bool | `ConfigError` |
//! | a value | see `value::pack` | `EncodeError` |
//!
//! Values are converted by [`crate::value`], options by [`crate::config`].

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyString;
use tradecache::kv::Ttl;
use tradecache::raw::Collection;

use crate::errors;

/// The name of `obj`'s type, for a message.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// A short description of a bad argument for a message: its repr (at
/// most 60 characters) and its type.
fn show(obj: &Bound<'_, PyAny>) -> String {
    let ty = type_name(obj);
    let repr = obj.repr().map(|r| r.to_string()).unwrap_or_else(|_| "?".into());
    let repr: String =
        if repr.chars().count() > 60 { repr.chars().take(57).chain("...".chars()).collect() } else { repr };
    format!("{repr} ({ty})")
}

/// A str argument as UTF-8, or `None` (not a str, or a lone surrogate).
fn text<'a>(obj: &'a Bound<'_, PyAny>) -> Option<&'a str> {
    obj.downcast::<PyString>().ok()?.to_str().ok()
}

/// An id, kv namespace or kv key: a str (the core checks the rest);
/// `InvalidId` otherwise.
pub fn name<'a>(obj: &'a Bound<'_, PyAny>, what: &str) -> PyResult<&'a str> {
    text(obj).ok_or_else(|| {
        errors::make(
            obj.py(),
            "InvalidId",
            format!("{what} must be a str of valid Unicode (no lone surrogates), got {}", show(obj)),
            "InvalidId",
            &[],
        )
    })
}

/// An entity id (see [`name`]).
pub fn id<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<&'a str> {
    name(obj, "id")
}

/// A collection name the core's rule allows; `UnknownCollection` (a
/// `ConfigError`) saying why the name cannot be one.
pub fn collection(obj: &Bound<'_, PyAny>) -> PyResult<Collection> {
    let py = obj.py();
    let unknown = |m: String| errors::make(py, "UnknownCollection", m, "Config", &[]);
    let s = text(obj).ok_or_else(|| {
        unknown(format!(
            "a collection name must be a str of ASCII letters, digits and punctuation, got {}",
            show(obj)
        ))
    })?;
    Collection::new(s).map_err(|e| unknown(e.to_string()))
}

/// A list (or any iterable but a str) of collection names.
pub fn collections(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Collection>> {
    let py = obj.py();
    let refuse = || {
        errors::make(
            py,
            "UnknownCollection",
            format!("collections must be a list of collection names, got {}", show(obj)),
            "Config",
            &[],
        )
    };
    if obj.is_instance_of::<PyString>() {
        return Err(refuse());
    }
    let it = obj.try_iter().map_err(|_| refuse())?;
    it.map(|c| {
        c.map_err(|e| errors::reclass(py, e, "UnknownCollection", "Config", "collections"))
            .and_then(|c| collection(&c))
    })
    .collect()
}

/// A number of seconds as the call's `what`: finite and not negative;
/// one beyond what a `Duration` holds waits practically forever.
fn seconds(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<f64> {
    let py = obj.py();
    let bad = || {
        errors::config_error(
            py,
            format!("{what} must be a finite number of seconds, 0 or more, got {}", show(obj)),
        )
    };
    let f: f64 = obj.extract().map_err(|_| bad())?;
    if !f.is_finite() || f < 0.0 {
        return Err(bad());
    }
    Ok(f)
}

fn duration(f: f64) -> Duration {
    Duration::try_from_secs_f64(f).unwrap_or(Duration::MAX)
}

/// A `timeout`: a finite number of seconds, 0 or more (see [`seconds`]).
pub struct Timeout(pub Duration);

impl<'py> FromPyObject<'py> for Timeout {
    fn extract_bound(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        seconds(obj, "timeout").map(|f| Timeout(duration(f)))
    }
}

/// A kv `ttl`: `None` (the namespace's policy), 0 (never expires) or
/// seconds above zero.
pub struct TtlArg(pub Ttl);

impl<'py> FromPyObject<'py> for TtlArg {
    fn extract_bound(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        if obj.is_none() {
            return Ok(TtlArg(Ttl::Policy));
        }
        let f = seconds(obj, "ttl (None: the namespace's policy, 0: never expires)")?;
        Ok(TtlArg(if f == 0.0 { Ttl::Never } else { Ttl::After(duration(f)) }))
    }
}

/// An unsigned 64-bit int argument named `what`.
fn u64_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    obj.extract::<u64>().map_err(|_| {
        errors::config_error(obj.py(), format!("{what} must be an int from 0 to 2**64-1, got {}", show(obj)))
    })
}

/// A sequence number (`wait(seq)`).
pub struct SeqArg(pub u64);

impl<'py> FromPyObject<'py> for SeqArg {
    fn extract_bound(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        u64_arg(obj, "seq").map(SeqArg)
    }
}

/// The `event_id` of the deprecated `append` form (checked, not stored).
pub fn event_id(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    u64_arg(obj, "event_id")
}

/// A flag (`closed`, `with_ids`, `events`, `legacy`, `env`, …): a bool.
pub struct Flag(pub bool);

impl<'py> FromPyObject<'py> for Flag {
    fn extract_bound(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        obj.extract::<bool>().map(Flag).map_err(|_| {
            errors::config_error(obj.py(), format!("a flag must be True or False, got {}", show(obj)))
        })
    }
}
