//! How values are written to Redis: [`Encoding`], and MessagePack (default)
//! and JSON encoding of values, on the flusher thread and in recovery.

use std::fmt;

use serde::de::{Deserialize, DeserializeOwned};
use serde::Serialize;

/// How values are encoded in Redis.
///
/// Parses from `"msgpack"` (or `"messagepack"`) and `"json"`, ignoring case:
///
/// ```
/// use tradecache::Encoding;
///
/// assert_eq!("json".parse::<Encoding>().unwrap(), Encoding::Json);
/// assert_eq!("MsgPack".parse::<Encoding>().unwrap(), Encoding::MsgPack);
/// assert!("yaml".parse::<Encoding>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// MessagePack maps with field names (the default): compact, and readable
    /// by any msgpack implementation.
    #[default]
    MsgPack,
    /// JSON, for debugging.
    Json,
}

impl Encoding {
    /// The name used in `CACHE_ENCODING`: `"msgpack"` or `"json"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::MsgPack => "msgpack",
            Encoding::Json => "json",
        }
    }

    /// `msgpack` (or `messagepack`) or `json`, ignoring case and surrounding
    /// whitespace; `None` for anything else.
    pub(crate) fn from_name(s: &str) -> Option<Encoding> {
        match s.trim().to_ascii_lowercase().as_str() {
            "msgpack" | "messagepack" => Some(Encoding::MsgPack),
            "json" => Some(Encoding::Json),
            _ => None,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a value could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EncodeError(pub(crate) String);

/// Appends the encoding of `value` to `out`.
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    encoding: Encoding,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    match encoding {
        Encoding::MsgPack => {
            let mut ser = rmp_serde::Serializer::new(out).with_struct_map();
            value.serialize(&mut ser).map_err(|e| EncodeError(e.to_string()))
        }
        Encoding::Json => serde_json::to_writer(out, value).map_err(|e| EncodeError(e.to_string())),
    }
}

/// Decodes a stored value, whichever encoding wrote it, or says why not.
///
/// In MessagePack a first byte below `0x80` is a whole value (a small
/// integer), so a longer value that starts so is JSON (an object, array,
/// string, number, `true`, `false` or `null`), and a value starting at
/// `0x80` or above is MessagePack. A single byte below `0x80` is both (`5`
/// is 5 in JSON and 53 in MessagePack): `preferred`, the configured
/// encoding, decides, and the other is tried if it fails.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], preferred: Encoding) -> Result<T, String> {
    let json = |b: &[u8]| serde_json::from_slice(b).map_err(|e| format!("json: {e}"));
    let msgpack = |b: &[u8]| {
        // Borrowing strings from the slice (no copy per string: the load
        // decodes millions of them).
        let mut de = rmp_serde::Deserializer::from_read_ref(b);
        let v = T::deserialize(&mut de).map_err(|e| format!("msgpack: {e}"))?;
        // Trailing bytes mean the stored value is not what was written:
        // nothing may follow the value.
        match serde::de::IgnoredAny::deserialize(&mut de) {
            Err(rmp_serde::decode::Error::InvalidMarkerRead(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                Ok(v)
            }
            _ => {
                // Rare: count them, reading again from a shrinking slice.
                let mut again = rmp_serde::Deserializer::new(b);
                let n = T::deserialize(&mut again).map_or(0, |_| again.get_ref().len());
                Err(format!("msgpack: {n} unexpected byte(s) after the value"))
            }
        }
    };
    match bytes {
        [] => Err("empty value".into()),
        [first, ..] if *first >= 0x80 => msgpack(bytes),
        [_] => match preferred {
            Encoding::Json => json(bytes).or_else(|e| msgpack(bytes).map_err(|_| e)),
            Encoding::MsgPack => msgpack(bytes).or_else(|e| json(bytes).map_err(|_| e)),
        },
        [first, rest @ ..] => match preferred {
            Encoding::Json => json(bytes),
            // With MessagePack configured, say why the value was read as JSON.
            Encoding::MsgPack => serde_json::from_slice(bytes).map_err(|e| {
                format!(
                    "neither MessagePack (its first byte {first:#04x} is a whole value, and {} byte(s) follow) nor JSON: {e}",
                    rest.len()
                )
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_tells_the_encodings_apart() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct S {
            a: u64,
        }
        let s = S { a: 7 };
        for enc in [Encoding::MsgPack, Encoding::Json] {
            let mut b = Vec::new();
            encode(&s, enc, &mut b).unwrap();
            for preferred in [Encoding::MsgPack, Encoding::Json] {
                assert_eq!(decode::<S>(&b, preferred).unwrap(), s, "{enc:?} read as {preferred:?}");
            }
        }
        // Bare numbers (a newtype user type under JSON) decode as the
        // number, not as the byte of its first digit (`0` as 48, `1234` as
        // 49): a case tests/it/fuzz.rs found.
        for n in [0u64, 5, 48, 1234, u64::MAX] {
            let text = n.to_string();
            assert_eq!(decode::<u64>(text.as_bytes(), Encoding::Json).unwrap(), n);
            if text.len() > 1 {
                assert_eq!(decode::<u64>(text.as_bytes(), Encoding::MsgPack).unwrap(), n);
            }
            let mut b = Vec::new();
            encode(&n, Encoding::MsgPack, &mut b).unwrap();
            assert_eq!(decode::<u64>(&b, Encoding::MsgPack).unwrap(), n);
        }
        assert!(decode::<bool>(b"true", Encoding::MsgPack).unwrap());
        assert_eq!(decode::<u64>(b"5", Encoding::MsgPack).unwrap(), 53, "one byte: the configured encoding");
        assert!(decode::<u64>(b"", Encoding::Json).is_err());
        assert!(decode::<S>(b"{\"a\":", Encoding::MsgPack).is_err());
    }

    #[test]
    fn a_value_neither_encoding_reads_says_why_under_msgpack() {
        let e = decode::<u64>(b"garbage", Encoding::MsgPack).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "neither MessagePack (its first byte 0x67 is a whole value, and 6 byte(s) follow) nor JSON: "
            ),
            "{e}"
        );
        let e = decode::<u64>(b"garbage", Encoding::Json).unwrap_err().to_string();
        assert!(e.starts_with("json: "), "{e}");
    }

    #[test]
    fn trailing_bytes_after_a_msgpack_value_are_an_error() {
        let mut b = Vec::new();
        encode(&vec![1u8, 2, 3], Encoding::MsgPack, &mut b).unwrap();
        assert_eq!(decode::<Vec<u8>>(&b, Encoding::MsgPack).unwrap(), [1, 2, 3]);
        b.extend_from_slice(&[0xc0, 0x01]);
        let e = decode::<Vec<u8>>(&b, Encoding::MsgPack).unwrap_err();
        assert!(e.to_string().contains("2 unexpected byte(s)"), "{e}");
        // JSON already refuses trailing characters.
        assert!(decode::<Vec<u8>>(b"[1,2] x", Encoding::Json).is_err());
    }

    #[test]
    fn names() {
        for e in [Encoding::MsgPack, Encoding::Json] {
            assert_eq!(Encoding::from_name(e.as_str()), Some(e));
            assert_eq!(e.to_string(), e.as_str());
        }
        assert_eq!(Encoding::from_name(" MessagePack "), Some(Encoding::MsgPack));
        assert_eq!(Encoding::from_name("JSON"), Some(Encoding::Json));
        assert_eq!(Encoding::from_name("yaml"), None);
    }
}
