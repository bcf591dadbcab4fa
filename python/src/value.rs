//! Python values and MessagePack.
//!
//! `Cache` writes pack a Python object straight into MessagePack bytes on
//! the calling thread ([`pack`], with the GIL: the objects must be read
//! then), handed to the core as a `RawValue`; kv writes turn it into a
//! [`Mp`] tree, which the kv writer encodes through serde with rmp-serde. Reads decode
//! MessagePack bytes straight into Python objects ([`decode`]), or a [`Mp`]
//! tree that kv's serde decoding produced ([`to_py`]).
//!
//! The encoding is the one `msgpack.packb(value, use_bin_type=True)` gives
//! (smallest integer and length headers, floats as float64, `bytes` as bin,
//! `str` as str), with three extension types for what MessagePack lacks:
//!
//! | ext code | Python type | data |
//! | --- | --- | --- |
//! | 1 | `decimal.Decimal` | ASCII `str(value)` (`"1.2300"`, `"-0"`, `"NaN"`, `"1E+3"`) |
//! | 2 | `datetime.datetime` | ASCII `value.isoformat()` (naive or with its UTC offset) |
//! | 3 | `datetime.date` | ASCII `value.isoformat()` |
//!
//! Tuples are encoded as arrays (and read back as lists), as msgpack does.

use std::fmt;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};
use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, SerializeTuple, Serializer};

use crate::errors;

/// Extension type codes (see the module docs).
pub const EXT_DECIMAL: i8 = 1;
/// `datetime.datetime` as ISO 8601 text.
pub const EXT_DATETIME: i8 = 2;
/// `datetime.date` as ISO 8601 text.
pub const EXT_DATE: i8 = 3;

/// Nesting deeper than this is refused (a cycle would never end).
const MAX_DEPTH: usize = 256;

/// A MessagePack value.
#[derive(Debug, Clone, PartialEq)]
pub enum Mp {
    /// nil
    Nil,
    /// true / false
    Bool(bool),
    /// A negative integer (non-negative ones are `UInt`).
    Int(i64),
    /// A non-negative integer.
    UInt(u64),
    /// float64
    F64(f64),
    /// str
    Str(String),
    /// bin
    Bin(Vec<u8>),
    /// array
    Array(Vec<Mp>),
    /// map, in insertion order
    Map(Vec<(Mp, Mp)>),
    /// ext (code, data)
    Ext(i8, Vec<u8>),
}

struct Classes {
    decimal: Py<PyType>,
    datetime: Py<PyType>,
    date: Py<PyType>,
    ext_type: Py<PyAny>,
}

static CLASSES: GILOnceCell<Classes> = GILOnceCell::new();

