//! Model-based test of the write path (issues 10 and 19): random sequences
//! of put / delete / append / `clear` / purge / flush over a handful of ids,
//! with random `max_batch` (1, 2 and 3 often) and `buffer_interval`, the
//! flusher's connection killed (`CLIENT KILL`) and Redis crashed (SIGKILL
//! and restart, `appendfsync always`) at random points. After every flush,
//! Redis is compared with a plain in-memory model: every snapshot, the
//! exact members of the index set, of the open index and of the closed
//! index (with its scores), and every event log.
//!
//! Prefixes (issue 19). Outages pause Redis (SIGSTOP) while writes pile up
//! in the flusher, which folds the puts of a key into one pending slot and
//! must still write batches that are exact sequence prefixes. A `Peek`
//! reads everything the model compares in one MULTI/EXEC while a backlog
//! may still be draining, and requires Redis to hold exactly the model
//! state after some prefix of the accepted writes: one that includes every
//! write with a seq up to `acked_seq` (read just before the peek) and no
//! write that was not accepted. The model keeps one state per accepted
//! write, tagged with its `Seq`; the history restarts at each flush and
//! `clear` (the state is known then). A crash of Redis mid-drain and an
//! engine that goes away mid-drain (the cache dropped without `close` at
//! the end of some cases) both leave whatever Redis holds at that moment,
//! so a peek at a random point is the check for both.
//!
//! The entity closes and reopens (odd values are closed, last updated at
//! `value` ms), and `purge_closed_before` (issue 15) is an operation: what
//! it returns as removed must be closed and older than the cutoff in the
//! model, and every such entity must be removed unless a write to it was
//! still pending (not yet flushed) when the purge ran. Some purges race a
//! burst of writes to other ids still in the channel (or held back by an
//! outage), followed by reopenings and appends of the purge candidates.
//! A purge's deletions interleave with writes in a way the history does
//! not model, so peeks are skipped from a purge to the next flush.
//!
//! Connection drops (issue 28). The cache talks to Redis through the
//! harness proxy, and `CutAfterReplies(n)` cuts its connection after `n`
//! more replies, at a reply boundary; `cut_sweep` cuts at every boundary
//! in turn (0, 1, 2, … replies) while bursts go out as pipelined pairs.
//! A second, smaller model (`LossOp`) deletes the commit marker and cuts
//! the connection around writes whose events equal the one before them:
//! there Redis must hold every write not reported dropped, no event twice.
//!
//! A short run with a fixed seed is part of `make test`; `make fuzz` runs
//! each with fresh seeds for `FUZZ_SECONDS`. Sequences that once failed
//! are kept below as regressions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use redis::FromRedisValue;
use serde::{Deserialize, Serialize};
use tradecache::model::UnixNanos;
use tradecache::{Cache, Entity, Event, OverflowPolicy, Seq};

use crate::harness::*;

const TRADER: &str = "M";
/// The ids random ops (and purges) work on.
const IDS: [&str; 4] = ["A", "B", "C", "D"];
/// The ids a `Burst` writes to: other keys whose writes sit in the channel
/// ahead of a purge.
const BURST_IDS: [&str; 3] = ["X", "Y", "Z"];

/// More replies than a pipelined pair of small batches gets (`MULTI`, a
/// few commands and `EXEC` each, the marker's `WATCH` and `GET` behind
/// each `EXEC`): `CutAfterReplies` cuts anywhere in such a pair.
const PAIR_REPLIES: u64 = 48;

fn all_ids() -> impl Iterator<Item = &'static str> {
    IDS.iter().chain(BURST_IDS.iter()).copied()
}

/// A counter that is closed while its value is odd, last updated at
/// `value` milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Job {
    pub(crate) id: String,
    pub(crate) value: u64,
}

impl Entity for Job {
    const COLLECTION: &'static str = "counters";
    fn id(&self) -> &str {
        &self.id
    }
    fn is_closed(&self) -> bool {
        self.value % 2 == 1
    }
    fn last_updated(&self) -> Option<UnixNanos> {
        Some(UnixNanos(self.value * 1_000_000))
    }
}

/// `Tick`, in the log of a `Job` (same collection as `Counter`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Step {
    pub(crate) n: u64,
}

