//! Redis Cluster: each trader's keys share one hash-tag slot, so its
//! batches stay single transactions on the slot's master; `load()` and
//! `flush_on_start` run there too; a slot migration (`ASK`, then `MOVED`)
//! is followed with nothing lost or duplicated.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::harness::topology::{acl_rule, acl_setuser, connect, wait_until, Cluster, TOPOLOGY_TIMEOUT};
use crate::harness::*;
use tradecache::model::Position;
use tradecache::{Cache, Config, Ident, OverflowPolicy};

fn cluster_config(cluster: &Cluster, trader: &str) -> Config {
    config(1, trader)
        .cluster_nodes(cluster.seeds())
        .overflow(OverflowPolicy::Block { timeout: Duration::from_secs(60) })
}

/// The trader's hash tag, e.g. `{trader-C1}`.
fn tag(trader: &str) -> String {
    format!("{{trader-{trader}}}")
}

/// The stored ticks of `counters:{id}` of `trader`, read on `port`.
fn ticks_on(port: u16, trader: &str, id: &str) -> Vec<u64> {
    let raw: Vec<Vec<u8>> = redis::cmd("LRANGE")
        .arg(format!("{}:counters:{id}:events", tag(trader)))
        .arg(0)
        .arg(-1)
        .query(&mut connect(port))
        .expect("LRANGE");
    raw.iter().map(|b| rmp_serde::from_slice::<Tick>(b).expect("decode tick").n).collect()
}

/// One trader per master: `(trader, slot, owner port)`.
fn traders_on_every_master(cluster: &Cluster) -> Vec<(String, u16, u16)> {
    let mut by_owner = BTreeMap::new();
    for i in 0..1000 {
        let trader = format!("C{i}");
        let slot = cluster.keyslot(&tag(&trader));
        by_owner.entry(cluster.owner(slot)).or_insert((trader, slot));
        if by_owner.len() == cluster.nodes.len() {
            break;
        }
    }
    assert_eq!(
        by_owner.len(),
        cluster.nodes.len(),
        "no trader name for some master:\n{}",
        cluster.describe()
    );
    by_owner.into_iter().map(|(owner, (trader, slot))| (trader, slot, owner)).collect()
}