fn classes(py: Python<'_>) -> PyResult<&'static Classes> {
    CLASSES.get_or_try_init(py, || {
        let decimal = py.import("decimal")?.getattr("Decimal")?.downcast_into::<PyType>()?.unbind();
        let dt = py.import("datetime")?;
        let datetime = dt.getattr("datetime")?.downcast_into::<PyType>()?.unbind();
        let date = dt.getattr("date")?.downcast_into::<PyType>()?.unbind();
        let ext_type = py.import("tradecache._types")?.getattr("ExtType")?.unbind();
        Ok(Classes { decimal, datetime, date, ext_type })
    })
}

/// Converts a Python object into a [`Mp`] tree (what kv writes hand the
/// core); `EncodeError` (a `TypeError` too) for what cannot be stored.
/// The same walk as [`pack`], into a tree.
pub fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Mp> {
    let mut tree = Tree::default();
    walk(obj, &mut tree, 0).map_err(|e| encode_failure(obj.py(), e))?;
    tree.done.ok_or_else(|| errors::encode_error(obj.py(), "the value changed while it was stored".into()))
}

/// Encodes a Python object straight into MessagePack bytes, the same
/// bytes `rmp_serde` gives for its [`Mp`] tree (and
/// `msgpack.packb(value, use_bin_type=True)` for the plain types): what
/// `Cache.put`/`append` hand the core as a `RawValue`, on the calling
/// thread, without building a tree first.
///
/// Whatever goes wrong is an `EncodeError`: a type that cannot be stored,
/// an int beyond 64 bits, a str that is not valid Unicode (a lone
/// surrogate), an `ExtType` whose code is not one of its own, a cycle,
/// a dict or list whose size changes while it is packed (Python code the
/// walk runs, a `Decimal` subclass's `__str__`, may change it, or let
/// another thread do so), or an exception raised by such code (its
/// `__cause__`).
pub fn pack(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
    walk(obj, out, 0).map_err(|e| encode_failure(obj.py(), e))
}

/// An exception of the walk as an `EncodeError` (see [`pack`]).
fn encode_failure(py: Python<'_>, e: PyErr) -> PyErr {
    errors::reclass(py, e, "EncodeError", "Codec", "the value cannot be stored")
}

/// Where the walk puts a value: MessagePack bytes ([`pack`]) or a [`Mp`]
/// tree ([`from_py`]). A container's header comes first, then exactly
/// its `n` entries (a map: key, value, key, …).
trait Sink {
    fn nil(&mut self);
    fn bool(&mut self, b: bool);
    fn int(&mut self, v: i64);
    fn uint(&mut self, v: u64);
    fn float(&mut self, v: f64);
    fn str(&mut self, py: Python<'_>, s: &str) -> PyResult<()>;
    fn bin(&mut self, py: Python<'_>, b: &[u8]) -> PyResult<()>;
    fn ext(&mut self, py: Python<'_>, code: i8, data: &[u8]) -> PyResult<()>;
    fn map(&mut self, py: Python<'_>, n: usize) -> PyResult<()>;
    fn array(&mut self, py: Python<'_>, n: usize) -> PyResult<()>;
}

impl Sink for Vec<u8> {
    fn nil(&mut self) {
        self.push(0xc0);
    }
    fn bool(&mut self, b: bool) {
        self.push(if b { 0xc3 } else { 0xc2 });
    }
    fn int(&mut self, v: i64) {
        pack_int(v, self);
    }
    fn uint(&mut self, v: u64) {
        pack_uint(v, self);
    }
    fn float(&mut self, v: f64) {
        self.push(0xcb);
        self.extend_from_slice(&v.to_bits().to_be_bytes());
    }
    fn str(&mut self, py: Python<'_>, s: &str) -> PyResult<()> {
        if !pack_len(self, s.len(), Some((0xa0, 32)), Some(0xd9), 0xda, 0xdb) {
            return Err(too_long(py));
        }
        self.extend_from_slice(s.as_bytes());
        Ok(())
    }
    fn bin(&mut self, py: Python<'_>, b: &[u8]) -> PyResult<()> {
        if !pack_len(self, b.len(), None, Some(0xc4), 0xc5, 0xc6) {
            return Err(too_long(py));
        }
        self.extend_from_slice(b);
        Ok(())
    }
    fn ext(&mut self, py: Python<'_>, code: i8, data: &[u8]) -> PyResult<()> {
        match data.len() {
            1 => self.push(0xd4),
            2 => self.push(0xd5),
            4 => self.push(0xd6),
            8 => self.push(0xd7),
            16 => self.push(0xd8),
            n => {
                if !pack_len(self, n, None, Some(0xc7), 0xc8, 0xc9) {
                    return Err(too_long(py));
                }
            }
        }
        self.push(code as u8);
        self.extend_from_slice(data);
        Ok(())
    }
    fn map(&mut self, py: Python<'_>, n: usize) -> PyResult<()> {
        if !pack_len(self, n, Some((0x80, 16)), None, 0xde, 0xdf) {
            return Err(too_long(py));
        }
        Ok(())
    }
    fn array(&mut self, py: Python<'_>, n: usize) -> PyResult<()> {
        if !pack_len(self, n, Some((0x90, 16)), None, 0xdc, 0xdd) {
            return Err(too_long(py));
        }
        Ok(())
    }
}

/// A container of a [`Tree`] being filled: its entries so far, how many
/// it gets, and (a map) the key waiting for its value.
enum Frame {
    Array(Vec<Mp>, usize),
    Map(Vec<(Mp, Mp)>, Option<Mp>, usize),
}

/// Builds a [`Mp`] tree from the walk's headers and values.
#[derive(Default)]
struct Tree {
    open: Vec<Frame>,
    done: Option<Mp>,
}

impl Tree {
    /// A finished value: into the innermost open container (closing
    /// those it completes), or the result.
    fn put(&mut self, mut v: Mp) {
        loop {
            let full = match self.open.last_mut() {
                None => {
                    self.done = Some(v);
                    return;
                }
                Some(Frame::Array(items, n)) => {
                    items.push(v);
                    items.len() == *n
                }
                Some(Frame::Map(entries, key, n)) => match key.take() {
                    None => {
                        *key = Some(v);
                        return;
                    }
                    Some(k) => {
                        entries.push((k, v));
                        entries.len() == *n
                    }
                },
            };
            if !full {
                return;
            }
            v = match self.open.pop() {
                Some(Frame::Array(items, _)) => Mp::Array(items),
                Some(Frame::Map(entries, _, _)) => Mp::Map(entries),
                None => return,
            };
        }
    }
}

impl Sink for Tree {
    fn nil(&mut self) {
        self.put(Mp::Nil);
    }
    fn bool(&mut self, b: bool) {
        self.put(Mp::Bool(b));
    }
    fn int(&mut self, v: i64) {
        self.put(if v < 0 { Mp::Int(v) } else { Mp::UInt(v as u64) });
    }
    fn uint(&mut self, v: u64) {
        self.put(Mp::UInt(v));
    }
    fn float(&mut self, v: f64) {
        self.put(Mp::F64(v));
    }
    fn str(&mut self, _: Python<'_>, s: &str) -> PyResult<()> {
        self.put(Mp::Str(s.to_owned()));
        Ok(())
    }
    fn bin(&mut self, _: Python<'_>, b: &[u8]) -> PyResult<()> {
        self.put(Mp::Bin(b.to_vec()));
        Ok(())
    }
    fn ext(&mut self, _: Python<'_>, code: i8, data: &[u8]) -> PyResult<()> {
        self.put(Mp::Ext(code, data.to_vec()));
        Ok(())
    }
    fn map(&mut self, _: Python<'_>, n: usize) -> PyResult<()> {
        if n == 0 {
            self.put(Mp::Map(Vec::new()));
        } else {
            self.open.push(Frame::Map(Vec::with_capacity(n), None, n));
        }
        Ok(())
    }
    fn array(&mut self, _: Python<'_>, n: usize) -> PyResult<()> {
        if n == 0 {
            self.put(Mp::Array(Vec::new()));
        } else {
            self.open.push(Frame::Array(Vec::with_capacity(n), n));
        }
        Ok(())
    }
}

fn pack_len(out: &mut Vec<u8>, n: usize, fix: Option<(u8, usize)>, m8: Option<u8>, m16: u8, m32: u8) -> bool {
    match fix {
        Some((base, lim)) if n < lim => out.push(base | n as u8),
        _ => match m8 {
            Some(m) if n <= 0xff => out.extend_from_slice(&[m, n as u8]),
            _ if n <= 0xffff => {
                out.push(m16);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            _ if n <= 0xffff_ffff => {
                out.push(m32);
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
            _ => return false,
        },
    }
    true
}

fn too_long(py: Python<'_>) -> PyErr {
    errors::encode_error(py, "a value longer than MessagePack's 2**32-1 limit".to_string())
}

fn pack_uint(v: u64, out: &mut Vec<u8>) {
    if v < 0x80 {
        out.push(v as u8);
    } else if v <= 0xff {
        out.extend_from_slice(&[0xcc, v as u8]);
    } else if v <= 0xffff {
        out.push(0xcd);
        out.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v <= 0xffff_ffff {
        out.push(0xce);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

fn pack_int(v: i64, out: &mut Vec<u8>) {
    if v >= 0 {
        pack_uint(v as u64, out);
    } else if v >= -32 {
        out.push(v as i8 as u8);
    } else if v >= i64::from(i8::MIN) {
        out.extend_from_slice(&[0xd0, v as i8 as u8]);
    } else if v >= i64::from(i16::MIN) {
        out.push(0xd1);
        out.extend_from_slice(&(v as i16).to_be_bytes());
    } else if v >= i64::from(i32::MIN) {
        out.push(0xd2);
        out.extend_from_slice(&(v as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// A str as UTF-8; `EncodeError` for one Python holds but UTF-8 cannot
/// (a lone surrogate such as `'\ud800'`).
fn utf8<'a>(s: &'a Bound<'_, PyString>) -> PyResult<&'a str> {
    s.to_str().map_err(|_| {
        errors::encode_error(
            s.py(),
            "a str that is not valid Unicode (a lone surrogate such as '\\ud800') cannot be stored".into(),
        )
    })
}

fn changed(py: Python<'_>, what: &str) -> PyErr {
    errors::encode_error(
        py,
        format!(
            "the {what} changed size while it was being stored (by code the walk ran, or another thread)"
        ),
    )
}

/// A dict's `n` entries, refusing one whose size changes meanwhile:
/// checked before each step, so PyO3's iterator (which panics on a
/// changed dict) never sees a change and is never asked for more than
/// `n` entries.
fn walk_dict<S: Sink>(d: &Bound<'_, PyDict>, out: &mut S, depth: usize) -> PyResult<()> {
    let py = d.py();
    let n = d.len();
    out.map(py, n)?;
    let mut it = d.iter();
    for _ in 0..n {
        if d.len() != n {
            return Err(changed(py, "dict"));
        }
        let (k, v) = it.next().ok_or_else(|| changed(py, "dict"))?;
        walk(&k, out, depth + 1)?;
        walk(&v, out, depth + 1)?;
    }
    if d.len() != n {
        return Err(changed(py, "dict"));
    }
    Ok(())
}

/// A list's `n` items, by index, refusing one whose size changes.
fn walk_list<S: Sink>(l: &Bound<'_, PyList>, out: &mut S, depth: usize) -> PyResult<()> {
    let py = l.py();
    let n = l.len();
    out.array(py, n)?;
    for i in 0..n {
        if l.len() != n {
            return Err(changed(py, "list"));
        }
        walk(&l.get_item(i)?, out, depth + 1)?;
    }
    if l.len() != n {
        return Err(changed(py, "list"));
    }
    Ok(())
}

fn walk_tuple<S: Sink>(t: &Bound<'_, PyTuple>, out: &mut S, depth: usize) -> PyResult<()> {
    out.array(t.py(), t.len())?;
    for v in t.iter() {
        walk(&v, out, depth + 1)?;
    }
    Ok(())
}

/// An `ExtType`'s code and data: a code of MessagePack's application
/// range other than the three the bindings give their own types (1, 2,
/// 3: they would read back as a Decimal, datetime or date), data bytes.
fn ext_of(obj: &Bound<'_, PyAny>) -> PyResult<(i8, Vec<u8>)> {
    let py = obj.py();
    let code = obj.getattr("code")?;
    let code = match code.extract::<i8>() {
        Ok(c) if ![EXT_DECIMAL, EXT_DATETIME, EXT_DATE].contains(&c) => c,
        _ => {
            return Err(errors::encode_error(
                py,
                format!(
                    "ExtType code {}: must be an int from -128 to 127 other than 1, 2, 3 (those are \
                     decimal.Decimal, datetime.datetime and datetime.date: store those)",
                    code.repr().map(|r| r.to_string()).unwrap_or_else(|_| "?".into())
                ),
            ))
        }
    };
    let data = obj.getattr("data")?;
    let data = data
        .downcast::<PyBytes>()
        .map_err(|_| errors::encode_error(py, "ExtType data must be bytes".into()))?;
    Ok((code, data.as_bytes().to_vec()))
}

/// The walk of [`pack`] and [`from_py`]: the one place a Python value is
/// read.
fn walk<S: Sink>(obj: &Bound<'_, PyAny>, out: &mut S, depth: usize) -> PyResult<()> {
    let py = obj.py();
    if depth > MAX_DEPTH {
        return Err(errors::encode_error(py, format!("nesting deeper than {MAX_DEPTH} levels (a cycle?)")));
    }
    if obj.is_none() {
        out.nil();
        return Ok(());
    }
    if let Ok(b) = obj.downcast_exact::<PyBool>() {
        out.bool(b.is_true());
        return Ok(());
    }
    if let Ok(s) = obj.downcast::<PyString>() {
        return out.str(py, utf8(s)?);
    }
    if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>() {
        if let Ok(v) = obj.extract::<i64>() {
            out.int(v);
            return Ok(());
        }
        if let Ok(v) = obj.extract::<u64>() {
            out.uint(v);
            return Ok(());
        }
        return Err(errors::encode_error(
            py,
            "integer out of MessagePack's range (-2**63 to 2**64-1); store it as a Decimal or a str"
                .to_string(),
        ));
    }
    if let Ok(f) = obj.downcast::<PyFloat>() {
        out.float(f.value());
        return Ok(());
    }
    if let Ok(d) = obj.downcast::<PyDict>() {
        return walk_dict(d, out, depth);
    }
    if let Ok(l) = obj.downcast::<PyList>() {
        return walk_list(l, out, depth);
    }
    if let Ok(t) = obj.downcast_exact::<PyTuple>() {
        return walk_tuple(t, out, depth);
    }
    if let Ok(b) = obj.downcast::<PyBytes>() {
        return out.bin(py, b.as_bytes());
    }
    if let Ok(b) = obj.downcast::<PyByteArray>() {
        return out.bin(py, &b.to_vec());
    }
    let c = classes(py)?;
    if obj.is_instance(c.decimal.bind(py))? {
        let s = obj.str()?;
        return out.ext(py, EXT_DECIMAL, utf8(&s)?.as_bytes());
    }
    // datetime is a subclass of date: test it first.
    if obj.is_instance(c.datetime.bind(py))? {
        let s = obj.call_method0("isoformat")?;
        return out.ext(py, EXT_DATETIME, utf8(s.downcast::<PyString>()?)?.as_bytes());
    }
    if obj.is_instance(c.date.bind(py))? {
        let s = obj.call_method0("isoformat")?;
        return out.ext(py, EXT_DATE, utf8(s.downcast::<PyString>()?)?.as_bytes());
    }
    if obj.is_instance(c.ext_type.bind(py))? {
        let (code, data) = ext_of(obj)?;
        return out.ext(py, code, &data);
    }
    // Other tuple subclasses (named tuples) are arrays, as msgpack has them.
    if let Ok(t) = obj.downcast::<PyTuple>() {
        return walk_tuple(t, out, depth);
    }
    let ty = obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
    Err(errors::encode_error(
        py,
        format!(
            "cannot store a value of type {ty}: use dict, list, tuple, str, int, float, bytes, bool, None, \
             decimal.Decimal, datetime.datetime or datetime.date"
        ),
    ))
}

/// A [`Mp`] tree as a Python object.
pub fn to_py(py: Python<'_>, v: &Mp) -> PyResult<PyObject> {
    Ok(match v {
        Mp::Nil => py.None(),
        Mp::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        Mp::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        Mp::UInt(u) => u.into_pyobject(py)?.into_any().unbind(),
        Mp::F64(f) => PyFloat::new(py, *f).into_any().unbind(),
        Mp::Str(s) => PyString::new(py, s).into_any().unbind(),
        Mp::Bin(b) => PyBytes::new(py, b).into_any().unbind(),
        Mp::Array(items) => {
            let out = PyList::empty(py);
            for i in items {
                out.append(to_py(py, i)?)?;
            }
            out.into_any().unbind()
        }
        Mp::Map(entries) => {
            let out = PyDict::new(py);
            for (k, v) in entries {
                let k = match k {
                    Mp::Str(s) if s.len() < 32 => key_str(py, s.as_bytes())?,
                    _ => to_py(py, k)?,
                };
                out.set_item(k, to_py(py, v)?)?;
            }
            out.into_any().unbind()
        }
        Mp::Ext(code, data) => ext_to_py(py, *code, data)?,
    })
}

fn ext_to_py(py: Python<'_>, code: i8, data: &[u8]) -> PyResult<PyObject> {
    let c = classes(py)?;
    let text = || {
        std::str::from_utf8(data)
            .map_err(|_| errors::decode_error(py, format!("ext {code}: data is not ASCII text")))
    };
    Ok(match code {
        EXT_DECIMAL => c.decimal.bind(py).call1((text()?,))?.unbind(),
        EXT_DATETIME => c.datetime.bind(py).call_method1("fromisoformat", (text()?,))?.unbind(),
        EXT_DATE => c.date.bind(py).call_method1("fromisoformat", (text()?,))?.unbind(),
        _ => c.ext_type.bind(py).call1((code, PyBytes::new(py, data)))?.unbind(),
    })
}

/// Decodes one MessagePack value (the whole of `bytes`) into a Python
/// object. Whatever goes wrong is a `DecodeError` (an ext 1 that is not a
/// decimal number, an ext 2 that is not an ISO 8601 time, …).
pub fn decode(py: Python<'_>, bytes: &[u8]) -> PyResult<PyObject> {
    let mut rd = bytes;
    let v = decode_at(py, &mut rd, 0)
        .map_err(|e| errors::reclass(py, e, "DecodeError", "Codec", "the value cannot be read"))?;
    if !rd.is_empty() {
        return Err(errors::decode_error(py, format!("{} byte(s) after the value", rd.len())));
    }
    Ok(v)
}

fn take<'a>(py: Python<'_>, rd: &mut &'a [u8], n: usize) -> PyResult<&'a [u8]> {
    if rd.len() < n {
        return Err(errors::decode_error(py, "truncated MessagePack value".to_string()));
    }
    let (head, tail) = rd.split_at(n);
    *rd = tail;
    Ok(head)
}

fn be(py: Python<'_>, rd: &mut &[u8], n: usize) -> PyResult<u64> {
    Ok(take(py, rd, n)?.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

fn decode_at(py: Python<'_>, rd: &mut &[u8], depth: usize) -> PyResult<PyObject> {
    if depth > MAX_DEPTH {
        return Err(errors::decode_error(py, format!("nesting deeper than {MAX_DEPTH} levels")));
    }
    let m = take(py, rd, 1)?[0];
    let str_of = |py: Python<'_>, rd: &mut &[u8], n: usize| -> PyResult<PyObject> {
        let b = take(py, rd, n)?;
        let s =
            std::str::from_utf8(b).map_err(|_| errors::decode_error(py, "str is not UTF-8".to_string()))?;
        Ok(PyString::new(py, s).into_any().unbind())
    };
    Ok(match m {
        0x00..=0x7f => (m as u64).into_pyobject(py)?.into_any().unbind(),
        0xe0..=0xff => ((m as i8) as i64).into_pyobject(py)?.into_any().unbind(),
        0x80..=0x8f => decode_map(py, rd, (m & 0x0f) as usize, depth)?,
        0x90..=0x9f => decode_array(py, rd, (m & 0x0f) as usize, depth)?,
        0xa0..=0xbf => str_of(py, rd, (m & 0x1f) as usize)?,
        0xc0 => py.None(),
        0xc2 => PyBool::new(py, false).to_owned().into_any().unbind(),
        0xc3 => PyBool::new(py, true).to_owned().into_any().unbind(),
        0xc4..=0xc6 => {
            let n = be(py, rd, 1 << (m - 0xc4))? as usize;
            PyBytes::new(py, take(py, rd, n)?).into_any().unbind()
        }
        0xc7..=0xc9 => {
            let n = be(py, rd, 1 << (m - 0xc7))? as usize;
            let code = take(py, rd, 1)?[0] as i8;
            let data = take(py, rd, n)?;
            ext_to_py(py, code, data)?
        }
        0xca => {
            let bits = be(py, rd, 4)? as u32;
            PyFloat::new(py, f64::from(f32::from_bits(bits))).into_any().unbind()
        }
        0xcb => PyFloat::new(py, f64::from_bits(be(py, rd, 8)?)).into_any().unbind(),
        0xcc..=0xcf => be(py, rd, 1 << (m - 0xcc))?.into_pyobject(py)?.into_any().unbind(),
        0xd0..=0xd3 => {
            let n = 1usize << (m - 0xd0);
            let raw = be(py, rd, n)?;
            let shift = 64 - 8 * n as u32;
            (((raw << shift) as i64) >> shift).into_pyobject(py)?.into_any().unbind()
        }
        0xd4..=0xd8 => {
            let n = 1usize << (m - 0xd4);
            let code = take(py, rd, 1)?[0] as i8;
            let data = take(py, rd, n)?;
            ext_to_py(py, code, data)?
        }
        0xd9..=0xdb => {
            let n = be(py, rd, 1 << (m - 0xd9))? as usize;
            str_of(py, rd, n)?
        }
        0xdc | 0xdd => {
            let n = be(py, rd, if m == 0xdc { 2 } else { 4 })? as usize;
            decode_array(py, rd, n, depth)?
        }
        0xde | 0xdf => {
            let n = be(py, rd, if m == 0xde { 2 } else { 4 })? as usize;
            decode_map(py, rd, n, depth)?
        }
        0xc1 => return Err(errors::decode_error(py, "reserved MessagePack marker 0xc1".to_string())),
    })
}

/// Slots of the map-key cache (a power of two).
const KEY_SLOTS: usize = 1024;

/// A slot of the map-key cache: the key's bytes and its Python string.
type KeySlot = Option<(Box<[u8]>, Py<PyString>)>;

thread_local! {
    /// Short map keys (field names) already made into Python strings: a
    /// direct-mapped table, slot by a hash of the bytes; a key that meets
    /// another in its slot takes it over.
    static KEYS: std::cell::RefCell<Vec<KeySlot>> =
        std::cell::RefCell::new((0..KEY_SLOTS).map(|_| None).collect());
}

/// FNV-1a: a few cycles for a field name (SipHash cost more than the
/// lookup it guards).
fn key_slot(b: &[u8]) -> usize {
    let h = b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3));
    (h ^ (h >> 32)) as usize & (KEY_SLOTS - 1)
}

fn key_str(py: Python<'_>, b: &[u8]) -> PyResult<PyObject> {
    KEYS.with(|cell| {
        let mut keys = cell.borrow_mut();
        let slot = &mut keys[key_slot(b)];
        if let Some((k, s)) = slot {
            if **k == *b {
                return Ok(s.clone_ref(py).into_any());
            }
        }
        let s =
            std::str::from_utf8(b).map_err(|_| errors::decode_error(py, "str is not UTF-8".to_string()))?;
        let k = PyString::new(py, s).unbind();
        *slot = Some((b.into(), k.clone_ref(py)));
        Ok(k.into_any())
    })
}

fn decode_array(py: Python<'_>, rd: &mut &[u8], n: usize, depth: usize) -> PyResult<PyObject> {
    if n > rd.len() {
        return Err(errors::decode_error(py, "truncated MessagePack array".to_string()));
    }
    let out = PyList::empty(py);
    for _ in 0..n {
        out.append(decode_at(py, rd, depth + 1)?)?;
    }
    Ok(out.into_any().unbind())
}

fn decode_map(py: Python<'_>, rd: &mut &[u8], n: usize, depth: usize) -> PyResult<PyObject> {
    if n > rd.len() {
        return Err(errors::decode_error(py, "truncated MessagePack map".to_string()));
    }
    let out = PyDict::new(py);
    for _ in 0..n {
        let k = match rd.first() {
            // Short str keys (field names) repeat across values: one Python
            // string each, shared (and its hash computed once).
            Some(&m) if (0xa0..=0xbf).contains(&m) => {
                let len = (m & 0x1f) as usize;
                take(py, rd, 1)?;
                key_str(py, take(py, rd, len)?)?
            }
            _ => decode_at(py, rd, depth + 1)?,
        };
        let v = decode_at(py, rd, depth + 1)?;
        out.set_item(k, v).map_err(|e| {
            if e.is_instance_of::<PyTypeError>(py) {
                errors::decode_error(py, format!("a map key Python cannot hash: {e}"))
            } else {
                e
            }
        })?;
    }
    Ok(out.into_any().unbind())
}

// ---- serde: how the core's flusher and the kv writer encode a Mp ----

struct Bin<'a>(&'a [u8]);

impl Serialize for Bin<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

struct ExtBody<'a>(i8, &'a [u8]);

impl Serialize for ExtBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.0)?;
        t.serialize_element(&Bin(self.1))?;
        t.end()
    }
}

impl Serialize for Mp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Mp::Nil => s.serialize_unit(),
            Mp::Bool(b) => s.serialize_bool(*b),
            Mp::Int(i) => s.serialize_i64(*i),
            Mp::UInt(u) => s.serialize_u64(*u),
            Mp::F64(f) => s.serialize_f64(*f),
            Mp::Str(v) => s.serialize_str(v),
            Mp::Bin(b) => s.serialize_bytes(b),
            Mp::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            Mp::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            // rmp-serde's convention for an ext: a newtype struct of this
            // name around (code, bytes).
            Mp::Ext(code, data) => s.serialize_newtype_struct("_ExtStruct", &ExtBody(*code, data)),
        }
    }
}

struct MpVisitor;

impl<'de> Visitor<'de> for MpVisitor {
    type Value = Mp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a MessagePack value")
    }
    fn visit_unit<E>(self) -> Result<Mp, E> {
        Ok(Mp::Nil)
    }
    fn visit_none<E>(self) -> Result<Mp, E> {
        Ok(Mp::Nil)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Mp, D::Error> {
        Mp::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Mp, E> {
        Ok(Mp::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Mp, E> {
        Ok(if v < 0 { Mp::Int(v) } else { Mp::UInt(v as u64) })
    }
    fn visit_u64<E>(self, v: u64) -> Result<Mp, E> {
        Ok(Mp::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Mp, E> {
        Ok(Mp::F64(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Mp, E> {
        Ok(Mp::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Mp, E> {
        Ok(Mp::Str(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Mp, E> {
        Ok(Mp::Bin(v.to_vec()))
    }
    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Mp, E> {
        Ok(Mp::Bin(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Mp, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element::<Mp>()? {
            out.push(v);
        }
        Ok(Mp::Array(out))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Mp, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some((k, v)) = map.next_entry::<Mp, Mp>()? {
            out.push((k, v));
        }
        Ok(Mp::Map(out))
    }
    // rmp-serde hands an ext to `deserialize_any` as a newtype struct whose
    // content is the sequence (code, bytes).
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Mp, D::Error> {
        d.deserialize_any(ExtVisitor)
    }
}

struct ExtVisitor;

impl<'de> Visitor<'de> for ExtVisitor {
    type Value = Mp;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a MessagePack ext (code, data)")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Mp, A::Error> {
        let code: i8 = seq.next_element()?.ok_or_else(|| de::Error::custom("ext without a code"))?;
        let data: BytesOut = seq.next_element()?.ok_or_else(|| de::Error::custom("ext without data"))?;
        Ok(Mp::Ext(code, data.0))
    }
}

struct BytesOut(Vec<u8>);

impl<'de> Deserialize<'de> for BytesOut {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BytesOut;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<BytesOut, E> {
                Ok(BytesOut(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<BytesOut, E> {
                Ok(BytesOut(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BytesOut, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(BytesOut(out))
            }
        }
        d.deserialize_bytes(V)
    }
}

impl<'de> Deserialize<'de> for Mp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MpVisitor)
    }
}
