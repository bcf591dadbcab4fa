//! The bulk read of order event logs at load time.
//!
//! tradecache's public API reads one event log per call (`get_events`: one
//! round trip each, on one shared read connection), and its bulk loader
//! (`load_all`) reads snapshots without their logs for types of one's own.
//! For a restart with 100,000 orders that is 100,000 round trips in a row,
//! so this module reads the logs itself: the documented key layout
//! (`{trader}:nt-orders:{id}:events`, README "Keys"), `LRANGE`s pipelined
//! in chunks on a few connections of its own, decoded with the configured
//! encoding the way tradecache encodes (MessagePack maps or JSON). It is
//! used only when the connection can be made from Nautilus's
//! `DatabaseConfig` (plain TCP, standalone Redis) and checked to reach the
//! same data; otherwise the adapter reads each log through tradecache.

use std::time::Duration;

use nautilus_common::msgbus::database::DatabaseConfig;
use redis::IntoConnectionInfo;
use serde::de::DeserializeOwned;

/// Pipelined `LRANGE`s per round trip.
const CHUNK: usize = 1_000;

/// At most this many connections (one thread each) read the logs.
const MAX_THREADS: usize = 4;

/// A connection recipe for the bulk reads.
pub(crate) struct BulkReader {
    client: redis::Client,
    timeout: Duration,
}

/// One log as read: its entries, and the entries that did not decode
/// (index, error).
pub(crate) type Log<E> = (Vec<E>, Vec<(usize, String)>);

impl BulkReader {
    /// A reader for `db`, or `None` when it needs what only tradecache's
    /// connection code does (TLS).
    pub(crate) fn from_config(db: &DatabaseConfig) -> Option<BulkReader> {
        if db.ssl {
            return None;
        }
        let host = db.host.clone().unwrap_or_else(|| "127.0.0.1".into());
        let info = redis::ConnectionAddr::Tcp(host, db.port.unwrap_or(6379)).into_connection_info().ok()?;
        let mut settings = info.redis_settings().clone();
        if let Some(u) = &db.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &db.password {
            settings = settings.set_password(p);
        }
        let client = redis::Client::open(info.set_redis_settings(settings)).ok()?;
        let timeout = Duration::from_secs(u64::from(db.response_timeout.max(1)));
        Some(BulkReader { client, timeout })
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let con = self.client.get_connection_with_timeout(self.timeout)?;
        con.set_read_timeout(Some(self.timeout))?;
        con.set_write_timeout(Some(self.timeout))?;
        Ok(con)
    }

    /// Whether `index_key` (a set) has `expected` members on this
    /// connection: the check that it reaches the data tradecache wrote.
    pub(crate) fn reaches(&self, index_key: &str, expected: usize) -> bool {
        let Ok(mut con) = self.connect() else { return false };
        redis::cmd("SCARD").arg(index_key).query::<usize>(&mut con).is_ok_and(|n| n == expected)
    }

    /// Reads and decodes the lists `keys`, in parallel; `None` on any I/O
    /// error (the caller then reads them one by one through tradecache).
    pub(crate) fn logs<E: DeserializeOwned + Send>(&self, keys: &[String]) -> Option<Vec<Log<E>>> {
        if keys.is_empty() {
            return Some(Vec::new());
        }
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, MAX_THREADS);
        let per = keys.len().div_ceil(threads).max(CHUNK.min(keys.len()));
        let parts: Vec<&[String]> = keys.chunks(per).collect();
        let results: Vec<Option<Vec<Log<E>>>> = std::thread::scope(|s| {
            let handles: Vec<_> =
                parts.iter().map(|part| s.spawn(move || self.read_part::<E>(part))).collect();
            handles.into_iter().map(|h| h.join().ok().flatten()).collect()
        });
        let mut out = Vec::with_capacity(keys.len());
        for r in results {
            out.extend(r?);
        }
        Some(out)
    }

    fn read_part<E: DeserializeOwned>(&self, keys: &[String]) -> Option<Vec<Log<E>>> {
        let mut con = self.connect().ok()?;
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for k in chunk {
                pipe.cmd("LRANGE").arg(k).arg(0).arg(-1);
            }
            let replies: Vec<Vec<Vec<u8>>> = pipe.query(&mut con).ok()?;
            for entries in replies {
                let mut items = Vec::with_capacity(entries.len());
                let mut bad = Vec::new();
                for (i, e) in entries.iter().enumerate() {
                    match decode::<E>(e) {
                        Ok(v) => items.push(v),
                        Err(err) => bad.push((i, err)),
                    }
                }
                out.push((items, bad));
            }
        }
        Some(out)
    }
}

/// Decodes one stored value: MessagePack when its first byte says so (a
/// map or an array), JSON otherwise, as tradecache's codec tells them apart.
fn decode<E: DeserializeOwned>(bytes: &[u8]) -> Result<E, String> {
    match bytes.first() {
        None => Err("empty value".into()),
        Some(b) if *b >= 0x80 => rmp_serde::from_slice(bytes).map_err(|e| format!("msgpack: {e}")),
        Some(_) => serde_json::from_slice(bytes).map_err(|e| format!("json: {e}")),
    }
}
