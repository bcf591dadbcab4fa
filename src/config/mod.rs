//! Configuration: the [`Config`] struct, its defaults and setters.
//!
//! A [`Config`] is built in one of three ways, which can be combined:
//!
//! - [`Config::builder()`] (the defaults) and its setters, ureq style:
//!   `Config::builder().host("redis-1").port(6380).trader_id("T1")`;
//! - [`Config::from_env()`], which reads `REDIS_*` and `CACHE_*` variables
//!   (see [`Config::from_vars`] for the list);
//! - [`Config::from_url`], which applies a `redis://` or `rediss://` URL.
//!
//! Parsing reports problems with single values (a port that is not a
//! number, an id with a `:`); [`Config::validate`], which
//! [`crate::Cache::open`] calls, reports the rest, such as a username without
//! a password. Both list every problem found, never just the first, and
//! never show a password.
//!
//! Where things are: this file holds the struct, `Default`, the setters and
//! the derived values (`trader_key`, `redacted_url`); `env.rs` the
//! environment (`from_env`, `from_vars`); `url.rs` URL parsing and
//! redaction (`from_url`); `validate.rs` the rules of [`Config::validate`].
//! This file is longer than 600 lines because it holds one documented
//! setter per option, which read best side by side with the struct.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{ConfigError, ConfigProblem};

mod env;
mod table;
mod url;
mod validate;
mod vars;

/// What a password (or anything that may hold one) is shown as.
pub(super) const REDACTED: &str = "<redacted>";
pub use crate::encoding::Encoding;
pub(crate) use table::{apply_vars, boolean, env_example, int, markdown, millis, ms, not_unicode, seconds};
pub(crate) use table::{set, EnvVar, Read, Refused};
pub(crate) use url::HostPort;

/// What a write does when the channel to the flusher is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// Return at once with [`crate::PushError`], which hands the value back
    /// and is counted in [`crate::Stats::rejected`]. The default.
    #[default]
    Reject,
    /// Wait at most `timeout` for room, then fail as `Reject` does.
    Block {
        /// The longest a write waits for room in the channel.
        timeout: Duration,
    },
}

/// A password that never shows in `Debug` output, logs or error messages.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub(crate) String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// Everything a [`crate::Cache`] needs: where Redis is, how to log in, the
/// key layout and the pipeline's bounds.
///
/// ```
/// use std::time::Duration;
/// use tradecache::{Config, OverflowPolicy};
///
/// let config = Config::builder()
///     .host("redis.internal")
///     .port(6380)
///     .username("engine")
///     .password("s3cret")
///     .trader_id("TESTER-001")
///     .overflow(OverflowPolicy::Block { timeout: Duration::from_millis(5) });
/// assert!(config.validate().is_ok());
/// assert_eq!(config.trader_key(), "trader-TESTER-001");
/// assert_eq!(config.redacted_url(), "redis://engine:<redacted>@redis.internal:6380/0");
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    // --- connection ---
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Secret>,
    pub(crate) db: i64,
    pub(crate) tls: bool,
    pub(crate) tls_ca: Option<PathBuf>,
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
    pub(crate) sentinels: Vec<HostPort>,
    pub(crate) sentinel_master: Option<String>,
    pub(crate) cluster_nodes: Vec<HostPort>,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) connect_attempts: u32,
    pub(crate) open_backoff_min: Duration,
    pub(crate) open_backoff_max: Duration,
    pub(crate) reconnect_backoff_min: Duration,
    pub(crate) reconnect_backoff_max: Duration,
    // --- keys and values ---
    pub(crate) trader_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) use_trader_prefix: bool,
    pub(crate) use_instance_id: bool,
    pub(crate) encoding: Encoding,
    pub(crate) timestamps_as_iso8601: bool,
    pub(crate) flush_on_start: bool,
    pub(crate) persist_account_events: bool,
    pub(crate) max_value_bytes: usize,
    pub(crate) writer_id: String,
    // --- pipeline ---
    pub(crate) channel_capacity: usize,
    pub(crate) overflow: OverflowPolicy,
    pub(crate) max_batch: usize,
    pub(crate) max_pending_events: usize,
    pub(crate) max_pending_snapshots: usize,
    pub(crate) max_batch_bytes: usize,
    pub(crate) buffer_interval: Duration,
    pub(crate) idle_poll: Duration,
    pub(crate) idle_park_after: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) replica_wait: Option<(u32, Duration)>,
    // --- recovery ---
    pub(crate) load_chunk: usize,
    pub(crate) strict_load: bool,
    // --- spec's market-data buffers ---
    pub(crate) tick_capacity: usize,
    pub(crate) bar_capacity: usize,
    // --- running 24/7 ---
    pub(crate) retain_closed_for: Option<Duration>,
    pub(crate) purge_batch: usize,
    pub(crate) max_account_events: Option<usize>,
    pub(crate) heartbeat_interval: Option<Duration>,
    pub(crate) publish_events: bool,
    pub(crate) stream_max_len: usize,
    pub(crate) stream_max_age: Option<Duration>,
    // --- tests only ---
    /// Added to the flusher's wall clock (`Config::clock_skew_for_tests`).
    pub(crate) clock_skew_ms: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 6379,
            username: None,
            password: None,
            db: 0,
            tls: false,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            sentinels: Vec::new(),
            sentinel_master: None,
            cluster_nodes: Vec::new(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            connect_attempts: 5,
            open_backoff_min: Duration::from_secs(1),
            open_backoff_max: Duration::from_secs(32),
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
            trader_id: "TRADER-001".into(),
            instance_id: None,
            use_trader_prefix: true,
            use_instance_id: false,
            encoding: Encoding::MsgPack,
            timestamps_as_iso8601: false,
            flush_on_start: false,
            persist_account_events: true,
            max_value_bytes: 512 * 1024,
            writer_id: "main".into(),
            channel_capacity: 65_536,
            overflow: OverflowPolicy::Reject,
            max_batch: 4096,
            max_pending_events: 65_536,
            max_pending_snapshots: 262_144,
            max_batch_bytes: 16 * 1024 * 1024,
            buffer_interval: Duration::ZERO,
            idle_poll: Duration::from_micros(100),
            idle_park_after: Duration::from_secs(1),
            close_timeout: Duration::from_secs(5),
            replica_wait: None,
            load_chunk: 1000,
            strict_load: false,
            tick_capacity: 10_000,
            bar_capacity: 10_000,
            retain_closed_for: None,
            purge_batch: 500,
            max_account_events: None,
            heartbeat_interval: None,
            publish_events: false,
            stream_max_len: 100_000,
            stream_max_age: None,
            clock_skew_ms: 0,
        }
    }
}

