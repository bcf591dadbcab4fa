//! The callers' side of the thread boundary, and what crosses it.
//!
//! - `handle.rs`: [`crate::Cache`], the write path that trading threads
//!   call (no I/O: it hands each write to the channel);
//! - `ack.rs`: acknowledgements (`wait`, `flush`, dropped writes) and
//!   what callers observe (`health`, `stats`);
//! - `close.rs`: `close` and `Drop`;
//! - `msg.rs`: what travels through the channel to the flusher thread
//!   (`Msg`, and the `Record`/`EventRecord` write payloads);
//! - `shared.rs`: the state both threads share (sequence numbers,
//!   counters, the stop request, the fence, the drop log, `Waiters`).
//!
//! The other side of the channel is `crate::flusher`.

pub(crate) mod ack;
pub(crate) mod close;
pub(crate) mod handle;
pub(crate) mod msg;
pub(crate) mod shared;
