//! Configuration: [`Config`], built with its setters, [`Config::from_env()`]
//! or [`Config::from_url`] (combinable), and checked by [`Config::validate`],
//! which lists every problem and never shows a password. Each option is
//! written once, in the table below (`table.rs` holds the mechanism).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{ConfigError, ConfigProblem};

mod table;
mod url;
mod validate;

pub use crate::store::codec::Encoding;
pub(crate) use table::*;
pub(crate) use url::HostPort;
use url::{host_list, host_problem};
use validate::{check_id, check_instance, check_nodes};

/// What a password (or anything that may hold one) is shown as.
pub(super) const REDACTED: &str = "<redacted>";
/// Redis's own limit on a string value.
const REDIS_MAX_VALUE_BYTES: usize = 512 * 1024 * 1024;
const ENCODING_ALLOWED: &str = "one of: msgpack, json";
const PORT_ALLOWED: &str = "a port number from 1 to 65535";
/// After how long without work the flusher and the kv writer stop polling
/// and park until the next write (a constant: nothing is gained by turning it).
pub(crate) const IDLE_PARK_AFTER: Duration = Duration::from_secs(1);
/// The block timeout of `CACHE_OVERFLOW=block` without `CACHE_BLOCK_TIMEOUT_MS`.
const DEFAULT_BLOCK_TIMEOUT: Duration = Duration::from_millis(10);
/// The `WAIT` timeout of `CACHE_REPLICA_WAIT` without `CACHE_REPLICA_WAIT_TIMEOUT_MS`.
const DEFAULT_REPLICA_WAIT_TIMEOUT: Duration = Duration::from_millis(100);

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

const HOST: Codec<String> = Codec::plain("host name, IPv4 or IPv6 address", |v| Ok(v.into()))
    .checked(|v| host_problem(v).map_or(Ok(()), |allowed| Err(allowed.into())));
const PORT: Codec<u16> =
    Codec::plain("1 to 65535", |v| whole(v, PORT_ALLOWED)).checked(|n| refuse(*n == 0, PORT_ALLOWED));
const TEXT: Codec<Option<String>> =
    Codec::new("text", |v| Ok(Some(v.into())), |v| v.clone().unwrap_or_default());
const SECRET: Codec<Option<Secret>> = Codec {
    read: Read::Secret,
    ..Codec::new("text, not trimmed", |v| Ok(Some(Secret(v.into()))), |_| String::new())
};
const DB_ALLOWED: &str = "a database number, 0 or more";
const DB: Codec<i64> = Codec::plain("0 or more (0 with a cluster)", |v| whole(v, DB_ALLOWED))
    .checked(|n| refuse(*n < 0, DB_ALLOWED));
const PEM: Codec<Option<PathBuf>> = Codec::new(
    "PEM file path",
    |v| Ok(Some(v.into())),
    |p| p.as_ref().map_or(String::new(), |p| p.display().to_string()),
);
const SENTINELS: Codec<Vec<HostPort>> = Codec::new(
    "`host:port,host:port` (port 26379 if absent; IPv6 as `[::1]:26379`)",
    |v| host_list(v, 26379),
    |v| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
)
.checked(|v| check_nodes(v));
const NODES: Codec<Vec<HostPort>> = Codec {
    values: "`host:port,host:port` (port 6379 if absent)",
    parse: |v| host_list(v, 6379),
    ..SENTINELS
};
const MASTER: Codec<Option<String>> = Codec { values: "name", ..TEXT }.checked(|m| {
    let bad = |m: &str| m.is_empty() || m.contains(|c: char| c.is_whitespace() || c.is_control());
    refuse(m.as_deref().is_some_and(bad), "a master name, not empty, without whitespace")
});
pub(crate) const ID: Codec<String> =
    Codec::plain("id (no ':', '{', '}', whitespace or control characters)", |v| Ok(v.into()))
        .checked(|v| check_id(v));
const INSTANCE: Codec<Option<String>> = Codec { values: "id", ..TEXT }.checked(check_instance);
const ENCODING: Codec<Encoding> =
    Codec::plain("`msgpack` or `json`", |v| Encoding::from_name(v).ok_or(ENCODING_ALLOWED.into()));
