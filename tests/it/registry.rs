//! The registry of collections (`{prefix}:index:`): `collections()` reads
//! it instead of scanning the keyspace, and must still name every
//! collection with an index set, whatever happened to the registry: data
//! written before registries existed (seeded at `open`), a registry
//! deleted by hand (not trusted until the next `open` seeds it again), a
//! key of another type in its place (writes go on, nothing is dropped),
//! collections emptied since (left out), a `tradecache import`, and
//! `verify` finding an index set a complete registry lacks.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use crate::harness::*;
use tradecache::raw::{Collection, RawValue};
use tradecache::{Cache, Encoding};

const S: Duration = Duration::from_secs(10);

fn mp<T: Serialize>(v: &T) -> RawValue {
    RawValue::encode(v, Encoding::MsgPack).unwrap()
}

fn c(name: &str) -> Collection {
    Collection::new(name).unwrap()
}

fn names(cache: &Cache) -> Vec<&'static str> {
    cache.collections().unwrap().into_iter().map(|c| c.as_str()).collect()
}

fn registry(con: &mut redis::Connection, key: &str) -> BTreeSet<String> {
    redis::cmd("SMEMBERS").arg(key).query(con).unwrap()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn collections_come_from_the_registry_and_leave_out_emptied_ones() {
    let server = RedisServer::start();
    let mut con = server.client();
    let cache = Cache::open(config(server.port(), "REG1")).unwrap();
    // Seeded at open, empty but complete.
    assert_eq!(registry(&mut con, "trader-REG1:index:"), set(&[""]));
    assert!(names(&cache).is_empty());
    cache.put_raw(c("reg-fills"), "F-1", mp(&1)).unwrap();
    cache.put_raw(c("reg-bots"), "B-1", mp(&2)).unwrap();
    cache.append_raw(c("reg-logs-only"), "L-1", mp(&3)).unwrap();
    cache.flush(S).unwrap();
    // Every collection written is registered, the event-only one too (its
    // logs are the cache's own: `clear` finds them there); `collections()`
    // names those with an index set.
    assert_eq!(
        registry(&mut con, "trader-REG1:index:"),
        set(&["", "reg-bots", "reg-fills", "reg-logs-only"])
    );
    assert_eq!(names(&cache), ["reg-bots", "reg-fills"]);
    // Emptied: its index set is gone, its name stays in the registry.
    cache.delete_raw(c("reg-bots"), "B-1").unwrap();
    cache.flush(S).unwrap();
    assert_eq!(names(&cache), ["reg-fills"]);
    assert!(registry(&mut con, "trader-REG1:index:").contains("reg-bots"));
    // A registry naming a collection whose index key is not a set.
    let _: () = redis::cmd("SADD").arg("trader-REG1:index:").arg("reg-odd").query(&mut con).unwrap();
    let _: () = redis::cmd("SET").arg("trader-REG1:index:reg-odd").arg("x").query(&mut con).unwrap();
    assert_eq!(names(&cache), ["reg-fills"]);
    // A second collection written again after clear (which keeps the
    // registry).
    cache.clear(S).unwrap();
    assert!(names(&cache).is_empty());
    cache.put_raw(c("reg-bots"), "B-2", mp(&4)).unwrap();
    cache.flush(S).unwrap();
    assert_eq!(names(&cache), ["reg-bots"]);
    assert_eq!(cache.stats().dropped, 0);
    cache.close(S).unwrap();
}

#[test]
fn data_written_without_a_registry_is_found_and_the_registry_seeded_at_open() {
    let server = RedisServer::start();
    let mut con = server.client();
    // What an older version (or another client following the key layout)
    // left: index sets, values, no registry.
    for (collection, id) in [("reg-old", "A"), ("reg-older", "B")] {
        let _: () = redis::cmd("SADD")
            .arg(format!("trader-REG2:index:{collection}"))
            .arg(id)
            .query(&mut con)
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg(format!("trader-REG2:{collection}:{id}"))
            .arg(mp(&7).as_bytes())
            .query(&mut con)
            .unwrap();
    }
    let cache = Cache::open(config(server.port(), "REG2")).unwrap();
    assert_eq!(registry(&mut con, "trader-REG2:index:"), set(&["", "reg-old", "reg-older"]));
    cache.put_raw(c("reg-new"), "N", mp(&1)).unwrap();
    cache.flush(S).unwrap();
    assert_eq!(names(&cache), ["reg-new", "reg-old", "reg-older"]);
    let snap = cache.load_raw(&cache.collections().unwrap(), false).unwrap();
    assert_eq!(snap.collections.iter().map(|(_, e)| e.len()).sum::<usize>(), 3);
    cache.close(S).unwrap();
}

#[test]
fn a_registry_deleted_by_hand_is_not_trusted_until_the_next_open_seeds_it() {
    let server = RedisServer::start();
    let mut con = server.client();
    let cache = Cache::open(config(server.port(), "REG3")).unwrap();
    cache.put_raw(c("reg-a"), "1", mp(&1)).unwrap();
    cache.flush(S).unwrap();
    let _: () = redis::cmd("DEL").arg("trader-REG3:index:").query(&mut con).unwrap();
    // A new collection re-creates the registry, without its empty member.
    cache.put_raw(c("reg-b"), "2", mp(&2)).unwrap();
    cache.flush(S).unwrap();
    assert_eq!(registry(&mut con, "trader-REG3:index:"), set(&["reg-b"]));
    // Not complete: the index sets are scanned, and `reg-a` is there.
    assert_eq!(names(&cache), ["reg-a", "reg-b"]);
    cache.close(S).unwrap();
    let cache = Cache::open(config(server.port(), "REG3")).unwrap();
    assert_eq!(registry(&mut con, "trader-REG3:index:"), set(&["", "reg-a", "reg-b"]));
    assert_eq!(names(&cache), ["reg-a", "reg-b"]);
    cache.close(S).unwrap();
}

#[test]
fn a_key_of_another_type_in_the_registrys_place_drops_nothing() {
    let server = RedisServer::start();
    let mut con = server.client();
    let _: () = redis::cmd("SET").arg("trader-REG4:index:").arg("not a set").query(&mut con).unwrap();
    let cache = Cache::open(config(server.port(), "REG4")).unwrap();
    for i in 0..20 {
        cache.put_raw(c("reg-x"), &format!("X-{i}"), mp(&i)).unwrap();
    }
    // Every write is acknowledged (the registry's refused SADD carries
    // none), and counted as an error.
    cache.flush(S).unwrap();
    let stats = cache.stats();
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert!(stats.errors.iter().any(|(_, n)| *n > 0), "{stats:?}");
    assert!(cache.take_dropped().is_empty());
    // The readers scan.
    assert_eq!(names(&cache), ["reg-x"]);
    assert_eq!(cache.load_raw(&[c("reg-x")], false).unwrap().collections[0].1.len(), 20);
    let kept: String = redis::cmd("GET").arg("trader-REG4:index:").query(&mut con).unwrap();
    assert_eq!(kept, "not a set", "an application's key is not overwritten");
    cache.close(S).unwrap();
}

#[test]
fn no_registry_without_a_trader_prefix() {
    let server = RedisServer::start();
    let mut con = server.client();
    // An application's own key named like a bare registry.
    let _: () = redis::cmd("SET").arg("index:").arg("app").query(&mut con).unwrap();
    let cache = Cache::open(config(server.port(), "REG5").use_trader_prefix(false)).unwrap();
    cache.put_raw(c("reg-y"), "Y", mp(&1)).unwrap();
    cache.flush(S).unwrap();
    assert_eq!(names(&cache), ["reg-y"]);
    let kept: String = redis::cmd("GET").arg("index:").query(&mut con).unwrap();
    assert_eq!(kept, "app");
    assert!(cache.stats().errors.iter().all(|(_, n)| *n == 0), "{:?}", cache.stats());
    cache.close(S).unwrap();
}

/// Item 5 of issue 28: `collections()` left out, silently, a collection
/// whose name it could not intern (at most `Collection::MAX_NAMES` per
/// process): the registry named it, its index set existed, and it returned
/// `Ok` without it. It is an error now, through the registry and through
/// the `SCAN` of the index sets alike. Run in a child process of its own:
/// the names interned here stay for the life of the process.
#[test]
fn collections_never_leaves_out_a_name_it_cannot_intern() {
    const CHILD: &str = "TRADECACHE_TEST_INTERN_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let name = "registry::collections_never_leaves_out_a_name_it_cannot_intern";
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads", "1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "the child failed:\n{text}");
        assert!(text.contains("1 passed"), "the child ran no test:\n{text}");
        return;
    }
    let server = RedisServer::start();
    let mut con = server.client();
    let cache = Cache::open(config(server.port(), "REG6")).unwrap();
    cache.put_raw(c("reg-known"), "K", mp(&1)).unwrap();
    cache.flush(S).unwrap();
    // Another process wrote a collection this one has never named…
    let _: () = redis::cmd("SADD").arg("trader-REG6:index:reg-late").arg("L").query(&mut con).unwrap();
    let _: () = redis::cmd("SADD").arg("trader-REG6:index:").arg("reg-late").query(&mut con).unwrap();
    // …and this one has interned as many names as it may.
    let mut n = 0;
    while Collection::new(&format!("reg-filler-{n}")).is_ok() {
        n += 1;
        assert!(n <= Collection::MAX_NAMES, "the interning never refused a name");
    }
    let err = cache.collections().unwrap_err();
    assert!(err.to_string().contains("reg-late"), "{err}");
    // Not trusted (no empty member): the `SCAN` of the index sets.
    let _: () = redis::cmd("SREM").arg("trader-REG6:index:").arg("").query(&mut con).unwrap();
    let err = cache.collections().unwrap_err();
    assert!(err.to_string().contains("reg-late"), "{err}");
    // Names already interned are still found.
    let _: () = redis::cmd("DEL").arg("trader-REG6:index:reg-late").query(&mut con).unwrap();
    assert_eq!(names(&cache), ["reg-known"]);
    cache.close(S).unwrap();
}
