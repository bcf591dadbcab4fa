//! [`KvConfig`]: the connection part is a [`Config`] (so ACL, TLS, Sentinel
//! and Cluster work exactly as for [`crate::Cache`]); the rest is the
//! caching layer's own: namespaces and their TTLs, the key prefix,
//! compression, batches, the read pool, the near cache and the breaker.

use std::time::Duration;

use crate::config::{Config, Encoding};
use crate::error::{ConfigError, ConfigProblem};
use crate::ident;

/// The namespaces with a TTL policy of their own by default, as the
/// specification lists them (seconds).
const DEFAULT_POLICIES: [(&str, u64); 4] =
    [("market_data", 60), ("portfolio", 300), ("risk", 180), ("session", 1800)];

/// The configuration of a [`crate::kv::Kv`].
///
/// The connection (host, port, ACL user, password, db, TLS, Sentinel,
/// Cluster, timeouts, connect attempts and backoff), the encoding and the
/// largest value accepted come from the embedded [`Config`], read from the
/// same `REDIS_*` and `CACHE_*` variables; see [`KvConfig::redis`]. The
/// trader id and the pipeline settings of `Config` are not used by the
/// caching layer.
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
pub struct KvConfig {
    pub(crate) redis: Config,
    pub(crate) key_prefix: String,
    pub(crate) default_ttl: Option<Duration>,
    /// Namespace policies; `None` is "never expires".
    pub(crate) ttls: Vec<(String, Option<Duration>)>,
    pub(crate) compress_threshold: usize,
    pub(crate) max_batch_size: usize,
    pub(crate) enable_metrics: bool,
    pub(crate) log_slow_ops: bool,
    pub(crate) slow_op_threshold: Duration,
    pub(crate) max_connections: usize,
    pub(crate) near_capacity: usize,
    pub(crate) near_ttl: Duration,
    pub(crate) near_tracking: bool,
    pub(crate) breaker_failures: u32,
    pub(crate) breaker_open: Duration,
    pub(crate) channel_capacity: usize,
    pub(crate) max_pending_keys: usize,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            redis: Config::default(),
            key_prefix: "cache".into(),
            default_ttl: Some(Duration::from_secs(3600)),
            ttls: DEFAULT_POLICIES
                .iter()
                .map(|(ns, s)| ((*ns).to_string(), Some(Duration::from_secs(*s))))
                .collect(),
            compress_threshold: 1024,
            max_batch_size: 100,
            enable_metrics: true,
            log_slow_ops: true,
            slow_op_threshold: Duration::from_millis(100),
            max_connections: 16,
            near_capacity: 0,
            near_ttl: Duration::from_secs(1),
            near_tracking: true,
            breaker_failures: 5,
            breaker_open: Duration::from_secs(60),
            channel_capacity: 65_536,
            max_pending_keys: 100_000,
        }
    }
}

impl KvConfig {
    /// The defaults, to be changed with the setters below; the same as
    /// [`KvConfig::default()`].
    #[must_use]
    pub fn builder() -> KvConfig {
        KvConfig::default()
    }

    /// A preset for debugging: values are written as JSON
    /// ([`Encoding::Json`]), so that `redis-cli GET` shows them after the
    /// one header byte (below the compression threshold).
    #[must_use]
    pub fn debug() -> KvConfig {
        let mut c = KvConfig::default();
        c.redis = c.redis.encoding(Encoding::Json);
        c
    }

    /// The connection settings, encoding and largest value
    /// (`max_value_bytes`, the limit on an encoded value before
    /// compression), as for [`crate::Cache`].
    ///
    /// Defaults to [`Config::default()`].
    #[must_use]
    pub fn redis(mut self, v: Config) -> Self {
        self.redis = v;
        self
    }

    /// The first part of every key: `{key_prefix}:{namespace}:{key}`. Same
    /// rules as an [`crate::Ident`]; empty leaves keys without a prefix.
    ///
    /// Default: see `CACHE_KEY_PREFIX` in [`KvConfig::from_vars`].
    #[must_use]
    pub fn key_prefix(mut self, v: impl Into<String>) -> Self {
        self.key_prefix = v.into();
        self
    }

