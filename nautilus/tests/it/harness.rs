//! A private redis-server per test (free loopback port, temp dir, killed on
//! drop) and the Nautilus fixtures the tests share.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nautilus_common::{cache::CacheConfig, msgbus::database::DatabaseConfig};
use nautilus_core::UUID4;
use nautilus_model::identifiers::TraderId;
use tradecache_nautilus::TradecacheDatabase;

/// A redis-server of the test's own.
pub struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn redis_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("REDIS_SERVER_BIN").filter(|v| !v.is_empty()) {
        return p.into();
    }
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join("redis-server");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("redis-server")
}

impl Redis {
    /// Starts one (persistence off: the tests kill clients, not Redis).
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().expect("temp dir");
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            assert_ne!(port, 6379);
            let child = Command::new(redis_server_bin())
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is installed (scripts/ensure-redis)");
            let mut redis = Redis { child, port, _dir: tempfile::tempdir().unwrap() };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = redis.child.try_wait() {
                    break; // port taken: try another
                }
                if ping(port) {
                    redis._dir = dir;
                    return redis;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("redis-server did not start");
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A plain connection for checks that read or change Redis directly.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).unwrap().get_connection().unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// Nautilus's cache configuration for the test's Redis.
pub fn cache_config(port: u16) -> CacheConfig {
    CacheConfig {
        database: Some(DatabaseConfig {
            host: Some("127.0.0.1".into()),
            port: Some(port),
            connection_timeout: 5,
            response_timeout: 5,
            number_of_retries: 3,
            ..DatabaseConfig::default()
        }),
        save_market_data: true,
        ..CacheConfig::default()
    }
}

/// The trader of the tests.
pub fn trader() -> TraderId {
    TraderId::from("TESTER-001")
}

/// An adapter on the test's Redis.
pub fn open(port: u16) -> TradecacheDatabase {
    TradecacheDatabase::from_cache_config(trader(), UUID4::new(), &cache_config(port))
        .expect("open the adapter")
}

/// Runs a future of the trait's async loads.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

/// Waits (at most a minute) for a line equal to `want` on a child's
/// stdout, killing the child and failing the test otherwise.
pub fn wait_for_line(child: &mut std::process::Child, want: &str) {
    let out = child.stdout.take().expect("piped stdout");
    let want_owned = want.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = BufReader::new(out);
        let mut seen = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            match out.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Err(seen));
                    return;
                }
                // libtest may print "test name ... " on the same line first.
                Ok(_) if line.trim().ends_with(want_owned.as_str()) => {
                    let _ = tx.send(Ok(()));
                    // Keep draining so that the child never blocks on a full pipe.
                    let mut sink = Vec::new();
                    let _ = out.read_to_end(&mut sink);
                    return;
                }
                Ok(_) => seen.push_str(&line),
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(())) => {}
        Ok(Err(seen)) => panic!("the child ended before printing {want}; its output:\n{seen}"),
        Err(_) => {
            let _ = child.kill();
            panic!("the child did not print {want} within a minute");
        }
    }
}
