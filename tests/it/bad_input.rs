//! Bad input: invalid ids, values too large or not encodable, invalid
//! configurations, and corrupt data in Redis. Each gives a clear error, a
//! dropped-write record or a load-report entry: never a panic, never a
//! silent loss.

use std::collections::HashMap;
use std::time::Duration;

use crate::harness::*;
use serde::{Deserialize, Serialize};
use tradecache::model::{Order, OrderEvent, OrderEventKind, Position, UnixNanos};
use tradecache::{Cache, Config, Entity, Error, ErrorKind, Event, IdError, PushError};

/// A user entity whose size the test chooses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Blob {
    id: String,
    #[serde(with = "bytes")]
    data: Vec<u8>,
}

impl Entity for Blob {
    const COLLECTION: &'static str = "blobs";
    fn id(&self) -> &str {
        &self.id
    }
}

/// An event whose size the test chooses, appended to a blob's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Chunk {
    n: u64,
    #[serde(with = "bytes")]
    data: Vec<u8>,
}

impl Event for Chunk {
    type Of = Blob;
    fn event_id(&self) -> u64 {
        self.n
    }
}

/// Serialized as msgpack bin / a JSON byte array, so sizes are predictable.
mod bytes {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(V)
    }
}

/// A user type whose `Serialize` fails.
#[derive(Debug, Clone, Deserialize)]
struct Unencodable {
    id: String,
}

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value refuses to be serialized"))
    }
}

impl Entity for Unencodable {
    const COLLECTION: &'static str = "unencodables";
    fn id(&self) -> &str {
        &self.id
    }
}

fn blob(id: &str, len: usize) -> Blob {
    Blob { id: id.into(), data: vec![7; len] }
}

fn llen(con: &mut redis::Connection, key: &str) -> u64 {
    redis::cmd("LLEN").arg(key).query(con).expect("LLEN")
}

#[test]
fn invalid_ids_are_refused_at_the_call() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    let long = "x".repeat(tradecache::Ident::MAX_LEN + 1);
    for bad in
        ["", "a:b", "a{b", "a}b", "a b", "tab\there", "nl\n", "nul\0", "\u{2003}em", "del\u{7f}", &long]
    {
        let err = cache.put(&Counter { id: bad.into(), value: 1 }).unwrap_err();
        let PushError::InvalidId(id_err) = &err else { panic!("{bad:?}: {err:?}") };
        assert!(err.to_string().starts_with("invalid id"), "{err}");
        match id_err {
            IdError::Empty => assert!(bad.is_empty()),
            IdError::TooLong { len, max } => assert_eq!((*len, *max), (long.len(), 256)),
            IdError::BadChar { ch, .. } => assert!(bad.contains(*ch), "{bad:?} {ch:?}"),
        }
        assert!(matches!(cache.append(bad, &Tick { n: 1 }), Err(PushError::InvalidId(_))), "{bad:?}");
        assert!(matches!(cache.delete::<Counter>(bad), Err(PushError::InvalidId(_))), "{bad:?}");
        let err = cache.load_events::<Tick>(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidId, "{bad:?}: {err}");
    }
    // Nothing was accepted, nothing reached Redis, the cache still works.
    assert_eq!(cache.stats().accepted, 0);
    let seq = cache.put(&Counter { id: "ok".into(), value: 1 }).unwrap();
    assert_eq!(seq.get(), 1);
    cache.flush(Duration::from_secs(5)).unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut server.client()).unwrap();
    assert_eq!(keys.len(), 5, "value, index, open index, registry of collections and marker only: {keys:?}");
}

