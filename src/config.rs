//! Configuration: builder, environment, validation.
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

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{ConfigError, ConfigProblem};
use crate::ident::{self, IdError};

/// How values are encoded in Redis.
///
/// Parses from `"msgpack"` (or `"messagepack"`) and `"json"`, ignoring case:
///
/// ```
/// use tradecache::Encoding;
///
/// assert_eq!("json".parse::<Encoding>().unwrap(), Encoding::Json);
/// assert_eq!("MsgPack".parse::<Encoding>().unwrap(), Encoding::MsgPack);
/// assert!("yaml".parse::<Encoding>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// MessagePack maps with field names (the default): compact, and readable
    /// by any msgpack implementation.
    #[default]
    MsgPack,
    /// JSON, for debugging.
    Json,
}

impl Encoding {
    /// The name used in `CACHE_ENCODING`: `"msgpack"` or `"json"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::MsgPack => "msgpack",
            Encoding::Json => "json",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Encoding {
    type Err = ConfigError;

    /// Parses `msgpack` (or `messagepack`) or `json`, ignoring case and
    /// surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("msgpack") || t.eq_ignore_ascii_case("messagepack") {
            Ok(Encoding::MsgPack)
        } else if t.eq_ignore_ascii_case("json") {
            Ok(Encoding::Json)
        } else {
            Err(ConfigError::one("encoding", s, ENCODING_ALLOWED))
        }
    }
}

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

/// A `host:port` pair (sentinels, cluster seed nodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl fmt::Display for HostPort {
    /// `host:port`, with an IPv6 address in brackets (`[::1]:6379`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
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
        }
    }
}

// ---------------------------------------------------------------------------
// Constants and texts shared by parsing and validation.

/// The port of a `redis://` URL without one.
const DEFAULT_PORT: u16 = 6379;
/// The port of a sentinel in `REDIS_SENTINELS` without one.
const DEFAULT_SENTINEL_PORT: u16 = 26379;
/// Redis's own limit on a string value.
const REDIS_MAX_VALUE_BYTES: usize = 512 * 1024 * 1024;
/// The block timeout of `CACHE_OVERFLOW=block` without `CACHE_BLOCK_TIMEOUT_MS`.
const DEFAULT_BLOCK_TIMEOUT: Duration = Duration::from_millis(10);
/// The `WAIT` timeout of `CACHE_REPLICA_WAIT` without
/// `CACHE_REPLICA_WAIT_TIMEOUT_MS`.
const DEFAULT_REPLICA_WAIT_TIMEOUT: Duration = Duration::from_millis(100);

const REDACTED: &str = "<redacted>";
const ENCODING_ALLOWED: &str = "one of: msgpack, json";
const PORT_ALLOWED: &str = "a port number from 1 to 65535";
const BOOL_ALLOWED: &str = "one of: true, false, 1, 0, yes, no";
const ID_CHARS: &str = "ids may not contain ':', '{', '}', whitespace or control characters";

/// Every environment variable [`Config::from_vars`] reads.
const ENV_VARS: &[&str] = &[
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_USERNAME",
    "REDIS_PASSWORD",
    "REDIS_DB",
    "REDIS_SSL",
    "REDIS_TIMEOUT",
    "REDIS_TLS_CA",
    "REDIS_TLS_CERT",
    "REDIS_TLS_KEY",
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_MASTER",
    "REDIS_CLUSTER",
    "CACHE_TRADER_ID",
    "CACHE_INSTANCE_ID",
    "CACHE_USE_TRADER_PREFIX",
    "CACHE_USE_INSTANCE_ID",
    "CACHE_ENCODING",
    "CACHE_TIMESTAMPS_AS_ISO8601",
    "CACHE_FLUSH_ON_START",
    "CACHE_PERSIST_ACCOUNT_EVENTS",
    "CACHE_MAX_VALUE_BYTES",
    "CACHE_WRITER_ID",
    "CACHE_BUFFER_INTERVAL_MS",
    "CACHE_CHANNEL_CAPACITY",
    "CACHE_OVERFLOW",
    "CACHE_BLOCK_TIMEOUT_MS",
    "CACHE_MAX_BATCH",
    "CACHE_MAX_PENDING_EVENTS",
    "CACHE_MAX_PENDING_SNAPSHOTS",
    "CACHE_MAX_BATCH_BYTES",
    "CACHE_CONNECT_ATTEMPTS",
    "CACHE_BACKOFF_MIN_MS",
    "CACHE_BACKOFF_MAX_MS",
    "CACHE_RECONNECT_BACKOFF_MIN_MS",
    "CACHE_RECONNECT_BACKOFF_MAX_MS",
    "CACHE_IDLE_POLL_US",
    "CACHE_IDLE_PARK_AFTER_MS",
    "CACHE_CLOSE_TIMEOUT_MS",
    "CACHE_REPLICA_WAIT",
    "CACHE_REPLICA_WAIT_TIMEOUT_MS",
    "CACHE_LOAD_CHUNK",
    "CACHE_STRICT_LOAD",
    "CACHE_TICK_CAPACITY",
    "CACHE_BAR_CAPACITY",
    "CACHE_RETAIN_CLOSED_SECS",
    "CACHE_PURGE_BATCH",
    "CACHE_MAX_ACCOUNT_EVENTS",
    "CACHE_HEARTBEAT_MS",
    "CACHE_PUBLISH_EVENTS",
    "CACHE_STREAM_MAXLEN",
    "CACHE_STREAM_MAX_AGE_SECS",
];