// ---------------------------------------------------------------------------
// Constants and texts shared by parsing and validation.

/// Redis's own limit on a string value.
const REDIS_MAX_VALUE_BYTES: usize = 512 * 1024 * 1024;
const ENCODING_ALLOWED: &str = "one of: msgpack, json";
const PORT_ALLOWED: &str = "a port number from 1 to 65535";
const BOOL_ALLOWED: &str = "one of: true, false, 1, 0, yes, no";

/// Collects problems; never stops at the first.
#[derive(Default)]
pub(crate) struct Problems(pub(crate) Vec<ConfigProblem>);

impl Problems {
    pub(crate) fn push(&mut self, field: &str, value: impl Into<String>, allowed: impl Into<String>) {
        self.0.push(ConfigProblem { field: field.to_string(), value: value.into(), allowed: allowed.into() });
    }

    /// Each problem of `refused`, under `field`; `text` is the value shown
    /// where `refused` names none.
    pub(crate) fn refused(&mut self, field: &str, text: &str, refused: table::Refused) {
        for (shown, allowed) in refused.0 {
            self.push(field, shown.unwrap_or_else(|| text.to_string()), allowed);
        }
    }

    pub(crate) fn finish<T>(self, ok: T) -> Result<T, ConfigError> {
        if self.0.is_empty() {
            Ok(ok)
        } else {
            Err(ConfigError { problems: self.0 })
        }
    }
}

// ---------------------------------------------------------------------------
// Builder.

impl Config {
    /// The defaults, to be changed with the setters below; the same as
    /// [`Config::default()`].
    #[must_use]
    pub fn builder() -> Config {
        Config::default()
    }

    /// A preset for debugging: values are written as JSON
    /// ([`Encoding::Json`]) with timestamps as ISO 8601 strings, so that
    /// `redis-cli GET` shows them readably. Everything else is the default.
    #[must_use]
    pub fn debug() -> Config {
        Config::default().encoding(Encoding::Json).timestamps_as_iso8601(true)
    }

    // --- connection ---

    /// The Redis server's host name, IPv4 address or IPv6 address (without
    /// brackets). Not used with sentinels or a cluster.
    ///
    /// Default: see `REDIS_HOST` in [`Config::from_vars`].
    #[must_use]
    pub fn host(mut self, v: impl Into<String>) -> Self {
        self.host = v.into();
        self
    }

    /// The Redis server's port, from 1 to 65535.
    ///
    /// Default: see `REDIS_PORT` in [`Config::from_vars`].
    #[must_use]
    pub fn port(mut self, v: u16) -> Self {
        self.port = v;
        self
    }

    /// The ACL user to log in as (needs a password too); an empty string
    /// clears it.
    ///
    /// Default: see `REDIS_USERNAME` in [`Config::from_vars`].
    #[must_use]
    pub fn username(mut self, v: impl Into<String>) -> Self {
        let v = v.into();
        self.username = (!v.is_empty()).then_some(v);
        self
    }

    /// The password to log in with (`AUTH`); an empty string clears it. It is
    /// never shown in `Debug` output, logs or errors.
    ///
    /// Default: see `REDIS_PASSWORD` in [`Config::from_vars`].
    #[must_use]
    pub fn password(mut self, v: impl Into<String>) -> Self {
        let v = v.into();
        self.password = (!v.is_empty()).then_some(Secret(v));
        self
    }

    /// The database number (`SELECT`); must be 0 in cluster mode.
    ///
    /// Default: see `REDIS_DB` in [`Config::from_vars`].
    #[must_use]
    pub fn db(mut self, v: i64) -> Self {
        self.db = v;
        self
    }

    /// Whether to connect with TLS (needs the crate's `tls` feature).
    ///
    /// Default: see `REDIS_SSL` in [`Config::from_vars`].
    #[must_use]
    pub fn tls(mut self, v: bool) -> Self {
        self.tls = v;
        self
    }

