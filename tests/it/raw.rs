//! The runtime-collection API (`tradecache::raw`): collections named at run
//! time, values as encoded bytes. A seeded model-based run interleaves raw
//! and typed writes to the same collection with deletes and `clear`, and
//! compares everything read back (raw and typed) with an in-memory model;
//! bad collection names, bad bytes and a value in the wrong encoding are
//! refused or reported; the stored keys are plain MessagePack that a plain
//! redis client reads; closed raw entities are purged; reads work in a
//! Cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::harness::topology::Cluster;
use crate::harness::*;
use tradecache::model::UnixNanos;
use tradecache::raw::{Collection, RawState, RawValue};
use tradecache::{Cache, Encoding, Entity, ErrorKind, Event, Ident, PushError};

/// A typed entity sharing its collection with raw writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Strategy {
    id: String,
    state: u32,
}

impl Entity for Strategy {
    const COLLECTION: &'static str = "raw-strategies";
    fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Step {
    n: u64,
}

impl Event for Step {
    type Of = Strategy;
    fn event_id(&self) -> u64 {
        self.n
    }
}

fn mp<T: Serialize>(v: &T) -> RawValue {
    RawValue::encode(v, Encoding::MsgPack).unwrap()
}

/// A small xorshift generator: runs are repeatable from their seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default, Clone, Debug)]
struct Ent {
    value: Option<Vec<u8>>,
    events: Vec<Vec<u8>>,
    closed: bool,
}

type Model = BTreeMap<(usize, String), Ent>;

/// A random self-describing value: nested arrays and maps of ints,
/// strings, floats, bins, nil and bools.
fn random_value(rng: &mut Rng, depth: u32) -> rmpv_like::V {
    use rmpv_like::V;
    match rng.below(if depth > 2 { 6 } else { 8 }) {
        0 => V::Nil,
        1 => V::Bool(rng.below(2) == 1),
        2 => V::Int(rng.next() as i64 >> rng.below(64)),
        3 => V::Str("é-".repeat(rng.below(40) as usize)),
        4 => V::F64(rng.below(1000) as f64 / 7.0),
        5 => V::Bin(vec![rng.below(256) as u8; rng.below(300) as usize]),
        6 => V::Arr((0..rng.below(5)).map(|_| random_value(rng, depth + 1)).collect()),
        _ => V::Map((0..rng.below(5)).map(|i| (format!("k{i}"), random_value(rng, depth + 1))).collect()),
    }
}

/// A value tree serde encodes as the MessagePack it names.
mod rmpv_like {
    use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

    pub enum V {
        Nil,
        Bool(bool),
        Int(i64),
        Str(String),
        F64(f64),
        Bin(Vec<u8>),
        Arr(Vec<V>),
        Map(Vec<(String, V)>),
    }

    impl Serialize for V {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self {
                V::Nil => s.serialize_unit(),
                V::Bool(b) => s.serialize_bool(*b),
                V::Int(i) => s.serialize_i64(*i),
                V::Str(v) => s.serialize_str(v),
                V::F64(f) => s.serialize_f64(*f),
                V::Bin(b) => s.serialize_bytes(b),
                V::Arr(items) => {
                    let mut seq = s.serialize_seq(Some(items.len()))?;
                    for i in items {
                        seq.serialize_element(i)?;
                    }
                    seq.end()
                }
                V::Map(entries) => {
                    let mut map = s.serialize_map(Some(entries.len()))?;
                    for (k, v) in entries {
                        map.serialize_entry(k, v)?;
                    }
                    map.end()
                }
            }
        }
    }
}