impl Event for Step {
    type Of = Job;
    fn event_id(&self) -> u64 {
        self.n
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(usize, u64),
    /// `Cache::replace`: the log restarts in the same write.
    Replace(usize, u64),
    Delete(usize),
    Append(usize),
    Clear,
    /// `purge_closed_before` a cutoff in ms.
    Purge(u64),
    Flush,
    /// `CLIENT KILL` of the flusher's connection.
    Kill,
    /// SIGKILL and restart of Redis (every acknowledged write is on disk),
    /// paused or not, possibly while a backlog drains.
    Crash,
    /// SIGSTOP of Redis: the flusher's writes pile up until `EndOutage`
    /// (or a `Crash`). The runner ends an outage itself before any op that
    /// would talk to Redis and wait (flush, peek, clear, purge, kill).
    Outage,
    /// SIGCONT: the backlog starts to drain, `max_batch` messages a batch.
    EndOutage,
    /// An atomic read of everything the model compares, checked against
    /// the history of model states (a prefix of the writes).
    Peek,
    /// `n` writes (puts and appends) to `BURST_IDS`, queued in one go.
    Burst(usize),
    /// The proxy in front of Redis cuts the flusher's connection after `n`
    /// more replies (issue 28: at a reply boundary of a pipelined pair).
    CutAfterReplies(u64),
}

#[derive(Debug, Clone)]
struct Case {
    max_batch: usize,
    buffer_interval_ms: u64,
    ops: Vec<Op>,
    /// End by dropping the cache without `close` (after a peek) instead of
    /// a final flush.
    drop_at_end: bool,
}

fn id() -> impl Strategy<Value = usize> {
    0..IDS.len()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (id(), 0..1000u64).prop_map(|(i, v)| Op::Put(i, v)),
        3 => (id(), 0..1000u64).prop_map(|(i, v)| Op::Replace(i, v)),
        4 => id().prop_map(Op::Delete),
        8 => id().prop_map(Op::Append),
        1 => Just(Op::Clear),
        3 => (0..1000u64).prop_map(Op::Purge),
        4 => Just(Op::Flush),
        1 => Just(Op::Kill),
        1 => Just(Op::Crash),
        3 => Just(Op::Peek),
        2 => (0..PAIR_REPLIES).prop_map(Op::CutAfterReplies),
    ]
}

/// What may happen while Redis is paused: writes (which pile up) and a
/// crash (which also ends the pause).
fn outage_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (id(), 0..1000u64).prop_map(|(i, v)| Op::Put(i, v)),
        3 => (id(), 0..1000u64).prop_map(|(i, v)| Op::Replace(i, v)),
        3 => id().prop_map(Op::Delete),
        8 => id().prop_map(Op::Append),
        1 => (5..60usize).prop_map(Op::Burst),
        1 => Just(Op::Crash),
    ]
}

/// An outage: writes pile up, the outage ends, and then the backlog is
/// looked at (and crashed into) while it drains.
fn outage() -> impl Strategy<Value = Vec<Op>> {
    let after = prop::sample::select(vec![
        vec![Op::Peek],
        vec![Op::Peek, Op::Peek],
        vec![Op::Peek, Op::Put(0, 2), Op::Peek],
        vec![Op::Crash, Op::Peek],
        vec![Op::Peek, Op::Crash, Op::Peek],
        vec![Op::Kill, Op::Peek],
        vec![],
    ]);
    (prop::collection::vec(outage_op(), 1..12), after).prop_map(|(writes, after)| {
        let mut ops = vec![Op::Outage];
        ops.extend(writes);
        ops.push(Op::EndOutage);
        ops.extend(after);
        ops
    })
}

/// A purge racing writes still in the channel: closed (odd, old) entities
/// made clean by a flush, a burst of writes to other ids (possibly held
/// back by an outage), some of the candidates reopened, closed again or
/// appended to, then the purge.
fn purge_race() -> impl Strategy<Value = Vec<Op>> {
    let candidates = prop::collection::vec((id(), 0..100u64).prop_map(|(i, v)| Op::Put(i, 2 * v + 1)), 1..4);
    let touch = prop_oneof![
        (id(), 0..500u64).prop_map(|(i, v)| Op::Put(i, 2 * v)),
        (id(), 0..500u64).prop_map(|(i, v)| Op::Put(i, 2 * v + 1)),
        id().prop_map(Op::Append),
    ];
    (candidates, any::<bool>(), 20..200usize, prop::collection::vec(touch, 0..4), 0..1000u64).prop_map(
        |(candidates, outage, n, touches, cutoff)| {
            let mut ops = candidates;
            ops.push(Op::Flush);
            if outage {
                ops.push(Op::Outage);
            }
            ops.push(Op::Burst(n));
            ops.extend(touches);
            ops.push(Op::Purge(cutoff));
            ops
        },
    )
}

