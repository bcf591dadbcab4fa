//! Connecting (standalone, Sentinel, Cluster), timeouts, error
//! classification and backoff. Private to the flusher and `open`.

use std::time::{Duration, Instant};

use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Value};

use crate::config::{Config, HostPort};
use crate::error::{Error, ErrorKind};
use crate::stats::ErrorClass;

/// One established, authenticated connection with timeouts set.
pub(crate) struct Conn {
    pub(crate) con: redis::Connection,
    /// `host:port` it is connected to (never credentials).
    pub(crate) addr: String,
    /// This connection as the server sees it (`CLIENT INFO`: id and the
    /// client's address), used to make sure a dropped connection can no
    /// longer apply a batch (see `Flusher::resolve`).
    pub(crate) client: Option<ClientIdentity>,
    /// The largest bulk string the server accepts (`proto-max-bulk-len`),
    /// when `CONFIG GET` is allowed: a larger value would make it close
    /// the connection, and the batch carrying it would be retried forever.
    pub(crate) bulk_limit: Option<usize>,
}

/// A failure to connect or talk, already classified.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) class: ErrorClass,
    pub(crate) action: Action,
    pub(crate) addr: String,
    pub(crate) text: String,
}

impl Failure {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self.class {
            _ if self.text.starts_with(DISCOVERY_MARK) => ErrorKind::Discovery,
            ErrorClass::Timeout => ErrorKind::Timeout,
            ErrorClass::Auth => ErrorKind::Auth,
            ErrorClass::Io if self.text.contains(TLS_MARK) => ErrorKind::Tls,
            ErrorClass::Io if self.text.contains("refused") => ErrorKind::ConnectionRefused,
            ErrorClass::Io => ErrorKind::Io,
            _ => ErrorKind::Server,
        }
    }

    pub(crate) fn into_error(self) -> Error {
        Error::Redis { addr: self.addr.clone(), kind: self.kind(), detail: self.text }
    }
}

/// What to do about an error: the single place where retry decisions are
/// made (DESIGN.md, "redis-rs facts").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// The connection is unusable or points at the wrong server: drop it,
    /// reconnect (re-resolving Sentinel/Cluster), resolve in-doubt batches.
    Reconnect,
    /// The server is temporarily unable (`LOADING`, `TRYAGAIN`, …): keep
    /// the batch, wait with backoff, retry.
    WaitRetry,
    /// The server refuses writes until an operator acts (`OOM`, `MISCONF`,
    /// auth): surface it in `health()`, retry with backoff.
    Backpressure,
    /// This one command failed for a reason a retry will not fix
    /// (`WRONGTYPE`, …): count it and move on.
    Drop,
    /// Another writer claimed the commit marker: stop writing for good.
    Fence,
}

/// Classifies an error code (the first word of a Redis error reply).
pub(crate) fn classify_code(code: &str) -> (ErrorClass, Action) {
    match code {
        // `ASK`: the trader's slot is being migrated and some of its keys
        // have moved. A batch spans many keys, which the target node would
        // refuse (`TRYAGAIN`) until all of them have moved: wait, the
        // migration ends with `MOVED`.
        "LOADING" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN" | "NOREPLICAS" | "BUSY" | "ASK" => {
            (ErrorClass::Busy, Action::WaitRetry)
        }
        // `MOVED`: the slot has a new owner; reconnecting asks the seeds.
        "READONLY" | "MOVED" => (ErrorClass::ReadOnly, Action::Reconnect),
        "OOM" => (ErrorClass::Oom, Action::Backpressure),
        "MISCONF" => (ErrorClass::Misconf, Action::Backpressure),
        "NOAUTH" | "WRONGPASS" | "NOPERM" => (ErrorClass::Auth, Action::Backpressure),
        "EXECABORT" => (ErrorClass::Other, Action::WaitRetry),
        _ => (ErrorClass::Command, Action::Drop),
    }
}

