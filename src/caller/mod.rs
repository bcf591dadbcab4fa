//! The caller's side of the thread boundary: what trading threads call.
//!
//! - `cache.rs`: [`crate::Cache`], the write path that trading threads
//!   call (no I/O: it hands each write to the channel);
//! - `ack.rs`: acknowledgements (`wait`, `flush`, dropped writes) and
//!   what callers observe (`health`, `stats`);
//! - `close.rs`: `close` and `Drop`;
//! - `retention.rs`: the caller's side of a purge (`purge_closed`).
//!
//! What crosses the boundary, and what the two sides share, is
//! `crate::channel`; the other side is `crate::flusher`. Reads go their
//! own way, on connections of their own (`crate::read`).

pub(crate) mod ack;
pub(crate) mod cache;
pub(crate) mod close;
pub(crate) mod retention;
