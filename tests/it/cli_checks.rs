//! The `tradecache` CLI's coverage of the whole layout: market-data series
//! in backups, the open/closed indexes in `verify`, a trader that does not
//! exist, and orphan event logs (an id's log without its snapshot).

use std::time::Duration;

use crate::cli::{cfg, dump, findings, ok, order, run, stderr, stdout, write_orders, NOW_NS};
use crate::harness::RedisServer;
use tradecache::model::{Bar, OrderStatus, QuoteTick, TradeTick, UnixNanos};
use tradecache::Cache;

/// export → import keeps the market-data series: quote, trade and bar
/// lists come back byte for byte, and the library reads them.
#[test]
fn cli_export_import_round_trips_market_data() {
    let source = RedisServer::start();
    let cache = Cache::open(cfg(source.port(), "MD")).unwrap();
    write_orders(&cache, &[order("O-1", OrderStatus::Accepted, NOW_NS, 2)]);
    for i in 1..=5 {
        cache.append_market_data(&QuoteTick::example("BTCUSDT-PERP.BINANCE", UnixNanos(i))).unwrap();
        cache.append_market_data(&TradeTick::example("ETHUSDT-PERP.BINANCE", UnixNanos(i))).unwrap();
        cache
            .append_market_data(&Bar::example("BTCUSDT-PERP.BINANCE-1-MINUTE-LAST-EXTERNAL", UnixNanos(i)))
            .unwrap();
    }
    cache.flush(Duration::from_secs(10)).unwrap();
    cache.close(Duration::from_secs(5)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("md.jsonl");
    let f = file.to_str().unwrap();
    ok(run(&source, &["-t", "MD", "export", "-o", f]));
    let target = RedisServer::start();
    ok(run(&target, &["-t", "MD", "import", "-f", f]));
    let (a, b) = (dump(&source, "trader-MD:*"), dump(&target, "trader-MD:*"));
    for series in [
        "trader-MD:quotes:BTCUSDT-PERP.BINANCE:events",
        "trader-MD:trades:ETHUSDT-PERP.BINANCE:events",
        "trader-MD:bars:BTCUSDT-PERP.BINANCE-1-MINUTE-LAST-EXTERNAL:events",
    ] {
        assert_eq!(a.get(series.as_bytes()).map(Vec::len), Some(5), "{series} in the source");
        assert_eq!(b.get(series.as_bytes()), a.get(series.as_bytes()), "{series} restored exactly");
    }
    assert!(a == b, "the imported state differs from the exported one");
    let again = Cache::open(cfg(target.port(), "MD")).unwrap();
    let (ticks, _) = again.load_ticks::<QuoteTick>("BTCUSDT-PERP.BINANCE", 10).unwrap();
    assert_eq!(ticks.len(), 5);
    // A series has no snapshot by design: verify finds nothing wrong.
    ok(run(&target, &["-t", "MD", "verify"]));
}

/// `verify` checks each snapshot's open/closed state against
/// `index:{c}:open` / `index:{c}:closed`, and `--repair` puts it back.
#[test]
fn cli_verify_checks_the_open_and_closed_indexes() {
    let server = RedisServer::start();
    let cache = Cache::open(cfg(server.port(), "T1")).unwrap();
    write_orders(
        &cache,
        &[
            order("O-OPEN", OrderStatus::Accepted, NOW_NS, 1),
            order("O-DONE", OrderStatus::Filled, NOW_NS, 1),
            order("O-ALSO", OrderStatus::Canceled, NOW_NS, 1),
        ],
    );
    cache.close(Duration::from_secs(5)).unwrap();
    ok(run(&server, &["-t", "T1", "verify"]));
    let mut con = server.client();
    let _: () =
        redis::cmd("ZREM").arg("trader-T1:index:orders:closed").arg("O-DONE").query(&mut con).unwrap();
    let _: () = redis::cmd("SREM").arg("trader-T1:index:orders:open").arg("O-OPEN").query(&mut con).unwrap();
    let _: () = redis::cmd("SADD").arg("trader-T1:index:orders:open").arg("O-ALSO").query(&mut con).unwrap();

    let o = run(&server, &["-t", "T1", "verify", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let f = findings(&o);
    for (kind, key) in [
        ("closed-not-in-closed-index", "trader-T1:orders:O-DONE"),
        ("open-not-in-open-index", "trader-T1:orders:O-OPEN"),
        ("closed-in-open-index", "trader-T1:orders:O-ALSO"),
    ] {
        assert!(f.contains(&(kind.to_string(), key.to_string())), "{kind} {key} not in {f:?}");
    }
    assert_eq!(f.len(), 3, "{f:?}");

    let o = ok(run(&server, &["-t", "T1", "verify", "--repair"]));
    assert!(stdout(&o).contains("repaired 3 finding(s)"), "{}", stdout(&o));
    ok(run(&server, &["-t", "T1", "verify"]));
    let open: Vec<String> =
        redis::cmd("SMEMBERS").arg("trader-T1:index:orders:open").query(&mut con).unwrap();
    assert_eq!(open, ["O-OPEN"]);
    let closed: Vec<String> =
        redis::cmd("ZRANGE").arg("trader-T1:index:orders:closed").arg(0).arg(-1).query(&mut con).unwrap();
    assert_eq!(closed.len(), 2, "{closed:?}");
    assert!(closed.contains(&"O-DONE".to_string()));
}

/// A trader with no keys at all is an error (exit 2, a clear message) for
/// `verify`, `export`, `stats` and `purge`, not an empty success.
#[test]
fn cli_an_unknown_trader_is_an_error() {
    let server = RedisServer::start();
    let cache = Cache::open(cfg(server.port(), "REAL")).unwrap();
    write_orders(&cache, &[order("O-1", OrderStatus::Accepted, NOW_NS, 1)]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.jsonl");
    for args in [
        &["-t", "NOBODY", "verify"][..],
        &["-t", "NOBODY", "export", "-o", file.to_str().unwrap()],
        &["-t", "NOBODY", "stats"],
        &["-t", "NOBODY", "purge", "--older-than", "1d"],
    ] {
        let o = run(&server, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stdout(&o));
        assert!(stderr(&o).contains("no keys under trader-NOBODY:"), "{args:?}: {}", stderr(&o));
    }
    assert!(!file.exists() || std::fs::read(&file).unwrap().is_empty(), "no backup written");
    ok(run(&server, &["-t", "REAL", "verify"]));
    ok(run(&server, &["-t", "REAL", "stats"]));
}

fn event(id: &str, event_id: u64) -> tradecache::model::OrderEvent {
    tradecache::model::OrderEvent {
        event_id,
        client_order_id: tradecache::Ident::new(id).unwrap(),
        ts_event: UnixNanos(event_id),
        kind: tradecache::model::OrderEventKind::Canceled,
    }
}

/// An event appended after its entity was deleted is kept (acknowledged,
/// returned by `get_events`) but is an orphan: `verify` exits 1 naming it,
/// `--repair` deletes it, and a log whose snapshot exists is left alone.
#[test]
fn cli_verify_reports_and_repairs_an_orphan_log() {
    let server = RedisServer::start();
    let cache = Cache::open(cfg(server.port(), "T1")).unwrap();
    write_orders(
        &cache,
        &[
            order("O-GONE", OrderStatus::Accepted, NOW_NS, 2),
            order("O-KEEP", OrderStatus::Accepted, NOW_NS, 2),
        ],
    );
    cache.delete::<tradecache::model::Order>("O-GONE").unwrap();
    let late = event("O-GONE", 3);
    cache.append("O-GONE", &late).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let kept = cache.get_events::<tradecache::model::OrderEvent>("O-GONE").unwrap();
    assert_eq!(kept, [late], "an acknowledged event is never hidden");
    assert!(cache.load().unwrap().orders.iter().all(|o| o.client_order_id.as_str() != "O-GONE"));

    let o = run(&server, &["-t", "T1", "verify", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let f = findings(&o);
    assert_eq!(f, [("orphan-log".to_string(), "trader-T1:orders:O-GONE:events".to_string())], "{f:?}");

    let o = ok(run(&server, &["-t", "T1", "verify", "--repair"]));
    assert!(stdout(&o).contains("repaired 1 finding(s)"), "{}", stdout(&o));
    ok(run(&server, &["-t", "T1", "verify"]));
    let after = dump(&server, "trader-T1:*");
    assert!(!after.contains_key(&b"trader-T1:orders:O-GONE:events"[..]), "the orphan is gone");
    assert_eq!(after[&b"trader-T1:orders:O-KEEP:events"[..]].len(), 2, "a log with its snapshot stays");

    // An orphan whose snapshot is written again before the repair is no
    // orphan any more: it is kept.
    cache.delete::<tradecache::model::Order>("O-KEEP").unwrap();
    cache.append("O-KEEP", &event("O-KEEP", 3)).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(run(&server, &["-t", "T1", "verify"]).status.code(), Some(1));
    write_orders(&cache, &[order("O-KEEP", OrderStatus::Accepted, NOW_NS, 0)]);
    ok(run(&server, &["-t", "T1", "verify", "--repair"]));
    assert!(dump(&server, "trader-T1:*").contains_key(&b"trader-T1:orders:O-KEEP:events"[..]));
    cache.close(Duration::from_secs(5)).unwrap();
}

/// `purge` removes the orphan logs of the collections it purges (listed in
/// a dry run), and no log whose snapshot exists.
#[test]
fn cli_purge_removes_orphan_logs() {
    let server = RedisServer::start();
    let cache = Cache::open(cfg(server.port(), "T1")).unwrap();
    write_orders(
        &cache,
        &[order("O-GONE", OrderStatus::Filled, NOW_NS, 2), order("O-OPEN", OrderStatus::Accepted, NOW_NS, 2)],
    );
    cache.delete::<tradecache::model::Order>("O-GONE").unwrap();
    cache.append("O-GONE", &event("O-GONE", 3)).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();

    let o = ok(run(&server, &["-t", "T1", "purge", "--older-than", "30d"]));
    assert!(stdout(&o).contains("would delete orphan log trader-T1:orders:O-GONE:events"), "{}", stdout(&o));
    assert!(dump(&server, "trader-T1:*").contains_key(&b"trader-T1:orders:O-GONE:events"[..]), "dry run");
    let o = ok(run(&server, &["-t", "T1", "purge", "--older-than", "30d", "--execute"]));
    assert!(stdout(&o).contains("and 1 orphan event log(s)"), "{}", stdout(&o));
    let after = dump(&server, "trader-T1:*");
    assert!(!after.contains_key(&b"trader-T1:orders:O-GONE:events"[..]));
    assert_eq!(after[&b"trader-T1:orders:O-OPEN:events"[..]].len(), 2);
    ok(run(&server, &["-t", "T1", "verify"]));
    cache.close(Duration::from_secs(5)).unwrap();
}

/// `verify` reports an index set that a complete registry of collections
/// lacks (a load of every collection would not see it) and `--repair`
/// registers it; `import` registers the collections it writes.
#[test]
fn cli_verify_and_import_keep_the_registry_of_collections_complete() {
    let server = RedisServer::start();
    let cache = Cache::open(cfg(server.port(), "T1")).unwrap();
    write_orders(&cache, &[order("O-1", OrderStatus::Accepted, NOW_NS, 2)]);
    cache.close(Duration::from_secs(5)).unwrap();
    ok(run(&server, &["-t", "T1", "verify"]));
    let mut con = server.client();
    let _: () = redis::cmd("SREM").arg("trader-T1:index:").arg("orders").query(&mut con).unwrap();
    let o = run(&server, &["-t", "T1", "verify", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(findings(&o), [("index-not-in-registry".to_string(), "trader-T1:index:".to_string())]);
    let o = ok(run(&server, &["-t", "T1", "verify", "--repair"]));
    assert!(stdout(&o).contains("repaired 1 finding(s)"), "{}", stdout(&o));
    ok(run(&server, &["-t", "T1", "verify"]));

    // Exported, then imported where no cache ever opened: the registry
    // names the collection and is complete (item 7 of issue 28: its empty
    // member, the readers' trust in it, was lost, so that every reader
    // scanned the keyspace until a cache opened there).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t1.jsonl");
    let f = file.to_str().unwrap();
    ok(run(&server, &["-t", "T1", "export", "-o", f]));
    let target = RedisServer::start();
    ok(run(&target, &["-t", "T1", "import", "-f", f]));
    let mut tcon = target.client();
    let mut names: Vec<String> = redis::cmd("SMEMBERS").arg("trader-T1:index:").query(&mut tcon).unwrap();
    names.sort();
    assert_eq!(names, ["", "orders"]);
    ok(run(&target, &["-t", "T1", "verify"]));
    let again = Cache::open(cfg(target.port(), "T1")).unwrap();
    let mut names: Vec<String> = redis::cmd("SMEMBERS").arg("trader-T1:index:").query(&mut tcon).unwrap();
    names.sort();
    assert_eq!(names, ["", "orders"]);
    let found: Vec<&str> = again.collections().unwrap().iter().map(|c| c.as_str()).collect();
    assert_eq!(found, ["orders"]);
    again.close(Duration::from_secs(5)).unwrap();
}

/// Item 6 of issue 28: a collection written only with `append` (no index
/// set) is the trader's all the same: `verify` sees its log (a warning:
/// `load()` does not read a log without a value), `export` writes it,
/// `import` restores it and registers the collection, and a `clear` there
/// deletes it. Before, `export` left it out and `verify` never saw it.
#[test]
fn cli_event_only_collections_are_verified_exported_and_imported() {
    let source = RedisServer::start();
    let cache = Cache::open(cfg(source.port(), "EV")).unwrap();
    write_orders(&cache, &[order("O-1", OrderStatus::Accepted, NOW_NS, 2)]);
    let raw = tradecache::raw::Collection::new("cli-events-only").unwrap();
    for n in 1..=3u64 {
        cache
            .append_raw(
                raw,
                "E-1",
                tradecache::raw::RawValue::encode(&n, tradecache::Encoding::MsgPack).unwrap(),
            )
            .unwrap();
    }
    cache.flush(Duration::from_secs(10)).unwrap();
    cache.close(Duration::from_secs(5)).unwrap();
    let log = "trader-EV:cli-events-only:E-1:events";
    let o = ok(run(&source, &["-t", "EV", "verify", "--json"]));
    assert_eq!(findings(&o), [("log-without-value".to_string(), log.to_string())]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ev.jsonl");
    let f = file.to_str().unwrap();
    ok(run(&source, &["-t", "EV", "export", "-o", f]));
    let target = RedisServer::start();
    ok(run(&target, &["-t", "EV", "import", "-f", f]));
    let (a, b) = (dump(&source, "trader-EV:*"), dump(&target, "trader-EV:*"));
    assert_eq!(a.get(log.as_bytes()).map(Vec::len), Some(3), "the log in the source");
    assert!(a == b, "the imported state differs from the exported one");
    let registry = |server: &RedisServer| {
        let mut names: Vec<String> =
            redis::cmd("SMEMBERS").arg("trader-EV:index:").query(&mut server.client()).unwrap();
        names.sort();
        names
    };
    assert_eq!(registry(&target), ["", "cli-events-only", "orders"]);
    assert_eq!(registry(&target), registry(&source));
    let again = Cache::open(cfg(target.port(), "EV")).unwrap();
    again.clear(Duration::from_secs(5)).unwrap();
    assert!(dump(&target, "trader-EV:*").is_empty(), "clear left {:?}", dump(&target, "trader-EV:*").keys());
    again.close(Duration::from_secs(5)).unwrap();
}

/// Item 4 of issue 28, in the CLI: a read the server refuses is an error
/// of the command, never an empty answer that looks clean. Each command
/// run as a user that may do everything but one read: `export` without
/// `SMEMBERS` wrote a backup marking every id "not indexed", `purge`
/// without `GET` found nothing to purge, `verify` without `SISMEMBER`
/// dropped its findings as "fixed since" and said the state was fine.
#[test]
fn cli_a_refused_read_fails_the_command() {
    let server = RedisServer::start();
    let cache = Cache::open(cfg(server.port(), "T1")).unwrap();
    write_orders(&cache, &[order("O-OLD", OrderStatus::Filled, 1_000_000_000, 1)]);
    cache.close(Duration::from_secs(5)).unwrap();
    let mut con = server.client();
    let _: () = redis::cmd("SADD").arg("trader-T1:index:orders").arg("O-GHOST").query(&mut con).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t1.jsonl");
    let f = file.to_str().unwrap();
    let mut wrong = Vec::new();
    for (user, refused, args) in [
        ("no-smembers", "-smembers", vec!["-t", "T1", "export", "-o", f]),
        ("no-get", "-get", vec!["-t", "T1", "purge", "--older-than", "30d"]),
        ("no-sismember", "-sismember", vec!["-t", "T1", "verify"]),
    ] {
        crate::harness::topology::acl_setuser(
            server.port(),
            user,
            &format!("on >pw-{user} ~* +@all {refused}"),
        );
        let url = format!("redis://{user}:pw-{user}@127.0.0.1:{}/", server.port());
        let o = crate::cli::run_env(&server, &[("REDIS_URL", url.as_str())], &args);
        if o.status.code() != Some(2) || !stderr(&o).contains("no permissions") {
            wrong.push(format!(
                "{user}: {args:?}: {:?}\nstdout:\n{}\nstderr:\n{}",
                o.status,
                stdout(&o),
                stderr(&o)
            ));
        }
    }
    assert!(wrong.is_empty(), "not refused:\n{}", wrong.join("\n"));
}

/// A snapshot key that holds another type (a list where `orders:{id}`
/// should be a string) is not a snapshot: `purge` skips it (`verify`
/// reports it) and purges the rest, rather than failing on the `GET`'s
/// `WRONGTYPE`.
#[test]
fn cli_purge_skips_a_snapshot_key_of_another_type() {
    let server = RedisServer::start();
    let cache = Cache::open(cfg(server.port(), "T1")).unwrap();
    write_orders(&cache, &[order("O-OLD", OrderStatus::Filled, 1_000_000_000_000_000_000, 2)]);
    cache.flush(Duration::from_secs(5)).unwrap();
    let _: () =
        redis::cmd("RPUSH").arg("trader-T1:orders:O-LIST").arg("x").query(&mut server.client()).unwrap();

    let o = ok(run(&server, &["-t", "T1", "purge", "--older-than", "30d", "--execute"]));
    assert!(stdout(&o).contains("1 entities"), "{}", stdout(&o));
    let after = dump(&server, "trader-T1:*");
    assert!(!after.contains_key(&b"trader-T1:orders:O-OLD"[..]), "purged");
    assert!(after.contains_key(&b"trader-T1:orders:O-LIST"[..]), "left for verify to report");
    cache.close(Duration::from_secs(5)).unwrap();
}

/// The registry of collections (`{prefix}:index:`) holding another type is
/// read as no registry (`verify` reports it), not as a refused read.
#[test]
fn cli_a_registry_of_another_type_is_no_registry() {
    let server = RedisServer::start();
    let cache = Cache::open(cfg(server.port(), "T1")).unwrap();
    write_orders(&cache, &[order("O-1", OrderStatus::Filled, NOW_NS, 1)]);
    cache.close(Duration::from_secs(5)).unwrap();
    let mut con = server.client();
    let _: () = redis::cmd("DEL").arg("trader-T1:index:").query(&mut con).unwrap();
    let _: () = redis::cmd("SET").arg("trader-T1:index:").arg("x").query(&mut con).unwrap();

    let o = ok(run(&server, &["-t", "T1", "purge", "--older-than", "30d"]));
    assert!(stdout(&o).contains("dry run"), "{}", stdout(&o));
}

/// A server's refusal of the CLI's own commands is classified by its code,
/// as the library's are: `SCAN` refused by the ACL is an authentication
/// failure, not some server error.
#[test]
fn cli_a_refused_scan_is_an_auth_failure() {
    let server = RedisServer::start();
    crate::harness::topology::acl_setuser(server.port(), "no-scan", "on >pw-no-scan ~* +@all -scan");
    let url = format!("redis://no-scan:pw-no-scan@127.0.0.1:{}/", server.port());
    let o = crate::cli::run_env(&server, &[("REDIS_URL", url.as_str())], &["-t", "T1", "inspect"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("authentication failed") && stderr(&o).contains("no permissions"),
        "{}",
        stderr(&o)
    );
}

/// A repair Redis refuses is an error naming the refusal, never counted as
/// repaired nor passed over in silence: with `SREM` forbidden to its user
/// (an ACL rule), `verify --repair` of an index entry without its value
/// fails with Redis's own reason, and the entry is still there.
#[test]
fn cli_verify_repair_refused_by_redis_is_an_error_with_its_reason() {
    let server = RedisServer::start();
    let cache = Cache::open(cfg(server.port(), "T1")).unwrap();
    write_orders(&cache, &[order("O-1", OrderStatus::Accepted, NOW_NS, 1)]);
    cache.close(Duration::from_secs(5)).unwrap();
    let mut con = server.client();
    let _: () = redis::cmd("SADD").arg("trader-T1:index:orders").arg("GHOST").query(&mut con).unwrap();
    crate::harness::topology::acl_setuser(server.port(), "fixer", "on >fixer-pw ~* &* +@all -srem");
    let url = format!("redis://fixer:fixer-pw@127.0.0.1:{}/", server.port());

    let o = crate::cli::run_env(&server, &[("REDIS_URL", url.as_str())], &["-t", "T1", "verify", "--repair"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a refused repair fails\nstdout:\n{}\nstderr:\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(!stdout(&o).contains("repaired index-without-value"), "{}", stdout(&o));
    let e = stderr(&o);
    assert!(e.contains("repairing index-without-value trader-T1:index:orders"), "{e}");
    assert!(e.to_lowercase().contains("noperm") && e.contains("srem"), "{e}");
    let members: Vec<String> = redis::cmd("SMEMBERS").arg("trader-T1:index:orders").query(&mut con).unwrap();
    assert!(members.contains(&"GHOST".to_string()), "{members:?}");
}

/// An index key of the wrong type is a finding, not a failure of `verify`:
/// it exits 1 naming the key as `wrong-type` (and the values it cannot
/// index), and `--repair` leaves that key and its values to the operator
/// instead of failing on it.
#[test]
fn cli_verify_reports_an_index_key_of_the_wrong_type() {
    let server = RedisServer::start();
    let cache = Cache::open(cfg(server.port(), "T1")).unwrap();
    write_orders(&cache, &[order("O-1", OrderStatus::Accepted, NOW_NS, 1)]);
    cache.close(Duration::from_secs(5)).unwrap();
    let mut con = server.client();
    let _: () = redis::cmd("DEL").arg("trader-T1:index:orders").query(&mut con).unwrap();
    let _: () = redis::cmd("SET").arg("trader-T1:index:orders").arg("not a set").query(&mut con).unwrap();

    let o = run(&server, &["-t", "T1", "verify", "--json"]);
    assert_eq!(o.status.code(), Some(1), "stdout:\n{}\nstderr:\n{}", stdout(&o), stderr(&o));
    let f = findings(&o);
    assert!(f.contains(&("wrong-type".to_string(), "trader-T1:index:orders".to_string())), "{f:?}");
    let o = ok(run(&server, &["-t", "T1", "verify", "--repair"]));
    assert!(stdout(&o).contains("repaired 0 finding(s)"), "{}", stdout(&o));
    let kind: String = redis::cmd("TYPE").arg("trader-T1:index:orders").query(&mut con).unwrap();
    assert_eq!(kind, "string", "the operator's to fix");

    // The same for the open index.
    let _: () = redis::cmd("SADD").arg("trader-T1:index:orders:x").arg("O-1").query(&mut con).unwrap();
    let _: () = redis::cmd("RENAME")
        .arg("trader-T1:index:orders:x")
        .arg("trader-T1:index:orders")
        .query(&mut con)
        .unwrap();
    let _: () =
        redis::cmd("SET").arg("trader-T1:index:orders:open").arg("not a set").query(&mut con).unwrap();
    let o = run(&server, &["-t", "T1", "verify", "--json"]);
    assert_eq!(o.status.code(), Some(1), "stdout:\n{}\nstderr:\n{}", stdout(&o), stderr(&o));
    let f = findings(&o);
    assert!(f.contains(&("wrong-type".to_string(), "trader-T1:index:orders:open".to_string())), "{f:?}");
    let o = ok(run(&server, &["-t", "T1", "verify", "--repair"]));
    assert!(stdout(&o).contains("repaired 0 finding(s)"), "{}", stdout(&o));
}
