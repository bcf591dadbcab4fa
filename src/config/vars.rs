//! [`ENV`]: every environment variable [`Config::from_vars`] reads, with
//! the setter it drives, its default (read from [`Config::default()`]),
//! the values it takes and what it does. This one table drives
//! `from_vars`, the table in its documentation (`vars.md`), the
//! configuration table of docs/configuration.md and `.env.example`; a unit test in `env.rs` checks
//! that the three files match it.
//!
//! This file is longer than 600 lines because it is one table, one entry
//! per variable.

use std::time::Duration;

use super::table::{boolean, count, int, millis, ms, seconds, set, EnvVar, Read};
use super::url::{apply_url, host_list, host_problem, parse_port, DEFAULT_PORT};
use super::validate::id;
use super::{Config, Encoding, OverflowPolicy, Secret, ENCODING_ALLOWED, REDIS_MAX_VALUE_BYTES};

/// The port of a sentinel in `REDIS_SENTINELS` without one.
pub(super) const DEFAULT_SENTINEL_PORT: u16 = 26379;
/// The block timeout of `CACHE_OVERFLOW=block` without `CACHE_BLOCK_TIMEOUT_MS`.
pub(super) const DEFAULT_BLOCK_TIMEOUT: Duration = Duration::from_millis(10);
/// The `WAIT` timeout of `CACHE_REPLICA_WAIT` without
/// `CACHE_REPLICA_WAIT_TIMEOUT_MS`.
pub(super) const DEFAULT_REPLICA_WAIT_TIMEOUT: Duration = Duration::from_millis(100);

const CONNECTION: &str = "Redis connection";
const CONNECTING: &str = "Connecting and reconnecting";
const KEYS: &str = "Keys and values";
const PIPELINE: &str = "Write pipeline";
const RECOVERY: &str = "Recovery and buffers";
const ALWAYS_ON: &str = "Running 24/7";

fn text(v: &str) -> String {
    v.to_string()
}

