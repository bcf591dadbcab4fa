//! Test support: private `redis-server` processes and a fault-injecting TCP
//! proxy, for the integration tests.
//!
//! Every [`RedisServer`] is a `redis-server` child process of the test
//! binary, bound to `127.0.0.1` on a free port, with its own temporary
//! directory (AOF, log). Dropping it kills the process and removes the
//! directory. On Linux the process is also started with a parent-death
//! signal, so servers do not outlive a test binary that is killed.
//!
//! [`Proxy`] sits between a client and a server on loopback and can cut,
//! stall or black-hole connections on demand, to test reconnects and
//! in-doubt batches.
//!
//! Nothing here ever touches a Redis it did not start (in particular not the
//! one a developer may run on 6379), and nothing listens beyond loopback.

// Each integration test binary compiles this module on its own and uses only
// a subset of it; the rest would warn as dead code.
#![allow(dead_code)]

pub mod outage;
pub mod topology;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long [`RedisServer::start`]/[`RedisServer::restart`] wait for the
/// server to answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How many fresh ports [`RedisServer::start`] tries when a port turns out
/// to be taken by the time redis binds it.
const PORT_ATTEMPTS: usize = 10;

const LOG_FILE: &str = "redis.log";
const STDERR_FILE: &str = "redis.stderr";

// ---------------------------------------------------------------------------
// Locating redis-server, ports
// ---------------------------------------------------------------------------

