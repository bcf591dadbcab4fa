//! Private `redis-server` processes: each a child of the test binary on a
//! free loopback port with its own temporary directory, killed on drop.

use std::fs::{self, File};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
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
}

impl Default for RedisServerBuilder {
    fn default() -> Self {
        Self { appendonly: true, appendfsync: "everysec".to_string(), password: None, args: Vec::new() }
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

    /// Starts the server and waits until it answers `PING` (panics after
    /// [`START_TIMEOUT`], with the server's log).
    pub fn start(self) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("tradecache-redis-")
            .tempdir()
            .expect("create a temp dir for redis-server");
        let attempts = PORT_ATTEMPTS;
        let mut last_log = String::new();
        for _ in 0..attempts {
            let port = free_port();
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

pub(super) fn send_signal(pid: u32, sig: libc::c_int) {
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

pub(super) struct Probe {
    /// The reply to `PING`, e.g. `+PONG` or `-LOADING …`.
    pub(super) reply: String,
    /// `process_id` from `INFO server`, if it answered.
    pub(super) pid: Option<u32>,
}

/// `PING` and `INFO server` over a raw connection (after `AUTH` if a
/// password is given). The pid tells our server from another process that
/// holds the port.
pub(super) fn probe(port: u16, password: Option<&str>, timeout: Duration) -> io::Result<Probe> {
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
pub(super) fn spawn(cmd: Command) -> io::Result<Child> {
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
pub(super) fn spawn(mut cmd: Command) -> io::Result<Child> {
    cmd.spawn()
}
