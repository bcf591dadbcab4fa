//! What a kv write carries from the calling thread to the writer thread:
//! the key inline, the value as given behind an `Arc` (shared with the
//! overlay), encoded on the writer thread, as `Cache` does with user types:
//! encoding is the largest cost a call would otherwise pay.

use std::sync::Arc;
use std::time::Instant;

use crate::channel::msg::DynEvent;
use crate::ident::Ident;

/// The hasher of the kv maps (overlay, near cache, writer): keys are hashed
/// on every call, and SipHash showed in profiles of `set`.
pub(crate) type KeyHash = foldhash::fast::RandomState;

/// A value to cache, encoded on the writer thread (and, for a `get` that
/// finds it queued, on the reading thread) as `Cache` encodes a user event.
pub(crate) type Value = Arc<dyn DynEvent + Sync>;

/// A change to one key, named by its full key (`{prefix}:{namespace}:{key}`,
/// an [`Ident`]: up to 46 bytes inline, so copying it never allocates).
/// `expires: None` is "never expires".
#[derive(Clone)]
pub(crate) enum Change {
    /// `SET key value [PX ms]`.
    Set { item: Ident, value: Value, expires: Option<Instant> },
    /// `DEL key`.
    Del { key: Ident },
    /// `PEXPIRE key ms`, or `PERSIST key` for `None`.
    Expire { key: Ident, expires: Option<Instant> },
}

impl Change {
    pub(crate) fn item(&self) -> &Ident {
        match self {
            Change::Set { item, .. } | Change::Del { key: item } | Change::Expire { key: item, .. } => item,
        }
    }

    /// This op, followed by `later` on the same key, as one op.
    pub(crate) fn then(self, later: Change) -> Change {
        match (self, later) {
            // A new TTL for a value not written yet: write it with that TTL.
            (Change::Set { item, value, .. }, Change::Expire { expires, .. }) => {
                Change::Set { item, value, expires }
            }
            // Nothing to expire: the key is gone.
            (Change::Del { key }, Change::Expire { .. }) => Change::Del { key },
            (_, later) => later,
        }
    }
}

/// A message to the writer thread. Shutdown travels through the same
/// channel, so it arrives after every write before it.
pub(crate) enum KvMsg {
    Write { seq: u64, op: Change },
    Shutdown { deadline: Instant },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalescing() {
        let k = Ident::new_unchecked("k");
        let v: Value = Arc::new(7u32);
        let t = Some(Instant::now());
        let set = || Change::Set { item: k.clone(), value: v.clone(), expires: None };
        let exp = || Change::Expire { key: k.clone(), expires: t };
        let del = || Change::Del { key: k.clone() };
        assert!(matches!(set().then(exp()), Change::Set { expires, .. } if expires == t));
        assert!(matches!(del().then(exp()), Change::Del { .. }));
        assert!(matches!(exp().then(set()), Change::Set { expires: None, .. }));
        assert!(matches!(set().then(del()), Change::Del { .. }));
        assert!(matches!(del().then(set()), Change::Set { .. }));
    }
}
