//! Sentinel: the master is found through the sentinels, a failover is
//! followed without the engine doing anything, and with `replica_wait` no
//! acknowledged write is lost when the master dies.
//!
//! Topology: a master, two replicas and three sentinels (quorum 2) on
//! loopback. Two replicas, because `replica_wait(1)` must still be
//! satisfiable once the old master is gone and one replica has become the
//! new master.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::harness::topology::{acl_rule, acl_setuser, connect, wait_until, SentinelSetup, TOPOLOGY_TIMEOUT};
use crate::harness::*;
use tradecache::{Cache, Config, ErrorKind, OverflowPolicy};

/// A config that finds the master through `setup`'s sentinels.
fn sentinel_config(setup: &SentinelSetup, trader: &str) -> Config {
    config(1, trader)
        .sentinels(setup.sentinel_addrs())
        .sentinel_master(&setup.name)
        .overflow(OverflowPolicy::Block { timeout: Duration::from_secs(60) })
}

/// The stored ticks are 1, 2, …, k with no gap or repeat; returns k.
fn assert_prefix(got: &[u64]) -> u64 {
    for (i, v) in got.iter().enumerate() {
        assert_eq!(*v, i as u64 + 1, "tick {i} is {v}: a gap or a duplicate ({} stored)", got.len());
    }
    got.len() as u64
}

#[test]
fn failover_is_followed_and_loses_no_acknowledged_write() {
    let mut setup = SentinelSetup::start(2);
    let old = setup.servers[0].port();
    let cfg = sentinel_config(&setup, "S1").replica_wait(Some((1, ms(200))));
    let cache = Arc::new(Cache::open(cfg).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let w = tick_writer(cache.clone(), stop.clone());
    wait_until(
        "2000 acknowledged writes",
        TOPOLOGY_TIMEOUT,
        || cache.acked_seq().get() >= 2000,
        || format!("{:?} {:?}", cache.stats(), cache.health()),
    );

    // Point reads find the master through the sentinels too (this opens
    // the read connection on the old master).
    assert!(cache.get::<Counter>("A").unwrap().is_some());
    // Every write acknowledged so far is on a replica (WAIT 1): the master
    // may die now.
    let acked_at_kill = cache.acked_seq().get();
    setup.kill_and_hold(old);
    let new = setup.wait_failover(old);
    assert_ne!(new, old);

    // The promoted replica holds every tick acknowledged before the kill.
    let held = assert_prefix(&ticks(&mut connect(new), "S1", "A"));
    assert!(
        held >= acked_at_kill.div_ceil(2),
        "{held} ticks on the new master; {acked_at_kill} seqs were acked"
    );

    // Writing resumes on the new master by itself.
    let resumed_from = cache.acked_seq().get().max(acked_at_kill);
    wait_until(
        "writes acknowledged by the new master",
        TOPOLOGY_TIMEOUT,
        || cache.acked_seq().get() >= resumed_from + 2000,
        || format!("{:?} {:?}\n{}", cache.stats(), cache.health(), setup.describe()),
    );
    stop.store(true, Ordering::SeqCst);
    let n = w.join().unwrap();
    cache.flush(TOPOLOGY_TIMEOUT).unwrap();

    let mut con = connect(new);
    assert_exactly_once(&ticks(&mut con, "S1", "A"), n);
    assert_eq!(counter(&mut con, "S1", "A").map(|c| c.value), Some(n));
    // The read connection to the dead master is replaced by one to the new.
    assert_eq!(cache.get::<Counter>("A").unwrap().map(|c| c.value), Some(n));
    let stats = cache.stats();
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert!(cache.health().connected, "{:?}", cache.health());
    Arc::into_inner(cache).expect("the writer is done").close(Duration::from_secs(10)).unwrap();
}

/// Writes ticks 1..=100 (acknowledged with the replicas attached), cuts
/// both replicas off from the master, writes ticks 101..=200, kills the
/// master and lets the sentinels promote a replica. With `wait`, the cache
/// uses `replica_wait(1)`.
fn cut_off_replicas_then_fail_over(wait: bool) {
    let mut setup = SentinelSetup::start(2);
    let old = setup.servers[0].port();
    let trader = if wait { "W1" } else { "W0" };
    let cfg = sentinel_config(&setup, trader).replica_wait(wait.then_some((1, ms(100))));
    let cache = Cache::open(cfg).unwrap();
    for n in 1..=100 {
        cache.append("A", &Tick { n }).unwrap();
    }
    cache.flush(Duration::from_secs(10)).unwrap();
    setup.wait_replicas(old, 2);

    // Cut both replicas off: they keep their data, but cannot get back
    // in (a wrong `masterauth`), so the master's stream stops at them.
    for s in &setup.servers[1..] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("masterauth")
            .arg("wrong")
            .query(&mut connect(s.port()))
            .unwrap();
    }
    let _: u64 =
        redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("replica").query(&mut connect(old)).unwrap();
    wait_until(
        "the replicas to be cut off",
        TOPOLOGY_TIMEOUT,
        || {
            crate::harness::topology::info(old, "replication").get("connected_slaves").map(String::as_str)
                == Some("0")
        },
        || setup.describe(),
    );
    for n in 101..=200 {
        cache.append("A", &Tick { n }).unwrap();
    }
    if wait {
        // The master applies the first of these batches, but no replica
        // confirms it: nothing more is acknowledged.
        wait_until(
            "the master to apply a batch",
            TOPOLOGY_TIMEOUT,
            || ticks(&mut connect(old), trader, "A").len() > 100,
            || format!("{:?}", cache.stats()),
        );
        thread::sleep(ms(500));
        assert_eq!(cache.acked_seq().get(), 100, "acknowledged with no replica: {:?}", cache.stats());
    } else {
        cache.flush(Duration::from_secs(10)).unwrap();
    }
    let acked_before = cache.acked_seq().get();

    setup.kill_and_hold(old);
    for s in &setup.servers[1..] {
        let _: () =
            redis::cmd("CONFIG").arg("SET").arg("masterauth").arg("").query(&mut connect(s.port())).unwrap();
    }
    let new = setup.wait_failover(old);
    cache.flush(TOPOLOGY_TIMEOUT).unwrap();
    let got = ticks(&mut connect(new), trader, "A");
    if wait {
        assert_exactly_once(&got, 200);
        assert!(cache.stats().replays >= 1, "{:?}", cache.stats());
    } else {
        // Ticks 101..=200 were acknowledged, but only the dead master
        // had them.
        assert_eq!(acked_before, 200);
        assert_prefix(&got);
        assert_eq!(got.len(), 100, "without replica_wait the failover lost acknowledged ticks 101..=200");
    }
    cache.close(Duration::from_secs(10)).unwrap();
}

