//! tradecache as NautilusTrader's cache database: [`TradecacheDatabase`]
//! implements `nautilus_common::cache::database::CacheDatabaseAdapter`
//! (every method) on top of tradecache's write-behind Redis persistence.
//! Writes are pushed into tradecache's bounded channel (no I/O on the
//! calling thread) and applied by its flusher in atomic MULTI/EXEC batches;
//! loads read Redis directly.
//!
//! ```no_run
//! use nautilus_common::cache::{Cache, CacheConfig};
//! use nautilus_core::UUID4;
//! use nautilus_model::identifiers::TraderId;
//! use tradecache_nautilus::TradecacheDatabase;
//!
//! # fn main() -> anyhow::Result<()> {
//! let config = CacheConfig::default(); // database: None is 127.0.0.1:6379
//! let trader_id = TraderId::from("TRADER-001");
//! let db = TradecacheDatabase::from_cache_config(trader_id, UUID4::new(), &config)?;
//! let mut cache = Cache::new(Some(config), Some(Box::new(db)));
//! // The trait's async loads run tradecache's blocking loads: any executor
//! // drives them (none is started by this crate).
//! pollster::block_on(cache.cache_all())?;
//! cache.build_index();
//! // ... trade: cache.add_order(..), cache.update_order(..), ...
//! cache.dispose(); // closes the adapter: every accepted write is in Redis
//! # Ok(()) }
//! ```
//!
//! Values are Nautilus's own serde forms (MessagePack maps by default,
//! JSON with `SerializationEncoding::Json`); the key layout and the
//! mapping of every method are in this crate's README.
//!
//! Licensed LGPL-3.0-or-later, like the Nautilus crates it implements; the
//! tradecache core stays MIT OR Apache-2.0.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod adapter;
mod config;
pub mod kinds;
pub mod records;

pub use adapter::{escape_id, unescape_id, AdapterError, TradecacheDatabase};
pub use config::tradecache_config;
