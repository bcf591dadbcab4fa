//! Server-side faults against a real redis-server: each must keep the hot
//! path unblocked, surface the problem in `health()`, lose and duplicate
//! nothing, and resume by itself once the server recovers.

use std::time::Duration;

use crate::harness::*;
use tradecache::{Cache, ErrorKind};

/// Writing goes on after the fault without the caller doing anything.
fn assert_resumes(cache: &Cache) {
    let seq = cache.put(&Counter { id: "after".into(), value: 1 }).expect("accepted after the fault");
    cache.wait(seq, Duration::from_secs(30)).expect("a write after the fault is acknowledged");
}

/// Retried with backoff, not in a busy loop: at most `max` more errors of
/// `class` in half a second.
fn assert_backs_off(cache: &Cache, class: &str, max: u64) {
    let before = cache.stats().error_count(class);
    std::thread::sleep(ms(500));
    let retries = cache.stats().error_count(class) - before;
    assert!(retries <= max, "{retries} {class} retries in 500 ms: a busy loop");
}

fn info(con: &mut redis::Connection, section: &str) -> String {
    redis::cmd("INFO").arg(section).query(con).expect("INFO")
}

fn info_field(con: &mut redis::Connection, section: &str, field: &str) -> Option<String> {
    let text = info(con, section);
    text.lines().find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')).map(str::to_string))
}

#[test]
fn stalled_server_sigstop_then_sigcont() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1").response_timeout(ms(200))).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    server.pause();
    // The hot path keeps accepting while the flusher times out.
    for i in 2..=1_000 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    wait_until("the flusher to notice the stall", Duration::from_secs(10), || {
        cache.stats().error_count("timeout") > 0
    });
    let during = cache.health();
    assert!(!during.connected || during.backlog > 0);
    server.resume();
    cache.flush(Duration::from_secs(30)).unwrap();
    let got = ticks(&mut server.client(), "T1", "A");
    matrix_row("Redis stalled (SIGSTOP), then SIGCONT", &health_cell(&during), &got, 1_000);
    assert!(cache.health().is_healthy(), "{:?}", cache.health());
    assert_resumes(&cache);
}

#[test]
fn out_of_memory_is_backpressure_then_resumes() {
    let server = RedisServer::builder().arg("maxmemory-policy", "noeviction").start();
    let mut admin = server.client();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("1").query(&mut admin).unwrap();
    for i in 2..=500 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    wait_until("OOM in health()", Duration::from_secs(10), || {
        cache.health().last_error_class == Some(ErrorKind::Oom)
    });
    let health = cache.health();
    assert!(health.backpressure.as_deref().unwrap_or("").contains("oom"), "{health:?}");
    assert!(!health.is_healthy());
    assert_backs_off(&cache, "oom", 50);
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("0").query(&mut admin).unwrap();
    cache.flush(Duration::from_secs(30)).unwrap();
    let got = ticks(&mut admin, "T1", "A");
    matrix_row("OOM (maxmemory reached, noeviction), then raised", &health_cell(&health), &got, 500);
    assert!(cache.health().backpressure.is_none(), "{:?}", cache.health());
    assert_resumes(&cache);
}

/// Small batches, so one is queued behind the other when Redis starts
/// refusing: the refused batch is retried first and the one queued behind
/// it is discarded (`DISCARD`) and sent after it, never applied out of
/// order.
#[test]
fn out_of_memory_with_a_batch_queued_behind() {
    let server = RedisServer::builder().arg("maxmemory-policy", "noeviction").start();
    let mut admin = server.client();
    let cache = Cache::open(config(server.port(), "T1").max_batch(10)).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("1").query(&mut admin).unwrap();
    for i in 2..=500 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    wait_until("several OOM retries", Duration::from_secs(10), || cache.stats().error_count("oom") >= 3);
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("0").query(&mut admin).unwrap();
    cache.flush(Duration::from_secs(30)).unwrap();
    assert_exactly_once(&ticks(&mut admin, "T1", "A"), 500);
    assert_eq!(cache.stats().reconnects, 0, "{:?}", cache.stats());
    // The queued batch was thrown away on the server, not left to apply.
    let discards = info_field(&mut admin, "commandstats", "cmdstat_discard").unwrap_or_default();
    assert!(discards.starts_with("calls=") && !discards.starts_with("calls=0"), "{discards:?}");
    assert_resumes(&cache);
}

