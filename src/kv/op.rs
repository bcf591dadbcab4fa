//! What a kv write carries from the calling thread to the writer thread.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

/// A key, or a key and its encoded value, in one buffer: the calling
/// thread builds it once, and the message, the read-your-writes overlay and
/// the writer share it. Buffers go back to the calling threads through a
/// [`Recycler`] once written, so a steady stream of writes does not
/// allocate (nor free on another thread than the one that allocated, which
/// is what makes allocation expensive in the tail: DESIGN.md, "Hot-path
/// budget").
#[derive(Clone)]
pub(crate) struct Item {
    buf: Arc<Vec<u8>>,
    klen: u32,
}

impl Item {
    /// `key` followed by `value`, copied from `bytes`.
    #[cfg(test)]
    pub(crate) fn new(bytes: &[u8], klen: usize) -> Item {
        Item { buf: Arc::new(bytes.to_vec()), klen: klen as u32 }
    }

    /// Builds an item in a recycled buffer: `fill` writes the key and the
    /// value and returns the key's length.
    pub(crate) fn build<E>(
        pool: &Recycler,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<usize, E>,
    ) -> Result<Item, E> {
        let mut buf = pool.take();
        // Unique (see `Recycler::give`), so this does not copy.
        let v = Arc::make_mut(&mut buf);
        v.clear();
        let klen = fill(v)?;
        Ok(Item { buf, klen: klen.min(u32::MAX as usize) as u32 })
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

/// Item buffers on their way back from the writer to the calling threads.
pub(crate) struct Recycler {
    tx: crossbeam_channel::Sender<Arc<Vec<u8>>>,
    rx: crossbeam_channel::Receiver<Arc<Vec<u8>>>,
}

/// Larger buffers are freed, not kept.
const RECYCLE_MAX_BYTES: usize = 16 * 1024;

impl Recycler {
    pub(crate) fn new(capacity: usize) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        Recycler { tx, rx }
    }

    fn take(&self) -> Arc<Vec<u8>> {
        match self.rx.try_recv() {
            Ok(buf) => buf,
            Err(_) => Arc::new(Vec::with_capacity(128)),
        }
    }

    /// Keeps `item`'s buffer for reuse if nothing else refers to it.
    pub(crate) fn give(&self, item: Item) {
        let buf = item.buf;
        if Arc::strong_count(&buf) == 1 && Arc::weak_count(&buf) == 0 && buf.capacity() <= RECYCLE_MAX_BYTES {
            let _ = self.tx.try_send(buf);
        }
    }
}

/// An [`Item`] as a map key: hashed and compared by its key bytes, and
/// looked up with a `&[u8]`, so the maps of the overlay and the writer
/// share the item's allocation instead of copying the key.
#[derive(Clone)]
pub(crate) struct ItemKey(pub(crate) Item);

impl Hash for ItemKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Exactly what `[u8]` does, as `Borrow<[u8]>` requires.
        self.0.key().hash(state);
    }
}

impl PartialEq for ItemKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}

impl Eq for ItemKey {}

impl Borrow<[u8]> for ItemKey {
    fn borrow(&self) -> &[u8] {
        self.0.key()
    }
}

/// The hasher of the kv maps (overlay, near cache, writer): keys are hashed
/// on every call, and SipHash showed in profiles of `set`. Multiply-rotate
/// over 8-byte words with a per-process random seed and a final avalanche.
#[derive(Clone, Copy)]
pub(crate) struct KeyHash(u64);

impl Default for KeyHash {
    fn default() -> Self {
        KeyHash(std::collections::hash_map::RandomState::new().hash_one(0x6b76_6361_6368_6521u64))
    }
}

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.0)
    }
}

pub(crate) struct KeyHasher(u64);

impl KeyHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // murmur3's fmix64.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
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
    pub(crate) fn into_item(self) -> Item {
        match self {
            Op::Set { item, .. } | Op::Del { key: item } | Op::Expire { key: item, .. } => item,
        }
    }

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
    fn buffers_come_back_only_when_unshared() {
        let pool = Recycler::new(4);
        let a = Item::build(&pool, |v| {
            v.extend_from_slice(b"kv");
            Ok::<_, ()>(1)
        })
        .unwrap();
        let p = Arc::as_ptr(&a.buf);
        let shared = a.clone();
        pool.give(a);
        assert!(pool.rx.is_empty(), "still shared: not recycled");
        pool.give(shared);
        let b = Item::build(&pool, |v| {
            assert!(v.is_empty());
            v.extend_from_slice(b"xyz");
            Ok::<_, ()>(2)
        })
        .unwrap();
        assert_eq!(Arc::as_ptr(&b.buf), p, "reused");
        assert_eq!((b.key(), b.value()), (&b"xy"[..], &b"z"[..]));
    }

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