/// Everything read back through both APIs equals the model.
fn check(
    cache: &Cache,
    colls: &[Collection],
    model: &Model,
    con: &mut redis::Connection,
    step: usize,
) -> usize {
    let mut compared = 0;
    cache.flush(Duration::from_secs(10)).unwrap();
    let snap = cache.load_raw(colls, true).unwrap();
    assert!(snap.report.consistent && snap.report.is_clean(), "step {step}: {:?}", snap.report);
    for (ci, c) in colls.iter().enumerate() {
        let (got_c, got) = &snap.collections[ci];
        assert_eq!(got_c, c);
        let want: Vec<(String, Vec<u8>, Vec<Vec<u8>>)> = model
            .iter()
            .filter(|((i, _), e)| *i == ci && e.value.is_some())
            .map(|((_, id), e)| (id.clone(), e.value.clone().unwrap_or_default(), e.events.clone()))
            .collect();
        let got: Vec<(String, Vec<u8>, Vec<Vec<u8>>)> =
            got.iter().map(|e| (e.id.to_string(), e.value.clone(), e.events.clone())).collect();
        assert_eq!(got, want, "step {step}: load_raw of {c}");
        compared += got.len();
        // The open index: every id with a value that is not closed.
        let open: BTreeSet<String> =
            redis::cmd("SMEMBERS").arg(format!("trader-RAW-M:index:{c}:open")).query(con).unwrap();
        let want_open: BTreeSet<String> = model
            .iter()
            .filter(|((i, _), e)| *i == ci && e.value.is_some() && !e.closed)
            .map(|((_, id), _)| id.clone())
            .collect();
        assert_eq!(open, want_open, "step {step}: open index of {c}");
    }
    // Point reads, of ids with and without state.
    for ((ci, id), e) in model.iter().take(6) {
        assert_eq!(cache.get_raw(colls[*ci], id).unwrap(), e.value, "step {step}: get_raw {id}");
        assert_eq!(cache.get_events_raw(colls[*ci], id).unwrap(), e.events, "step {step}: events {id}");
    }
    // The typed view of the shared collection decodes the raw writes too.
    let (typed, events, report) = cache.load_all_with_events::<Step>().unwrap();
    assert!(report.is_clean(), "step {step}: {report:?}");
    let want: Vec<Strategy> = model
        .iter()
        .filter(|((i, _), e)| *i == 1 && e.value.is_some())
        .map(|(_, e)| rmp_serde::from_slice(e.value.as_deref().unwrap_or_default()).unwrap())
        .collect();
    assert_eq!(typed, want, "step {step}: typed load");
    for s in &typed {
        let want: Vec<Step> =
            model[&(1, s.id.clone())].events.iter().map(|b| rmp_serde::from_slice(b).unwrap()).collect();
        let got = events.get(&Ident::new(&s.id).unwrap()).cloned().unwrap_or_default();
        assert_eq!(got, want, "step {step}: typed events of {}", s.id);
    }
    let present: BTreeSet<Collection> = cache.collections().unwrap().into_iter().collect();
    let want: BTreeSet<Collection> =
        model.iter().filter(|(_, e)| e.value.is_some()).map(|((i, _), _)| colls[*i]).collect();
    assert_eq!(present, want, "step {step}: collections()");
    compared
}