/// The `redis-server` binary to run: `$REDIS_SERVER_BIN`, else the first on
/// `PATH`, else `/usr/bin` or `/usr/local/bin`. Panics with install advice
/// if there is none.
pub fn redis_server_path() -> PathBuf {
    if let Some(bin) = std::env::var_os("REDIS_SERVER_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        if is_executable(&bin) {
            return bin;
        }
        panic!(
            "REDIS_SERVER_BIN={} is not an executable file. Point it at redis-server, \
             or unset it and run `make test` (or `scripts/ensure-redis`) to install redis-server.",
            bin.display()
        );
    }
    let on_path =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    let fallback = [PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")];
    for dir in on_path.iter().chain(fallback.iter()) {
        let bin = dir.join("redis-server");
        if is_executable(&bin) {
            return bin;
        }
    }
    panic!(
        "redis-server not found (looked at $REDIS_SERVER_BIN, $PATH, /usr/bin, /usr/local/bin). \
         These tests start private redis-server processes: run `make test`, or \
         `scripts/ensure-redis` once (installs it with apt-get when run as root; on macOS: \
         `brew install redis`), or set REDIS_SERVER_BIN=/path/to/redis-server."
    );
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// A loopback TCP port that was free a moment ago (bound to
/// `127.0.0.1:0`, then released). Nothing listens on it: use it to test
/// "connection refused", or to pick a port for an extra listener such as
/// `tls-port`.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

// ---------------------------------------------------------------------------
// RedisServer
// ---------------------------------------------------------------------------

/// Options for a [`RedisServer`]; from [`RedisServer::builder`].
#[derive(Debug, Clone)]
pub struct RedisServerBuilder {
    appendonly: bool,
    appendfsync: String,
    password: Option<String>,
    args: Vec<(String, String)>,
    port: Option<u16>,
}

impl Default for RedisServerBuilder {
    fn default() -> Self {
        Self {
            appendonly: true,
            appendfsync: "everysec".to_string(),
            password: None,
            args: Vec::new(),
            port: None,
        }
    }
}

impl RedisServerBuilder {
    /// `appendonly yes|no` (default yes).
    pub fn appendonly(mut self, on: bool) -> Self {
        self.appendonly = on;
        self
    }

    /// `appendfsync` policy: `"everysec"` (default), `"always"` or `"no"`.
    pub fn appendfsync(mut self, policy: impl Into<String>) -> Self {
        self.appendfsync = policy.into();
        self
    }

    /// `requirepass`; [`RedisServer::client`], [`RedisServer::url`] and the
    /// readiness checks then authenticate with it.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// One extra config directive, passed as `--key value`
    /// (e.g. `("maxmemory", "1mb")`, `("tls-port", &port.to_string())`).
    /// Don't pass `port`, `bind`, `dir` or `daemonize`: the server manages
    /// those.
    pub fn arg(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.args.push((key.into(), value.into()));
        self
    }

    /// Several extra config directives, as for [`Self::arg`].
    pub fn args<K, V>(mut self, args: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.args.extend(args.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Use this port instead of a free one (no retry on another port if it
    /// is taken).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Starts the server and waits until it answers `PING` (panics after
    /// [`START_TIMEOUT`], with the server's log).
    pub fn start(self) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("tradecache-redis-")
            .tempdir()
            .expect("create a temp dir for redis-server");
        let attempts = if self.port.is_some() { 1 } else { PORT_ATTEMPTS };
        let mut last_log = String::new();
        for _ in 0..attempts {
            let port = self.port.unwrap_or_else(free_port);
            match launch(&self, dir.path(), port, Ready::Pong) {
                Ok(child) => {
                    return RedisServer {
                        opts: self,
                        port,
                        dir: Some(dir),
                        child: Mutex::new(Some(child)),
                        paused: AtomicBool::new(false),
                    }
                }
                Err(StartError::PortInUse(log)) => last_log = log,
                Err(StartError::Other(msg)) => panic!("{msg}"),
            }
        }
        panic!("redis-server could not bind a loopback port ({attempts} attempt(s)); last log:\n{last_log}");
    }
}

/// A private `redis-server` child process on `127.0.0.1:<port>` with its
/// own temporary `--dir`. Dropping it kills the process (resuming it first
/// if paused) and removes the directory.
#[derive(Debug)]
pub struct RedisServer {
    opts: RedisServerBuilder,
    port: u16,
    dir: Option<TempDir>,
    child: Mutex<Option<Child>>,
    paused: AtomicBool,
}

impl RedisServer {
    /// A server with the defaults: AOF on, `appendfsync everysec`, no
    /// password.
    pub fn start() -> RedisServer {
        Self::builder().start()
    }

    /// Options for a server; finish with [`RedisServerBuilder::start`].
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// The port it listens on (on `127.0.0.1`); the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `"127.0.0.1:<port>"`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis://127.0.0.1:<port>/`, or `redis://:<password>@127.0.0.1:<port>/`
    /// (password percent-encoded) if it has one.
    pub fn url(&self) -> String {
        match &self.opts.password {
            Some(pw) => format!("redis://:{}@127.0.0.1:{}/", percent_encode(pw), self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// The password it was started with, if any.
    pub fn password(&self) -> Option<&str> {
        self.opts.password.as_deref()
    }

    /// Its data directory (holds `appendonlydir/` and `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("server dir").path()
    }

    /// The process id of the current process (changes on restart). Panics
    /// if it is not running (after [`Self::kill`]/[`Self::stop`]).
    pub fn pid(&self) -> u32 {
        self.lock_child().as_ref().map(|c| c.id()).expect("redis-server is not running")
    }

    /// Whether the process is alive (a paused process counts as alive).
    pub fn is_running(&self) -> bool {
        match self.lock_child().as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Whether [`Self::pause`] is in force.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// `redis::ConnectionInfo` for this server (authenticating if it has a
    /// password).
    pub fn connection_info(&self) -> redis::ConnectionInfo {
        use redis::IntoConnectionInfo;
        let info = ("127.0.0.1", self.port).into_connection_info().expect("connection info");
        match &self.opts.password {
            Some(pw) => {
                let redis = info.redis_settings().clone().set_password(pw);
                info.set_redis_settings(redis)
            }
            None => info,
        }
    }

    /// A fresh synchronous connection for assertions, authenticated if the
    /// server has a password, with 10 s read/write timeouts. If the server
    /// is running and not paused, first waits (up to [`START_TIMEOUT`]) until
    /// it has finished loading its AOF, so queries never see `LOADING`.
    pub fn client(&self) -> redis::Connection {
        if self.is_running() && !self.is_paused() {
            self.wait_ready(START_TIMEOUT);
        }
        let client = redis::Client::open(self.connection_info()).expect("redis::Client::open");
        let con = client.get_connection_with_timeout(Duration::from_secs(5)).unwrap_or_else(|e| {
            panic!("connect to the test redis-server at {}: {e}\n{}", self.addr(), self.log_tail())
        });
        con.set_read_timeout(Some(Duration::from_secs(10))).expect("set_read_timeout");
        con.set_write_timeout(Some(Duration::from_secs(10))).expect("set_write_timeout");
        con
    }

    /// Waits until the server answers `PING` with `PONG` (not `LOADING`);
    /// panics after `timeout` with the log tail.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            match probe(self.port, self.opts.password.as_deref(), Duration::from_millis(500)) {
                Ok(p) if p.reply == "+PONG" || p.reply.starts_with("-NOAUTH") => return,
                Ok(p) => last = p.reply,
                Err(e) => last = e.to_string(),
            }
            if !self.is_running() {
                panic!("redis-server on {} is not running\n{}", self.addr(), self.log_tail());
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on {} not ready after {timeout:?} (last: {last})\n{}",
            self.addr(),
            self.log_tail()
        );
    }

    /// SIGKILL (a crash: no final AOF fsync beyond what the policy already
    /// did), then waits for the process to exit. No-op if not running.
    pub fn kill(&mut self) {
        self.paused.store(false, Ordering::SeqCst);
        self.reap_with(libc::SIGKILL);
    }

    /// SIGTERM (graceful shutdown: redis fsyncs the AOF and exits), then
    /// waits for it to exit (SIGKILL after 10 s). Resumes a paused server
    /// first. No-op if not running.
    pub fn stop(&mut self) {
        if self.paused.swap(false, Ordering::SeqCst) {
            self.signal(libc::SIGCONT);
        }
        let pid = match self.lock_child().as_ref() {
            Some(c) => c.id(),
            None => return,
        };
        send_signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let exited = match self.lock_child().as_mut() {
                Some(c) => !matches!(c.try_wait(), Ok(None)),
                None => true,
            };
            if exited {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!("redis-server {pid} ignored SIGTERM for 10 s; killing it");
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.reap_with(libc::SIGKILL);
    }

    /// Starts redis-server again on the same port and directory, so it
    /// reloads its AOF. If it is still running it is SIGKILLed first (a
    /// crash-restart; call [`Self::stop`] first for a clean one). Returns
    /// once the server answers, either `PONG` or `LOADING` (use
    /// [`Self::wait_ready`] or [`Self::client`] to wait for the load to
    /// finish). Retries for a few seconds if the port is briefly taken.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match launch(&self.opts, self.dir(), self.port, Ready::PongOrLoading) {
                Ok(child) => {
                    *self.lock_child() = Some(child);
                    return;
                }
                Err(StartError::PortInUse(log)) if Instant::now() >= deadline => {
                    panic!("restart: port {} is taken by another process; redis log:\n{log}", self.port)
                }
                Err(StartError::PortInUse(_)) => thread::sleep(Duration::from_millis(100)),
                Err(StartError::Other(msg)) => panic!("restart: {msg}"),
            }
        }
    }

    /// SIGSTOP: the process freezes; connections stay open, the kernel
    /// still accepts new ones, nothing is answered.
    pub fn pause(&self) {
        if self.signal(libc::SIGSTOP) {
            self.paused.store(true, Ordering::SeqCst);
        }
    }

    /// SIGCONT: undoes [`Self::pause`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
        self.paused.store(false, Ordering::SeqCst);
    }

    /// The last 40 lines of the server's log file, plus anything it wrote to
    /// stderr (e.g. config errors), for failure messages.
    pub fn log_tail(&self) -> String {
        match &self.dir {
            Some(dir) => log_tail_of(dir.path()),
            None => String::new(),
        }
    }

    fn lock_child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `sig` to the live process; false if there is none.
    fn signal(&self, sig: libc::c_int) -> bool {
        let mut guard = self.lock_child();
        let Some(c) = guard.as_mut() else {
            return false;
        };
        if matches!(c.try_wait(), Ok(None)) {
            send_signal(c.id(), sig);
            true
        } else {
            false
        }
    }

    fn reap_with(&self, sig: libc::c_int) {
        if let Some(mut child) = self.lock_child().take() {
            if matches!(child.try_wait(), Ok(None)) {
                send_signal(child.id(), sig);
            }
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- redis-server {} log (test failed) ---\n{}", self.addr(), self.log_tail());
        }
        if self.paused.swap(false, Ordering::SeqCst) {
            self.signal(libc::SIGCONT);
        }
        self.reap_with(libc::SIGKILL);
        // `dir` (a TempDir) is removed when the fields drop.
    }
}

fn send_signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid of our own child process; no memory involved.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Ready {
    Pong,
    PongOrLoading,
}

enum StartError {
    /// The port was taken; the payload is the log tail.
    PortInUse(String),
    Other(String),
}

/// Spawns redis-server on `port` in `dir` and waits until it answers.
fn launch(opts: &RedisServerBuilder, dir: &Path, port: u16, ready: Ready) -> Result<Child, StartError> {
    let bin = redis_server_path();
    let mut cmd = Command::new(&bin);
    cmd.arg("--port")
        .arg(port.to_string())
        .arg("--bind")
        .arg("127.0.0.1")
        .arg("--dir")
        .arg(dir)
        .arg("--save")
        .arg("")
        .arg("--daemonize")
        .arg("no")
        .arg("--logfile")
        .arg(dir.join(LOG_FILE))
        .arg("--appendonly")
        .arg(if opts.appendonly { "yes" } else { "no" })
        .arg("--appendfsync")
        .arg(&opts.appendfsync);
    if let Some(pw) = &opts.password {
        cmd.arg("--requirepass").arg(pw);
    }
    for (k, v) in &opts.args {
        cmd.arg(format!("--{}", k.trim_start_matches('-'))).arg(v);
    }
    let stderr = File::create(dir.join(STDERR_FILE))
        .map_err(|e| StartError::Other(format!("create stderr file: {e}")))?;
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
    let mut child = spawn(cmd).map_err(|e| {
        StartError::Other(format!("spawn {}: {e} (run `scripts/ensure-redis`)", bin.display()))
    })?;

    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = log_tail_of(dir);
            if log.contains("Address already in use") {
                return Err(StartError::PortInUse(log));
            }
            return Err(StartError::Other(format!(
                "redis-server on 127.0.0.1:{port} exited during start ({status}); log:\n{log}"
            )));
        }
        let last = match probe(port, opts.password.as_deref(), Duration::from_millis(500)) {
            // Someone else's server on this port: ours will fail to bind.
            Ok(p) if p.pid.is_some_and(|pid| pid != child.id()) => {
                format!("{} from another process (pid {:?})", p.reply, p.pid)
            }
            // `-NOAUTH`: a password was set through `arg("requirepass", …)`.
            Ok(p) if p.reply == "+PONG" || p.reply.starts_with("-NOAUTH") => return Ok(child),
            Ok(p) if ready == Ready::PongOrLoading && p.reply.starts_with("-LOADING") => return Ok(child),
            Ok(p) => p.reply,
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            send_signal(child.id(), libc::SIGKILL);
            let _ = child.wait();
            return Err(StartError::Other(format!(
                "redis-server on 127.0.0.1:{port} did not answer PING within {START_TIMEOUT:?} \
                 (last: {last}); log:\n{}",
                log_tail_of(dir)
            )));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

struct Probe {
    /// The reply to `PING`, e.g. `+PONG` or `-LOADING …`.
    reply: String,
    /// `process_id` from `INFO server`, if it answered.
    pid: Option<u32>,
}

/// `PING` and `INFO server` over a raw connection (after `AUTH` if a
/// password is given). The pid tells our server from another process that
/// holds the port.
fn probe(port: u16, password: Option<&str>, timeout: Duration) -> io::Result<Probe> {
    use io::BufRead;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = Vec::new();
    if let Some(pw) = password {
        request.extend_from_slice(format!("*2\r\n$4\r\nAUTH\r\n${}\r\n", pw.len()).as_bytes());
        request.extend_from_slice(pw.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n");
    (&stream).write_all(&request)?;
    let mut reader = io::BufReader::new(stream);
    let mut read_line = || -> io::Result<String> {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        Ok(line.trim_end().to_string())
    };
    if password.is_some() {
        let auth = read_line()?;
        if !auth.starts_with("+OK") {
            return Ok(Probe { reply: auth, pid: None });
        }
    }
    let reply = read_line()?;
    let mut pid = None;
    if read_line()?.starts_with('$') {
        // The INFO body: `key:value` lines, ending with an empty line.
        loop {
            let line = read_line()?;
            if let Some(v) = line.strip_prefix("process_id:") {
                pid = v.parse().ok();
                break;
            }
            if line.is_empty() {
                break;
            }
        }
    }
    Ok(Probe { reply, pid })
}

fn log_tail_of(dir: &Path) -> String {
    let log = fs::read_to_string(dir.join(LOG_FILE)).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let mut out = lines[lines.len().saturating_sub(40)..].join("\n");
    let stderr = fs::read_to_string(dir.join(STDERR_FILE)).unwrap_or_default();
    if !stderr.trim().is_empty() {
        out.push_str("\n[stderr]\n");
        out.push_str(stderr.trim_end());
    }
    if out.trim().is_empty() {
        out = format!("(no log in {})", dir.display());
    }
    out
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Spawns `cmd`. On Linux the child gets a parent-death signal (SIGKILL),
/// so no redis-server outlives a test binary that is killed or exits
/// without running destructors. That signal fires when the *thread* that
/// forked exits, so all spawns go through one long-lived thread.
#[cfg(target_os = "linux")]
fn spawn(cmd: Command) -> io::Result<Child> {
    use std::sync::mpsc;
    use std::sync::OnceLock;

    type Job = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("redis-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(spawn_with_pdeathsig(&mut cmd));
                }
            })
            .expect("spawn the redis-spawner thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    sender
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, tx))
        .map_err(|_| io::Error::other("redis-spawner thread is gone"))?;
    rx.recv().map_err(|_| io::Error::other("redis-spawner thread is gone"))?
}

#[cfg(target_os = "linux")]
fn spawn_with_pdeathsig(cmd: &mut Command) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: getpid is async-signal-safe; it runs before the fork.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs between fork and exec and only calls the
    // async-signal-safe prctl/getppid/_exit.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

#[cfg(not(target_os = "linux"))]
fn spawn(mut cmd: Command) -> io::Result<Child> {
    cmd.spawn()
}

// ---------------------------------------------------------------------------
// Proxy
// ---------------------------------------------------------------------------

/// How often blocked proxy threads look at their controls.
const PROXY_TICK: Duration = Duration::from_millis(10);

/// A loopback TCP proxy in front of a server, with fault injection.
///
/// Every accepted client connection gets its own upstream connection and
/// two forwarding threads. The controls act on all connections, current and
/// future, and are safe to call from any thread. Dropping the proxy closes
/// every connection and joins every thread.
pub struct Proxy {
    addr: SocketAddr,
    upstream: String,
    shared: Arc<ProxyShared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct ProxyShared {
    stop: AtomicBool,
    drop_replies: AtomicBool,
    half_open: AtomicBool,
    /// Connections with an id below this are frozen (see `freeze_current`).
    frozen_below: AtomicU64,
    /// `hold_new_at`: (pattern, first connection id it applies to).
    hold: Mutex<Option<(Vec<u8>, u64)>>,
    /// Client→server chunks currently held by `hold_new_at`.
    held: AtomicUsize,
    accepted: AtomicUsize,
    /// Client→server bytes still to forward before cutting, if armed.
    cut_budget: Mutex<Option<u64>>,
    /// Bumped by every cut; a pump exits when it differs from its own.
    generation: AtomicU64,
    next_conn_id: AtomicU64,
    conns: Mutex<Vec<ConnHandles>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

struct ConnHandles {
    id: u64,
    client: TcpStream,
    server: TcpStream,
}

impl ProxyShared {
    fn cut_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|e| e.into_inner()));
        for c in conns {
            let _ = c.client.shutdown(Shutdown::Both);
            let _ = c.server.shutdown(Shutdown::Both);
        }
    }

    /// Forgets a connection whose pumps have ended (closes its handles).
    fn forget(&self, id: u64) {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).retain(|c| c.id != id);
    }

    fn stopped(&self, generation: u64) -> bool {
        self.stop.load(Ordering::SeqCst) || self.generation.load(Ordering::SeqCst) != generation
    }
}