/// The code to classify an `EXEC` refusal by. Redis 7 refuses an `EXEC`
/// whose transaction cannot run any more (memory full, the server turned
/// replica since `MULTI`) with `EXECABORT Transaction discarded because
/// of: -OOM …`: the cause is the code after `because of:`, not
/// `EXECABORT`.
pub(crate) fn exec_abort_cause(code: &str, text: &str) -> String {
    if code == "EXECABORT" {
        if let Some((_, cause)) = text.split_once("because of:") {
            let cause = cause.trim_start().trim_start_matches('-');
            if let Some(word) = cause.split_whitespace().next() {
                if !word.is_empty() && word.bytes().all(|b| b.is_ascii_uppercase()) {
                    return word.to_string();
                }
            }
        }
    }
    code.to_string()
}

/// Classifies a redis-rs error.
pub(crate) fn classify(err: &redis::RedisError) -> (ErrorClass, Action) {
    if err.is_timeout() {
        return (ErrorClass::Timeout, Action::Reconnect);
    }
    if let Some(code) = err.code() {
        return classify_code(code);
    }
    match err.kind() {
        redis::ErrorKind::AuthenticationFailed => (ErrorClass::Auth, Action::Backpressure),
        _ => (ErrorClass::Io, Action::Reconnect),
    }
}

/// The error code of a server error reply value, if it is one.
pub(crate) fn reply_error(v: &Value) -> Option<(String, String)> {
    match v {
        Value::ServerError(e) => Some((e.code().to_string(), e.to_string())),
        _ => None,
    }
}

/// Marks the text of a failure raised by the TLS layer; [`Failure::kind`]
/// recognises it (the class stays `Io`, as counted in `stats()`).
const TLS_MARK: &str = " (TLS: ";

pub(crate) fn failure(err: &redis::RedisError, addr: &str) -> Failure {
    let (class, action) = classify(err);
    #[cfg(feature = "tls")]
    if let Some(hint) = crate::tls::explain(err) {
        let text = format!("{}{TLS_MARK}{hint})", scrub(&err.to_string()));
        return Failure { class: ErrorClass::Io, action: Action::Reconnect, addr: addr.to_string(), text };
    }
    Failure { class, action, addr: addr.to_string(), text: scrub(&err.to_string()) }
}

/// Removes anything that looks like URL credentials from a message.
pub(crate) fn scrub(text: &str) -> String {
    // redis-rs never prints passwords, but a URL with credentials may reach
    // an error text through user input; cut `user:pass@` out.
    let mut out = String::with_capacity(text.len());
    for word in text.split_inclusive(char::is_whitespace) {
        if let (Some(scheme), Some(at)) = (word.find("://"), word.rfind('@')) {
            if at > scheme {
                out.push_str(&word[..scheme + 3]);
                out.push_str("<redacted>@");
                out.push_str(&word[at + 1..]);
                continue;
            }
        }
        out.push_str(word);
    }
    out
}

/// Capped exponential backoff with jitter.
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    seed: u64,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64)
            | 1;
        Backoff { min, max, next: min, seed }
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }

    /// The next delay: the current step with ±25 % jitter, then the step
    /// doubles up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        // Saturating: a configured maximum of `Duration::MAX` must not panic.
        self.next = self.next.saturating_mul(2).min(self.max);
        // xorshift64: jitter only, no need for a real RNG.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let frac = (self.seed % 1000) as f64 / 1000.0; // 0..1
        let factor = 0.75 + frac * 0.5;
        let jittered = Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(self.max);
        jittered.min(self.max).max(Duration::from_millis(1).min(self.min))
    }
}

/// A writer thread waiting to retry sleeps a little, at most 5 ms and not
/// past `retry_at` or the shutdown deadline, so it keeps draining its
/// channel meanwhile.
pub(crate) fn pause(retry_at: Option<Instant>, shutdown: Option<Instant>) {
    let now = Instant::now();
    let until = retry_at.unwrap_or(now).min(shutdown.unwrap_or(now + Duration::from_secs(3600)));
    let slice = until.saturating_duration_since(now).min(Duration::from_millis(5));
    if !slice.is_zero() {
        std::thread::sleep(slice);
    }
}

/// `now + d`, or a point a century away when that does not fit in an
/// `Instant`: a timeout of `Duration::MAX` means "no limit", not a panic.
pub(crate) fn deadline_after(d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let now = Instant::now();
    now.checked_add(d.min(CENTURY)).unwrap_or(now)
}

