//! The bindings' reads (`get`, `get_events`, `load`) on a connection of
//! their own, over the documented key layout (README, "Keys"):
//!
//! ```text
//! {trader_key}:{collection}:{id}          the value (MessagePack)
//! {trader_key}:{collection}:{id}:events   list of [event_id, event]
//! {trader_key}:index:{collection}         set of ids
//! {trader_key}:writer:{writer_id}         the commit marker
//! ```
//!
//! Why not `Cache::get` / `load_all`: the core reads a value back as an
//! `Entity`, which must carry its own id and a collection fixed at compile
//! time, while a Python value is any object stored under a collection named
//! at run time (see python/README.md, "What the core could offer").
//! Read-your-writes is kept the core's way: a read first waits until every
//! write accepted before it is acknowledged.

use std::collections::HashSet;
use std::time::Duration;

use parking_lot::Mutex;
use redis::Value;

use crate::config::Vars;

/// Where and how to read.
pub struct Reader {
    url: Option<String>,
    why_not: Option<String>,
    timeout: Duration,
    /// `trader-T1[:inst]`, or empty without a trader prefix.
    pub prefix: String,
    pub writer_id: String,
    pub chunk: usize,
    /// Idle connections (one per concurrent reader: `load`'s fetchers).
    cons: Mutex<Vec<redis::Connection>>,
}

/// One entity read back: its id, its value's bytes, its events' bytes.
pub struct Raw {
    pub id: String,
    pub value: Option<Vec<u8>>,
    pub events: Vec<Vec<u8>>,
}

impl Reader {
    pub fn new(vars: &Vars) -> Reader {
        let mut why_not = None;
        if vars.set("REDIS_SENTINELS").is_some() || vars.set("REDIS_CLUSTER").is_some() {
            why_not = Some("reads (get, get_events, load) of the Python bindings support a single Redis server, not Sentinel or Cluster".to_string());
        }
        if vars.flag("REDIS_SSL", false) {
            why_not = Some(
                "reads (get, get_events, load) of the Python bindings do not support TLS yet".to_string(),
            );
        }
        let url = match build_url(vars) {
            Ok(u) => Some(u),
            Err(e) => {
                why_not.get_or_insert(e);
                None
            }
        };
        let timeout = vars
            .set("REDIS_TIMEOUT")
            .and_then(|t| t.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(Duration::from_secs(2));
        let prefix = if vars.flag("CACHE_USE_TRADER_PREFIX", true) {
            let trader = vars.set("CACHE_TRADER_ID").unwrap_or_else(|| "TRADER-001".into());
            let mut p = format!("trader-{}", trader.trim());
            if vars.flag("CACHE_USE_INSTANCE_ID", false) {
                if let Some(i) = vars.set("CACHE_INSTANCE_ID") {
                    p.push(':');
                    p.push_str(i.trim());
                }
            }
            p
        } else {
            String::new()
        };
        let writer_id =
            vars.set("CACHE_WRITER_ID").map(|w| w.trim().to_string()).unwrap_or_else(|| "main".into());
        let chunk = vars
            .set("CACHE_LOAD_CHUNK")
            .and_then(|c| c.trim().parse().ok())
            .filter(|c| *c > 0)
            .unwrap_or(1000);
        Reader { url, why_not, timeout, prefix, writer_id, chunk, cons: Mutex::new(Vec::new()) }
    }

    /// Why this configuration cannot be read by the bindings, if so.
    pub fn unsupported(&self) -> Option<&str> {
        self.why_not.as_deref()
    }

    fn key(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_string()
        } else {
            format!("{}:{rest}", self.prefix)
        }
    }

    pub fn entity_key(&self, collection: &str, id: &str) -> String {
        self.key(&format!("{collection}:{id}"))
    }

    pub fn events_key(&self, collection: &str, id: &str) -> String {
        self.key(&format!("{collection}:{id}:events"))
    }

    fn index_key(&self, collection: &str) -> String {
        self.key(&format!("index:{collection}"))
    }

    fn marker_key(&self) -> String {
        self.key(&format!("writer:{}", self.writer_id))
    }

    /// Runs `f` on the connection (opened on first use, dropped after an
    /// error so the next call reconnects).
    fn with<T>(&self, f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>) -> Result<T, String> {
        let url = self.url.as_deref().ok_or_else(|| self.why_not.clone().unwrap_or_default())?;
        let idle = self.cons.lock().pop();
        let mut con = match idle {
            Some(c) => c,
            None => {
                let client = redis::Client::open(url).map_err(|e| format!("cannot connect to Redis: {e}"))?;
                let con = client
                    .get_connection_with_timeout(self.timeout)
                    .map_err(|e| format!("cannot connect to Redis: {e}"))?;
                con.set_read_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
                con.set_write_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
                con
            }
        };
        match f(&mut con) {
            Ok(v) => {
                self.cons.lock().push(con);
                Ok(v)
            }
            // A connection that failed is dropped: the next call reconnects.
            Err(e) => Err(format!("redis read failed: {e}")),
        }
    }

