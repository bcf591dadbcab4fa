//! The Prometheus exposition (`Cache::write_prometheus`), read back with an
//! independent parser of the text format; the alerting rules in
//! docs/alerts.yml against the metrics we export; the `metrics` facade
//! reporter (feature `metrics`). Over 600 lines: one topic, and the
//! allocation counter and strict parser its tests share stay in one file.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::harness::RedisServer;
use crate::harness::{config, Counter};
use prometheus_parse::{LineInfo, Scrape, Value};
use tradecache::model::Position;
use tradecache::{exposition, Cache};

// --- allocation counting, for "rendering allocates nothing" ---------------

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: the thread-locals may be gone while a thread exits.
        let _ = COUNTING.try_with(|c| {
            if c.get() {
                let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
            }
        });
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = COUNTING.try_with(|c| {
            if c.get() {
                let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
            }
        });
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

// The allocator of the whole test binary (every module's tests), not only
// of this module's: it only counts on a thread inside `allocations`, and
// costs the others one thread-local read per allocation.
#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(Cell::get)
}

// --- helpers -------------------------------------------------------------

/// Parses with prometheus-parse, after checking the things it is lenient
/// about: every line is a HELP, a TYPE or a sample it recognizes, each
/// family's TYPE comes once, and its samples follow it without another
/// family in between.
fn parse_strict(text: &str) -> Scrape {
    let mut typed = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut closed = BTreeSet::new();
    for line in text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Doc { .. } => {}
            LineInfo::Type { metric_name, metric_alias, .. } => {
                let family = metric_alias.unwrap_or(metric_name);
                assert!(typed.insert(family.clone()), "TYPE of {family} twice");
                if let Some(prev) = current.replace(family) {
                    closed.insert(prev);
                }
            }
            LineInfo::Sample { metric_name, .. } => {
                let family = current.as_deref().expect("a sample before any TYPE");
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| metric_name.strip_suffix(s))
                    .filter(|b| *b == family)
                    .unwrap_or(metric_name);
                assert_eq!(base, family, "sample {line:?} outside its family's block");
                assert!(!closed.contains(base), "{base} split in two blocks");
            }
            other => panic!("line not in the text format: {line:?} ({other:?})"),
        }
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses")
}

fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{name} is {other:?}"),
        })
}

fn render(caches: &[&Cache]) -> String {
    let mut out = String::new();
    exposition::write_caches(&mut out, caches);
    out
}

// --- tests ---------------------------------------------------------------