/// Opens one connection to `host:port` with the configured credentials,
/// TLS, `TCP_NODELAY`, and read/write timeouts.
pub(crate) fn connect_to(
    cfg: &Config,
    host: &str,
    port: u16,
    deadline_cap: Option<Instant>,
) -> Result<Conn, Failure> {
    let addr = format!("{host}:{port}");
    let mut timeout = cfg.connect_timeout;
    if let Some(d) = deadline_cap {
        timeout = timeout.min(d.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)));
    }
    let client = make_client(cfg, host, port).map_err(|e| failure(&e, &addr))?;
    let con = client.get_connection_with_timeout(timeout).map_err(|e| {
        let mut f = failure(&e, &addr);
        if cfg.tls && f.class == ErrorClass::Timeout {
            // A plaintext port never answers a TLS client hello.
            f.text.push_str("; no TLS handshake reply: is this the server's TLS port?");
        }
        f
    })?;
    // redis-rs clears the socket timeouts after the handshake: set ours.
    con.set_read_timeout(Some(cfg.response_timeout)).map_err(|e| failure(&e, &addr))?;
    con.set_write_timeout(Some(cfg.response_timeout)).map_err(|e| failure(&e, &addr))?;
    let mut conn = Conn { con, addr, client: None, bulk_limit: None };
    conn.client = match conn.query(redis::cmd("CLIENT").arg("INFO")) {
        Ok(Value::BulkString(b)) => ClientIdentity::parse(&String::from_utf8_lossy(&b)),
        Ok(Value::VerbatimString { text, .. }) => ClientIdentity::parse(&text),
        _ => None,
    };
    // Refused under a strict ACL or on managed Redis: then only
    // `max_value_bytes` bounds a value (README, "Limits").
    conn.bulk_limit = match conn.query(redis::cmd("CONFIG").arg("GET").arg("proto-max-bulk-len")) {
        Ok(Value::Array(v)) => v.get(1).and_then(int_of),
        Ok(Value::Map(v)) => v.first().and_then(|(_, n)| int_of(n)),
        _ => None,
    };
    Ok(conn)
}

fn int_of(v: &Value) -> Option<usize> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::Int(n) => usize::try_from(*n).ok(),
        _ => None,
    }
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
    fn parse(info: &str) -> Option<ClientIdentity> {
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

fn redis_settings(cfg: &Config) -> RedisConnectionInfo {
    let mut r = RedisConnectionInfo::default().set_db(cfg.db);
    if let Some(u) = &cfg.username {
        r = r.set_username(u);
    }
    if let Some(p) = &cfg.password {
        r = r.set_password(&p.0);
    }
    r.set_lib_name("tradecache", env!("CARGO_PKG_VERSION"))
}

fn make_client(cfg: &Config, host: &str, port: u16) -> redis::RedisResult<redis::Client> {
    if cfg.tls {
        #[cfg(feature = "tls")]
        return crate::tls::make_client(cfg, host, port, redis_settings(cfg));
        #[cfg(not(feature = "tls"))]
        return Err(redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "TLS requested but tradecache was built without its `tls` feature",
        )));
    }
    let info = ConnectionAddr::Tcp(host.to_string(), port)
        .into_connection_info()?
        .set_redis_settings(redis_settings(cfg))
        .set_tcp_settings(tcp_settings());
    redis::Client::open(info)
}

pub(crate) fn tcp_settings() -> redis::io::tcp::TcpSettings {
    // Off by default in redis-rs; a batch is one write, so Nagle only adds
    // latency.
    redis::io::tcp::TcpSettings::default().set_nodelay(true)
}

