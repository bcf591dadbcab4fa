//! Tests of the test support itself (`tests/it/harness`): private redis-server
//! processes and the fault-injecting proxy. No tradecache code involved.

use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{Proxy, RedisServer};

fn connect(addr: &str) -> redis::Connection {
    let con = redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    con.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    con.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    con
}

fn ping(con: &mut redis::Connection) -> redis::RedisResult<String> {
    redis::cmd("PING").query::<String>(con)
}

/// Polls `cond` until it holds; panics with `what` if it never does.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn starts_answers_and_cleans_up() {
    let server = RedisServer::start();
    assert_eq!(server.addr(), format!("127.0.0.1:{}", server.port()));
    assert!(server.is_running());
    assert_eq!(ping(&mut server.client()).unwrap(), "PONG");
    assert_eq!(ping(&mut connect(&server.addr())).unwrap(), "PONG");
    let mut con = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    assert_eq!(ping(&mut con).unwrap(), "PONG");
    let config: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("appendonly").query(&mut con).unwrap();
    assert_eq!(config, vec!["appendonly".to_string(), "yes".to_string()]);

    let (dir, pid) = (server.dir().to_path_buf(), server.pid());
    assert!(dir.is_dir());
    drop(server);
    assert!(!dir.exists(), "the temp dir is removed on drop");
    // SAFETY: signal 0 only checks whether the pid exists.
    let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    assert!(!alive, "redis-server {pid} still exists after drop");
}

#[test]
fn password_and_extra_args() {
    let server = RedisServer::builder().password("s3cret:/@").arg("maxmemory", "10mb").start();
    let mut con = server.client();
    assert_eq!(ping(&mut con).unwrap(), "PONG");
    let mm: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("maxmemory").query(&mut con).unwrap();
    assert_eq!(mm[1], (10 * 1024 * 1024).to_string());
    let mut via_url = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    assert_eq!(ping(&mut via_url).unwrap(), "PONG");
    let err = ping(&mut connect(&server.addr())).unwrap_err();
    assert!(err.to_string().contains("NOAUTH"), "{err}");
}

#[test]
fn kill_and_restart_keep_aof_data() {
    let mut server = RedisServer::builder().appendfsync("always").start();
    let port = server.port();
    let old_pid = server.pid();
    let mut con = server.client();
    for i in 0..100 {
        let _: () = redis::cmd("RPUSH").arg("list").arg(i).query(&mut con).unwrap();
    }
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    server.kill();
    assert!(!server.is_running());
    assert!(ping(&mut con).is_err(), "the old connection is dead");

    server.restart();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), old_pid);
    let mut con = server.client();
    let v: Option<String> = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    let len: usize = redis::cmd("LLEN").arg("list").query(&mut con).unwrap();
    assert_eq!(len, 100);

    // A graceful stop then restart keeps it too.
    server.stop();
    assert!(!server.is_running());
    server.restart();
    let len: usize = redis::cmd("LLEN").arg("list").query(&mut server.client()).unwrap();
    assert_eq!(len, 100);
}

#[test]
fn pause_and_resume() {
    let server = RedisServer::start();
    let mut con = server.client();
    con.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    server.pause();
    assert!(server.is_running() && server.is_paused());
    let err = ping(&mut con).unwrap_err();
    assert!(err.is_timeout(), "expected a timeout, got {err}");
    server.resume();
    assert!(!server.is_paused());
    // The connection that timed out may hold a stale reply; use a new one.
    assert_eq!(ping(&mut server.client()).unwrap(), "PONG");
}

#[test]
fn dropping_a_paused_server_kills_it() {
    let server = RedisServer::start();
    let pid = server.pid();
    server.pause();
    drop(server);
    // SAFETY: signal 0 only checks whether the pid exists.
    let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    assert!(!alive, "paused redis-server {pid} survived drop");
}

#[test]
fn proxy_forwards() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let mut con = connect(&proxy.addr());
    assert_eq!(ping(&mut con).unwrap(), "PONG");
    let _: () = redis::cmd("SET").arg("k").arg("through-proxy").query(&mut con).unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut server.client()).unwrap();
    assert_eq!(v, "through-proxy");
    let _second = connect(&proxy.addr());
    assert_eq!(proxy.connections(), 2);
}

#[test]
fn proxy_drop_replies_times_out_but_the_write_lands() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let mut con = connect(&proxy.addr());
    assert_eq!(ping(&mut con).unwrap(), "PONG");
    con.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    proxy.drop_replies(true);
    let err = redis::cmd("SET").arg("k").arg("v").query::<()>(&mut con).unwrap_err();
    assert!(err.is_timeout(), "expected a timeout, got {err}");
    let mut direct = server.client();
    eventually("the SET reaches the server", || {
        redis::cmd("GET").arg("k").query::<Option<String>>(&mut direct).unwrap().as_deref() == Some("v")
    });
    proxy.drop_replies(false);
    assert_eq!(ping(&mut connect(&proxy.addr())).unwrap(), "PONG");
}

#[test]
fn proxy_cut_after_upstream_bytes() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let mut con = connect(&proxy.addr());
    assert_eq!(ping(&mut con).unwrap(), "PONG");

    // Exactly the first command of a two-command pipeline gets through.
    let first = redis::cmd("SET").arg("a").arg("1").get_packed_command();
    proxy.cut_after_upstream_bytes(first.len() as u64);
    let result =
        redis::pipe().cmd("SET").arg("a").arg("1").cmd("SET").arg("b").arg("2").query::<()>(&mut con);
    let err = result.unwrap_err();
    assert!(err.is_connection_dropped() || err.is_io_error(), "expected a dropped connection, got {err}");

    let mut direct = server.client();
    eventually("the first SET lands", || {
        redis::cmd("GET").arg("a").query::<Option<String>>(&mut direct).unwrap().is_some()
    });
    let b: Option<String> = redis::cmd("GET").arg("b").query(&mut direct).unwrap();
    assert_eq!(b, None, "bytes past the cut never reach the server");

    // New connections work again.
    assert_eq!(ping(&mut connect(&proxy.addr())).unwrap(), "PONG");
}

#[test]
fn proxy_cut_all_and_half_open() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let mut con = connect(&proxy.addr());
    assert_eq!(ping(&mut con).unwrap(), "PONG");
    proxy.cut_all();
    assert!(ping(&mut con).is_err(), "a cut connection fails");
    let mut con = connect(&proxy.addr());
    assert_eq!(ping(&mut con).unwrap(), "PONG");

    proxy.half_open(true);
    con.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let err = redis::cmd("SET").arg("h").arg("1").query::<()>(&mut con).unwrap_err();
    assert!(err.is_timeout(), "expected a timeout, got {err}");
    let mut direct = server.client();
    let h: Option<String> = redis::cmd("GET").arg("h").query(&mut direct).unwrap();
    assert_eq!(h, None, "nothing is forwarded while half-open");
    proxy.half_open(false);
    eventually("the held SET is delivered once the partition heals", || {
        redis::cmd("GET").arg("h").query::<Option<String>>(&mut direct).unwrap().is_some()
    });
}

#[test]
fn proxy_to_a_dead_upstream_closes_the_client() {
    let proxy = Proxy::start(format!("127.0.0.1:{}", crate::harness::free_port()));
    let result = redis::Client::open(format!("redis://{}/", proxy.addr()))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .and_then(|mut con| ping(&mut con));
    assert!(result.is_err());
    assert_eq!(proxy.connections(), 1);
}
