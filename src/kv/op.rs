//! What a kv write carries from the calling thread to the writer thread.

use std::sync::Arc;
use std::time::Instant;

/// A key, or a key and its encoded value, in one allocation: the calling
/// thread builds it once, and the message, the read-your-writes overlay and
/// the writer share it.
#[derive(Clone)]
pub(crate) struct Item {
    buf: Arc<[u8]>,
    klen: u32,
}

impl Item {
    /// `key` followed by `value` (both already built in `scratch`).
    pub(crate) fn new(scratch: &[u8], klen: usize) -> Item {
        Item { buf: Arc::from(scratch), klen: klen as u32 }
    }

    #[inline]
    pub(crate) fn key(&self) -> &[u8] {
        &self.buf[..self.klen as usize]
    }

    /// The encoded value (without the stored header); empty for a key alone.
    #[inline]
    pub(crate) fn value(&self) -> &[u8] {
        &self.buf[self.klen as usize..]
    }
}

/// A change to one key. `expires: None` is "never expires".
#[derive(Clone)]
pub(crate) enum Op {
    /// `SET key value [PX ms]`.
    Set { item: Item, expires: Option<Instant> },
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
            (Op::Set { item, .. }, Op::Expire { expires, .. }) => Op::Set { item, expires },
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
        let k = Item::new(b"k", 1);
        let v = Item::new(b"kv", 1);
        assert_eq!((v.key(), v.value()), (&b"k"[..], &b"v"[..]));
        let t = Some(Instant::now());
        let set = || Op::Set { item: v.clone(), expires: None };
        let exp = || Op::Expire { key: k.clone(), expires: t };
        let del = || Op::Del { key: k.clone() };
        assert!(matches!(set().then(exp()), Op::Set { expires, .. } if expires == t));
        assert!(matches!(del().then(exp()), Op::Del { .. }));
        assert!(matches!(exp().then(set()), Op::Set { expires: None, .. }));
        assert!(matches!(set().then(del()), Op::Del { .. }));
        assert!(matches!(del().then(set()), Op::Set { .. }));
    }
}
