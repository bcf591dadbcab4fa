//! MessagePack (default) and JSON encoding of values, on the flusher thread
//! and in recovery.

use std::cell::Cell;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::Encoding;

/// Why a value could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EncodeError(pub(crate) String);

/// Why a stored value could not be decoded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub(crate) String);

thread_local! {
    static ISO8601: Cell<bool> = const { Cell::new(false) };
}

/// Whether timestamps should be written as ISO 8601 strings on this thread
/// (set by the flusher when the encoding is JSON and
/// `timestamps_as_iso8601` is on).
pub(crate) fn timestamps_as_iso8601() -> bool {
    ISO8601.with(Cell::get)
}

/// Sets the ISO 8601 timestamp mode for encodes on the calling thread.
pub(crate) fn set_timestamps_as_iso8601(on: bool) {
    ISO8601.with(|c| c.set(on));
}

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

/// Decodes a stored value. JSON is recognised by its first byte (`{`), so a
/// reader copes with values written under either encoding.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    match bytes.first() {
        None => Err(DecodeError("empty value".into())),
        Some(b'{') | Some(b'[') | Some(b'"') => {
            serde_json::from_slice(bytes).map_err(|e| DecodeError(format!("json: {e}")))
        }
        Some(_) => rmp_serde::from_slice(bytes).map_err(|e| DecodeError(format!("msgpack: {e}"))),
    }
}
