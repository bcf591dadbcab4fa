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
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cache;
mod clear;
mod codec;
mod config;
mod connection;
mod encoding;
mod entity;
mod error;
pub mod exposition;
mod flusher;
mod ident;
mod keys;
pub mod kv;
mod marker;
#[cfg(feature = "metrics")]
mod metrics_facade;
pub mod model;
#[doc(hidden)]
pub mod ops;
mod reads;
mod recovery;
mod retention;
mod stats;
#[cfg(feature = "tls")]
mod tls;

pub use cache::{Cache, Seq};
pub use config::{Config, OverflowPolicy};
pub use encoding::Encoding;
pub use entity::{Entity, Event, MarketData, SeriesCapacity};
pub use error::{CloseReport, ConfigError, ConfigProblem, DroppedWrite, Error, ErrorKind, PushError, Result};
pub use ident::{IdError, Ident};
#[cfg(feature = "metrics")]
pub use metrics_facade::MetricsReporter;
pub use recovery::{LoadIssue, LoadReport, Snapshot};
pub use retention::Purged;
pub use stats::{ErrorClass, Health, Stats};

/// A message from the callers to the flusher thread. Shutdown travels
/// through the same channel, so it arrives after every write before it.
pub(crate) enum Msg {
    Put {
        seq: u64,
        rec: entity::Record,
    },
    Append {
        seq: u64,
        collection: &'static str,
        id: Ident,
        rec: entity::EventRecord,
    },
    Delete {
        seq: u64,
        collection: &'static str,
        id: Ident,
    },
    /// `Cache::clear`: applied once every write before it is.
    Clear {
        seq: u64,
        reply: crossbeam_channel::Sender<Result<u64>>,
    },
    /// `Cache::purge_closed`: not a write, it takes no sequence number.
    Purge(flusher::PurgeRequest),
    Shutdown {
        deadline: std::time::Instant,
    },
}