/// A value over `max_value_bytes` is accepted at the call (encoding stays
/// on the flusher) and then reported: `wait`/`flush` fail with
/// `Error::Dropped` until `take_dropped` collects it, with its seq, key and
/// reason; the writes around it land.
#[test]
fn too_large_values_are_reported_to_the_caller() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1").max_value_bytes(1_000)).unwrap();
    let before = cache.put(&blob("small", 100)).unwrap();
    let big = cache.put(&blob("big", 5_000)).unwrap();
    let ev_ok = cache.append("small", &Chunk { n: 1, data: vec![1; 10] }).unwrap();
    let ev_big = cache.append("small", &Chunk { n: 2, data: vec![2; 2_000] }).unwrap();
    let after = cache.append("small", &Chunk { n: 3, data: vec![3; 10] }).unwrap();

    cache.wait(before, Duration::from_secs(5)).expect("a write before the drop is fine");
    let err = cache.flush(Duration::from_secs(5)).unwrap_err();
    let Error::Dropped { count, first } = &err else { panic!("{err:?}") };
    assert_eq!(*count, 2);
    assert_eq!(first.seq, big);
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    let text = err.to_string();
    assert!(text.contains("trader-T1:blobs:big") && text.contains("take_dropped"), "{text}");
    // Still reported for any later write, until collected.
    assert!(matches!(cache.wait(after, Duration::from_secs(5)), Err(Error::Dropped { .. })));

    let dropped = cache.take_dropped();
    assert_eq!(dropped.len(), 2, "{dropped:?}");
    assert_eq!((dropped[0].seq, dropped[0].key.as_str()), (big, "trader-T1:blobs:big"));
    assert_eq!((dropped[1].seq, dropped[1].key.as_str()), (ev_big, "trader-T1:blobs:small:events"));
    for d in &dropped {
        assert_eq!((d.class, d.writes), (ErrorKind::TooLarge, 1), "{d}");
        assert!(d.detail.contains("max_value_bytes is 1000"), "{d}");
    }
    assert!(cache.take_dropped().is_empty(), "taken once");
    cache.flush(Duration::from_secs(5)).expect("collected: flush is clean again");
    cache.wait(ev_ok, Duration::from_secs(5)).unwrap();

    let stats = cache.stats();
    assert_eq!((stats.dropped, stats.error_count("too_large")), (2, 2), "{stats:?}");
    let health = cache.health();
    assert_eq!(health.last_error_class, Some(ErrorKind::TooLarge), "{health:?}");
    assert!(health.is_healthy(), "a dropped value is not a connection problem: {health:?}");

    let mut con = server.client();
    assert!(raw_get(&mut con, "trader-T1:blobs:big").is_none());
    assert!(raw_get(&mut con, "trader-T1:blobs:small").is_some());
    let (events, _) = cache.load_events::<Chunk>("small").unwrap();
    assert_eq!(events.iter().map(|e| e.n).collect::<Vec<_>>(), vec![1, 3], "the others land, in order");
    let (blobs, report) = cache.load_all::<Blob>().unwrap();
    assert_eq!(blobs, vec![blob("small", 100)]);
    assert!(report.is_clean(), "{report:?}");
}