#[test]
fn raw_and_typed_writes_interleaved_read_back_equal() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "RAW-M").load_chunk(7)).unwrap();
    let mut con = server.client();
    let colls = [Collection::new("raw-signals").unwrap(), Collection::new(Strategy::COLLECTION).unwrap()];
    let mut compared = 0;
    for seed in [0x9E37_79B9_7F4A_7C15u64, 42, 7_777_777] {
        let mut rng = Rng(seed);
        let mut model = Model::new();
        let mut next_event = 0u64;
        cache.clear(Duration::from_secs(10)).unwrap();
        for step in 0..600 {
            let ci = rng.below(2) as usize;
            let id = format!("E-{}", rng.below(12));
            let key = (ci, id.clone());
            match rng.below(100) {
                // A raw put: any value in the raw collection, a Strategy's
                // bytes in the shared one; sometimes closed.
                0..=29 => {
                    let value = if ci == 0 {
                        mp(&random_value(&mut rng, 0))
                    } else {
                        mp(&Strategy { id: id.clone(), state: rng.below(1000) as u32 })
                    };
                    let closed = rng.below(4) == 0;
                    cache.put_raw_with(colls[ci], &id, value.clone(), RawState::closed(closed)).unwrap();
                    let e = model.entry(key).or_default();
                    e.value = Some(value.as_bytes().to_vec());
                    e.closed = closed;
                }
                // A typed put to the shared collection.
                30..=44 => {
                    let s = Strategy { id: id.clone(), state: rng.below(1000) as u32 };
                    cache.put(&s).unwrap();
                    let e = model.entry((1, id)).or_default();
                    e.value = Some(rmp_serde::to_vec_named(&s).unwrap());
                    e.closed = false;
                }
                // Appends, raw or typed (the same bytes either way).
                45..=74 => {
                    next_event += 1;
                    let step_ev = Step { n: next_event };
                    let bytes = if ci == 0 {
                        let v = mp(&random_value(&mut rng, 1));
                        cache.append_raw(colls[0], &id, v.clone()).unwrap();
                        v.as_bytes().to_vec()
                    } else if rng.below(2) == 0 {
                        cache.append(&id, &step_ev).unwrap();
                        rmp_serde::to_vec_named(&step_ev).unwrap()
                    } else {
                        let v = mp(&step_ev);
                        cache.append_raw(colls[1], &id, v.clone()).unwrap();
                        v.as_bytes().to_vec()
                    };
                    model.entry(key).or_default().events.push(bytes);
                }
                // Deletes, raw or typed.
                75..=89 => {
                    if ci == 1 && rng.below(2) == 0 {
                        cache.delete::<Strategy>(&id).unwrap();
                    } else {
                        cache.delete_raw(colls[ci], &id).unwrap();
                    }
                    model.remove(&key);
                }
                90 => {
                    cache.clear(Duration::from_secs(10)).unwrap();
                    model.clear();
                }
                _ => compared += check(&cache, &colls, &model, &mut con, step),
            }
        }
        compared += check(&cache, &colls, &model, &mut con, usize::MAX);
    }
    // The runs compared real state, not empty collections.
    assert!(compared > 500, "{compared}");
    assert!(cache.take_dropped().is_empty());
    cache.close(Duration::from_secs(10)).unwrap();
}

#[test]
fn raw_bad_collection_names_values_and_ids_are_refused() {
    for bad in [
        "",
        "index",
        "writer",
        "stream",
        "heartbeat",
        "quotes",
        "trades",
        "bars",
        "a:b",
        "{t}",
        "a b",
        "a\u{7}",
        "café",
    ] {
        let e = Collection::new(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{bad:?}: {e}");
        assert!(e.to_string().contains("collection"), "{bad:?}: {e}");
    }
    assert!(Collection::new(&"c".repeat(257)).is_err());
    assert!(Collection::new(&"c".repeat(256)).is_ok());
    for bad in [&b""[..], b"\xc1", b"\x92\x01", b"\x01\x02", b"\xa3ab", b"\xa1\xff", b"\xdd\xff\xff\xff\xff"]
    {
        let e = RawValue::msgpack(bad.to_vec()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Codec, "{bad:x?}");
    }
    assert!(RawValue::json(b"{\"a\": 1} x".to_vec()).is_err());
    assert!(RawValue::json(b" [1, 2] ".to_vec()).is_ok());

    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "RAW-B")).unwrap();
    let c = Collection::new("raw-bad").unwrap();
    let v = RawValue::msgpack(vec![0x01]).unwrap();
    for bad_id in ["", "a:b", "a b", "{x}"] {
        assert!(matches!(cache.put_raw(c, bad_id, v.clone()), Err(PushError::InvalidId(_))), "{bad_id:?}");
        assert!(matches!(cache.append_raw(c, bad_id, v.clone()), Err(PushError::InvalidId(_))));
        assert!(matches!(cache.delete_raw(c, bad_id), Err(PushError::InvalidId(_))));
        assert_eq!(cache.get_raw(c, bad_id).unwrap_err().kind(), ErrorKind::InvalidId);
        assert_eq!(cache.get_events_raw(c, bad_id).unwrap_err().kind(), ErrorKind::InvalidId);
    }
    // A JSON value given to a MessagePack cache is refused at the call and
    // handed back, never stored; the writes around it land.
    cache.put_raw(c, "ok-1", v.clone()).unwrap();
    let json = RawValue::json(b"1".to_vec()).unwrap();
    let refused = cache.put_raw(c, "json", json.clone()).unwrap_err();
    assert!(matches!(&refused, PushError::WrongEncoding(back) if *back == json), "{refused:?}");
    assert!(refused.to_string().contains("encoding"), "{refused}");
    assert!(matches!(cache.append_raw(c, "json", json.clone()), Err(PushError::WrongEncoding(_))));
    cache.put_raw(c, "ok-2", v.clone()).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    assert!(cache.take_dropped().is_empty());
    assert_eq!(cache.get_raw(c, "json").unwrap(), None);
    assert_eq!(cache.get_raw(c, "ok-2").unwrap(), Some(vec![0x01]));
    cache.close(Duration::from_secs(5)).unwrap();
}

