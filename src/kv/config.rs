//! [`KvConfig`]: a [`Config`] for the connection, and the caching layer's
//! own options, each written once in the table below (src/config/table.rs).

use std::time::Duration;

use crate::config::{apply_var, apply_vars, options, read_env, whole, Codec, Config, Encoding, Problems};
use crate::config::{Read, BOOL, COUNT, COUNT_U32, ID, MILLIS, MILLIS_MIN_1, SECONDS, SECS_OFF};
use crate::error::ConfigError;
use crate::ident;

/// The default TTL policies (seconds), each read from `CACHE_{NAMESPACE}_TTL`.
const DEFAULT_POLICIES: [(&str, u64); 4] =
    [("market_data", 60), ("portfolio", 300), ("risk", 180), ("session", 1800)];

const PREFIX: Codec<String> =
    Codec { read: Read::TrimmedEmptyCounts, values: "an id, or empty for none", ..ID }.checked(|v| {
        let bad = ident::validate(v).err().filter(|_| !v.is_empty());
        bad.map_or(Ok(()), |e| Err(format!("an id, or empty ({e})").into()))
    });
const TTL: Codec<Option<Duration>> = Codec { values: "seconds, 0 = never expires", ..SECS_OFF };
const BYTES: Codec<usize> = Codec::plain("bytes", |v| whole(v, "a number of bytes, 0 or more"));
const ENTRIES: Codec<usize> =
    Codec::plain("entries, 0 = off", |v| whole(v, "a number of entries, 0 turns it off"));

