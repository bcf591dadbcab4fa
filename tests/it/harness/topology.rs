//! Deployment topologies for the integration tests, built from private
//! processes on loopback: a Sentinel setup (master, replicas, sentinels),
//! and a Redis Cluster.
//!
//! Everything here starts its own `redis-server` processes on free
//! `127.0.0.1` ports in temporary directories and kills them on `Drop`
//! (with the parent-death signal of [`super::spawn`] as a safety net).
//! Every wait has a deadline and fails with the relevant logs.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{free_port, probe, redis_server_path, send_signal, RedisServer};

/// Waits until `cond` holds, polling every 20 ms; panics after `timeout`
/// with `what` and the text `explain` returns (e.g. logs).
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
    explain: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}\n{}", explain());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A synchronous connection to `127.0.0.1:port` with 10 s timeouts.
pub fn connect(port: u16) -> redis::Connection {
    let client = redis::Client::open(("127.0.0.1", port)).expect("client");
    let con = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    con.set_read_timeout(Some(Duration::from_secs(10))).expect("set_read_timeout");
    con.set_write_timeout(Some(Duration::from_secs(10))).expect("set_write_timeout");
    con
}

/// The ACL rule tradecache needs, read from docs/deployment.md itself (its
/// `ACL SETUSER trader …` line), so that the rule the tests run under and
/// the documented one cannot drift apart: for keys matching `keys` (e.g.
/// `trader-T1:*`) instead of the doc's `trader-TRADER-001:*`, with
/// `password`, plus `extra` (e.g. `+role`).
pub fn acl_rule(password: &str, keys: &str, extra: &str) -> String {
    const DOC: &str = include_str!("../../../docs/deployment.md");
    let rule = documented_rule(DOC, "docs/deployment.md", "trader", password);
    let pattern = " ~trader-TRADER-001:* ";
    assert!(rule.contains(pattern), "the documented rule changed shape: {rule}");
    let rule = rule.replace(pattern, &format!(" ~{keys} "));
    format!("{rule} {extra}").trim_end().to_string()
}

/// The ACL rule the kv layer needs, read from docs/kv.md itself (its
/// `ACL SETUSER cache …` line, for the default key prefix `cache`), with
/// `password`: the tests run under the documented rule, not a copy.
pub fn kv_acl_rule(password: &str) -> String {
    const DOC: &str = include_str!("../../../docs/kv.md");
    documented_rule(DOC, "docs/kv.md", "cache", password)
}

/// The rule of the line `ACL SETUSER <user> …` of the page `doc` (named
/// `page`), with its ` >PASSWORD ` set to `password`.
fn documented_rule(doc: &str, page: &str, user: &str, password: &str) -> String {
    let prefix = format!("ACL SETUSER {user} ");
    let rule = doc
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("{page} documents the rule as `{prefix}…`"));
    let pw = " >PASSWORD ";
    assert!(rule.contains(pw), "the rule of {page} changed shape: {rule}");
    rule.replace(pw, &format!(" >{password} "))
}

/// `ACL SETUSER user <rule…>` on the server on `port`.
pub fn acl_setuser(port: u16, user: &str, rule: &str) {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg(user);
    for part in rule.split_whitespace() {
        cmd.arg(part);
    }
    let _: () = cmd.query(&mut connect(port)).expect("ACL SETUSER");
}

