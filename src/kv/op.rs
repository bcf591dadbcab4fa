//! What a kv write carries from the calling thread to the writer thread:
//! the key inline, the value as given behind an `Arc` (shared with the
//! overlay), encoded on the writer thread, as `Cache` does with user types:
//! encoding is the largest cost a call would otherwise pay.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use crate::ident::Ident;
use crate::store::codec::{self, EncodeError};
use crate::Encoding;

/// A full key (`{prefix}:{namespace}:{key}`): an [`Ident`], so a key of up
/// to 46 bytes is stored inline and copying it never allocates.
#[derive(Clone)]
pub(crate) struct Item(Ident);

impl Item {
    /// A key built by the calling thread from checked parts (UTF-8: joined
    /// from `&str`s).
    pub(crate) fn from_bytes(bytes: &[u8]) -> Item {
        Item(Ident::new_unchecked(&String::from_utf8_lossy(bytes)))
    }

    #[inline]
    pub(crate) fn key(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

// As a map key, an item is hashed and compared by its key bytes, and looked
// up with a `&[u8]`: the maps of the overlay and the writer share the item
// instead of copying the key.
impl Hash for Item {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Exactly what `[u8]` does, as `Borrow<[u8]>` requires.
        self.key().hash(state);
    }
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Item {}

impl Borrow<[u8]> for Item {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

/// The hasher of the kv maps (overlay, near cache, writer): keys are hashed
/// on every call, and SipHash showed in profiles of `set`.
pub(crate) type KeyHash = foldhash::fast::RandomState;

/// A value to cache, encoded on the writer thread (and, for a `get` that
/// finds it queued, on the reading thread).
pub(crate) trait DynValue: Send + Sync {
    fn encode(&self, encoding: Encoding, out: &mut Vec<u8>) -> Result<(), EncodeError>;
}

impl<T: serde::Serialize + Send + Sync> DynValue for T {
    fn encode(&self, encoding: Encoding, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        codec::encode(self, encoding, out)
    }
}

pub(crate) type Value = Arc<dyn DynValue>;

/// A change to one key. `expires: None` is "never expires".
#[derive(Clone)]
pub(crate) enum Op {
    /// `SET key value [PX ms]`.
    Set { item: Item, value: Value, expires: Option<Instant> },
    /// `DEL key`.
    Del { key: Item },
    /// `PEXPIRE key ms`, or `PERSIST key` for `None`.
    Expire { key: Item, expires: Option<Instant> },
}

impl Op {
    pub(crate) fn item(&self) -> &Item {
        match self {
            Op::Set { item, .. } | Op::Del { key: item } | Op::Expire { key: item, .. } => item,
        }
    }

    /// This op, followed by `later` on the same key, as one op.
    pub(crate) fn then(self, later: Op) -> Op {
        match (self, later) {
            // A new TTL for a value not written yet: write it with that TTL.
            (Op::Set { item, value, .. }, Op::Expire { expires, .. }) => Op::Set { item, value, expires },
            // Nothing to expire: the key is gone.
            (Op::Del { key }, Op::Expire { .. }) => Op::Del { key },
            (_, later) => later,
        }
    }
}

/// A message to the writer thread. Shutdown travels through the same
/// channel, so it arrives after every write before it.
pub(crate) enum KvMsg {
    Write { seq: u64, op: Op },
    Shutdown { deadline: Instant },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalescing() {
        let k = Item::from_bytes(b"k");
        let v: Value = Arc::new(7u32);
        let t = Some(Instant::now());
        let set = || Op::Set { item: k.clone(), value: v.clone(), expires: None };
        let exp = || Op::Expire { key: k.clone(), expires: t };
        let del = || Op::Del { key: k.clone() };
        assert!(matches!(set().then(exp()), Op::Set { expires, .. } if expires == t));
        assert!(matches!(del().then(exp()), Op::Del { .. }));
        assert!(matches!(exp().then(set()), Op::Set { expires: None, .. }));
        assert!(matches!(set().then(del()), Op::Del { .. }));
        assert!(matches!(del().then(set()), Op::Set { .. }));
    }
}
