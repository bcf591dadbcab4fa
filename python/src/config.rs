//! Keyword arguments and the environment as the variables
//! `Config::from_vars` / `KvConfig::from_vars` read.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString};

use crate::errors;

/// Every variable the core reads (README, "Configuration" and the kv table).
pub const VARS: &[&str] = &[
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
    "REDIS_MAX_CONNECTIONS",
    "CACHE_CONNECT_ATTEMPTS",
    "CACHE_BACKOFF_MIN_MS",
    "CACHE_BACKOFF_MAX_MS",
    "CACHE_RECONNECT_BACKOFF_MIN_MS",
    "CACHE_RECONNECT_BACKOFF_MAX_MS",
    "CACHE_TRADER_ID",
    "CACHE_INSTANCE_ID",
    "CACHE_USE_TRADER_PREFIX",
    "CACHE_USE_INSTANCE_ID",
    "CACHE_WRITER_ID",
    "CACHE_ENCODING",
    "CACHE_TIMESTAMPS_AS_ISO8601",
    "CACHE_FLUSH_ON_START",
    "CACHE_PERSIST_ACCOUNT_EVENTS",
    "CACHE_MAX_VALUE_BYTES",
    "CACHE_CHANNEL_CAPACITY",
    "CACHE_OVERFLOW",
    "CACHE_BLOCK_TIMEOUT_MS",
    "CACHE_MAX_BATCH",
    "CACHE_MAX_PENDING_EVENTS",
    "CACHE_MAX_PENDING_SNAPSHOTS",
    "CACHE_MAX_BATCH_BYTES",
    "CACHE_BUFFER_INTERVAL_MS",
    "CACHE_IDLE_POLL_US",
    "CACHE_CLOSE_TIMEOUT_MS",
    "CACHE_REPLICA_WAIT",
    "CACHE_REPLICA_WAIT_TIMEOUT_MS",
    "CACHE_LOAD_CHUNK",
    "CACHE_STRICT_LOAD",
    "CACHE_TICK_CAPACITY",
    "CACHE_BAR_CAPACITY",
    "CACHE_RETAIN_CLOSED_SECS",
    "CACHE_MAX_ACCOUNT_EVENTS",
    "CACHE_HEARTBEAT_MS",
    "CACHE_PUBLISH_EVENTS",
    "CACHE_STREAM_MAXLEN",
    "CACHE_STREAM_MAX_AGE_SECS",
    // kv
    "CACHE_KEY_PREFIX",
    "CACHE_DEFAULT_TTL",
    "CACHE_MARKET_DATA_TTL",
    "CACHE_PORTFOLIO_TTL",
    "CACHE_RISK_TTL",
    "CACHE_SESSION_TTL",
    "CACHE_COMPRESS_THRESHOLD",
    "CACHE_MAX_BATCH_SIZE",
    "CACHE_ENABLE_METRICS",
    "CACHE_LOG_SLOW_OPS",
    "CACHE_SLOW_OP_THRESHOLD",
    "CACHE_NEAR_CAPACITY",
    "CACHE_NEAR_TTL_MS",
    "CACHE_NEAR_TRACKING",
    "CACHE_BREAKER_FAILURES",
    "CACHE_BREAKER_OPEN_SECS",
    "CACHE_KV_CHANNEL_CAPACITY",
    "CACHE_KV_MAX_PENDING_KEYS",
];

/// The variable a keyword names: the variable itself (`REDIS_URL`), or its
/// name without the `REDIS_` / `CACHE_` prefix in any case (`url`,
/// `trader_id`, `near_capacity`).
pub fn var_of(keyword: &str) -> Option<&'static str> {
    let up = keyword.to_ascii_uppercase();
    for cand in [up.clone(), format!("REDIS_{up}"), format!("CACHE_{up}")] {
        if let Some(v) = VARS.iter().find(|v| **v == cand) {
            return Some(v);
        }
    }
    None
}

/// The variables: keyword arguments first, then (with `env`) the process
/// environment. A bool becomes `true`/`false`, anything else `str(value)`;
/// `None` leaves the variable unset.
pub struct Vars(pub HashMap<String, String>, pub bool);

impl Vars {
    pub fn from_kwargs(py: Python<'_>, kwargs: Option<&Bound<'_, PyDict>>, env: bool) -> PyResult<Vars> {
        let mut map = HashMap::new();
        let mut unknown = Vec::new();
        if let Some(kw) = kwargs {
            // A snapshot: `str(value)` may run code that changes the dict.
            for (k, v) in kw
                .items()
                .iter()
                .map(|p| p.extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>)>())
                .collect::<PyResult<Vec<_>>>()?
            {
                let Some(k) = k.downcast::<PyString>().ok().and_then(|k| k.to_str().ok()) else {
                    unknown.push(k.repr().map(|r| r.to_string()).unwrap_or_else(|_| "?".into()));
                    continue;
                };
                let Some(var) = var_of(k) else {
                    unknown.push(k.to_string());
                    continue;
                };
                if v.is_none() {
                    continue;
                }
                let text = if let Ok(b) = v.downcast::<PyBool>() {
                    if b.is_true() { "true" } else { "false" }.to_string()
                } else {
                    // The value is never in the message (it may be a password).
                    let s = v.str().map_err(|e| errors::reclass(py, e, "ConfigError", "Config", k))?;
                    s.to_str()
                        .map_err(|_| {
                            errors::config_error(py, format!("{k}: not valid Unicode (a lone surrogate)"))
                        })?
                        .to_owned()
                };
                map.insert(var.to_string(), text);
            }
        }
        if !unknown.is_empty() {
            return Err(errors::config_error(
                py,
                format!(
                    "unknown option(s) {}: options are the variables of Config.from_env, by name (REDIS_URL) \
                     or without their REDIS_/CACHE_ prefix in lower case (url, trader_id)",
                    unknown.join(", ")
                ),
            ));
        }
        Ok(Vars(map, env))
    }

    /// A variable's value, as `from_vars` sees it.
    pub fn get(&self, name: &str) -> Option<String> {
        if let Some(v) = self.0.get(name) {
            return Some(v.clone());
        }
        if self.1 {
            return std::env::var(name).ok();
        }
        None
    }

    /// A variable that is set and not empty.
    pub fn set(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.trim().is_empty())
    }
}