/// The same with `replica_wait`: an aborted transaction is followed by its
/// `WAIT`'s reply, which must be read too, or every later reply on the
/// connection would be taken for the one before it.
#[test]
fn out_of_memory_with_replica_wait_then_resumes() {
    let master = RedisServer::builder().arg("maxmemory-policy", "noeviction").start();
    let replica = RedisServer::start();
    let mut admin = master.client();
    let mut rcon = replica.client();
    replicaof(&mut rcon, Some(master.port()));
    wait_link_up(&mut rcon);
    let cfg = config(master.port(), "T1").replica_wait(Some((1, ms(500))));
    let cache = Cache::open(cfg).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(10)).unwrap();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("1").query(&mut admin).unwrap();
    for i in 2..=300 {
        cache.append("A", &Tick { n: i }).unwrap();
        cache.put(&Counter { id: "A".into(), value: i }).unwrap();
    }
    wait_until("OOM in health()", Duration::from_secs(10), || {
        cache.health().last_error_class == Some(ErrorKind::Oom)
    });
    // A few refused retries, each with its WAIT reply behind it.
    wait_until("several OOM retries", Duration::from_secs(10), || cache.stats().error_count("oom") >= 3);
    let health = cache.health();
    assert!(health.backpressure.as_deref().unwrap_or("").contains("oom"), "{health:?}");
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("0").query(&mut admin).unwrap();
    cache.flush(Duration::from_secs(30)).unwrap();
    assert_exactly_once(&ticks(&mut admin, "T1", "A"), 300);
    assert_eq!(counter(&mut admin, "T1", "A").unwrap().value, 300);
    // Acknowledged means on the replica too.
    wait_until("the replica to have every tick", Duration::from_secs(10), || {
        ticks(&mut rcon, "T1", "A").len() == 300
    });
    assert_exactly_once(&ticks(&mut rcon, "T1", "A"), 300);
    let stats = cache.stats();
    assert_eq!(stats.reconnects, 0, "the connection stayed usable: {stats:?}");
    assert!(cache.health().is_healthy(), "{:?}", cache.health());
    assert_resumes(&cache);
}

#[test]
fn password_changed_at_run_time() {
    let server = RedisServer::builder().password("old-secret").start();
    let mut admin = server.client();
    let cache = Cache::open(config(server.port(), "T1").password("old-secret")).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("new-secret").query(&mut admin).unwrap();
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query(&mut admin)
        .unwrap();
    for i in 2..=100 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    wait_until("auth failure in health()", Duration::from_secs(10), || {
        cache.health().last_error_class == Some(ErrorKind::Auth)
    });
    let during = cache.health();
    assert!(during.backpressure.as_deref().unwrap_or("").starts_with("auth"), "{during:?}");
    assert_backs_off(&cache, "auth", 50);
    let text = format!("{:?} {:?}", cache.health(), cache.stats());
    assert!(!text.contains("old-secret") && !text.contains("new-secret"), "{text}");
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("old-secret").query(&mut admin).unwrap();
    cache.flush(Duration::from_secs(30)).unwrap();
    let got = ticks(&mut admin, "T1", "A");
    matrix_row("password changed at run time, then restored", &health_cell(&during), &got, 100);
    assert_resumes(&cache);
}

