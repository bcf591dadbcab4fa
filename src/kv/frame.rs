//! The stored form of a kv value: one header byte, then the encoded value,
//! LZ4-compressed when it is larger than the threshold.
//!
//! ```text
//! 0b1010_0JZ0 | 0b1010_0JZ1
//!        │ └── Z = 1: body is LZ4 (4-byte little-endian original length, then an LZ4 block)
//!        └──── J = 1: JSON, 0: MessagePack
//! ```
//!
//! The header lets plain and compressed values coexist, says how to decode,
//! and refuses bytes that are not a kv value (rather than misread a value
//! another tool wrote). Bits 2 and 3 must be zero: room for a later version.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::Encoding;
use crate::store::codec;

const MAGIC: u8 = 0xA0;
const MASK: u8 = 0xFC;
const LZ4: u8 = 0x01;
const JSON: u8 = 0x02;

/// LZ4 expands data at most about 255 times, so an original length claiming
/// more per compressed byte is corrupt: checked before allocating for it.
const MAX_RATIO: usize = 256;

/// The header byte of a value in `encoding`.
pub(crate) fn header(encoding: Encoding, compressed: bool) -> u8 {
    let json = if encoding == Encoding::Json { JSON } else { 0 };
    MAGIC | json | if compressed { LZ4 } else { 0 }
}

/// Appends the stored form of `raw` (an encoded value) to `out`, compressed
/// when longer than `threshold` and smaller so. Returns whether it was.
pub(crate) fn frame(raw: &[u8], encoding: Encoding, threshold: usize, out: &mut Vec<u8>) -> bool {
    if raw.len() > threshold && raw.len() <= u32::MAX as usize {
        let start = out.len();
        out.push(header(encoding, true));
        out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        let body = out.len();
        out.resize(body + lz4_flex::block::get_maximum_output_size(raw.len()), 0);
        match lz4_flex::block::compress_into(raw, &mut out[body..]) {
            Ok(n) if 5 + n < 1 + raw.len() => {
                out.truncate(body + n);
                return true;
            }
            _ => out.truncate(start),
        }
    }
    out.push(header(encoding, false));
    out.extend_from_slice(raw);
    false
}

/// The encoded value inside a stored one, decompressed, and its encoding.
/// `max_len` bounds the original length of a compressed value.
pub(crate) fn unframe(stored: &[u8], max_len: usize) -> Result<(Encoding, Cow<'_, [u8]>), String> {
    let Some((&h, body)) = stored.split_first() else {
        return Err("empty value (no header byte)".into());
    };
    if h & MASK != MAGIC {
        return Err(format!("not a kv value: header byte {h:#04x} (expected 0xa0 to 0xa3)"));
    }
    let encoding = if h & JSON != 0 { Encoding::Json } else { Encoding::MsgPack };
    if h & LZ4 == 0 {
        return Ok((encoding, Cow::Borrowed(body)));
    }
    let Some((len, block)) = body.split_first_chunk::<4>() else {
        return Err(format!("compressed value of {} byte(s) has no length", body.len()));
    };
    let len = u32::from_le_bytes(*len) as usize;
    if len > max_len || len > block.len().saturating_mul(MAX_RATIO).saturating_add(64) {
        return Err(format!(
            "compressed value claims {len} bytes from {} compressed (limit {max_len})",
            block.len()
        ));
    }
    let mut out = vec![0u8; len];
    match lz4_flex::block::decompress_into(block, &mut out) {
        Ok(n) if n == len => Ok((encoding, Cow::Owned(out))),
        Ok(n) => Err(format!("compressed value holds {n} bytes, not the {len} announced")),
        Err(e) => Err(format!("corrupt LZ4 block: {e}")),
    }
}