const VALUE_BYTES_ALLOWED: &str = "from 1 to 536870912 bytes (Redis's limit)";
const VALUE_BYTES: Codec<usize> =
    Codec::plain("1 to 536870912 (Redis's limit)", |v| whole(v, VALUE_BYTES_ALLOWED))
        .checked(|n| refuse(!(1..=REDIS_MAX_VALUE_BYTES).contains(n), VALUE_BYTES_ALLOWED));
/// Not checked here: a longer `idle_poll` is refused by `validate`, not by `from_vars`.
const MICROS: Codec<Duration> = Codec::new(
    "microseconds, at most 1000000",
    |v| whole(v, "microseconds, 0 or more").map(Duration::from_micros),
    |d| d.as_micros().to_string(),
);
const RETAIN: Codec<Option<Duration>> =
    SECS_OFF.checked(|d| refuse(d.is_some_and(|d| d < Duration::from_secs(1)), "None, or at least 1s"));
const COUNT_OFF: Codec<Option<usize>> = Codec::new(
    "a count (0: keep all)",
    |v| Ok(Some(whole(v, "a count, 0 (keep all) or more")?).filter(|n| *n > 0)),
    |n| n.unwrap_or(0).to_string(),
)
.checked(|n| refuse(*n == Some(0), "1 or more"));
const OVERFLOW: Codec<OverflowPolicy> = Codec::new(
    "`reject` or `block`",
    |v| match v.to_ascii_lowercase().as_str() {
        "reject" => Ok(OverflowPolicy::Reject),
        "block" => Ok(OverflowPolicy::Block { timeout: DEFAULT_BLOCK_TIMEOUT }),
        _ => Err("one of: reject, block".into()),
    },
    |o| if *o == OverflowPolicy::Reject { "reject" } else { "block" }.into(),
);
const REPLICA_WAIT: Codec<Option<(u32, Duration)>> = Codec::new(
    "replicas (0: off)",
    |v| {
        let n = whole(v, "a number of replicas (0 turns waiting off)")?;
        Ok(Some(n).filter(|n| *n > 0).map(|n| (n, DEFAULT_REPLICA_WAIT_TIMEOUT)))
    },
    |w| w.map_or(0, |(n, _)| n).to_string(),
);

