//! Memory through a Redis outage: a run that the `outage` test asserts on
//! and the load bench reports (`outage_rss_mb`).
//!
//! Redis is killed; for a while the caller updates many distinct positions
//! as fast as it can (the flusher coalesces them, one pending value per
//! key), then appends events until the flusher holds `max_pending_events`,
//! the channel fills and `Reject` hands values back. Redis then restarts
//! from its AOF and the run checks what landed. Every loop is bounded in
//! count as well as time.

use std::time::{Duration, Instant};

use tradecache::model::{Order, OrderEvent, OrderEventKind, Position, UnixNanos};
use tradecache::{Cache, Config, PushError};

use super::RedisServer;

/// What [`run_outage`] does; [`Default`] is the test's (and the bench's)
/// scenario.
#[derive(Debug, Clone)]
pub struct OutageParams {
    /// Distinct positions updated during the outage.
    pub positions: usize,
    /// At most this many update rounds (each updates every position once).
    pub max_rounds: u64,
    /// How long Redis stays down.
    pub outage: Duration,
    /// The share of the outage spent updating positions; the rest appends
    /// events, then waits for the outage to end.
    pub positions_share: f64,
    /// At most this many event appends are attempted.
    pub max_events: u64,
    /// Event appends stop once this many in a row were rejected, each
    /// after a pause that doubles from 2 ms up to 64 ms (about a second in
    /// all at 20): the flusher holds `max_pending_events` and the channel
    /// is full, for good, not only behind on a loaded machine.
    pub full_for: u32,
    /// Passed to [`Config::channel_capacity`]; `None` keeps the default.
    pub channel_capacity: Option<usize>,
    /// Passed to [`Config::max_pending_events`]; `None` keeps the default.
    pub max_pending_events: Option<usize>,
    /// How long the recovery may take before the run gives up.
    pub recovery_timeout: Duration,
}

impl Default for OutageParams {
    fn default() -> Self {
        OutageParams {
            positions: 10_000,
            max_rounds: 300,
            outage: Duration::from_secs(10),
            positions_share: 0.5,
            max_events: 1_000_000,
            full_for: 20,
            channel_capacity: None,
            max_pending_events: None,
            recovery_timeout: Duration::from_secs(120),
        }
    }
}

/// What happened, for assertions and the bench report.
#[derive(Debug, Clone, Default)]
pub struct OutageReport {
    /// Process RSS (MiB) before Redis went down, after a first round of
    /// every position had been written.
    pub rss_mb_before: f64,
    /// The largest RSS sampled during the outage and the recovery.
    pub rss_mb_peak: f64,
    /// RSS once everything was acknowledged.
    pub rss_mb_after: f64,
    /// How long Redis was down.
    pub outage_secs: f64,
    /// From the restart until every accepted write was acknowledged.
    pub recovery_secs: f64,
    /// Position update rounds run during the outage.
    pub rounds: u64,
    /// Position updates accepted / handed back with `PushError::Full`.
    pub position_updates_accepted: u64,
    /// See `position_updates_accepted`.
    pub position_updates_rejected: u64,
    /// Event appends accepted / handed back with `PushError::Full`.
    pub events_accepted: u64,
    /// See `events_accepted`.
    pub events_rejected: u64,
    /// All writes accepted during the outage.
    pub accepted: u64,
    /// All writes rejected during the outage (equals `stats().rejected`).
    pub rejected: u64,
    /// `stats().rejected` at the end.
    pub stats_rejected: u64,
    /// `stats().coalesced` at the end.
    pub coalesced: u64,
    /// Positions whose stored value is their last accepted update.
    pub positions_ok: usize,
    /// Events stored after the recovery.
    pub events_stored: u64,
    /// The stored events are exactly the accepted ones, in order.
    pub events_exact: bool,
    /// `health()` during the outage, as text.
    pub health_during: String,
}

/// Resident set size of this process in MiB (`VmRSS` in
/// `/proc/self/status`; 0 where there is none).
pub fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn position(i: usize, round: u64) -> Position {
    let mut p = Position::example(&format!("P-{i:05}"));
    p.ts_last = UnixNanos(round);
    p
}

