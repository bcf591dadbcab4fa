//! Python values and MessagePack.
//!
//! `Cache` writes pack a Python object straight into MessagePack bytes on
//! the calling thread ([`crate::pack::pack`], with the GIL: the objects
//! must be read then), handed to the core as a `RawValue`; kv writes turn
//! it into a [`Mp`] tree ([`crate::pack::from_py`]), which the kv writer
//! encodes through serde with rmp-serde. Reads decode MessagePack bytes
//! straight into Python objects ([`decode`]), or a [`Mp`] tree that kv's
//! serde decoding produced ([`to_py`]).
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
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyList, PyString, PyType};
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
pub(crate) const MAX_DEPTH: usize = 256;

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

/// The Python classes of the extension types (and `ExtType`).
pub(crate) struct Classes {
    pub decimal: Py<PyType>,
    pub datetime: Py<PyType>,
    pub date: Py<PyType>,
    pub ext_type: Py<PyAny>,
}

static CLASSES: GILOnceCell<Classes> = GILOnceCell::new();

pub(crate) fn classes(py: Python<'_>) -> PyResult<&'static Classes> {
    CLASSES.get_or_try_init(py, || {
        let decimal = py.import("decimal")?.getattr("Decimal")?.downcast_into::<PyType>()?.unbind();
        let dt = py.import("datetime")?;
        let datetime = dt.getattr("datetime")?.downcast_into::<PyType>()?.unbind();
        let date = dt.getattr("date")?.downcast_into::<PyType>()?.unbind();
        let ext_type = py.import("tradecache._types")?.getattr("ExtType")?.unbind();
        Ok(Classes { decimal, datetime, date, ext_type })
    })
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
