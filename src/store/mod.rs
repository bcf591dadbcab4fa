//! What the cache keeps in Redis, as both sides of the boundary and the
//! reads see it: the key layout (`keys.rs`), how values are encoded
//! (`codec.rs`: [`crate::Encoding`], MessagePack/JSON), the
//! writer's commit marker (`marker.rs`), the registry of collections
//! (`registry.rs`), and finding and deleting this cache's own keys for
//! `clear` and `flush_on_start` (`own_keys.rs`).

pub(crate) mod codec;
pub(crate) mod keys;
pub(crate) mod marker;
pub(crate) mod own_keys;
pub(crate) mod registry;
