//! Python values into MessagePack: the one walk that reads a value a
//! call stores ([`pack`] for `Cache` and `packb`, [`from_py`] for kv),
//! with the encoding described in [`crate::value`].

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::errors;
use crate::value::{classes, Mp, EXT_DATE, EXT_DATETIME, EXT_DECIMAL, MAX_DEPTH};

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
    let ty = crate::args::type_name(obj);
    Err(errors::encode_error(
        py,
        format!(
            "cannot store a value of type {ty}: use dict, list, tuple, str, int, float, bytes, bool, None, \
             decimal.Decimal, datetime.datetime or datetime.date"
        ),
    ))
}