#[test]
fn loading_after_restart_is_waited_out() {
    let mut server = RedisServer::builder()
        .appendfsync("always")
        .arg("key-load-delay", "200")
        .arg("loading-process-events-interval-bytes", "1024")
        .start();
    let mut admin = server.client();
    // A large enough AOF that loading it takes a while.
    for chunk in 0..30 {
        let mut pipe = redis::pipe();
        for i in 0..100 {
            pipe.cmd("SET").arg(format!("bulk:{chunk}:{i}")).arg("x").ignore();
        }
        let _: () = pipe.query(&mut admin).unwrap();
    }
    let _: () = redis::cmd("BGREWRITEAOF").query(&mut admin).unwrap();
    drop(admin);
    std::thread::sleep(ms(500));
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    server.kill();
    server.restart(); // returns while the server still answers LOADING
    for i in 2..=100 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    wait_until("LOADING in health()", Duration::from_secs(30), || cache.stats().error_count("busy") >= 1);
    let during = cache.health();
    cache.flush(Duration::from_secs(60)).unwrap();
    let got = ticks(&mut server.client(), "T1", "A");
    let stats = cache.stats();
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert!(stats.error_count("busy") >= 1, "LOADING was met and waited out: {stats:?}");
    matrix_row("LOADING after a restart (slow AOF load)", &health_cell(&during), &got, 100);
    assert_resumes(&cache);
}

fn replicaof(con: &mut redis::Connection, master: Option<u16>) {
    let mut cmd = redis::cmd("REPLICAOF");
    match master {
        Some(port) => cmd.arg("127.0.0.1").arg(port),
        None => cmd.arg("NO").arg("ONE"),
    };
    let _: () = cmd.query(con).expect("REPLICAOF");
}

fn wait_link_up(con: &mut redis::Connection) {
    wait_until("the replication link", Duration::from_secs(20), || {
        info_field(con, "replication", "master_link_status").as_deref() == Some("up")
    });
}

fn marker(con: &mut redis::Connection) -> Option<String> {
    redis::cmd("GET").arg("trader-T1:writer:main").query(con).expect("GET marker")
}

/// A manual failover and back while the cache stays pointed at A: B
/// replicates A and is promoted, A follows B (the cache now gets
/// `READONLY`, reconnects and backs off), then A is made master again (it
/// has everything, through B) and writing resumes by itself.
#[test]
fn readonly_after_replicaof_then_back() {
    // No 5 s wait before a full sync (the default for diskless sync).
    let server = || RedisServer::builder().arg("repl-diskless-sync-delay", "0").start();
    let (a, b) = (server(), server());
    let (mut ca, mut cb) = (a.client(), b.client());
    replicaof(&mut cb, Some(a.port()));
    wait_link_up(&mut cb);
    let cache = Cache::open(config(a.port(), "T1")).unwrap();
    for i in 1..=100 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    cache.flush(Duration::from_secs(5)).unwrap();

    // Failover: B has caught up (same commit marker), is promoted, A follows.
    let applied = marker(&mut ca);
    wait_until("B to catch up", Duration::from_secs(10), || marker(&mut cb) == applied);
    replicaof(&mut cb, None);
    replicaof(&mut ca, Some(b.port()));
    wait_link_up(&mut ca);

    for i in 101..=300 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    wait_until("READONLY in health()", Duration::from_secs(10), || {
        cache.health().last_error_class == Some(ErrorKind::ReadOnly)
    });
    let during = cache.health();
    assert!(during.backlog > 0, "{during:?}");
    assert!(
        during.last_error.as_deref().unwrap_or("").to_lowercase().contains("read only replica"),
        "{during:?}"
    );
    assert_backs_off(&cache, "readonly", 50);
    assert!(cache.stats().reconnects >= 1, "READONLY makes the flusher reconnect: {:?}", cache.stats());

    // Back: A is master again and B follows it.
    replicaof(&mut ca, None);
    replicaof(&mut cb, Some(a.port()));
    cache.flush(Duration::from_secs(30)).unwrap();
    let got = ticks(&mut ca, "T1", "A");
    matrix_row(
        "READONLY: REPLICAOF pointed elsewhere (manual failover), then back",
        &health_cell(&during),
        &got,
        300,
    );
    assert_resumes(&cache);
}