impl Conn {
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

/// Connects according to the configured mode, resolving the master through
/// Sentinel or the trader's slot owner through Cluster.
pub(crate) fn connect(cfg: &Config, slot_key: &str, deadline: Option<Instant>) -> Result<Conn, Failure> {
    if !cfg.sentinels.is_empty() {
        connect_sentinel(cfg, deadline)
    } else if !cfg.cluster_nodes.is_empty() {
        connect_cluster(cfg, slot_key, deadline)
    } else {
        let conn = connect_to(cfg, &cfg.host, cfg.port, deadline)?;
        Ok(conn)
    }
}

/// Asks each sentinel in turn for the master's address (each step bounded
/// by the connect and response timeouts: redis-rs's own sync Sentinel
/// client has none), connects to it and checks with `ROLE` that it is a
/// master, since a sentinel may not have caught up with a failover yet.
/// Called again on every reconnect, so a failover is followed.
fn connect_sentinel(cfg: &Config, deadline: Option<Instant>) -> Result<Conn, Failure> {
    let master = cfg.sentinel_master.clone().unwrap_or_default();
    // Sentinels usually have no password (or another one than the data
    // nodes): connect without credentials.
    let sentinel_cfg = Config { username: None, password: None, db: 0, ..cfg.clone() };
    let mut tried = Vec::with_capacity(cfg.sentinels.len());
    for s in &cfg.sentinels {
        match master_from_sentinel(cfg, &sentinel_cfg, s, &master, deadline) {
            Ok(conn) => return Ok(conn),
            // The master itself refused our credentials or certificate:
            // another sentinel will not change that.
            Err(f) if f.class == ErrorClass::Auth || f.kind() == ErrorKind::Tls => return Err(f),
            Err(f) => tried.push((s.to_string(), f)),
        }
    }
    Err(discovery_failure(&cfg.sentinels, &format!("master {master:?}"), "sentinel", tried))
}

fn master_from_sentinel(
    cfg: &Config,
    sentinel_cfg: &Config,
    s: &HostPort,
    master: &str,
    deadline: Option<Instant>,
) -> Result<Conn, Failure> {
    let addr = s.to_string();
    let mut sc = connect_to(sentinel_cfg, &s.host, s.port, deadline)?;
    let reply = sc
        .query(redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(master))
        .map_err(|e| failure(&e, &addr))?;
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let (host, port) = match reply {
        Value::Array(items) if items.len() == 2 => {
            match (text(&items[0]), text(&items[1]).and_then(|p| p.parse::<u16>().ok())) {
                (Some(h), Some(p)) => (h, p),
                _ => return Err(other(&addr, &format!("unexpected reply for master {master:?}: {items:?}"))),
            }
        }
        Value::Nil => {
            return Err(Failure {
                class: ErrorClass::Other,
                action: Action::WaitRetry,
                addr,
                text: format!("does not know master {master:?}"),
            })
        }
        other_reply => return Err(other(&addr, &format!("unexpected reply {other_reply:?}"))),
    };
    drop(sc);
    let mut conn = connect_to(cfg, &host, port, deadline).map_err(|mut f| {
        f.text = format!("its master {host}:{port}: {}", f.text);
        f
    })?;
    match conn.query(&redis::cmd("ROLE")) {
        Ok(Value::Array(items)) if items.first().and_then(text).as_deref() == Some("master") => Ok(conn),
        Ok(_) => {
            // What the server would answer to a write: READONLY.
            let (class, action) = classify_code("READONLY");
            Err(Failure {
                class,
                action,
                addr: conn.addr.clone(),
                text: format!("its master {} is not a master (yet)", conn.addr),
            })
        }
        Err(e) => {
            let mut f = failure(&e, &conn.addr);
            f.text = format!("its master {}: {}", conn.addr, f.text);
            Err(f)
        }
    }
}

/// Marks the text of a failure to find the right node through sentinels or
/// cluster seeds; [`Failure::kind`] reports it as `Discovery`.
const DISCOVERY_MARK: &str = "no usable master for ";

/// One failure out of every node tried: names each with what went wrong,
/// keeps the last one's class for counting.
fn discovery_failure(nodes: &[HostPort], what: &str, role: &str, tried: Vec<(String, Failure)>) -> Failure {
    let addr = nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let Some((_, last)) = tried.last() else {
        return other(&addr, &format!("{DISCOVERY_MARK}{what}: no {role} configured"));
    };
    let (class, action) = (last.class, last.action);
    let detail =
        tried.iter().map(|(node, f)| format!("{role} {node}: {}", f.text)).collect::<Vec<_>>().join("; ");
    Failure { class, action, addr, text: format!("{DISCOVERY_MARK}{what} ({detail})") }
}

/// Asks the seed nodes in turn which master owns the trader's slot and
/// connects to it (once per reconnect, so `MOVED` after a resharding or a
/// cluster failover is followed).
fn connect_cluster(cfg: &Config, slot_key: &str, deadline: Option<Instant>) -> Result<Conn, Failure> {
    let mut tried = Vec::with_capacity(cfg.cluster_nodes.len());
    for seed_addr @ HostPort { host, port } in &cfg.cluster_nodes {
        let result = connect_to(cfg, host, *port, deadline).and_then(|mut seed| {
            let (h, p) = cluster_owner(&mut seed, slot_key)?;
            if h == *host && p == *port {
                Ok(seed)
            } else {
                drop(seed);
                connect_to(cfg, &h, p, deadline)
            }
        });
        match result {
            Ok(conn) => return Ok(conn),
            Err(f) if f.class == ErrorClass::Auth || f.kind() == ErrorKind::Tls => return Err(f),
            Err(f) => tried.push((seed_addr.to_string(), f)),
        }
    }
    Err(discovery_failure(&cfg.cluster_nodes, &format!("key {slot_key}"), "seed", tried))
}

/// The cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag (the
/// part between the first `{` and the next `}`, if not empty) or of the
/// whole key, modulo 16384 (Redis Cluster specification, "Keys hash tags").
/// Computed here rather than asked with `CLUSTER KEYSLOT`: one round trip
/// and one ACL permission less.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter().position(|&b| b == b'}').map(|close| &rest[..close])
        })
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc % 16384
}