    /// The TTL of namespaces without a policy of their own; `None` never
    /// expires.
    ///
    /// Default: see `CACHE_DEFAULT_TTL` in [`KvConfig::from_vars`].
    #[must_use]
    pub fn default_ttl(mut self, v: Option<Duration>) -> Self {
        self.default_ttl = v;
        self
    }

    /// The TTL policy of one namespace (what [`crate::kv::Ttl::Policy`]
    /// means for it), replacing any set before.
    ///
    /// Default policies: see `CACHE_MARKET_DATA_TTL`, `CACHE_PORTFOLIO_TTL`,
    /// `CACHE_RISK_TTL` and `CACHE_SESSION_TTL` in [`KvConfig::from_vars`].
    #[must_use]
    pub fn ttl(self, namespace: impl Into<String>, ttl: Duration) -> Self {
        self.ttl_policy(namespace, Some(ttl))
    }

    /// Like [`KvConfig::ttl`], with `None` for a namespace whose keys never
    /// expire.
    ///
    /// Defaults as for [`KvConfig::ttl`].
    #[must_use]
    pub fn ttl_policy(mut self, namespace: impl Into<String>, ttl: Option<Duration>) -> Self {
        let namespace = namespace.into();
        self.ttls.retain(|(ns, _)| *ns != namespace);
        self.ttls.push((namespace, ttl));
        self
    }

    /// Encoded values larger than this many bytes are stored LZ4-compressed
    /// (when that makes them smaller); 0 compresses every value.
    ///
    /// Default: see `CACHE_COMPRESS_THRESHOLD` in [`KvConfig::from_vars`].
    #[must_use]
    pub fn compress_threshold(mut self, v: usize) -> Self {
        self.compress_threshold = v;
        self
    }

    /// The most keys in one `MGET` of `get_many` (larger requests are split
    /// and pipelined). Writes are not bounded by it: `set_many` takes any
    /// number of items, each one queued write, and the writer's batches
    /// are bounded by [`Config::max_batch`].
    ///
    /// Default: see `CACHE_MAX_BATCH_SIZE` in [`KvConfig::from_vars`].
    #[must_use]
    pub fn max_batch_size(mut self, v: usize) -> Self {
        self.max_batch_size = v;
        self
    }

    /// Whether per-operation latencies are recorded (two clock reads per
    /// call). Counters are always kept.
    ///
    /// Default: see `CACHE_ENABLE_METRICS` in [`KvConfig::from_vars`].
    #[must_use]
    pub fn enable_metrics(mut self, v: bool) -> Self {
        self.enable_metrics = v;
        self
    }

    /// Whether operations slower than [`KvConfig::slow_op_threshold`] are
    /// logged (`log::warn!`, with operation, namespace, key and duration).
    ///
    /// Default: see `CACHE_LOG_SLOW_OPS` in [`KvConfig::from_vars`].
    #[must_use]
    pub fn log_slow_ops(mut self, v: bool) -> Self {
        self.log_slow_ops = v;
        self
    }

    /// See [`KvConfig::log_slow_ops`].
    ///
    /// Default: see `CACHE_SLOW_OP_THRESHOLD` in [`KvConfig::from_vars`].
    #[must_use]
    pub fn slow_op_threshold(mut self, v: Duration) -> Self {
        self.slow_op_threshold = v;
        self
    }

    /// The most read connections (the pool `get`, `get_many`, `exists` and
    /// `clear_namespace` use, opened on demand; the writer has its own).
    ///
    /// Default: see `REDIS_MAX_CONNECTIONS` in [`KvConfig::from_vars`].
    #[must_use]
    pub fn max_connections(mut self, v: usize) -> Self {
        self.max_connections = v;
        self
    }