    /// A PEM file of CA certificates to trust instead of the system's roots
    /// (only with `tls`).
    ///
    /// Default: see `REDIS_TLS_CA` in [`Config::from_vars`].
    #[must_use]
    pub fn tls_ca(mut self, v: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(v.into());
        self
    }

    /// A PEM client certificate for mutual TLS (only with `tls`, and with
    /// [`Config::tls_key`]).
    ///
    /// Default: see `REDIS_TLS_CERT` in [`Config::from_vars`].
    #[must_use]
    pub fn tls_cert(mut self, v: impl Into<PathBuf>) -> Self {
        self.tls_cert = Some(v.into());
        self
    }

    /// The PEM private key of [`Config::tls_cert`] (only with `tls`).
    ///
    /// Default: see `REDIS_TLS_KEY` in [`Config::from_vars`].
    #[must_use]
    pub fn tls_key(mut self, v: impl Into<PathBuf>) -> Self {
        self.tls_key = Some(v.into());
        self
    }

    /// Sentinels to ask for the current master (with
    /// [`Config::sentinel_master`]); replaces any set before. When set,
    /// `host` and `port` are not used.
    ///
    /// Default: see `REDIS_SENTINELS` in [`Config::from_vars`].
    #[must_use]
    pub fn sentinels<I, H>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = (H, u16)>,
        H: Into<String>,
    {
        self.sentinels = host_ports(nodes);
        self
    }

    /// The name of the master the sentinels monitor.
    ///
    /// Default: see `REDIS_SENTINEL_MASTER` in [`Config::from_vars`].
    #[must_use]
    pub fn sentinel_master(mut self, v: impl Into<String>) -> Self {
        self.sentinel_master = Some(v.into());
        self
    }

    /// Seed nodes of a Redis Cluster; replaces any set before. When set,
    /// `host` and `port` are not used, and the trader key becomes a hash tag
    /// (`{trader-T1}:…`) so that one trader's keys share a slot.
    ///
    /// Default: see `REDIS_CLUSTER` in [`Config::from_vars`].
    #[must_use]
    pub fn cluster_nodes<I, H>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = (H, u16)>,
        H: Into<String>,
    {
        self.cluster_nodes = host_ports(nodes);
        self
    }

    /// The longest one connection attempt may take.
    ///
    /// Default: see `REDIS_TIMEOUT` in [`Config::from_vars`].
    #[must_use]
    pub fn connect_timeout(mut self, v: Duration) -> Self {
        self.connect_timeout = v;
        self
    }

    /// The longest to wait for a reply on an established connection (the
    /// socket's read and write timeouts).
    ///
    /// Default: see `REDIS_TIMEOUT` in [`Config::from_vars`].
    #[must_use]
    pub fn response_timeout(mut self, v: Duration) -> Self {
        self.response_timeout = v;
        self
    }

    /// How many times [`crate::Cache::open`] tries to connect before it
    /// fails; at least 1.
    ///
    /// Default: see `CACHE_CONNECT_ATTEMPTS` in [`Config::from_vars`].
    #[must_use]
    pub fn connect_attempts(mut self, v: u32) -> Self {
        self.connect_attempts = v;
        self
    }