options! {
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
    pub struct Config, table OPTIONS {
        // --- Redis connection ---
        /// The Redis server's host name, IPv4 or IPv6 address (without brackets); not used with sentinels or a cluster. Defaults to `127.0.0.1`.
        host: String = "127.0.0.1".into(); [v: impl Into<String> => v.into()] ["REDIS_HOST" HOST]
        /// The Redis server's port, from 1 to 65535. Defaults to `6379`.
        port: u16 = 6379; [v: u16 => v] ["REDIS_PORT" PORT]
        /// The ACL user to log in as (needs a password too); empty clears it, and without one the `default` user logs in. Defaults to none.
        username: Option<String> = None; [v: impl Into<String> => Some(v.into()).filter(|v: &String| !v.is_empty())] ["REDIS_USERNAME" TEXT]
        /// The password to log in with (`AUTH`); empty clears it; never shown in `Debug` output, logs or errors. Defaults to none.
        password: Option<Secret> = None; [v: impl Into<String> => Some(Secret(v.into())).filter(|s| !s.0.is_empty())] ["REDIS_PASSWORD" SECRET]
        /// The database number (`SELECT`), 0 or more; 0 in cluster mode. Defaults to `0`.
        db: i64 = 0; [v: i64 => v] ["REDIS_DB" DB]
        /// Whether to connect with TLS (needs the crate's `tls` feature). Defaults to `false`.
        tls: bool = false; [v: bool => v] ["REDIS_SSL" BOOL]
        /// A PEM file of CA certificates to trust instead of the system's roots (only with `tls`). Defaults to none.
        tls_ca: Option<PathBuf> = None; [v: impl Into<PathBuf> => Some(v.into())] ["REDIS_TLS_CA" PEM]
        /// A PEM client certificate for mutual TLS (only with `tls`, and with `tls_key`). Defaults to none.
        tls_cert: Option<PathBuf> = None; [v: impl Into<PathBuf> => Some(v.into())] ["REDIS_TLS_CERT" PEM]
        /// The PEM private key of `tls_cert` (only with `tls`). Defaults to none.
        tls_key: Option<PathBuf> = None; [v: impl Into<PathBuf> => Some(v.into())] ["REDIS_TLS_KEY" PEM]
        /// Sentinels to ask for the current master (with `sentinel_master`); when set, `host` and `port` are not used. Defaults to none.
        sentinels: Vec<HostPort> = Vec::new(); [v: impl IntoIterator<Item = (impl Into<String>, u16)> => nodes(v)] ["REDIS_SENTINELS" SENTINELS]
        /// The name of the master the sentinels monitor; both or neither. Defaults to none.
        sentinel_master: Option<String> = None; [v: impl Into<String> => Some(v.into())] ["REDIS_SENTINEL_MASTER" MASTER]
        /// Seed nodes of a Redis Cluster (not with sentinels); the trader key then becomes a hash tag (`{trader-T1}:…`) so that one trader's keys share a slot. Defaults to none.
        cluster_nodes: Vec<HostPort> = Vec::new(); [v: impl IntoIterator<Item = (impl Into<String>, u16)> => nodes(v)] ["REDIS_CLUSTER" NODES]
        /// The longest one connection attempt may take. Defaults to 2 s.
        connect_timeout: Duration = Duration::from_secs(2); [v: Duration => v] [rows TIMEOUT]
        /// The longest to wait for a reply on an established connection (the socket's read and write timeouts). Defaults to 2 s.
        response_timeout: Duration = Duration::from_secs(2); [v: Duration => v] [rows]
        // --- Connecting and reconnecting ---
        /// How many times `Cache::open` tries to connect before it fails; at least 1. Defaults to `5`.
        connect_attempts: u32 = 5; [v: u32 => v] ["CACHE_CONNECT_ATTEMPTS" COUNT_U32]
        /// The shortest pause between attempts at startup (exponential backoff, with jitter; see `open_backoff`). Defaults to 1 s.
        open_backoff_min: Duration = Duration::from_secs(1); [] ["CACHE_BACKOFF_MIN_MS" MILLIS => open_backoff]
        /// The longest pause between attempts at startup. Defaults to 32 s.
        open_backoff_max: Duration = Duration::from_secs(32); [] ["CACHE_BACKOFF_MAX_MS" MILLIS => open_backoff]
        /// The shortest pause between reconnection attempts after a connection is lost (see `reconnect_backoff`). Defaults to 50 ms.
        reconnect_backoff_min: Duration = Duration::from_millis(50); [] ["CACHE_RECONNECT_BACKOFF_MIN_MS" MILLIS => reconnect_backoff]
        /// The longest pause between reconnection attempts (they go on forever). Defaults to 2 s.
        reconnect_backoff_max: Duration = Duration::from_secs(2); [] ["CACHE_RECONNECT_BACKOFF_MAX_MS" MILLIS => reconnect_backoff]
        // --- Keys and values ---
        /// The trader id, part of every key (`trader-{trader_id}:…`): not empty, no `:`, `{`, `}`, whitespace or control characters. Defaults to `TRADER-001`.
        trader_id: String = "TRADER-001".into(); [v: impl Into<String> => v.into()] ["CACHE_TRADER_ID" ID]
        /// The instance id, added to the trader key when `use_instance_id` is on (`trader-T1:{instance_id}:…`); the same rules as the trader id. Defaults to none.
        instance_id: Option<String> = None; [v: impl Into<String> => Some(v.into())] ["CACHE_INSTANCE_ID" INSTANCE]
        /// Whether keys start with the trader key; when off they have no trader prefix at all (`positions:P-1`), one database holds one trader's state, and a cluster cannot be used. Defaults to `true`.
        use_trader_prefix: bool = true; [v: bool => v] ["CACHE_USE_TRADER_PREFIX" BOOL]
        /// Whether the trader key includes the instance id (`trader-T1:{instance_id}:…`); needs `instance_id` and the trader prefix. Defaults to `false`.
        use_instance_id: bool = false; [v: bool => v] ["CACHE_USE_INSTANCE_ID" BOOL]
        /// How values are encoded (`Config::debug()` picks JSON). Defaults to `msgpack`.
        encoding: Encoding = Encoding::MsgPack; [v: Encoding => v] ["CACHE_ENCODING" ENCODING]
        /// Whether timestamps are written as ISO 8601 text instead of nanoseconds; only with JSON. Defaults to `false`.
        timestamps_as_iso8601: bool = false; [v: bool => v] ["CACHE_TIMESTAMPS_AS_ISO8601" BOOL]
        /// Whether `Cache::open` deletes this trader's keys (never the whole database) before starting; needs the trader prefix. Defaults to `false`.
        flush_on_start: bool = false; [v: bool => v] ["CACHE_FLUSH_ON_START" BOOL]
        /// Whether account events are appended to `accounts:{id}:events` (otherwise only the latest account snapshot is kept). Defaults to `true`.
        persist_account_events: bool = true; [v: bool => v] ["CACHE_PERSIST_ACCOUNT_EVENTS" BOOL]
        /// The largest encoded value accepted, in bytes, from 1 to 512 MiB (Redis's limit); larger ones are dropped and counted. Defaults to 512 KiB.
        max_value_bytes: usize = 512 * 1024; [v: usize => v] ["CACHE_MAX_VALUE_BYTES" VALUE_BYTES]
        /// The name of this writer's commit marker (`{trader_key}:writer:{writer_id}`), which settles in-doubt batches after a reconnect; two processes writing one trader's keys need different ones. Defaults to `main`.
        writer_id: String = "main".into(); [v: impl Into<String> => v.into()] ["CACHE_WRITER_ID" ID]
        // --- Write pipeline ---
        /// How many writes may wait in the channel to the flusher thread; at least 1. Defaults to `65536`.
        channel_capacity: usize = 65_536; [v: usize => v] ["CACHE_CHANNEL_CAPACITY" COUNT]
        /// What a write does when the channel is full: fail at once and hand the value back, or wait for room first. Defaults to `OverflowPolicy::Reject`.
        overflow: OverflowPolicy = OverflowPolicy::Reject; [v: OverflowPolicy => v] ["CACHE_OVERFLOW" OVERFLOW, BLOCK_TIMEOUT]
        /// The most writes in one `MULTI`/`EXEC` transaction; at least 1. Defaults to `4096`.
        max_batch: usize = 4096; [v: usize => v] ["CACHE_MAX_BATCH" COUNT]
        /// The most events the flusher holds while Redis is unreachable before it stops draining the channel (and writes start to overflow); at least 1. Defaults to `65536`.
        max_pending_events: usize = 65_536; [v: usize => v] ["CACHE_MAX_PENDING_EVENTS" COUNT]
        /// The most distinct snapshot keys the flusher holds while Redis is unreachable (one value per key), as `max_pending_events` for events; at least 1. Defaults to `262144`.
        max_pending_snapshots: usize = 262_144; [v: usize => v] ["CACHE_MAX_PENDING_SNAPSHOTS" COUNT]
        /// The most value bytes in one transaction (a batch holds at least one value whatever its size); at least 1. Defaults to 16 MiB.
        max_batch_bytes: usize = 16 * 1024 * 1024; [v: usize => v] ["CACHE_MAX_BATCH_BYTES" COUNT]
        /// How long the flusher keeps collecting after the first write of a batch, for fewer, larger batches; zero writes at once. Defaults to zero.
        buffer_interval: Duration = Duration::ZERO; [v: Duration => v] ["CACHE_BUFFER_INTERVAL_MS" MILLIS]
        /// How long the idle flusher sleeps between polls of the channel (zero spins); the most a write waits to be noticed, so at most 1 s. Defaults to 100 µs.
        idle_poll: Duration = Duration::from_micros(100); [v: Duration => v] ["CACHE_IDLE_POLL_US" MICROS]
        /// How long dropping a `Cache` waits for the final flush (as `Cache::close` does with its own timeout). Defaults to 5 s.
        close_timeout: Duration = Duration::from_secs(5); [v: Duration => v] ["CACHE_CLOSE_TIMEOUT_MS" MILLIS]
        /// `Some((replicas, timeout))`: after each batch, `WAIT` until that many replicas have it (at most `timeout`, above zero and below `response_timeout`); a batch not replicated in time is retried. Defaults to `None`.
        replica_wait: Option<(u32, Duration)> = None; [v: Option<(u32, Duration)> => v] ["CACHE_REPLICA_WAIT" REPLICA_WAIT, REPLICA_WAIT_TIMEOUT]
        // --- Recovery and buffers ---
        /// How many ids `Cache::load` reads per pipelined request (one `MGET` of their snapshots, one `LRANGE` per event log); at least 1. Defaults to `1000`.
        load_chunk: usize = 1000; [v: usize => v] ["CACHE_LOAD_CHUNK" COUNT]
        /// Whether `Cache::load` fails on a value it cannot decode (otherwise it skips the value and reports it). Defaults to `false`.
        strict_load: bool = false; [v: bool => v] ["CACHE_STRICT_LOAD" BOOL]
        /// How many ticks each tick series (per instrument) keeps in Redis: each append trims it, in the same transaction; at least 1. Defaults to `10000`.
        tick_capacity: usize = 10_000; [v: usize => v] ["CACHE_TICK_CAPACITY" COUNT]
        /// How many bars each bar series (per bar type) keeps in Redis, as `tick_capacity` for ticks; at least 1. Defaults to `10000`.
        bar_capacity: usize = 10_000; [v: usize => v] ["CACHE_BAR_CAPACITY" COUNT]
        // --- Running 24/7 ---
        /// `Some(age)`: the flusher purges closed entities older than `age` with their event logs and index entries, at open and then every `min(age, 60 s)`, as `Cache::purge_closed` does; at least 1 s. Defaults to `None`.
        retain_closed_for: Option<Duration> = None; [v: Option<Duration> => v] ["CACHE_RETAIN_CLOSED_SECS" RETAIN]
        /// Tuning that only tests turn, not a stable API: how many closed entities one purge step deletes (one transaction between two batches of writes); at least 1. Defaults to `500`.
        purge_batch: usize = 500; [#[doc(hidden)] v: usize => v] []
        /// `Some(n)`: every append to an account's event log trims it to its newest `n` events, in the same transaction; at least 1. Defaults to `None` (keep all).
        max_account_events: Option<usize> = None; [v: Option<usize> => v] ["CACHE_MAX_ACCOUNT_EVENTS" COUNT_OFF]
        /// `Some(interval)`: the flusher sets `{trader}:heartbeat:{writer_id}` this often with a TTL of three intervals, so a supervisor sees it vanish when the engine hangs, dies or loses Redis; at least 1 ms. Defaults to `None`.
        heartbeat_interval: Option<Duration> = None; [v: Option<Duration> => v] ["CACHE_HEARTBEAT_MS" MILLIS_OFF]
        /// Whether each event appended to an entity's log (not market data) is also added (`XADD`) to the stream `{trader}:stream:{collection}`, in the same transaction. Defaults to `false`.
        publish_events: bool = false; [v: bool => v] ["CACHE_PUBLISH_EVENTS" BOOL]
        /// The length each event stream is trimmed to (`XADD … MAXLEN ~ n`, so a stream may hold a little more); at least 1. Defaults to `100000`.
        stream_max_len: usize = 100_000; [v: usize => v] ["CACHE_STREAM_MAXLEN" COUNT]
        /// `Some(age)`: each batch that publishes also trims stream entries older than `age` by the Redis server's clock (`XTRIM … MINID ~`, Redis 6.2 or later; by length only where `TIME` is refused); at least 1 ms. Defaults to `None`.
        stream_max_age: Option<Duration> = None; [v: Option<Duration> => v] ["CACHE_STREAM_MAX_AGE_SECS" SECS_OFF]
        /// Tests only, not a stable API: milliseconds added to the wall clock the flusher stamps batches with (negative: behind), so that a test can show that `stream_max_age` trims by the Redis server's clock. Defaults to `0`.
        clock_skew_for_tests: i64 = 0; [#[doc(hidden)] ms: i64 => ms] []
    }
}

/// The nodes a setter is given.
fn nodes(v: impl IntoIterator<Item = (impl Into<String>, u16)>) -> Vec<HostPort> {
    v.into_iter().map(|(host, port)| HostPort { host: host.into(), port }).collect()
}

// Variables that are not one option's.
const URL: Opt<Config> = Opt {
    var: "REDIS_URL",
    sets: "from_url",
    doc: "Sets host, port, username, password, db and TLS at once; applied first, the other `REDIS_*` \
          variables override its parts. Percent-encode '@', ':', '/', '?', '#', '%' in the user and \
          password (@ is %40).",
    values: "`redis[s]://[user[:password]@]host[:port][/db]`",
    read: Read::Trimmed,
    default: Config::redacted_url,
    apply: url::apply_url,
};
const TIMEOUT: Opt<Config> = Opt {
    var: "REDIS_TIMEOUT",
    sets: "connect_timeout, response_timeout",
    doc: "Connect timeout and per-reply timeout.",
    values: SECONDS.values,
    read: Read::Trimmed,
    default: |c| (SECONDS.show)(&c.connect_timeout),
    apply: |c, v| SECONDS.value(v).map(|t| (c.connect_timeout, c.response_timeout) = (t, t)),
};
const BLOCK_TIMEOUT: Opt<Config> = Opt {
    var: "CACHE_BLOCK_TIMEOUT_MS",
    sets: "overflow",
    doc: "The longest a write waits for room; only with CACHE_OVERFLOW=block.",
    values: MILLIS_MIN_1.values,
    read: Read::Trimmed,
    default: |_| (MILLIS.show)(&DEFAULT_BLOCK_TIMEOUT),
    apply: |c, v| match &mut c.overflow {
        OverflowPolicy::Block { timeout } => MILLIS_MIN_1.value(v).map(|t| *timeout = t),
        OverflowPolicy::Reject => Err("only with CACHE_OVERFLOW=block".into()),
    },
};
const REPLICA_WAIT_TIMEOUT: Opt<Config> = Opt {
    var: "CACHE_REPLICA_WAIT_TIMEOUT_MS",
    sets: "replica_wait",
    doc: "The longest that `WAIT` waits; only with CACHE_REPLICA_WAIT of 1 or more.",
    values: "milliseconds, 1 or more, below REDIS_TIMEOUT",
    read: Read::Trimmed,
    default: |_| (MILLIS.show)(&DEFAULT_REPLICA_WAIT_TIMEOUT),
    apply: |c, v| match &mut c.replica_wait {
        Some((_, timeout)) => MILLIS_MIN_1.value(v).map(|t| *timeout = t),
        None => Err("only with CACHE_REPLICA_WAIT of 1 or more".into()),
    },
};

/// Collects problems; never stops at the first.
#[derive(Default)]
pub(crate) struct Problems(pub(crate) Vec<ConfigProblem>);

impl Problems {
    pub(crate) fn push(&mut self, field: &str, value: impl Into<String>, allowed: impl Into<String>) {
        self.0.push(ConfigProblem { field: field.to_string(), value: value.into(), allowed: allowed.into() });
    }

    /// `refused`'s problems under `field`, showing `text` where they name no value.
    pub(crate) fn refused(&mut self, field: &str, text: &str, refused: Refused) {
        for (shown, allowed) in refused.0 {
            self.push(field, shown.unwrap_or_else(|| text.to_string()), allowed);
        }
    }

    /// In the order of `fields` (the option table's), others last.
    pub(crate) fn sorted(mut self, fields: &[&str]) -> Self {
        self.0.sort_by_key(|p| fields.iter().position(|f| *f == p.field).unwrap_or(usize::MAX));
        self
    }

    /// `r`'s value, or `None` with its problems added.
    pub(crate) fn take<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.0.extend(e.problems)).ok()
    }

    pub(crate) fn finish<T>(self, ok: T) -> Result<T, ConfigError> {
        self.0.is_empty().then_some(ok).ok_or(ConfigError { problems: self.0 })
    }
}