/// Runs the scenario against a private redis-server (killed and restarted
/// from its AOF) and reports what happened. Panics only on set-up failures
/// and on a recovery that does not finish within `recovery_timeout`.
pub fn run_outage(params: &OutageParams) -> OutageReport {
    let mut server = RedisServer::builder().appendfsync("always").start();
    let mut config = Config::builder()
        .host("127.0.0.1")
        .port(server.port())
        .trader_id("OUTAGE")
        .connect_attempts(2)
        .open_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(200))
        .close_timeout(Duration::from_secs(30));
    if let Some(n) = params.channel_capacity {
        config = config.channel_capacity(n);
    }
    if let Some(n) = params.max_pending_events {
        config = config.max_pending_events(n);
    }
    let cache = Cache::open(config).expect("open");
    let mut report = OutageReport::default();

    // Every position once, acknowledged: the baseline.
    for i in 0..params.positions {
        cache.put(&position(i, 0)).expect("warm-up put");
    }
    cache.flush(Duration::from_secs(60)).expect("warm-up flush");
    let mut last_accepted = vec![0u64; params.positions];
    report.rss_mb_before = rss_mb();
    let mut peak = report.rss_mb_before;

    server.kill();
    let down_at = Instant::now();
    let positions_until = down_at + params.outage.mul_f64(params.positions_share.clamp(0.0, 1.0));

    // Phase 1: position updates as fast as possible, bounded in rounds.
    let mut round = 0;
    while round < params.max_rounds && Instant::now() < positions_until {
        round += 1;
        for (i, last) in last_accepted.iter_mut().enumerate() {
            match cache.put(&position(i, round)) {
                Ok(_) => {
                    *last = round;
                    report.position_updates_accepted += 1;
                }
                Err(PushError::Full(_)) => report.position_updates_rejected += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        peak = peak.max(rss_mb());
    }
    report.rounds = round;

    // Phase 2: events to one order until the flusher holds
    // `max_pending_events`, the channel is full and `Reject` hands every
    // append back.
    let order = Order::example("O-1");
    let mut accepted_events = Vec::new();
    let mut in_a_row = 0;
    for n in 1..=params.max_events {
        let ev = OrderEvent {
            event_id: n,
            client_order_id: order.client_order_id.clone(),
            ts_event: UnixNanos(n),
            kind: OrderEventKind::Canceled,
        };
        match cache.append("O-1", &ev) {
            Ok(_) => {
                accepted_events.push(n);
                in_a_row = 0;
            }
            Err(PushError::Full(back)) => {
                assert_eq!(back.event_id, n, "the rejected value comes back");
                report.events_rejected += 1;
                in_a_row += 1;
                if in_a_row >= params.full_for {
                    break;
                }
                // Give a flusher that is only behind the time to drain.
                std::thread::sleep(Duration::from_millis(1 << in_a_row.min(6)));
            }
            Err(e) => panic!("unexpected {e}"),
        }
        if n % 4096 == 0 {
            peak = peak.max(rss_mb());
        }
    }
    report.events_accepted = accepted_events.len() as u64;
    // With the channel full, position updates are handed back too.
    for (i, last) in last_accepted.iter_mut().enumerate().take(100) {
        match cache.put(&position(i, round + 1)) {
            Ok(_) => {
                *last = round + 1;
                report.position_updates_accepted += 1;
            }
            Err(_) => report.position_updates_rejected += 1,
        }
    }
    report.health_during = format!("{:?}", cache.health());

    // The rest of the outage.
    let up_at = down_at + params.outage;
    while Instant::now() < up_at {
        peak = peak.max(rss_mb());
        std::thread::sleep(Duration::from_millis(50).min(up_at.saturating_duration_since(Instant::now())));
    }
    report.outage_secs = down_at.elapsed().as_secs_f64();
    server.restart();
    let restarted = Instant::now();
    let deadline = restarted + params.recovery_timeout;
    loop {
        peak = peak.max(rss_mb());
        match cache.flush(Duration::from_millis(100)) {
            Ok(()) => break,
            Err(tradecache::Error::WaitTimeout(_)) if Instant::now() < deadline => {}
            Err(e) => panic!("recovery after the outage: {e} ({:?})", cache.health()),
        }
    }
    report.recovery_secs = restarted.elapsed().as_secs_f64();
    report.rss_mb_after = rss_mb();
    report.rss_mb_peak = peak.max(report.rss_mb_after);
    report.accepted = report.position_updates_accepted + report.events_accepted;
    report.rejected = report.position_updates_rejected + report.events_rejected;
    let stats = cache.stats();
    report.stats_rejected = stats.rejected;
    report.coalesced = stats.coalesced;

    // What landed.
    let mut con = server.client();
    for (chunk_no, chunk) in last_accepted.chunks(1_000).enumerate() {
        let keys: Vec<String> = (0..chunk.len())
            .map(|j| format!("trader-OUTAGE:positions:P-{:05}", chunk_no * 1_000 + j))
            .collect();
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query(&mut con).expect("MGET");
        for (want, value) in chunk.iter().zip(values) {
            let got = value.and_then(|b| rmp_serde::from_slice::<Position>(&b).ok()).map(|p| p.ts_last.0);
            if got == Some(*want) {
                report.positions_ok += 1;
            }
        }
    }
    let raw: Vec<Vec<u8>> = redis::cmd("LRANGE")
        .arg("trader-OUTAGE:orders:O-1:events")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .expect("LRANGE");
    let stored: Vec<u64> =
        raw.iter().filter_map(|b| rmp_serde::from_slice::<OrderEvent>(b).ok()).map(|e| e.event_id).collect();
    report.events_stored = stored.len() as u64;
    report.events_exact = stored == accepted_events;
    cache.close(Duration::from_secs(30)).expect("close after the recovery");
    report
}
