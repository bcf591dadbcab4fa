//! The caller's side of the thread boundary: what trading threads call.
//! What crosses it is `crate::channel`; the other side is `crate::flusher`;
//! reads go their own way (`crate::read`).

pub(crate) mod ack;
pub(crate) mod cache;
pub(crate) mod close;
pub(crate) mod retention;
