//! The environment: [`Config::from_env`] and [`Config::from_vars`].

use std::str::FromStr;
use std::time::Duration;

use super::url::{apply_url, host_problem, parse_host_port, parse_port, DEFAULT_PORT};
use super::validate::id_allowed;
use super::{Config, Encoding, HostPort, OverflowPolicy, Problems, Secret};
use super::{BOOL_ALLOWED, ENCODING_ALLOWED, REDIS_MAX_VALUE_BYTES};
use crate::error::ConfigError;
use crate::ident;

/// The port of a sentinel in `REDIS_SENTINELS` without one.
const DEFAULT_SENTINEL_PORT: u16 = 26379;
/// The block timeout of `CACHE_OVERFLOW=block` without `CACHE_BLOCK_TIMEOUT_MS`.
const DEFAULT_BLOCK_TIMEOUT: Duration = Duration::from_millis(10);
/// The `WAIT` timeout of `CACHE_REPLICA_WAIT` without
/// `CACHE_REPLICA_WAIT_TIMEOUT_MS`.
const DEFAULT_REPLICA_WAIT_TIMEOUT: Duration = Duration::from_millis(100);

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

impl FromStr for Encoding {
    type Err = ConfigError;

    /// Parses `msgpack` (or `messagepack`) or `json`, ignoring case and
    /// surrounding whitespace.
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::test_util::*;
    use super::*;
    use crate::config::PORT_ALLOWED;

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
        let example = include_str!("../../.env.example");
        for name in ENV_VARS {
            assert!(example.contains(&format!("# {name}=")), "{name} missing from .env.example");
        }
    }
}
