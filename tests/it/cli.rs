//! The `tradecache` command-line tool (feature `cli`), every subcommand run
//! as a process against a private redis-server.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::harness::RedisServer;
use crate::harness::{config, Counter};
use redis::Value;
use tradecache::model::{
    Order, OrderEvent, OrderEventKind, OrderStatus, Position, PositionSide, Quantity, UnixNanos,
};
use tradecache::{Cache, Config, OverflowPolicy};

/// Runs the CLI against `server` with a clean environment (no REDIS_* or
/// CACHE_* from the developer's shell) plus `env`.
pub(super) fn run_env(server: &RedisServer, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tradecache"));
    for (k, _) in std::env::vars() {
        if k.starts_with("REDIS_") || k.starts_with("CACHE_") {
            c.env_remove(k);
        }
    }
    c.env("REDIS_URL", server.url()).envs(env.iter().copied()).args(args);
    c.output().expect("run tradecache")
}

pub(super) fn run(server: &RedisServer, args: &[&str]) -> Output {
    run_env(server, &[], args)
}

pub(super) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(super) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
pub(super) fn ok(o: Output) -> Output {
    assert!(o.status.success(), "exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status, stdout(&o), stderr(&o));
    o
}

/// The tests' config: writes wait for room in the channel.
pub(super) fn cfg(port: u16, trader: &str) -> Config {
    config(port, trader).overflow(OverflowPolicy::Block { timeout: Duration::from_secs(30) })
}

pub(super) const NOW_NS: u64 = 1_800_000_000_000_000_000;
const DAY_NS: u64 = 86_400_000_000_000;

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// An order with `events` events (ids 1..=events), closed or not, last
/// changed at `ts`.
pub(super) fn order(id: &str, status: OrderStatus, ts: u64, events: u64) -> (Order, Vec<OrderEvent>) {
    let mut o = Order::example(id);
    o.status = status;
    o.ts_last = UnixNanos(ts);
    o.event_count = events as u32;
    let evs = (1..=events)
        .map(|i| OrderEvent {
            event_id: i,
            client_order_id: o.client_order_id.clone(),
            ts_event: UnixNanos(ts - events + i),
            kind: if i == events && status.is_closed() {
                OrderEventKind::Canceled
            } else {
                OrderEventKind::Expired
            },
        })
        .collect();
    (o, evs)
}

pub(super) fn write_orders(cache: &Cache, orders: &[(Order, Vec<OrderEvent>)]) {
    for (o, evs) in orders {
        for e in evs {
            cache.append(&o.client_order_id, e).unwrap();
        }
        cache.put(o).unwrap();
    }
    cache.flush(Duration::from_secs(60)).unwrap();
}

fn flat_position(id: &str, closed_at: u64) -> Position {
    let mut p = Position::example(id);
    p.side = PositionSide::Flat;
    p.quantity = Quantity::new(0, 3);
    p.ts_closed = Some(UnixNanos(closed_at));
    p
}

/// Every key under `pattern` with its content (strings as bytes, lists in
/// order, sets sorted), writers' markers and the registry of collections
/// (`…:index:`, a superset of the collections: `registry.rs` tests it)
/// left out.
pub(super) fn dump(server: &RedisServer, pattern: &str) -> BTreeMap<Vec<u8>, Vec<Vec<u8>>> {
    let mut con = server.client();
    let mut keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg(pattern).query(&mut con).unwrap();
    keys.retain(|k| !k.windows(8).any(|w| w == b":writer:") && !k.ends_with(b":index:"));
    keys.sort();
    let mut out = BTreeMap::new();
    for chunk in keys.chunks(1000) {
        let mut types = redis::pipe();
        for k in chunk {
            types.cmd("TYPE").arg(k);
        }
        let types: Vec<String> = types.query(&mut con).unwrap();
        let mut p = redis::pipe();
        for (k, t) in chunk.iter().zip(&types) {
            match t.as_str() {
                "string" => p.cmd("GET").arg(k),
                "list" => p.cmd("LRANGE").arg(k).arg(0).arg(-1),
                "set" => p.cmd("SMEMBERS").arg(k),
                "zset" => p.cmd("ZRANGE").arg(k).arg(0).arg(-1).arg("WITHSCORES"),
                other => panic!("{other}"),
            };
        }
        let values: Vec<Value> = p.query(&mut con).unwrap();
        for ((k, t), v) in chunk.iter().zip(&types).zip(values) {
            let mut items: Vec<Vec<u8>> = match v {
                Value::BulkString(b) => vec![b],
                Value::Array(a) | Value::Set(a) => a
                    .into_iter()
                    .map(|x| match x {
                        Value::BulkString(b) => b,
                        other => panic!("{other:?}"),
                    })
                    .collect(),
                other => panic!("{other:?}"),
            };
            if t == "set" {
                items.sort();
            }
            out.insert(k.clone(), items);
        }
    }
    out
}

/// `inspect` without a trader lists every trader and instance with key
/// counts (what a new user tries first); with one, keys by collection; with
/// a collection and an id, the value and its events as JSON.
#[test]
fn inspect_lists_traders_then_collections_then_values() {
    let server = RedisServer::start();
    let a = Cache::open(cfg(server.port(), "DEMO-001")).unwrap();
    write_orders(&a, &[order("O-1", OrderStatus::Canceled, NOW_NS, 2)]);
    a.put(&Position::example("P-1")).unwrap();
    a.flush(Duration::from_secs(5)).unwrap();
    let b =
        Cache::open(cfg(server.port(), "QUICKSTART-001").instance_id("I1").use_instance_id(true)).unwrap();
    b.put(&Counter { id: "C-1".into(), value: 7 }).unwrap();
    b.flush(Duration::from_secs(5)).unwrap();

    let out = stdout(&ok(run(&server, &["inspect"])));
    assert!(out.contains("2 trader(s)/instance(s)"), "{out}");
    let line = |t: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(t))
            .unwrap_or_else(|| panic!("{t}: {out}"))
            .to_string()
    };
    let demo = line("DEMO-001");
    // O-1, its log, P-1, two index sets, the closed-orders and
    // open-positions indexes, the registry of collections, the writer
    // marker.
    assert!(
        demo.contains(" 9 ")
            && demo.contains("orders=1")
            && demo.contains("orders (event logs)=1")
            && demo.contains("registry=1"),
        "{demo}"
    );
    let quick = line("QUICKSTART-001");
    assert!(quick.contains(" I1 ") && quick.contains("counters=1"), "{quick}");

    let out = stdout(&ok(run(&server, &["--trader", "DEMO-001", "inspect"])));
    assert!(out.contains("trader-DEMO-001:*: 8 keys"), "{out}");
    let orders = out.lines().find(|l| l.trim_start().starts_with("orders")).unwrap();
    assert!(
        orders.contains("1 values") && orders.contains("1 event logs") && orders.contains("1 ids indexed"),
        "{orders}"
    );
    assert!(out.contains("writer main"), "{out}");

    let out = stdout(&ok(run(&server, &["-t", "DEMO-001", "inspect", "orders", "O-1"])));
    let value = out.lines().find(|l| l.starts_with("trader-DEMO-001:orders:O-1 = ")).expect(&out);
    let json: serde_json::Value = serde_json::from_str(value.split_once(" = ").unwrap().1).unwrap();
    assert_eq!(json["id"], "O-1"); // stored field names are short (docs/usage.md, stored schema)
    assert_eq!(json["st"], "Canceled");
    assert!(out.contains("trader-DEMO-001:orders:O-1:events (2 events)"), "{out}");
    assert!(out.contains("[1] ") && out.contains("\"Canceled\""), "{out}");

    // The instance through the environment, like the library.
    let env = [
        ("CACHE_TRADER_ID", "QUICKSTART-001"),
        ("CACHE_INSTANCE_ID", "I1"),
        ("CACHE_USE_INSTANCE_ID", "true"),
    ];
    let out = stdout(&ok(run_env(&server, &env, &["inspect", "counters"])));
    assert!(out.contains("trader-QUICKSTART-001:I1:counters:C-1 = {\"id\":\"C-1\",\"value\":7}"), "{out}");

    let o = run(&server, &["-t", "NOBODY", "inspect", "orders"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nothing under trader-NOBODY:orders"), "{}", stderr(&o));
}

/// `stats`: key counts, an estimate of memory, the writer marker with its
/// epoch and batch, and the server's persistence and replication status.
#[test]
fn stats_shows_counts_memory_marker_and_redis_status() {
    let server = RedisServer::start();
    let cache = Cache::open(cfg(server.port(), "T1")).unwrap();
    let orders: Vec<_> = (0..200).map(|i| order(&format!("O-{i}"), OrderStatus::Filled, NOW_NS, 3)).collect();
    write_orders(&cache, &orders);
    let o = ok(run(&server, &["-t", "T1", "stats", "--json"]));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["collections"]["orders"]["values"], 200);
    assert_eq!(j["collections"]["orders"]["event_logs"], 200);
    assert_eq!(j["collections"]["orders"]["indexed"], 200);
    let mem = j["memory"]["estimated_bytes"].as_u64().unwrap();
    assert!(mem > 200 * 100 && mem < 10 << 20, "{mem}");
    let w = &j["writers"][0];
    assert_eq!(w["writer_id"], "main");
    let mut con = server.client();
    let marker: String = redis::cmd("GET").arg("trader-T1:writer:main").query(&mut con).unwrap();
    assert_eq!(w["marker"], marker.as_str());
    assert_eq!(format!("{}:{}", w["epoch"], w["batch"]), marker);
    assert!(w["opened_s_ago"].as_u64().unwrap() < 600);
    assert!(w["idle_s"].as_i64().is_some());
    assert_eq!(j["redis"]["role"], "master");
    assert_eq!(j["redis"]["aof_last_write_status"], "ok");
    assert!(j["redis"]["maxmemory"].as_str().is_some());

    // The text view, twice with --watch.
    let out = stdout(&ok(run(&server, &["-t", "T1", "stats", "--watch", "1", "--count", "2"])));
    assert_eq!(out.matches("trader-T1: 403 keys").count(), 2, "{out}");
    assert!(out.contains("writer main") && out.contains("redis: role master"), "{out}");
    cache.close(Duration::from_secs(5)).unwrap();
}