options! {
    /// The configuration of a [`crate::kv::Kv`].
    ///
    /// The connection, the encoding and the largest value accepted come from
    /// the embedded [`Config`] ([`KvConfig::redis`]), read from the same
    /// `REDIS_*` and `CACHE_*` variables; its trader id and pipeline settings
    /// are not used.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tradecache::Config;
    /// use tradecache::kv::KvConfig;
    ///
    /// let config = KvConfig::builder()
    ///     .redis(Config::builder().host("redis.internal").password("s3cret"))
    ///     .key_prefix("engine-7")
    ///     .ttl("orderbook", Duration::from_secs(5))
    ///     .near_capacity(10_000);
    /// assert!(config.validate().is_ok());
    /// assert_eq!(config.ttl_of("orderbook"), Some(Duration::from_secs(5)));
    /// assert_eq!(config.ttl_of("market_data"), Some(Duration::from_secs(60)));
    /// assert_eq!(config.ttl_of("anything_else"), Some(Duration::from_secs(3600)));
    /// assert!(!format!("{config:?}").contains("s3cret"));
    /// ```
    #[derive(Debug, Clone)]
    pub struct KvConfig, table KV_OPTIONS {
        /// The connection settings, encoding and largest value (`max_value_bytes`, the limit on an encoded value before compression), as for `Cache`. Defaults to `Config::default()`.
        redis: Config = Config::default(); [v: Config => v] []
        /// The first part of every key: `{key_prefix}:{namespace}:{key}`; the rules of an id, and empty leaves keys without a prefix. Defaults to `cache`.
        key_prefix: String = "cache".into(); [v: impl Into<String> => v.into()] ["CACHE_KEY_PREFIX" PREFIX]
        /// The TTL of the namespaces without a policy of their own; `None` never expires. Defaults to one hour.
        default_ttl: Option<Duration> = Some(Duration::from_secs(3600)); [v: Option<Duration> => v] ["CACHE_DEFAULT_TTL" TTL]
        /// Namespace policies (`ttl`, `ttl_policy`); `None` is "never expires".
        ttls: Vec<(String, Option<Duration>)> =
            DEFAULT_POLICIES.iter().map(|(ns, s)| ((*ns).into(), Some(Duration::from_secs(*s)))).collect(); [] []
        /// Encoded values larger than this many bytes are stored LZ4-compressed (when that makes them smaller); 0 compresses every value. Defaults to `1024`.
        compress_threshold: usize = 1024; [v: usize => v] ["CACHE_COMPRESS_THRESHOLD" BYTES]
        /// The most keys in one `MGET` of `get_many` (larger requests are split and pipelined; writes are not bounded by it). Defaults to `100`.
        max_batch_size: usize = 100; [v: usize => v] ["CACHE_MAX_BATCH_SIZE" COUNT]
        /// Whether per-operation latencies are recorded (two clock reads per call); counters are always kept. Defaults to `true`.
        enable_metrics: bool = true; [v: bool => v] ["CACHE_ENABLE_METRICS" BOOL]
        /// Whether operations slower than `slow_op_threshold` are logged (`log::warn!`, with operation, namespace, key and duration). Defaults to `true`.
        log_slow_ops: bool = true; [v: bool => v] ["CACHE_LOG_SLOW_OPS" BOOL]
        /// What a slow operation is (see `log_slow_ops`). Defaults to 100 ms.
        slow_op_threshold: Duration = Duration::from_millis(100); [v: Duration => v] ["CACHE_SLOW_OP_THRESHOLD" MILLIS]
        /// The most read connections (the pool `get`, `get_many`, `exists` and `clear_namespace` use, opened on demand; the writer has its own). Defaults to `16`.
        max_connections: usize = 16; [v: usize => v] ["REDIS_MAX_CONNECTIONS" COUNT]
        /// How many values the in-process near cache holds; 0 turns it off. Defaults to `0`.
        near_capacity: usize = 0; [v: usize => v] ["CACHE_NEAR_CAPACITY" ENTRIES]
        /// How long the near cache serves a value read from Redis: the bound on staleness when server-assisted invalidation is off or down, and on a TTL that ran out meanwhile. Defaults to 1 s.
        near_ttl: Duration = Duration::from_secs(1); [v: Duration => v] ["CACHE_NEAR_TTL_MS" MILLIS_MIN_1]
        /// Whether the near cache subscribes to server-assisted invalidation (`CLIENT TRACKING … BCAST PREFIX`), so that other processes' writes evict its entries at once; not in a cluster, where `near_ttl` bounds staleness. Defaults to `true`.
        near_tracking: bool = true; [v: bool => v] ["CACHE_NEAR_TRACKING" BOOL]
        /// After this many consecutive failures of calls to Redis the circuit breaker opens; at least 1. Defaults to `5`.
        breaker_failures: u32 = 5; [v: u32 => v] ["CACHE_BREAKER_FAILURES" COUNT_U32]
        /// How long an open breaker keeps calls away from Redis before one probe is let through (half-open). Defaults to 60 s.
        breaker_open: Duration = Duration::from_secs(60); [v: Duration => v] ["CACHE_BREAKER_OPEN_SECS" SECONDS]
        /// How many writes may wait in the channel to the writer thread, which takes them into its pending set as they come; a write to a full channel is refused with `Error::Unavailable` (counted in `rejected`; it never blocks). Defaults to `65536`.
        channel_capacity: usize = 65_536; [v: usize => v] ["CACHE_KV_CHANNEL_CAPACITY" COUNT]
        /// The most distinct keys the writer holds, the batch on its way included; past it, writes to new keys wait in the channel while a batch is on its way, and are dropped and counted in an outage. Defaults to `100000`.
        max_pending_keys: usize = 100_000; [v: usize => v] ["CACHE_KV_MAX_PENDING_KEYS" COUNT]
    }
}

impl KvConfig {
    /// A preset for debugging: values are written as JSON
    /// ([`Encoding::Json`]), so that `redis-cli GET` shows them after the
    /// one header byte (below the compression threshold).
    #[must_use]
    pub fn debug() -> KvConfig {
        KvConfig::default().redis(Config::default().encoding(Encoding::Json))
    }

    /// The TTL policy of one namespace (what [`crate::kv::Ttl::Policy`]
    /// means for it), replacing any set before. Defaults: see the
    /// `CACHE_*_TTL` variables of [`KvConfig::from_vars`].
    #[must_use]
    pub fn ttl(self, namespace: impl Into<String>, ttl: Duration) -> Self {
        self.ttl_policy(namespace, Some(ttl))
    }

    /// Like [`KvConfig::ttl`]; `None` means the namespace's keys never expire.
    #[must_use]
    pub fn ttl_policy(mut self, namespace: impl Into<String>, ttl: Option<Duration>) -> Self {
        self.set_policy(&namespace.into(), ttl);
        self
    }