/// Finds the master that owns `key`'s slot.
fn cluster_owner(seed: &mut Conn, key: &str) -> Result<(String, u16), Failure> {
    let addr = seed.addr.clone();
    let slot = i64::from(key_slot(key.as_bytes()));
    let slots = seed.query(redis::cmd("CLUSTER").arg("SLOTS")).map_err(|e| failure(&e, &addr))?;
    let Value::Array(ranges) = slots else {
        return Err(other(&addr, "unexpected CLUSTER SLOTS reply"));
    };
    for r in ranges {
        let Value::Array(items) = r else { continue };
        let (Some(Value::Int(lo)), Some(Value::Int(hi)), Some(Value::Array(master))) =
            (items.first(), items.get(1), items.get(2))
        else {
            continue;
        };
        if (*lo..=*hi).contains(&slot) {
            let host = match master.first() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(Value::SimpleString(s)) => s.clone(),
                _ => continue,
            };
            let host = if host.is_empty() {
                seed.addr.rsplit_once(':').map_or(host, |(h, _)| h.to_string())
            } else {
                host
            };
            if let Some(Value::Int(p)) = master.get(1) {
                return Ok((host, *p as u16));
            }
        }
    }
    // What a node answers while a slot has no owner: CLUSTERDOWN.
    let (class, action) = classify_code("CLUSTERDOWN");
    Err(Failure { class, action, addr, text: format!("no master owns slot {slot}") })
}

fn other(addr: &str, text: &str) -> Failure {
    Failure { class: ErrorClass::Other, action: Action::Reconnect, addr: addr.into(), text: text.into() }
}

/// `Cache::open`'s bounded connect: at most `connect_attempts` tries with
/// exponential backoff between them.
pub(crate) fn connect_with_retries(cfg: &Config, slot_key: &str) -> Result<Conn, Error> {
    let mut backoff = Backoff::new(cfg.open_backoff_min, cfg.open_backoff_max);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match connect(cfg, slot_key, None) {
            Ok(c) => return Ok(c),
            Err(f) => {
                log::warn!("tradecache: connect attempt {attempt} to {} failed: {}", f.addr, f.text);
                // A wrong password or certificate will not fix itself:
                // fail at once.
                let hopeless = f.class == ErrorClass::Auth || f.kind() == ErrorKind::Tls;
                if attempt >= cfg.connect_attempts || hopeless {
                    return Err(Error::Connect {
                        addr: f.addr.clone(),
                        attempts: attempt,
                        kind: f.kind(),
                        detail: f.text,
                    });
                }
                std::thread::sleep(backoff.next_delay());
            }
        }
    }
}

/// Packs commands in RESP into a reused buffer.
#[derive(Default)]
pub(crate) struct Packer {
    pub(crate) buf: Vec<u8>,
    pub(crate) commands: usize,
}