/// Collects problems; never stops at the first.
#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn push(&mut self, field: &str, value: impl Into<String>, allowed: impl Into<String>) {
        self.0.push(ConfigProblem { field: field.to_string(), value: value.into(), allowed: allowed.into() });
    }

    fn finish<T>(self, ok: T) -> Result<T, ConfigError> {
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
    /// Defaults to `127.0.0.1`.
    #[must_use]
    pub fn host(mut self, v: impl Into<String>) -> Self {
        self.host = v.into();
        self
    }

    /// The Redis server's port, from 1 to 65535.
    ///
    /// Defaults to `6379`.
    #[must_use]
    pub fn port(mut self, v: u16) -> Self {
        self.port = v;
        self
    }

    /// The ACL user to log in as (needs a password too); an empty string
    /// clears it.
    ///
    /// Defaults to `None` (the `default` user).
    #[must_use]
    pub fn username(mut self, v: impl Into<String>) -> Self {
        let v = v.into();
        self.username = (!v.is_empty()).then_some(v);
        self
    }

    /// The password to log in with (`AUTH`); an empty string clears it. It is
    /// never shown in `Debug` output, logs or errors.
    ///
    /// Defaults to `None`.
    #[must_use]
    pub fn password(mut self, v: impl Into<String>) -> Self {
        let v = v.into();
        self.password = (!v.is_empty()).then_some(Secret(v));
        self
    }

    /// The database number (`SELECT`); must be 0 in cluster mode.
    ///
    /// Defaults to `0`.
    #[must_use]
    pub fn db(mut self, v: i64) -> Self {
        self.db = v;
        self
    }

    /// Whether to connect with TLS (needs the crate's `tls` feature).
    ///
    /// Defaults to `false`.
    #[must_use]
    pub fn tls(mut self, v: bool) -> Self {
        self.tls = v;
        self
    }

    /// A PEM file of CA certificates to trust instead of the system's roots
    /// (only with `tls`).
    ///
    /// Defaults to `None`.
    #[must_use]
    pub fn tls_ca(mut self, v: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(v.into());
        self
    }

    /// A PEM client certificate for mutual TLS (only with `tls`, and with
    /// [`Config::tls_key`]).
    ///
    /// Defaults to `None`.
    #[must_use]
    pub fn tls_cert(mut self, v: impl Into<PathBuf>) -> Self {
        self.tls_cert = Some(v.into());
        self
    }

    /// The PEM private key of [`Config::tls_cert`] (only with `tls`).
    ///
    /// Defaults to `None`.
    #[must_use]
    pub fn tls_key(mut self, v: impl Into<PathBuf>) -> Self {
        self.tls_key = Some(v.into());
        self
    }

    /// Sentinels to ask for the current master (with
    /// [`Config::sentinel_master`]); replaces any set before. When set,
    /// `host` and `port` are not used.
    ///
    /// Defaults to `[]` (no sentinels).
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
    /// Defaults to `None`.
    #[must_use]
    pub fn sentinel_master(mut self, v: impl Into<String>) -> Self {
        self.sentinel_master = Some(v.into());
        self
    }

    /// Seed nodes of a Redis Cluster; replaces any set before. When set,
    /// `host` and `port` are not used, and the trader key becomes a hash tag
    /// (`{trader-T1}:…`) so that one trader's keys share a slot.
    ///
    /// Defaults to `[]` (no cluster).
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
    /// Defaults to `2s`.
    #[must_use]
    pub fn connect_timeout(mut self, v: Duration) -> Self {
        self.connect_timeout = v;
        self
    }

    /// The longest to wait for a reply on an established connection (the
    /// socket's read and write timeouts).
    ///
    /// Defaults to `2s`.
    #[must_use]
    pub fn response_timeout(mut self, v: Duration) -> Self {
        self.response_timeout = v;
        self
    }

    /// How many times [`crate::Cache::open`] tries to connect before it
    /// fails; at least 1.
    ///
    /// Defaults to `5`.
    #[must_use]
    pub fn connect_attempts(mut self, v: u32) -> Self {
        self.connect_attempts = v;
        self
    }

    /// The bounds of the exponential backoff (with jitter) between connection
    /// attempts in [`crate::Cache::open`]; `min` may not exceed `max`.
    ///
    /// Defaults to `(1s, 32s)`.
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
    /// Defaults to `(50ms, 2s)`.
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
    /// Defaults to `TRADER-001`.
    #[must_use]
    pub fn trader_id(mut self, v: impl Into<String>) -> Self {
        self.trader_id = v.into();
        self
    }

    /// The instance id, added to the trader key when
    /// [`Config::use_instance_id`] is on (`trader-T1:{instance_id}:…`). Same
    /// character rules as the trader id.
    ///
    /// Defaults to `None`.
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
    /// Defaults to `true`.
    #[must_use]
    pub fn use_trader_prefix(mut self, v: bool) -> Self {
        self.use_trader_prefix = v;
        self
    }

    /// Whether the trader key includes the instance id
    /// (`trader-T1:{instance_id}:…`); needs [`Config::instance_id`] and the
    /// trader prefix.
    ///
    /// Defaults to `false`.
    #[must_use]
    pub fn use_instance_id(mut self, v: bool) -> Self {
        self.use_instance_id = v;
        self
    }

    /// How values are encoded.
    ///
    /// Defaults to `Encoding::MsgPack`.
    #[must_use]
    pub fn encoding(mut self, v: Encoding) -> Self {
        self.encoding = v;
        self
    }

    /// Whether timestamps are written as ISO 8601 strings instead of
    /// nanoseconds; only with [`Encoding::Json`].
    ///
    /// Defaults to `false`.
    #[must_use]
    pub fn timestamps_as_iso8601(mut self, v: bool) -> Self {
        self.timestamps_as_iso8601 = v;
        self
    }

    /// Whether [`crate::Cache::open`] deletes this trader's keys (never the
    /// whole database) before starting.
    ///
    /// Defaults to `false`.
    #[must_use]
    pub fn flush_on_start(mut self, v: bool) -> Self {
        self.flush_on_start = v;
        self
    }

    /// Whether account events are appended to `accounts:{id}:events`
    /// (otherwise only the latest account snapshot is kept).
    ///
    /// Defaults to `true`.
    #[must_use]
    pub fn persist_account_events(mut self, v: bool) -> Self {
        self.persist_account_events = v;
        self
    }

    /// The largest encoded value accepted, in bytes: from 1 to 512 MiB
    /// (Redis's own limit).
    ///
    /// Defaults to `524288` (512 KiB).
    #[must_use]
    pub fn max_value_bytes(mut self, v: usize) -> Self {
        self.max_value_bytes = v;
        self
    }

    /// The name of this writer's commit marker (`…:writer:{writer_id}`),
    /// which settles in-doubt batches after a reconnect. Two processes
    /// writing the same trader's keys need different writer ids.
    ///
    /// Defaults to `main`.
    #[must_use]
    pub fn writer_id(mut self, v: impl Into<String>) -> Self {
        self.writer_id = v.into();
        self
    }

    // --- pipeline ---

    /// How many writes may wait in the channel to the flusher; at least 1.
    ///
    /// Defaults to `65536`.
    #[must_use]
    pub fn channel_capacity(mut self, v: usize) -> Self {
        self.channel_capacity = v;
        self
    }

    /// What a write does when the channel is full.
    ///
    /// Defaults to `OverflowPolicy::Reject`.
    #[must_use]
    pub fn overflow(mut self, v: OverflowPolicy) -> Self {
        self.overflow = v;
        self
    }

    /// The most messages written in one `MULTI … EXEC` batch; at least 1.
    ///
    /// Defaults to `4096`.
    #[must_use]
    pub fn max_batch(mut self, v: usize) -> Self {
        self.max_batch = v;
        self
    }

    /// The most events the flusher holds while Redis is unreachable before
    /// it stops draining the channel (and writes start to overflow); at
    /// least 1.
    ///
    /// Defaults to `65536`.
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
    /// Defaults to `262144`.
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
    /// Defaults to `16777216` (16 MiB).
    #[must_use]
    pub fn max_batch_bytes(mut self, v: usize) -> Self {
        self.max_batch_bytes = v;
        self
    }

    /// How long the flusher keeps collecting after the first message of a
    /// batch, for fewer, larger batches; zero writes at once.
    ///
    /// Defaults to `0s`.
    #[must_use]
    pub fn buffer_interval(mut self, v: Duration) -> Self {
        self.buffer_interval = v;
        self
    }

    /// [`Config::buffer_interval`] in milliseconds (the spec's
    /// `buffer_interval_ms`).
    ///
    /// Defaults to `0`.
    #[must_use]
    pub fn buffer_interval_ms(self, ms: u64) -> Self {
        self.buffer_interval(Duration::from_millis(ms))
    }

    /// How long the idle flusher sleeps between polls of the channel, so
    /// that a write rarely has to wake a parked thread; zero spins. It is
    /// the most a write can wait to be noticed, so at most 1 s.
    ///
    /// Defaults to `100µs`.
    #[must_use]
    pub fn idle_poll(mut self, v: Duration) -> Self {
        self.idle_poll = v;
        self
    }

    /// After how long without writes the flusher stops polling and parks
    /// until the next write.
    ///
    /// Defaults to `1s`.
    #[must_use]
    pub fn idle_park_after(mut self, v: Duration) -> Self {
        self.idle_park_after = v;
        self
    }

    /// How long `Drop` waits for the final flush (as
    /// [`crate::Cache::close`] does with its own timeout).
    ///
    /// Defaults to `5s`.
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
    /// Defaults to `None`.
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
    /// Defaults to `1000`.
    #[must_use]
    pub fn load_chunk(mut self, v: usize) -> Self {
        self.load_chunk = v;
        self
    }

    /// Whether [`crate::Cache::load`] fails on a value it cannot decode
    /// (otherwise it skips the value and reports it).
    ///
    /// Defaults to `false`.
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
    /// Defaults to `10000`.
    #[must_use]
    pub fn tick_capacity(mut self, v: usize) -> Self {
        self.tick_capacity = v;
        self
    }

    /// How many bars each bar series (per bar type) keeps in Redis, as
    /// [`Config::tick_capacity`] for ticks. At least 1.
    ///
    /// Defaults to `10000`.
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
    /// Defaults to `None`.
    #[must_use]
    pub fn retain_closed_for(mut self, v: Option<Duration>) -> Self {
        self.retain_closed_for = v;
        self
    }

    /// How many closed entities one purge step deletes (one transaction
    /// between two batches of writes), at least 1.
    ///
    /// Defaults to `500`.
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
    /// Defaults to `None`.
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
    /// Defaults to `None`.
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
    /// Defaults to `false`.
    #[must_use]
    pub fn publish_events(mut self, v: bool) -> Self {
        self.publish_events = v;
        self
    }

    /// The length each event stream is trimmed to (`XADD … MAXLEN ~ n`:
    /// Redis trims whole nodes, so a stream may hold a little more). At
    /// least 1.
    ///
    /// Defaults to `100000`.
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
    /// Defaults to `None`.
    #[must_use]
    pub fn stream_max_age(mut self, v: Option<Duration>) -> Self {
        self.stream_max_age = v;
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
        let scheme = if self.tls { "rediss" } else { "redis" };
        let userinfo = match (&self.username, &self.password) {
            (Some(u), Some(_)) => format!("{}:{REDACTED}@", percent_encode(u)),
            (None, Some(_)) => format!(":{REDACTED}@"),
            (Some(u), None) => format!("{}@", percent_encode(u)),
            (None, None) => String::new(),
        };
        let join = |nodes: &[HostPort]| nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        if !self.sentinels.is_empty() {
            let master = self.sentinel_master.as_deref().unwrap_or("");
            format!("{scheme}+sentinel://{userinfo}{}/{master}/{}", join(&self.sentinels), self.db)
        } else if !self.cluster_nodes.is_empty() {
            format!("{scheme}://{userinfo}{}", join(&self.cluster_nodes))
        } else {
            format!("{scheme}://{userinfo}{}/{}", self.addr(), self.db)
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

// ---------------------------------------------------------------------------
// Environment and URLs.

impl Config {
    /// Reads the configuration from the process environment; see
    /// [`Config::from_vars`] for the variables and their meaning.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), tradecache::ConfigError> {
    /// let config = tradecache::Config::from_env()?.trader_id("TESTER-001");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] listing every variable that cannot be used (including
    /// values that are not valid UTF-8), with what is allowed.
    pub fn from_env() -> Result<Config, ConfigError> {
        let mut problems = Problems::default();
        for name in ENV_VARS {
            if let Err(std::env::VarError::NotUnicode(_)) = std::env::var(name) {
                problems.push(name, "<not valid UTF-8>", "valid UTF-8 text");
            }
        }
        match Config::from_vars(|name| std::env::var(name).ok()) {
            Ok(config) => problems.finish(config),
            Err(e) => {
                problems.0.extend(e.problems);
                problems.finish(Config::default())
            }
        }
    }

    /// Builds a configuration from variables looked up by `get` (for
    /// example a `HashMap`, or `std::env::var` as [`Config::from_env`] does),
    /// starting from the defaults. A variable that is unset or empty keeps
    /// its default. Values are trimmed, except passwords.
    ///
    /// | variable | sets | format |
    /// | --- | --- | --- |
    /// | `REDIS_URL` | host, port, username, password, db, tls | `redis[s]://[user[:password]@]host[:port][/db]`, see [`Config::from_url`] |
    /// | `REDIS_HOST` | [`host`](Config::host) | host name, IPv4 or IPv6 address |
    /// | `REDIS_PORT` | [`port`](Config::port) | 1–65535 |
    /// | `REDIS_USERNAME` | [`username`](Config::username) | text |
    /// | `REDIS_PASSWORD` | [`password`](Config::password) | text (not trimmed) |
    /// | `REDIS_DB` | [`db`](Config::db) | 0 or more |
    /// | `REDIS_SSL` | [`tls`](Config::tls) | boolean |
    /// | `REDIS_TIMEOUT` | connect and response timeouts | seconds, may be fractional (`0.5`) |
    /// | `REDIS_TLS_CA`, `REDIS_TLS_CERT`, `REDIS_TLS_KEY` | [`tls_ca`](Config::tls_ca), [`tls_cert`](Config::tls_cert), [`tls_key`](Config::tls_key) | file paths |
    /// | `REDIS_SENTINELS` | [`sentinels`](Config::sentinels) | `host:port,host:port` (port defaults to 26379; IPv6 as `[::1]:26379`) |
    /// | `REDIS_SENTINEL_MASTER` | [`sentinel_master`](Config::sentinel_master) | name |
    /// | `REDIS_CLUSTER` | [`cluster_nodes`](Config::cluster_nodes) | `host:port,host:port` (port defaults to 6379) |
    /// | `CACHE_TRADER_ID`, `CACHE_INSTANCE_ID`, `CACHE_WRITER_ID` | [`trader_id`](Config::trader_id), [`instance_id`](Config::instance_id), [`writer_id`](Config::writer_id) | ids |
    /// | `CACHE_USE_TRADER_PREFIX`, `CACHE_USE_INSTANCE_ID` | [`use_trader_prefix`](Config::use_trader_prefix), [`use_instance_id`](Config::use_instance_id) | boolean |
    /// | `CACHE_ENCODING` | [`encoding`](Config::encoding) | `msgpack` or `json` |
    /// | `CACHE_TIMESTAMPS_AS_ISO8601`, `CACHE_FLUSH_ON_START`, `CACHE_PERSIST_ACCOUNT_EVENTS`, `CACHE_STRICT_LOAD` | the setters of the same names | boolean |
    /// | `CACHE_MAX_VALUE_BYTES` | [`max_value_bytes`](Config::max_value_bytes) | 1 to 536870912 |
    /// | `CACHE_BUFFER_INTERVAL_MS` | [`buffer_interval`](Config::buffer_interval) | milliseconds |
    /// | `CACHE_CHANNEL_CAPACITY`, `CACHE_MAX_BATCH`, `CACHE_MAX_PENDING_EVENTS`, `CACHE_MAX_PENDING_SNAPSHOTS`, `CACHE_MAX_BATCH_BYTES`, `CACHE_LOAD_CHUNK`, `CACHE_TICK_CAPACITY`, `CACHE_BAR_CAPACITY` | the setters of the same names | 1 or more |
    /// | `CACHE_OVERFLOW` | [`overflow`](Config::overflow) | `reject` or `block` |
    /// | `CACHE_BLOCK_TIMEOUT_MS` | the timeout of `block` | milliseconds, 1 or more (default 10; needs `CACHE_OVERFLOW=block`) |
    /// | `CACHE_CONNECT_ATTEMPTS` | [`connect_attempts`](Config::connect_attempts) | 1 or more |
    /// | `CACHE_BACKOFF_MIN_MS`, `CACHE_BACKOFF_MAX_MS` | [`open_backoff`](Config::open_backoff) | milliseconds |
    /// | `CACHE_RECONNECT_BACKOFF_MIN_MS`, `CACHE_RECONNECT_BACKOFF_MAX_MS` | [`reconnect_backoff`](Config::reconnect_backoff) | milliseconds |
    /// | `CACHE_IDLE_POLL_US` | [`idle_poll`](Config::idle_poll) | microseconds (at most 1000000, checked by [`Config::validate`]) |
    /// | `CACHE_IDLE_PARK_AFTER_MS` | [`idle_park_after`](Config::idle_park_after) | milliseconds |
    /// | `CACHE_CLOSE_TIMEOUT_MS` | [`close_timeout`](Config::close_timeout) | milliseconds |
    /// | `CACHE_REPLICA_WAIT`, `CACHE_REPLICA_WAIT_TIMEOUT_MS` | [`replica_wait`](Config::replica_wait) | replicas (0 = off); milliseconds, 1 or more (default 100) |
    /// | `CACHE_RETAIN_CLOSED_SECS` | [`retain_closed_for`](Config::retain_closed_for) | seconds (0 = off) |
    /// | `CACHE_PURGE_BATCH`, `CACHE_STREAM_MAXLEN` | [`purge_batch`](Config::purge_batch), [`stream_max_len`](Config::stream_max_len) | 1 or more |
    /// | `CACHE_MAX_ACCOUNT_EVENTS` | [`max_account_events`](Config::max_account_events) | a count (0 = keep all) |
    /// | `CACHE_HEARTBEAT_MS` | [`heartbeat_interval`](Config::heartbeat_interval) | milliseconds (0 = off) |
    /// | `CACHE_PUBLISH_EVENTS` | [`publish_events`](Config::publish_events) | boolean |
    /// | `CACHE_STREAM_MAX_AGE_SECS` | [`stream_max_age`](Config::stream_max_age) | seconds (0 = off) |
    ///
    /// Booleans are `true`, `false`, `1`, `0`, `yes` or `no` (any case).
    /// `REDIS_URL` is applied first; the other `REDIS_*` variables then
    /// override its parts, so a password can come from its own variable:
    /// `REDIS_URL=redis://cache-1:6379/2` with `REDIS_PASSWORD` set.
    ///
    /// Each variable is checked on its own here; rules that involve several
    /// settings (a username needs a password, …) are checked by
    /// [`Config::validate`], which [`crate::Cache::open`] calls.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use tradecache::Config;
    ///
    /// let vars = HashMap::from([
    ///     ("REDIS_URL", "rediss://engine:p%40ss@redis.internal:6380/2"),
    ///     ("CACHE_TRADER_ID", "TESTER-001"),
    ///     ("CACHE_ENCODING", "json"),
    /// ]);
    /// let config = Config::from_vars(|k| vars.get(k).map(|v| v.to_string())).unwrap();
    /// assert_eq!(config.redacted_url(), "rediss://engine:<redacted>@redis.internal:6380/2");
    ///
    /// let vars = HashMap::from([("REDIS_PORT", "70000"), ("CACHE_ENCODING", "yaml")]);
    /// let err = Config::from_vars(|k| vars.get(k).map(|v| v.to_string())).unwrap_err();
    /// assert!(err.mentions("REDIS_PORT") && err.mentions("CACHE_ENCODING"));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] with one [`ConfigProblem`] per unusable variable (or
    /// per problem in `REDIS_URL`), naming the variable, the bad value
    /// (never a password) and what is allowed.
    pub fn from_vars<F: Fn(&str) -> Option<String>>(get: F) -> Result<Config, ConfigError> {
        let mut env = Env { get, problems: Problems::default() };
        let mut c = Config::default();

        // --- connection ---
        if let Some(url) = env.text("REDIS_URL") {
            apply_url(&mut c, &url, "REDIS_URL", &mut env.problems);
        }
        if let Some(host) = env.text("REDIS_HOST") {
            if let Some(allowed) = host_problem(&host) {
                env.problems.push("REDIS_HOST", host.as_str(), allowed);
            }
            c.host = host;
        }
        if let Some(port) = env.text("REDIS_PORT") {
            match parse_port(&port) {
                Ok(port) => c.port = port,
                Err(allowed) => env.problems.push("REDIS_PORT", port, allowed),
            }
        }
        if let Some(user) = env.text("REDIS_USERNAME") {
            c.username = Some(user);
        }
        if let Some(password) = (env.get)("REDIS_PASSWORD").filter(|p| !p.is_empty()) {
            c.password = Some(Secret(password));
        }
        if let Some(db) = env.int("REDIS_DB", 0, i64::MAX as u64, "a database number, 0 or more") {
            c.db = db as i64;
        }
        if let Some(tls) = env.boolean("REDIS_SSL") {
            c.tls = tls;
        }
        if let Some(t) = env.seconds("REDIS_TIMEOUT") {
            c.connect_timeout = t;
            c.response_timeout = t;
        }
        if let Some(path) = env.text("REDIS_TLS_CA") {
            c.tls_ca = Some(path.into());
        }
        if let Some(path) = env.text("REDIS_TLS_CERT") {
            c.tls_cert = Some(path.into());
        }
        if let Some(path) = env.text("REDIS_TLS_KEY") {
            c.tls_key = Some(path.into());
        }
        if let Some(nodes) = env.host_list("REDIS_SENTINELS", DEFAULT_SENTINEL_PORT) {
            c.sentinels = nodes;
        }
        if let Some(master) = env.text("REDIS_SENTINEL_MASTER") {
            if master.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
                env.problems.push(
                    "REDIS_SENTINEL_MASTER",
                    master.as_str(),
                    "a master name without whitespace",
                );
            }
            c.sentinel_master = Some(master);
        }
        if let Some(nodes) = env.host_list("REDIS_CLUSTER", DEFAULT_PORT) {
            c.cluster_nodes = nodes;
        }
        if let Some(n) = env.int("CACHE_CONNECT_ATTEMPTS", 1, u32::MAX.into(), "1 or more") {
            c.connect_attempts = n as u32;
        }
        if let Some(d) = env.millis("CACHE_BACKOFF_MIN_MS", 0) {
            c.open_backoff_min = d;
        }
        if let Some(d) = env.millis("CACHE_BACKOFF_MAX_MS", 0) {
            c.open_backoff_max = d;
        }
        if let Some(d) = env.millis("CACHE_RECONNECT_BACKOFF_MIN_MS", 0) {
            c.reconnect_backoff_min = d;
        }
        if let Some(d) = env.millis("CACHE_RECONNECT_BACKOFF_MAX_MS", 0) {
            c.reconnect_backoff_max = d;
        }

        // --- keys and values ---
        if let Some(id) = env.id("CACHE_TRADER_ID") {
            c.trader_id = id;
        }
        if let Some(id) = env.id("CACHE_INSTANCE_ID") {
            c.instance_id = Some(id);
        }
        if let Some(id) = env.id("CACHE_WRITER_ID") {
            c.writer_id = id;
        }
        if let Some(v) = env.boolean("CACHE_USE_TRADER_PREFIX") {
            c.use_trader_prefix = v;
        }
        if let Some(v) = env.boolean("CACHE_USE_INSTANCE_ID") {
            c.use_instance_id = v;
        }
        if let Some(text) = env.text("CACHE_ENCODING") {
            match text.parse() {
                Ok(encoding) => c.encoding = encoding,
                Err(_) => env.problems.push("CACHE_ENCODING", text, ENCODING_ALLOWED),
            }
        }
        if let Some(v) = env.boolean("CACHE_TIMESTAMPS_AS_ISO8601") {
            c.timestamps_as_iso8601 = v;
        }
        if let Some(v) = env.boolean("CACHE_FLUSH_ON_START") {
            c.flush_on_start = v;
        }
        if let Some(v) = env.boolean("CACHE_PERSIST_ACCOUNT_EVENTS") {
            c.persist_account_events = v;
        }
        if let Some(n) = env.int(
            "CACHE_MAX_VALUE_BYTES",
            1,
            REDIS_MAX_VALUE_BYTES as u64,
            "from 1 to 536870912 bytes (Redis's limit)",
        ) {
            c.max_value_bytes = n as usize;
        }

        // --- pipeline ---
        if let Some(n) = env.count("CACHE_CHANNEL_CAPACITY") {
            c.channel_capacity = n;
        }
        let block_timeout = env.millis("CACHE_BLOCK_TIMEOUT_MS", 1);
        match env.text("CACHE_OVERFLOW") {
            Some(p) if p.eq_ignore_ascii_case("block") => {
                let timeout = block_timeout.unwrap_or(DEFAULT_BLOCK_TIMEOUT);
                c.overflow = OverflowPolicy::Block { timeout };
            }
            Some(p) if p.eq_ignore_ascii_case("reject") => c.overflow = OverflowPolicy::Reject,
            Some(p) => env.problems.push("CACHE_OVERFLOW", p, "one of: reject, block"),
            None => {}
        }
        if !matches!(c.overflow, OverflowPolicy::Block { .. }) {
            if let (Some(text), Some(_)) = (env.text("CACHE_BLOCK_TIMEOUT_MS"), block_timeout) {
                env.problems.push("CACHE_BLOCK_TIMEOUT_MS", text, "only with CACHE_OVERFLOW=block");
            }
        }
        if let Some(n) = env.count("CACHE_MAX_BATCH") {
            c.max_batch = n;
        }
        if let Some(n) = env.count("CACHE_MAX_PENDING_EVENTS") {
            c.max_pending_events = n;
        }
        if let Some(n) = env.count("CACHE_MAX_PENDING_SNAPSHOTS") {
            c.max_pending_snapshots = n;
        }
        if let Some(n) = env.count("CACHE_MAX_BATCH_BYTES") {
            c.max_batch_bytes = n;
        }
        if let Some(d) = env.millis("CACHE_BUFFER_INTERVAL_MS", 0) {
            c.buffer_interval = d;
        }
        if let Some(us) = env.int("CACHE_IDLE_POLL_US", 0, u64::MAX, "microseconds, 0 or more") {
            c.idle_poll = Duration::from_micros(us);
        }
        if let Some(d) = env.millis("CACHE_IDLE_PARK_AFTER_MS", 0) {
            c.idle_park_after = d;
        }
        if let Some(d) = env.millis("CACHE_CLOSE_TIMEOUT_MS", 0) {
            c.close_timeout = d;
        }
        let replicas =
            env.int("CACHE_REPLICA_WAIT", 0, u32::MAX.into(), "a number of replicas (0 turns waiting off)");
        let wait_timeout = env.millis("CACHE_REPLICA_WAIT_TIMEOUT_MS", 1);
        match replicas {
            Some(n) if n > 0 => {
                let timeout = wait_timeout.unwrap_or(DEFAULT_REPLICA_WAIT_TIMEOUT);
                c.replica_wait = Some((n as u32, timeout));
            }
            _ => {
                let text = env.text("CACHE_REPLICA_WAIT_TIMEOUT_MS");
                if let (Some(text), Some(_)) = (text, wait_timeout) {
                    env.problems.push(
                        "CACHE_REPLICA_WAIT_TIMEOUT_MS",
                        text,
                        "only with CACHE_REPLICA_WAIT of 1 or more",
                    );
                }
            }
        }

        // --- recovery and buffers ---
        if let Some(n) = env.count("CACHE_LOAD_CHUNK") {
            c.load_chunk = n;
        }
        if let Some(v) = env.boolean("CACHE_STRICT_LOAD") {
            c.strict_load = v;
        }
        if let Some(n) = env.count("CACHE_TICK_CAPACITY") {
            c.tick_capacity = n;
        }
        if let Some(n) = env.count("CACHE_BAR_CAPACITY") {
            c.bar_capacity = n;
        }

        // --- running 24/7 ---
        if let Some(s) = env.int("CACHE_RETAIN_CLOSED_SECS", 0, u64::MAX, "seconds, 0 (off) or more") {
            c.retain_closed_for = (s > 0).then(|| Duration::from_secs(s));
        }
        if let Some(n) = env.count("CACHE_PURGE_BATCH") {
            c.purge_batch = n;
        }
        if let Some(n) =
            env.int("CACHE_MAX_ACCOUNT_EVENTS", 0, usize::MAX as u64, "a count, 0 (keep all) or more")
        {
            c.max_account_events = (n > 0).then_some(n as usize);
        }
        if let Some(d) = env.millis("CACHE_HEARTBEAT_MS", 0) {
            c.heartbeat_interval = (!d.is_zero()).then_some(d);
        }
        if let Some(v) = env.boolean("CACHE_PUBLISH_EVENTS") {
            c.publish_events = v;
        }
        if let Some(n) = env.count("CACHE_STREAM_MAXLEN") {
            c.stream_max_len = n;
        }
        if let Some(s) = env.int("CACHE_STREAM_MAX_AGE_SECS", 0, u64::MAX, "seconds, 0 (off) or more") {
            c.stream_max_age = (s > 0).then(|| Duration::from_secs(s));
        }

        env.problems.finish(c)
    }

    /// Applies a URL onto this configuration:
    /// `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS.
    ///
    /// The URL sets host, port (6379 if absent), username and password
    /// (none if absent), db (0 if absent) and tls; the user and password
    /// are percent-decoded (`p%40ss` is `p@ss`). IPv6 addresses go in
    /// brackets: `redis://[::1]:6379`. Query strings are not accepted.
    ///
    /// ```
    /// use tradecache::Config;
    ///
    /// let config = Config::builder().trader_id("T1").from_url("redis://:pw@10.0.0.5/3").unwrap();
    /// assert_eq!(config.redacted_url(), "redis://:<redacted>@10.0.0.5:6379/3");
    /// assert!(Config::builder().from_url("http://host").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] with one problem (field `url`) per defect found: a
    /// scheme other than `redis`/`rediss`, a missing or malformed host, a
    /// bad port or db, bad percent-encoding. The URL shown in it has its
    /// password replaced by `<redacted>`.
    pub fn from_url(mut self, url: &str) -> Result<Config, ConfigError> {
        let mut problems = Problems::default();
        apply_url(&mut self, url, "url", &mut problems);
        problems.finish(self)
    }
}

/// Looks variables up and records problems.
struct Env<F> {
    get: F,
    problems: Problems,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// The trimmed value, or `None` when unset or empty.
    fn text(&self, name: &str) -> Option<String> {
        (self.get)(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    fn boolean(&mut self, name: &str) -> Option<bool> {
        let text = self.text(name)?;
        match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => {
                self.problems.push(name, text, BOOL_ALLOWED);
                None
            }
        }
    }

    /// A whole number from `min` to `max`.
    fn int(&mut self, name: &str, min: u64, max: u64, allowed: &str) -> Option<u64> {
        let text = self.text(name)?;
        match text.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.problems.push(name, text, allowed);
                None
            }
        }
    }

    /// A count of 1 or more.
    fn count(&mut self, name: &str) -> Option<usize> {
        self.int(name, 1, usize::MAX as u64, "a whole number, 1 or more").map(|n| n as usize)
    }

    /// Milliseconds, at least `min`.
    fn millis(&mut self, name: &str, min: u64) -> Option<Duration> {
        let allowed = format!("a whole number of milliseconds, {min} or more");
        self.int(name, min, u64::MAX, &allowed).map(Duration::from_millis)
    }

    /// Seconds above zero, possibly fractional.
    fn seconds(&mut self, name: &str) -> Option<Duration> {
        let text = self.text(name)?;
        let d = text
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .filter(|d| !d.is_zero());
        if d.is_none() {
            self.problems.push(name, text, "a number of seconds above zero, such as 2 or 0.5");
        }
        d
    }

    fn id(&mut self, name: &str) -> Option<String> {
        let text = self.text(name)?;
        if let Err(e) = ident::validate(&text) {
            self.problems.push(name, text.as_str(), id_allowed(&e));
        }
        Some(text)
    }

    /// `host:port,host:port`; empty items are skipped.
    fn host_list(&mut self, name: &str, default_port: u16) -> Option<Vec<HostPort>> {
        let text = self.text(name)?;
        let mut nodes = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match parse_host_port(item, default_port) {
                Ok(node) => nodes.push(node),
                Err(all) => {
                    for allowed in all {
                        self.problems.push(name, item, allowed);
                    }
                }
            }
        }
        Some(nodes)
    }
}

