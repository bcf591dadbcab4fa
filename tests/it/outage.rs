//! Bounded memory through a 10 s Redis outage: snapshot updates coalesce
//! (one pending value per key), event appends fill the flusher's
//! `max_pending_events` and then the channel, after which `Reject` hands
//! each value back and counts it. Nothing accepted is lost, nothing is
//! dropped silently.

use crate::harness::outage::{run_outage, OutageParams};

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
