//! A second writer with the same trader and writer id fences the first:
//! nothing the first writes after the second's `open` is applied, a batch
//! already under way is aborted by Redis, and the first is told.

use std::time::Duration;

use crate::harness::*;
use tradecache::{Cache, Error, ErrorKind};

/// Item 5: a second `Cache` with the same trader and writer id fences the
/// first: nothing the first writes after the second's `open` returned is
/// applied, and the first is told, with the writer key, everywhere.
#[test]
fn a_second_writer_fences_the_first() {
    let server = RedisServer::start();
    let mut con = server.client();
    let a = Cache::open(config(server.port(), "T1")).unwrap();
    a.put(&counter_v("X", 1)).unwrap();
    a.flush(Duration::from_secs(5)).unwrap();
    let b = Cache::open(config(server.port(), "T1")).unwrap();
    b.put(&counter_v("X", 100)).unwrap();
    b.flush(Duration::from_secs(5)).unwrap();
    // A write of A after B's open: accepted (the hot path does no I/O),
    // never applied, and A finds out.
    let seq = a.put(&counter_v("X", 2)).unwrap();
    let err = a.wait(seq, Duration::from_secs(10)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    assert!(
        matches!(&err, Error::Fenced { writer_key, .. } if writer_key == "trader-T1:writer:main"),
        "{err:?}"
    );
    assert!(err.to_string().contains("trader-T1:writer:main"), "{err}");
    assert_eq!(counter(&mut con, "T1", "X").unwrap().value, 100);
    let health = a.health();
    assert!(health.fenced.as_deref().unwrap_or("").contains("trader-T1:writer:main"), "{health:?}");
    assert!(!health.is_healthy());
    assert_eq!(a.stats().error_count("fenced"), 1);
    let push = a.put(&counter_v("X", 3)).unwrap_err();
    assert!(push.is_fenced(), "{push:?}");
    assert_eq!(push.into_inner().map(|c| c.value), Some(3));
    assert_eq!(a.flush(Duration::from_secs(1)).unwrap_err().kind(), ErrorKind::Fenced);
    // `close` says how many accepted writes were not persisted (X = 2).
    let closed = a.close(Duration::from_secs(1)).unwrap_err();
    assert_eq!(closed.kind(), ErrorKind::Fenced);
    assert!(closed.to_string().contains("1 accepted write(s) not persisted"), "{closed}");
    // B is unaffected; a third open fences B in turn (the newest wins).
    b.put(&counter_v("X", 101)).unwrap();
    b.flush(Duration::from_secs(5)).unwrap();
    let c = Cache::open(config(server.port(), "T1")).unwrap();
    let seq = b.put(&counter_v("X", 102)).unwrap();
    assert_eq!(b.wait(seq, Duration::from_secs(10)).unwrap_err().kind(), ErrorKind::Fenced);
    assert_eq!(counter(&mut con, "T1", "X").unwrap().value, 101);
    c.put(&counter_v("X", 200)).unwrap();
    c.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(counter(&mut con, "T1", "X").unwrap().value, 200);
    // Another writer id, or another instance, is another writer.
    let d = Cache::open(config(server.port(), "T1").writer_id("second")).unwrap();
    d.put(&counter_v("Y", 1)).unwrap();
    d.flush(Duration::from_secs(5)).unwrap();
    c.put(&counter_v("X", 201)).unwrap();
    c.flush(Duration::from_secs(5)).unwrap();
}

/// A batch already on its way when the new writer opens (held in a frozen
/// connection) reaches Redis after the claim: Redis aborts it.
#[test]
fn a_fenced_writers_late_batch_never_lands() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let mut con = server.client();
    let old = Cache::open(config(proxy.port(), "T1").response_timeout(Duration::from_secs(8))).unwrap();
    old.put(&counter_v("X", 1)).unwrap();
    old.flush(Duration::from_secs(5)).unwrap();
    proxy.freeze_current(true);
    let late = old.put(&counter_v("X", 2)).unwrap();
    old.append("X", &Tick { n: 2 }).unwrap();
    let new = Cache::open(config(server.port(), "T1")).unwrap();
    new.put(&counter_v("X", 100)).unwrap();
    new.flush(Duration::from_secs(5)).unwrap();
    // The old writer's transaction now arrives, complete with its EXEC.
    proxy.freeze_current(false);
    let err = old.wait(late, Duration::from_secs(20)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    assert_eq!(counter(&mut con, "T1", "X").unwrap().value, 100);
    assert!(ticks(&mut con, "T1", "X").is_empty(), "the late batch's event landed");
}

/// The marker's old form (a bare batch number) is read, and taken over.
#[test]
fn an_old_marker_is_taken_over() {
    let server = RedisServer::start();
    let mut con = server.client();
    set_key(&mut con, "trader-T1:writer:main", "41");
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    cache.put(&counter_v("X", 1)).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let marker: String = redis::cmd("GET").arg("trader-T1:writer:main").query(&mut con).unwrap();
    let (epoch, batch) = marker.split_once(':').expect("epoch:batch");
    assert!(epoch.parse::<u64>().unwrap() > 0);
    assert_eq!(batch, "42");
}