    fn set_policy(&mut self, namespace: &str, ttl: Option<Duration>) {
        match self.ttls.iter_mut().find(|(ns, _)| ns == namespace) {
            Some(policy) => policy.1 = ttl,
            None => self.ttls.push((namespace.to_string(), ttl)),
        }
    }

    /// The TTL that [`crate::kv::Ttl::Policy`] gives keys of `namespace`
    /// (its own policy, or the default one); `None` when they never expire.
    pub fn ttl_of(&self, namespace: &str) -> Option<Duration> {
        self.ttls.iter().find(|(ns, _)| ns == namespace).map_or(self.default_ttl, |(_, t)| *t)
    }

    /// Checks the whole configuration: the embedded [`Config`] (see
    /// [`Config::validate`]) and the caching layer's settings.
    /// [`crate::kv::Kv::open`] calls it.
    ///
    /// ```
    /// use tradecache::kv::KvConfig;
    ///
    /// let err = KvConfig::builder().key_prefix("a:b").max_connections(0).validate().unwrap_err();
    /// assert!(err.mentions("key_prefix") && err.mentions("max_connections"));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] with one problem per issue: the key prefix and every
    /// namespace with a policy follow the [`crate::Ident`] rules; TTLs are at
    /// least 1 ms; `max_batch_size`, `max_connections`, `breaker_failures`,
    /// `channel_capacity` and `max_pending_keys` are 1 or more;
    /// `breaker_open` and `near_ttl` are above zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        self.check_values(&mut p);
        for (ns, ttl) in &self.ttls {
            if let Err(e) = ident::validate(ns) {
                p.push("ttl", ns, format!("a namespace that is a valid id ({e})"));
            }
            if let Err(refused) = (TTL.check)(ttl) {
                p.refused("ttl", &format!("{ns}: {ttl:?}"), refused);
            }
        }
        let mut all = Problems(self.redis.validate().err().map_or(Vec::new(), |e| e.problems));
        all.0.extend(p.sorted(KvConfig::FIELDS).0);
        all.finish(())
    }

    /// Reads the configuration from the process environment; see
    /// [`KvConfig::from_vars`].
    ///
    /// # Errors
    ///
    /// [`ConfigError`] listing every variable that cannot be used.
    pub fn from_env() -> Result<KvConfig, ConfigError> {
        read_env(|get| KvConfig::from_vars(get))
    }

    /// Every variable [`KvConfig::from_vars`] reads, those of
    /// [`Config::from_vars`] first (for the Python bindings).
    #[doc(hidden)]
    pub fn var_names() -> Vec<String> {
        let kv = KV_OPTIONS.iter().copied().flatten().map(|o| o.var);
        let ttls = DEFAULT_POLICIES.iter().map(|(ns, _)| ttl_var(ns));
        Config::rows().map(|o| o.var).chain(kv).map(String::from).chain(ttls).collect()
    }

    /// Builds a configuration from variables looked up by `get`: the
    /// connection part with [`Config::from_vars`] (every `REDIS_*` and
    /// `CACHE_*` variable it reads), then these:
    ///
    #[doc = include_str!("vars.md")]
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use std::time::Duration;
    /// use tradecache::kv::KvConfig;
    ///
    /// let vars = HashMap::from([
    ///     ("REDIS_URL", "redis://cache-1:6380/2"),
    ///     ("CACHE_KEY_PREFIX", "desk-3"),
    ///     ("CACHE_MARKET_DATA_TTL", "15"),
    /// ]);
    /// let config = KvConfig::from_vars(|k| vars.get(k).map(|v| v.to_string())).unwrap();
    /// assert_eq!(config.ttl_of("market_data"), Some(Duration::from_secs(15)));
    ///
    /// let vars = HashMap::from([("REDIS_PORT", "0"), ("CACHE_RISK_TTL", "soon")]);
    /// let err = KvConfig::from_vars(|k| vars.get(k).map(|v| v.to_string())).unwrap_err();
    /// assert!(err.mentions("REDIS_PORT") && err.mentions("CACHE_RISK_TTL"));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] with every problem of both parts, each naming the
    /// variable, the bad value (never a password) and what is allowed.
    pub fn from_vars<F: Fn(&str) -> Option<String>>(get: F) -> Result<KvConfig, ConfigError> {
        let (mut p, mut c) = (Problems::default(), KvConfig::default());
        c.redis = p.take(Config::from_vars(&get)).unwrap_or_default();
        apply_vars(KV_OPTIONS.iter().copied().flatten(), &mut c, &get, &mut p);
        for (ns, _) in DEFAULT_POLICIES {
            apply_var(&ttl_var(ns), TTL.read, &get, &mut p, |v| TTL.value(v).map(|t| c.set_policy(ns, t)));
        }
        p.finish(c)
    }
}

