//! [`KV_ENV`]: the environment variables of the caching layer, in the
//! shape of `Config`'s table (src/config/vars.rs) and applied by the same
//! mechanism. It drives [`KvConfig::from_vars`], the table in its
//! documentation (`vars.md`), the `KvConfig` table of docs/configuration.md and the kv part of
//! `.env.example`, which a unit test in `config.rs` checks against it;
//! and the `KvConfig` constructors that read it (`from_env`, `from_vars`).

use std::time::Duration;

use super::config::KvConfig;
use crate::config::{apply_vars, env_example, markdown, not_unicode, Config, Problems};
use crate::config::{boolean, int, millis, ms, seconds, set, EnvVar, Read, Refused};
use crate::error::ConfigError;
use crate::ident;

const SECS: &str = "a whole number of seconds, 0 for never expires";
const COUNT: &str = "a whole number, 1 or more";

/// A TTL in seconds as a variable spells it: 0 for never expires.
fn ttl_secs(ttl: Option<Duration>) -> String {
    ttl.map_or(0, |t| t.as_secs()).to_string()
}

/// Seconds, 0 for never expires.
fn ttl(v: &str) -> Result<Option<Duration>, Refused> {
    let n = int(v, 0, u64::MAX, SECS)?;
    Ok((n > 0).then(|| Duration::from_secs(n)))
}