fn case() -> impl Strategy<Value = Case> {
    let segment = prop_oneof![
        12 => op().prop_map(|o| vec![o]),
        3 => outage(),
        1 => purge_race(),
    ];
    (
        prop::sample::select(vec![1usize, 1, 2, 2, 3, 3, 7, 64]),
        prop::sample::select(vec![0u64, 0, 1, 3]),
        prop::collection::vec(segment, 1..25),
        prop::bool::weighted(0.25),
    )
        .prop_map(|(max_batch, buffer_interval_ms, segments, drop_at_end)| Case {
            max_batch,
            buffer_interval_ms,
            ops: segments.into_iter().flatten().collect(),
            drop_at_end,
        })
}

/// The reference: what Redis must hold once everything is acknowledged.
#[derive(Default, Debug, Clone, PartialEq)]
struct Model {
    snaps: BTreeMap<String, u64>,
    index: BTreeSet<String>,
    open: BTreeSet<String>,
    /// Closed ids and their scores (last update, ms).
    closed: BTreeMap<String, u64>,
    logs: BTreeMap<String, Vec<u64>>,
}

impl Model {
    fn put(&mut self, id: &str, v: u64) {
        self.snaps.insert(id.into(), v);
        self.index.insert(id.into());
        if v % 2 == 1 {
            self.open.remove(id);
            self.closed.insert(id.into(), v);
        } else {
            self.open.insert(id.into());
            self.closed.remove(id);
        }
    }

    fn delete(&mut self, id: &str) {
        self.snaps.remove(id);
        self.index.remove(id);
        self.open.remove(id);
        self.closed.remove(id);
        self.logs.remove(id);
    }

    fn append(&mut self, id: &str, n: u64) {
        self.logs.entry(id.into()).or_default().push(n);
    }

    /// Everything the model compares, read in one MULTI/EXEC, so that a
    /// batch landing meanwhile is either wholly in the result or not at all.
    fn read(con: &mut redis::Connection) -> Model {
        let key = |k: String| format!("trader-{TRADER}:{k}");
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("SMEMBERS").arg(key("index:counters".into()));
        pipe.cmd("SMEMBERS").arg(key("index:counters:open".into()));
        pipe.cmd("ZRANGE").arg(key("index:counters:closed".into())).arg(0).arg(-1).arg("WITHSCORES");
        for id in all_ids() {
            pipe.cmd("GET").arg(key(format!("counters:{id}")));
            pipe.cmd("LRANGE").arg(key(format!("counters:{id}:events"))).arg(0).arg(-1);
        }
        let replies: Vec<redis::Value> = pipe.query(con).expect("MULTI/EXEC read");
        let mut replies = replies.into_iter();
        let mut next = || replies.next().expect("one reply per command");
        let index = BTreeSet::<String>::from_redis_value(next()).expect("SMEMBERS");
        let open = BTreeSet::<String>::from_redis_value(next()).expect("SMEMBERS");
        let closed = Vec::<(String, u64)>::from_redis_value(next()).expect("ZRANGE");
        let mut m = Model { index, open, closed: closed.into_iter().collect(), ..Model::default() };
        for id in all_ids() {
            // (`Job` and `Counter`, `Step` and `Tick` are stored alike.)
            if let Some(raw) = Option::<Vec<u8>>::from_redis_value(next()).expect("GET") {
                let job: Job = rmp_serde::from_slice(&raw).expect("decode snapshot");
                m.snaps.insert(id.to_string(), job.value);
            }
            let log: Vec<u64> = Vec::<Vec<u8>>::from_redis_value(next())
                .expect("LRANGE")
                .iter()
                .map(|b| rmp_serde::from_slice::<Step>(b).expect("decode event").n)
                .collect();
            if !log.is_empty() {
                m.logs.insert(id.to_string(), log);
            }
        }
        m
    }
}

/// Peeks checked, and how many of them caught Redis mid-drain (holding an
/// older prefix than the last accepted write): printed by the runner, so a
/// run shows that the prefix check saw batches landing.
static PEEKS: AtomicU64 = AtomicU64::new(0);
static PEEKS_MID_DRAIN: AtomicU64 = AtomicU64::new(0);

/// The model states since the state was last known (a flush or a clear):
/// the first is that state, then one per accepted write, with its seq.
struct History {
    states: Vec<(u64, Model)>,
    /// False from a purge to the next flush: peeks are skipped then.
    exact: bool,
}

impl History {
    fn known(model: &Model) -> History {
        History { states: vec![(0, model.clone())], exact: true }
    }

    fn wrote(&mut self, seq: Seq, model: &Model) {
        if self.exact {
            self.states.push((seq.get(), model.clone()));
        }
    }