/// `CACHE_{NAMESPACE}_TTL`.
fn ttl_var(namespace: &str) -> String {
    format!("CACHE_{}_TTL", namespace.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::render::{env_example, lines, markdown, Line};

    impl KvConfig {
        /// The variables as the documentation lists them.
        fn env_lines() -> Vec<Line> {
            let d = KvConfig::default();
            let mut lines = lines(KV_OPTIONS.iter().flat_map(|rows| rows.iter()), &d);
            lines.extend(DEFAULT_POLICIES.iter().map(|(ns, _)| Line {
                var: ttl_var(ns),
                sets: "ttl",
                default: (TTL.show)(&d.ttl_of(ns)),
                values: TTL.values,
                doc: format!("TTL policy of the `{ns}` namespace."),
            }));
            lines
        }
    }

    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<KvConfig, ConfigError> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        KvConfig::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_spec() {
        let c = KvConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.ttl_of("market_data"), Some(Duration::from_secs(60)));
        assert_eq!(c.ttl_of("portfolio"), Some(Duration::from_secs(300)));
        assert_eq!(c.ttl_of("risk"), Some(Duration::from_secs(180)));
        assert_eq!(c.ttl_of("session"), Some(Duration::from_secs(1800)));
        assert_eq!(c.ttl_of("other"), Some(Duration::from_secs(3600)));
        assert_eq!((c.compress_threshold, c.max_batch_size), (1024, 100));
        assert_eq!(c.slow_op_threshold, Duration::from_millis(100));
        assert_eq!((c.breaker_failures, c.breaker_open), (5, Duration::from_secs(60)));
    }

    #[test]
    fn env_sets_every_field() {
        let c = from(&[
            ("CACHE_KEY_PREFIX", "p1"),
            ("CACHE_DEFAULT_TTL", "0"),
            ("CACHE_MARKET_DATA_TTL", "1"),
            ("CACHE_PORTFOLIO_TTL", "2"),
            ("CACHE_RISK_TTL", "3"),
            ("CACHE_SESSION_TTL", "4"),
            ("CACHE_COMPRESS_THRESHOLD", "5"),
            ("CACHE_MAX_BATCH_SIZE", "6"),
            ("CACHE_ENABLE_METRICS", "no"),
            ("CACHE_LOG_SLOW_OPS", "0"),
            ("CACHE_SLOW_OP_THRESHOLD", "7"),
            ("REDIS_MAX_CONNECTIONS", "8"),
            ("CACHE_NEAR_CAPACITY", "9"),
            ("CACHE_NEAR_TTL_MS", "10"),
            ("CACHE_NEAR_TRACKING", "false"),
            ("CACHE_BREAKER_FAILURES", "11"),
            ("CACHE_BREAKER_OPEN_SECS", "0.5"),
            ("CACHE_KV_CHANNEL_CAPACITY", "12"),
            ("CACHE_KV_MAX_PENDING_KEYS", "13"),
            ("CACHE_ENCODING", "json"),
        ])
        .unwrap();
        assert_eq!(c.key_prefix, "p1");
        assert_eq!(c.default_ttl, None);
        let s = Duration::from_secs;
        assert_eq!(
            [c.ttl_of("market_data"), c.ttl_of("portfolio"), c.ttl_of("risk"), c.ttl_of("session")],
            [Some(s(1)), Some(s(2)), Some(s(3)), Some(s(4))]
        );
        assert_eq!(c.ttl_of("x"), None);
        assert_eq!((c.compress_threshold, c.max_batch_size), (5, 6));
        assert!(!c.enable_metrics && !c.log_slow_ops && !c.near_tracking);
        assert_eq!(c.slow_op_threshold, Duration::from_millis(7));
        assert_eq!((c.max_connections, c.near_capacity), (8, 9));
        assert_eq!(c.near_ttl, Duration::from_millis(10));
        assert_eq!((c.breaker_failures, c.breaker_open), (11, Duration::from_millis(500)));
        assert_eq!((c.channel_capacity, c.max_pending_keys), (12, 13));
        assert_eq!(c.redis.encoding, Encoding::Json);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn env_lists_every_problem_of_both_parts() {
        let e = from(&[
            ("REDIS_PORT", "x"),
            ("REDIS_PASSWORD", "pw-S3CRET"),
            ("CACHE_KEY_PREFIX", "a b"),
            ("CACHE_DEFAULT_TTL", "-1"),
            ("CACHE_MAX_BATCH_SIZE", "0"),
            ("CACHE_ENABLE_METRICS", "maybe"),
            ("REDIS_MAX_CONNECTIONS", "many"),
            ("CACHE_BREAKER_OPEN_SECS", "0"),
            ("CACHE_NEAR_TTL_MS", "0"),
        ])
        .unwrap_err();
        for var in [
            "REDIS_PORT",
            "CACHE_KEY_PREFIX",
            "CACHE_DEFAULT_TTL",
            "CACHE_MAX_BATCH_SIZE",
            "CACHE_ENABLE_METRICS",
            "REDIS_MAX_CONNECTIONS",
            "CACHE_BREAKER_OPEN_SECS",
            "CACHE_NEAR_TTL_MS",
        ] {
            assert!(e.mentions(var), "{var} not in {e}");
        }
        assert!(!format!("{e} {e:?}").contains("pw-S3CRET"));
    }

    #[test]
    fn validation_lists_every_problem() {
        let c = KvConfig::builder()
            .key_prefix("a:b")
            .ttl("bad ns", Duration::from_secs(1))
            .ttl("tiny", Duration::from_micros(10))
            .max_batch_size(0)
            .max_connections(0)
            .breaker_failures(0)
            .breaker_open(Duration::ZERO)
            .channel_capacity(0)
            .max_pending_keys(0)
            .near_ttl(Duration::ZERO)
            .redis(Config::builder().port(0));
        let e = c.validate().unwrap_err();
        for f in [
            "port",
            "key_prefix",
            "ttl",
            "max_batch_size",
            "max_connections",
            "breaker_failures",
            "breaker_open",
            "channel_capacity",
            "max_pending_keys",
            "near_ttl",
        ] {
            assert!(e.mentions(f), "{f} not in {e}");
        }
        assert_eq!(e.problems.iter().filter(|p| p.field == "ttl").count(), 2, "{e}");
        assert!(KvConfig::builder().key_prefix("").validate().is_ok());
    }

    /// The `KvConfig` table in docs/configuration.md, the table in the documentation of
    /// `from_vars` and the kv part of `.env.example` are what the table
    /// renders (`TRADECACHE_WRITE_DOCS=1` writes them).
    #[test]
    fn docs_match_the_table() {
        use crate::config::docs;
        let lines = KvConfig::env_lines();
        docs::check_file("src/kv/vars.md", &markdown(&lines, Some("KvConfig")));
        docs::check_block("docs/configuration.md", "kv-env", &markdown(&lines, None));
        docs::check_block(".env.example", "kv-env", &env_example(&lines));
    }

    #[test]
    fn each_default_reads_back_as_the_default() {
        let defaults = format!("{:?}", KvConfig::default());
        for line in KvConfig::env_lines() {
            let (var, text) = (line.var.as_str(), line.default.as_str());
            let c = from(&[(var, text)]).unwrap_or_else(|e| panic!("{var}={text}: {e}"));
            assert_eq!(format!("{c:?}"), defaults, "{var}={text}");
        }
        // An empty prefix is a prefix (none), not the default.
        assert_eq!(from(&[("CACHE_KEY_PREFIX", " ")]).unwrap().key_prefix, "");
    }
}
