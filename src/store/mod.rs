//! What the cache keeps in Redis, as both sides of the boundary and the
//! reads see it: key layout, encoding, commit marker, registry of
//! collections, and deleting this cache's own keys.

pub(crate) mod codec;
pub(crate) mod keys;
pub(crate) mod marker;
pub(crate) mod own_keys;
pub(crate) mod registry;