/// Parses `url` and applies it to `c`, recording each problem under
/// `field`. On any problem, `c` is left unchanged.
fn apply_url(c: &mut Config, url: &str, field: &str, problems: &mut Problems) {
    let shown = redact_url(url);
    let before = problems.0.len();
    let mut bad = |allowed: &str| problems.push(field, shown.as_str(), allowed);
    let url = url.trim();

    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => {
            bad("a URL of the form redis://[user[:password]@]host[:port][/db] (or rediss:// for TLS)");
            return;
        }
    };
    let tls = if scheme.eq_ignore_ascii_case("redis") {
        false
    } else if scheme.eq_ignore_ascii_case("rediss") {
        true
    } else {
        bad("the scheme redis:// or rediss:// (TLS)");
        false
    };

    // The user info ends at the last '@', so that an unencoded '@' or '/'
    // in a password does not end it early.
    let (userinfo, rest) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let (mut username, mut password) = (None, None);
    if let Some(info) = userinfo {
        let (user, pass) = match info.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (info, None),
        };
        match percent_decode(user) {
            Some(u) => username = Some(u).filter(|u| !u.is_empty()),
            None => bad("a percent-encoded user name (%XX with two hex digits, valid UTF-8)"),
        }
        if let Some(pass) = pass {
            match percent_decode(pass) {
                Some(p) => password = Some(p).filter(|p| !p.is_empty()),
                None => bad("a percent-encoded password (%XX with two hex digits, valid UTF-8)"),
            }
        }
    }

    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let mut node = None;
    if authority.is_empty() {
        bad("a host after redis:// (a host name, IPv4 address or [IPv6] address)");
    } else {
        match parse_host_port(authority, DEFAULT_PORT) {
            Ok(hp) => node = Some(hp),
            Err(all) => all.into_iter().for_each(&mut bad),
        }
    }

    let (path, query) = match path.find(['?', '#']) {
        Some(i) => (&path[..i], Some(&path[i..])),
        None => (path, None),
    };
    if query.is_some() {
        bad("no query string or fragment (put the database in the path: /0)");
    }
    let db_text = path.strip_prefix('/').unwrap_or(path);
    let db = if db_text.is_empty() {
        0
    } else {
        match db_text.parse::<i64>() {
            Ok(db) if db >= 0 => db,
            _ => {
                bad("a database number (0 or more) as the path: /0");
                0
            }
        }
    };

    if problems.0.len() > before {
        return;
    }
    if let Some(HostPort { host, port }) = node {
        c.host = host;
        c.port = port;
    }
    c.username = username;
    c.password = password.map(Secret);
    c.db = db;
    c.tls = tls;
}