#[test]
fn raw_wire_format_is_plain_msgpack_under_the_documented_keys() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "RAW-W")).unwrap();
    let c = Collection::new("raw-bots").unwrap();
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Bot {
        name: String,
        qty: i64,
        tags: Vec<String>,
    }
    let bot = Bot { name: "grid".into(), qty: -3, tags: vec!["a".into()] };
    cache.put_raw(c, "B-1", mp(&bot)).unwrap();
    cache.append_raw(c, "B-1", mp(&("filled", 2u8))).unwrap();
    cache.append_raw(c, "B-1", mp(&"stopped")).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();

    let mut con = server.client();
    let raw = raw_get(&mut con, "trader-RAW-W:raw-bots:B-1").unwrap();
    // Self-describing: a map with field names, readable without our types.
    assert_eq!(raw[0], 0x83);
    assert_eq!(rmp_serde::from_slice::<Bot>(&raw).unwrap(), bot);
    let entries: Vec<Vec<u8>> =
        redis::cmd("LRANGE").arg("trader-RAW-W:raw-bots:B-1:events").arg(0).arg(-1).query(&mut con).unwrap();
    assert_eq!(entries, vec![b"\x92\xa6filled\x02".to_vec(), b"\xa7stopped".to_vec()]);
    let ids: Vec<String> = redis::cmd("SMEMBERS").arg("trader-RAW-W:index:raw-bots").query(&mut con).unwrap();
    assert_eq!(ids, vec!["B-1".to_string()]);

    // And what a plain client writes under the layout is read back.
    let _: () = redis::cmd("SET").arg("trader-RAW-W:raw-bots:B-2").arg(&b"\x2a"[..]).query(&mut con).unwrap();
    let _: () =
        redis::cmd("SADD").arg("trader-RAW-W:index:raw-bots").arg("B-2").arg("B-3").query(&mut con).unwrap();
    let snap = cache.load_raw(&[c], true).unwrap();
    let got: Vec<(&str, &[u8], usize)> =
        snap.collections[0].1.iter().map(|e| (e.id.as_str(), e.value.as_slice(), e.events.len())).collect();
    assert_eq!(got, vec![("B-1", raw.as_slice(), 2), ("B-2", &b"\x2a"[..], 0)]);
    // B-3 is in the index without a value: reported, not fatal.
    assert_eq!(snap.report.issues.len(), 1, "{:?}", snap.report);
    assert_eq!(snap.report.issues[0].key, "trader-RAW-W:raw-bots:B-3");
    cache.close(Duration::from_secs(5)).unwrap();
}

#[test]
fn raw_closed_entities_leave_the_open_index_and_are_purged() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "RAW-C")).unwrap();
    let c = Collection::new("raw-orders").unwrap();
    let v = RawValue::msgpack(vec![0xc0]).unwrap();
    cache.put_raw(c, "open", v.clone()).unwrap();
    cache
        .put_raw_with(c, "old", v.clone(), RawState::closed(true).last_updated(UnixNanos(1_000_000_000)))
        .unwrap();
    cache.append_raw(c, "old", v.clone()).unwrap();
    cache
        .put_raw_with(c, "new", v.clone(), RawState::closed(true).last_updated(UnixNanos(9_000_000_000)))
        .unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let mut con = server.client();
    let open: BTreeSet<String> =
        redis::cmd("SMEMBERS").arg("trader-RAW-C:index:raw-orders:open").query(&mut con).unwrap();
    assert_eq!(open, BTreeSet::from(["open".to_string()]));
    let purged = cache.purge_closed_raw(c, UnixNanos(5_000_000_000), Duration::from_secs(10)).unwrap();
    assert_eq!(purged.removed, vec![Ident::new("old").unwrap()]);
    assert_eq!(cache.get_raw(c, "old").unwrap(), None);
    assert!(cache.get_events_raw(c, "old").unwrap().is_empty());
    let snap = cache.load_raw(&[c], false).unwrap();
    let ids: Vec<&str> = snap.collections[0].1.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, vec!["new", "open"]);
    cache.close(Duration::from_secs(5)).unwrap();
}

