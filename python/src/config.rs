//! Keyword arguments and the environment as the variables
//! `Config::from_vars` / `KvConfig::from_vars` read.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString};
use tradecache::kv::KvConfig;

use crate::errors;

/// The variable a keyword names: the variable itself (`REDIS_URL`), or its
/// name without the `REDIS_` / `CACHE_` prefix in any case (`url`,
/// `trader_id`, `near_capacity`).
pub fn var_of(keyword: &str) -> Option<String> {
    let up = keyword.to_ascii_uppercase();
    let vars = KvConfig::var_names();
    [up.clone(), format!("REDIS_{up}"), format!("CACHE_{up}")].into_iter().find(|cand| vars.contains(cand))
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
                map.insert(var, text);
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