impl Packer {
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.commands = 0;
    }

    pub(crate) fn array(&mut self, n: usize) {
        self.commands += 1;
        self.buf.push(b'*');
        push_int(&mut self.buf, n);
        self.buf.extend_from_slice(b"\r\n");
    }

    pub(crate) fn bulk(&mut self, b: &[u8]) {
        push_bulk(&mut self.buf, b);
    }

    pub(crate) fn cmd(&mut self, args: &[&[u8]]) {
        self.array(args.len());
        for a in args {
            self.bulk(a);
        }
    }

    /// One command: `head` followed by the arguments collected in `args`.
    pub(crate) fn cmd_args(&mut self, head: &[&[u8]], args: &Args) {
        self.array(head.len() + args.n);
        for h in head {
            self.bulk(h);
        }
        self.buf.extend_from_slice(&args.buf);
    }
}

/// The arguments of one variadic command (`MSET`, `SADD`, `RPUSH`, …),
/// packed as they come, for commands whose length is known only at the end.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) buf: Vec<u8>,
    pub(crate) n: usize,
}

impl Args {
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.n = 0;
    }

    pub(crate) fn bulk(&mut self, b: &[u8]) {
        push_bulk(&mut self.buf, b);
        self.n += 1;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.n == 0
    }
}

/// The key (first argument) of the `n`-th command (from 0) in packed
/// RESP `buf`; `None` if there is no such command or argument.
pub(crate) fn command_key(buf: &[u8], n: usize) -> Option<&[u8]> {
    command_name_key(buf, n).map(|(_, key)| key)
}