/// `MISCONF`: the last background save failed (its directory vanished)
/// and `stop-writes-on-bgsave-error` refuses writes until a save works.
#[test]
fn misconf_when_persistence_fails_then_resumes() {
    let server = RedisServer::builder()
        .appendonly(false)
        .arg("enable-protected-configs", "yes")
        .arg("stop-writes-on-bgsave-error", "yes")
        .start();
    let mut admin = server.client();
    // MISCONF needs save points (the test server starts with none).
    let _: () = redis::cmd("CONFIG").arg("SET").arg("save").arg("3600 1").query(&mut admin).unwrap();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();

    let gone = server.dir().join("gone");
    std::fs::create_dir(&gone).unwrap();
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("dir").arg(gone.to_str().unwrap()).query(&mut admin).unwrap();
    std::fs::remove_dir(&gone).unwrap();
    bgsave(&mut admin, "err");

    for i in 2..=200 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    wait_until("MISCONF in health()", Duration::from_secs(10), || {
        cache.health().last_error_class == Some(ErrorKind::Misconf)
    });
    let during = cache.health();
    assert!(during.backpressure.as_deref().unwrap_or("").starts_with("misconf"), "{during:?}");
    assert!(!during.is_healthy() && during.backlog > 0, "{during:?}");
    assert_backs_off(&cache, "misconf", 50);

    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("dir")
        .arg(server.dir().to_str().unwrap())
        .query(&mut admin)
        .unwrap();
    bgsave(&mut admin, "ok");
    cache.flush(Duration::from_secs(30)).unwrap();
    let got = ticks(&mut admin, "T1", "A");
    matrix_row("MISCONF: background save fails, then a save works", &health_cell(&during), &got, 200);
    assert!(cache.health().backpressure.is_none(), "{:?}", cache.health());
    assert_resumes(&cache);
}

/// Runs `BGSAVE` and waits for it to finish with `status` (`ok`/`err`).
fn bgsave(con: &mut redis::Connection, status: &str) {
    wait_until("no save in progress", Duration::from_secs(10), || {
        info_field(con, "persistence", "rdb_bgsave_in_progress").as_deref() == Some("0")
    });
    let _: redis::Value = redis::cmd("BGSAVE").query(con).expect("BGSAVE");
    wait_until("BGSAVE to finish", Duration::from_secs(20), || {
        info_field(con, "persistence", "rdb_bgsave_in_progress").as_deref() == Some("0")
            && info_field(con, "persistence", "rdb_last_bgsave_status").as_deref() == Some(status)
    });
}

/// Redis goes away after `open` (not running any more): writes are still
/// accepted, health says disconnected with an I/O error, and once Redis is
/// back (from its AOF) everything lands exactly once.
#[test]
fn redis_gone_after_open_then_back() {
    let mut server = RedisServer::builder().appendfsync("always").start();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    server.stop();
    for i in 2..=300 {
        cache.append("A", &Tick { n: i }).unwrap();
    }
    wait_until("the outage in health()", Duration::from_secs(10), || {
        let h = cache.health();
        !h.connected && h.last_error_class.is_some()
    });
    let during = cache.health();
    assert!(matches!(during.last_error_class, Some(ErrorKind::Io | ErrorKind::Timeout)), "{during:?}");
    assert_eq!(during.backlog, 299, "{during:?}");
    assert!(during.flusher_running && !during.is_healthy());
    server.restart();
    cache.flush(Duration::from_secs(30)).unwrap();
    let got = ticks(&mut server.client(), "T1", "A");
    matrix_row("Redis stopped after open (SIGTERM), restarted later", &health_cell(&during), &got, 300);
    assert!(cache.health().is_healthy(), "{:?}", cache.health());
    assert_resumes(&cache);
}
