//! Model-based test of the write path (issue 10): random sequences of
//! put / delete / append / `clear` / purge / flush over a handful of ids,
//! with random `max_batch` and `buffer_interval`, the flusher's connection
//! killed (`CLIENT KILL`) and Redis restarted (`appendfsync always`) at
//! random points. After every flush, Redis is compared with a plain
//! in-memory model: every snapshot, the exact members of the index set,
//! of the open index and of the closed index (with its scores), and every
//! event log.
//!
//! The entity closes and reopens (odd values are closed, last updated at
//! `value` ms), and `purge_closed_before` (issue 15) is an operation: what
//! it returns as removed must be closed and older than the cutoff in the
//! model, and every such entity must be removed unless a write to it was
//! still pending (not yet flushed) when the purge ran.
//!
//! A short run with a fixed seed is part of `make test`; `make fuzz` runs
//! it with fresh seeds for `FUZZ_SECONDS`. The two sequences of issue 10
//! that once lost an index entry are kept below as regressions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde::{Deserialize, Serialize};
use tradecache::model::UnixNanos;
use tradecache::{Cache, Entity, Event, OverflowPolicy};

use crate::harness::*;

const TRADER: &str = "M";
const IDS: [&str; 4] = ["A", "B", "C", "D"];

/// A counter that is closed while its value is odd, last updated at
/// `value` milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    id: String,
    value: u64,
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
struct Step {
    n: u64,
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
    Delete(usize),
    Append(usize),
    Clear,
    /// `purge_closed_before` a cutoff in ms.
    Purge(u64),
    Flush,
    /// `CLIENT KILL` of the flusher's connection.
    Kill,
    /// SIGKILL and restart of Redis (every acknowledged write is on disk).
    Restart,
}

#[derive(Debug, Clone)]
struct Case {
    max_batch: usize,
    buffer_interval_ms: u64,
    ops: Vec<Op>,
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0..IDS.len();
    prop_oneof![
        8 => (id.clone(), 0..1000u64).prop_map(|(i, v)| Op::Put(i, v)),
        4 => id.clone().prop_map(Op::Delete),
        8 => id.prop_map(Op::Append),
        1 => Just(Op::Clear),
        3 => (0..1000u64).prop_map(Op::Purge),
        4 => Just(Op::Flush),
        1 => Just(Op::Kill),
        1 => Just(Op::Restart),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(vec![1usize, 2, 3, 7, 64]),
        prop::sample::select(vec![0u64, 0, 1, 3]),
        prop::collection::vec(op(), 1..60),
    )
        .prop_map(|(max_batch, buffer_interval_ms, ops)| Case { max_batch, buffer_interval_ms, ops })
}

/// The reference: what Redis must hold once everything is acknowledged.
#[derive(Default, Debug, PartialEq)]
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

    fn read(con: &mut redis::Connection) -> Model {
        let index: BTreeSet<String> = redis::cmd("SMEMBERS")
            .arg(format!("trader-{TRADER}:index:counters"))
            .query(con)
            .expect("SMEMBERS");
        let open: BTreeSet<String> = redis::cmd("SMEMBERS")
            .arg(format!("trader-{TRADER}:index:counters:open"))
            .query(con)
            .expect("SMEMBERS");
        let closed: Vec<(String, u64)> = redis::cmd("ZRANGE")
            .arg(format!("trader-{TRADER}:index:counters:closed"))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query(con)
            .expect("ZRANGE");
        let mut m = Model { index, open, closed: closed.into_iter().collect(), ..Model::default() };
        for id in IDS {
            if let Some(c) = counter(con, TRADER, id) {
                m.snaps.insert(id.to_string(), c.value);
            }
            // (`Job` and `Counter`, `Step` and `Tick` are stored alike.)
            let log = ticks(con, TRADER, id);
            if !log.is_empty() {
                m.logs.insert(id.to_string(), log);
            }
        }
        m
    }
}

