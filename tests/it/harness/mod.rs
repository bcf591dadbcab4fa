//! Test support: private `redis-server` processes and a fault-injecting TCP
//! proxy, for the integration tests.
//!
//! Every [`RedisServer`] is a `redis-server` child process of the test
//! binary, bound to `127.0.0.1` on a free port, with its own temporary
//! directory (AOF, log). Dropping it kills the process and removes the
//! directory. On Linux the process is also started with a parent-death
//! signal, so servers do not outlive a test binary that is killed.
//!
//! [`Proxy`] sits between a client and a server on loopback and can cut,
//! stall or black-hole connections on demand, to test reconnects and
//! in-doubt batches.
//!
//! Nothing here ever touches a Redis it did not start (in particular not the
//! one a developer may run on 6379), and nothing listens beyond loopback.
//!
//! Everything the integration tests share lives here, compiled once into
//! the one test binary (`tests/it/main.rs`): [`server`] (private
//! redis-servers), [`proxy`] (fault injection on the wire), [`topology`]
//! (Sentinel, Cluster), `tls` (certificates and a TLS server; feature
//! `tls`), [`outage`] (the outage scenario that the `outage` test and the
//! load bench share) and [`fixtures`] (test entities, configs, readers and
//! assertions). The benches include this module by path, too.

pub mod fixtures;
pub mod outage;
pub mod proxy;
pub mod server;
#[cfg(feature = "tls")]
pub mod tls;
pub mod topology;

pub use fixtures::*;
pub use proxy::Proxy;
pub use server::*;