/// `url` with the password (and anything else that might hold one: a
/// query string, or without user info a "port" that is not a number, as in
/// `redis://:secret`) replaced by `<redacted>`.
///
/// The user info is everything before the last `@`, after a well-formed
/// `scheme://` if the URL starts with one: a mistyped scheme or a `://`
/// inside the password does not move it (both found by tests/fuzz.rs).
fn redact_url(url: &str) -> String {
    let (head, rest) = url.split_at(scheme_prefix_len(url));
    let mut out = head.to_string();
    let rest = match rest.rfind('@') {
        Some(at) => {
            let info = &rest[..at];
            match info.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(REDACTED);
                }
                None => out.push_str(info),
            }
            out.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    // `redis://:secret` or `redis://user:secret/0` (the '@' forgotten)
    // reads as a port that is not a number: hide it and all that follows
    // (with or without user info: `redis://@:secret` too).
    let after_ipv6 = if authority.starts_with('[') { authority.find(']').map_or(0, |i| i + 1) } else { 0 };
    if let Some(i) = authority[after_ipv6..].find(':').map(|i| i + after_ipv6) {
        if !authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&authority[..=i]);
            out.push_str(REDACTED);
            return out;
        }
    }
    out.push_str(authority);
    match tail.find(['?', '#']) {
        Some(i) => {
            out.push_str(&tail[..=i]);
            out.push_str(REDACTED);
        }
        None => out.push_str(tail),
    }
    out
}

/// The length of a leading `scheme://` (RFC 3986: a letter, then letters,
/// digits, `+`, `-`, `.`), or 0.
fn scheme_prefix_len(url: &str) -> usize {
    let b = url.as_bytes();
    if !b.first().is_some_and(u8::is_ascii_alphabetic) {
        return 0;
    }
    let end = b
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')))
        .unwrap_or(b.len());
    if url[end..].starts_with("://") {
        end + 3
    } else {
        0
    }
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result
/// is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Escapes everything but unreserved characters, for the user of a URL.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_port(text: &str) -> Result<u16, &'static str> {
    match text.parse::<u64>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(PORT_ALLOWED),
    }
}

