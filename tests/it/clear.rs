//! `clear`: ordered with the writes around it, and the flusher's knowledge
//! of the indexes does not outlive it.

use std::time::Duration;

use crate::harness::*;
use tradecache::Cache;

/// Item 2: the flusher's knowledge of the index outlived a `clear`.
#[test]
fn clear_then_put_is_indexed_again() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    cache.put(&counter_v("X", 1)).unwrap();
    cache.append("X", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let deleted = cache.clear(Duration::from_secs(5)).unwrap();
    assert_eq!(deleted, 4, "snapshot, log, index and open index");
    assert!(ids::<Counter>(&cache).is_empty());
    cache.put(&counter_v("X", 2)).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(ids::<Counter>(&cache), vec!["X"]);
    assert!(ticks(&mut server.client(), "T1", "X").is_empty(), "the old log is gone");
}

/// `clear` is ordered with the writes around it: what came before is
/// deleted, what comes after is kept, even while all are still queued.
#[test]
fn clear_applies_in_sequence() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    server.pause();
    for i in 1..=50 {
        cache.put(&counter_v(&format!("before-{i}"), i)).unwrap();
    }
    let clear = std::thread::scope(|s| {
        let c = s.spawn(|| cache.clear(Duration::from_secs(20)));
        // Give the clear its place in the sequence before the next writes.
        wait_until("the clear to be queued", Duration::from_secs(5), || cache.last_seq().get() == 51);
        cache.put(&counter_v("after", 1)).unwrap();
        cache.append("after", &Tick { n: 1 }).unwrap();
        server.resume();
        c.join().unwrap()
    });
    assert!(clear.is_ok(), "{clear:?}");
    cache.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(ids::<Counter>(&cache), vec!["after"]);
    assert_eq!(ticks(&mut server.client(), "T1", "after"), vec![1]);
}

/// A `clear` whose guarded `UNLINK` is aborted because the marker was
/// written meanwhile (not by a newer writer: the same value again) must
/// not report success with keys left: it starts again, and when it
/// returns, every key it owned is gone.
#[test]
fn clear_aborted_by_a_marker_write_starts_again() {
    let server = RedisServer::start();
    let mut admin = server.client();
    let cache = Cache::open(config(server.port(), "T1").max_batch(500)).unwrap();
    for i in 0..5_000u64 {
        cache.put(&counter_v(&format!("C-{i}"), i)).unwrap();
    }
    cache.flush(Duration::from_secs(30)).unwrap();
    let marker_key = "trader-T1:writer:main";
    let marker = raw_get(&mut admin, marker_key).expect("a marker");
    // Every key of this cache but its marker and the registry of
    // collections (both kept).
    let owned = keys(&mut admin, "trader-T1:*").len() - 2;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let cleared = std::thread::scope(|s| {
        let rewriter = s.spawn(|| {
            // Rewrites the marker with what it holds (every write fires the
            // WATCH), for a bounded number of rounds.
            let mut con = server.client();
            for _ in 0..20_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let current = raw_get(&mut con, marker_key).unwrap_or_else(|| marker.clone());
                let _: () = redis::cmd("SET").arg(marker_key).arg(current).query(&mut con).unwrap();
            }
        });
        let r = cache.clear(Duration::from_secs(60));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        rewriter.join().unwrap();
        r
    });
    assert!(cleared.is_ok(), "{cleared:?}");
    let left = keys(&mut admin, "trader-T1:counters:*");
    assert!(left.is_empty(), "clear returned {cleared:?} but left {} keys", left.len());
    // What the passes the marker aborted had deleted before counts too.
    assert_eq!(cleared.unwrap(), owned as u64, "clear reports every key it deleted");
}

