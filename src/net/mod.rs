//! Talking to Redis: everything below the flusher and the readers.
//!
//! - `connect.rs`: one connection with credentials, TLS and timeouts, and
//!   `connect` by deployment mode;
//! - `discovery.rs`: finding the master through Sentinel, or the trader's
//!   slot owner in a Cluster;
//! - `retry.rs`: the one failure model (`Cause`, `Failure`), what to do
//!   about each, and the backoff;
//! - `resp.rs`: packing commands in RESP into reused buffers;
//! - `tls.rs` (feature `tls`): the rustls client and TLS error hints.

pub(crate) mod connect;
pub(crate) mod discovery;
pub(crate) mod resp;
pub(crate) mod retry;
#[cfg(feature = "tls")]
pub(crate) mod tls;

pub(crate) use connect::{connect, connect_to, connect_with_retries, tcp_settings, ClientIdentity, Conn};
pub(crate) use resp::{command_key, command_name_key, Args, Packer};
pub(crate) use retry::{deadline_after, pause, reply_error, Action, Backoff, Cause, Failure};