/// Every family is present, typed and helped, with the trader and writer
/// labels, and the values are those of `stats()`/`health()`.
#[test]
fn exposition_parses_and_matches_stats() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    for i in 0..50 {
        cache.put(&Position::example(&format!("P-{i}"))).unwrap();
    }
    cache.flush(Duration::from_secs(5)).unwrap();
    let mut text = String::new();
    cache.write_prometheus(&mut text);
    let s = parse_strict(&text);

    for name in exposition::family_names() {
        assert!(s.docs.contains_key(name), "no HELP for {name}");
        assert!(
            s.samples.iter().any(|x| x.metric == name && x.labels.get("trader_id") == Some("T1")),
            "no sample of {name} for T1"
        );
    }
    let stats = cache.stats();
    let l = [("trader_id", "T1"), ("writer_id", "main")];
    assert_eq!(value(&s, "tradecache_writes_accepted_total", &l), Some(stats.accepted as f64));
    assert_eq!(value(&s, "tradecache_writes_acked_total", &l), Some(50.0));
    assert_eq!(value(&s, "tradecache_batches_total", &l), Some(stats.batches as f64));
    assert_eq!(value(&s, "tradecache_backlog", &l), Some(0.0));
    assert_eq!(value(&s, "tradecache_connected", &l), Some(1.0));
    assert_eq!(value(&s, "tradecache_healthy", &l), Some(1.0));
    assert_eq!(value(&s, "tradecache_fenced", &l), Some(0.0));
    assert_eq!(value(&s, "tradecache_last_error_timestamp_seconds", &l), Some(0.0));
    assert_eq!(value(&s, "tradecache_errors_total", &[("class", "oom")]), Some(0.0));
    assert_eq!(value(&s, "tradecache_dropped_total", &[("reason", "too_large")]), Some(0.0));
    assert!(s.samples.iter().all(|x| x.labels.get("instance_id").is_none()), "no instance: no label");

    // The histogram: cumulative, one observation per applied transaction.
    let h = s.samples.iter().find(|x| x.metric == "tradecache_ack_latency_seconds").expect("histogram");
    let Value::Histogram(buckets) = &h.value else { panic!("{:?}", h.value) };
    assert!(buckets.windows(2).all(|w| w[0].less_than < w[1].less_than && w[0].count <= w[1].count));
    let inf = buckets.last().unwrap();
    assert!(inf.less_than.is_infinite());
    assert_eq!(inf.count, stats.batches as f64);
    assert!(buckets[0].less_than > 1e-6 && buckets[0].less_than < 3e-6, "first bound 2 µs");
    let count = text
        .lines()
        .find(|l| l.starts_with("tradecache_ack_latency_seconds_count{"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap();
    assert_eq!(count.parse::<u64>().unwrap(), stats.batches);
    cache.close(Duration::from_secs(5)).unwrap();
}

/// The names of `Stats`' fields, read from its `Debug` output (so a field
/// added later shows up here without anyone listing it).
fn stats_fields(stats: &tradecache::Stats) -> Vec<String> {
    let text = format!("{stats:?}");
    let body = text.split_once('{').and_then(|(_, b)| b.rsplit_once('}')).map(|(b, _)| b).unwrap();
    let (mut depth, mut fields, mut current) = (0, Vec::new(), String::new());
    for c in body.chars() {
        match c {
            '[' | '(' | '{' => depth += 1,
            ']' | ')' | '}' => depth -= 1,
            ',' if depth == 0 => {
                fields.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    fields.push(current);
    fields.iter().filter_map(|f| f.split_once(':')).map(|(n, _)| n.trim().to_string()).collect()
}

/// Every counter of `Stats` is in the exposition, with `stats()`'s value:
/// the table below maps each field to its family, and a field missing from
/// the table fails the test (add it to `write_prometheus` and here).
#[test]
fn metrics_every_stats_counter_is_exported() {
    use tradecache::model::{Order, OrderStatus, UnixNanos};
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    let mut old = Order::example("O-OLD");
    old.status = OrderStatus::Filled;
    old.ts_last = UnixNanos(1_000_000_000);
    cache.put(&old).unwrap();
    for i in 0..5 {
        cache.put(&Position::example(&format!("P-{i}"))).unwrap();
    }
    cache.flush(Duration::from_secs(5)).unwrap();
    let purged = cache.purge_closed::<Order>(Duration::from_secs(86_400), Duration::from_secs(10)).unwrap();
    assert_eq!(purged.removed.len(), 1);
    let stats = cache.stats();
    assert_eq!(stats.purged, 1);
    let mut text = String::new();
    cache.write_prometheus(&mut text);
    let s = parse_strict(&text);
    let sum = |name: &str| -> f64 {
        s.samples
            .iter()
            .filter(|x| x.metric == name)
            .map(|x| match &x.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                other => panic!("{name} is {other:?}"),
            })
            .sum()
    };
    let errors: u64 = stats.errors.iter().map(|(_, n)| n).sum();
    // Field, family, the value `stats()` gives (None: a histogram).
    let table: &[(&str, &str, Option<u64>)] = &[
        ("accepted", "tradecache_writes_accepted_total", Some(stats.accepted)),
        ("acked", "tradecache_writes_acked_total", Some(stats.acked)),
        ("backlog", "tradecache_backlog", Some(stats.backlog)),
        ("rejected", "tradecache_writes_rejected_total", Some(stats.rejected)),
        ("batches", "tradecache_batches_total", Some(stats.batches)),
        ("commands", "tradecache_commands_total", Some(stats.commands)),
        ("coalesced", "tradecache_writes_coalesced_total", Some(stats.coalesced)),
        ("reconnects", "tradecache_reconnects_total", Some(stats.reconnects)),
        ("replays", "tradecache_replays_total", Some(stats.replays)),
        ("marker_losses", "tradecache_marker_losses_total", Some(stats.marker_losses)),
        ("purged", "tradecache_purged_total", Some(stats.purged)),
        ("dropped", "tradecache_dropped_total", Some(stats.dropped)),
        ("errors", "tradecache_errors_total", Some(errors)),
        ("batch_latency_p50_us", "tradecache_ack_latency_seconds", None),
        ("batch_latency_p99_us", "tradecache_ack_latency_seconds", None),
    ];
    let fields = stats_fields(&stats);
    assert!(fields.len() >= table.len(), "{fields:?}");
    for field in &fields {
        let Some((_, family, want)) = table.iter().find(|(f, _, _)| f == field) else {
            panic!(
                "Stats::{field} is not mapped to an exposition family: add it to write_prometheus and here"
            )
        };
        assert!(exposition::family_names().any(|n| n == *family), "{field}: no family {family}");
        assert!(s.docs.contains_key(*family), "{field}: {family} has no HELP");
        assert!(s.samples.iter().any(|x| x.metric == *family), "{field}: {family} has no sample");
        if let Some(want) = want {
            assert_eq!(sum(family), *want as f64, "{field} vs {family}");
        }
    }
    cache.close(Duration::from_secs(5)).unwrap();
}

/// Several caches in one exposition: each family once, one series per
/// cache, told apart by their labels (instance included when used).
#[test]
fn several_caches_share_one_exposition() {
    let server = RedisServer::start();
    let a = Cache::open(config(server.port(), "A")).unwrap();
    let b = Cache::open(config(server.port(), "B").instance_id("I1").use_instance_id(true)).unwrap();
    a.put(&Position::example("P-1")).unwrap();
    for i in 0..3 {
        b.put(&Position::example(&format!("P-{i}"))).unwrap();
    }
    a.flush(Duration::from_secs(5)).unwrap();
    b.flush(Duration::from_secs(5)).unwrap();
    let text = render(&[&a, &b]);
    // A second source appends its own families to the same text.
    let mut text2 = text.clone();
    text2.push_str("# HELP myapp_up The application is up.\n# TYPE myapp_up gauge\nmyapp_up 1\n");
    let s = parse_strict(&text2);
    assert_eq!(value(&s, "tradecache_writes_acked_total", &[("trader_id", "A")]), Some(1.0));
    assert_eq!(
        value(&s, "tradecache_writes_acked_total", &[("trader_id", "B"), ("instance_id", "I1")]),
        Some(3.0)
    );
    assert_eq!(value(&s, "myapp_up", &[]), Some(1.0));
    let info: Vec<_> = s.samples.iter().filter(|x| x.metric == "tradecache_info").collect();
    assert_eq!(info.len(), 2);
    assert!(info
        .iter()
        .all(|x| x.labels.get("encoding") == Some("msgpack") && x.labels.get("version").is_some()));
}

/// Dropped writes are counted by reason, errors by class, and the last
/// error's time is set.
#[test]
fn dropped_by_reason_and_errors_by_class() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1").max_value_bytes(120)).unwrap();
    cache.put(&Counter { id: "small".into(), value: 1 }).unwrap();
    let mut big = Position::example("P-BIG");
    big.id = tradecache::Ident::new(&"X".repeat(40)).unwrap();
    // A value over 120 bytes: a position with a long id is larger than that encoded.
    cache.put(&big).unwrap();
    assert!(cache.flush(Duration::from_secs(5)).is_err(), "the big one is dropped");
    let s = parse_strict(&render(&[&cache]));
    assert_eq!(value(&s, "tradecache_dropped_total", &[("reason", "too_large")]), Some(1.0));
    assert_eq!(value(&s, "tradecache_errors_total", &[("class", "too_large")]), Some(1.0));
    let at = value(&s, "tradecache_last_error_timestamp_seconds", &[]).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(at > now - 600.0 && at <= now + 1.0, "{at} vs {now}");
    assert_eq!(cache.take_dropped().len(), 1);
}

/// A fenced cache shows it: `tradecache_fenced` 1, `tradecache_healthy` 0.
#[test]
fn a_fenced_writer_shows_in_the_exposition() {
    let server = RedisServer::start();
    let old = Cache::open(config(server.port(), "T1")).unwrap();
    old.put(&Position::example("P-1")).unwrap();
    old.flush(Duration::from_secs(5)).unwrap();
    let _new = Cache::open(config(server.port(), "T1")).unwrap();
    let _ = old.put(&Position::example("P-2"));
    assert!(old.flush(Duration::from_secs(5)).is_err(), "fenced");
    let s = parse_strict(&render(&[&old]));
    assert_eq!(value(&s, "tradecache_fenced", &[]), Some(1.0));
    assert_eq!(value(&s, "tradecache_healthy", &[]), Some(0.0));
    assert_eq!(value(&s, "tradecache_errors_total", &[("class", "fenced")]), Some(1.0));
}

/// Rendering into a `String` with room allocates nothing, and reads no
/// lock the writing threads take (writes go on while it renders).
#[test]
fn rendering_allocates_nothing() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    cache.put(&Position::example("P-1")).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    // The counter works: a String without room grows.
    assert!(allocations(|| cache.write_prometheus(&mut String::new())) > 0);
    let mut out = String::with_capacity(64 * 1024);
    cache.write_prometheus(&mut out); // warm-up
    for _ in 0..3 {
        out.clear();
        let n = allocations(|| cache.write_prometheus(&mut out));
        assert_eq!(n, 0, "allocations while rendering");
        cache.put(&Position::example("P-2")).unwrap();
    }
    assert!(out.contains("tradecache_backlog{trader_id=\"T1\",writer_id=\"main\"}"));
}

// --- docs/alerts.yml -----------------------------------------------------

/// redis_exporter (oliver006/redis_exporter) series the Redis rules use.
const REDIS_EXPORTER: &[&str] = &[
    "redis_up",
    "redis_aof_enabled",
    "redis_aof_last_write_status",
    "redis_aof_last_bgrewrite_status",
    "redis_rdb_last_bgsave_status",
    "redis_memory_used_bytes",
    "redis_memory_max_bytes",
    "redis_connected_slaves",
    "redis_connected_slave_lag_seconds",
];

/// PromQL words that are not metric names.
const PROMQL: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "rate",
    "irate",
    "increase",
    "deriv",
    "delta",
    "time",
    "histogram_quantile",
    "le",
    "trader_id",
    "writer_id",
    "instance_id",
    "reason",
    "class",
];