/// `host`, `host:port`, `[ipv6]` or `[ipv6]:port`; every problem found.
fn parse_host_port(item: &str, default_port: u16) -> Result<HostPort, Vec<&'static str>> {
    const IPV6: &str = "an IPv6 address in brackets: [::1]:6379";
    let (host, port) = if let Some(rest) = item.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(vec![IPV6]);
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(vec![IPV6]);
        }
        match (after, after.strip_prefix(':')) {
            ("", _) => (host, None),
            (_, Some(port)) => (host, Some(port)),
            (_, None) => return Err(vec!["host:port, or [ipv6]:port"]),
        }
    } else if item.matches(':').count() > 1 {
        return Err(vec!["host:port, with an IPv6 address in brackets: [::1]:6379"]);
    } else {
        match item.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (item, None),
        }
    };
    let mut problems = Vec::new();
    if let Some(allowed) = host_problem(host) {
        problems.push(allowed);
    }
    let port = match port {
        None | Some("") => default_port,
        Some(p) => parse_port(p).unwrap_or_else(|allowed| {
            problems.push(allowed);
            0
        }),
    };
    if problems.is_empty() {
        Ok(HostPort { host: host.to_string(), port })
    } else {
        Err(problems)
    }
}

/// What is wrong with `host`, if anything: it must be a host name, an IPv4
/// address or an IPv6 address without brackets.
fn host_problem(host: &str) -> Option<&'static str> {
    const NAME: &str = "a host name (letters, digits, '-', '.', '_'), an IPv4 address, \
                        or an IPv6 address without brackets";
    if host.is_empty() {
        return Some("a host name or IP address (not empty)");
    }
    if host.contains(':') {
        return host.parse::<Ipv6Addr>().is_err().then_some(NAME);
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return host.parse::<Ipv4Addr>().is_err().then_some(NAME);
    }
    let ok = host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && !host.starts_with(['.', '-']);
    (!ok).then_some(NAME)
}

/// Instance ids that would read as this trader's own keys: the key kinds
/// and the reference model's collections.
const RESERVED_INSTANCE_IDS: [&str; 8] =
    ["index", "writer", "stream", "heartbeat", "instruments", "accounts", "orders", "positions"];

/// The longest [`Config::idle_poll`] accepted.
const MAX_IDLE_POLL: Duration = Duration::from_secs(1);

fn id_allowed(e: &IdError) -> String {
    match e {
        IdError::Empty => format!("a non-empty id; {ID_CHARS}"),
        IdError::TooLong { max, .. } => format!("an id of at most {max} bytes"),
        IdError::BadChar { ch, .. } => format!("an id without {ch:?}; {ID_CHARS}"),
    }
}

// ---------------------------------------------------------------------------
// Validation.

impl Config {
    /// At `open`: the TLS files named in the configuration can be read, so
    /// a wrong path is a configuration error at once rather than a
    /// connection error after every retry. (Not part of [`Config::validate`],
    /// which checks the values alone.)
    pub(crate) fn check_files(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        for (field, path) in
            [("tls_ca", &self.tls_ca), ("tls_cert", &self.tls_cert), ("tls_key", &self.tls_key)]
        {
            if let Some(path) = path {
                if let Err(e) = std::fs::File::open(path) {
                    p.push(field, path.display().to_string(), format!("a readable PEM file ({e})"));
                }
            }
        }
        p.finish(())
    }

    /// Checks the whole configuration; [`crate::Cache::open`] calls it.
    ///
    /// ```
    /// use tradecache::Config;
    ///
    /// let err = Config::builder().port(0).connect_attempts(0).validate().unwrap_err();
    /// assert!(err.mentions("port") && err.mentions("connect_attempts"));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] with one [`ConfigProblem`] per issue, each naming the
    /// setter (`"port"`), the bad value (never a password) and what is
    /// allowed. The rules: the host is a host name, IPv4 or IPv6 address;
    /// the port is not 0; a username comes with a password; the db is 0 or
    /// more (0 in cluster mode); timeouts, `connect_attempts`,
    /// `channel_capacity`, `max_batch`, `max_pending_events`, `load_chunk`,
    /// `tick_capacity`, `bar_capacity`, `purge_batch`, `stream_max_len`,
    /// `max_account_events` and `max_value_bytes` (at most 512 MiB) are
    /// above zero; `retain_closed_for` is at least 1 s, `heartbeat_interval`
    /// and `stream_max_age` at least 1 ms; backoff minimums do not exceed maximums; ids
    /// are valid (see [`crate::Ident`]); `use_instance_id` has an instance
    /// id and the trader prefix; `timestamps_as_iso8601` goes with JSON;
    /// TLS files need `tls` (and the `tls` feature), a certificate needs a
    /// key and the reverse; sentinels need a master name and the reverse;
    /// sentinels and a cluster exclude each other; a cluster needs the
    /// trader prefix; `Block` overflow and `replica_wait` have timeouts above
    /// zero, the latter below `response_timeout`; `idle_poll` is at most 1 s.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        let clustered = !self.cluster_nodes.is_empty();
        let sentinel = !self.sentinels.is_empty();

