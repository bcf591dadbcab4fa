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

mod clear;
mod codec;
mod config;
mod encoding;
mod entity;
mod error;
mod error_class;
pub mod exposition;
mod flusher;
mod ident;
mod keys;
pub mod kv;
mod load;
mod marker;
#[cfg(feature = "metrics")]
mod metrics_facade;
pub mod model;
mod net;
#[doc(hidden)]
pub mod ops;
mod pipeline;
mod retention;
mod seq;
mod stats;

pub use config::{Config, OverflowPolicy};
pub use encoding::Encoding;
pub use entity::{Entity, Event, MarketData, SeriesCapacity};
pub use error::{CloseReport, ConfigError, ConfigProblem, DroppedWrite, Error, ErrorKind, PushError, Result};
pub use error_class::ErrorClass;
pub use ident::{IdError, Ident};
pub use load::{LoadIssue, LoadReport, Snapshot};
#[cfg(feature = "metrics")]
pub use metrics_facade::MetricsReporter;
pub use pipeline::handle::Cache;
pub use pipeline::msg::Purged;
pub use seq::Seq;
pub use stats::{Health, Stats};