pub(super) fn findings(o: &Output) -> Vec<(String, String)> {
    stdout(o)
        .lines()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            (j["kind"].as_str().unwrap().to_string(), j["key"].as_str().unwrap().to_string())
        })
        .collect()
}

/// `verify` exits 0 on a clean state and 1 on each kind of problem, naming
/// the key; `--repair` fixes the ones with a single right answer.
#[test]
fn verify_finds_each_problem_and_repairs_what_it_can() {
    let server = RedisServer::start();
    let cache = Cache::open(cfg(server.port(), "T1")).unwrap();
    let orders: Vec<_> =
        (0..20).map(|i| order(&format!("O-{i}"), OrderStatus::Accepted, NOW_NS, 3)).collect();
    write_orders(&cache, &orders);
    cache.close(Duration::from_secs(5)).unwrap();
    let o = ok(run(&server, &["-t", "T1", "verify"]));
    assert!(
        stdout(&o).contains("20 values, 20 event logs (60 events), 1 index sets checked: 0 problem(s)"),
        "{}",
        stdout(&o)
    );

    let mut con = server.client();
    let ev = |con: &mut redis::Connection, k: &str, i: i64| -> Vec<u8> {
        redis::cmd("LINDEX").arg(k).arg(i).query(con).unwrap()
    };
    // An index entry without its value.
    let _: () = redis::cmd("SADD").arg("trader-T1:index:orders").arg("GHOST").query(&mut con).unwrap();
    // A value without its index entry.
    let mut o_new = orders[1].0.clone();
    o_new.client_order_id = tradecache::Ident::new("O-NEW").unwrap();
    let bytes = rmp_serde::to_vec_named(&o_new).unwrap();
    let _: () = redis::cmd("SET").arg("trader-T1:orders:O-NEW").arg(bytes).query(&mut con).unwrap();
    // A repeated event (a replay that should not have been).
    let first = ev(&mut con, "trader-T1:orders:O-2:events", 0);
    let _: () = redis::cmd("RPUSH").arg("trader-T1:orders:O-2:events").arg(first).query(&mut con).unwrap();
    // Events out of order.
    let e3 = ev(&mut con, "trader-T1:orders:O-3:events", 2);
    let _: () = redis::cmd("LPUSH").arg("trader-T1:orders:O-3:events").arg(e3).query(&mut con).unwrap();
    let _: () = redis::cmd("RPOP").arg("trader-T1:orders:O-3:events").query(&mut con).unwrap();
    // A value that is not what tradecache wrote.
    let _: () =
        redis::cmd("SET").arg("trader-T1:orders:O-4").arg(&b"\x92garbage"[..]).query(&mut con).unwrap();
    // A log without a value: an orphan.
    let _: () = redis::cmd("RPUSH")
        .arg("trader-T1:orders:O-LOST:events")
        .arg(ev(&mut con, "trader-T1:orders:O-5:events", 0))
        .query(&mut con)
        .unwrap();

    let o = run(&server, &["-t", "T1", "verify", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let f = findings(&o);
    for (kind, key) in [
        ("index-without-value", "trader-T1:index:orders"),
        ("value-without-index", "trader-T1:orders:O-NEW"),
        ("duplicate-event", "trader-T1:orders:O-2:events"),
        ("out-of-order-event", "trader-T1:orders:O-3:events"),
        ("undecodable", "trader-T1:orders:O-4"),
        ("orphan-log", "trader-T1:orders:O-LOST:events"),
        // Written by hand, so not in the open index load_open() reads.
        ("open-not-in-open-index", "trader-T1:orders:O-NEW"),
    ] {
        assert!(f.contains(&(kind.to_string(), key.to_string())), "{kind} {key} not in {f:?}");
    }
    assert_eq!(f.len(), 7, "{f:?}");

    let o = ok(run(&server, &["-t", "T1", "verify", "--repair"]));
    assert!(stdout(&o).contains("repaired 5 finding(s)"), "{}", stdout(&o));
    let o = run(&server, &["-t", "T1", "verify", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let left: Vec<String> = findings(&o).into_iter().map(|(k, _)| k).collect();
    assert_eq!(left, ["undecodable", "out-of-order-event"], "{left:?}");
    // The repairs: GHOST unindexed, O-NEW indexed, O-2's log without the repeat.
    let members: Vec<String> = redis::cmd("SMEMBERS").arg("trader-T1:index:orders").query(&mut con).unwrap();
    assert!(!members.contains(&"GHOST".to_string()) && members.contains(&"O-NEW".to_string()));
    let len: usize = redis::cmd("LLEN").arg("trader-T1:orders:O-2:events").query(&mut con).unwrap();
    assert_eq!(len, 3);
}

/// export → import round-trips a 100,000-order state exactly: every value,
/// event log and index set byte for byte. Timings are printed.
#[test]
fn export_import_round_trips_100k_orders_exactly() {
    const N: usize = 100_000;
    let source = RedisServer::start();
    let cache = Cache::open(cfg(source.port(), "BIG")).unwrap();
    let orders: Vec<_> = (0..N)
        .map(|i| {
            let status = if i % 3 == 0 { OrderStatus::Filled } else { OrderStatus::Accepted };
            order(&format!("O-{i:06}"), status, NOW_NS + i as u64 * 1000, 2)
        })
        .collect();
    write_orders(&cache, &orders);
    cache.put(&Position::example("P-1")).unwrap();
    cache.flush(Duration::from_secs(60)).unwrap();
    cache.close(Duration::from_secs(10)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.jsonl");
    let file_s = file.to_str().unwrap();
    let t = Instant::now();
    let o = ok(run(&source, &["-t", "BIG", "export", "-o", file_s]));
    let export_s = t.elapsed();
    assert!(
        stderr(&o).contains(&format!("{} ids, {} values, {} events", N + 1, N + 1, 2 * N)),
        "{}",
        stderr(&o)
    );

    let target = RedisServer::start();
    let t = Instant::now();
    ok(run(&target, &["-t", "BIG", "import", "-f", file_s]));
    let import_s = t.elapsed();
    let size = std::fs::metadata(&file).unwrap().len();
    eprintln!(
        "CLI-TIMING | {N} orders, {} events, {:.1} MB of JSON lines | export {:.2} s | import {:.2} s | (debug build of the CLI)",
        2 * N,
        size as f64 / 1e6,
        export_s.as_secs_f64(),
        import_s.as_secs_f64()
    );
    let (a, b) = (dump(&source, "trader-BIG:*"), dump(&target, "trader-BIG:*"));
    assert_eq!(
        a.len(),
        2 * N + 1 + 2 + 3,
        "orders, logs, a position, two index sets, three open/closed indexes"
    );
    assert!(a == b, "the imported state differs from the exported one");

    // The library loads it back the same.
    let loaded = Cache::open(cfg(target.port(), "BIG")).unwrap().load().unwrap();
    assert_eq!(loaded.orders.len(), N);
    assert!(loaded.report.is_clean());
    assert_eq!(loaded.orders[7], orders[7].0);
    assert_eq!(loaded.order_events[&orders[7].0.client_order_id], orders[7].1);
}

/// `import` refuses a trader that has state unless `--force`, refuses a
/// truncated or altered file before writing anything, and with `--force`
/// replaces the state and fences a writer still running.
#[test]
fn import_refuses_to_overwrite_and_fences_a_running_writer() {
    let server = RedisServer::start();
    let cache = Cache::open(cfg(server.port(), "T1")).unwrap();
    write_orders(
        &cache,
        &[order("O-1", OrderStatus::Filled, NOW_NS, 2), order("O-2", OrderStatus::Accepted, NOW_NS, 1)],
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t1.jsonl");
    let f = file.to_str().unwrap();
    ok(run(&server, &["-t", "T1", "export", "-o", f]));
    let before = dump(&server, "trader-T1:*");

    let o = run(&server, &["-t", "T1", "import", "-f", f]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("refusing to overwrite; --force replaces them"), "{}", stderr(&o));

    // Truncated: no end line. Altered: counts differ. Nothing is written.
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, lines[..lines.len() - 1].join("\n")).unwrap();
    let o = run(&server, &["-t", "T2", "import", "-f", cut.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("truncated"), "{}", stderr(&o));
    let fewer = dir.path().join("fewer.jsonl");
    std::fs::write(&fewer, [lines[0], lines[1], lines[lines.len() - 1]].join("\n")).unwrap();
    let o = run(&server, &["-t", "T2", "import", "-f", fewer.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("the end line says"), "{}", stderr(&o));
    assert!(dump(&server, "trader-T2:*").is_empty(), "nothing written for a bad file");

    // --force while the engine still runs: state replaced, engine fenced.
    cache.put(&Position::example("P-LATE")).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let o = ok(run(&server, &["-t", "T1", "import", "--force", "-f", f]));
    assert!(stderr(&o).contains("fenced writer trader-T1:writer:main"), "{}", stderr(&o));
    assert_eq!(dump(&server, "trader-T1:*"), before, "exactly the exported state (P-LATE gone)");
    let _ = cache.put(&Position::example("P-AFTER"));
    let e = cache.flush(Duration::from_secs(5)).unwrap_err();
    assert_eq!(e.kind(), tradecache::ErrorKind::Fenced, "{e}");
    assert!(cache.health().fenced.is_some());
    assert_eq!(dump(&server, "trader-T1:*"), before, "the fenced writer wrote nothing more");
    // A new engine opens and loads the restored state.
    let again = Cache::open(cfg(server.port(), "T1")).unwrap();
    assert_eq!(again.load().unwrap().orders.len(), 2);
}

/// `purge` lists by default, and with `--execute` deletes exactly the
/// closed orders and flat positions older than the age, with their logs and
/// index entries.
#[test]
fn purge_is_a_dry_run_until_execute() {
    let server = RedisServer::start();
    let cache = Cache::open(cfg(server.port(), "T1")).unwrap();
    let now = now_ns();
    write_orders(
        &cache,
        &[
            order("OLD-FILLED", OrderStatus::Filled, now - 40 * DAY_NS, 3),
            order("OLD-CANCELED", OrderStatus::Canceled, now - 31 * DAY_NS, 2),
            order("OLD-OPEN", OrderStatus::Accepted, now - 40 * DAY_NS, 2),
            order("NEW-FILLED", OrderStatus::Filled, now - DAY_NS, 2),
        ],
    );
    cache.put(&flat_position("P-OLD", now - 45 * DAY_NS)).unwrap();
    cache.put(&flat_position("P-NEW", now - 2 * DAY_NS)).unwrap();
    cache.put(&Position::example("P-OPEN")).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let before = dump(&server, "trader-T1:*");

    let o = ok(run(&server, &["-t", "T1", "purge", "--older-than", "30d"]));
    let out = stdout(&o);
    assert!(out.contains("dry run: 3 entities (2 with event logs)"), "{out}");
    for k in ["orders:OLD-FILLED", "orders:OLD-CANCELED", "positions:P-OLD"] {
        assert!(out.contains(&format!("would delete trader-T1:{k} ")), "{k}: {out}");
    }
    assert_eq!(dump(&server, "trader-T1:*"), before, "a dry run deletes nothing");

    let o = ok(run(&server, &["-t", "T1", "purge", "--older-than", "30d", "--orders", "--execute"]));
    assert!(stdout(&o).contains("purged 2 entities"), "{}", stdout(&o));
    let after = dump(&server, "trader-T1:*");
    for gone in
        ["orders:OLD-FILLED", "orders:OLD-FILLED:events", "orders:OLD-CANCELED", "orders:OLD-CANCELED:events"]
    {
        assert!(!after.contains_key(format!("trader-T1:{gone}").as_bytes()), "{gone}");
    }
    assert_eq!(
        after[&b"trader-T1:index:orders"[..]],
        vec![b"NEW-FILLED".to_vec(), b"OLD-OPEN".to_vec()],
        "index entries removed with them"
    );
    assert!(after.contains_key(&b"trader-T1:positions:P-OLD"[..]), "--orders leaves positions");
    ok(run(&server, &["-t", "T1", "purge", "--older-than", "30d", "--execute"]));
    assert!(!dump(&server, "trader-T1:*").contains_key(&b"trader-T1:positions:P-OLD"[..]));
    ok(run(&server, &["-t", "T1", "verify"]));
    // The engine's view agrees, and it keeps writing (purge fenced nobody).
    let snap = cache.load().unwrap();
    assert_eq!(snap.orders.len(), 2);
    assert_eq!(snap.positions.len(), 2);
    cache.put(&Position::example("P-MORE")).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
}

/// Errors are clear and exit 2: no trader where one is needed, an
/// unreachable server, a bad URL, a bad age.
#[test]
fn errors_are_clear_and_exit_2() {
    let server = RedisServer::start();
    let o = run(&server, &["verify"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("which trader?"), "{}", stderr(&o));

    let down = format!("redis://127.0.0.1:{}", crate::harness::free_port());
    let o = run(&server, &["--url", &down, "-t", "T1", "stats"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("refused"), "{}", stderr(&o));

    let o = run(&server, &["--url", "http://x", "inspect"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("url"), "{}", stderr(&o));

    let o = run(&server, &["-t", "T1", "purge", "--older-than", "30y"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("the unit must be one of"), "{}", stderr(&o));

    let o = run(&server, &["-t", "T1", "purge", "--older-than", "1d", "--dry-run", "--execute"]);
    assert_eq!(o.status.code(), Some(2));

    // A password never shows: not in errors, not in the URL printed.
    let o = run(
        &server,
        &["--url", &format!("redis://:hunter2@127.0.0.1:{}", crate::harness::free_port()), "inspect"],
    );
    assert!(!stderr(&o).contains("hunter2") && !stdout(&o).contains("hunter2"));
}