#[test]
fn traders_on_three_masters_write_load_and_flush_on_start() {
    let cluster = Cluster::start(3);
    let traders = traders_on_every_master(&cluster);
    let caches: Vec<Cache> = traders
        .iter()
        .map(|(t, _, _)| Cache::open(cluster_config(&cluster, t).flush_on_start(true)).unwrap())
        .collect();
    let mut orders = Vec::new();
    for (cache, (trader, _, _)) in caches.iter().zip(&traders) {
        orders.push(write_order_and_position(cache));
        for n in 1..=500 {
            cache.append("A", &Tick { n }).unwrap();
            cache.put(&Counter { id: "A".into(), value: n }).unwrap();
        }
        cache.put(&Counter { id: trader.clone(), value: 7 }).unwrap();
    }
    for cache in &caches {
        cache.flush(Duration::from_secs(10)).unwrap();
    }

    for ((cache, (trader, slot, owner)), order) in caches.iter().zip(&traders).zip(&orders) {
        // Everything of this trader sits in its slot on its master.
        assert_exactly_once(&ticks_on(*owner, trader, "A"), 500);
        let in_slot: u64 =
            redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(*slot).query(&mut connect(*owner)).unwrap();
        // counters A (+ events) and the trader's own, order (+ events),
        // position, three index sets, the open index of the counters and
        // of the positions, the closed index of the orders (O-1 is
        // canceled), the registry of collections and the commit marker.
        assert_eq!(in_slot, 14, "keys of {trader} in slot {slot}");
        let snap = cache.load().unwrap();
        assert_eq!(snap.orders, vec![order.clone()]);
        assert_eq!(snap.order_events[&Ident::new("O-1").unwrap()].len(), 2);
        assert_eq!(snap.positions, vec![Position::example("P-1")]);
        assert!(snap.report.is_clean(), "{:?}", snap.report);
        // Point reads on the slot's master.
        assert_eq!(cache.get::<Position>("P-1").unwrap(), Some(Position::example("P-1")));
        assert_eq!(cache.get_events::<Tick>("A").unwrap().len(), 500);
        let (counters, _) = cache.load_all::<Counter>().unwrap();
        assert_eq!(
            counters,
            vec![Counter { id: "A".into(), value: 500 }, Counter { id: trader.clone(), value: 7 }]
        );
        assert_eq!(cache.stats().dropped, 0, "{:?}", cache.stats());
    }
    // The masters each hold one trader's keys.
    for node in &cluster.nodes {
        let size: u64 = redis::cmd("DBSIZE").query(&mut connect(node.port())).unwrap();
        assert_eq!(size, 14, "keys on {}", node.addr());
    }

    // flush_on_start deletes the first trader's keys, and only those.
    let (first, first_slot, first_owner) = traders[0].clone();
    drop(caches);
    let again = Cache::open(cluster_config(&cluster, &first).flush_on_start(true)).unwrap();
    let snap = again.load().unwrap();
    assert!(snap.orders.is_empty() && snap.positions.is_empty(), "{snap:?}");
    let in_slot: u64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(first_slot)
        .query(&mut connect(first_owner))
        .unwrap();
    // What is left is the writer's commit marker (it carries the epoch)
    // and the registry of collections.
    assert_eq!(in_slot, 2);
    for (trader, _, owner) in &traders[1..] {
        assert_eq!(ticks_on(*owner, trader, "A").len(), 500, "{trader} untouched");
    }

    // REDIS_CLUSTER finds the same data.
    let (second, _, _) = &traders[1];
    let vars: HashMap<&str, String> =
        HashMap::from([("REDIS_CLUSTER", cluster.seed_list()), ("CACHE_TRADER_ID", second.clone())]);
    let from_env = Cache::open(Config::from_vars(|k| vars.get(k).cloned()).unwrap()).unwrap();
    assert_eq!(from_env.load().unwrap().orders, vec![orders[1].clone()]);

    // An ACL user (defined on every node) needs docs/deployment.md's rule with the
    // hash-tagged key pattern, plus `CLUSTER SLOTS` to find the owner.
    let (third, _, third_owner) = &traders[2];
    let rule = acl_rule("cluster-pw-1", &format!("{}:*", tag(third)), "+cluster|slots");
    for node in &cluster.nodes {
        acl_setuser(node.port(), "trader", &rule);
    }
    let user =
        cluster_config(&cluster, third).username("trader").password("cluster-pw-1").flush_on_start(true);
    let cache = Cache::open(user).unwrap();
    cache.put(&Counter { id: "U".into(), value: 1 }).unwrap();
    cache.append("U", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(cache.load_all::<Counter>().unwrap().0, vec![Counter { id: "U".into(), value: 1 }]);
    assert_eq!(ticks_on(*third_owner, third, "U"), vec![1]);
    assert_eq!(cache.stats().dropped, 0, "{:?}", cache.stats());
}

#[test]
fn slot_migration_under_writes_is_followed() {
    let cluster = Cluster::start(3);
    let (trader, slot, from) = traders_on_every_master(&cluster).remove(0);
    let to = cluster.nodes.iter().map(|n| n.port()).find(|p| *p != from).unwrap();
    let cache = Arc::new(Cache::open(cluster_config(&cluster, &trader)).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let w = tick_writer(cache.clone(), stop.clone());
    let progress = || format!("{:?} {:?}\n{}", cache.stats(), cache.health(), cluster.describe());
    wait_until("1000 acknowledged writes", TOPOLOGY_TIMEOUT, || cache.acked_seq().get() >= 1000, progress);

    // Migrating: move the keys one by one until a batch touches a moved key
    // and gets ASK (counted as "busy", retried on the same node).
    cluster.begin_migration(slot, from, to);
    let busy_before = cache.stats().error_count("busy");
    wait_until(
        "a batch to get ASK",
        TOPOLOGY_TIMEOUT,
        || {
            cluster.migrate_keys(slot, from, to, 1);
            thread::sleep(ms(50));
            cache.stats().error_count("busy") > busy_before
        },
        progress,
    );
    // Done: every key moved, the slot assigned to the target everywhere.
    // The flusher gets there by `MOVED` from the source, or, when the
    // source's `ASK` had left a batch unsettled and the connection was
    // dropped, by asking the seeds again (already answering the target):
    // which one is a matter of timing.
    cluster.finish_migration(slot, from, to);
    assert_eq!(cluster.owner(slot), to);
    let resumed_from = cache.acked_seq().get();
    wait_until(
        "writes acknowledged by the new owner",
        TOPOLOGY_TIMEOUT,
        || cache.acked_seq().get() >= resumed_from + 2000,
        progress,
    );
    stop.store(true, Ordering::SeqCst);
    let n = w.join().unwrap();
    cache.flush(TOPOLOGY_TIMEOUT).unwrap();
    assert_exactly_once(&ticks_on(to, &trader, "A"), n);
    let left: u64 = redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot).query(&mut connect(from)).unwrap();
    assert_eq!(left, 0, "keys left behind on the old owner");

    // `MOVED`, for certain: with everything acknowledged and the cache
    // idle, the slot moves back in one go. The flusher's connection is
    // still to `to`, which refuses its next batch with `MOVED`; it finds
    // the owner again and writes there.
    let before = cache.stats();
    cluster.begin_migration(slot, to, from);
    cluster.finish_migration(slot, to, from);
    let total = n + 100;
    for i in n + 1..=total {
        cache.append("A", &Tick { n: i }).unwrap();
        cache.put(&Counter { id: "A".into(), value: i }).unwrap();
    }
    cache.flush(TOPOLOGY_TIMEOUT).unwrap();
    assert_exactly_once(&ticks_on(from, &trader, "A"), total);
    let left: u64 = redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot).query(&mut connect(to)).unwrap();
    assert_eq!(left, 0, "keys left behind on the node the slot left");
    let (counters, _) = cache.load_all::<Counter>().unwrap();
    assert_eq!(counters, vec![Counter { id: "A".into(), value: total }]);
    let stats = cache.stats();
    eprintln!("{stats:?}");
    assert!(stats.error_count("readonly") > before.error_count("readonly"), "no MOVED seen: {stats:?}");
    assert!(stats.reconnects > before.reconnects, "{stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    Arc::into_inner(cache).expect("the writer is done").close(Duration::from_secs(10)).unwrap();
}