fn opt_text(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

fn flag(v: bool) -> String {
    v.to_string()
}

fn secs_or_zero(d: Option<Duration>) -> String {
    d.map_or(0, |d| d.as_secs()).to_string()
}

fn nodes(v: &[super::HostPort]) -> String {
    v.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

/// Every variable [`Config::from_vars`] reads, in the order it applies
/// them: `REDIS_URL` first, so that the other `REDIS_*` variables override
/// its parts; `CACHE_OVERFLOW` before `CACHE_BLOCK_TIMEOUT_MS` and
/// `CACHE_REPLICA_WAIT` before `CACHE_REPLICA_WAIT_TIMEOUT_MS`, which
/// refine them.
pub(crate) const ENV: &[EnvVar<Config>] = &[
    // --- Redis connection ---
    EnvVar {
        section: CONNECTION,
        name: "REDIS_URL",
        sets: "from_url",
        default: |c| c.server_url(),
        values: "`redis[s]://[user[:password]@]host[:port][/db]`",
        doc: "Sets host, port, username, password, db and TLS at once; applied first, the other \
              `REDIS_*` variables override its parts. Percent-encode '@', ':', '/', '?', '#', '%' in the \
              user and password (@ is %40).",
        read: Read::Trimmed,
        apply: |c, v| apply_url(c, v),
    },
    EnvVar {
        section: CONNECTION,
        name: "REDIS_HOST",
        sets: "host",
        default: |c| text(&c.host),
        values: "host name, IPv4 or IPv6 address",
        doc: "The server (not used with sentinels or a cluster).",
        read: Read::Trimmed,
        apply: |c, v| match host_problem(v) {
            Some(allowed) => Err(allowed.into()),
            None => set(&mut c.host, v.to_string()),
        },
    },
    EnvVar {
        section: CONNECTION,
        name: "REDIS_PORT",
        sets: "port",
        default: |c| c.port.to_string(),
        values: "1 to 65535",
        doc: "The server's port.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.port, parse_port(v)?),
    },
    EnvVar {
        section: CONNECTION,
        name: "REDIS_USERNAME",
        sets: "username",
        default: |c| opt_text(&c.username),
        values: "text",
        doc: "ACL user; needs a password too. Without one: the `default` user.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.username, Some(v.to_string())),
    },
    EnvVar {
        section: CONNECTION,
        name: "REDIS_PASSWORD",
        sets: "password",
        default: |_| String::new(),
        values: "text, not trimmed",
        doc: "Never shown in logs, errors or `Debug` output.",
        read: Read::Secret,
        apply: |c, v| set(&mut c.password, Some(Secret(v.to_string()))),
    },
    EnvVar {
        section: CONNECTION,
        name: "REDIS_DB",
        sets: "db",
        default: |c| c.db.to_string(),
        values: "0 or more (0 with a cluster)",
        doc: "Database number (`SELECT`).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.db, int(v, 0, i64::MAX as u64, "a database number, 0 or more")? as i64),
    },
    EnvVar {
        section: CONNECTION,
        name: "REDIS_SSL",
        sets: "tls",
        default: |c| flag(c.tls),
        values: "boolean",
        doc: "Connect with TLS (needs the crate's `tls` feature).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.tls, boolean(v)?),
    },
    EnvVar {
        section: CONNECTION,
        name: "REDIS_TIMEOUT",
        sets: "connect_timeout, response_timeout",
        default: |c| c.connect_timeout.as_secs_f64().to_string(),
        values: "seconds above zero, may be fractional (`0.5`)",
        doc: "Connect timeout and per-reply timeout.",
        read: Read::Trimmed,
        apply: |c, v| {
            let t = seconds(v)?;
            c.connect_timeout = t;
            c.response_timeout = t;
            Ok(())
        },
    },
    EnvVar {
        section: CONNECTION,
        name: "REDIS_TLS_CA",
        sets: "tls_ca",
        default: |c| c.tls_ca.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        values: "PEM file path",
        doc: "CA certificates to trust instead of the system's roots (only with REDIS_SSL).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.tls_ca, Some(v.into())),
    },
    EnvVar {
        section: CONNECTION,
        name: "REDIS_TLS_CERT",
        sets: "tls_cert",
        default: |c| c.tls_cert.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        values: "PEM file path",
        doc: "Client certificate for mutual TLS (with REDIS_TLS_KEY).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.tls_cert, Some(v.into())),
    },
    EnvVar {
        section: CONNECTION,
        name: "REDIS_TLS_KEY",
        sets: "tls_key",
        default: |c| c.tls_key.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        values: "PEM file path",
        doc: "The private key of REDIS_TLS_CERT.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.tls_key, Some(v.into())),
    },
    EnvVar {
        section: CONNECTION,
        name: "REDIS_SENTINELS",
        sets: "sentinels",
        default: |c| nodes(&c.sentinels),
        values: "`host:port,host:port` (port 26379 if absent; IPv6 as `[::1]:26379`)",
        doc: "Sentinels to ask for the master (with REDIS_SENTINEL_MASTER).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.sentinels, host_list(v, DEFAULT_SENTINEL_PORT)?),
    },
    EnvVar {
        section: CONNECTION,
        name: "REDIS_SENTINEL_MASTER",
        sets: "sentinel_master",
        default: |c| opt_text(&c.sentinel_master),
        values: "name",
        doc: "The master the sentinels monitor; both or neither.",
        read: Read::Trimmed,
        apply: |c, v| {
            if v.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
                return Err("a master name without whitespace".into());
            }
            set(&mut c.sentinel_master, Some(v.to_string()))
        },
    },
    EnvVar {
        section: CONNECTION,
        name: "REDIS_CLUSTER",
        sets: "cluster_nodes",
        default: |c| nodes(&c.cluster_nodes),
        values: "`host:port,host:port` (port 6379 if absent)",
        doc: "Cluster seed nodes; not with sentinels.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.cluster_nodes, host_list(v, DEFAULT_PORT)?),
    },
    // --- Connecting and reconnecting ---
    EnvVar {
        section: CONNECTING,
        name: "CACHE_CONNECT_ATTEMPTS",
        sets: "connect_attempts",
        default: |c| c.connect_attempts.to_string(),
        values: "1 or more",
        doc: "Attempts at startup before `Cache::open` fails.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.connect_attempts, int(v, 1, u32::MAX.into(), "1 or more")? as u32),
    },
    EnvVar {
        section: CONNECTING,
        name: "CACHE_BACKOFF_MIN_MS",
        sets: "open_backoff",
        default: |c| ms(c.open_backoff_min),
        values: "milliseconds",
        doc: "Shortest pause between attempts at startup (exponential, with jitter).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.open_backoff_min, millis(v, 0)?),
    },
    EnvVar {
        section: CONNECTING,
        name: "CACHE_BACKOFF_MAX_MS",
        sets: "open_backoff",
        default: |c| ms(c.open_backoff_max),
        values: "milliseconds",
        doc: "Longest pause between attempts at startup.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.open_backoff_max, millis(v, 0)?),
    },
    EnvVar {
        section: CONNECTING,
        name: "CACHE_RECONNECT_BACKOFF_MIN_MS",
        sets: "reconnect_backoff",
        default: |c| ms(c.reconnect_backoff_min),
        values: "milliseconds",
        doc: "Shortest pause between reconnection attempts after a connection is lost.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.reconnect_backoff_min, millis(v, 0)?),
    },
    EnvVar {
        section: CONNECTING,
        name: "CACHE_RECONNECT_BACKOFF_MAX_MS",
        sets: "reconnect_backoff",
        default: |c| ms(c.reconnect_backoff_max),
        values: "milliseconds",
        doc: "Longest pause between reconnection attempts (they go on forever).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.reconnect_backoff_max, millis(v, 0)?),
    },
    // --- Keys and values ---
    EnvVar {
        section: KEYS,
        name: "CACHE_TRADER_ID",
        sets: "trader_id",
        default: |c| text(&c.trader_id),
        values: "id (no ':', '{', '}', whitespace or control characters)",
        doc: "Keys are `trader-{trader_id}[:{instance_id}]:{collection}:{id}`.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.trader_id, id(v)?),
    },
    EnvVar {
        section: KEYS,
        name: "CACHE_INSTANCE_ID",
        sets: "instance_id",
        default: |c| opt_text(&c.instance_id),
        values: "id",
        doc: "Second part of the trader key, with CACHE_USE_INSTANCE_ID.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.instance_id, Some(id(v)?)),
    },
    EnvVar {
        section: KEYS,
        name: "CACHE_USE_TRADER_PREFIX",
        sets: "use_trader_prefix",
        default: |c| flag(c.use_trader_prefix),
        values: "boolean",
        doc: "false: keys have no trader prefix at all (not with REDIS_CLUSTER).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.use_trader_prefix, boolean(v)?),
    },
    EnvVar {
        section: KEYS,
        name: "CACHE_USE_INSTANCE_ID",
        sets: "use_instance_id",
        default: |c| flag(c.use_instance_id),
        values: "boolean",
        doc: "Add `:{instance_id}` to the trader key.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.use_instance_id, boolean(v)?),
    },
    EnvVar {
        section: KEYS,
        name: "CACHE_WRITER_ID",
        sets: "writer_id",
        default: |c| text(&c.writer_id),
        values: "id",
        doc: "Names this writer's commit marker (`{trader_key}:writer:{writer_id}`).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.writer_id, id(v)?),
    },
    EnvVar {
        section: KEYS,
        name: "CACHE_ENCODING",
        sets: "encoding",
        default: |c| c.encoding.as_str().to_string(),
        values: "`msgpack` or `json`",
        doc: "How values are encoded (`Config::debug()` picks JSON).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.encoding, Encoding::from_name(v).ok_or(ENCODING_ALLOWED)?),
    },
    EnvVar {
        section: KEYS,
        name: "CACHE_TIMESTAMPS_AS_ISO8601",
        sets: "timestamps_as_iso8601",
        default: |c| flag(c.timestamps_as_iso8601),
        values: "boolean",
        doc: "Timestamps as ISO 8601 text instead of nanoseconds; JSON only.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.timestamps_as_iso8601, boolean(v)?),
    },
    EnvVar {
        section: KEYS,
        name: "CACHE_FLUSH_ON_START",
        sets: "flush_on_start",
        default: |c| flag(c.flush_on_start),
        values: "boolean",
        doc: "Delete this trader's keys (never the whole database) at open; needs the trader prefix.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.flush_on_start, boolean(v)?),
    },
    EnvVar {
        section: KEYS,
        name: "CACHE_PERSIST_ACCOUNT_EVENTS",
        sets: "persist_account_events",
        default: |c| flag(c.persist_account_events),
        values: "boolean",
        doc: "Write account event logs (otherwise only the latest account snapshot).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.persist_account_events, boolean(v)?),
    },
    EnvVar {
        section: KEYS,
        name: "CACHE_MAX_VALUE_BYTES",
        sets: "max_value_bytes",
        default: |c| c.max_value_bytes.to_string(),
        values: "1 to 536870912 (Redis's limit)",
        doc: "Largest encoded value accepted, in bytes; larger ones are dropped and counted.",
        read: Read::Trimmed,
        apply: |c, v| {
            let allowed = "from 1 to 536870912 bytes (Redis's limit)";
            set(&mut c.max_value_bytes, int(v, 1, REDIS_MAX_VALUE_BYTES as u64, allowed)? as usize)
        },
    },
    // --- Write pipeline ---
    EnvVar {
        section: PIPELINE,
        name: "CACHE_CHANNEL_CAPACITY",
        sets: "channel_capacity",
        default: |c| c.channel_capacity.to_string(),
        values: "1 or more",
        doc: "Writes that may wait in the channel to the flusher thread.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.channel_capacity, count(v)?),
    },
    EnvVar {
        section: PIPELINE,
        name: "CACHE_OVERFLOW",
        sets: "overflow",
        default: |c| match c.overflow {
            OverflowPolicy::Reject => "reject".into(),
            OverflowPolicy::Block { .. } => "block".into(),
        },
        values: "`reject` or `block`",
        doc: "When the channel is full: fail at once and hand the value back, or wait up to \
              CACHE_BLOCK_TIMEOUT_MS first.",
        read: Read::Trimmed,
        apply: |c, v| {
            if v.eq_ignore_ascii_case("block") {
                let timeout = match c.overflow {
                    OverflowPolicy::Block { timeout } => timeout,
                    OverflowPolicy::Reject => DEFAULT_BLOCK_TIMEOUT,
                };
                set(&mut c.overflow, OverflowPolicy::Block { timeout })
            } else if v.eq_ignore_ascii_case("reject") {
                set(&mut c.overflow, OverflowPolicy::Reject)
            } else {
                Err("one of: reject, block".into())
            }
        },
    },
    EnvVar {
        section: PIPELINE,
        name: "CACHE_BLOCK_TIMEOUT_MS",
        sets: "overflow",
        default: |c| match c.overflow {
            OverflowPolicy::Block { timeout } => ms(timeout),
            OverflowPolicy::Reject => ms(DEFAULT_BLOCK_TIMEOUT),
        },
        values: "milliseconds, 1 or more",
        doc: "The longest a write waits for room; only with CACHE_OVERFLOW=block.",
        read: Read::Trimmed,
        apply: |c, v| {
            let t = millis(v, 1)?;
            match &mut c.overflow {
                OverflowPolicy::Block { timeout } => set(timeout, t),
                OverflowPolicy::Reject => Err("only with CACHE_OVERFLOW=block".into()),
            }
        },
    },
    EnvVar {
        section: PIPELINE,
        name: "CACHE_MAX_BATCH",
        sets: "max_batch",
        default: |c| c.max_batch.to_string(),
        values: "1 or more",
        doc: "Most writes per `MULTI`/`EXEC` transaction.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.max_batch, count(v)?),
    },
    EnvVar {
        section: PIPELINE,
        name: "CACHE_MAX_PENDING_EVENTS",
        sets: "max_pending_events",
        default: |c| c.max_pending_events.to_string(),
        values: "1 or more",
        doc: "Most events the flusher holds while Redis is unreachable.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.max_pending_events, count(v)?),
    },
    EnvVar {
        section: PIPELINE,
        name: "CACHE_MAX_PENDING_SNAPSHOTS",
        sets: "max_pending_snapshots",
        default: |c| c.max_pending_snapshots.to_string(),
        values: "1 or more",
        doc: "Most distinct snapshot keys the flusher holds while Redis is unreachable.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.max_pending_snapshots, count(v)?),
    },
    EnvVar {
        section: PIPELINE,
        name: "CACHE_MAX_BATCH_BYTES",
        sets: "max_batch_bytes",
        default: |c| c.max_batch_bytes.to_string(),
        values: "1 or more",
        doc: "Most value bytes per transaction.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.max_batch_bytes, count(v)?),
    },
    EnvVar {
        section: PIPELINE,
        name: "CACHE_BUFFER_INTERVAL_MS",
        sets: "buffer_interval",
        default: |c| ms(c.buffer_interval),
        values: "milliseconds",
        doc: "Linger after the first write of a batch, for fewer, larger batches (0: write at once).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.buffer_interval, millis(v, 0)?),
    },
    EnvVar {
        section: PIPELINE,
        name: "CACHE_IDLE_POLL_US",
        sets: "idle_poll",
        default: |c| c.idle_poll.as_micros().to_string(),
        values: "microseconds, at most 1000000",
        doc: "Sleep between polls of an idle flusher (0: spin).",
        read: Read::Trimmed,
        apply: |c, v| {
            set(&mut c.idle_poll, Duration::from_micros(int(v, 0, u64::MAX, "microseconds, 0 or more")?))
        },
    },
    EnvVar {
        section: PIPELINE,
        name: "CACHE_IDLE_PARK_AFTER_MS",
        sets: "idle_park_after",
        default: |c| ms(c.idle_park_after),
        values: "milliseconds",
        doc: "Idle time after which the flusher parks until the next write instead of polling.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.idle_park_after, millis(v, 0)?),
    },
    EnvVar {
        section: PIPELINE,
        name: "CACHE_CLOSE_TIMEOUT_MS",
        sets: "close_timeout",
        default: |c| ms(c.close_timeout),
        values: "milliseconds",
        doc: "How long dropping a `Cache` waits for the final flush.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.close_timeout, millis(v, 0)?),
    },
    EnvVar {
        section: PIPELINE,
        name: "CACHE_REPLICA_WAIT",
        sets: "replica_wait",
        default: |c| c.replica_wait.map_or(0, |(n, _)| n).to_string(),
        values: "replicas (0: off)",
        doc: "`WAIT` for this many replicas after each batch before acknowledging it.",
        read: Read::Trimmed,
        apply: |c, v| {
            let n = int(v, 0, u32::MAX.into(), "a number of replicas (0 turns waiting off)")? as u32;
            let timeout = c.replica_wait.map_or(DEFAULT_REPLICA_WAIT_TIMEOUT, |(_, t)| t);
            set(&mut c.replica_wait, (n > 0).then_some((n, timeout)))
        },
    },
    EnvVar {
        section: PIPELINE,
        name: "CACHE_REPLICA_WAIT_TIMEOUT_MS",
        sets: "replica_wait",
        default: |c| ms(c.replica_wait.map_or(DEFAULT_REPLICA_WAIT_TIMEOUT, |(_, t)| t)),
        values: "milliseconds, 1 or more, below REDIS_TIMEOUT",
        doc: "The longest that `WAIT` waits; only with CACHE_REPLICA_WAIT of 1 or more.",
        read: Read::Trimmed,
        apply: |c, v| {
            let t = millis(v, 1)?;
            match &mut c.replica_wait {
                Some((_, timeout)) => set(timeout, t),
                None => Err("only with CACHE_REPLICA_WAIT of 1 or more".into()),
            }
        },
    },
    // --- Recovery and buffers ---
    EnvVar {
        section: RECOVERY,
        name: "CACHE_LOAD_CHUNK",
        sets: "load_chunk",
        default: |c| c.load_chunk.to_string(),
        values: "1 or more",
        doc: "Ids per pipelined request when loading (one `MGET`, one `LRANGE` per id).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.load_chunk, count(v)?),
    },
    EnvVar {
        section: RECOVERY,
        name: "CACHE_STRICT_LOAD",
        sets: "strict_load",
        default: |c| flag(c.strict_load),
        values: "boolean",
        doc: "Fail the load on a value that cannot be decoded (otherwise skip and report it).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.strict_load, boolean(v)?),
    },
    EnvVar {
        section: RECOVERY,
        name: "CACHE_TICK_CAPACITY",
        sets: "tick_capacity",
        default: |c| c.tick_capacity.to_string(),
        values: "1 or more",
        doc: "Ticks each market-data tick series keeps in Redis (per instrument).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.tick_capacity, count(v)?),
    },
    EnvVar {
        section: RECOVERY,
        name: "CACHE_BAR_CAPACITY",
        sets: "bar_capacity",
        default: |c| c.bar_capacity.to_string(),
        values: "1 or more",
        doc: "Bars each bar series keeps in Redis (per bar type).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.bar_capacity, count(v)?),
    },
    // --- Running 24/7 ---
    EnvVar {
        section: ALWAYS_ON,
        name: "CACHE_RETAIN_CLOSED_SECS",
        sets: "retain_closed_for",
        default: |c| secs_or_zero(c.retain_closed_for),
        values: "seconds (0: off)",
        doc: "Purge closed entities older than this, with their event logs and index entries: at open, \
              then every min(this, 60 s).",
        read: Read::Trimmed,
        apply: |c, v| {
            let s = int(v, 0, u64::MAX, "seconds, 0 (off) or more")?;
            set(&mut c.retain_closed_for, (s > 0).then(|| Duration::from_secs(s)))
        },
    },
    EnvVar {
        section: ALWAYS_ON,
        name: "CACHE_PURGE_BATCH",
        sets: "purge_batch",
        default: |c| c.purge_batch.to_string(),
        values: "1 or more",
        doc: "Closed entities deleted per purge step (one transaction between two batches).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.purge_batch, count(v)?),
    },
    EnvVar {
        section: ALWAYS_ON,
        name: "CACHE_MAX_ACCOUNT_EVENTS",
        sets: "max_account_events",
        default: |c| c.max_account_events.unwrap_or(0).to_string(),
        values: "a count (0: keep all)",
        doc: "Keep only the newest N events of each account's log (`LTRIM` with every append).",
        read: Read::Trimmed,
        apply: |c, v| {
            let n = int(v, 0, usize::MAX as u64, "a count, 0 (keep all) or more")?;
            set(&mut c.max_account_events, (n > 0).then_some(n as usize))
        },
    },
    EnvVar {
        section: ALWAYS_ON,
        name: "CACHE_HEARTBEAT_MS",
        sets: "heartbeat_interval",
        default: |c| ms(c.heartbeat_interval.unwrap_or_default()),
        values: "milliseconds (0: off)",
        doc: "Set `{trader}:heartbeat:{writer_id}` this often, with a TTL of three intervals.",
        read: Read::Trimmed,
        apply: |c, v| {
            let d = millis(v, 0)?;
            set(&mut c.heartbeat_interval, (!d.is_zero()).then_some(d))
        },
    },
    EnvVar {
        section: ALWAYS_ON,
        name: "CACHE_PUBLISH_EVENTS",
        sets: "publish_events",
        default: |c| flag(c.publish_events),
        values: "boolean",
        doc: "Also `XADD` every appended event (not market data) to `{trader}:stream:{collection}`.",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.publish_events, boolean(v)?),
    },
    EnvVar {
        section: ALWAYS_ON,
        name: "CACHE_STREAM_MAXLEN",
        sets: "stream_max_len",
        default: |c| c.stream_max_len.to_string(),
        values: "1 or more",
        doc: "Streams are trimmed to about this many entries (`XADD … MAXLEN ~`).",
        read: Read::Trimmed,
        apply: |c, v| set(&mut c.stream_max_len, count(v)?),
    },
    EnvVar {
        section: ALWAYS_ON,
        name: "CACHE_STREAM_MAX_AGE_SECS",
        sets: "stream_max_age",
        default: |c| secs_or_zero(c.stream_max_age),
        values: "seconds (0: by length only)",
        doc: "And to entries younger than this by the Redis server's clock (`XTRIM … MINID ~`, Redis 6.2 or later).",
        read: Read::Trimmed,
        apply: |c, v| {
            let s = int(v, 0, u64::MAX, "seconds, 0 (off) or more")?;
            set(&mut c.stream_max_age, (s > 0).then(|| Duration::from_secs(s)))
        },
    },
];
