//! [`RawValue`]: bytes checked to be one value in an encoding.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::codec::Encoding;

/// Exactly one encoded value, checked: what [`crate::Cache::put_raw`] stores as an
/// entity's value and [`crate::Cache::append_raw`] appends to its log, byte for
/// byte. Cheap to clone (the bytes are shared).
///
/// MessagePack is checked to be one complete value (every length inside
/// it, UTF-8 of every `str`, no reserved `0xc1` marker, nothing after it);
/// JSON to be one value (whitespace around it allowed). A value must be in
/// the cache's [`Encoding`] (`Config::encoding`): one in the other is
/// refused by the write ([`crate::PushError::WrongEncoding`]).
///
/// ```
/// use tradecache::raw::RawValue;
/// use tradecache::Encoding;
///
/// let v = RawValue::msgpack(vec![0x81, 0xa1, b'q', 0x01])?;    // {"q": 1}
/// assert_eq!(v.as_bytes(), &[0x81, 0xa1, b'q', 0x01]);
/// assert!(RawValue::msgpack(vec![0x81, 0xa1, b'q']).is_err()); // truncated
/// assert!(RawValue::msgpack(vec![0x01, 0x02]).is_err());       // two values
/// let j = RawValue::json(br#"{"q": 1}"#.to_vec())?;
/// assert_eq!(j.encoding(), Encoding::Json);
/// # Ok::<(), tradecache::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RawValue {
    pub(super) bytes: Arc<[u8]>,
    pub(super) encoding: Encoding,
}

impl std::fmt::Debug for RawValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawValue").field("encoding", &self.encoding).field("len", &self.bytes.len()).finish()
    }
}

impl RawValue {
    /// One MessagePack value.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] saying where the bytes stop being one value.
    pub fn msgpack(bytes: impl Into<Arc<[u8]>>) -> Result<RawValue> {
        RawValue::new(bytes, Encoding::MsgPack)
    }

    /// One JSON value.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] with serde_json's reason.
    pub fn json(bytes: impl Into<Arc<[u8]>>) -> Result<RawValue> {
        RawValue::new(bytes, Encoding::Json)
    }

    /// One value in `encoding`.
    ///
    /// # Errors
    ///
    /// As [`RawValue::msgpack`] and [`RawValue::json`].
    pub fn new(bytes: impl Into<Arc<[u8]>>, encoding: Encoding) -> Result<RawValue> {
        // Copied once into the shared allocation (which holds the counts
        // in front of the bytes), from a `Vec` or from a slice: a caller
        // that packs into a reused buffer hands its slice and so makes one
        // allocation per value, not two.
        let bytes = bytes.into();
        let checked = match encoding {
            Encoding::MsgPack => check_msgpack(&bytes),
            Encoding::Json => serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
                .map(|_| ())
                .map_err(|e| format!("not one JSON value: {e}")),
        };
        match checked {
            Ok(()) => Ok(RawValue { bytes, encoding }),
            Err(detail) => Err(Error::Codec { key: "(a raw value)".into(), detail }),
        }
    }

    /// Encodes `value` (with the crate's codec: structs as maps with field
    /// names in MessagePack) in `encoding`.
    ///
    /// ```
    /// use tradecache::raw::RawValue;
    /// use tradecache::Encoding;
    ///
    /// let v = RawValue::encode(&("BTC", 2u8), Encoding::MsgPack)?;
    /// assert_eq!(v.as_bytes(), &[0x92, 0xa3, b'B', b'T', b'C', 0x02]);
    /// # Ok::<(), tradecache::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] when serde refuses the value (a map with non-string
    /// keys in JSON, say).
    pub fn encode<T: Serialize + ?Sized>(value: &T, encoding: Encoding) -> Result<RawValue> {
        let mut out = Vec::new();
        crate::store::codec::encode(value, encoding, &mut out)
            .map_err(|e| Error::Codec { key: "(a raw value)".into(), detail: e.to_string() })?;
        Ok(RawValue { bytes: out.into(), encoding })
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The encoding they are in.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }
}