    /// How many values the in-process near cache holds; 0 turns it off.
    ///
    /// Default: see `CACHE_NEAR_CAPACITY` in [`KvConfig::from_vars`].
    #[must_use]
    pub fn near_capacity(mut self, v: usize) -> Self {
        self.near_capacity = v;
        self
    }

    /// How long the near cache serves a value read from Redis: the bound on
    /// staleness against other processes' writes when server-assisted
    /// invalidation is off or its connection is down, and on a Redis TTL
    /// that ran out meanwhile.
    ///
    /// Default: see `CACHE_NEAR_TTL_MS` in [`KvConfig::from_vars`].
    #[must_use]
    pub fn near_ttl(mut self, v: Duration) -> Self {
        self.near_ttl = v;
        self
    }

    /// Whether the near cache subscribes to server-assisted invalidation
    /// (`CLIENT TRACKING … BCAST PREFIX`), so other processes' writes evict
    /// its entries at once. Standalone and Sentinel only; in a cluster the
    /// near cache relies on [`KvConfig::near_ttl`].
    ///
    /// Default: see `CACHE_NEAR_TRACKING` in [`KvConfig::from_vars`].
    #[must_use]
    pub fn near_tracking(mut self, v: bool) -> Self {
        self.near_tracking = v;
        self
    }

    /// After this many consecutive failures of calls to Redis, the circuit
    /// breaker opens; at least 1.
    ///
    /// Default: see `CACHE_BREAKER_FAILURES` in [`KvConfig::from_vars`].
    #[must_use]
    pub fn breaker_failures(mut self, v: u32) -> Self {
        self.breaker_failures = v;
        self
    }

    /// How long an open breaker keeps calls away from Redis before one
    /// probe is let through (half-open).
    ///
    /// Default: see `CACHE_BREAKER_OPEN_SECS` in [`KvConfig::from_vars`].
    #[must_use]
    pub fn breaker_open(mut self, v: Duration) -> Self {
        self.breaker_open = v;
        self
    }

    /// How many writes may wait in the channel to the writer thread. The
    /// writer takes them into its pending set (one per key) as they come,
    /// also while it waits for Redis, so the channel fills only when that
    /// set holds `max_pending_keys` keys while a batch is on its way: then
    /// a write is refused at the call with [`crate::Error::Unavailable`]
    /// (counted in `rejected`; it never blocks).
    ///
    /// Default: see `CACHE_KV_CHANNEL_CAPACITY` in [`KvConfig::from_vars`].
    #[must_use]
    pub fn channel_capacity(mut self, v: usize) -> Self {
        self.channel_capacity = v;
        self
    }

    /// The most distinct keys the writer holds (one pending write per
    /// key, the batch on its way included: a write taken in is kept until
    /// it is written). Past it, writes to further keys wait in the channel while a
    /// batch is on its way (and are refused once the channel is full, see
    /// [`KvConfig::channel_capacity`]); in an outage (a batch failed) they
    /// are dropped and counted.
    ///
    /// Default: see `CACHE_KV_MAX_PENDING_KEYS` in [`KvConfig::from_vars`].
    #[must_use]
    pub fn max_pending_keys(mut self, v: usize) -> Self {
        self.max_pending_keys = v;
        self
    }

    /// The TTL that [`crate::kv::Ttl::Policy`] gives keys of `namespace`
    /// (its own policy, or the default one); `None` when they never expire.
    pub fn ttl_of(&self, namespace: &str) -> Option<Duration> {
        self.policy(namespace)
    }

    pub(crate) fn policy(&self, namespace: &str) -> Option<Duration> {
        self.ttls.iter().find(|(ns, _)| ns == namespace).map_or(self.default_ttl, |(_, t)| *t)
    }