/// A value whose `Serialize` fails is dropped and reported the same way.
#[test]
fn unencodable_values_are_reported() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    let seq = cache.put(&Unencodable { id: "U-1".into() }).unwrap();
    let err = cache.wait(seq, Duration::from_secs(5)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Codec, "{err}");
    let dropped = cache.take_dropped();
    assert_eq!(dropped.len(), 1);
    assert_eq!((dropped[0].seq, dropped[0].class), (seq, ErrorKind::Encode));
    assert_eq!(dropped[0].key, "trader-T1:unencodables:U-1");
    assert!(dropped[0].detail.contains("refuses to be serialized"), "{}", dropped[0]);
    cache.put(&Counter { id: "A".into(), value: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
}

/// A key of the wrong type put in the trader's space by someone else:
/// Redis refuses that one command inside the transaction; it is reported
/// with its key, the rest of the batch applies, writing goes on.
#[test]
fn wrong_type_key_in_the_write_path_is_reported() {
    let server = RedisServer::start();
    let mut con = server.client();
    let _: () =
        redis::cmd("SET").arg("trader-T1:counters:A:events").arg("not a list").query(&mut con).unwrap();
    // A linger puts the writes in one batch: one RPUSH carries both.
    let cache = Cache::open(config(server.port(), "T1").buffer_interval_ms(50)).unwrap();
    let first = cache.append("A", &Tick { n: 1 }).unwrap();
    cache.append("A", &Tick { n: 2 }).unwrap();
    cache.append("B", &Tick { n: 1 }).unwrap();
    let err = cache.flush(Duration::from_secs(5)).unwrap_err();
    assert!(matches!(err, Error::Dropped { count: 2, .. }), "{err}");
    let dropped = cache.take_dropped();
    assert_eq!(dropped.iter().map(|d| d.writes).sum::<u64>(), 2, "{dropped:?}");
    for d in &dropped {
        assert_eq!((d.class, d.key.as_str()), (ErrorKind::Command, "trader-T1:counters:A:events"), "{d}");
        assert!(d.detail.contains("WRONGTYPE") || d.detail.to_lowercase().contains("wrong kind"), "{d}");
        assert!(d.seq <= first, "recorded at or before the writes: {d}");
    }
    assert_eq!(ticks(&mut con, "T1", "B"), vec![1]);
    cache.put(&Counter { id: "C".into(), value: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(cache.stats().dropped, 2);
}

/// Every invalid configuration, from code, environment or URL, is a
/// `Error::Config` at `open` (before any connection), naming the field.
#[test]
fn invalid_configurations_fail_open_clearly() {
    let server = RedisServer::start();
    let ok = || config(server.port(), "T1");
    let from_code: Vec<(&str, Config)> = vec![
        ("port", ok().port(0)),
        ("host", ok().host("bad host")),
        ("host", ok().host("")),
        ("username", ok().username("u")),
        ("db", ok().db(-1)),
        ("connect_timeout", ok().connect_timeout(Duration::ZERO)),
        ("response_timeout", ok().response_timeout(Duration::ZERO)),
        ("connect_attempts", ok().connect_attempts(0)),
        ("open_backoff", ok().open_backoff(ms(10), ms(1))),
        ("reconnect_backoff", ok().reconnect_backoff(ms(10), ms(1))),
        ("trader_id", ok().trader_id("a:b")),
        ("trader_id", ok().trader_id("")),
        ("writer_id", ok().writer_id("w w")),
        ("instance_id", ok().use_instance_id(true)),
        ("instance_id", ok().instance_id("i}")),
        ("timestamps_as_iso8601", ok().timestamps_as_iso8601(true)),
        ("max_value_bytes", ok().max_value_bytes(0)),
        ("max_value_bytes", ok().max_value_bytes(512 * 1024 * 1024 + 1)),
        ("channel_capacity", ok().channel_capacity(0)),
        ("max_batch", ok().max_batch(0)),
        ("max_pending_events", ok().max_pending_events(0)),
        ("load_chunk", ok().load_chunk(0)),
        ("tick_capacity", ok().tick_capacity(0)),
        ("bar_capacity", ok().bar_capacity(0)),
        ("overflow", ok().overflow(tradecache::OverflowPolicy::Block { timeout: Duration::ZERO })),
        ("replica_wait", ok().replica_wait(Some((0, ms(10))))),
        ("replica_wait", ok().replica_wait(Some((1, Duration::from_secs(60))))),
        ("sentinel_master", ok().sentinels([("127.0.0.1", 26379)])),
        ("sentinels", ok().sentinel_master("mymaster")),
        ("cluster_nodes", ok().sentinels([("h", 1)]).sentinel_master("m").cluster_nodes([("h", 2)])),
        ("use_trader_prefix", ok().cluster_nodes([("h", 2)]).use_trader_prefix(false)),
        ("tls_key", ok().tls(true).tls_cert("/nonexistent.pem")),
        ("idle_poll", ok().idle_poll(Duration::from_secs(3_600))),
    ];
    for (field, cfg) in from_code {
        // A configuration error, not a connect error: validated before
        // connecting.
        let err = Cache::open(cfg).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{field}: {err}");
        let Error::Config(e) = &err else { panic!("{field}: {err:?}") };
        assert!(e.mentions(field), "{field}: {err}");
    }

    let env = |pairs: &[(&str, &str)]| {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_vars(|k| map.get(k).cloned())
    };
    for (var, value) in [
        ("REDIS_PORT", "0"),
        ("REDIS_PORT", "65536"),
        ("REDIS_PORT", "http"),
        ("REDIS_HOST", "a b"),
        ("REDIS_DB", "-1"),
        ("REDIS_SSL", "maybe"),
        ("REDIS_TIMEOUT", "0"),
        ("REDIS_TIMEOUT", "NaN"),
        ("REDIS_TIMEOUT", "-1"),
        ("REDIS_URL", "http://h"),
        ("REDIS_SENTINELS", "h:0"),
        ("REDIS_CLUSTER", "[::1"),
        ("CACHE_TRADER_ID", "a:b"),
        ("CACHE_ENCODING", "yaml"),
        ("CACHE_MAX_VALUE_BYTES", "0"),
        ("CACHE_CHANNEL_CAPACITY", "-5"),
        ("CACHE_OVERFLOW", "drop"),
        ("CACHE_BLOCK_TIMEOUT_MS", "10"),
        ("CACHE_CONNECT_ATTEMPTS", "0"),
        ("CACHE_IDLE_POLL_US", "1e3"),
        ("CACHE_REPLICA_WAIT", "many"),
    ] {
        let err = env(&[(var, value)]).unwrap_err();
        assert!(err.mentions(var), "{var}={value}: {err}");
    }
    // Valid one by one, invalid together (or out of range): `open` says so.
    let cfg =
        env(&[("CACHE_IDLE_POLL_US", "3600000000"), ("REDIS_PORT", &server.port().to_string())]).unwrap();
    assert!(matches!(Cache::open(cfg), Err(Error::Config(e)) if e.mentions("idle_poll")));
    let cfg = env(&[("REDIS_USERNAME", "u"), ("REDIS_PORT", &server.port().to_string())]).unwrap();
    assert!(matches!(Cache::open(cfg), Err(Error::Config(e)) if e.mentions("username")));

    for url in [
        "",
        "redis://",
        "redis://:6379",
        "redis://h:0",
        "redis://h:99999",
        "redis://h/-1",
        "redis://h/x",
        "redis://h?db=1",
        "redis://u:p%zz@h",
        "redis://[::1",
        "redis://a:b:c",
        "unix:///tmp/redis.sock",
        "redis://h:6379/0/extra",
    ] {
        let err = Config::builder().from_url(url).unwrap_err();
        assert!(err.mentions("url"), "{url:?}: {err}");
    }
}

/// Timeouts of `Duration::MAX` mean "no limit", not a panic.
#[test]
fn huge_timeouts_do_not_panic() {
    let server = RedisServer::start();
    let cfg = config(server.port(), "T1")
        .close_timeout(Duration::MAX)
        .reconnect_backoff(Duration::MAX, Duration::MAX)
        .overflow(tradecache::OverflowPolicy::Block { timeout: Duration::MAX });
    let cache = Cache::open(cfg).unwrap();
    let seq = cache.put(&Counter { id: "A".into(), value: 1 }).unwrap();
    cache.wait(seq, Duration::MAX).unwrap();
    cache.flush(Duration::MAX).unwrap();
    cache.close(Duration::MAX).unwrap();
    let cache = Cache::open(config(server.port(), "T1").close_timeout(Duration::MAX)).unwrap();
    cache.put(&Counter { id: "A".into(), value: 2 }).unwrap();
    drop(cache); // Drop with close_timeout = MAX, Redis up: flushes and returns
    assert_eq!(counter(&mut server.client(), "T1", "A").unwrap().value, 2);
}

/// The commit marker decides what is replayed: `open` refuses one that
/// this crate did not write, naming the key, rather than guessing.
#[test]
fn corrupt_commit_marker_fails_open_clearly() {
    let server = RedisServer::start();
    let mut con = server.client();
    let marker = "trader-T1:writer:main";
    for (what, value) in [("garbage", "not a number"), ("huge", "18446744073709551615"), ("negative", "-3")] {
        let _: () = redis::cmd("SET").arg(marker).arg(value).query(&mut con).unwrap();
        let err = Cache::open(config(server.port(), "T1")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Codec, "{what}: {err}");
        assert!(err.to_string().contains(marker), "{what}: {err}");
    }
    let _: () = redis::cmd("DEL").arg(marker).query(&mut con).unwrap();
    let _: () = redis::cmd("RPUSH").arg(marker).arg("x").query(&mut con).unwrap();
    let err = Cache::open(config(server.port(), "T1")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server, "{err}");
    assert!(err.to_string().contains(marker), "{err}");
    // flush_on_start clears it; so does opening as another writer.
    Cache::open(config(server.port(), "T1").writer_id("other")).unwrap();
    let cache = Cache::open(config(server.port(), "T1").flush_on_start(true)).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
}

/// Corrupt data in Redis is reported by key in the load report (or fails a
/// strict load), never a panic, never fatal for the rest.
#[test]
fn corrupt_data_is_reported_by_key_on_load() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    let order = Order::example("O-1");
    let event = |n: u64| OrderEvent {
        event_id: n,
        client_order_id: order.client_order_id.clone(),
        ts_event: UnixNanos(n),
        kind: OrderEventKind::Canceled,
    };
    cache.put(&order).unwrap();
    cache.append("O-1", &event(1)).unwrap();
    cache.put(&Position::example("P-1")).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();

    let mut con = server.client();
    let mut cmd = |args: &[&[u8]]| {
        let mut c = redis::cmd(std::str::from_utf8(args[0]).unwrap());
        for a in &args[1..] {
            c.arg(*a);
        }
        let _: redis::Value = c.query(&mut con).unwrap();
    };
    // Event log: a garbage entry and a valid one after it.
    cmd(&[b"RPUSH", b"trader-T1:orders:O-1:events", b"\x92\xc1\xff"]);
    cmd(&[b"RPUSH", b"trader-T1:orders:O-1:events", &rmp_serde::to_vec_named(&event(2)).unwrap()]);
    // An order whose event log is a string, another with truncated JSON, an
    // empty value, one whose stored id differs from its key, and an id in
    // the index that is not a valid id.
    cmd(&[b"SET", b"trader-T1:orders:O-2", &rmp_serde::to_vec_named(&Order::example("O-2")).unwrap()]);
    cmd(&[b"SET", b"trader-T1:orders:O-2:events", b"not a list"]);
    cmd(&[b"SET", b"trader-T1:orders:O-3", b"{\"client_order_id\": \"O-3\", "]);
    cmd(&[b"SET", b"trader-T1:orders:O-4", b""]);
    cmd(&[b"SET", b"trader-T1:orders:O-5", &rmp_serde::to_vec_named(&Order::example("O-9")).unwrap()]);
    cmd(&[b"SADD", b"trader-T1:index:orders", b"O-2", b"O-3", b"O-4", b"O-5", b"bad id"]);
    // The positions index is not a set at all.
    cmd(&[b"DEL", b"trader-T1:index:positions"]);
    cmd(&[b"SET", b"trader-T1:index:positions", b"oops"]);
    // An instrument with a value of another type entirely.
    cmd(&[
        b"SET",
        b"trader-T1:instruments:I-1",
        &rmp_serde::to_vec_named(&Position::example("I-1")).unwrap(),
    ]);
    cmd(&[b"SADD", b"trader-T1:index:instruments", b"I-1"]);

    let snap = cache.load().unwrap();
    let ids: Vec<&str> = snap.orders.iter().map(|o| o.client_order_id.as_str()).collect();
    assert_eq!(ids, vec!["O-1", "O-2"], "the usable orders load: {:?}", snap.report);
    let events = &snap.order_events[&tradecache::Ident::new("O-1").unwrap()];
    assert_eq!(events.iter().map(|e| e.event_id).collect::<Vec<_>>(), vec![1, 2]);
    let mut keys: Vec<&str> = snap.report.issues.iter().map(|i| i.key.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "trader-T1:index:orders",
            "trader-T1:index:positions",
            "trader-T1:instruments:I-1",
            "trader-T1:orders:O-1:events[1]",
            "trader-T1:orders:O-2:events",
            "trader-T1:orders:O-3",
            "trader-T1:orders:O-4",
            "trader-T1:orders:O-5",
        ],
        "{:#?}",
        snap.report.issues
    );
    for issue in &snap.report.issues {
        assert!(!issue.problem.is_empty(), "{issue}");
    }
    // Another writer id: a second cache as the same writer would fence the first.
    let strict = Cache::open(config(server.port(), "T1").strict_load(true).writer_id("strict")).unwrap();
    let err = strict.load().unwrap_err();
    assert!(matches!(err, Error::Load { count: 8, .. }), "{err}");
    // The cache writes on regardless.
    cache.append("O-1", &event(3)).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(llen(&mut server.client(), "trader-T1:orders:O-1:events"), 4);
}

/// A user event that is a bare number (a newtype) under JSON encoding:
/// stored as `5`, it must load as 5, not as MessagePack's fixint `0x35`.
/// Found by tests/fuzz.rs (decode_model: `UnixNanos(0)` came back as 48).
#[test]
fn json_scalar_values_load_back() {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Seqno(u64);
    impl Event for Seqno {
        type Of = Counter;
        fn event_id(&self) -> u64 {
            self.0
        }
    }
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Flag(bool);
    impl Event for Flag {
        type Of = Blob;
        fn event_id(&self) -> u64 {
            u64::from(self.0)
        }
    }
    let server = RedisServer::start();
    let cfg = Config::debug().host("127.0.0.1").port(server.port()).trader_id("J1").connect_attempts(1);
    let cache = Cache::open(cfg).unwrap();
    for n in [0, 5, 48, 1234, u64::MAX] {
        cache.append("A", &Seqno(n)).unwrap();
    }
    cache.append("B", &Flag(true)).unwrap();
    cache.append("B", &Flag(false)).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let raw: Vec<String> = redis::cmd("LRANGE")
        .arg("trader-J1:counters:A:events")
        .arg(0)
        .arg(-1)
        .query(&mut server.client())
        .unwrap();
    assert_eq!(raw, ["0", "5", "48", "1234", "18446744073709551615"]);
    let (got, report) = cache.load_events::<Seqno>("A").unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(got, vec![Seqno(0), Seqno(5), Seqno(48), Seqno(1234), Seqno(u64::MAX)]);
    let (flags, report) = cache.load_events::<Flag>("B").unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(flags, vec![Flag(true), Flag(false)]);
}

/// A delete and a put of the same key folded into one put that cannot be
/// written (too large): the put is reported dropped, the delete still
/// applies, and `wait` on the delete is `Ok` because it is in Redis.
#[test]
fn a_delete_folded_into_a_dropped_put_still_applies() {
    let server = RedisServer::start();
    let mut con = server.client();
    // The flusher lingers 2 s after a first write before it builds a
    // batch, so that the delete and the put below fold into one.
    let cfg = config(server.port(), "T1").max_value_bytes(1000).buffer_interval(Duration::from_secs(2));
    let cache = Cache::open(cfg).unwrap();
    cache.put(&HugeCounter { id: "Y".into(), pad: "y".into() }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let delete = cache.delete::<HugeCounter>("Y").unwrap();
    let put = cache.put(&HugeCounter { id: "Y".into(), pad: "y".repeat(5000) }).unwrap();
    let err = cache.wait(put, Duration::from_secs(10)).unwrap_err();
    assert!(matches!(&err, Error::Dropped { first, .. } if first.seq == put), "{err}");
    cache.wait(delete, Duration::from_secs(10)).expect("the delete is acknowledged");
    let stored: Option<Vec<u8>> = redis::cmd("GET").arg("trader-T1:huge:Y").query(&mut con).unwrap();
    assert_eq!(stored, None, "the delete folded into the dropped put applied");
    let members: Vec<String> = redis::cmd("SMEMBERS").arg("trader-T1:index:huge").query(&mut con).unwrap();
    assert!(members.is_empty(), "{members:?}");
    let dropped = cache.take_dropped();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0].class, ErrorKind::TooLarge);
}