/// Encodes `value` as [`crate::kv::Kv::set`] stores it: the header byte,
/// then the value in `encoding`, LZ4-compressed when the encoding is longer
/// than `compress_threshold` bytes and compression makes it smaller. For
/// tools that write values a [`crate::kv::Kv`] reads.
///
/// ```
/// use tradecache::Encoding;
/// use tradecache::kv;
///
/// let stored = kv::encode(&vec![7u32; 1000], Encoding::MsgPack, 1024).unwrap();
/// assert_eq!(stored[0], 0xA0); // MessagePack, plain: 1003 bytes are below the threshold
/// let big = kv::encode(&vec![7u32; 2000], Encoding::MsgPack, 1024).unwrap();
/// assert_eq!(big[0], 0xA1); // compressed
/// assert!(big.len() < 100);
/// assert_eq!(kv::decode::<Vec<u32>>(&big).unwrap(), vec![7u32; 2000]);
/// ```
///
/// # Errors
///
/// [`crate::Error::Codec`] when the value cannot be encoded.
pub fn encode<T: Serialize + ?Sized>(
    value: &T,
    encoding: Encoding,
    compress_threshold: usize,
) -> crate::Result<Vec<u8>> {
    let mut raw = Vec::new();
    codec::encode(value, encoding, &mut raw)
        .map_err(|e| crate::Error::Codec { key: String::new(), detail: format!("cannot encode: {e}") })?;
    let mut out = Vec::with_capacity(raw.len() + 1);
    frame(&raw, encoding, compress_threshold, &mut out);
    Ok(out)
}

/// Decodes a value as stored by [`crate::kv::Kv`] (see [`encode`]), for
/// tools that read Redis directly. Refuses anything else with an error,
/// never a panic: a missing or unknown header byte, a corrupt LZ4 block, an
/// original length over 512 MiB or beyond what LZ4 can produce from the
/// compressed bytes, bytes that do not decode as `T`.
///
/// ```
/// use tradecache::kv;
///
/// assert!(kv::decode::<u32>(b"").is_err());
/// assert!(kv::decode::<u32>(b"\x07").is_err()); // no kv header
/// assert_eq!(kv::decode::<u32>(b"\xA0\x07").unwrap(), 7); // MessagePack 7
/// assert_eq!(kv::decode::<String>(b"\xA2\"hi\"").unwrap(), "hi"); // JSON
/// ```
///
/// # Errors
///
/// [`crate::Error::Codec`] saying what is wrong.
pub fn decode<T: DeserializeOwned>(stored: &[u8]) -> crate::Result<T> {
    const REDIS_MAX: usize = 512 * 1024 * 1024;
    let corrupt = |detail: String| crate::Error::Codec { key: String::new(), detail };
    let (encoding, body) = unframe(stored, REDIS_MAX).map_err(corrupt)?;
    codec::decode(&body, encoding).map_err(corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_at_the_threshold() {
        for enc in [Encoding::MsgPack, Encoding::Json] {
            let raw = vec![b'a'; 1024];
            let mut out = Vec::new();
            assert!(!frame(&raw, enc, 1024, &mut out), "at the threshold: plain");
            assert_eq!(out.len(), 1025);
            out.clear();
            let raw = vec![b'a'; 1025];
            assert!(frame(&raw, enc, 1024, &mut out), "one above: compressed");
            assert_eq!(out[0], header(enc, true));
            let (e, body) = unframe(&out, 4096).unwrap();
            assert_eq!((e, &body[..]), (enc, &raw[..]));
            // Above the limit the reader refuses it.
            assert!(unframe(&out, 1024).is_err());
        }
    }

    #[test]
    fn incompressible_values_stay_plain() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let raw: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut out = Vec::new();
        assert!(!frame(&raw, Encoding::MsgPack, 0, &mut out));
        assert_eq!(&out[1..], &raw[..]);
    }

    #[test]
    fn corrupt_headers_and_blocks_are_errors() {
        for bad in [
            &b""[..],
            b"\x00",
            b"\xA4abc",
            b"\xA8",
            b"\xA1",
            b"\xA1\x05\x00\x00",
            b"\xA1\xff\xff\xff\xff\x00",
            b"\xA1\x10\x00\x00\x00\xff\xff",
        ] {
            assert!(unframe(bad, 1 << 20).is_err(), "{bad:?}");
        }
        // A huge claimed length is refused before anything is allocated.
        let e = unframe(b"\xA1\x00\x00\x00\x10\x1f", usize::MAX).unwrap_err();
        assert!(e.contains("claims"), "{e}");
    }
}
