//! The kv layer's hit and miss counts: every lookup of one key (a `get`,
//! each key of a `get_many`, a `get_or_compute`) counts exactly one hit or
//! one miss, in `stats()` and in the Prometheus exposition alike.

use std::time::Duration;

use crate::harness::topology::wait_until;
use crate::harness::RedisServer;
use crate::kv::{kv_config, open, LONG};
use tradecache::kv::{Kv, Ttl};
use tradecache::Error;

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

/// Past `max_pending_keys` in an outage writes are dropped: more than the
/// 1,024 that `take_dropped` lists between two calls. The rest are counted,
/// and the error of `wait` tells a kv user which call collects them.
#[test]
fn kv_drops_past_the_log_are_counted_and_the_error_names_the_kv_api() {
    let mut server = RedisServer::start();
    let kv = Kv::open(kv_config(server.port(), "dl").max_pending_keys(1)).unwrap();
    kv.set("ns", "warm", &0u32, Ttl::Never).unwrap();
    kv.flush(LONG).unwrap();
    server.stop();
    kv.set("ns", "K0", &0u32, Ttl::Never).unwrap();
    wait_until("the writer to see the outage", LONG, || !kv.health().writer_connected, String::new);
    let mut last = kv.last_seq();
    for i in 1..=1_100u32 {
        last = kv.set("ns", &format!("K{i}"), &i, Ttl::Never).unwrap();
    }
    wait_until("1,100 drops", LONG, || kv.stats().dropped >= 1_100, || format!("{:?}", kv.stats()));
    assert!(matches!(kv.wait(last, Duration::from_millis(50)), Err(Error::WaitTimeout(_))));
    server.restart();
    server.wait_ready(LONG);
    let e = kv.flush(LONG).unwrap_err();
    assert!(matches!(e, Error::Dropped { count: 1_100, .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("Kv::take_dropped"), "{text}");
    let listed = kv.take_dropped();
    assert_eq!(listed.len(), 1_024);
    let s = kv.stats();
    assert_eq!((s.dropped, s.dropped_unlisted), (1_100, 76), "{s:?}");
}