impl Proxy {
    /// Listens on a free `127.0.0.1` port and forwards every connection to
    /// `upstream` (e.g. `server.addr()`).
    pub fn start(upstream: impl Into<String>) -> Proxy {
        let upstream = upstream.into();
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy: bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("proxy: set_nonblocking");
        let addr = listener.local_addr().expect("proxy: local_addr");
        let shared = Arc::new(ProxyShared::default());
        let acceptor = {
            let shared = Arc::clone(&shared);
            let upstream = upstream.clone();
            thread::Builder::new()
                .name(format!("proxy-accept-{}", addr.port()))
                .spawn(move || accept_loop(listener, upstream, shared))
                .expect("proxy: spawn acceptor")
        };
        Proxy { addr, upstream, shared, acceptor: Some(acceptor) }
    }

    /// `"127.0.0.1:<port>"`: point the client here.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// The proxy's listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address it forwards to.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// After forwarding `n` more bytes from clients to the server (counted
    /// across all connections), cut every current connection: the server
    /// receives exactly those `n` bytes and then EOF, and the client gets
    /// no further reply, only the close. `n == 0` cuts at the next byte a
    /// client sends. One-shot: later connections are forwarded normally.
    pub fn cut_after_upstream_bytes(&self, n: u64) {
        *self.shared.cut_budget.lock().unwrap_or_else(|e| e.into_inner()) = Some(n);
    }