/// `INFO <section>` of the server on `port` as `field → value`; empty if it
/// does not answer.
pub fn info(port: u16, section: &str) -> HashMap<String, String> {
    let text: String = redis::Client::open(("127.0.0.1", port))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
        .and_then(|mut con| {
            con.set_read_timeout(Some(Duration::from_secs(2)))?;
            redis::cmd("INFO").arg(section).query(&mut con)
        })
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

// ---------------------------------------------------------------------------
// Sentinel
// ---------------------------------------------------------------------------

/// One `redis-server sentinel.conf --sentinel` process with its own temp
/// dir; killed on `Drop`.
pub struct Sentinel {
    port: u16,
    dir: TempDir,
    child: Mutex<Option<Child>>,
}

impl Sentinel {
    /// Starts a sentinel monitoring `master` at `127.0.0.1:master_port`
    /// with quorum `quorum` and the given timings (milliseconds).
    pub fn start(
        master: &str,
        master_port: u16,
        quorum: usize,
        down_after_ms: u64,
        failover_timeout_ms: u64,
    ) -> Sentinel {
        let dir = tempfile::Builder::new().prefix("tradecache-sentinel-").tempdir().expect("temp dir");
        let mut last = String::new();
        for _ in 0..10 {
            let port = free_port();
            let conf = dir.path().join("sentinel.conf");
            fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir {dir}\n\
                     logfile {dir}/sentinel.log\n\
                     sentinel monitor {master} 127.0.0.1 {master_port} {quorum}\n\
                     sentinel down-after-milliseconds {master} {down_after_ms}\n\
                     sentinel failover-timeout {master} {failover_timeout_ms}\n\
                     sentinel parallel-syncs {master} 2\n",
                    dir = dir.path().display()
                ),
            )
            .expect("write sentinel.conf");
            let mut cmd = Command::new(redis_server_path());
            cmd.arg(&conf).arg("--sentinel");
            let stderr = fs::File::create(dir.path().join("redis.stderr")).expect("stderr file");
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
            let mut child = super::spawn(cmd).expect("spawn redis-server --sentinel");
            let deadline = Instant::now() + super::START_TIMEOUT;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!("sentinel exited ({status}):\n{}", sentinel_log(dir.path()));
                    break;
                }
                match probe(port, None, Duration::from_millis(500)) {
                    Ok(p) if p.reply == "+PONG" && p.pid.is_none_or(|pid| pid == child.id()) => {
                        return Sentinel { port, dir, child: Mutex::new(Some(child)) };
                    }
                    _ => {}
                }
                if Instant::now() >= deadline {
                    send_signal(child.id(), libc::SIGKILL);
                    let _ = child.wait();
                    panic!("sentinel on {port} did not answer PING:\n{}", sentinel_log(dir.path()));
                }
                thread::sleep(Duration::from_millis(10));
            }
            if !last.contains("Address already in use") {
                break;
            }
        }
        panic!("could not start a sentinel: {last}");
    }

    /// The sentinel's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `SENTINEL MASTER <name>` as `field → value`; empty if unanswered.
    pub fn master_info(&self, name: &str) -> HashMap<String, String> {
        let reply: redis::RedisResult<Vec<String>> = redis::Client::open(("127.0.0.1", self.port))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
            .and_then(|mut con| {
                con.set_read_timeout(Some(Duration::from_secs(2)))?;
                redis::cmd("SENTINEL").arg("MASTER").arg(name).query(&mut con)
            });
        let flat = reply.unwrap_or_default();
        flat.chunks(2).filter(|kv| kv.len() == 2).map(|kv| (kv[0].clone(), kv[1].clone())).collect()
    }

    /// The master's port according to this sentinel.
    pub fn master_port(&self, name: &str) -> Option<u16> {
        let reply: redis::RedisResult<Option<(String, String)>> =
            redis::Client::open(("127.0.0.1", self.port))
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
                .and_then(|mut con| {
                    con.set_read_timeout(Some(Duration::from_secs(2)))?;
                    redis::cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(name).query(&mut con)
                });
        reply.ok().flatten().and_then(|(_, p)| p.parse().ok())
    }

    /// The tail of its log.
    pub fn log_tail(&self) -> String {
        sentinel_log(self.dir.path())
    }
}