/// Every variable [`KvConfig::from_vars`] reads besides `Config`'s.
pub(crate) const KV_ENV: &[EnvVar<KvConfig>] = &[
    EnvVar {
        section: "",
        name: "CACHE_KEY_PREFIX",
        sets: "key_prefix",
        default: |c| c.key_prefix.clone(),
        values: "an id, or empty for none",
        doc: "First part of every key: `{prefix}:{namespace}:{key}`; empty: `{namespace}:{key}`.",
        read: Read::TrimmedEmptyCounts,
        apply: |c, v| {
            c.key_prefix = v.to_string();
            match v.is_empty() {
                true => Ok(()),
                false => ident::validate(v).map(|_| ()).map_err(|e| format!("an id, or empty ({e})").into()),
            }
        },
    },
    EnvVar {
        section: "",
        name: "CACHE_DEFAULT_TTL",
        sets: "default_ttl",
        default: |c| ttl_secs(c.default_ttl),
        values: "seconds, 0 = never expires",
        doc: "TTL of the namespaces without a policy of their own.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.default_ttl, ttl(v)?),
    },
    EnvVar {
        section: "",
        name: "CACHE_MARKET_DATA_TTL",
        sets: "ttl",
        default: |c| ttl_secs(c.policy("market_data")),
        values: "seconds, 0 = never expires",
        doc: "TTL policy of the `market_data` namespace.",
        read: Read::Trimmed,
        apply: |c, v| set_policy(c, "market_data", ttl(v)?),
    },
    EnvVar {
        section: "",
        name: "CACHE_PORTFOLIO_TTL",
        sets: "ttl",
        default: |c| ttl_secs(c.policy("portfolio")),
        values: "seconds, 0 = never expires",
        doc: "TTL policy of the `portfolio` namespace.",
        read: Read::Trimmed,
        apply: |c, v| set_policy(c, "portfolio", ttl(v)?),
    },
    EnvVar {
        section: "",
        name: "CACHE_RISK_TTL",
        sets: "ttl",
        default: |c| ttl_secs(c.policy("risk")),
        values: "seconds, 0 = never expires",
        doc: "TTL policy of the `risk` namespace.",
        read: Read::Trimmed,
        apply: |c, v| set_policy(c, "risk", ttl(v)?),
    },
    EnvVar {
        section: "",
        name: "CACHE_SESSION_TTL",
        sets: "ttl",
        default: |c| ttl_secs(c.policy("session")),
        values: "seconds, 0 = never expires",
        doc: "TTL policy of the `session` namespace.",
        read: Read::Trimmed,
        apply: |c, v| set_policy(c, "session", ttl(v)?),
    },
    EnvVar {
        section: "",
        name: "CACHE_COMPRESS_THRESHOLD",
        sets: "compress_threshold",
        default: |c| c.compress_threshold.to_string(),
        values: "bytes",
        doc: "Encoded values longer than this are stored LZ4-compressed.",
        read: Read::Trimmed,
        apply: |c, v| {
            set(&mut c.compress_threshold, int(v, 0, u64::MAX, "a number of bytes, 0 or more")? as usize)
        },
    },
    EnvVar {
        section: "",
        name: "CACHE_MAX_BATCH_SIZE",
        sets: "max_batch_size",
        default: |c| c.max_batch_size.to_string(),
        values: "1 or more",
        doc: "Keys per `MGET` in `get_many` (larger requests are split and pipelined).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.max_batch_size, int(v, 1, u64::MAX, COUNT)? as usize),
    },
    EnvVar {
        section: "",
        name: "CACHE_ENABLE_METRICS",
        sets: "enable_metrics",
        default: |c| c.enable_metrics.to_string(),
        values: "boolean",
        doc: "Per-operation latency histograms (two clock reads per call).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.enable_metrics, boolean(v)?),
    },
    EnvVar {
        section: "",
        name: "CACHE_LOG_SLOW_OPS",
        sets: "log_slow_ops",
        default: |c| c.log_slow_ops.to_string(),
        values: "boolean",
        doc: "Log operations slower than `CACHE_SLOW_OP_THRESHOLD`.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.log_slow_ops, boolean(v)?),
    },
    EnvVar {
        section: "",
        name: "CACHE_SLOW_OP_THRESHOLD",
        sets: "slow_op_threshold",
        default: |c| ms(c.slow_op_threshold),
        values: "milliseconds",
        doc: "What a slow operation is.",
        read: Read::Trimmed,
        apply: |c, v| {
            let n = int(v, 0, u64::MAX, "a whole number of milliseconds")?;
            set(&mut c.slow_op_threshold, Duration::from_millis(n))
        },
    },
    EnvVar {
        section: "",
        name: "REDIS_MAX_CONNECTIONS",
        sets: "max_connections",
        default: |c| c.max_connections.to_string(),
        values: "1 or more",
        doc: "Read connections, opened on demand (the writer has its own).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.max_connections, int(v, 1, u64::MAX, COUNT)? as usize),
    },
    EnvVar {
        section: "",
        name: "CACHE_NEAR_CAPACITY",
        sets: "near_capacity",
        default: |c| c.near_capacity.to_string(),
        values: "entries, 0 = off",
        doc: "Entries in the in-process near cache.",
        read: Read::Trimmed,
        apply: |c, v| {
            let n = int(v, 0, u64::MAX, "a number of entries, 0 turns it off")?;
            set(&mut c.near_capacity, n as usize)
        },
    },
    EnvVar {
        section: "",
        name: "CACHE_NEAR_TTL_MS",
        sets: "near_ttl",
        default: |c| ms(c.near_ttl),
        values: "milliseconds, 1 or more",
        doc: "How long the near cache serves a value.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.near_ttl, millis(v, 1)?),
    },
    EnvVar {
        section: "",
        name: "CACHE_NEAR_TRACKING",
        sets: "near_tracking",
        default: |c| c.near_tracking.to_string(),
        values: "boolean",
        doc: "Server-assisted invalidation of the near cache (`CLIENT TRACKING`; not in a cluster).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.near_tracking, boolean(v)?),
    },
    EnvVar {
        section: "",
        name: "CACHE_BREAKER_FAILURES",
        sets: "breaker_failures",
        default: |c| c.breaker_failures.to_string(),
        values: "1 or more",
        doc: "Consecutive failures that open the circuit breaker.",
        read: Read::Trimmed,
        apply: |c, v| {
            let n = int(v, 1, u64::MAX, COUNT)?;
            set(&mut c.breaker_failures, n.min(u64::from(u32::MAX)) as u32)
        },
    },
    EnvVar {
        section: "",
        name: "CACHE_BREAKER_OPEN_SECS",
        sets: "breaker_open",
        default: |c| c.breaker_open.as_secs_f64().to_string(),
        values: "seconds above zero, may be fractional",
        doc: "How long an open breaker keeps calls away from Redis.",
        read: Read::Trimmed,
        apply: |c, v| {
            let d = seconds(v).map_err(|_| "a number of seconds above zero, such as 60 or 0.5")?;
            set(&mut c.breaker_open, d)
        },
    },
    EnvVar {
        section: "",
        name: "CACHE_KV_CHANNEL_CAPACITY",
        sets: "channel_capacity",
        default: |c| c.channel_capacity.to_string(),
        values: "1 or more",
        doc: "Writes that may wait for the kv writer (a full channel refuses a write).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.channel_capacity, int(v, 1, u64::MAX, COUNT)? as usize),
    },
    EnvVar {
        section: "",
        name: "CACHE_KV_MAX_PENDING_KEYS",
        sets: "max_pending_keys",
        default: |c| c.max_pending_keys.to_string(),
        values: "1 or more",
        doc: "Distinct keys the writer holds (past it, writes to new keys wait in the channel while a batch is on its way, and are dropped in an outage).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.max_pending_keys, int(v, 1, u64::MAX, COUNT)? as usize),
    },
];