    /// The bounds of the exponential backoff (with jitter) between connection
    /// attempts in [`crate::Cache::open`]; `min` may not exceed `max`.
    ///
    /// Default: see `CACHE_BACKOFF_MIN_MS` and `CACHE_BACKOFF_MAX_MS` in [`Config::from_vars`].
    #[must_use]
    pub fn open_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.open_backoff_min = min;
        self.open_backoff_max = max;
        self
    }

    /// The bounds of the exponential backoff (with jitter) between the
    /// flusher's reconnection attempts after a connection is lost; `min` may
    /// not exceed `max`.
    ///
    /// Default: see `CACHE_RECONNECT_BACKOFF_MIN_MS` and
    /// `CACHE_RECONNECT_BACKOFF_MAX_MS` in [`Config::from_vars`].
    #[must_use]
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_backoff_min = min;
        self.reconnect_backoff_max = max;
        self
    }

    // --- keys and values ---

    /// The trader id, part of every key (`trader-{trader_id}:…`). Not empty,
    /// no `:`, `{`, `}`, whitespace or control characters.
    ///
    /// Default: see `CACHE_TRADER_ID` in [`Config::from_vars`].
    #[must_use]
    pub fn trader_id(mut self, v: impl Into<String>) -> Self {
        self.trader_id = v.into();
        self
    }

    /// The instance id, added to the trader key when
    /// [`Config::use_instance_id`] is on (`trader-T1:{instance_id}:…`). Same
    /// character rules as the trader id.
    ///
    /// Default: see `CACHE_INSTANCE_ID` in [`Config::from_vars`].
    #[must_use]
    pub fn instance_id(mut self, v: impl Into<String>) -> Self {
        self.instance_id = Some(v.into());
        self
    }

    /// Whether keys start with the trader key (`trader-{trader_id}:`). When
    /// off, keys have no trader prefix at all (`positions:P-1`), and one
    /// database can then hold only one trader's state; cluster mode needs the
    /// prefix.
    ///
    /// Default: see `CACHE_USE_TRADER_PREFIX` in [`Config::from_vars`].
    #[must_use]
    pub fn use_trader_prefix(mut self, v: bool) -> Self {
        self.use_trader_prefix = v;
        self
    }

    /// Whether the trader key includes the instance id
    /// (`trader-T1:{instance_id}:…`); needs [`Config::instance_id`] and the
    /// trader prefix.
    ///
    /// Default: see `CACHE_USE_INSTANCE_ID` in [`Config::from_vars`].
    #[must_use]
    pub fn use_instance_id(mut self, v: bool) -> Self {
        self.use_instance_id = v;
        self
    }

    /// How values are encoded.
    ///
    /// Default: see `CACHE_ENCODING` in [`Config::from_vars`].
    #[must_use]
    pub fn encoding(mut self, v: Encoding) -> Self {
        self.encoding = v;
        self
    }

    /// Whether timestamps are written as ISO 8601 strings instead of
    /// nanoseconds; only with [`Encoding::Json`].
    ///
    /// Default: see `CACHE_TIMESTAMPS_AS_ISO8601` in [`Config::from_vars`].
    #[must_use]
    pub fn timestamps_as_iso8601(mut self, v: bool) -> Self {
        self.timestamps_as_iso8601 = v;
        self
    }

    /// Whether [`crate::Cache::open`] deletes this trader's keys (never the
    /// whole database) before starting.
    ///
    /// Default: see `CACHE_FLUSH_ON_START` in [`Config::from_vars`].
    #[must_use]
    pub fn flush_on_start(mut self, v: bool) -> Self {
        self.flush_on_start = v;
        self
    }

    /// Whether account events are appended to `accounts:{id}:events`
    /// (otherwise only the latest account snapshot is kept).
    ///
    /// Default: see `CACHE_PERSIST_ACCOUNT_EVENTS` in [`Config::from_vars`].
    #[must_use]
    pub fn persist_account_events(mut self, v: bool) -> Self {
        self.persist_account_events = v;
        self
    }

    /// The largest encoded value accepted, in bytes: from 1 to 512 MiB
    /// (Redis's own limit).
    ///
    /// Default: see `CACHE_MAX_VALUE_BYTES` in [`Config::from_vars`].
    #[must_use]
    pub fn max_value_bytes(mut self, v: usize) -> Self {
        self.max_value_bytes = v;
        self
    }

    /// The name of this writer's commit marker (`…:writer:{writer_id}`),
    /// which settles in-doubt batches after a reconnect. Two processes
    /// writing the same trader's keys need different writer ids.
    ///
    /// Default: see `CACHE_WRITER_ID` in [`Config::from_vars`].
    #[must_use]
    pub fn writer_id(mut self, v: impl Into<String>) -> Self {
        self.writer_id = v.into();
        self
    }

    // --- pipeline ---

    /// How many writes may wait in the channel to the flusher; at least 1.
    ///
    /// Default: see `CACHE_CHANNEL_CAPACITY` in [`Config::from_vars`].
    #[must_use]
    pub fn channel_capacity(mut self, v: usize) -> Self {
        self.channel_capacity = v;
        self
    }

    /// What a write does when the channel is full.
    ///
    /// Default: see `CACHE_OVERFLOW` and `CACHE_BLOCK_TIMEOUT_MS` in [`Config::from_vars`].
    #[must_use]
    pub fn overflow(mut self, v: OverflowPolicy) -> Self {
        self.overflow = v;
        self
    }

    /// The most messages written in one `MULTI … EXEC` batch; at least 1.
    ///
    /// Default: see `CACHE_MAX_BATCH` in [`Config::from_vars`].
    #[must_use]
    pub fn max_batch(mut self, v: usize) -> Self {
        self.max_batch = v;
        self
    }

    /// The most events the flusher holds while Redis is unreachable before
    /// it stops draining the channel (and writes start to overflow); at
    /// least 1.
    ///
    /// Default: see `CACHE_MAX_PENDING_EVENTS` in [`Config::from_vars`].
    #[must_use]
    pub fn max_pending_events(mut self, v: usize) -> Self {
        self.max_pending_events = v;
        self
    }

    /// The most distinct snapshot keys the flusher holds while Redis is
    /// unreachable before it stops draining the channel (and writes start
    /// to overflow): coalescing keeps one value per key, so this bounds
    /// the flusher's memory when every write is a new id; at least 1.
    ///
    /// Default: see `CACHE_MAX_PENDING_SNAPSHOTS` in [`Config::from_vars`].
    #[must_use]
    pub fn max_pending_snapshots(mut self, v: usize) -> Self {
        self.max_pending_snapshots = v;
        self
    }

    /// The most value bytes packed into one transaction (a batch holds at
    /// least one value whatever its size); with [`Config::max_batch`] it
    /// keeps the transactions that drain an outage's backlog a size Redis
    /// takes; at least 1.
    ///
    /// Default: see `CACHE_MAX_BATCH_BYTES` in [`Config::from_vars`].
    #[must_use]
    pub fn max_batch_bytes(mut self, v: usize) -> Self {
        self.max_batch_bytes = v;
        self
    }

    /// How long the flusher keeps collecting after the first message of a
    /// batch, for fewer, larger batches; zero writes at once.
    ///
    /// Default: see `CACHE_BUFFER_INTERVAL_MS` in [`Config::from_vars`].
    #[must_use]
    pub fn buffer_interval(mut self, v: Duration) -> Self {
        self.buffer_interval = v;
        self
    }

    /// [`Config::buffer_interval`] in milliseconds (the spec's
    /// `buffer_interval_ms`).
    ///
    /// Default: see `CACHE_BUFFER_INTERVAL_MS` in [`Config::from_vars`].
    #[must_use]
    pub fn buffer_interval_ms(self, ms: u64) -> Self {
        self.buffer_interval(Duration::from_millis(ms))
    }

    /// How long the idle flusher sleeps between polls of the channel, so
    /// that a write rarely has to wake a parked thread; zero spins. It is
    /// the most a write can wait to be noticed, so at most 1 s.
    ///
    /// Default: see `CACHE_IDLE_POLL_US` in [`Config::from_vars`].
    #[must_use]
    pub fn idle_poll(mut self, v: Duration) -> Self {
        self.idle_poll = v;
        self
    }

    /// After how long without writes the flusher stops polling and parks
    /// until the next write.
    ///
    /// Default: see `CACHE_IDLE_PARK_AFTER_MS` in [`Config::from_vars`].
    #[must_use]
    pub fn idle_park_after(mut self, v: Duration) -> Self {
        self.idle_park_after = v;
        self
    }

    /// How long `Drop` waits for the final flush (as
    /// [`crate::Cache::close`] does with its own timeout).
    ///
    /// Default: see `CACHE_CLOSE_TIMEOUT_MS` in [`Config::from_vars`].
    #[must_use]
    pub fn close_timeout(mut self, v: Duration) -> Self {
        self.close_timeout = v;
        self
    }

    /// `Some((replicas, timeout))`: after each batch, `WAIT` until that many
    /// replicas have it (at most `timeout`, which must be above zero and
    /// below the response timeout); a batch not replicated in time is
    /// retried. `None` does not wait.
    ///
    /// Default: see `CACHE_REPLICA_WAIT` and `CACHE_REPLICA_WAIT_TIMEOUT_MS` in [`Config::from_vars`].
    #[must_use]
    pub fn replica_wait(mut self, v: Option<(u32, Duration)>) -> Self {
        self.replica_wait = v;
        self
    }

    // --- recovery ---

    /// How many ids [`crate::Cache::load`] reads per pipelined request (one
    /// `MGET` of their snapshots and one `LRANGE` per event log), at least
    /// one. Several such requests are in flight at once, on one connection
    /// per core (2 to 4).
    ///
    /// Default: see `CACHE_LOAD_CHUNK` in [`Config::from_vars`].
    #[must_use]
    pub fn load_chunk(mut self, v: usize) -> Self {
        self.load_chunk = v;
        self
    }

    /// Whether [`crate::Cache::load`] fails on a value it cannot decode
    /// (otherwise it skips the value and reports it).
    ///
    /// Default: see `CACHE_STRICT_LOAD` in [`Config::from_vars`].
    #[must_use]
    pub fn strict_load(mut self, v: bool) -> Self {
        self.strict_load = v;
        self
    }

    // --- spec's market-data buffers ---

    /// How many ticks each market-data tick series keeps in Redis (quote
    /// ticks and trade ticks, per instrument): every
    /// [`crate::Cache::append_market_data`] trims its list to the newest
    /// `tick_capacity`, in the same transaction. At least 1.
    ///
    /// Default: see `CACHE_TICK_CAPACITY` in [`Config::from_vars`].
    #[must_use]
    pub fn tick_capacity(mut self, v: usize) -> Self {
        self.tick_capacity = v;
        self
    }

    /// How many bars each bar series (per bar type) keeps in Redis, as
    /// [`Config::tick_capacity`] for ticks. At least 1.
    ///
    /// Default: see `CACHE_BAR_CAPACITY` in [`Config::from_vars`].
    #[must_use]
    pub fn bar_capacity(mut self, v: usize) -> Self {
        self.bar_capacity = v;
        self
    }

    // --- running 24/7 ---

    /// `Some(age)`: the flusher purges closed entities (see
    /// [`crate::Entity::is_closed`]) whose last update is older than `age`,
    /// with their event logs and index entries, as
    /// [`crate::Cache::purge_closed`] does: a pass over every collection
    /// when the cache opens and then every `min(age, 60 s)`, in steps of
    /// [`Config::purge_batch`] entities between batches. At least 1 s.
    /// `None` keeps closed entities until purged by hand.
    ///
    /// Default: see `CACHE_RETAIN_CLOSED_SECS` in [`Config::from_vars`].
    #[must_use]
    pub fn retain_closed_for(mut self, v: Option<Duration>) -> Self {
        self.retain_closed_for = v;
        self
    }

    /// How many closed entities one purge step deletes (one transaction
    /// between two batches of writes), at least 1.
    ///
    /// Default: see `CACHE_PURGE_BATCH` in [`Config::from_vars`].
    #[must_use]
    pub fn purge_batch(mut self, v: usize) -> Self {
        self.purge_batch = v;
        self
    }

    /// `Some(n)`: every append to an account's event log also trims it to
    /// its newest `n` events, in the same transaction (`RPUSH` + `LTRIM`),
    /// so a 24/7 engine's balance history stays bounded. At least 1.
    /// `None` keeps every event.
    ///
    /// Default: see `CACHE_MAX_ACCOUNT_EVENTS` in [`Config::from_vars`].
    #[must_use]
    pub fn max_account_events(mut self, v: Option<usize>) -> Self {
        self.max_account_events = v;
        self
    }

    /// `Some(interval)`: the flusher sets `{trader}:heartbeat:{writer_id}`
    /// (epoch, time, acknowledged seq, backlog) with a TTL of three
    /// intervals, inside a batch's transaction when writes flow, on its own
    /// when idle, so a supervisor sees it vanish when the engine hangs,
    /// dies or loses Redis. At least 1 ms. `None` writes no heartbeat.
    ///
    /// Default: see `CACHE_HEARTBEAT_MS` in [`Config::from_vars`].
    #[must_use]
    pub fn heartbeat_interval(mut self, v: Option<Duration>) -> Self {
        self.heartbeat_interval = v;
        self
    }

    /// Whether each event appended to an entity's log (not market data)
    /// is also added (`XADD`) to the stream
    /// `{trader}:stream:{collection}`, in the same transaction, for
    /// consumers in other processes (`XREAD`, `XREADGROUP`).
    ///
    /// Default: see `CACHE_PUBLISH_EVENTS` in [`Config::from_vars`].
    #[must_use]
    pub fn publish_events(mut self, v: bool) -> Self {
        self.publish_events = v;
        self
    }

    /// The length each event stream is trimmed to (`XADD … MAXLEN ~ n`:
    /// Redis trims whole nodes, so a stream may hold a little more). At
    /// least 1.
    ///
    /// Default: see `CACHE_STREAM_MAXLEN` in [`Config::from_vars`].
    #[must_use]
    pub fn stream_max_len(mut self, v: usize) -> Self {
        self.stream_max_len = v;
        self
    }

    /// `Some(age)`: each batch that publishes to a stream also trims the
    /// entries older than `age` (`XTRIM … MINID ~`, Redis 6.2 or later),
    /// besides [`Config::stream_max_len`]. At least 1 ms. `None` trims by
    /// length only.
    ///
    /// The age is measured by the Redis server's clock, like the stream
    /// ids (`XADD … *`), not by the engine's: the flusher reads the
    /// server's `TIME` on every connection and reconnection, so an engine
    /// clock that is off never trims the events a batch publishes. Where
    /// `TIME` is refused (an ACL without `+time`), that connection trims by
    /// length only, and logs a warning.
    ///
    /// Default: see `CACHE_STREAM_MAX_AGE_SECS` in [`Config::from_vars`].
    #[must_use]
    pub fn stream_max_age(mut self, v: Option<Duration>) -> Self {
        self.stream_max_age = v;
        self
    }

    /// Tests only, not a stable API: runs the flusher as if the engine's
    /// wall clock were `ms` milliseconds ahead (negative: behind) of the
    /// machine's, for the clock it stamps batches with (the score of a
    /// closed entity without a last update). Lets a test show that
    /// [`Config::stream_max_age`] trims by the Redis server's clock, not
    /// the engine's. Not validated, not read from the
    /// environment. Default 0.
    #[doc(hidden)]
    #[must_use]
    pub fn clock_skew_for_tests(mut self, ms: i64) -> Self {
        self.clock_skew_ms = ms;
        self
    }

    // --- derived values ---

    /// `host:port` of the configured server (`[::1]:6379` for IPv6), for
    /// messages; never credentials.
    pub(crate) fn addr(&self) -> String {
        HostPort { host: self.host.clone(), port: self.port }.to_string()
    }

    /// The prefix of every key: `trader-{trader_id}`, followed by
    /// `:{instance_id}` when [`Config::use_instance_id`] is on.
    ///
    /// When [`Config::use_trader_prefix`] is off this is the empty string,
    /// and keys then have no trader prefix at all (`positions:P-1`).
    ///
    /// ```
    /// use tradecache::Config;
    ///
    /// let c = Config::builder().trader_id("T1");
    /// assert_eq!(c.trader_key(), "trader-T1");
    /// let c = c.instance_id("I1").use_instance_id(true);
    /// assert_eq!(c.trader_key(), "trader-T1:I1");
    /// assert_eq!(c.use_trader_prefix(false).trader_key(), "");
    /// ```
    pub fn trader_key(&self) -> String {
        if !self.use_trader_prefix {
            return String::new();
        }
        let mut key = format!("trader-{}", self.trader_id);
        if self.use_instance_id {
            if let Some(instance) = &self.instance_id {
                key.push(':');
                key.push_str(instance);
            }
        }
        key
    }

    /// Where this configuration connects, as a URL for logs, with the
    /// password replaced by `<redacted>`:
    ///
    /// - a server: `redis://user:<redacted>@host:6379/0` (`rediss://` with
    ///   TLS);
    /// - sentinels: `redis+sentinel://s1:26379,s2:26379/{master}/0`;
    /// - a cluster: `redis://n1:6379,n2:6379`.
    ///
    /// It is meant to be read, not parsed back.
    pub fn redacted_url(&self) -> String {
        let (scheme, userinfo) = (self.scheme(), self.userinfo());
        let join = |nodes: &[HostPort]| nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        if !self.sentinels.is_empty() {
            let master = self.sentinel_master.as_deref().unwrap_or("");
            format!("{scheme}+sentinel://{userinfo}{}/{master}/{}", join(&self.sentinels), self.db)
        } else if !self.cluster_nodes.is_empty() {
            format!("{scheme}://{userinfo}{}", join(&self.cluster_nodes))
        } else {
            self.server_url()
        }
    }
}