/// The name and the key of the `n`-th command (from 0) in packed RESP
/// `buf`. Only used after Redis refused a command or a reply was lost, so
/// a linear walk is fine.
pub(crate) fn command_name_key(buf: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    /// Reads one `{tag}{number}\r\n` header line.
    fn line(rest: &mut &[u8], tag: u8) -> Option<usize> {
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let (head, tail) = rest.split_at(end);
        *rest = &tail[2..];
        let (&t, digits) = head.split_first()?;
        if t != tag {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    }
    let mut rest = buf;
    for i in 0..=n {
        let argc = line(&mut rest, b'*')?;
        let mut name: &[u8] = &[];
        for a in 0..argc {
            let len = line(&mut rest, b'$')?;
            let arg = rest.get(..len)?;
            rest = rest.get(len + 2..)?;
            if i == n && a == 0 {
                name = arg;
            }
            if i == n && a == 1 {
                return Some((name, arg));
            }
        }
        if i == n {
            return None;
        }
    }
    None
}

/// One RESP bulk string: `$len\r\nbytes\r\n`.
fn push_bulk(buf: &mut Vec<u8>, b: &[u8]) {
    buf.push(b'$');
    push_int(buf, b.len());
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(b);
    buf.extend_from_slice(b"\r\n");
}

fn push_int(buf: &mut Vec<u8>, n: usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut n = n;
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code the flusher can meet, one row each: the fault tests
    /// (tests/faults.rs) rely on these classes and actions.
    #[test]
    fn classification_per_code() {
        use Action::*;
        use ErrorClass as C;
        let table = [
            ("LOADING", C::Busy, WaitRetry),
            ("MASTERDOWN", C::Busy, WaitRetry),
            ("TRYAGAIN", C::Busy, WaitRetry),
            ("CLUSTERDOWN", C::Busy, WaitRetry),
            ("NOREPLICAS", C::Busy, WaitRetry),
            ("BUSY", C::Busy, WaitRetry),
            ("READONLY", C::ReadOnly, Reconnect),
            ("MOVED", C::ReadOnly, Reconnect),
            ("ASK", C::Busy, WaitRetry),
            ("OOM", C::Oom, Backpressure),
            ("MISCONF", C::Misconf, Backpressure),
            ("NOAUTH", C::Auth, Backpressure),
            ("WRONGPASS", C::Auth, Backpressure),
            ("NOPERM", C::Auth, Backpressure),
            ("EXECABORT", C::Other, WaitRetry),
            ("WRONGTYPE", C::Command, Drop),
            ("ERR", C::Command, Drop),
            ("SOMETHINGNEW", C::Command, Drop),
        ];
        for (code, class, action) in table {
            assert_eq!(classify_code(code), (class, action), "{code}");
        }
    }

    /// An `EXEC` refused for a cause found at `EXEC` time is classified by
    /// that cause (issue 10: it was `other`, with no backpressure and no
    /// reconnect).
    #[test]
    fn exec_abort_is_classified_by_its_cause() {
        let cases = [
            ("EXECABORT Transaction discarded because of: OOM command not allowed when used memory > 'maxmemory'.", "OOM"),
            ("EXECABORT: Transaction discarded because of: -READONLY You can't write against a read only replica.", "READONLY"),
            ("EXECABORT Transaction discarded because of: MISCONF Errors writing to the AOF file", "MISCONF"),
            ("EXECABORT Transaction discarded because of previous errors.", "EXECABORT"),
            ("EXECABORT Transaction discarded because of: something odd", "EXECABORT"),
        ];
        for (text, cause) in cases {
            assert_eq!(exec_abort_cause("EXECABORT", text), cause, "{text}");
        }
        assert_eq!(
            classify_code(&exec_abort_cause("EXECABORT", cases[0].0)),
            (ErrorClass::Oom, Action::Backpressure)
        );
        assert_eq!(
            classify_code(&exec_abort_cause("EXECABORT", cases[1].0)),
            (ErrorClass::ReadOnly, Action::Reconnect)
        );
        assert_eq!(exec_abort_cause("OOM", "OOM because of: READONLY"), "OOM");
    }

    #[test]
    fn command_names_and_keys() {
        let mut p = Packer::default();
        p.cmd(&[b"MULTI"]);
        p.cmd(&[b"SADD", b"t:index:orders", b"O-1"]);
        p.cmd(&[b"RPUSH", b"t:orders:O-1:events", b"x"]);
        assert_eq!(command_name_key(&p.buf, 0), None);
        assert_eq!(command_name_key(&p.buf, 1), Some((&b"SADD"[..], &b"t:index:orders"[..])));
        assert_eq!(command_name_key(&p.buf, 2), Some((&b"RPUSH"[..], &b"t:orders:O-1:events"[..])));
        assert_eq!(command_name_key(&p.buf, 3), None);
    }

    /// Server error replies as redis-rs parses them (known and extension
    /// codes alike) go through `classify_code`.
    #[test]
    fn classification_of_server_replies() {
        for (reply, class, action) in [
            (
                &b"-READONLY You can't write against a read only replica.\r\n"[..],
                ErrorClass::ReadOnly,
                Action::Reconnect,
            ),
            (b"-LOADING Redis is loading the dataset in memory\r\n", ErrorClass::Busy, Action::WaitRetry),
            (b"-MASTERDOWN Link with MASTER is down\r\n", ErrorClass::Busy, Action::WaitRetry),
            (
                b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
                ErrorClass::Oom,
                Action::Backpressure,
            ),
            (
                b"-MISCONF Errors writing to the AOF file: No space left on device\r\n",
                ErrorClass::Misconf,
                Action::Backpressure,
            ),
            (b"-NOPERM this user has no permissions\r\n", ErrorClass::Auth, Action::Backpressure),
            (
                b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
                ErrorClass::Command,
                Action::Drop,
            ),
            (
                b"-EXECABORT Transaction discarded because of previous errors.\r\n",
                ErrorClass::Other,
                Action::WaitRetry,
            ),
        ] {
            let Ok(Value::ServerError(e)) = redis::parse_redis_value(reply) else {
                panic!("not parsed as a server error: {reply:?}");
            };
            let err: redis::RedisError = e.into();
            assert_eq!(classify(&err), (class, action), "{err}");
            assert_eq!(failure(&err, "h:1").class, class);
        }
    }

    /// Errors without a server code: timeouts, I/O, refused credentials.
    #[test]
    fn classification_of_client_errors() {
        use std::io;
        let timeout = redis::RedisError::from(io::Error::from(io::ErrorKind::TimedOut));
        assert_eq!(classify(&timeout), (ErrorClass::Timeout, Action::Reconnect));
        let would_block = redis::RedisError::from(io::Error::from(io::ErrorKind::WouldBlock));
        assert_eq!(classify(&would_block), (ErrorClass::Timeout, Action::Reconnect));
        let refused = redis::RedisError::from(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(classify(&refused), (ErrorClass::Io, Action::Reconnect));
        assert_eq!(failure(&refused, "h:1").kind(), ErrorKind::ConnectionRefused);
        let reset = redis::RedisError::from(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(classify(&reset), (ErrorClass::Io, Action::Reconnect));
        let auth = redis::RedisError::from((redis::ErrorKind::AuthenticationFailed, "invalid password"));
        assert_eq!(classify(&auth), (ErrorClass::Auth, Action::Backpressure));
        assert_eq!(failure(&auth, "h:1").kind(), ErrorKind::Auth);
    }

    #[test]
    fn huge_durations_do_not_panic() {
        let mut b = Backoff::new(Duration::MAX, Duration::MAX);
        for _ in 0..4 {
            assert!(b.next_delay() > Duration::from_secs(3600));
        }
        let mut b = Backoff::new(Duration::from_millis(1), Duration::MAX);
        for _ in 0..200 {
            let _ = deadline_after(b.next_delay());
        }
        assert!(deadline_after(Duration::MAX) > Instant::now() + Duration::from_secs(3600));
        assert!(deadline_after(Duration::ZERO) <= Instant::now());
    }

    #[test]
    fn key_slots_match_redis() {
        // The specification's check value, then `CLUSTER KEYSLOT` answers
        // of Redis 7.0.15.
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        for (key, slot) in [
            (&b"somekey"[..], 11058),
            (b"foo{hash_tag}", 2515),
            (b"{user1000}.following", 3443),
            (b"user1000", 3443),
            // An empty tag does not count; only the first `{` opens one.
            (b"foo{}{bar}", 8363),
            (b"foo{{bar}}zap", 4015),
            (b"{bar", 4015),
            (b"{trader-T1}:writer:main", 12116),
            (b"trader-T1", 12116),
            (b"no-brace}", 8241),
            (b"{}", 15257),
            (b"", 0),
        ] {
            assert_eq!(key_slot(key), slot, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn backoff_is_capped() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(80));
        let d: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert!(d.iter().all(|d| *d <= Duration::from_millis(80)));
        assert!(d[0] >= Duration::from_micros(7_500) && d[0] <= Duration::from_micros(12_500));
        b.reset();
        assert!(b.next_delay() <= Duration::from_micros(12_500));
    }

    #[test]
    fn packer_resp() {
        let mut p = Packer::default();
        p.cmd(&[b"SET", b"k", b"v"]);
        assert_eq!(p.buf, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
        assert_eq!(p.commands, 1);
    }

    #[test]
    fn packer_key_of() {
        let mut p = Packer::default();
        p.cmd(&[b"MULTI"]);
        p.cmd(&[b"SET", b"k\r\n1", b"v"]);
        p.array(4);
        p.bulk(b"RPUSH");
        p.bulk(b"k2");
        p.bulk(b"a");
        p.bulk(b"b");
        p.cmd(&[b"EXEC"]);
        assert_eq!(command_key(&p.buf, 0), None);
        assert_eq!(command_key(&p.buf, 1), Some(&b"k\r\n1"[..]));
        assert_eq!(command_key(&p.buf, 2), Some(&b"k2"[..]));
        assert_eq!(command_key(&p.buf, 3), None);
        assert_eq!(command_key(&p.buf, 4), None);
        p.buf.truncate(p.buf.len() - 5); // a torn buffer is not a panic
        assert_eq!(command_key(&p.buf, 3), None);
    }

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
    fn variadic_args() {
        let mut a = Args::default();
        a.bulk(b"k");
        a.bulk(b"");
        let mut p = Packer::default();
        p.cmd_args(&[b"SADD", b"i"], &a);
        assert_eq!(p.buf, b"*4\r\n$4\r\nSADD\r\n$1\r\ni\r\n$1\r\nk\r\n$0\r\n\r\n");
        assert_eq!(p.commands, 1);
    }

    #[test]
    fn scrub_removes_credentials() {
        assert_eq!(scrub("bad url redis://u:secret@h:1/0 x"), "bad url redis://<redacted>@h:1/0 x");
    }
}