    /// While on, client→server bytes are forwarded but server→client bytes
    /// are discarded: the server applies the commands, the client waits for
    /// replies that never come (its read times out).
    pub fn drop_replies(&self, on: bool) {
        self.shared.drop_replies.store(on, Ordering::SeqCst);
    }

    /// While on, nothing is forwarded in either direction, but every socket
    /// stays open (a network partition without RST/FIN). New connections
    /// are accepted and stall too. Bytes read before it was switched on are
    /// still delivered; bytes not yet read are delivered when it is
    /// switched off.
    pub fn half_open(&self, on: bool) {
        self.shared.half_open.store(on, Ordering::SeqCst);
    }

    /// While on, the connections open now forward nothing in either
    /// direction (their bytes wait, as with `half_open`); connections
    /// accepted later flow normally. Switched off, the held bytes are
    /// delivered: a dropped connection's last command can reach the server
    /// after its successor's.
    pub fn freeze_current(&self, on: bool) {
        let below = if on { self.shared.next_conn_id.load(Ordering::SeqCst) } else { 0 };
        self.shared.frozen_below.store(below, Ordering::SeqCst);
    }

    /// Connections accepted from now on forward client→server bytes until a
    /// read chunk contains `pattern`; that chunk and everything after it
    /// wait until [`Self::release`]. (`held()` tells when one waits.)
    pub fn hold_new_at(&self, pattern: &[u8]) {
        let first = self.shared.next_conn_id.load(Ordering::SeqCst);
        *self.shared.hold.lock().unwrap_or_else(|e| e.into_inner()) = Some((pattern.to_vec(), first));
    }