        // --- connection ---
        if let Some(allowed) = host_problem(&self.host) {
            p.push("host", self.host.as_str(), allowed);
        }
        if self.port == 0 {
            p.push("port", "0", PORT_ALLOWED);
        }
        if let (Some(user), None) = (&self.username, &self.password) {
            p.push("username", user.as_str(), "a username only with a password");
        }
        if self.db < 0 {
            p.push("db", self.db.to_string(), "a database number, 0 or more");
        } else if clustered && self.db != 0 {
            p.push("db", self.db.to_string(), "0 in cluster mode (a cluster has only db 0)");
        }
        let tls_files = self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_key.is_some();
        if tls_files && !self.tls {
            p.push("tls", "false", "true when tls_ca, tls_cert or tls_key is set");
        }
        #[cfg(not(feature = "tls"))]
        if self.tls {
            p.push("tls", "true", "false: tradecache was built without its `tls` feature");
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), None) => {
                p.push("tls_key", "", format!("a key file to go with tls_cert {}", cert.display()))
            }
            (None, Some(key)) => {
                p.push("tls_cert", "", format!("a certificate file to go with tls_key {}", key.display()))
            }
            _ => {}
        }
        for (field, nodes) in [("sentinels", &self.sentinels), ("cluster_nodes", &self.cluster_nodes)] {
            for node in nodes {
                if let Some(allowed) = host_problem(&node.host) {
                    p.push(field, node.to_string(), allowed);
                } else if node.port == 0 {
                    p.push(field, node.to_string(), PORT_ALLOWED);
                }
            }
        }
        match &self.sentinel_master {
            None if sentinel => p.push("sentinel_master", "", "the name of the master the sentinels monitor"),
            Some(m) if !sentinel => {
                p.push("sentinels", "", format!("at least one sentinel, since sentinel_master is {m:?}"))
            }
            Some(m) if m.is_empty() || m.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                p.push("sentinel_master", m.as_str(), "a master name, not empty, without whitespace")
            }
            _ => {}
        }
        if sentinel && clustered {
            p.push(
                "cluster_nodes",
                format!("{} node(s)", self.cluster_nodes.len()),
                "either sentinels or cluster_nodes, not both",
            );
        }
        if clustered && !self.use_trader_prefix {
            p.push(
                "use_trader_prefix",
                "false",
                "true in cluster mode (the trader key is the hash tag that keeps a batch in one slot)",
            );
        }
        for (field, d) in
            [("connect_timeout", self.connect_timeout), ("response_timeout", self.response_timeout)]
        {
            if d.is_zero() {
                p.push(field, "0s", "a timeout above zero");
            }
        }
        if self.connect_attempts == 0 {
            p.push("connect_attempts", "0", "1 or more");
        }
        for (field, min, max) in [
            ("open_backoff", self.open_backoff_min, self.open_backoff_max),
            ("reconnect_backoff", self.reconnect_backoff_min, self.reconnect_backoff_max),
        ] {
            if min > max {
                p.push(field, format!("min {min:?}, max {max:?}"), "a minimum no greater than the maximum");
            }
            if min < Duration::from_millis(1) {
                // A zero minimum retries a failing server in a busy loop.
                p.push(field, format!("min {min:?}"), "a minimum of at least 1ms");
            }
        }

        // --- keys and values ---
        let mut check_id = |field: &str, id: &str| {
            if let Err(e) = ident::validate(id) {
                p.push(field, id, id_allowed(&e));
            }
        };
        check_id("trader_id", &self.trader_id);
        check_id("writer_id", &self.writer_id);
        if let Some(instance) = &self.instance_id {
            check_id("instance_id", instance);
            // `clear` tells this trader's keys from its instances' by the
            // first part after the prefix (`Keys::owns`).
            if RESERVED_INSTANCE_IDS.contains(&instance.as_str()) {
                p.push(
                    "instance_id",
                    instance.as_str(),
                    format!("an id other than {}", RESERVED_INSTANCE_IDS.join(", ")),
                );
            }
        }
        if self.use_instance_id {
            if self.instance_id.is_none() {
                p.push("instance_id", "", "an instance id, since use_instance_id is true");
            }
            if !self.use_trader_prefix {
                p.push(
                    "use_instance_id",
                    "true",
                    "false when use_trader_prefix is false (the instance id is part of the trader prefix)",
                );
            }
        }
        if self.flush_on_start && !self.use_trader_prefix {
            p.push(
                "flush_on_start",
                "true",
                "false when use_trader_prefix is false: without a prefix this cache's keys cannot be told \
                 from other applications' (it would delete theirs)",
            );
        }
        if self.timestamps_as_iso8601 && self.encoding != Encoding::Json {
            p.push(
                "timestamps_as_iso8601",
                "true",
                "false unless encoding is Encoding::Json (msgpack stores nanoseconds)",
            );
        }
        if self.max_value_bytes == 0 || self.max_value_bytes > REDIS_MAX_VALUE_BYTES {
            p.push(
                "max_value_bytes",
                self.max_value_bytes.to_string(),
                "from 1 to 536870912 bytes (Redis's limit)",
            );
        }

        // --- pipeline, recovery, buffers ---
        for (field, n) in [
            ("channel_capacity", self.channel_capacity),
            ("max_batch", self.max_batch),
            ("max_pending_events", self.max_pending_events),
            ("max_pending_snapshots", self.max_pending_snapshots),
            ("max_batch_bytes", self.max_batch_bytes),
            ("load_chunk", self.load_chunk),
            ("tick_capacity", self.tick_capacity),
            ("bar_capacity", self.bar_capacity),
            ("purge_batch", self.purge_batch),
            ("stream_max_len", self.stream_max_len),
            ("max_account_events", self.max_account_events.unwrap_or(1)),
        ] {
            if n == 0 {
                p.push(field, "0", "1 or more");
            }
        }
        for (field, d, min, allowed) in [
            ("retain_closed_for", self.retain_closed_for, Duration::from_secs(1), "None, or at least 1s"),
            (
                "heartbeat_interval",
                self.heartbeat_interval,
                Duration::from_millis(1),
                "None, or at least 1ms",
            ),
            ("stream_max_age", self.stream_max_age, Duration::from_millis(1), "None, or at least 1ms"),
        ] {
            if let Some(d) = d.filter(|d| *d < min) {
                p.push(field, format!("Some({d:?})"), allowed);
            }
        }
        if self.idle_poll > MAX_IDLE_POLL {
            // The flusher sleeps this long between looks at the channel.
            p.push("idle_poll", format!("{:?}", self.idle_poll), "at most 1s (100µs by default)");
        }
        if let OverflowPolicy::Block { timeout } = self.overflow {
            if timeout.is_zero() {
                p.push(
                    "overflow",
                    "Block { timeout: 0s }",
                    "a block timeout above zero (or OverflowPolicy::Reject)",
                );
            }
        }
        if let Some((replicas, timeout)) = self.replica_wait {
            let value = format!("Some(({replicas}, {timeout:?}))");
            if replicas == 0 {
                p.push("replica_wait", value.as_str(), "1 or more replicas, or None");
            }
            if timeout.is_zero() {
                p.push("replica_wait", value.as_str(), "a timeout above zero (WAIT with 0 blocks forever)");
            } else if timeout >= self.response_timeout {
                p.push(
                    "replica_wait",
                    value,
                    format!(
                        "a timeout below response_timeout ({:?}), or the reply to WAIT times out",
                        self.response_timeout
                    ),
                );
            }
        }
        p.finish(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const PASSWORD: &str = "hunter2-S3CRET";

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_vars(|k| map.get(k).cloned())
    }

    fn problems(r: Result<Config, ConfigError>) -> ConfigError {
        match r {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e,
        }
    }

    /// Asserts the password is nowhere in the error's Display or Debug.
    fn assert_no_secret(e: &ConfigError, secret: &str) {
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains(secret), "secret leaked: {shown}");
    }

    fn fields(e: &ConfigError) -> Vec<&str> {
        e.problems.iter().map(|p| p.field.as_str()).collect()
    }

    /// A config that fails validation with exactly one problem on `field`.
    fn assert_only(c: Config, field: &str) {
        let e = c.validate().expect_err(field);
        assert_eq!(fields(&e), vec![field], "{e}");
        assert!(!e.problems[0].allowed.is_empty());
    }

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

    // --- validation: one test per rule ---

    #[test]
    fn host_rules() {
        for good in ["localhost", "redis-1.internal", "10.0.0.1", "::1", "fe80::1", "my_host"] {
            Config::builder().host(good).validate().unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["", "a b", "a/b", "u@h", "h:6379", "[::1]", "999.1.1.1", "a\tb", "-x", "h?x"] {
            let e = Config::builder().host(bad).validate().expect_err(bad);
            assert_eq!(fields(&e), vec!["host"], "{bad:?}");
            assert_eq!(e.problems[0].value, bad);
        }
    }

    #[test]
    fn port_zero() {
        assert_only(Config::builder().port(0), "port");
    }

    #[test]
    fn username_without_password() {
        assert_only(Config::builder().username("u"), "username");
        Config::builder().username("u").password("p").validate().unwrap();
        Config::builder().password("p").validate().unwrap();
    }

    #[test]
    fn zero_timeouts() {
        assert_only(Config::builder().connect_timeout(Duration::ZERO), "connect_timeout");
        assert_only(Config::builder().response_timeout(Duration::ZERO), "response_timeout");
    }

    #[test]
    fn zero_connect_attempts() {
        assert_only(Config::builder().connect_attempts(0), "connect_attempts");
    }

    #[test]
    fn negative_db() {
        assert_only(Config::builder().db(-1), "db");
    }

    #[test]
    fn bad_ids() {
        for bad in ["", "a:b", "a{b", "a}b", "a b", "a\u{1}b"] {
            assert_only(Config::builder().trader_id(bad), "trader_id");
            assert_only(Config::builder().writer_id(bad), "writer_id");
            assert_only(Config::builder().instance_id(bad), "instance_id");
        }
    }

    #[test]
    fn use_instance_id_rules() {
        assert_only(Config::builder().use_instance_id(true), "instance_id");
        Config::builder().use_instance_id(true).instance_id("I1").validate().unwrap();
        assert_only(
            Config::builder().instance_id("I1").use_instance_id(true).use_trader_prefix(false),
            "use_instance_id",
        );
    }

    #[test]
    fn zero_sizes() {
        assert_only(Config::builder().channel_capacity(0), "channel_capacity");
        assert_only(Config::builder().max_batch(0), "max_batch");
        assert_only(Config::builder().max_pending_events(0), "max_pending_events");
        assert_only(Config::builder().load_chunk(0), "load_chunk");
        assert_only(Config::builder().tick_capacity(0), "tick_capacity");
        assert_only(Config::builder().bar_capacity(0), "bar_capacity");
        assert_only(Config::builder().purge_batch(0), "purge_batch");
        assert_only(Config::builder().stream_max_len(0), "stream_max_len");
        assert_only(Config::builder().max_account_events(Some(0)), "max_account_events");
        assert_only(
            Config::builder().retain_closed_for(Some(Duration::from_millis(999))),
            "retain_closed_for",
        );
        assert_only(Config::builder().heartbeat_interval(Some(Duration::ZERO)), "heartbeat_interval");
        assert_only(Config::builder().stream_max_age(Some(Duration::ZERO)), "stream_max_age");
        assert_only(Config::builder().max_value_bytes(0), "max_value_bytes");
        assert_only(Config::builder().max_value_bytes(REDIS_MAX_VALUE_BYTES + 1), "max_value_bytes");
    }

    #[test]
    fn idle_poll_at_most_a_second() {
        assert!(Config::builder().idle_poll(Duration::from_secs(1)).validate().is_ok());
        assert_only(Config::builder().idle_poll(Duration::from_millis(1_001)), "idle_poll");
        assert_only(Config::builder().idle_poll(Duration::MAX), "idle_poll");
    }

    #[test]
    fn backoff_min_above_max() {
        let s = Duration::from_secs;
        assert_only(Config::builder().open_backoff(s(2), s(1)), "open_backoff");
        assert_only(Config::builder().reconnect_backoff(s(2), s(1)), "reconnect_backoff");
        Config::builder().open_backoff(s(1), s(1)).validate().unwrap();
    }

    #[test]
    fn tls_rules() {
        assert_only(Config::builder().tls_ca("/ca.pem"), "tls");
        assert_only(Config::builder().tls_cert("/c").tls_key("/k"), "tls");
        let e = Config::builder().tls(true).tls_cert("/c").validate().unwrap_err();
        assert!(e.mentions("tls_key"), "{e}");
        let e = Config::builder().tls(true).tls_key("/k").validate().unwrap_err();
        assert!(e.mentions("tls_cert"), "{e}");
        #[cfg(feature = "tls")]
        Config::builder().tls(true).tls_cert("/c").tls_key("/k").validate().unwrap();
        #[cfg(not(feature = "tls"))]
        assert_only(Config::builder().tls(true), "tls");
    }

    #[test]
    fn sentinel_and_cluster_rules() {
        assert_only(Config::builder().sentinels([("s1", 26379)]), "sentinel_master");
        assert_only(Config::builder().sentinel_master("m"), "sentinels");
        Config::builder().sentinels([("s1", 26379)]).sentinel_master("m").validate().unwrap();
        let both =
            Config::builder().sentinels([("s1", 26379)]).sentinel_master("m").cluster_nodes([("n1", 7000)]);
        assert_only(both, "cluster_nodes");
        assert_only(Config::builder().sentinels([("s 1", 26379)]).sentinel_master("m"), "sentinels");
        assert_only(Config::builder().cluster_nodes([("n1", 0)]), "cluster_nodes");
        assert_only(Config::builder().cluster_nodes([("n1", 7000)]).db(1), "db");
        assert_only(
            Config::builder().cluster_nodes([("n1", 7000)]).use_trader_prefix(false),
            "use_trader_prefix",
        );
        Config::builder().cluster_nodes([("n1", 7000)]).validate().unwrap();
    }

    #[test]
    fn block_with_zero_timeout() {
        assert_only(
            Config::builder().overflow(OverflowPolicy::Block { timeout: Duration::ZERO }),
            "overflow",
        );
    }

    /// Issue 10: settings that made the flusher spin, or `flush_on_start`
    /// reach other applications' keys, are refused.
    #[test]
    fn trust_rules() {
        assert_only(
            Config::builder().reconnect_backoff(Duration::ZERO, Duration::from_millis(10)),
            "reconnect_backoff",
        );
        assert_only(
            Config::builder().open_backoff(Duration::ZERO, Duration::from_millis(10)),
            "open_backoff",
        );
        Config::builder()
            .reconnect_backoff(Duration::from_millis(1), Duration::from_millis(1))
            .validate()
            .unwrap();
        assert_only(Config::builder().use_trader_prefix(false).flush_on_start(true), "flush_on_start");
        Config::builder().use_trader_prefix(false).validate().unwrap();
        for reserved in ["index", "writer", "stream", "heartbeat", "orders", "positions"] {
            assert_only(Config::builder().instance_id(reserved), "instance_id");
        }
        Config::builder().instance_id("I1").use_instance_id(true).validate().unwrap();
        assert_only(Config::builder().max_pending_snapshots(0), "max_pending_snapshots");
        assert_only(Config::builder().max_batch_bytes(0), "max_batch_bytes");
    }

    #[test]
    fn replica_wait_rules() {
        let ms = Duration::from_millis;
        Config::builder().replica_wait(Some((1, ms(100)))).validate().unwrap();
        assert_only(Config::builder().replica_wait(Some((0, ms(100)))), "replica_wait");
        assert_only(Config::builder().replica_wait(Some((1, ms(0)))), "replica_wait");
        assert_only(Config::builder().replica_wait(Some((1, ms(2000)))), "replica_wait");
    }

    #[test]
    fn iso8601_needs_json() {
        assert_only(Config::builder().timestamps_as_iso8601(true), "timestamps_as_iso8601");
    }

    #[test]
    fn validation_lists_every_problem() {
        let e = Config::builder()
            .host("")
            .port(0)
            .username("u")
            .connect_attempts(0)
            .trader_id("a:b")
            .channel_capacity(0)
            .validate()
            .unwrap_err();
        assert_eq!(
            fields(&e),
            vec!["host", "port", "username", "connect_attempts", "trader_id", "channel_capacity"]
        );
        let text = e.to_string();
        assert!(text.contains("port = \"0\""), "{text}");
        assert!(text.contains("trader_id = \"a:b\""), "{text}");
    }

    // --- encoding ---

    #[test]
    fn encoding_from_str() {
        assert_eq!("msgpack".parse::<Encoding>().unwrap(), Encoding::MsgPack);
        assert_eq!(" JSON ".parse::<Encoding>().unwrap(), Encoding::Json);
        let e = "yaml".parse::<Encoding>().unwrap_err();
        assert_eq!(e.problems[0].value, "yaml");
        assert!(e.to_string().contains("msgpack, json"), "{e}");
        assert_eq!(Encoding::Json.to_string(), "json");
    }

    // --- environment ---

    #[test]
    fn empty_env_is_default() {
        let c = from(&[]).unwrap();
        assert_eq!(format!("{c:?}"), format!("{:?}", Config::default()));
        let c = from(&[("REDIS_HOST", ""), ("REDIS_PORT", "  "), ("REDIS_PASSWORD", "")]).unwrap();
        assert_eq!(format!("{c:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn env_sets_every_field() {
        let c = from(&[
            ("REDIS_HOST", "redis-1"),
            ("REDIS_PORT", "6380"),
            ("REDIS_USERNAME", "alice"),
            ("REDIS_PASSWORD", " pw with spaces "),
            ("REDIS_DB", "4"),
            ("REDIS_SSL", "Yes"),
            ("REDIS_TIMEOUT", "0.25"),
            ("REDIS_TLS_CA", "/ca.pem"),
            ("REDIS_TLS_CERT", "/c.pem"),
            ("REDIS_TLS_KEY", "/k.pem"),
            ("REDIS_SENTINELS", "s1:26379, s2 ,[::1]:26380"),
            ("REDIS_SENTINEL_MASTER", "mymaster"),
            ("CACHE_TRADER_ID", "TESTER-001"),
            ("CACHE_INSTANCE_ID", "I-9"),
            ("CACHE_USE_TRADER_PREFIX", "true"),
            ("CACHE_USE_INSTANCE_ID", "1"),
            ("CACHE_ENCODING", "json"),
            ("CACHE_TIMESTAMPS_AS_ISO8601", "TRUE"),
            ("CACHE_FLUSH_ON_START", "yes"),
            ("CACHE_PERSIST_ACCOUNT_EVENTS", "no"),
            ("CACHE_MAX_VALUE_BYTES", "1024"),
            ("CACHE_WRITER_ID", "w-2"),
            ("CACHE_BUFFER_INTERVAL_MS", "5"),
            ("CACHE_CHANNEL_CAPACITY", "100"),
            ("CACHE_OVERFLOW", "block"),
            ("CACHE_BLOCK_TIMEOUT_MS", "3"),
            ("CACHE_MAX_BATCH", "50"),
            ("CACHE_MAX_PENDING_EVENTS", "60"),
            ("CACHE_CONNECT_ATTEMPTS", "9"),
            ("CACHE_BACKOFF_MIN_MS", "10"),
            ("CACHE_BACKOFF_MAX_MS", "20"),
            ("CACHE_RECONNECT_BACKOFF_MIN_MS", "30"),
            ("CACHE_RECONNECT_BACKOFF_MAX_MS", "40"),
            ("CACHE_IDLE_POLL_US", "7"),
            ("CACHE_IDLE_PARK_AFTER_MS", "8"),
            ("CACHE_CLOSE_TIMEOUT_MS", "9000"),
            ("CACHE_REPLICA_WAIT", "2"),
            ("CACHE_REPLICA_WAIT_TIMEOUT_MS", "50"),
            ("CACHE_LOAD_CHUNK", "77"),
            ("CACHE_STRICT_LOAD", "true"),
            ("CACHE_TICK_CAPACITY", "88"),
            ("CACHE_BAR_CAPACITY", "99"),
            ("CACHE_RETAIN_CLOSED_SECS", "86400"),
            ("CACHE_PURGE_BATCH", "33"),
            ("CACHE_MAX_ACCOUNT_EVENTS", "1000"),
            ("CACHE_HEARTBEAT_MS", "250"),
            ("CACHE_PUBLISH_EVENTS", "yes"),
            ("CACHE_STREAM_MAXLEN", "5000"),
            ("CACHE_STREAM_MAX_AGE_SECS", "3600"),
        ])
        .unwrap();
        let ms = Duration::from_millis;
        assert_eq!((c.host.as_str(), c.port, c.db, c.tls), ("redis-1", 6380, 4, true));
        assert_eq!(c.username.as_deref(), Some("alice"));
        assert_eq!(c.password, Some(Secret(" pw with spaces ".into())));
        assert_eq!((c.connect_timeout, c.response_timeout), (ms(250), ms(250)));
        assert_eq!(c.tls_ca, Some(PathBuf::from("/ca.pem")));
        assert_eq!(c.tls_cert, Some(PathBuf::from("/c.pem")));
        assert_eq!(c.tls_key, Some(PathBuf::from("/k.pem")));
        assert_eq!(
            c.sentinels,
            vec![
                HostPort { host: "s1".into(), port: 26379 },
                HostPort { host: "s2".into(), port: 26379 },
                HostPort { host: "::1".into(), port: 26380 },
            ]
        );
        assert_eq!(c.sentinel_master.as_deref(), Some("mymaster"));
        assert_eq!(c.trader_key(), "trader-TESTER-001:I-9");
        assert_eq!((c.encoding, c.timestamps_as_iso8601), (Encoding::Json, true));
        assert!(c.flush_on_start && !c.persist_account_events && c.strict_load);
        assert_eq!((c.max_value_bytes, c.writer_id.as_str()), (1024, "w-2"));
        assert_eq!(c.buffer_interval, ms(5));
        assert_eq!(c.channel_capacity, 100);
        assert_eq!(c.overflow, OverflowPolicy::Block { timeout: ms(3) });
        assert_eq!((c.max_batch, c.max_pending_events, c.connect_attempts), (50, 60, 9));
        assert_eq!((c.open_backoff_min, c.open_backoff_max), (ms(10), ms(20)));
        assert_eq!((c.reconnect_backoff_min, c.reconnect_backoff_max), (ms(30), ms(40)));
        assert_eq!(c.idle_poll, Duration::from_micros(7));
        assert_eq!((c.idle_park_after, c.close_timeout), (ms(8), ms(9000)));
        assert_eq!(c.replica_wait, Some((2, ms(50))));
        assert_eq!((c.load_chunk, c.tick_capacity, c.bar_capacity), (77, 88, 99));
        assert_eq!((c.retain_closed_for, c.purge_batch), (Some(Duration::from_secs(86_400)), 33));
        assert_eq!((c.max_account_events, c.heartbeat_interval), (Some(1000), Some(ms(250))));
        assert!(c.publish_events);
        assert_eq!((c.stream_max_len, c.stream_max_age), (5000, Some(Duration::from_secs(3600))));
        // 0 turns the optional ones off.
        let c = from(&[
            ("CACHE_RETAIN_CLOSED_SECS", "0"),
            ("CACHE_MAX_ACCOUNT_EVENTS", "0"),
            ("CACHE_HEARTBEAT_MS", "0"),
            ("CACHE_STREAM_MAX_AGE_SECS", "0"),
        ])
        .unwrap();
        assert_eq!((c.retain_closed_for, c.max_account_events), (None, None));
        assert_eq!((c.heartbeat_interval, c.stream_max_age), (None, None));

        let c =
            from(&[("REDIS_CLUSTER", "n1:7000,n2,[fe80::1]:7002"), ("CACHE_OVERFLOW", "Reject")]).unwrap();
        assert_eq!(c.cluster_nodes[1], HostPort { host: "n2".into(), port: 6379 });
        assert_eq!(c.cluster_nodes[2].host, "fe80::1");
        assert_eq!(c.overflow, OverflowPolicy::Reject);
    }

    #[test]
    fn env_defaults_for_block_and_replica_wait() {
        let c = from(&[("CACHE_OVERFLOW", "BLOCK"), ("CACHE_REPLICA_WAIT", "1")]).unwrap();
        assert_eq!(c.overflow, OverflowPolicy::Block { timeout: DEFAULT_BLOCK_TIMEOUT });
        assert_eq!(c.replica_wait, Some((1, DEFAULT_REPLICA_WAIT_TIMEOUT)));
        c.validate().unwrap();
        let c = from(&[("CACHE_REPLICA_WAIT", "0")]).unwrap();
        assert_eq!(c.replica_wait, None);
    }

    #[test]
    fn env_url_then_overrides() {
        let c = from(&[
            ("REDIS_URL", "redis://cache-1:6390/2"),
            ("REDIS_PASSWORD", PASSWORD),
            ("REDIS_PORT", "6391"),
        ])
        .unwrap();
        assert_eq!((c.host.as_str(), c.port, c.db), ("cache-1", 6391, 2));
        assert_eq!(c.password, Some(Secret(PASSWORD.into())));
        let c = from(&[("REDIS_URL", "rediss://h"), ("REDIS_SSL", "false")]).unwrap();
        assert!(!c.tls);
    }

    #[test]
    fn env_lists_every_problem() {
        let e = problems(from(&[
            ("REDIS_HOST", "bad host"),
            ("REDIS_PORT", "70000"),
            ("REDIS_DB", "-1"),
            ("REDIS_SSL", "maybe"),
            ("REDIS_TIMEOUT", "0"),
            ("REDIS_SENTINELS", "s1:26379,s2:x,::1:5"),
            ("REDIS_SENTINEL_MASTER", "my master"),
            ("REDIS_CLUSTER", "n1:0"),
            ("CACHE_TRADER_ID", "a:b"),
            ("CACHE_INSTANCE_ID", "a b"),
            ("CACHE_WRITER_ID", "{w}"),
            ("CACHE_USE_TRADER_PREFIX", "on"),
            ("CACHE_USE_INSTANCE_ID", "2"),
            ("CACHE_ENCODING", "yaml"),
            ("CACHE_TIMESTAMPS_AS_ISO8601", "t"),
            ("CACHE_FLUSH_ON_START", "x"),
            ("CACHE_PERSIST_ACCOUNT_EVENTS", "x"),
            ("CACHE_MAX_VALUE_BYTES", "0"),
            ("CACHE_BUFFER_INTERVAL_MS", "-5"),
            ("CACHE_CHANNEL_CAPACITY", "0"),
            ("CACHE_OVERFLOW", "drop"),
            ("CACHE_BLOCK_TIMEOUT_MS", "0"),
            ("CACHE_MAX_BATCH", "lots"),
            ("CACHE_MAX_PENDING_EVENTS", "0"),
            ("CACHE_MAX_PENDING_SNAPSHOTS", "0"),
            ("CACHE_MAX_BATCH_BYTES", "none"),
            ("CACHE_CONNECT_ATTEMPTS", "0"),
            ("CACHE_BACKOFF_MIN_MS", "1.5"),
            ("CACHE_BACKOFF_MAX_MS", "x"),
            ("CACHE_RECONNECT_BACKOFF_MIN_MS", "x"),
            ("CACHE_RECONNECT_BACKOFF_MAX_MS", "x"),
            ("CACHE_IDLE_POLL_US", "x"),
            ("CACHE_IDLE_PARK_AFTER_MS", "x"),
            ("CACHE_CLOSE_TIMEOUT_MS", "x"),
            ("CACHE_REPLICA_WAIT", "-1"),
            ("CACHE_REPLICA_WAIT_TIMEOUT_MS", "0"),
            ("CACHE_LOAD_CHUNK", "0"),
            ("CACHE_STRICT_LOAD", "x"),
            ("CACHE_TICK_CAPACITY", "0"),
            ("CACHE_BAR_CAPACITY", "99999999999999999999999"),
            ("CACHE_RETAIN_CLOSED_SECS", "-1"),
            ("CACHE_PURGE_BATCH", "0"),
            ("CACHE_MAX_ACCOUNT_EVENTS", "x"),
            ("CACHE_HEARTBEAT_MS", "1.5"),
            ("CACHE_PUBLISH_EVENTS", "x"),
            ("CACHE_STREAM_MAXLEN", "0"),
            ("CACHE_STREAM_MAX_AGE_SECS", "x"),
        ]));
        let got = fields(&e);
        for name in ENV_VARS {
            if matches!(*name, "REDIS_URL" | "REDIS_USERNAME" | "REDIS_PASSWORD")
                || name.starts_with("REDIS_TLS_")
            {
                continue;
            }
            assert!(got.contains(name), "{name} not reported: {e}");
        }
        // Two bad items in REDIS_SENTINELS: one problem each.
        assert_eq!(got.iter().filter(|f| **f == "REDIS_SENTINELS").count(), 2, "{e}");
        let port = e.problems.iter().find(|p| p.field == "REDIS_PORT").unwrap();
        assert_eq!(port.value, "70000");
        assert_eq!(port.allowed, PORT_ALLOWED);
        for p in &e.problems {
            assert!(!p.allowed.is_empty(), "{p}");
        }
    }

    #[test]
    fn env_port_values() {
        for bad in ["0", "65536", "abc", "-1", "1.5", "99999999999999999999"] {
            let e = problems(from(&[("REDIS_PORT", bad)]));
            assert_eq!(fields(&e), vec!["REDIS_PORT"], "{bad}");
            assert_eq!(e.problems[0].value, bad);
        }
        assert_eq!(from(&[("REDIS_PORT", "65535")]).unwrap().port, 65535);
        assert_eq!(from(&[("REDIS_PORT", " 1 ")]).unwrap().port, 1);
    }

    #[test]
    fn env_block_timeout_needs_block() {
        let e = problems(from(&[("CACHE_BLOCK_TIMEOUT_MS", "5")]));
        assert_eq!(fields(&e), vec!["CACHE_BLOCK_TIMEOUT_MS"]);
        let e = problems(from(&[("CACHE_REPLICA_WAIT_TIMEOUT_MS", "5")]));
        assert_eq!(fields(&e), vec!["CACHE_REPLICA_WAIT_TIMEOUT_MS"]);
    }

    #[test]
    fn env_timeout_values() {
        let t = from(&[("REDIS_TIMEOUT", "3")]).unwrap();
        assert_eq!(t.connect_timeout, Duration::from_secs(3));
        for bad in ["0", "-1", "nan", "inf", "abc", "1e400"] {
            assert_eq!(fields(&problems(from(&[("REDIS_TIMEOUT", bad)]))), vec!["REDIS_TIMEOUT"]);
        }
    }

    #[test]
    fn env_never_shows_password() {
        // A password is never validated, so it can never be a problem's value,
        // even alongside other problems.
        let e = problems(from(&[("REDIS_PASSWORD", PASSWORD), ("REDIS_PORT", "x")]));
        assert_no_secret(&e, PASSWORD);
        let e = problems(from(&[("REDIS_URL", &format!("redis://u:{PASSWORD}@h:bad/0"))]));
        assert_no_secret(&e, PASSWORD);
    }

    #[test]
    fn env_example_lists_every_variable() {
        let example = include_str!("../.env.example");
        for name in ENV_VARS {
            assert!(example.contains(&format!("# {name}=")), "{name} missing from .env.example");
        }
    }

    // --- URLs ---

    fn url(u: &str) -> Result<Config, ConfigError> {
        Config::default().from_url(u)
    }

    #[test]
    fn url_forms() {
        let c = url("redis://localhost").unwrap();
        assert_eq!((c.host.as_str(), c.port, c.db, c.tls), ("localhost", 6379, 0, false));
        assert_eq!((c.username.clone(), c.password.clone()), (None, None));

        let c = url("rediss://cache.example.com:6380/5").unwrap();
        assert_eq!((c.host.as_str(), c.port, c.db, c.tls), ("cache.example.com", 6380, 5, true));

        let c = url("redis://alice:s3cret@10.1.2.3:7000/1").unwrap();
        assert_eq!(c.username.as_deref(), Some("alice"));
        assert_eq!(c.password, Some(Secret("s3cret".into())));
        assert_eq!((c.host.as_str(), c.port, c.db), ("10.1.2.3", 7000, 1));

        let c = url("redis://:onlypass@h/").unwrap();
        assert_eq!((c.username.clone(), c.password.clone()), (None, Some(Secret("onlypass".into()))));

        let c = url("REDIS://[::1]:6390").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 6390));

        // Percent-encoded user and password; an unencoded '@' in a password.
        let c = url("redis://us%3Aer:p%40ss%2Fw%3Ard%25@h:1").unwrap();
        assert_eq!(c.username.as_deref(), Some("us:er"));
        assert_eq!(c.password, Some(Secret("p@ss/w:rd%".into())));
        let c = url("redis://u:p@ss@h").unwrap();
        assert_eq!(c.password, Some(Secret("p@ss".into())));
        assert_eq!(c.host, "h");

        // A URL replaces earlier connection settings; other settings stay.
        let c = Config::builder()
            .username("old")
            .password("old")
            .db(9)
            .tls(true)
            .trader_id("T7")
            .from_url("redis://new-host")
            .unwrap();
        assert_eq!((c.username, c.password, c.db, c.tls), (None, None, 0, false));
        assert_eq!(c.trader_id, "T7");
    }

    #[test]
    fn url_errors() {
        let cases: &[(&str, usize)] = &[
            ("http://h:6379", 1),
            ("localhost:6379", 1),
            ("redis://", 1),
            ("redis://:6379/0", 1),
            ("redis://h:abc", 1),
            ("redis://h:0", 1),
            ("redis://h:65536", 1),
            ("redis://h/abc", 1),
            ("redis://h/-1", 1),
            ("redis://h/0?db=1", 1),
            ("redis://::1:6379", 1),
            ("redis://[::1", 1),
            ("redis://bad host", 1),
            ("redis://u:p%zz@h", 1),
            ("redis://u:%ff@h", 1),
            ("ftp://u:p@:abc/x", 4),
        ];
        for (u, n) in cases {
            let e = problems(url(u));
            assert_eq!(e.problems.len(), *n, "{u}: {e}");
            assert!(e.problems.iter().all(|p| p.field == "url"), "{u}: {e}");
        }
        // The env variable is named as the field.
        let e = problems(from(&[("REDIS_URL", "redis://h:0")]));
        assert_eq!(fields(&e), vec!["REDIS_URL"]);
        assert_eq!(e.problems[0].value, "redis://h:0");
    }

    #[test]
    fn url_errors_hide_password() {
        let p = PASSWORD;
        for u in [
            format!("redis://user:{p}@h:notaport/0"),
            format!("redis://:{p}@/0"),
            format!("http://user:{p}@h"),
            format!("redis://user:{p}/with/slash@h:x"),
            format!("redis://user:{p}%zz@h"),
            format!("redis://:{p}"),
            format!("redis:/user:{p}@h:x"),
            format!("redis://h/0?password={p}"),
        ] {
            let e = problems(url(&u));
            assert_no_secret(&e, p);
            assert!(e.problems[0].value.contains(REDACTED), "{u}: {e}");
        }
        // A port that is not a number is hidden too (it may be a password
        // whose '@' was forgotten; tests/fuzz.rs found `redis://@:secret`).
        let e = problems(url(&format!("redis://alice:{p}@h:x/0")));
        assert_eq!(e.problems[0].value, "redis://alice:<redacted>@h:<redacted>");
    }

    #[test]
    fn redact_url_cases() {
        assert_eq!(redact_url("redis://h:6379/0"), "redis://h:6379/0");
        assert_eq!(redact_url("redis://u@h"), "redis://u@h");
        assert_eq!(redact_url("redis://u:pw@h"), "redis://u:<redacted>@h");
        assert_eq!(redact_url("redis://[::1]:6379"), "redis://[::1]:6379");
        assert_eq!(redact_url("u:pw@h"), "u:<redacted>@h");
        // Found by tests/fuzz.rs (config_url): "://" after the user info,
        // or inside the password.
        assert_eq!(redact_url("redis:/:pw@localhost://"), "redis:<redacted>@localhost://");
        assert_eq!(redact_url("redis:pw@h"), "redis:<redacted>@h");
        assert_eq!(redact_url("redis:/:pw://@localhost"), "redis:<redacted>@localhost");
        assert_eq!(redact_url("redis://u:p://w@h:1/2"), "redis://u:<redacted>@h:1/2");
        // The '@' forgotten: the non-number port and all after it.
        assert_eq!(redact_url("redis://:secret"), "redis://:<redacted>");
        assert_eq!(redact_url("redis://u:se/cret?x"), "redis://u:<redacted>");
        assert_eq!(redact_url("redis://[::1]:6379/0?x"), "redis://[::1]:6379/0?<redacted>");
        assert_eq!(redact_url("redis://@:secret"), "redis://@:<redacted>");
        assert_eq!(redact_url("redis://:secret:"), "redis://:<redacted>");
        assert_eq!(redact_url("redis://[::1]"), "redis://[::1]");
        assert_eq!(redact_url("redis://[::1]:x"), "redis://[::1]:<redacted>");
    }

    #[test]
    fn percent_coding() {
        assert_eq!(percent_decode("a%20b%2F").as_deref(), Some("a b/"));
        assert_eq!(percent_decode("%e2%82%ac").as_deref(), Some("€"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_encode("a b:@~"), "a%20b%3A%40~");
    }
}