/// `ttl_policy(namespace, ttl)`, in place.
fn set_policy(c: &mut KvConfig, namespace: &str, ttl: Option<Duration>) -> Result<(), Refused> {
    match c.ttls.iter_mut().find(|(ns, _)| ns == namespace) {
        Some(policy) => policy.1 = ttl,
        None => c.ttls.push((namespace.to_string(), ttl)),
    }
    Ok(())
}

impl KvConfig {
    /// Reads the configuration from the process environment; see
    /// [`KvConfig::from_vars`].
    ///
    /// # Errors
    ///
    /// [`ConfigError`] listing every variable that cannot be used.
    pub fn from_env() -> Result<KvConfig, ConfigError> {
        let mut problems = Problems::default();
        not_unicode(KV_ENV, &mut problems);
        let redis = Config::from_env();
        let kv = KvConfig::from_kv_vars(|name| std::env::var(name).ok());
        merge(redis, kv, problems)
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
        let redis = Config::from_vars(&get);
        let kv = KvConfig::from_kv_vars(&get);
        merge(redis, kv, Problems::default())
    }

    /// The caching layer's own variables, onto the defaults.
    fn from_kv_vars<F: Fn(&str) -> Option<String>>(get: F) -> (KvConfig, Problems) {
        let mut c = KvConfig::default();
        let mut problems = Problems::default();
        apply_vars(KV_ENV, &mut c, &get, &mut problems);
        (c, problems)
    }

    /// The rows of the `KvConfig` table in docs/configuration.md (with its header), rendered
    /// from the table [`KvConfig::from_vars`] reads.
    #[doc(hidden)]
    pub fn env_markdown() -> String {
        markdown(KV_ENV, None)
    }

    /// The kv variable lines of `.env.example`, rendered from the table
    /// [`KvConfig::from_vars`] reads.
    #[doc(hidden)]
    pub fn env_example() -> String {
        env_example(KV_ENV)
    }
}

fn merge(
    redis: Result<Config, ConfigError>,
    kv: (KvConfig, Problems),
    mut problems: Problems,
) -> Result<KvConfig, ConfigError> {
    let (mut c, kv_problems) = kv;
    match redis {
        Ok(r) => c.redis = r,
        Err(e) => problems.0.extend(e.problems),
    }
    problems.0.extend(kv_problems.0);
    problems.finish(c)
}
