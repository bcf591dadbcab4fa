//! The kv key layout: `{key_prefix}:{namespace}:{key}`. The prefix and the
//! namespace are [`crate::Ident`]s (no `:`), so `SCAN MATCH
//! {prefix}:{namespace}:*` finds one namespace and nothing else. A key is
//! one or more ids joined by `:` (`AAPL:quote`); no `{`/`}`, so no key
//! chooses its own cluster slot.

use crate::ident::{self, IdError};

/// Checks a key: at most [`ident::MAX_LEN`] bytes, one or more ids joined
/// by `:`. The error names the whole key and the offset in it.
pub(crate) fn validate_key(key: &str) -> Result<(), IdError> {
    if key.is_empty() {
        return Err(IdError::Empty);
    }
    if key.len() > ident::MAX_LEN {
        return Err(IdError::TooLong { len: key.len(), max: ident::MAX_LEN });
    }
    let mut at = 0;
    for part in key.split(':') {
        match ident::validate(part) {
            Ok(()) => {}
            Err(IdError::Empty) => {
                // An empty part: `:` at the start or end, or `::`.
                let at = if at == 0 { 0 } else { at - 1 };
                return Err(IdError::BadChar { id: clip(key), ch: ':', at });
            }
            Err(IdError::BadChar { ch, at: inner, .. }) => {
                return Err(IdError::BadChar { id: clip(key), ch, at: at + inner });
            }
            Err(e) => return Err(e),
        }
        at += part.len() + 1;
    }
    Ok(())
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Builds keys; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct KeySpace {
    /// `"{key_prefix}:"`, or empty: also what server-assisted invalidation
    /// tracks.
    pub(crate) head: Box<[u8]>,
}

impl KeySpace {
    pub(crate) fn new(key_prefix: &str) -> Self {
        let head = if key_prefix.is_empty() { Vec::new() } else { format!("{key_prefix}:").into_bytes() };
        KeySpace { head: head.into_boxed_slice() }
    }

    /// Appends `{prefix}:{namespace}:{key}` to `out` (both already checked).
    #[inline]
    pub(crate) fn write(&self, out: &mut Vec<u8>, namespace: &str, key: &str) {
        out.extend_from_slice(&self.head);
        out.extend_from_slice(namespace.as_bytes());
        out.push(b':');
        out.extend_from_slice(key.as_bytes());
    }

    /// `{prefix}:{namespace}:`: every key of the namespace starts so.
    pub(crate) fn namespace_head(&self, namespace: &str) -> Vec<u8> {
        let mut v = self.head.to_vec();
        v.extend_from_slice(namespace.as_bytes());
        v.push(b':');
        v
    }

    /// A `SCAN MATCH` pattern for every key of `namespace` (globs escaped).
    pub(crate) fn namespace_pattern(&self, namespace: &str) -> Vec<u8> {
        let mut p = crate::store::keys::escape_glob(&self.namespace_head(namespace));
        p.push(b'*');
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_ids_joined_by_colons() {
        for ok in ["AAPL:quote", "P-123:value", "u-1", "a:b:c", "ordre-é"] {
            assert_eq!(validate_key(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_key(""), Err(IdError::Empty));
        for (bad, at) in [(":a", 0), ("a:", 1), ("a::b", 1), ("a b", 1), ("x:a{b", 3), ("k:\n", 2)] {
            match validate_key(bad) {
                Err(IdError::BadChar { at: got, id, .. }) => {
                    assert_eq!((got, id.as_str()), (at, bad), "{bad:?}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(matches!(validate_key(&"k".repeat(257)), Err(IdError::TooLong { .. })));
    }

    #[test]
    fn layout_and_patterns() {
        let ks = KeySpace::new("cache");
        let mut out = Vec::new();
        ks.write(&mut out, "market_data", "AAPL:quote");
        assert_eq!(out, b"cache:market_data:AAPL:quote");
        assert_eq!(ks.namespace_pattern("market_data"), b"cache:market_data:*");
        assert_eq!(KeySpace::new("a*b").namespace_pattern("n?"), b"a\\*b:n\\?:*");
        let none = KeySpace::new("");
        out.clear();
        none.write(&mut out, "s", "k");
        assert_eq!(out, b"s:k");
        assert_eq!(&*none.head, b"");
    }
}