/// The rules file loads as YAML, has Prometheus's rule-file shape, every
/// expression is balanced, and every metric it names is exported.
#[test]
fn alert_rules_refer_to_exported_metrics() {
    use yaml_rust2::{Yaml, YamlLoader};
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/alerts.yml");
    let text = std::fs::read_to_string(path).unwrap();
    let docs = YamlLoader::load_from_str(&text).expect("valid YAML");
    let groups = docs[0]["groups"].as_vec().expect("groups: a list");
    let exported: BTreeSet<String> = exposition::family_names()
        .chain(tradecache::kv::metric_families())
        .flat_map(|n| ["", "_bucket", "_sum", "_count"].map(|s| format!("{n}{s}")))
        .collect();
    let mut alerts = BTreeMap::new();
    let mut used = BTreeSet::new();
    for g in groups {
        assert!(g["name"].as_str().is_some(), "a group without a name");
        for r in g["rules"].as_vec().expect("rules: a list") {
            let name = r["alert"].as_str().expect("every rule is an alert with a name");
            assert!(alerts.insert(name.to_string(), ()).is_none(), "alert {name} twice");
            let expr = r["expr"].as_str().unwrap_or_else(|| panic!("{name}: no expr"));
            if let Yaml::String(f) = &r["for"] {
                assert!(
                    f.strip_suffix(['s', 'm', 'h']).is_some_and(|n| n.parse::<u32>().is_ok()),
                    "{name}: for {f:?}"
                );
            }
            assert!(
                ["critical", "warning"].contains(&r["labels"]["severity"].as_str().unwrap_or("")),
                "{name}: severity"
            );
            assert!(r["annotations"]["summary"].as_str().is_some(), "{name}: summary");
            let mut depth = [0i32; 3];
            for c in expr.chars() {
                match c {
                    '(' => depth[0] += 1,
                    ')' => depth[0] -= 1,
                    '[' => depth[1] += 1,
                    ']' => depth[1] -= 1,
                    '{' => depth[2] += 1,
                    '}' => depth[2] -= 1,
                    _ => {}
                }
                assert!(depth.iter().all(|d| *d >= 0), "{name}: unbalanced {expr}");
            }
            assert_eq!(depth, [0, 0, 0], "{name}: unbalanced {expr}");
            // Identifiers outside label matchers and range selectors.
            let mut word = String::new();
            let mut in_braces = 0;
            for c in expr.chars().chain([' ']) {
                if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                    word.push(c);
                    continue;
                }
                if !word.is_empty() && in_braces == 0 && !word.chars().next().unwrap().is_ascii_digit() {
                    let w = std::mem::take(&mut word);
                    if !PROMQL.contains(&w.as_str()) {
                        assert!(
                            exported.contains(&w) || REDIS_EXPORTER.contains(&w.as_str()),
                            "{name}: {w} is neither exported by tradecache nor a known redis_exporter metric"
                        );
                        used.insert(w);
                    }
                }
                word.clear();
                match c {
                    '{' | '[' => in_braces += 1,
                    '}' | ']' => in_braces -= 1,
                    _ => {}
                }
            }
        }
    }
    // The list: backlog growth, last-error age, rejected/dropped,
    // reconnect rate, ack-latency p99, and the Redis side.
    for must in [
        "tradecache_backlog",
        "tradecache_last_error_timestamp_seconds",
        "tradecache_writes_rejected_total",
        "tradecache_dropped_total",
        "tradecache_reconnects_total",
        "tradecache_ack_latency_seconds_bucket",
        "tradecache_fenced",
        "redis_aof_last_write_status",
        "redis_memory_max_bytes",
        "redis_connected_slave_lag_seconds",
        "redis_connected_slaves",
    ] {
        assert!(used.contains(must), "no rule uses {must}");
    }
}