/// With the replicas cut off, nothing more is acknowledged under
/// `replica_wait`; when the master dies, the batches it had applied alone
/// are written again to the promoted replica, exactly once.
#[test]
fn replica_wait_acknowledges_only_what_a_replica_has() {
    cut_off_replicas_then_fail_over(true);
}

/// Without `replica_wait`, the same writes are acknowledged by the master
/// alone and the failover loses them: the risk docs/deployment.md describes.
#[test]
fn without_replica_wait_a_failover_loses_unreplicated_acknowledged_writes() {
    cut_off_replicas_then_fail_over(false);
}

/// `REDIS_SENTINELS` / `REDIS_SENTINEL_MASTER`, an ACL user through Sentinel;
/// a sentinel that is down, or a master name the sentinels do not know,
/// are handled.
#[test]
fn sentinel_variables_and_dead_sentinels() {
    let setup = SentinelSetup::start(1);
    let master = setup.servers[0].port();
    // The first sentinel listed is down: the next ones answer.
    let list = format!("127.0.0.1:{},{}", crate::harness::free_port(), setup.sentinel_list());
    let vars: HashMap<&str, String> = HashMap::from([
        ("REDIS_SENTINELS", list.clone()),
        ("REDIS_SENTINEL_MASTER", setup.name.clone()),
        ("REDIS_TIMEOUT", "1".to_string()),
        ("CACHE_TRADER_ID", "SV1".to_string()),
        ("CACHE_REPLICA_WAIT", "1".to_string()),
        ("CACHE_REPLICA_WAIT_TIMEOUT_MS", "200".to_string()),
    ]);
    let cache = Cache::open(Config::from_vars(|k| vars.get(k).cloned()).unwrap()).unwrap();
    for n in 1..=10 {
        cache.append("A", &Tick { n }).unwrap();
    }
    cache.flush(Duration::from_secs(10)).unwrap();
    assert_exactly_once(&ticks(&mut connect(master), "SV1", "A"), 10);
    cache.close(Duration::from_secs(5)).unwrap();

    // An ACL user (defined on the data nodes, not the sentinels) needs the
    // docs/deployment.md's rule plus `ROLE`, which checks that the server the
    // sentinels named is a master.
    for s in &setup.servers {
        acl_setuser(s.port(), "trader", &acl_rule("sentinel-pw-1", "trader-SV2:*", "+role"));
        acl_setuser(s.port(), "norole", &acl_rule("sentinel-pw-2", "trader-SV2:*", ""));
    }
    let user = |name: &str, pw: &str| {
        sentinel_config(&setup, "SV2").username(name).password(pw).replica_wait(Some((1, ms(200))))
    };
    let cache = Cache::open(user("trader", "sentinel-pw-1").flush_on_start(true)).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(10)).unwrap();
    assert_exactly_once(&ticks(&mut connect(master), "SV2", "A"), 1);
    cache.close(Duration::from_secs(5)).unwrap();
    let err = Cache::open(user("norole", "sentinel-pw-2")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(err.to_string().contains("role"), "{err}");

    // A master name no sentinel knows fails `open` and says so.
    let vars: HashMap<&str, String> = HashMap::from([
        ("REDIS_SENTINELS", setup.sentinel_list()),
        ("REDIS_SENTINEL_MASTER", "nosuchmaster".to_string()),
        ("CACHE_CONNECT_ATTEMPTS", "1".to_string()),
    ]);
    let err = Cache::open(Config::from_vars(|k| vars.get(k).cloned()).unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Discovery, "{err}");
    assert!(err.to_string().contains(r#"does not know master "nosuchmaster""#), "{err}");

    // No sentinel answering is a discovery failure naming each one.
    let (a, b) = (crate::harness::free_port(), crate::harness::free_port());
    let cfg = config(1, "SV1")
        .sentinels([("127.0.0.1", a), ("127.0.0.1", b)])
        .sentinel_master("m")
        .connect_attempts(1);
    let err = Cache::open(cfg).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Discovery, "{err}");
    for port in [a, b] {
        assert!(err.to_string().contains(&format!("sentinel 127.0.0.1:{port}: ")), "{err}");
    }
}