    /// Undoes [`Self::hold_new_at`]: held bytes are delivered.
    pub fn release(&self) {
        *self.shared.hold.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// How many connections have a chunk held by [`Self::hold_new_at`].
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::SeqCst)
    }

    /// Connections currently open through the proxy.
    pub fn open_connections(&self) -> usize {
        self.shared.conns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Closes every current connection now (both sides see EOF). New
    /// connections are accepted as usual.
    pub fn cut_all(&self) {
        self.shared.cut_all();
    }

    /// How many client connections the proxy has accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.cut_all();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let threads = std::mem::take(&mut *self.shared.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("connections", &self.connections())
            .finish()
    }
}

fn accept_loop(listener: TcpListener, upstream: String, shared: Arc<ProxyShared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(PROXY_TICK);
                continue;
            }
            Err(_) => {
                thread::sleep(PROXY_TICK);
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let server = upstream
            .parse::<SocketAddr>()
            .map_err(io::Error::other)
            .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)));
        let Ok(server) = server else {
            // Upstream down: the client sees its connection closed.
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        if let Err(e) = start_pumps(client, server, &shared) {
            eprintln!("proxy: could not set up a connection: {e}");
        }
    }
}

fn start_pumps(client: TcpStream, server: TcpStream, shared: &Arc<ProxyShared>) -> io::Result<()> {
    for s in [&client, &server] {
        s.set_nonblocking(false)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(PROXY_TICK))?;
        s.set_write_timeout(Some(PROXY_TICK))?;
    }
    let generation = shared.generation.load(Ordering::SeqCst);
    let id = shared.next_conn_id.fetch_add(1, Ordering::SeqCst);
    shared.conns.lock().unwrap_or_else(|e| e.into_inner()).push(ConnHandles {
        id,
        client: client.try_clone()?,
        server: server.try_clone()?,
    });
    let up = {
        let (from, to, shared) = (client.try_clone()?, server.try_clone()?, Arc::clone(shared));
        thread::Builder::new()
            .name("proxy-up".into())
            .spawn(move || pump(from, to, Direction::Up, id, generation, &shared))?
    };
    let down = {
        let shared = Arc::clone(shared);
        thread::Builder::new()
            .name("proxy-down".into())
            .spawn(move || pump(server, client, Direction::Down, id, generation, &shared))?
    };
    let mut threads = shared.threads.lock().unwrap_or_else(|e| e.into_inner());
    threads.retain(|t| !t.is_finished());
    threads.push(up);
    threads.push(down);
    // A cut that raced with the registration above.
    if shared.stopped(generation) {
        drop(threads);
        shared.cut_all();
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    /// client → server
    Up,
    /// server → client
    Down,
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    dir: Direction,
    id: u64,
    generation: u64,
    shared: &ProxyShared,
) {
    let mut buf = vec![0u8; 16 * 1024];
    'forward: loop {
        if shared.stopped(generation) {
            break;
        }
        if shared.half_open.load(Ordering::SeqCst) || id < shared.frozen_below.load(Ordering::SeqCst) {
            thread::sleep(PROXY_TICK);
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if is_retry(&e) => continue,
            Err(_) => break,
        };
        // Switched to half-open while this read was pending: hold the bytes.
        while shared.half_open.load(Ordering::SeqCst) || id < shared.frozen_below.load(Ordering::SeqCst) {
            if shared.stopped(generation) {
                break 'forward;
            }
            thread::sleep(PROXY_TICK);
        }
        let holds = |shared: &ProxyShared| {
            let hold = shared.hold.lock().unwrap_or_else(|e| e.into_inner());
            hold.as_ref().is_some_and(|(pattern, first)| {
                id >= *first && buf[..n].windows(pattern.len()).any(|w| w == pattern.as_slice())
            })
        };
        if dir == Direction::Up && holds(shared) {
            shared.held.fetch_add(1, Ordering::SeqCst);
            while holds(shared) && !shared.stopped(generation) {
                thread::sleep(PROXY_TICK);
            }
            shared.held.fetch_sub(1, Ordering::SeqCst);
        }
        match dir {
            Direction::Down => {
                if shared.drop_replies.load(Ordering::SeqCst) {
                    continue;
                }
                if write_all(&mut to, &buf[..n], || shared.stopped(generation)).is_err() {
                    break;
                }
            }
            Direction::Up => {
                let cut_at = {
                    let mut budget = shared.cut_budget.lock().unwrap_or_else(|e| e.into_inner());
                    match *budget {
                        Some(left) if (n as u64) >= left => {
                            *budget = None;
                            Some(left as usize)
                        }
                        Some(left) => {
                            *budget = Some(left - n as u64);
                            None
                        }
                        None => None,
                    }
                };
                if let Some(last) = cut_at {
                    // Stop every other pump first, so no reply to these
                    // last bytes can reach a client; then deliver them and
                    // close everything.
                    shared.generation.fetch_add(1, Ordering::SeqCst);
                    let _ = write_all(&mut to, &buf[..last], || shared.stop.load(Ordering::SeqCst));
                    shared.cut_all();
                    break;
                }
                if write_all(&mut to, &buf[..n], || shared.stopped(generation)).is_err() {
                    break;
                }
            }
        }
    }
    // Closing one direction ends the connection: shut down both sockets so
    // the other pump and both peers notice.
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    shared.forget(id);
}

fn is_retry(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted)
}

/// `write_all` that gives up once `cancelled()` (a plain one could block
/// forever on a peer that stopped reading).
fn write_all(to: &mut TcpStream, mut data: &[u8], cancelled: impl Fn() -> bool) -> io::Result<()> {
    while !data.is_empty() {
        if cancelled() {
            return Err(io::Error::other("proxy connection closed"));
        }
        match to.write(data) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => data = &data[n..],
            Err(e) if is_retry(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