/// A `replace` whose value is too large: the write is reported dropped
/// (`wait` and `take_dropped` say so) and its deletion applies, as
/// `Cache::replace` documents.
#[test]
fn a_replace_too_large_is_reported_and_its_delete_applies() {
    let server = RedisServer::start();
    let mut con = server.client();
    let cache = Cache::open(config(server.port(), "T1").max_value_bytes(1000)).unwrap();
    cache.put(&HugeCounter { id: "R".into(), pad: "r".into() }).unwrap();
    cache.append("R", &HugeNote { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let seq = cache.replace(&HugeCounter { id: "R".into(), pad: "r".repeat(5000) }).unwrap();
    let err = cache.wait(seq, Duration::from_secs(10)).unwrap_err();
    assert!(matches!(&err, Error::Dropped { first, .. } if first.seq == seq), "{err}");
    let stored: Option<Vec<u8>> = redis::cmd("GET").arg("trader-T1:huge:R").query(&mut con).unwrap();
    assert_eq!(stored, None);
    let log: Vec<Vec<u8>> =
        redis::cmd("LRANGE").arg("trader-T1:huge:R:events").arg(0).arg(-1).query(&mut con).unwrap();
    assert!(log.is_empty());
    let dropped = cache.take_dropped();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0].class, ErrorKind::TooLarge);
}

