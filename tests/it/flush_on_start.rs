//! `flush_on_start` (and `clear`) delete exactly the cache's own keys: this
//! trader's, or this instance's, never another trader's or application's.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::*;
use tradecache::{Cache, ErrorKind};

/// Items 3 and 4: `flush_on_start` and `clear` delete exactly the cache's
/// own keys: without an instance, the trader's but no instance's; with
/// one, that instance's only; never another trader's or application's.
#[test]
fn flush_on_start_and_clear_delete_only_their_own_keys() {
    let server = RedisServer::start();
    let mut con = server.client();
    let instance = |i: &str| config(server.port(), "T").instance_id(i).use_instance_id(true);
    for cfg in [instance("I1"), instance("I2"), config(server.port(), "T"), config(server.port(), "U")] {
        let cache = Cache::open(cfg).unwrap();
        write_order_and_position(&cache);
        cache.put(&counter_v("C", 1)).unwrap();
        cache.append("C", &Tick { n: 1 }).unwrap();
        // A log without a snapshot: only the collection tells it apart.
        cache.append("LOG-ONLY", &Tick { n: 1 }).unwrap();
        cache.close(Duration::from_secs(5)).unwrap();
    }
    // Another application's keys, some shaped like ours.
    let foreign = ["app:orders:O-1", "orders:O-1", "trader-TX:orders:O-1", "trader-T", "index:orders", "x"];
    for k in foreign {
        set_key(&mut con, k, "theirs");
    }
    let all_before = keys(&mut con, "*");
    let of = |p: &str| all_before.iter().filter(|k| k.starts_with(p)).cloned().collect::<BTreeSet<_>>();
    let i1 = of("trader-T:I1:");
    let i2 = of("trader-T:I2:");
    let u = of("trader-U:");

    // Trader T without an instance: its own keys go, its instances' stay.
    let cache = Cache::open(config(server.port(), "T").flush_on_start(true)).unwrap();
    let left = keys(&mut con, "*");
    let own_left: Vec<&String> = left
        .iter()
        .filter(|k| {
            k.starts_with("trader-T:") && !k.starts_with("trader-T:I1:") && !k.starts_with("trader-T:I2:")
        })
        .collect();
    assert_eq!(
        own_left,
        vec!["trader-T:index:", "trader-T:writer:main"],
        "only the registry of collections and the marker are kept"
    );
    assert!(i1.is_subset(&left) && i2.is_subset(&left) && u.is_subset(&left), "{left:?}");
    for k in foreign {
        assert!(left.contains(k), "{k} deleted");
    }
    cache.put(&counter_v("C", 2)).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    cache.clear(Duration::from_secs(5)).unwrap();
    assert_eq!(keys(&mut con, "*").len(), left.len(), "clear deletes what flush_on_start did");
    drop(cache);

    // Instance I1: its keys only.
    let cache = Cache::open(instance("I1").flush_on_start(true)).unwrap();
    let left = keys(&mut con, "*");
    assert_eq!(
        keys(&mut con, "trader-T:I1:*"),
        BTreeSet::from(["trader-T:I1:index:".to_string(), "trader-T:I1:writer:main".to_string()])
    );
    assert!(i2.is_subset(&left) && u.is_subset(&left), "{left:?}");
    for k in foreign {
        assert!(left.contains(k), "{k} deleted");
    }
    drop(cache);

    // Without a trader prefix nothing tells our keys apart: refused.
    let no_prefix = config(server.port(), "T").use_trader_prefix(false);
    let err = Cache::open(no_prefix.clone().flush_on_start(true)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("flush_on_start"), "{err}");
    let cache = Cache::open(no_prefix).unwrap();
    let err = cache.clear(Duration::from_secs(5)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    for k in foreign {
        assert!(keys(&mut con, "*").contains(k), "{k} deleted");
    }
}

#[test]
fn flush_on_start_deletes_only_this_trader() {
    let server = RedisServer::start();
    let mut con = server.client();
    let _: () = redis::cmd("SET").arg("unrelated:key").arg("keep").query(&mut con).unwrap();
    for trader in ["T1", "T2"] {
        let cache = Cache::open(config(server.port(), trader)).unwrap();
        cache.put(&Counter { id: "A".into(), value: 1 }).unwrap();
        cache.append("A", &Tick { n: 1 }).unwrap();
        cache.close(Duration::from_secs(5)).unwrap();
    }
    let cache = Cache::open(config(server.port(), "T1").flush_on_start(true)).unwrap();
    assert!(counter(&mut con, "T1", "A").is_none());
    assert!(ticks(&mut con, "T1", "A").is_empty());
    assert_eq!(counter(&mut con, "T2", "A").unwrap().value, 1, "another trader's keys survive");
    assert_eq!(ticks(&mut con, "T2", "A"), vec![1]);
    let kept: String = redis::cmd("GET").arg("unrelated:key").query(&mut con).unwrap();
    assert_eq!(kept, "keep");
    // Numbering restarts cleanly after the marker was deleted.
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(ticks(&mut con, "T1", "A"), vec![1]);
}