/// Decodes a stored value as the typed reads ([`crate::Cache::get`],
/// `load`) do, for bytes read with [`crate::Cache::get_raw`],
/// [`crate::Cache::get_events_raw`] or [`crate::Cache::load_raw`]. A first
/// byte at `0x80` or above is MessagePack (nothing may follow the value), a
/// longer value starting below is JSON, and a single byte is read in
/// `preferred` (the configured [`Encoding`]), then in the other.
///
/// ```
/// use tradecache::raw::{self, RawValue};
/// use tradecache::Encoding;
///
/// let v = RawValue::encode(&("BTC", 2u8), Encoding::MsgPack)?;
/// let back: (String, u8) = raw::decode(v.as_bytes(), Encoding::Json)?;
/// assert_eq!(back, ("BTC".to_string(), 2));
/// assert!(raw::decode::<u8>(&[0x01, 0x02], Encoding::MsgPack).is_err());
/// # Ok::<(), tradecache::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Codec`] saying why `bytes` is not a `T` in either encoding.
/// Never panics.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], preferred: Encoding) -> Result<T> {
    crate::store::codec::decode(bytes, preferred)
        .map_err(|detail| Error::Codec { key: "(a raw value)".into(), detail })
}

/// Checks that `b` is exactly one MessagePack value. Iterative (a count of
/// the values still owed), so nesting depth costs no stack.
pub(super) fn check_msgpack(b: &[u8]) -> std::result::Result<(), String> {
    let mut at = 0usize;
    let mut owed: u64 = 1;
    let need = |at: usize, n: usize| -> std::result::Result<(), String> {
        if b.len().saturating_sub(at) < n {
            Err(format!("truncated MessagePack: {n} more byte(s) needed at offset {at} of {}", b.len()))
        } else {
            Ok(())
        }
    };
    let be = |at: usize, n: usize| b[at..at + n].iter().fold(0u64, |a, x| (a << 8) | u64::from(*x));
    while owed > 0 {
        need(at, 1)?;
        let m = b[at];
        at += 1;
        owed -= 1;
        // What most values are made of (ints, nil, bools, short strs),
        // without the general path below.
        match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => continue,
            0xa0..=0xbf => {
                let n = usize::from(m & 0x1f);
                need(at, n)?;
                check_utf8(&b[at..at + n], at)?;
                at += n;
                continue;
            }
            _ => {}
        }
        // (length bytes, payload bytes, child values, UTF-8 payload); the
        // length read from the length bytes adds to the payload (str, bin,
        // ext) or, of an array or map, to the child values.
        let (n, payload, children, utf8) = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0, 0, false),
            0x80..=0x8f => (0, 0, 2 * u64::from(m & 0x0f), false),
            0x90..=0x9f => (0, 0, u64::from(m & 0x0f), false),
            0xa0..=0xbf => (0, usize::from(m & 0x1f), 0, true),
            0xc1 => return Err(format!("reserved MessagePack marker 0xc1 at offset {}", at - 1)),
            0xc4..=0xc6 => (1usize << (m - 0xc4), 0, 0, false),
            0xc7..=0xc9 => (1usize << (m - 0xc7), 1, 0, false),
            0xca => (0, 4, 0, false),
            0xcb => (0, 8, 0, false),
            0xcc..=0xcf => (0, 1usize << (m - 0xcc), 0, false),
            0xd0..=0xd3 => (0, 1usize << (m - 0xd0), 0, false),
            0xd4..=0xd8 => (0, (1usize << (m - 0xd4)) + 1, 0, false),
            0xd9..=0xdb => (1usize << (m - 0xd9), 0, 0, true),
            0xdc | 0xde => (2, 0, 0, false),
            0xdd | 0xdf => (4, 0, 0, false),
        };
        need(at, n)?;
        let len = be(at, n);
        at += n;
        let (payload, children) = match m {
            0xdc | 0xdd => (payload, len),
            0xde | 0xdf => (payload, 2 * len),
            _ => (payload + usize::try_from(len).map_err(|_| "length too large".to_string())?, children),
        };
        need(at, payload)?;
        if utf8 {
            check_utf8(&b[at..at + payload], at)?;
        }
        at += payload;
        // Every value owed takes at least a byte: more than the bytes left
        // is truncated (and bounds `owed`).
        owed += children;
        if owed > (b.len() - at) as u64 {
            return Err(format!(
                "truncated MessagePack: {owed} value(s) owed, {} byte(s) left",
                b.len() - at
            ));
        }
    }
    if at != b.len() {
        return Err(format!("{} byte(s) after the MessagePack value", b.len() - at));
    }
    Ok(())
}

/// A str's payload, at offset `at`, is UTF-8 (ASCII checked first: the
/// common case, word by word).
fn check_utf8(text: &[u8], at: usize) -> std::result::Result<(), String> {
    if text.is_ascii() || std::str::from_utf8(text).is_ok() {
        Ok(())
    } else {
        Err(format!("MessagePack str at offset {at} is not UTF-8"))
    }
}
