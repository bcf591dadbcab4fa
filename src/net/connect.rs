//! One established connection: credentials, TLS, `TCP_NODELAY`, timeouts,
//! and what the server tells about it (`CLIENT INFO`,
//! `proto-max-bulk-len`, its clock).

use std::time::{Duration, Instant};

use redis::{ConnectionAddr, FromRedisValue, IntoConnectionInfo, RedisConnectionInfo, Value};

use super::retry::{Cause, Failure};
use crate::config::Config;

/// One established, authenticated connection with timeouts set.
pub(crate) struct Conn {
    pub(crate) con: redis::Connection,
    /// `host:port` it is connected to (never credentials).
    pub(crate) addr: String,
    /// This connection as the server sees it (`CLIENT INFO`), so that a
    /// dropped connection can be killed before a batch is settled.
    pub(crate) client: Option<ClientIdentity>,
    /// The largest bulk string the server accepts (`proto-max-bulk-len`),
    /// when `CONFIG GET` is allowed: a larger value would make it close
    /// the connection, and the batch carrying it would be retried forever.
    pub(crate) bulk_limit: Option<usize>,
    /// The server's clock (`TIME`), read on each new connection when
    /// `stream_max_age` needs it and it is allowed: stream ids are the
    /// server's milliseconds, so age trims go by its clock.
    pub(crate) server_clock: Option<ServerClock>,
}

/// The server's wall clock as of a moment on this machine's monotonic
/// clock: what it reads now is that plus the time elapsed here, so the
/// engine's wall clock (its skew, its steps) plays no part.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerClock {
    /// `TIME`, in milliseconds since the epoch.
    server_ms: u64,
    /// When its reply was read: the server read its clock before that, so
    /// `now_ms` is late by at most one round trip, and an age trim keeps
    /// that much more rather than trimming anything early.
    at: Instant,
}

impl ServerClock {
    /// The server's clock now, in milliseconds since the epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        self.server_ms.saturating_add(u64::try_from(self.at.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// From a `TIME` reply: seconds and microseconds, as bulk strings.
    fn parse(reply: &Value, at: Instant) -> Option<ServerClock> {
        let (secs, micros) = <(u64, u64)>::from_redis_value_ref(reply).ok()?;
        Some(ServerClock { server_ms: secs.checked_mul(1000)?.checked_add(micros / 1000)?, at })
    }
}

/// Opens one [`Conn`] to `host:port`.
pub(crate) fn connect_to(
    cfg: &Config,
    host: &str,
    port: u16,
    deadline_cap: Option<Instant>,
) -> Result<Conn, Failure> {
    let addr = format!("{host}:{port}");
    let left = |d: Instant| d.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let timeout = deadline_cap.map_or(cfg.connect_timeout, |d| cfg.connect_timeout.min(left(d)));
    let client = make_client(cfg, host, port, &addr)?;
    let con = client.get_connection_with_timeout(timeout).map_err(|e| {
        let mut f = Failure::of(&e, &addr);
        if cfg.tls && f.cause == Cause::Timeout {
            // A plaintext port never answers a TLS client hello.
            f.text.push_str("; no TLS handshake reply: is this the server's TLS port?");
        }
        f
    })?;
    // redis-rs clears the socket timeouts after the handshake: set ours.
    con.set_read_timeout(Some(cfg.response_timeout)).map_err(|e| Failure::of(&e, &addr))?;
    con.set_write_timeout(Some(cfg.response_timeout)).map_err(|e| Failure::of(&e, &addr))?;
    let mut conn = Conn { con, addr, client: None, bulk_limit: None, server_clock: None };
    let info = conn.probe(redis::cmd("CLIENT").arg("INFO"))?.and_then(|v| String::from_redis_value(v).ok());
    conn.client = info.as_deref().and_then(ClientIdentity::parse);
    // Refused under a strict ACL or on managed Redis: then only
    // `max_value_bytes` bounds a value (docs/guarantees.md, "Dropped writes").
    let limit = conn.probe(redis::cmd("CONFIG").arg("GET").arg("proto-max-bulk-len"))?;
    conn.bulk_limit = limit.and_then(|v| <(String, usize)>::from_redis_value(v).ok()).map(|(_, n)| n);
    if cfg.publish_events && cfg.stream_max_age.is_some() {
        conn.server_clock =
            conn.probe(&redis::cmd("TIME"))?.and_then(|v| ServerClock::parse(&v, Instant::now()));
        if conn.server_clock.is_none() {
            // Trimming by the engine's clock could trim the events a batch
            // just published (a clock ahead by more than the age), so
            // streams are then trimmed by length only (docs/running-24-7.md,
            // "Live event streams").
            log::warn!(
                "tradecache: {}: TIME refused or unreadable: stream_max_age is not applied on this connection",
                conn.addr
            );
        }
    }
    Ok(conn)
}