    /// `got` must be the state after some prefix of the writes that holds
    /// every write up to `acked`: the first candidate is the last state
    /// whose seq is `acked` or lower (the base state has seq 0), and any
    /// later one will do (its writes may have landed, unacknowledged yet).
    fn check(&self, got: &Model, acked: Seq, step: usize) -> Result<(), TestCaseError> {
        let first = self.states.iter().rposition(|(seq, _)| *seq <= acked.get()).unwrap_or(0);
        let (last_seq, last) = self.states.last().expect("never empty");
        if self.states[first..].iter().any(|(_, m)| m == got) {
            PEEKS.fetch_add(1, Ordering::Relaxed);
            if got != last {
                PEEKS_MID_DRAIN.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(());
        }
        let held = self.states.iter().position(|(_, m)| m == got).map(|i| self.states[i].0);
        Err(TestCaseError::fail(format!(
            "peek at step {step}: Redis holds no prefix that includes acked seq {}\n\
             Redis: {got:?}\nstate at acked (seq {}): {:?}\nlast accepted (seq {last_seq}): {last:?}\n\
             Redis equals the state after seq {held:?} (an older prefix, or none)",
            acked.get(),
            self.states[first].0,
            self.states[first].1,
        )))
    }
}

fn run(case: Case) -> Result<(), TestCaseError> {
    let mut server = RedisServer::builder().appendfsync("always").start();
    let mut admin = server.client();
    // The cache talks to Redis through the proxy (`CutAfterReplies`).
    let proxy = Proxy::start(server.addr());
    let cfg = config(proxy.port(), TRADER)
        .max_batch(case.max_batch)
        .buffer_interval_ms(case.buffer_interval_ms)
        .response_timeout(ms(1000))
        .overflow(OverflowPolicy::Block { timeout: Duration::from_secs(30) });
    let cache = Cache::open(cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut model = Model::default();
    let mut history = History::known(&model);
    // Ids written since the last flush: a purge may find their writes
    // still pending in the flusher, and then leaves them alone.
    let mut dirty: BTreeSet<String> = BTreeSet::new();
    let mut next_event = 0u64;
    let mut next_burst = 0u64;
    // Redis is paused (SIGSTOP): nothing that waits for a reply may run.
    let mut paused = false;
    let check = |cache: &Cache, admin: &mut redis::Connection, model: &Model, step: usize| {
        cache
            .flush(Duration::from_secs(30))
            .map_err(|e| TestCaseError::fail(format!("flush at step {step}: {e}")))?;
        let got = Model::read(admin);
        prop_assert_eq!(&got, model, "Redis differs from the model after step {}", step);
        Ok(())
    };
    let peek = |cache: &Cache, admin: &mut redis::Connection, history: &History, step: usize| {
        if !history.exact {
            return Ok(());
        }
        // Read before the peek: everything acknowledged by then is in.
        let acked = cache.acked_seq();
        let got = Model::read(admin);
        history.check(&got, acked, step)
    };
    for (step, op) in case.ops.iter().enumerate() {
        // A paused Redis would block these (and shrinking may have removed
        // the `EndOutage`): the outage ends first.
        let talks = matches!(op, Op::Flush | Op::Peek | Op::Clear | Op::Purge(_) | Op::Kill);
        if paused && talks {
            server.resume();
            paused = false;
        }
        match *op {
            Op::Put(i, v) => {
                let seq = cache.put(&Job { id: IDS[i].into(), value: v }).expect("accepted");
                model.put(IDS[i], v);
                history.wrote(seq, &model);
                dirty.insert(IDS[i].into());
            }
            Op::Replace(i, v) => {
                let seq = cache.replace(&Job { id: IDS[i].into(), value: v }).expect("accepted");
                // One model state: a prefix never holds the delete alone.
                model.delete(IDS[i]);
                model.put(IDS[i], v);
                history.wrote(seq, &model);
                dirty.insert(IDS[i].into());
            }
            Op::Delete(i) => {
                let seq = cache.delete::<Job>(IDS[i]).expect("accepted");
                model.delete(IDS[i]);
                history.wrote(seq, &model);
                dirty.insert(IDS[i].into());
            }
            Op::Append(i) => {
                next_event += 1;
                let seq = cache.append(IDS[i], &Step { n: next_event }).expect("accepted");
                model.append(IDS[i], next_event);
                history.wrote(seq, &model);
                dirty.insert(IDS[i].into());
            }
            Op::Burst(n) => {
                // Puts fold into one pending slot per key, appends do not:
                // both kinds, so a batch cut falls between either.
                for _ in 0..n {
                    next_burst += 1;
                    let id = BURST_IDS[(next_burst % BURST_IDS.len() as u64) as usize];
                    let seq = if next_burst.is_multiple_of(3) {
                        next_event += 1;
                        let seq = cache.append(id, &Step { n: next_event }).expect("accepted");
                        model.append(id, next_event);
                        seq
                    } else {
                        let v = next_burst % 1000;
                        let seq = cache.put(&Job { id: id.into(), value: v }).expect("accepted");
                        model.put(id, v);
                        seq
                    };
                    history.wrote(seq, &model);
                    dirty.insert(id.into());
                }
            }
            Op::Clear => {
                cache
                    .clear(Duration::from_secs(30))
                    .map_err(|e| TestCaseError::fail(format!("clear: {e}")))?;
                model = Model::default();
                // `clear` returns once applied: the state is known.
                history = History::known(&model);
                dirty.clear();
            }
            Op::Purge(cutoff) => {
                let purged = cache
                    .purge_closed_before::<Job>(UnixNanos(cutoff * 1_000_000), Duration::from_secs(30))
                    .map_err(|e| TestCaseError::fail(format!("purge at step {step}: {e}")))?;
                let removed: BTreeSet<String> = purged.removed.iter().map(|id| id.to_string()).collect();
                prop_assert_eq!(removed.len(), purged.removed.len(), "removed twice: {:?}", purged);
                for id in all_ids() {
                    let due = model.closed.get(id).is_some_and(|score| *score < cutoff);
                    if removed.contains(id) {
                        prop_assert!(
                            due,
                            "purge at step {} removed {} ({:?}): {:?}",
                            step,
                            id,
                            model,
                            purged
                        );
                        model.delete(id);
                    } else {
                        prop_assert!(
                            !due || dirty.contains(id),
                            "purge at step {} kept {}, closed and old with nothing pending ({:?}): {:?}",
                            step,
                            id,
                            model,
                            purged
                        );
                    }
                }
                history.exact = false;
            }
            Op::Flush => {
                check(&cache, &mut admin, &model, step)?;
                history = History::known(&model);
                dirty.clear();
            }
            Op::Kill => {
                let _: redis::Value = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("normal")
                    .arg("SKIPME")
                    .arg("yes")
                    .query(&mut admin)
                    .expect("CLIENT KILL");
            }
            Op::Crash => {
                // (SIGKILL works on a stopped process too.)
                server.restart();
                paused = false;
                admin = server.client();
            }
            Op::Outage => {
                if !paused {
                    server.pause();
                    paused = true;
                }
            }
            Op::EndOutage => {
                if paused {
                    server.resume();
                    paused = false;
                }
            }
            Op::Peek => peek(&cache, &mut admin, &history, step)?,
            Op::CutAfterReplies(n) => proxy.cut_after_replies(n),
        }
    }
    // A cut still armed would only cut a connection with nothing on it.
    proxy.cut_after_replies(u64::MAX);
    if paused {
        server.resume();
    }
    let stats = cache.stats();
    prop_assert_eq!(stats.dropped, 0, "{:?}", stats);
    if case.drop_at_end {
        // The engine goes away with a backlog possibly still draining:
        // what Redis holds right now is what a killed engine would leave.
        peek(&cache, &mut admin, &history, case.ops.len())?;
        // `Drop` drains what it can within the close timeout; here it can
        // all be written, so Redis ends with the whole model.
        drop(cache);
        let got = Model::read(&mut admin);
        prop_assert_eq!(&got, &model, "Redis differs from the model after the cache was dropped");
        return Ok(());
    }
    check(&cache, &mut admin, &model, case.ops.len())?;
    cache.close(Duration::from_secs(10)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(())
}

/// A short, deterministic run in the suite; with `FUZZ_SECONDS` set
/// (`make fuzz`), fresh seeds for that many seconds.
pub(crate) fn runner<S: Strategy>(
    strategy: S,
    cases: u32,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: Debug,
{
    let long = std::env::var("FUZZ_SECONDS").ok().map(|s| s.parse::<u64>().unwrap_or(60));
    let Some(secs) = long else {
        let config = ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() };
        let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
        if let Err(e) = runner.run(&strategy, test) {
            panic!("model-based test: {e}");
        }
        eprintln!("model-based test: {cases} cases, {}", peeks());
        return;
    };
    let until = Instant::now() + Duration::from_secs(secs);
    let mut rounds = 0;
    while Instant::now() < until {
        let config = ProptestConfig { cases: 4, failure_persistence: None, ..ProptestConfig::default() };
        let mut runner = TestRunner::new(config);
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("model-based test: {e}");
        }
        rounds += 1;
    }
    eprintln!("model-based test: {} cases in {secs} s, {}", rounds * 4, peeks());
}

fn peeks() -> String {
    let (all, mid) = (PEEKS.load(Ordering::Relaxed), PEEKS_MID_DRAIN.load(Ordering::Relaxed));
    format!("{all} peeks passed, {mid} of them mid-drain")
}

#[test]
fn random_sequences_match_the_model() {
    runner(case(), 44, run);
}

/// Issue 10, item 1: `max_batch(1)`, put, flush, delete, put, flush.
#[test]
fn regression_delete_then_put() {
    let ops = vec![Op::Put(0, 1), Op::Flush, Op::Delete(0), Op::Put(0, 2), Op::Flush];
    run(Case { max_batch: 1, buffer_interval_ms: 0, ops, drop_at_end: false }).unwrap();
}

/// Issue 10, item 2: put, flush, clear, put, flush.
#[test]
fn regression_clear_then_put() {
    let ops = vec![Op::Put(0, 1), Op::Flush, Op::Clear, Op::Put(0, 2), Op::Flush];
    run(Case { max_batch: 7, buffer_interval_ms: 0, ops, drop_at_end: false }).unwrap();
}

/// Issue 15: closed and old, purged; reopened, kept; closed again with a
/// write pending, kept; then purged.
#[test]
fn purge_of_closed_reopened_and_pending() {
    let ops = vec![
        Op::Put(0, 1),
        Op::Append(0),
        Op::Put(1, 3),
        Op::Flush,
        Op::Purge(2),
        Op::Flush,
        Op::Put(1, 4),
        Op::Purge(10),
        Op::Flush,
        Op::Put(1, 5),
        Op::Append(1),
        Op::Purge(10),
        Op::Flush,
        Op::Purge(10),
        Op::Flush,
    ];
    run(Case { max_batch: 1, buffer_interval_ms: 0, ops, drop_at_end: false }).unwrap();
}

/// Issue 19: a backlog of folded puts and appends held back by an outage
/// with `max_batch(1)`, peeked at while it drains, Redis crashed mid-drain,
/// peeked at again.
#[test]
fn outage_then_crash_mid_drain_leaves_a_prefix() {
    let ops = vec![
        Op::Put(0, 2),
        Op::Flush,
        Op::Outage,
        Op::Put(0, 4),
        Op::Append(0),
        Op::Put(1, 3),
        Op::Put(0, 6),
        Op::Burst(30),
        Op::Delete(1),
        Op::Append(1),
        Op::EndOutage,
        Op::Peek,
        Op::Crash,
        Op::Peek,
        Op::Flush,
    ];
    run(Case { max_batch: 1, buffer_interval_ms: 0, ops, drop_at_end: false }).unwrap();
}

/// Issue 19: closed and clean candidates, a burst of 200 writes to other
/// ids held back by an outage, one candidate reopened and one appended to,
/// then a purge (the outage ends first); the cache is then dropped.
#[test]
fn purge_racing_a_burst_in_the_channel() {
    let ops = vec![
        Op::Put(0, 1),
        Op::Put(1, 3),
        Op::Put(2, 5),
        Op::Flush,
        Op::Outage,
        Op::Burst(200),
        Op::Put(0, 8),
        Op::Append(1),
        Op::Purge(100),
        Op::Flush,
        Op::Outage,
        Op::Put(3, 7),
        Op::EndOutage,
        Op::Peek,
    ];
    run(Case { max_batch: 2, buffer_interval_ms: 0, ops, drop_at_end: true }).unwrap();
}

/// Issue 28, item 2: the flusher's connection cut at every reply boundary
/// in turn (after 0, 1, … replies) while a burst of writes goes out as
/// pipelined pairs (a batch's `EXEC`, the marker's `WATCH` and `GET`
/// behind it, the next batch queued behind those), each followed by a
/// flush and the comparison with the model. A cut between an applied
/// `EXEC`'s reply and the marker's replies killed the flusher (a debug
/// assertion in `link.rs`; `flush` returned `Closed`).
fn cut_sweep() -> impl Strategy<Value = Case> {
    (prop::sample::select(vec![1usize, 1, 2, 3]), 2..12usize, prop::collection::vec(id(), 1..3)).prop_map(
        |(max_batch, burst, touch)| {
            let mut ops = vec![Op::Put(0, 2), Op::Append(0), Op::Flush];
            for k in 0..PAIR_REPLIES {
                ops.push(Op::CutAfterReplies(k));
                ops.push(Op::Burst(burst));
                ops.extend(touch.iter().map(|i| Op::Append(*i)));
                ops.push(Op::Peek);
                ops.push(Op::Flush);
            }
            Case { max_batch, buffer_interval_ms: 0, ops, drop_at_end: false }
        },
    )
}

#[test]
fn a_connection_cut_at_every_reply_boundary_of_a_pipelined_pair() {
    runner(cut_sweep(), 2, run);
}

/// Marker loss with identical events (issue 28, item 1): writes, among
/// them events equal to the one before them in their log (as raw and
/// Python events are stored), the commit marker deleted and the
/// connection cut (before, in, or after a batch, in either order), then a
/// check. Redis must hold every write not reported dropped (`flush`'s
/// `Error::Dropped`, `take_dropped`), and no event twice; a batch in doubt
/// whose log already ended with what it appends had been acknowledged
/// though it never reached Redis.
#[derive(Debug, Clone)]
enum LossOp {
    Put(usize, u64),
    /// An event: `true` equal to the last one of that log, else a new one.
    Append(usize, bool),
    /// `DEL` of the commit marker.
    DeleteMarker,
    /// The proxy cuts after this many client→server bytes (0: before any
    /// byte of what is sent next reaches Redis).
    CutBytes(u64),
    /// The proxy cuts after this many replies.
    CutReplies(u64),
    /// `flush`, then Redis checked against the model.
    Check,
}

#[derive(Debug, Clone)]
struct LossCase {
    max_batch: usize,
    ops: Vec<LossOp>,
}

fn loss_case() -> impl Strategy<Value = LossCase> {
    let write = || {
        prop_oneof![
            2 => (id(), 0..1000u64).prop_map(|(i, v)| LossOp::Put(i, v)),
            3 => (id(), prop::bool::weighted(0.7)).prop_map(|(i, same)| LossOp::Append(i, same)),
        ]
    };
    let cut =
        prop_oneof![(0..400u64).prop_map(LossOp::CutBytes), (0..PAIR_REPLIES).prop_map(LossOp::CutReplies)];
    let loss =
        (prop::collection::vec(write(), 0..4), cut, any::<bool>(), prop::collection::vec(write(), 1..6))
            .prop_map(|(before, cut, cut_first, after)| {
                let mut ops = before;
                if cut_first {
                    ops.extend([cut, LossOp::DeleteMarker]);
                } else {
                    ops.extend([LossOp::DeleteMarker, cut]);
                }
                ops.extend(after);
                ops.push(LossOp::Check);
                ops
            });
    let segment = prop_oneof![
        3 => write().prop_map(|w| vec![w]),
        1 => Just(vec![LossOp::Check]),
        2 => loss,
    ];
    (prop::sample::select(vec![1usize, 1, 2, 3, 64]), prop::collection::vec(segment, 1..12)).prop_map(
        |(max_batch, segments)| {
            let mut ops: Vec<LossOp> = segments.into_iter().flatten().collect();
            ops.push(LossOp::Check);
            LossCase { max_batch, ops }
        },
    )
}

/// What Redis may hold since the last check: per id, the snapshot then
/// (seq 0) and each put since, with its seq; the events, each with its
/// seq (0: in Redis at the last check).
#[derive(Default, Debug)]
struct LossModel {
    snaps: BTreeMap<&'static str, Vec<(u64, Option<u64>)>>,
    logs: BTreeMap<&'static str, Vec<(u64, u64)>>,
}

/// Whether `got` is `want` with some events left out, each of them
/// `droppable` (order kept; identical events may stand for each other).
fn embeds(want: &[(u64, u64)], got: &[u64], droppable: &impl Fn(u64) -> bool) -> bool {
    // ok[i][j]: want[i..] can become got[j..].
    let (n, m) = (want.len(), got.len());
    let mut ok = vec![vec![false; m + 1]; n + 1];
    ok[n][m] = true;
    for i in (0..n).rev() {
        for j in (0..=m).rev() {
            let (seq, ev) = want[i];
            ok[i][j] = (droppable(seq) && ok[i + 1][j]) || (j < m && got[j] == ev && ok[i + 1][j + 1]);
        }
    }
    ok[0][0]
}

fn check_loss(
    cache: &Cache,
    admin: &mut redis::Connection,
    model: &mut LossModel,
    step: usize,
) -> Result<(), TestCaseError> {
    match cache.flush(Duration::from_secs(30)) {
        Ok(()) | Err(tradecache::Error::Dropped { .. }) => {}
        Err(e) => return Err(TestCaseError::fail(format!("flush at step {step}: {e}"))),
    }
    let dropped = cache.take_dropped();
    for d in &dropped {
        prop_assert_eq!(d.class, tradecache::ErrorKind::MarkerLost, "{:?}", d);
    }
    let droppable =
        |seq: u64| seq != 0 && dropped.iter().any(|d| d.seq.get() <= seq && seq < d.seq.get() + d.writes);
    let got = Model::read(admin);
    for id in IDS {
        let log = got.logs.get(id).cloned().unwrap_or_default();
        let want = model.logs.entry(id).or_default();
        prop_assert!(
            embeds(want, &log, &droppable),
            "step {}: the log of {} is {:?}, the writes (seq, event) were {:?}, reported dropped: {:?}",
            step,
            id,
            log,
            want,
            dropped
        );
        *want = log.iter().map(|n| (0, *n)).collect();
        let snap = got.snaps.get(id).copied();
        let puts = model.snaps.entry(id).or_insert_with(|| vec![(0, None)]);
        let kept = puts.iter().rposition(|(seq, _)| !droppable(*seq)).unwrap_or(0);
        prop_assert!(
            puts[kept..].iter().any(|(_, v)| *v == snap),
            "step {}: the snapshot of {} is {:?}, the puts (seq, value) were {:?}, reported dropped: {:?}",
            step,
            id,
            snap,
            puts,
            dropped
        );
        *puts = vec![(0, snap)];
    }
    Ok(())
}

fn run_marker_loss(case: LossCase) -> Result<(), TestCaseError> {
    let server = RedisServer::start();
    let mut admin = server.client();
    let proxy = Proxy::start(server.addr());
    let cfg = config(proxy.port(), TRADER)
        .max_batch(case.max_batch)
        .response_timeout(ms(1000))
        .overflow(OverflowPolicy::Block { timeout: Duration::from_secs(30) });
    let cache = Cache::open(cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut model = LossModel::default();
    let mut next_event = 0u64;
    for (step, op) in case.ops.iter().enumerate() {
        match *op {
            LossOp::Put(i, v) => {
                let seq = cache.put(&Job { id: IDS[i].into(), value: v }).expect("accepted");
                model.snaps.entry(IDS[i]).or_insert_with(|| vec![(0, None)]).push((seq.get(), Some(v)));
            }
            LossOp::Append(i, same) => {
                let log = model.logs.entry(IDS[i]).or_default();
                let n = match log.last() {
                    Some((_, n)) if same => *n,
                    _ => {
                        next_event += 1;
                        next_event
                    }
                };
                let seq = cache.append(IDS[i], &Step { n }).expect("accepted");
                log.push((seq.get(), n));
            }
            LossOp::DeleteMarker => {
                let _: () =
                    redis::cmd("DEL").arg(format!("trader-{TRADER}:writer:main")).query(&mut admin).unwrap();
            }
            LossOp::CutBytes(n) => proxy.cut_after_upstream_bytes(n),
            LossOp::CutReplies(n) => proxy.cut_after_replies(n),
            LossOp::Check => check_loss(&cache, &mut admin, &mut model, step)?,
        }
    }
    proxy.cut_after_upstream_bytes(u64::MAX);
    proxy.cut_after_replies(u64::MAX);
    cache.close(Duration::from_secs(10)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(())
}

#[test]
fn marker_loss_with_identical_events() {
    runner(loss_case(), 12, run_marker_loss);
}

/// The reproduction: an event, the marker deleted, the same event
/// again in a batch of which no byte reaches Redis.
#[test]
fn regression_marker_loss_with_an_identical_event_cut_before_redis() {
    let ops = vec![
        LossOp::Append(0, false),
        LossOp::Check,
        LossOp::DeleteMarker,
        LossOp::CutBytes(0),
        LossOp::Append(0, true),
        LossOp::Check,
        LossOp::Append(0, true),
        LossOp::Check,
    ];
    run_marker_loss(LossCase { max_batch: 1, ops }).unwrap();
}

/// The prefix check itself (no Redis): it accepts a state at or after the
/// acknowledged prefix and rejects an older prefix and a state that is no
/// prefix at all (a later write without an earlier one).
#[test]
fn prefix_check_rejects_what_it_must() {
    let mut model = Model::default();
    let mut history = History::known(&model);
    model.put("A", 2);
    history.wrote(Seq::new(1), &model);
    let after_a = model.clone();
    // Seq 2 is a control operation (not in the history); 3 is a write.
    model.put("B", 4);
    history.wrote(Seq::new(3), &model);
    let mut only_b = Model::default();
    only_b.put("B", 4);
    assert!(history.check(&after_a, Seq::new(2), 0).is_ok());
    assert!(history.check(&model, Seq::new(1), 0).is_ok());
    assert!(history.check(&Model::default(), Seq::new(1), 0).is_err());
    assert!(history.check(&only_b, Seq::new(0), 0).is_err());
}
