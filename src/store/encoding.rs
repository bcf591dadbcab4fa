//! [`Encoding`]: how values are written to Redis. A leaf module (it imports
//! nothing from the crate), so that the codec can name it without depending
//! on the configuration; parsing it from text, which reports a
//! [`crate::ConfigError`], lives with the configuration (src/config/env.rs).

use std::fmt;

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
        let t = s.trim();
        if t.eq_ignore_ascii_case("msgpack") || t.eq_ignore_ascii_case("messagepack") {
            Some(Encoding::MsgPack)
        } else if t.eq_ignore_ascii_case("json") {
            Some(Encoding::Json)
        } else {
            None
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Encoding;

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