/// Who a connection is on the server: its `CLIENT ID` and the client
/// address the server sees. Both are needed to name it safely later: a
/// restarted server numbers its clients from 1 again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientIdentity {
    pub(crate) id: i64,
    pub(crate) addr: String,
}

impl ClientIdentity {
    /// From a `CLIENT INFO` line: `id=7 addr=127.0.0.1:53412 laddr=… …`.
    pub(crate) fn parse(info: &str) -> Option<ClientIdentity> {
        let field = |name: &str| {
            info.split_whitespace().find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        };
        Some(ClientIdentity { id: field("id")?.parse().ok()?, addr: field("addr")?.to_string() })
    }

    /// `CLIENT KILL` of exactly this connection (no other client matches
    /// both the id and the address).
    pub(crate) fn kill_cmd(&self) -> redis::Cmd {
        let mut c = redis::cmd("CLIENT");
        c.arg("KILL").arg("ID").arg(self.id).arg("ADDR").arg(&self.addr);
        c
    }
}

fn make_client(cfg: &Config, host: &str, port: u16, addr: &str) -> Result<redis::Client, Failure> {
    #[cfg(not(feature = "tls"))]
    if cfg.tls {
        let text = "TLS requested but tradecache was built without its `tls` feature";
        return Err(Failure::new(Cause::Tls, addr, text));
    }
    let version = env!("CARGO_PKG_VERSION");
    let mut settings = RedisConnectionInfo::default().set_db(cfg.db).set_lib_name("tradecache", version);
    if let Some(u) = &cfg.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = &cfg.password {
        settings = settings.set_password(&p.0);
    }
    let host = host.to_string();
    let at = if cfg.tls {
        ConnectionAddr::TcpTls { host, port, insecure: false, tls_params: None }
    } else {
        ConnectionAddr::Tcp(host, port)
    };
    // Off by default in redis-rs; a batch is one write, so Nagle only adds
    // latency.
    let tcp = redis::io::tcp::TcpSettings::default().set_nodelay(true);
    let info = at.into_connection_info().map_err(|e| Failure::of(&e, addr))?;
    let info = info.set_redis_settings(settings).set_tcp_settings(tcp);
    #[cfg(feature = "tls")]
    if cfg.tls {
        return super::tls::make_client(cfg, info).map_err(|e| Failure::of(&e, addr));
    }
    redis::Client::open(info).map_err(|e| Failure::of(&e, addr))
}

impl Conn {
    /// Sends the commands `p` packed in one round trip and reads their
    /// replies, in order (server error replies among them).
    pub(crate) fn round_trip(&mut self, p: &super::Packer) -> Result<Vec<Value>, Failure> {
        self.con.send_packed_command(&p.buf).map_err(|e| Failure::of(&e, &self.addr))?;
        (0..p.commands).map(|_| self.con.recv_response().map_err(|e| Failure::of(&e, &self.addr))).collect()
    }

    /// What the server tells about this connection, asked while opening
    /// it: `None` when it refuses the command (an ACL without it, managed
    /// Redis); a failure when no reply comes (a cut, a timeout): then the
    /// connection is lost, not one that cannot be named or measured.
    fn probe(&mut self, cmd: &redis::Cmd) -> Result<Option<Value>, Failure> {
        match self.query(cmd) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code().is_some() => Ok(None),
            Err(e) => Err(Failure::of(&e, &self.addr)),
        }
    }

    /// Sends one command and reads its reply; server error replies become
    /// `Err`.
    pub(crate) fn query(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<Value> {
        self.con.send_packed_command(&cmd.get_packed_command())?;
        let v = self.con.recv_response()?;
        match v {
            Value::ServerError(e) => Err(e.into()),
            v => Ok(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_identity_from_client_info() {
        let line = "id=7 addr=127.0.0.1:53412 laddr=127.0.0.1:6379 fd=8 name= age=0 idle=0 flags=N db=0\n";
        let c = ClientIdentity::parse(line).unwrap();
        assert_eq!(c, ClientIdentity { id: 7, addr: "127.0.0.1:53412".into() });
        assert_eq!(ClientIdentity::parse("laddr=1.2.3.4:5 id=x"), None);
        let packed = c.kill_cmd().get_packed_command();
        assert!(String::from_utf8_lossy(&packed).contains("ADDR"));
    }

    #[test]
    fn server_clock_from_time() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let at = Instant::now();
        let c = ServerClock::parse(&Value::Array(vec![bulk("1700000000"), bulk("123456")]), at).unwrap();
        assert_eq!(c.server_ms, 1_700_000_000_123);
        assert!(c.now_ms() >= 1_700_000_000_123);
        assert!(ServerClock::parse(&Value::Array(vec![bulk("x"), bulk("1")]), at).is_none());
        assert!(ServerClock::parse(&bulk("1700000000"), at).is_none());
    }
}
