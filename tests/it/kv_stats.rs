//! The kv layer's hit and miss counts: every lookup of one key (a `get`,
//! each key of a `get_many`, a `get_or_compute`) counts exactly one hit or
//! one miss, in `stats()` and in the Prometheus exposition alike.

use crate::harness::RedisServer;
use crate::kv::{kv_config, open, LONG};
use tradecache::kv::{Kv, Ttl};

/// The value of one sample line `name{key_prefix="prefix"} v` in `body`.
fn sample(body: &str, name: &str, prefix: &str) -> Option<u64> {
    let head = format!("{name}{{key_prefix=\"{prefix}\"}} ");
    body.lines().find_map(|l| l.strip_prefix(&head)).and_then(|v| v.trim().parse().ok())
}

#[test]
fn kv_hits_and_misses_count_every_lookup_once() {
    let server = RedisServer::start();
    let writer = open(server.port(), "hm");
    writer.set("ns", "a", &1u32, Ttl::Never).unwrap();
    writer.set("ns", "b", &2u32, Ttl::Never).unwrap();
    writer.set("ns", "text", &"not a number", Ttl::Never).unwrap();
    writer.set("ns", "text2", &"not a number either", Ttl::Never).unwrap();
    writer.flush(LONG).unwrap();
    let mut con = server.client();
    for k in ["bad", "bad2"] {
        let _: () = redis::cmd("SET").arg(format!("hm:ns:{k}")).arg(&b"\x07"[..]).query(&mut con).unwrap();
    }
    // A second handle, so Redis (not the writer's queued writes) answers.
    let kv = Kv::open(kv_config(server.port(), "hm")).unwrap();
    // Hits: a, a and b of get_many, and c the second time (queued by the
    // first get_or_compute). Misses: missing, missing in get_many, c the
    // first time, the corrupt bad and bad2, and text and text2 (not a u32).
    assert_eq!(kv.get::<u32>("ns", "a").unwrap(), Some(1));
    assert_eq!(kv.get::<u32>("ns", "missing").unwrap(), None);
    assert_eq!(kv.get_many::<u32>("ns", &["a", "missing", "b"]).unwrap(), vec![Some(1), None, Some(2)]);
    assert_eq!(kv.get_or_compute("ns", "c", Ttl::Never, || 3u32).unwrap(), 3);
    assert_eq!(kv.get_or_compute("ns", "c", Ttl::Never, || 4u32).unwrap(), 3);
    assert_eq!(kv.get::<u32>("ns", "bad").unwrap(), None);
    assert_eq!(kv.get::<u32>("ns", "text").unwrap(), None);
    assert_eq!(kv.get_or_compute("ns", "bad2", Ttl::Never, || 5u32).unwrap(), 5);
    assert_eq!(kv.get_or_compute("ns", "text2", Ttl::Never, || 6u32).unwrap(), 6);
    let s = kv.stats();
    assert_eq!((s.hits, s.misses), (4, 7), "{s:?}");
    assert_eq!((s.corrupt, s.computed, s.overlay_hits), (4, 3, 1), "{s:?}");
    assert!((s.hit_rate - 4.0 / 11.0).abs() < 1e-9, "{s:?}");
    let mut body = String::new();
    kv.write_prometheus(&mut body);
    assert_eq!(sample(&body, "tradecache_kv_hits_total", "hm"), Some(4), "{body}");
    assert_eq!(sample(&body, "tradecache_kv_misses_total", "hm"), Some(7), "{body}");
    assert_eq!(sample(&body, "tradecache_kv_corrupt_total", "hm"), Some(4), "{body}");
    kv.close(LONG).unwrap();
}