// --- the metrics facade --------------------------------------------------

#[cfg(feature = "metrics")]
mod facade {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    };
    use metrics::{SharedString, Unit};

    use super::*;

    #[derive(Default)]
    struct Cell(AtomicU64, Mutex<Vec<f64>>);

    impl CounterFn for Cell {
        fn increment(&self, v: u64) {
            self.0.fetch_add(v, Ordering::SeqCst);
        }
        fn absolute(&self, v: u64) {
            self.0.fetch_max(v, Ordering::SeqCst);
        }
    }
    impl GaugeFn for Cell {
        fn increment(&self, v: f64) {
            self.set(f64::from_bits(self.0.load(Ordering::SeqCst)) + v);
        }
        fn decrement(&self, v: f64) {
            self.set(f64::from_bits(self.0.load(Ordering::SeqCst)) - v);
        }
        fn set(&self, v: f64) {
            self.0.store(v.to_bits(), Ordering::SeqCst);
        }
    }
    impl HistogramFn for Cell {
        fn record(&self, v: f64) {
            self.1.lock().unwrap().push(v);
        }
    }

    /// A recorder keeping every series by its name and labels.
    #[derive(Default, Clone)]
    struct Memory(Arc<Mutex<HashMap<String, Arc<Cell>>>>);

    impl Memory {
        fn cell(&self, key: &Key) -> Arc<Cell> {
            let mut labels: Vec<String> =
                key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
            labels.sort();
            let id = format!("{}{{{}}}", key.name(), labels.join(","));
            self.0.lock().unwrap().entry(id).or_default().clone()
        }
        fn get(&self, id: &str) -> Option<Arc<Cell>> {
            self.0.lock().unwrap().get(id).cloned()
        }
    }

    impl Recorder for Memory {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.cell(key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.cell(key))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(self.cell(key))
        }
    }

    /// One `report` hands every counter, gauge and the new latency
    /// observations to the application's recorder, under the exposition's
    /// names and labels.
    #[test]
    fn reporter_feeds_the_installed_recorder() {
        let server = RedisServer::start();
        let cache = Cache::open(config(server.port(), "T1")).unwrap();
        for i in 0..20 {
            cache.put(&Position::example(&format!("P-{i}"))).unwrap();
        }
        cache.flush(Duration::from_secs(5)).unwrap();
        let rec = Memory::default();
        let mut reporter = tradecache::MetricsReporter::new();
        metrics::with_local_recorder(&rec, || reporter.report(&cache));
        let l = "{trader_id=T1,writer_id=main}";
        let acked = rec.get(&format!("tradecache_writes_acked_total{l}")).expect("acked");
        assert_eq!(acked.0.load(Ordering::SeqCst), 20);
        let backlog = rec.get(&format!("tradecache_backlog{l}")).expect("backlog");
        assert_eq!(f64::from_bits(backlog.0.load(Ordering::SeqCst)), 0.0);
        let healthy = rec.get(&format!("tradecache_healthy{l}")).expect("healthy");
        assert_eq!(f64::from_bits(healthy.0.load(Ordering::SeqCst)), 1.0);
        assert!(rec.get("tradecache_dropped_total{reason=too_large,trader_id=T1,writer_id=main}").is_some());
        let h = rec.get(&format!("tradecache_ack_latency_seconds{l}")).expect("histogram");
        let batches = cache.stats().batches as usize;
        assert_eq!(h.1.lock().unwrap().len(), batches, "one observation per transaction");
        // A second report adds only the new observations.
        cache.put(&Position::example("P-X")).unwrap();
        cache.flush(Duration::from_secs(5)).unwrap();
        metrics::with_local_recorder(&rec, || reporter.report(&cache));
        assert_eq!(h.1.lock().unwrap().len(), cache.stats().batches as usize);
        assert!(h.1.lock().unwrap().iter().all(|v| *v > 0.0 && *v < 10.0));
    }
}