fn host_ports<I, H>(nodes: I) -> Vec<HostPort>
where
    I: IntoIterator<Item = (H, u16)>,
    H: Into<String>,
{
    nodes.into_iter().map(|(host, port)| HostPort { host: host.into(), port }).collect()
}

/// Checks that generated documentation matches what a table renders.
#[cfg(test)]
pub(crate) mod docs {
    use std::path::Path;

    /// Whether to write the files instead of checking them.
    fn writing() -> bool {
        std::env::var_os("TRADECACHE_WRITE_DOCS").is_some_and(|v| v == "1")
    }

    fn path(file: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(file)
    }

    /// `file` (relative to the crate) is `expected`.
    pub(crate) fn check_file(file: &str, expected: &str) {
        let found = std::fs::read_to_string(path(file)).unwrap_or_default();
        if found != expected && writing() {
            std::fs::write(path(file), expected).unwrap();
            return;
        }
        assert!(
            found == expected,
            "{file} differs from the table that renders it:\n{}",
            diff(expected, &found)
        );
    }

    /// The lines of `file` between the markers `BEGIN {name}` and
    /// `END {name}` (each on a line of its own, in a comment) are
    /// `expected`.
    pub(crate) fn check_block(file: &str, name: &str, expected: &str) {
        let text = std::fs::read_to_string(path(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let (begin, end) = (format!("BEGIN {name}"), format!("END {name}"));
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let start = lines.iter().position(|l| l.contains(&begin));
        let stop = lines.iter().position(|l| l.contains(&end));
        let (Some(start), Some(stop)) = (start, stop) else {
            panic!("{file}: no lines with {begin:?} and {end:?} around the generated part");
        };
        assert!(start < stop, "{file}: {end:?} before {begin:?}");
        let found: String = lines[start + 1..stop].concat();
        if found != expected && writing() {
            let new = [lines[..=start].concat(), expected.to_string(), lines[stop..].concat()].concat();
            std::fs::write(path(file), new).unwrap();
            return;
        }
        assert!(
            found == expected,
            "{file} (between {begin:?} and {end:?}) differs from the table that renders it \
             (TRADECACHE_WRITE_DOCS=1 cargo test docs_match rewrites it):\n{}",
            diff(expected, &found)
        );
    }

    /// A line diff: `-` lines the table renders and the file lacks, `+`
    /// lines the file has and the table does not render.
    pub(crate) fn diff(expected: &str, found: &str) -> String {
        let (a, b): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), found.lines().collect());
        // Longest common subsequence, from the end.
        let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for i in (0..a.len()).rev() {
            for j in (0..b.len()).rev() {
                lcs[i][j] =
                    if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
            }
        }
        let (mut i, mut j, mut out) = (0, 0, String::new());
        while i < a.len() || j < b.len() {
            if i < a.len() && j < b.len() && a[i] == b[j] {
                (i, j) = (i + 1, j + 1);
            } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
                out.push_str(&format!("+ {}\n", b[j]));
                j += 1;
            } else {
                out.push_str(&format!("- {}\n", a[i]));
                i += 1;
            }
        }
        out
    }

    #[test]
    fn diff_shows_changed_lines() {
        assert_eq!(diff("a\nb\nc\n", "a\nx\nc\n"), "+ x\n- b\n");
        assert_eq!(diff("a\n", "a\n"), "");
    }
}

