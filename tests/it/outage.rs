//! Bounded memory through a 10 s Redis outage: snapshot updates coalesce
//! (one pending value per key), event appends fill the flusher's
//! `max_pending_events` and then the channel, after which `Reject` hands
//! each value back and counts it. Nothing accepted is lost, nothing is
//! dropped silently.

use std::time::Duration;

use crate::harness::outage::{run_outage, OutageParams};
use crate::harness::*;
use tradecache::Cache;

#[test]
fn memory_stays_bounded_through_an_outage() {
    let params = OutageParams {
        channel_capacity: Some(16_384),
        max_pending_events: Some(32_768),
        ..OutageParams::default()
    };
    let r = run_outage(&params);
    eprintln!("{r:#?}");

    // Redis really was down for the whole outage, and the caller really
    // wrote a lot meanwhile.
    assert!(r.outage_secs >= params.outage.as_secs_f64(), "{r:?}");
    assert!(r.rounds >= 2, "at least two rounds of every position: {r:?}");
    assert!(r.position_updates_accepted >= 2 * params.positions as u64, "{r:?}");

    // Behaviour bound, not a timing one: without coalescing, every update
    // would be held; with it, memory grows by the channel and one value
    // per key and event, far below this.
    let growth = r.rss_mb_peak - r.rss_mb_before;
    assert!(growth < 200.0, "RSS grew by {growth:.0} MiB during the outage: {r:?}");

    // Reject: every value not accepted came back to the caller and was
    // counted; none was dropped silently.
    assert!(r.events_rejected > 0, "the channel filled: {r:?}");
    // It filled because the flusher stopped taking events at its limit:
    // it holds max_pending_events, the channel the rest.
    assert!((32_768..=32_768 + 16_384).contains(&r.events_accepted), "{r:?}");
    assert_eq!(r.stats_rejected, r.rejected, "{r:?}");
    assert!(r.coalesced > 0, "{r:?}");

    // After Redis returns: every position holds its last accepted value,
    // and Redis holds exactly the accepted events, in order.
    assert_eq!(r.positions_ok, params.positions, "{r:?}");
    assert!(r.events_exact, "stored {} events, accepted {}: {r:?}", r.events_stored, r.events_accepted);
    assert_eq!(r.events_stored, r.events_accepted, "{r:?}");
}

/// An outage's backlog of distinct keys is bounded (the channel fills and
/// callers are told), and it drains in transactions of at most
/// `max_batch` writes, in order.
#[test]
fn an_outage_backlog_is_bounded_and_drains_in_batches() {
    let server = RedisServer::start();
    let mut con = server.client();
    let cfg = config(server.port(), "T1")
        .max_batch(50)
        .max_pending_snapshots(300)
        .channel_capacity(100)
        .response_timeout(ms(200));
    let cache = Cache::open(cfg).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    server.pause();
    let mut accepted = 0u64;
    let mut rejected = 0u64;
    for i in 0..2000u64 {
        match cache.put(&counter_v(&format!("N-{i}"), i)) {
            Ok(_) => accepted += 1,
            Err(e) => {
                assert!(e.is_full(), "{e:?}");
                rejected += 1;
            }
        }
    }
    // The flusher holds at most 300 keys, plus the channel's 100.
    assert!(accepted <= 300 + 100 + 1, "{accepted} accepted");
    assert!(rejected > 0);
    server.resume();
    cache.flush(Duration::from_secs(30)).unwrap();
    let n: usize = redis::cmd("SCARD").arg("trader-T1:index:counters").query(&mut con).unwrap();
    assert_eq!(n as u64, accepted);
    let stats = cache.stats();
    assert!(stats.batches >= accepted / 50, "{stats:?}: a transaction carried more than max_batch");
}