#[test]
fn raw_reads_work_in_a_cluster() {
    let cluster = Cluster::start(3);
    let config = config(1, "RAW-K").cluster_nodes(cluster.seeds()).load_chunk(50);
    let cache = Cache::open(config).unwrap();
    let c = Collection::new("raw-fills").unwrap();
    for i in 0..300 {
        let id = format!("F-{i:03}");
        cache.put_raw(c, &id, mp(&i)).unwrap();
        cache.append_raw(c, &id, mp(&(i * 2))).unwrap();
    }
    assert_eq!(cache.get_raw(c, "F-007").unwrap(), Some(mp(&7).as_bytes().to_vec()));
    assert_eq!(cache.get_events_raw(c, "F-007").unwrap(), vec![mp(&14).as_bytes().to_vec()]);
    cache.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(cache.collections().unwrap(), vec![c]);
    let snap = cache.load_raw(&[c], true).unwrap();
    assert!(snap.report.consistent && snap.report.is_clean(), "{:?}", snap.report);
    let all = &snap.collections[0].1;
    assert_eq!(all.len(), 300);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.id.as_str(), format!("F-{i:03}"));
        assert_eq!(e.value, mp(&i).as_bytes());
        assert_eq!(e.events, vec![mp(&(i * 2)).as_bytes().to_vec()]);
    }
    cache.close(Duration::from_secs(10)).unwrap();
}

#[test]
fn raw_long_logs_and_parts_arrive_whole_and_in_order() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "RAW-L").load_chunk(3)).unwrap();
    let c = Collection::new("raw-accounts").unwrap();
    for i in 0..10 {
        cache.put_raw(c, &format!("A-{i}"), mp(&i)).unwrap();
    }
    // A-4's log is longer than a first slice (4,096): read on in slices.
    for n in 0..5000u32 {
        cache.append_raw(c, "A-4", mp(&n)).unwrap();
    }
    cache.append_raw(c, "A-5", mp(&"x")).unwrap();
    cache.flush(Duration::from_secs(10)).unwrap();

    let snap = cache.load_raw(&[c, c], true).unwrap();
    assert_eq!(snap.collections.len(), 1, "a collection named twice is read once");
    let all = &snap.collections[0].1;
    let ids: Vec<String> = all.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, (0..10).map(|i| format!("A-{i}")).collect::<Vec<_>>());
    let a4: Vec<Vec<u8>> = (0..5000u32).map(|n| mp(&n).as_bytes().to_vec()).collect();
    assert_eq!(all[4].events, a4);
    assert_eq!(all[5].events, vec![mp(&"x").as_bytes().to_vec()]);
    assert!(all.iter().enumerate().all(|(i, e)| i == 4 || i == 5 || e.events.is_empty()));

    // The parts: chunks of 3 in id order, the long log's entity last.
    let mut seen = Vec::new();
    let report = cache
        .load_raw_each(&[c], true, |part| {
            assert_eq!((part.attempt, part.collection), (1, c));
            seen.push(part.entities.iter().map(|e| e.id.to_string()).collect::<Vec<_>>());
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    assert!(report.consistent && report.is_clean(), "{report:?}");
    let want: Vec<Vec<&str>> = vec![
        vec!["A-0", "A-1", "A-2"],
        vec!["A-3", "A-5"],
        vec!["A-6", "A-7", "A-8"],
        vec!["A-9"],
        vec!["A-4"],
    ];
    assert_eq!(seen, want);
    // A callback that breaks is not called again.
    let mut calls = 0;
    cache
        .load_raw_each(&[c], true, |_| {
            calls += 1;
            std::ops::ControlFlow::Break(())
        })
        .unwrap();
    assert_eq!(calls, 1);
    cache.close(Duration::from_secs(5)).unwrap();
}