impl FromStr for Encoding {
    type Err = ConfigError;

    /// Parses `msgpack` (or `messagepack`) or `json`, in any case, trimmed.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Encoding::from_name(s).ok_or_else(|| ConfigError::one("encoding", s, ENCODING_ALLOWED))
    }
}

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
        read_env(|get| Config::from_vars(get))
    }

    /// Builds a configuration from variables looked up by `get` (a `HashMap`,
    /// say, or `std::env::var` as [`Config::from_env`] does), starting from
    /// the defaults: an unset or empty variable keeps its default; values are
    /// trimmed, except passwords. The variables, in the order they are
    /// applied (docs/configuration.md and `.env.example` render the same table):
    ///
    #[doc = include_str!("vars.md")]
    ///
    /// Booleans are `true`, `false`, `1`, `0`, `yes` or `no` (any case). A
    /// password can come from its own variable beside `REDIS_URL`:
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
    /// [`ConfigError`] with one [`ConfigProblem`](crate::ConfigProblem) per unusable variable (or
    /// per problem in `REDIS_URL`), naming the variable, the bad value
    /// (never a password) and what is allowed.
    pub fn from_vars<F: Fn(&str) -> Option<String>>(get: F) -> Result<Config, ConfigError> {
        let (mut problems, mut c) = (Problems::default(), Config::default());
        apply_vars(Config::rows(), &mut c, &get, &mut problems);
        problems.finish(c)
    }

    /// A preset for debugging: values are written as JSON
    /// ([`Encoding::Json`]) with timestamps as ISO 8601 strings, so that
    /// `redis-cli GET` shows them readably. Everything else is the default.
    #[must_use]
    pub fn debug() -> Config {
        Config::default().encoding(Encoding::Json).timestamps_as_iso8601(true)
    }

    /// Every variable [`Config::from_vars`] reads, in the order it applies them.
    pub(crate) fn rows() -> impl Iterator<Item = &'static Opt<Config>> {
        std::iter::once(&URL).chain(OPTIONS.iter().copied().flatten())
    }

    /// The bounds of the exponential backoff (with jitter) between connection
    /// attempts in `Cache::open`, `min` at most `max`. Defaults to 1 s and 32 s.
    #[must_use]
    pub fn open_backoff(self, min: Duration, max: Duration) -> Self {
        Config { open_backoff_min: min, open_backoff_max: max, ..self }
    }

    /// The bounds of the exponential backoff (with jitter) between the
    /// reconnection attempts after a connection is lost; `min` may not
    /// exceed `max`. Defaults to 50 ms and 2 s.
    #[must_use]
    pub fn reconnect_backoff(self, min: Duration, max: Duration) -> Self {
        Config { reconnect_backoff_min: min, reconnect_backoff_max: max, ..self }
    }

    /// [`Config::buffer_interval`] in milliseconds (the spec's
    /// `buffer_interval_ms`). Defaults to `0`.
    #[must_use]
    pub fn buffer_interval_ms(self, ms: u64) -> Self {
        self.buffer_interval(Duration::from_millis(ms))
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
        match (self.use_trader_prefix, self.use_instance_id, &self.instance_id) {
            (false, ..) => String::new(),
            (true, true, Some(instance)) => format!("trader-{}:{instance}", self.trader_id),
            _ => format!("trader-{}", self.trader_id),
        }
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
        if !self.sentinels.is_empty() {
            let master = self.sentinel_master.as_deref().unwrap_or("");
            let sentinels = (SENTINELS.show)(&self.sentinels);
            format!("{}{sentinels}/{master}/{}", self.url_start("+sentinel"), self.db)
        } else if !self.cluster_nodes.is_empty() {
            format!("{}{}", self.url_start(""), (NODES.show)(&self.cluster_nodes))
        } else {
            let addr = HostPort { host: self.host.clone(), port: self.port };
            format!("{}{addr}/{}", self.url_start(""), self.db)
        }
    }
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

/// Tests of reading the environment: `Config::from_env` and `Config::from_vars`.
#[cfg(test)]
mod env;

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
        assert_eq!((c.buffer_interval, c.idle_poll), (ms(8), ms(9)));
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
        let addr = |c: Config| HostPort { host: c.host, port: c.port }.to_string();
        assert_eq!(addr(c.clone()), "127.0.0.1:6379");
        assert_eq!(addr(c.host("::1").port(7000)), "[::1]:7000");
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
