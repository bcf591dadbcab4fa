//! Helpers shared by the integration tests: test entity types and a
//! config pointed at a private server with small, fast bounds.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tradecache::model::{Order, OrderEvent, OrderEventKind, Position, UnixNanos};
use tradecache::{Cache, Config, Entity, Event};

/// A user-defined entity (travels boxed through the channel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    pub id: String,
    pub value: u64,
}

impl Entity for Counter {
    const COLLECTION: &'static str = "counters";
    fn id(&self) -> &str {
        &self.id
    }
}

/// A user-defined event appended to a `Counter`'s log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    pub n: u64,
}

impl Event for Tick {
    type Of = Counter;
    fn event_id(&self) -> u64 {
        self.n
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A config for a private server on `port`, with test-sized bounds.
pub fn config(port: u16, trader: &str) -> Config {
    Config::builder()
        .host("127.0.0.1")
        .port(port)
        .trader_id(trader)
        .connect_attempts(2)
        .open_backoff(ms(10), ms(50))
        .reconnect_backoff(ms(10), ms(200))
        .connect_timeout(ms(500))
        .response_timeout(ms(1000))
        .close_timeout(Duration::from_secs(10))
}

/// The event log of `counters:{id}` as stored, decoded.
pub fn ticks(con: &mut redis::Connection, trader: &str, id: &str) -> Vec<u64> {
    let raw: Vec<Vec<u8>> = redis::cmd("LRANGE")
        .arg(format!("trader-{trader}:counters:{id}:events"))
        .arg(0)
        .arg(-1)
        .query(con)
        .expect("LRANGE");
    raw.iter().map(|b| rmp_serde::from_slice::<Tick>(b).expect("decode tick").n).collect()
}

/// The stored `Counter`, decoded.
pub fn counter(con: &mut redis::Connection, trader: &str, id: &str) -> Option<Counter> {
    let raw: Option<Vec<u8>> =
        redis::cmd("GET").arg(format!("trader-{trader}:counters:{id}")).query(con).expect("GET");
    raw.map(|b| rmp_serde::from_slice(&b).expect("decode counter"))
}

/// Asserts that `got` is exactly `1..=n`: every event present once, in order.
pub fn assert_exactly_once(got: &[u64], n: u64) {
    let dups = got.len() as i64 - n as i64;
    for (i, v) in got.iter().enumerate() {
        assert_eq!(
            *v,
            i as u64 + 1,
            "event {i} is {v}: lost or duplicated events ({} stored, {n} accepted, {dups} extra)",
            got.len()
        );
    }
    assert_eq!(got.len() as u64, n, "stored {} events, accepted {n}", got.len());
}

/// What `health()` showed during a fault, as a fault-matrix cell.
pub fn health_cell(h: &tradecache::Health) -> String {
    format!(
        "connected={} last_error={} backpressure={}",
        h.connected,
        h.last_error_class.map_or("none", |c| c.name()),
        h.backpressure.as_deref().map_or("none", |b| b.split(':').next().unwrap_or(b)),
    )
}

/// Checks a stored event log against `1..=n` accepted events and prints a
/// fault-matrix row (`cargo test -- --nocapture` shows them); panics on
/// any loss or duplicate.
pub fn matrix_row(fault: &str, health: &str, got: &[u64], n: u64) {
    let distinct: std::collections::BTreeSet<u64> =
        got.iter().copied().filter(|v| (1..=n).contains(v)).collect();
    let lost = n - distinct.len() as u64;
    let dups = got.len() as u64 - distinct.len() as u64;
    let order = if got.windows(2).all(|w| w[0] < w[1]) { "in order" } else { "REORDERED" };
    eprintln!("FAULT-MATRIX | {fault} | {health} | lost {lost} of {n} | duplicates {dups} | {order}");
    assert_exactly_once(got, n);
}

/// Writes order `O-1` with two events (`Canceled`, `Expired`, ids 1 and 2)
/// and position `P-1` through `cache`; returns the order as it should load.
pub fn write_order_and_position(cache: &Cache) -> Order {
    let mut order = Order::example("O-1");
    for (i, kind) in [OrderEventKind::Canceled, OrderEventKind::Expired].into_iter().enumerate() {
        let ev = OrderEvent {
            event_id: i as u64 + 1,
            client_order_id: order.client_order_id.clone(),
            ts_event: UnixNanos(i as u64),
            kind,
        };
        order.apply(&ev);
        cache.append("O-1", &ev).unwrap();
    }
    cache.put(&order).unwrap();
    cache.put(&Position::example("P-1")).unwrap();
    order
}

/// Appends tick `i` to counter "A" and puts the counter at `i`, for
/// i = 1, 2, … until `stop`, pacing itself; returns the last i. The seq of
/// tick `i` is `2i - 1` on a fresh cache.
pub fn tick_writer(cache: Arc<Cache>, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            i += 1;
            cache.append("A", &Tick { n: i }).expect("accepted");
            cache.put(&Counter { id: "A".into(), value: i }).expect("accepted");
            if i % 50 == 0 {
                thread::sleep(ms(5));
            }
        }
        i
    })
}

/// Waits until `cond` holds, polling every 20 ms; panics after `timeout`
/// naming `what`. (The topologies' waits, which also print logs, are
/// [`super::topology::wait_until`].)
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        thread::sleep(ms(20));
    }
}

/// Every key matching `pattern`, by `SCAN`.
pub fn keys(con: &mut redis::Connection, pattern: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, found): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).query(con).expect("SCAN");
        out.extend(found);
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}

/// `SET key value`, behind the cache's back.
pub fn set_key(con: &mut redis::Connection, key: &str, value: &str) {
    let _: () = redis::cmd("SET").arg(key).arg(value).query(con).expect("SET");
}

/// The raw bytes stored at `key`, if any.
pub fn raw_get(con: &mut redis::Connection, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query(con).expect("GET")
}

/// The ids `load_all::<T>` returns (which must report no problem).
pub fn ids<T: Entity>(cache: &Cache) -> Vec<String> {
    let (items, report) = cache.load_all::<T>().expect("load_all");
    assert!(report.is_clean(), "{report:?}");
    items.iter().map(|t| t.id().to_string()).collect()
}

/// `Counter { id, value }`.
pub fn counter_v(id: &str, value: u64) -> Counter {
    Counter { id: id.into(), value }
}

/// Every log line of this process (`"LEVEL message"`) since the first
/// [`capture_logs`].
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        LOG.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{} {}", record.level(), record.args()));
    }
    fn flush(&self) {}
}

/// Installs a logger that keeps every line at every level, once per
/// process (`cargo test` runs many tests in one process, nextest one each):
/// the tests that check what reaches the log read it with [`logged`].
pub fn capture_logs() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&Capture).expect("no other logger in the test binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// The lines logged since [`capture_logs`] (in this process: with
/// `cargo test`, other tests' lines too).
pub fn logged() -> Vec<String> {
    LOG.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
