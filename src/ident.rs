//! Validated identifiers that are cheap to move across the channel.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// Identifiers up to this many bytes are stored inline, without a heap
/// allocation, so that moving them through the channel costs a `memcpy`.
pub(crate) const INLINE_CAPACITY: usize = 46;

/// The longest identifier accepted, in bytes.
pub(crate) const MAX_LEN: usize = 256;

/// A validated identifier: an entity id such as a client order id, a
/// position id or an instrument id.
///
/// An identifier is at most [`Ident::MAX_LEN`] bytes, is not empty and
/// contains no `:`, `{`, `}`, whitespace or control character, since it
/// becomes part of a Redis key (`trader-T1:orders:{id}`). Identifiers of up
/// to 46 bytes are stored inline: cloning one never allocates.
///
/// ```
/// use tradecache::Ident;
///
/// let id = Ident::new("O-20240101-001").unwrap();
/// assert_eq!(id.as_str(), "O-20240101-001");
/// assert!(Ident::new("bad:id").is_err());
/// assert!(Ident::new("").is_err());
/// // The standard conversions check the same way.
/// let parsed: Ident = "O-20240101-001".parse().unwrap();
/// assert_eq!(parsed, id);
/// assert!(Ident::try_from("bad:id").is_err());
/// assert!(Ident::try_from(String::from("O-2")).is_ok());
/// ```
#[derive(Clone)]
pub struct Ident(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, buf: [u8; INLINE_CAPACITY] },
    Heap(Box<str>),
}

/// Why a string is not a valid [`Ident`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The identifier is empty.
    #[error("id is empty")]
    Empty,
    /// The identifier is longer than [`Ident::MAX_LEN`] bytes.
    #[error("id is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// The identifier contains a character that cannot be part of a key.
    #[error("id {id:?} contains {ch:?} at byte {at}; ids may not contain ':', '{{', '}}', whitespace or control characters")]
    BadChar {
        /// The identifier (truncated to 64 characters).
        id: String,
        /// The offending character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
}

/// Checks that `s` is a valid identifier (see [`Ident`]): the first problem found.
pub(crate) fn validate(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_LEN {
        return Err(IdError::TooLong { len: s.len(), max: MAX_LEN });
    }
    // Fast path: printable ASCII that is not a key separator.
    if s.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b':' | b'{' | b'}')) {
        return Ok(());
    }
    let bad = |ch: char| matches!(ch, ':' | '{' | '}') || ch.is_whitespace() || ch.is_control();
    match s.char_indices().find(|&(_, ch)| bad(ch)) {
        Some((at, ch)) => Err(IdError::BadChar { id: s.chars().take(64).collect(), ch, at }),
        None => Ok(()),
    }
}

impl Ident {
    /// The longest identifier accepted, in bytes.
    pub const MAX_LEN: usize = MAX_LEN;

    /// Validates `s` and makes an identifier of it.
    ///
    /// # Errors
    ///
    /// [`IdError`] when `s` is empty, too long or contains a forbidden
    /// character.
    pub fn new(s: &str) -> Result<Self, IdError> {
        validate(s)?;
        Ok(Self::new_unchecked(s))
    }

    pub(crate) fn new_unchecked(s: &str) -> Self {
        if s.len() <= INLINE_CAPACITY {
            let mut buf = [0u8; INLINE_CAPACITY];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            Ident(Repr::Inline { len: s.len() as u8, buf })
        } else {
            Ident(Repr::Heap(s.into()))
        }
    }

    /// The identifier as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Only ever built from a `&str` cut at its own length.
            Repr::Inline { len, buf } => std::str::from_utf8(&buf[..*len as usize]).unwrap_or(""),
            Repr::Heap(s) => s,
        }
    }

    /// The identifier's bytes (always valid UTF-8), without re-checking.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, buf } => &buf[..*len as usize],
            Repr::Heap(s) => s.as_bytes(),
        }
    }

    /// Whether the identifier is stored inline (cloning it does not allocate).
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline { .. })
    }
}

impl Deref for Ident {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Ident {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Ident {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

// Comparisons and hashing work on the bytes: `as_str` re-checks UTF-8
// (the crate forbids `unsafe`), which showed up in recovery profiles.
impl PartialEq for Ident {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for Ident {}

impl PartialEq<str> for Ident {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Ident {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialOrd for Ident {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ident {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Hash for Ident {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Exactly what `str`'s `Hash` does, as `Borrow<str>` requires.
        state.write(self.as_bytes());
        state.write_u8(0xff);
    }
}

/// `Debug` as the text, `Display` writing it with `$display` (`pad`
/// honours width flags), stored as a string and read through `parse`
/// (`expecting` names it in decode errors).
macro_rules! as_text {
    ($($t:ty: $expecting:literal, $parse:expr, $display:ident;)*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.$display(self.as_str())
            }
        }

        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str($crate::ident::StrVisitor($expecting, $parse))
            }
        }
    )*};
}

pub(crate) use as_text;

as_text! {
    Ident: "an identifier string", Ident::new, write_str;
}

impl TryFrom<&str> for Ident {
    type Error = IdError;
    fn try_from(s: &str) -> Result<Self, IdError> {
        Ident::new(s)
    }
}

impl TryFrom<String> for Ident {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Ident::new(&s)
    }
}

impl std::str::FromStr for Ident {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Ident::new(s)
    }
}

/// Deserializes a string without allocating, through a parser.
pub(crate) struct StrVisitor<T, E: fmt::Display>(
    pub(crate) &'static str,
    pub(crate) fn(&str) -> Result<T, E>,
);

impl<T, E: fmt::Display> serde::de::Visitor<'_> for StrVisitor<T, E> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<Er: serde::de::Error>(self, v: &str) -> Result<T, Er> {
        (self.1)(v).map_err(Er::custom)
    }
    fn visit_bytes<Er: serde::de::Error>(self, v: &[u8]) -> Result<T, Er> {
        let s = std::str::from_utf8(v).map_err(Er::custom)?;
        (self.1)(s).map_err(Er::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_heap() {
        let short = Ident::new("BTCUSDT-PERP.BINANCE-001").unwrap();
        assert!(short.is_inline());
        let long_s = "X".repeat(INLINE_CAPACITY + 1);
        let long = Ident::new(&long_s).unwrap();
        assert!(!long.is_inline());
        assert_eq!(long.as_str(), long_s);
        assert_eq!(short, "BTCUSDT-PERP.BINANCE-001");
        // `Borrow<str>` needs hashes equal to `str`'s.
        let mut set = std::collections::HashSet::new();
        set.insert(short.clone());
        assert!(set.contains("BTCUSDT-PERP.BINANCE-001"));
    }

    #[test]
    fn rejects_bad_ids() {
        assert_eq!(Ident::new(""), Err(IdError::Empty));
        for bad in ["a:b", "a{b", "a}b", "a b", "a\tb", "a\nb", "a\u{7f}", "a\u{2003}b", "a\u{85}"] {
            assert!(matches!(Ident::new(bad), Err(IdError::BadChar { .. })), "{bad:?}");
        }
        assert!(matches!(Ident::new(&"x".repeat(MAX_LEN + 1)), Err(IdError::TooLong { .. })));
        assert!(Ident::new("ordre-é").is_ok());
    }

    #[test]
    fn serde_round_trip() {
        let id = Ident::new("P-1").unwrap();
        let bytes = rmp_serde::to_vec(&id).unwrap();
        let back: Ident = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<Ident>("\"a:b\"").is_err());
    }
}