/// A `Kv`'s families follow a cache's in the same body, which still parses
/// strictly; its hits, misses, breaker state and writes are those of
/// `stats()`.
#[test]
fn kv_exposition_follows_the_caches() {
    use tradecache::kv::{Kv, KvConfig, Ttl};
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    let kv = Kv::open(KvConfig::builder().redis(config(server.port(), "KV")).key_prefix("app")).unwrap();
    kv.set("portfolio", "P-1", &42u64, Ttl::Policy).unwrap();
    kv.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(kv.get::<u64>("portfolio", "P-1").unwrap(), Some(42));
    assert_eq!(kv.get::<u64>("portfolio", "P-2").unwrap(), None);
    let mut out = render(&[&cache]);
    kv.write_prometheus(&mut out);
    let s = parse_strict(&out);
    for name in tradecache::kv::metric_families() {
        assert!(out.contains(&format!("# TYPE {name} ")), "{name} not written");
    }
    let stats = kv.stats();
    let l = [("key_prefix", "app")];
    assert_eq!(value(&s, "tradecache_kv_hits_total", &l), Some(stats.hits as f64));
    assert_eq!(value(&s, "tradecache_kv_misses_total", &l), Some(stats.misses as f64));
    assert!(stats.hits >= 1 && stats.misses >= 1, "{stats:?}");
    assert_eq!(value(&s, "tradecache_kv_writes_acked_total", &l), Some(stats.acked as f64));
    assert_eq!(value(&s, "tradecache_kv_breaker_state", &l), Some(0.0));
    assert_eq!(value(&s, "tradecache_kv_healthy", &l), Some(1.0));
    assert!(s
        .samples
        .iter()
        .any(|x| x.metric == "tradecache_kv_latency_seconds" && x.labels.get("op") == Some("get")));
    assert!(value(&s, "tradecache_backlog", &[("trader_id", "T1")]).is_some());
}