fn run(case: Case) -> Result<(), TestCaseError> {
    let mut server = RedisServer::builder().appendfsync("always").start();
    let mut admin = server.client();
    let cfg = config(server.port(), TRADER)
        .max_batch(case.max_batch)
        .buffer_interval_ms(case.buffer_interval_ms)
        .response_timeout(ms(1000))
        .overflow(OverflowPolicy::Block { timeout: Duration::from_secs(30) });
    let cache = Cache::open(cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut model = Model::default();
    // Ids written since the last flush: a purge may find their writes
    // still pending in the flusher, and then leaves them alone.
    let mut dirty: BTreeSet<String> = BTreeSet::new();
    let mut next_event = 0u64;
    let check = |cache: &Cache, admin: &mut redis::Connection, model: &Model, step: usize| {
        cache
            .flush(Duration::from_secs(30))
            .map_err(|e| TestCaseError::fail(format!("flush at step {step}: {e}")))?;
        let got = Model::read(admin);
        prop_assert_eq!(&got, model, "Redis differs from the model after step {}", step);
        Ok(())
    };
    for (step, op) in case.ops.iter().enumerate() {
        match *op {
            Op::Put(i, v) => {
                cache.put(&Job { id: IDS[i].into(), value: v }).expect("accepted");
                model.put(IDS[i], v);
                dirty.insert(IDS[i].into());
            }
            Op::Delete(i) => {
                cache.delete::<Job>(IDS[i]).expect("accepted");
                model.delete(IDS[i]);
                dirty.insert(IDS[i].into());
            }
            Op::Append(i) => {
                next_event += 1;
                cache.append(IDS[i], &Step { n: next_event }).expect("accepted");
                model.logs.entry(IDS[i].into()).or_default().push(next_event);
                dirty.insert(IDS[i].into());
            }
            Op::Clear => {
                cache
                    .clear(Duration::from_secs(30))
                    .map_err(|e| TestCaseError::fail(format!("clear: {e}")))?;
                model = Model::default();
                dirty.clear();
            }
            Op::Purge(cutoff) => {
                let purged = cache
                    .purge_closed_before::<Job>(UnixNanos(cutoff * 1_000_000), Duration::from_secs(30))
                    .map_err(|e| TestCaseError::fail(format!("purge at step {step}: {e}")))?;
                let removed: BTreeSet<String> = purged.removed.iter().map(|id| id.to_string()).collect();
                prop_assert_eq!(removed.len(), purged.removed.len(), "removed twice: {:?}", purged);
                for id in IDS {
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
            }
            Op::Flush => {
                check(&cache, &mut admin, &model, step)?;
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
            Op::Restart => {
                server.restart();
                admin = server.client();
            }
        }
    }
    check(&cache, &mut admin, &model, case.ops.len())?;
    let stats = cache.stats();
    prop_assert_eq!(stats.dropped, 0, "{:?}", stats);
    cache.close(Duration::from_secs(10)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(())
}

/// A short, deterministic run in the suite; with `FUZZ_SECONDS` set
/// (`make fuzz`), fresh seeds for that many seconds.
fn runner<S: Strategy>(strategy: S, cases: u32, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: Debug,
{
    let long = std::env::var("FUZZ_SECONDS").ok().map(|s| s.parse::<u64>().unwrap_or(60));
    let Some(secs) = long else {
        let config = ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() };
        let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
        if let Err(e) = runner.run(&strategy, test) {
            panic!("model-based test: {e}");
        }
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
    eprintln!("model-based test: {} cases in {secs} s", rounds * 4);
}

#[test]
fn random_sequences_match_the_model() {
    runner(case(), 64, run);
}

/// Issue 10, item 1: `max_batch(1)`, put, flush, delete, put, flush.
#[test]
fn regression_delete_then_put() {
    let ops = vec![Op::Put(0, 1), Op::Flush, Op::Delete(0), Op::Put(0, 2), Op::Flush];
    run(Case { max_batch: 1, buffer_interval_ms: 0, ops }).unwrap();
}

/// Issue 10, item 2: put, flush, clear, put, flush.
#[test]
fn regression_clear_then_put() {
    let ops = vec![Op::Put(0, 1), Op::Flush, Op::Clear, Op::Put(0, 2), Op::Flush];
    run(Case { max_batch: 7, buffer_interval_ms: 0, ops }).unwrap();
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
    run(Case { max_batch: 1, buffer_interval_ms: 0, ops }).unwrap();
}
