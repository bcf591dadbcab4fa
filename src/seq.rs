//! [`Seq`], the sequence number of an accepted write (a leaf: it imports
//! nothing from the crate).

/// The sequence number of an accepted write. Writes are acknowledged in
/// sequence order: once `n` is acknowledged, so is every write before it.
///
/// ```
/// # use tradecache::Seq;
/// let s = Seq::new(5);
/// assert_eq!(s.get(), 5);
/// assert!(Seq::new(4) < s);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seq(u64);

impl Seq {
    /// Wraps a raw sequence number.
    pub const fn new(n: u64) -> Self {
        Seq(n)
    }

    /// The raw sequence number (1 for the first accepted write).
    pub const fn get(self) -> u64 {
        self.0
    }
}