    pub fn get(&self, collection: &str, id: &str) -> Result<Option<Vec<u8>>, String> {
        let key = self.entity_key(collection, id);
        self.with(|c| redis::cmd("GET").arg(&key).query::<Option<Vec<u8>>>(c))
    }

    pub fn get_events(&self, collection: &str, id: &str) -> Result<Vec<Vec<u8>>, String> {
        let key = self.events_key(collection, id);
        self.with(|c| redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query::<Vec<Vec<u8>>>(c))
    }

    pub fn marker(&self) -> Result<Option<Vec<u8>>, String> {
        let key = self.marker_key();
        self.with(|c| redis::cmd("GET").arg(&key).query::<Option<Vec<u8>>>(c))
    }

    /// The ids of `collection` (its index set), sorted.
    pub fn ids(&self, collection: &str) -> Result<Vec<String>, String> {
        let index = self.index_key(collection);
        let mut ids: Vec<String> = self.with(|c| redis::cmd("SMEMBERS").arg(&index).query(c))?;
        ids.sort_unstable();
        Ok(ids)
    }

    /// Which of `names` have an index set (one pipeline of `EXISTS`).
    pub fn present(&self, names: &[&str]) -> Result<Vec<String>, String> {
        let mut pipe = redis::pipe();
        for n in names {
            pipe.cmd("EXISTS").arg(self.index_key(n));
        }
        let flags: Vec<bool> = self.with(|c| pipe.query(c))?;
        Ok(names.iter().zip(flags).filter(|(_, f)| *f).map(|(n, _)| n.to_string()).collect())
    }

    /// The values (and, with `events`, the event logs) of `ids`: one
    /// pipeline of an `MGET` and an `LRANGE` per id.
    pub fn chunk(&self, collection: &str, ids: &[String], events: bool) -> Result<Vec<Raw>, String> {
        let mut pipe = redis::pipe();
        let keys: Vec<String> = ids.iter().map(|id| self.entity_key(collection, id)).collect();
        pipe.cmd("MGET").arg(&keys);
        if events {
            for id in ids {
                pipe.cmd("LRANGE").arg(self.events_key(collection, id)).arg(0).arg(-1);
            }
        }
        let replies: Vec<Value> = self.with(|c| pipe.query(c))?;
        let mut it = replies.into_iter();
        let values = match it.next() {
            Some(Value::Array(v)) => v,
            other => return Err(format!("unexpected MGET reply {other:?}")),
        };
        let mut out = Vec::with_capacity(ids.len());
        for (id, v) in ids.iter().zip(values) {
            let value = bulk(v)?;
            let evs = if events {
                match it.next() {
                    Some(Value::Array(items)) => items
                        .into_iter()
                        .filter_map(|i| bulk(i).transpose())
                        .collect::<Result<Vec<_>, _>>()?,
                    Some(Value::Nil) | None => Vec::new(),
                    Some(other) => return Err(format!("unexpected LRANGE reply {other:?}")),
                }
            } else {
                Vec::new()
            };
            out.push(Raw { id: id.clone(), value, events: evs });
        }
        Ok(out)
    }
}

fn bulk(v: Value) -> Result<Option<Vec<u8>>, String> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(b)),
        Value::SimpleString(s) => Ok(Some(s.into_bytes())),
        Value::ServerError(e) => Err(format!("server error: {e:?}")),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

/// The server's URL from REDIS_URL and the REDIS_* variables that override
/// its parts, as `Config::from_vars` applies them.
fn build_url(vars: &Vars) -> Result<String, String> {
    let base = vars.set("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    let mut url = url::Url::parse(base.trim()).map_err(|_| "REDIS_URL cannot be parsed".to_string())?;
    if url.scheme() == "rediss" {
        return Err("reads (get, get_events, load) of the Python bindings do not support TLS yet".into());
    }
    if let Some(h) = vars.set("REDIS_HOST") {
        url.set_host(Some(h.trim())).map_err(|_| "REDIS_HOST is not a host".to_string())?;
    }
    if let Some(p) = vars.set("REDIS_PORT") {
        let p: u16 = p.trim().parse().map_err(|_| "REDIS_PORT is not a port".to_string())?;
        let _ = url.set_port(Some(p));
    }
    if let Some(u) = vars.set("REDIS_USERNAME") {
        let _ = url.set_username(u.trim());
    }
    if let Some(p) = vars.get("REDIS_PASSWORD").filter(|p| !p.is_empty()) {
        let _ = url.set_password(Some(&p));
    }
    if let Some(db) = vars.set("REDIS_DB") {
        url.set_path(&format!("/{}", db.trim()));
    }
    Ok(url.to_string())
}

/// Events decoded by the caller: drops repeated event ids (as the core's
/// reads do), keeping the first.
pub struct Dedup(HashSet<u64>);

impl Dedup {
    pub fn new() -> Self {
        Dedup(HashSet::new())
    }
    pub fn first(&mut self, id: u64) -> bool {
        self.0.insert(id)
    }
}