    /// The encoding of values.
    pub(crate) fn encoding(&self) -> Encoding {
        self.redis.encoding
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
        let mut p = match self.redis.validate() {
            Ok(()) => Vec::new(),
            Err(e) => e.problems,
        };
        if !self.key_prefix.is_empty() {
            if let Err(e) = ident::validate(&self.key_prefix) {
                p.push(problem("key_prefix", &self.key_prefix, &format!("an id, or empty ({e})")));
            }
        }
        let policies = std::iter::once(("default_ttl", None, self.default_ttl))
            .chain(self.ttls.iter().map(|(ns, t)| ("ttl", Some(ns.as_str()), *t)));
        for (field, ns, ttl) in policies {
            if let Some(ns) = ns {
                if let Err(e) = ident::validate(ns) {
                    p.push(problem(field, ns, &format!("a namespace that is a valid id ({e})")));
                }
            }
            if ttl.is_some_and(|t| t < Duration::from_millis(1)) {
                let what = ns.map_or(format!("{ttl:?}"), |ns| format!("{ns}: {ttl:?}"));
                p.push(problem(field, &what, "at least 1ms, or None for never expires"));
            }
        }
        for (field, n) in [
            ("max_batch_size", self.max_batch_size),
            ("max_connections", self.max_connections),
            ("breaker_failures", self.breaker_failures as usize),
            ("channel_capacity", self.channel_capacity),
            ("max_pending_keys", self.max_pending_keys),
        ] {
            if n == 0 {
                p.push(problem(field, "0", "1 or more"));
            }
        }
        for (field, d) in [("breaker_open", self.breaker_open), ("near_ttl", self.near_ttl)] {
            if d.is_zero() {
                p.push(problem(field, "0s", "a duration above zero"));
            }
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems: p })
        }
    }
}

fn problem(field: &str, value: &str, allowed: &str) -> ConfigProblem {
    ConfigProblem { field: field.into(), value: value.into(), allowed: allowed.into() }
}

#[cfg(test)]
mod tests {
    use super::super::vars::KV_ENV;
    use super::*;
    use crate::config::markdown;
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
        assert_eq!(c.policy("market_data"), Some(Duration::from_secs(60)));
        assert_eq!(c.policy("portfolio"), Some(Duration::from_secs(300)));
        assert_eq!(c.policy("risk"), Some(Duration::from_secs(180)));
        assert_eq!(c.policy("session"), Some(Duration::from_secs(1800)));
        assert_eq!(c.policy("other"), Some(Duration::from_secs(3600)));
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
            [c.policy("market_data"), c.policy("portfolio"), c.policy("risk"), c.policy("session")],
            [Some(s(1)), Some(s(2)), Some(s(3)), Some(s(4))]
        );
        assert_eq!(c.policy("x"), None);
        assert_eq!((c.compress_threshold, c.max_batch_size), (5, 6));
        assert!(!c.enable_metrics && !c.log_slow_ops && !c.near_tracking);
        assert_eq!(c.slow_op_threshold, Duration::from_millis(7));
        assert_eq!((c.max_connections, c.near_capacity), (8, 9));
        assert_eq!(c.near_ttl, Duration::from_millis(10));
        assert_eq!((c.breaker_failures, c.breaker_open), (11, Duration::from_millis(500)));
        assert_eq!((c.channel_capacity, c.max_pending_keys), (12, 13));
        assert_eq!(c.encoding(), Encoding::Json);
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
        docs::check_file("src/kv/vars.md", &markdown(KV_ENV, Some("KvConfig")));
        docs::check_block("docs/configuration.md", "kv-env", &KvConfig::env_markdown());
        docs::check_block(".env.example", "kv-env", &KvConfig::env_example());
    }

    #[test]
    fn each_default_reads_back_as_the_default() {
        let defaults = format!("{:?}", KvConfig::default());
        for var in KV_ENV {
            let text = (var.default)(&KvConfig::default());
            let c = from(&[(var.name, &text)]).unwrap_or_else(|e| panic!("{}={text}: {e}", var.name));
            assert_eq!(format!("{c:?}"), defaults, "{}={text}", var.name);
        }
        // An empty prefix is a prefix (none), not the default.
        assert_eq!(from(&[("CACHE_KEY_PREFIX", " ")]).unwrap().key_prefix, "");
    }
}
