//! The callers' side of the thread boundary, and what crosses it.
//!
//! - `handle.rs`: [`crate::Cache`], the write path that trading threads
//!   call (no I/O: it hands each write to the channel);
//! - `ack.rs`: acknowledgements (`wait`, `flush`, dropped writes) and
//!   what callers observe (`health`, `stats`);
//! - `close.rs`: `close` and `Drop`;
//! - `msg.rs`: what travels through the channel to the flusher thread
//!   (`Msg`, and the `Record`/`EventRecord` write payloads).
//!
//! The other side of the channel is `crate::flusher`; what the two sides
//! share (sequence numbers, counters, the stop request, the fence, the drop
//! log, the acknowledgement wait, the end of life) is `crate::writer`, which
//! the kv writer uses too.

pub(crate) mod ack;
pub(crate) mod close;
pub(crate) mod handle;
pub(crate) mod msg;
