//! Write-behind persistence of a trading engine's state to Redis, without
//! slowing the thread that trades.
//!
//! ```no_run
//! use std::time::Duration;
//! use tradecache::{Cache, Config};
//! use tradecache::model::Position;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_env()?.trader_id("TESTER-001");
//! let cache = Cache::open(config)?;
//! let position = Position::example("BTCUSDT-PERP.BINANCE-001");
//! let seq = cache.put(&position)?;              // hot path: no I/O
//! cache.wait(seq, Duration::from_millis(50))?;  // this write is in Redis
//! assert_eq!(cache.get::<Position>("BTCUSDT-PERP.BINANCE-001")?, Some(position));
//! cache.close(Duration::from_secs(5))?;
//! # Ok(()) }
//! ```
//!
//! [`Cache`] is the write path and its reads; [`kv`] is a general caching
//! layer (namespaced TTL key-value caching) that shares its connection code.
//! The operator's tool, the `tradecache` CLI (feature `cli`), reads and
//! repairs the stored state.
//! [`Cache::health`] and [`Cache::stats`] print for a person (`{}`) and for
//! a program (`{:?}`, or their fields).
//!
//! # Guides
//!
//! The crate's `README.md` has the two commands (`make demo`, `make test`),
//! the headline guarantees and figures. The depth is in its `docs/` folder
//! (in the repository and in the published package):
//!
//! | file | what it covers |
//! | --- | --- |
//! | `docs/usage.md` | the key layout, reads (`load`, `load_open`, `get`, market data), the stored schema |
//! | `docs/running-24-7.md` | open/closed indexes, retention, the heartbeat, live event streams, sizing |
//! | `docs/configuration.md` | every option of [`Config`] and [`kv::KvConfig`] with its environment variable |
//! | `docs/guarantees.md` | every guarantee with its test, fencing, the fault matrix, Redis losing acknowledged batches |
//! | `docs/deployment.md` | ACL users, databases, TLS, Sentinel with `replica_wait`, Cluster |
//! | `docs/kv.md` | the caching layer |
//! | `docs/performance.md` | the benchmarks and how each figure is taken |
//! | `docs/architecture.md` | the threads, the channel, and which file owns what |
//! | `docs/monitoring.md`, `docs/recovery.md` | what to alert on and at what threshold; the recovery runbook |
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod caller;
mod channel;
#[cfg(feature = "cli")]
#[doc(hidden)]
#[path = "bin/tradecache/cli.rs"]
pub mod cli;
mod config;
mod entity;
mod error;
mod flusher;
mod ident;
pub mod kv;
mod metrics;
pub mod model;
mod net;
pub mod raw;
mod read;
mod seq;
mod store;

pub use caller::cache::Cache;
pub use channel::msg::Purged;
pub use config::{Config, OverflowPolicy};
pub use entity::{Entity, Event, MarketData, SeriesCapacity};
pub use error::{
    CloseReport, ConfigError, ConfigProblem, DroppedWrite, Error, ErrorKind, PushError, Result, SourceError,
};
pub use ident::{IdError, Ident};
pub use metrics::exposition;
#[cfg(feature = "metrics")]
pub use metrics::facade::MetricsReporter;
pub use metrics::stats::{Health, Stats};
pub use read::{LoadIssue, LoadReport, Snapshot};
pub use seq::Seq;
pub use store::codec::Encoding;