#[cfg(test)]
pub(super) mod test_util {
    use std::collections::HashMap;

    use super::Config;
    use crate::error::ConfigError;

    pub(crate) const PASSWORD: &str = "hunter2-S3CRET";

    pub(crate) fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_vars(|k| map.get(k).cloned())
    }

    pub(crate) fn problems(r: Result<Config, ConfigError>) -> ConfigError {
        match r {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e,
        }
    }

    /// Asserts the password is nowhere in the error's Display or Debug.
    pub(crate) fn assert_no_secret(e: &ConfigError, secret: &str) {
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains(secret), "secret leaked: {shown}");
    }

    pub(crate) fn fields(e: &ConfigError) -> Vec<&str> {
        e.problems.iter().map(|p| p.field.as_str()).collect()
    }

    /// A config that fails validation with exactly one problem on `field`.
    pub(crate) fn assert_only(c: Config, field: &str) {
        let e = c.validate().expect_err(field);
        assert_eq!(fields(&e), vec![field], "{e}");
        assert!(!e.problems[0].allowed.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        Config::builder().validate().unwrap();
        let d = Config::debug();
        assert_eq!(d.encoding, Encoding::Json);
        assert!(d.timestamps_as_iso8601);
        d.validate().unwrap();
    }

    #[test]
    fn setters_set_every_field() {
        let ms = Duration::from_millis;
        let c = Config::builder()
            .host("redis-1")
            .port(6380)
            .username("u")
            .password("p")
            .db(3)
            .tls(true)
            .tls_ca("/ca.pem")
            .tls_cert("/c.pem")
            .tls_key("/k.pem")
            .sentinels([("s1", 26379), ("s2", 26380)])
            .sentinel_master("mymaster")
            .cluster_nodes(vec![(String::from("n1"), 7000)])
            .connect_timeout(ms(1))
            .response_timeout(ms(2))
            .connect_attempts(7)
            .open_backoff(ms(3), ms(4))
            .reconnect_backoff(ms(5), ms(6))
            .trader_id("T1")
            .instance_id("I1")
            .use_trader_prefix(false)
            .use_instance_id(true)
            .encoding(Encoding::Json)
            .timestamps_as_iso8601(true)
            .flush_on_start(true)
            .persist_account_events(false)
            .max_value_bytes(10)
            .writer_id("w2")
            .channel_capacity(11)
            .overflow(OverflowPolicy::Block { timeout: ms(7) })
            .max_batch(12)
            .max_pending_events(13)
            .buffer_interval_ms(8)
            .idle_poll(ms(9))
            .idle_park_after(ms(10))
            .close_timeout(ms(11))
            .replica_wait(Some((1, ms(12))))
            .load_chunk(14)
            .strict_load(true)
            .tick_capacity(15)
            .bar_capacity(16)
            .retain_closed_for(Some(ms(17_000)))
            .purge_batch(18)
            .max_account_events(Some(19))
            .heartbeat_interval(Some(ms(20)))
            .publish_events(true)
            .stream_max_len(21)
            .stream_max_age(Some(ms(22)));
        assert_eq!((c.host.as_str(), c.port, c.db, c.tls), ("redis-1", 6380, 3, true));
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password, Some(Secret("p".into())));
        assert_eq!(c.tls_ca, Some(PathBuf::from("/ca.pem")));
        assert_eq!(c.tls_cert, Some(PathBuf::from("/c.pem")));
        assert_eq!(c.tls_key, Some(PathBuf::from("/k.pem")));
        assert_eq!(c.sentinels.len(), 2);
        assert_eq!(c.sentinels[1], HostPort { host: "s2".into(), port: 26380 });
        assert_eq!(c.sentinel_master.as_deref(), Some("mymaster"));
        assert_eq!(c.cluster_nodes, vec![HostPort { host: "n1".into(), port: 7000 }]);
        assert_eq!((c.connect_timeout, c.response_timeout), (ms(1), ms(2)));
        assert_eq!(c.connect_attempts, 7);
        assert_eq!((c.open_backoff_min, c.open_backoff_max), (ms(3), ms(4)));
        assert_eq!((c.reconnect_backoff_min, c.reconnect_backoff_max), (ms(5), ms(6)));
        assert_eq!((c.trader_id.as_str(), c.instance_id.as_deref()), ("T1", Some("I1")));
        assert!(!c.use_trader_prefix && c.use_instance_id);
        assert_eq!(c.encoding, Encoding::Json);
        assert!(c.timestamps_as_iso8601 && c.flush_on_start && !c.persist_account_events);
        assert_eq!((c.max_value_bytes, c.writer_id.as_str()), (10, "w2"));
        assert_eq!((c.channel_capacity, c.max_batch, c.max_pending_events), (11, 12, 13));
        assert_eq!(c.overflow, OverflowPolicy::Block { timeout: ms(7) });
        assert_eq!((c.buffer_interval, c.idle_poll, c.idle_park_after), (ms(8), ms(9), ms(10)));
        assert_eq!(c.close_timeout, ms(11));
        assert_eq!(c.replica_wait, Some((1, ms(12))));
        assert_eq!((c.load_chunk, c.strict_load), (14, true));
        assert_eq!((c.tick_capacity, c.bar_capacity), (15, 16));
        assert_eq!((c.retain_closed_for, c.purge_batch), (Some(ms(17_000)), 18));
        assert_eq!((c.max_account_events, c.heartbeat_interval), (Some(19), Some(ms(20))));
        assert!(c.publish_events);
        assert_eq!((c.stream_max_len, c.stream_max_age), (21, Some(ms(22))));
        // Empty credentials clear them.
        let c = c.username("").password("");
        assert_eq!((c.username, c.password), (None, None));
    }

    #[test]
    fn trader_key_and_addr() {
        let c = Config::builder().trader_id("TESTER-001");
        assert_eq!(c.trader_key(), "trader-TESTER-001");
        let c = c.instance_id("abc");
        assert_eq!(c.trader_key(), "trader-TESTER-001", "instance id unused unless enabled");
        let c = c.use_instance_id(true);
        assert_eq!(c.trader_key(), "trader-TESTER-001:abc");
        assert_eq!(c.clone().use_trader_prefix(false).trader_key(), "");
        assert_eq!(c.addr(), "127.0.0.1:6379");
        assert_eq!(c.host("::1").port(7000).addr(), "[::1]:7000");
    }

    #[test]
    fn redacted_url_forms() {
        let c = Config::builder().host("h").port(1).db(2);
        assert_eq!(c.redacted_url(), "redis://h:1/2");
        let c = c.tls(true).username("us er").password(PASSWORD);
        assert_eq!(c.redacted_url(), "rediss://us%20er:<redacted>@h:1/2");
        let c = Config::builder().password(PASSWORD);
        assert_eq!(c.redacted_url(), "redis://:<redacted>@127.0.0.1:6379/0");
        let c = Config::builder().sentinels([("s1", 26379), ("::1", 26380)]).sentinel_master("m");
        assert_eq!(c.redacted_url(), "redis+sentinel://s1:26379,[::1]:26380/m/0");
        let c = Config::builder().cluster_nodes([("n1", 7000), ("n2", 7001)]);
        assert_eq!(c.redacted_url(), "redis://n1:7000,n2:7001");
    }

    #[test]
    fn debug_hides_password() {
        let c = Config::builder().username("alice").password(PASSWORD);
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert!(shown.contains("alice"));
    }
}