fn sentinel_log(dir: &Path) -> String {
    let log = fs::read_to_string(dir.join("sentinel.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let mut out = lines[lines.len().saturating_sub(40)..].join("\n");
    let stderr = fs::read_to_string(dir.join("redis.stderr")).unwrap_or_default();
    if !stderr.trim().is_empty() {
        out.push_str("\n[stderr]\n");
        out.push_str(stderr.trim_end());
    }
    out
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- sentinel 127.0.0.1:{} log (test failed) ---\n{}", self.port, self.log_tail());
        }
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            send_signal(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// A master, its replicas and three sentinels (quorum 2) on loopback.
///
/// Timings are small so a failover takes a few seconds:
/// `down-after-milliseconds` 500, `failover-timeout` 4000.
pub struct SentinelSetup {
    /// The master name the sentinels monitor.
    pub name: String,
    /// Data servers; index 0 is the initial master.
    pub servers: Vec<RedisServer>,
    /// The sentinels.
    pub sentinels: Vec<Sentinel>,
    /// Ports of killed servers, kept bound until the sentinels are gone
    /// (fields drop in order): sentinels keep calling a lost master, and
    /// would turn another test's new server on that port into a replica.
    held_ports: Vec<std::net::TcpListener>,
}

/// How long topology setup and failovers may take before a test fails.
pub const TOPOLOGY_TIMEOUT: Duration = Duration::from_secs(30);

impl SentinelSetup {
    /// Starts a master (AOF off, so a failover is the only way back), `replicas`
    /// replicas of it, and three sentinels, and waits until every sentinel
    /// knows every replica and the other two sentinels.
    pub fn start(replicas: usize) -> SentinelSetup {
        let name = "tcmaster".to_string();
        let mut servers = vec![RedisServer::builder().appendonly(false).start()];
        let master_port = servers[0].port();
        for _ in 0..replicas {
            let r = RedisServer::builder().appendonly(false).start();
            let _: () = redis::cmd("REPLICAOF")
                .arg("127.0.0.1")
                .arg(master_port)
                .query(&mut r.client())
                .expect("REPLICAOF");
            servers.push(r);
        }
        let want = replicas.to_string();
        wait_until(
            "the replicas to be in sync",
            TOPOLOGY_TIMEOUT,
            || {
                let i = info(master_port, "replication");
                i.get("connected_slaves") == Some(&want)
                    && (0..replicas)
                        .all(|k| i.get(&format!("slave{k}")).is_some_and(|s| s.contains("state=online")))
            },
            || format!("{:?}", info(master_port, "replication")),
        );
        let sentinels: Vec<Sentinel> =
            (0..3).map(|_| Sentinel::start(&name, master_port, 2, 500, 4000)).collect();
        let setup = SentinelSetup { name, servers, sentinels, held_ports: Vec::new() };
        wait_until(
            "every sentinel to see the replicas and the other sentinels",
            TOPOLOGY_TIMEOUT,
            || {
                setup.sentinels.iter().all(|s| {
                    let m = s.master_info(&setup.name);
                    m.get("num-slaves") == Some(&want)
                        && m.get("num-other-sentinels").map(String::as_str) == Some("2")
                })
            },
            || setup.describe(),
        );
        setup
    }

    /// `host:port` of every sentinel, for `Config::sentinels`.
    pub fn sentinel_addrs(&self) -> Vec<(String, u16)> {
        self.sentinels.iter().map(|s| ("127.0.0.1".to_string(), s.port())).collect()
    }

    /// The same, as `REDIS_SENTINELS` wants it.
    pub fn sentinel_list(&self) -> String {
        self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port())).collect::<Vec<_>>().join(",")
    }

    /// The data server listening on `port`, mutably (to kill it).
    pub fn server_mut(&mut self, port: u16) -> &mut RedisServer {
        self.servers
            .iter_mut()
            .find(|s| s.port() == port)
            .unwrap_or_else(|| panic!("no server on port {port}"))
    }

    /// SIGKILLs the data server on `port` and keeps the port bound (to a
    /// listener that never answers) for the rest of the test.
    pub fn kill_and_hold(&mut self, port: u16) {
        self.server_mut(port).kill();
        let deadline = std::time::Instant::now() + TOPOLOGY_TIMEOUT;
        loop {
            match std::net::TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => return self.held_ports.push(l),
                Err(e) if std::time::Instant::now() > deadline => panic!("cannot hold port {port}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Waits until every sentinel reports a master other than `old_port`,
    /// the same one, and that server says `role:master`; returns its port.
    pub fn wait_failover(&self, old_port: u16) -> u16 {
        let mut new_port = 0;
        wait_until(
            "the sentinels to promote a replica",
            TOPOLOGY_TIMEOUT,
            || {
                let ports: Vec<Option<u16>> =
                    self.sentinels.iter().map(|s| s.master_port(&self.name)).collect();
                match ports[0] {
                    Some(p) if p != old_port && ports.iter().all(|q| *q == Some(p)) => {
                        new_port = p;
                        info(p, "replication").get("role").map(String::as_str) == Some("master")
                    }
                    _ => false,
                }
            },
            || self.describe(),
        );
        new_port
    }

    /// Waits until the master on `port` has `n` replicas online.
    pub fn wait_replicas(&self, port: u16, n: usize) {
        wait_until(
            &format!("{n} replica(s) online at the master on {port}"),
            TOPOLOGY_TIMEOUT,
            || {
                let i = info(port, "replication");
                (0..n).all(|k| i.get(&format!("slave{k}")).is_some_and(|s| s.contains("state=online")))
            },
            || self.describe(),
        );
    }

    /// What the sentinels and servers say, for failure messages.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for s in &self.sentinels {
            out.push_str(&format!("sentinel {}: {:?}\n", s.port(), s.master_info(&self.name)));
        }
        for r in &self.servers {
            let i = info(r.port(), "replication");
            let mut keys: Vec<_> = i
                .iter()
                .filter(|(k, _)| !k.starts_with("master_repl") && !k.starts_with("repl_backlog"))
                .collect();
            keys.sort();
            out.push_str(&format!("server {}: {keys:?}\n", r.port()));
        }
        if let Some(s) = self.sentinels.first() {
            out.push_str(&format!("--- sentinel {} log ---\n{}\n", s.port(), s.log_tail()));
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------

/// A Redis Cluster of masters without replicas on loopback, created with
/// `redis-cli --cluster create`.
pub struct Cluster {
    /// The nodes, in the order they were created.
    pub nodes: Vec<RedisServer>,
}

/// The `redis-cli` binary: next to redis-server, else on `PATH`.
pub fn redis_cli_path() -> PathBuf {
    let beside = redis_server_path().with_file_name("redis-cli");
    if beside.is_file() {
        return beside;
    }
    PathBuf::from("redis-cli")
}

impl Cluster {
    /// Starts `n` (3 or more) cluster-enabled nodes, creates the cluster
    /// (slots split evenly) and waits for `cluster_state:ok` everywhere.
    pub fn start(n: usize) -> Cluster {
        let nodes: Vec<RedisServer> = (0..n)
            .map(|_| {
                RedisServer::builder()
                    .appendonly(false)
                    .arg("cluster-enabled", "yes")
                    .arg("cluster-config-file", "nodes.conf")
                    .arg("cluster-node-timeout", "5000")
                    .start()
            })
            .collect();
        let mut cmd = Command::new(redis_cli_path());
        cmd.arg("--cluster").arg("create");
        for node in &nodes {
            cmd.arg(node.addr());
        }
        cmd.args(["--cluster-replicas", "0", "--cluster-yes"]).stdin(Stdio::null());
        let out = run_bounded(cmd, TOPOLOGY_TIMEOUT).unwrap_or_else(|e| {
            panic!("redis-cli --cluster create: {e} (redis-cli is in Debian's redis-tools package)")
        });
        assert!(out.0, "redis-cli --cluster create failed:\n{}", out.1);
        let cluster = Cluster { nodes };
        wait_until(
            "cluster_state:ok on every node",
            TOPOLOGY_TIMEOUT,
            || {
                cluster.nodes.iter().all(|node| {
                    cluster_info(node.port()).get("cluster_state").map(String::as_str) == Some("ok")
                })
            },
            || cluster.describe(),
        );
        cluster
    }

    /// `host:port` of every node, for `Config::cluster_nodes`.
    pub fn seeds(&self) -> Vec<(String, u16)> {
        self.nodes.iter().map(|s| ("127.0.0.1".to_string(), s.port())).collect()
    }

    /// The same, as `REDIS_CLUSTER` wants it.
    pub fn seed_list(&self) -> String {
        self.nodes.iter().map(RedisServer::addr).collect::<Vec<_>>().join(",")
    }

    /// `CLUSTER KEYSLOT key`.
    pub fn keyslot(&self, key: &str) -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut connect(self.nodes[0].port()))
            .expect("CLUSTER KEYSLOT")
    }

    /// The port of the master that owns `slot`, according to the node on
    /// `asked` (`CLUSTER SLOTS`).
    pub fn owner_by(&self, asked: u16, slot: u16) -> u16 {
        let ranges: Vec<redis::Value> =
            redis::cmd("CLUSTER").arg("SLOTS").query(&mut connect(asked)).expect("CLUSTER SLOTS");
        for r in ranges {
            let redis::Value::Array(items) = r else { continue };
            let (Some(redis::Value::Int(lo)), Some(redis::Value::Int(hi)), Some(redis::Value::Array(m))) =
                (items.first(), items.get(1), items.get(2))
            else {
                continue;
            };
            if (*lo..=*hi).contains(&i64::from(slot)) {
                if let Some(redis::Value::Int(p)) = m.get(1) {
                    return *p as u16;
                }
            }
        }
        panic!("no owner for slot {slot}:\n{}", self.describe())
    }

    /// The port of the master that owns `slot`, according to the first node.
    pub fn owner(&self, slot: u16) -> u16 {
        self.owner_by(self.nodes[0].port(), slot)
    }

    /// `CLUSTER MYID` of the node on `port`.
    pub fn node_id(&self, port: u16) -> String {
        redis::cmd("CLUSTER").arg("MYID").query(&mut connect(port)).expect("CLUSTER MYID")
    }

    /// Starts moving `slot` from the node on `from` to the node on `to`:
    /// `SETSLOT IMPORTING` on the target, then `MIGRATING` on the source.
    /// From here on, writes to keys already moved get `ASK`.
    pub fn begin_migration(&self, slot: u16, from: u16, to: u16) {
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&from_id)
            .query(&mut connect(to))
            .expect("SETSLOT IMPORTING");
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&to_id)
            .query(&mut connect(from))
            .expect("SETSLOT MIGRATING");
    }

    /// `MIGRATE`s up to `count` keys of `slot` from `from` to `to`; returns
    /// how many it moved.
    pub fn migrate_keys(&self, slot: u16, from: u16, to: u16, count: usize) -> usize {
        let mut src = connect(from);
        let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(count)
            .query(&mut src)
            .expect("GETKEYSINSLOT");
        if keys.is_empty() {
            return 0;
        }
        let mut cmd = redis::cmd("MIGRATE");
        cmd.arg("127.0.0.1").arg(to).arg("").arg(0).arg(5000).arg("KEYS");
        for k in &keys {
            cmd.arg(&k[..]);
        }
        let _: String = cmd.query(&mut src).expect("MIGRATE");
        keys.len()
    }

    /// Moves every remaining key of `slot` and assigns it to `to` on every
    /// node (target first, then source, then the rest, as the Redis
    /// Cluster specification recommends). Writes then get `MOVED`.
    pub fn finish_migration(&self, slot: u16, from: u16, to: u16) {
        while self.migrate_keys(slot, from, to, 100) > 0 {}
        let to_id = self.node_id(to);
        let mut order = vec![to, from];
        order.extend(self.nodes.iter().map(RedisServer::port).filter(|p| *p != to && *p != from));
        for port in order {
            let _: () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&to_id)
                .query(&mut connect(port))
                .expect("SETSLOT NODE");
        }
        wait_until(
            "every node to agree on the new owner",
            TOPOLOGY_TIMEOUT,
            || self.nodes.iter().all(|n| self.owner_by(n.port(), slot) == to),
            || self.describe(),
        );
    }

    /// `CLUSTER NODES` of the first node plus every node's state.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(first) = self.nodes.first() {
            let nodes: redis::RedisResult<String> = redis::Client::open(("127.0.0.1", first.port()))
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
                .and_then(|mut con| redis::cmd("CLUSTER").arg("NODES").query(&mut con));
            out.push_str(&format!("CLUSTER NODES: {nodes:?}\n"));
        }
        for n in &self.nodes {
            out.push_str(&format!("node {}: {:?}\n", n.port(), cluster_info(n.port()).get("cluster_state")));
        }
        out
    }
}

/// `CLUSTER INFO` of the node on `port`; empty if it does not answer.
pub fn cluster_info(port: u16) -> HashMap<String, String> {
    let text: String = redis::Client::open(("127.0.0.1", port))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
        .and_then(|mut con| {
            con.set_read_timeout(Some(Duration::from_secs(2)))?;
            redis::cmd("CLUSTER").arg("INFO").query(&mut con)
        })
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// Runs `cmd` to completion, killing it after `timeout`; returns whether it
/// succeeded and its combined output.
fn run_bounded(mut cmd: Command, timeout: Duration) -> io::Result<(bool, String)> {
    let dir = tempfile::tempdir()?;
    let out_path = dir.path().join("out");
    let out = fs::File::create(&out_path)?;
    cmd.stdout(out.try_clone()?).stderr(out);
    let mut child = cmd.spawn()?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let text = fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Some(s) => Ok((s.success(), text)),
        None => Ok((false, format!("timed out after {timeout:?}\n{text}"))),
    }
}