/// Two puts of one key folded together, the later one too large: the
/// earlier value was never written either, so `wait` on it fails too.
#[test]
fn a_value_superseded_by_a_dropped_one_is_reported() {
    let server = RedisServer::start();
    // The flusher lingers 2 s after the first write before it builds a
    // batch, so the two puts (microseconds apart) fold into one pending
    // write. (Pausing Redis did not ensure it: the flusher could send the
    // first put alone before the second arrived, and it then applied.)
    let cfg = config(server.port(), "T1").max_value_bytes(1000).buffer_interval(Duration::from_secs(2));
    let cache = Cache::open(cfg).unwrap();
    let first = cache.put(&HugeCounter { id: "Z".into(), pad: "ok".into() }).unwrap();
    let second = cache.put(&HugeCounter { id: "Z".into(), pad: "z".repeat(5000) }).unwrap();
    let err = cache.wait(first, Duration::from_secs(10)).unwrap_err();
    assert!(matches!(&err, Error::Dropped { first: d, .. } if d.seq == first && d.writes == 2), "{err}");
    assert!(second > first);
}

/// An event of a [`HugeCounter`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct HugeNote {
    n: u64,
}

impl Event for HugeNote {
    type Of = HugeCounter;
    fn event_id(&self) -> u64 {
        self.n
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct HugeCounter {
    id: String,
    pad: String,
}

impl Entity for HugeCounter {
    const COLLECTION: &'static str = "huge";
    fn id(&self) -> &str {
        &self.id
    }
}

/// A value larger than the server's `proto-max-bulk-len` (but within
/// `max_value_bytes`) made the server close the connection, and the batch
/// carrying it was retried forever. Now it is dropped and reported, and
/// the writes around it land.
#[test]
fn a_value_larger_than_the_server_takes_is_dropped_not_retried_forever() {
    let server = RedisServer::builder().arg("proto-max-bulk-len", "1mb").start();
    let mut con = server.client();
    let cache = Cache::open(config(server.port(), "T1").max_value_bytes(4 << 20)).unwrap();
    cache.put(&counter_v("before", 1)).unwrap();
    let big = cache.put(&HugeCounter { id: "B".into(), pad: "b".repeat(1_200_000) }).unwrap();
    cache.put(&counter_v("after", 1)).unwrap();
    let err = cache.flush(Duration::from_secs(10)).unwrap_err();
    assert!(matches!(&err, Error::Dropped { first, .. } if first.seq == big), "{err}");
    let d = cache.take_dropped();
    assert!(d[0].detail.contains("proto-max-bulk-len"), "{d:?}");
    cache.flush(Duration::from_secs(10)).unwrap();
    assert!(counter(&mut con, "T1", "before").is_some() && counter(&mut con, "T1", "after").is_some());
}

/// A reconnect backoff minimum of 0 retried in a busy loop: refused.
#[test]
fn zero_backoff_is_refused() {
    let err = Cache::open(Config::builder().reconnect_backoff(Duration::ZERO, ms(10))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("reconnect_backoff"), "{err}");
}