/// `close` does not leave a long `clear` deleting behind it: once `close`
/// has returned, nothing more is deleted (the flusher looks at the
/// deadline between pages of the scan, not only between passes).
#[test]
fn nothing_is_deleted_after_close_returns() {
    let server = RedisServer::start();
    let mut admin = server.client();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    cache.put(&counter_v("C-0", 0)).unwrap();
    cache.flush(Duration::from_secs(10)).unwrap();
    // Many keys of this cache, so that one pass of the scan is long.
    for chunk in 0..20u64 {
        let mut pipe = redis::pipe();
        for i in 0..10_000u64 {
            pipe.cmd("SET").arg(format!("trader-T1:counters:K-{chunk}-{i}")).arg("x").ignore();
        }
        let _: () = pipe.query(&mut admin).unwrap();
    }
    // Returns before the clear is done when its pass is long: the flusher
    // goes on deleting until close.
    let cleared = cache.clear(ms(20));
    eprintln!("clear returned {cleared:?}");
    let closed = cache.close(ms(20));
    eprintln!("close returned {closed:?}");
    let dbsize = |con: &mut redis::Connection| -> u64 { redis::cmd("DBSIZE").query(con).unwrap() };
    let after_close = dbsize(&mut admin);
    std::thread::sleep(ms(500));
    assert_eq!(dbsize(&mut admin), after_close, "keys were deleted after close returned");
}

/// Item 6 of issue 28: a collection written only with `append` (a typed
/// event-only collection, raw or Python events without a put, a market-data
/// series of the user's) has no index set; its logs survived `clear` and `flush_on_start` of any cache but the
/// one that wrote them (0 keys deleted, the events still read back). Every
/// key a cache wrote is its own: the registry of collections names the
/// collection from its first batch on.
#[test]
fn clear_and_flush_on_start_delete_event_only_collections() {
    let server = RedisServer::start();
    let mut con = server.client();
    let s = Duration::from_secs(5);
    let raw = tradecache::raw::Collection::new("clr-events-only").unwrap();
    let event = tradecache::raw::RawValue::encode(&1u8, tradecache::Encoding::MsgPack).unwrap();
    let write = |cfg: tradecache::Config| {
        let cache = Cache::open(cfg).unwrap();
        cache.append("LOG-ONLY", &Tick { n: 1 }).unwrap();
        cache.append_raw(raw, "E-1", event.clone()).unwrap();
        cache.append_market_data(&Signal { source: "S-1".into(), n: 1 }).unwrap();
        cache.close(s).unwrap();
    };
    let own = |con: &mut redis::Connection| {
        let mut k: Vec<String> = keys(con, "trader-T1:*").into_iter().collect();
        k.retain(|k| !k.ends_with(":index:") && !k.contains(":writer:"));
        k
    };
    write(config(server.port(), "T1"));
    assert_eq!(
        own(&mut con),
        [
            "trader-T1:clr-events-only:E-1:events",
            "trader-T1:clr-signals:S-1:events",
            "trader-T1:counters:LOG-ONLY:events"
        ]
    );
    // A later cache's `clear`.
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    assert_eq!(cache.clear(s).unwrap(), 3);
    assert_eq!(own(&mut con), Vec::<String>::new());
    assert!(cache.get_events_raw(raw, "E-1").unwrap().is_empty());
    assert!(cache.get_events::<Tick>("LOG-ONLY").unwrap().is_empty());
    cache.close(s).unwrap();
    // A later cache's `flush_on_start`.
    write(config(server.port(), "T1"));
    let cache = Cache::open(config(server.port(), "T1").flush_on_start(true)).unwrap();
    assert_eq!(own(&mut con), Vec::<String>::new());
    cache.close(s).unwrap();
}

/// A market-data series of the user's own: a list without a snapshot.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Signal {
    source: String,
    n: u64,
}

impl tradecache::MarketData for Signal {
    const COLLECTION: &'static str = "clr-signals";
    const CAPACITY: tradecache::SeriesCapacity = tradecache::SeriesCapacity::Ticks;
    fn series_id(&self) -> &str {
        &self.source
    }
}
