//! Nautilus's `CacheConfig` / `DatabaseConfig` mapped onto tradecache's
//! [`tradecache::Config`].

use std::time::Duration;

use nautilus_common::{cache::CacheConfig, enums::SerializationEncoding};
use nautilus_core::UUID4;
use nautilus_model::identifiers::TraderId;
use tradecache::{Config, Encoding};

/// Builds tradecache's [`Config`] from Nautilus's `CacheConfig`, trader id
/// and instance id; the result can be changed further (Sentinel, Cluster,
/// `replica_wait`, `writer_id`, …) before
/// [`crate::TradecacheDatabase::open`].
///
/// | Nautilus | tradecache |
/// | --- | --- |
/// | `database.host` / `port` (default `127.0.0.1:6379`) | `host` / `port` |
/// | `database.username` / `password` | `username` / `password` |
/// | `database.ssl` | `tls` (build with this crate's `tls` feature) |
/// | `database.connection_timeout` (s) | `connect_timeout` |
/// | `database.response_timeout` (s) | `response_timeout` |
/// | `database.number_of_retries` | `connect_attempts` (retries + 1, at most 1,000) |
/// | `database.factor` (ms), `max_delay` (s) | `open_backoff` and `reconnect_backoff` bounds |
/// | `encoding` | `encoding` (`MsgPack` / `Json`) |
/// | `timestamps_as_iso8601` | `timestamps_as_iso8601` (tradecache's own model only; Nautilus values keep their serde form) |
/// | `buffer_interval_ms` | `buffer_interval_ms` (`None`: tradecache's default, write at once) |
/// | `bulk_read_batch_size` | `load_chunk` |
/// | `use_trader_prefix`, `use_instance_id`, `flush_on_start` | the same |
/// | `persist_account_events` | the same, applied by the adapter |
/// | `tick_capacity`, `bar_capacity` | the same |
/// | trader id, instance id | `trader_id`, `instance_id` |
///
/// `database.database_type`, `exponent_base`, `drop_instruments_on_reset`
/// and `save_market_data` have no equivalent (the last two are applied by
/// Nautilus's `Cache` itself).
///
/// # Errors
///
/// When `database.database_type` is set to something other than `redis`.
pub fn tradecache_config(
    trader_id: TraderId,
    instance_id: UUID4,
    config: &CacheConfig,
) -> anyhow::Result<Config> {
    let mut c = Config::builder();
    if let Some(db) = &config.database {
        if !db.database_type.is_empty() && !db.database_type.eq_ignore_ascii_case("redis") {
            anyhow::bail!("database_type {:?} is not redis", db.database_type);
        }
        c = c.host(db.host.clone().unwrap_or_else(|| "127.0.0.1".to_string())).port(db.port.unwrap_or(6379));
        if let Some(u) = &db.username {
            c = c.username(u.clone());
        }
        if let Some(p) = &db.password {
            c = c.password(p.clone());
        }
        if db.ssl {
            c = c.tls(true);
        }
        if db.connection_timeout > 0 {
            c = c.connect_timeout(Duration::from_secs(db.connection_timeout.into()));
        }
        if db.response_timeout > 0 {
            c = c.response_timeout(Duration::from_secs(db.response_timeout.into()));
        }
        let attempts = u32::try_from(db.number_of_retries.saturating_add(1).min(1_000)).unwrap_or(1_000);
        c = c.connect_attempts(attempts.max(1));
        let min = Duration::from_millis(db.factor.max(1));
        let max = Duration::from_secs(db.max_delay.max(1)).max(min);
        c = c.open_backoff(min, max).reconnect_backoff(min, max);
    } else {
        c = c.host("127.0.0.1").port(6379);
    }
    c = c
        .encoding(match config.encoding {
            SerializationEncoding::MsgPack => Encoding::MsgPack,
            SerializationEncoding::Json => Encoding::Json,
        })
        .timestamps_as_iso8601(config.timestamps_as_iso8601)
        .use_trader_prefix(config.use_trader_prefix)
        .use_instance_id(config.use_instance_id)
        .flush_on_start(config.flush_on_start)
        .persist_account_events(config.persist_account_events)
        .tick_capacity(config.tick_capacity)
        .bar_capacity(config.bar_capacity)
        .trader_id(trader_id.to_string());
    if config.use_instance_id {
        c = c.instance_id(instance_id.to_string());
    }
    if let Some(ms) = config.buffer_interval_ms {
        c = c.buffer_interval_ms(ms as u64);
    }
    if let Some(n) = config.bulk_read_batch_size {
        c = c.load_chunk(n);
    }
    Ok(c)
}
