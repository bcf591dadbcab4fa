//! Model-based test of purges racing writes (issue 28, items 0 and 8):
//! random puts (odd values closed, last updated at `value` ms), appends
//! (also to closed entities), deletes and bursts of writes queued in the
//! channel, and purges (`purge_closed_before`, steps of 1–3 entities) that
//! run on another thread while more writes, appends to the purge's own
//! candidates among them, and `CLIENT KILL`s of the flusher's connection
//! go on. After each purge and a flush, every entity in Redis (snapshot,
//! its members of the index, open and closed sets with the score, and its
//! event log) is checked against an in-memory model of the writes:
//!
//! - an id the purge did not return as removed holds exactly what its
//!   writes made of it;
//! - an id it returned as removed was deleted whole at one point of the
//!   sequence of writes, after every write accepted before the purge was
//!   asked for, where it was closed and older than the cutoff: Redis holds
//!   what the writes before that point made of it, deleted (snapshot,
//!   index entries and the whole log at once), then the writes after it.
//!   So no entity is half deleted and no purge leaves an orphan log;
//! - a closed, old id that no write touched since the last flush (and
//!   none during the purge) is removed.
//!
//! A short run with a fixed seed is part of `make test`; `make fuzz` runs
//! it with fresh seeds for `FUZZ_SECONDS` (`model_based::runner`).

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use redis::FromRedisValue;
use tradecache::model::UnixNanos;
use tradecache::{Cache, OverflowPolicy};

use crate::harness::*;

const TRADER: &str = "MP";
/// Ids the random writes and the purges work on.
const IDS: [&str; 5] = ["A", "B", "C", "D", "E"];
/// Ids a `Burst` writes to (puts of open values and appends): writes
/// queued in the channel ahead of a purge and of the writes after it.
const BURST_IDS: [&str; 2] = ["X", "Y"];

// The entity and event of the write-path model (`counters`, closed while
// its value is odd, last updated at `value` ms).
use crate::model_based::{Job, Step};

#[derive(Debug, Clone)]
enum Write {
    Put(usize, u64),
    Append(usize),
    Delete(usize),
    /// `n` writes to `BURST_IDS`.
    Burst(usize),
    /// `CLIENT KILL` of the flusher's connection (only while a purge runs).
    Kill,
}

#[derive(Debug, Clone)]
enum Op {
    Write(Write),
    Flush,
    /// `purge_closed_before(cutoff ms)` on another thread while `during`
    /// is written; then a flush and the check.
    Purge {
        cutoff: u64,
        during: Vec<Write>,
    },
}

#[derive(Debug, Clone)]
struct Case {
    max_batch: usize,
    purge_batch: usize,
    ops: Vec<Op>,
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        6 => (0..IDS.len(), 0..200u64).prop_map(|(i, v)| Write::Put(i, v)),
        5 => (0..IDS.len()).prop_map(Write::Append),
        2 => (0..IDS.len()).prop_map(Write::Delete),
        1 => (10..300usize).prop_map(Write::Burst),
    ]
}

fn during() -> impl Strategy<Value = Write> {
    prop_oneof![
        8 => write(),
        1 => Just(Write::Kill),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let op = prop_oneof![
        10 => write().prop_map(Op::Write),
        2 => Just(Op::Flush),
        3 => (0..220u64, prop::collection::vec(during(), 0..12))
            .prop_map(|(cutoff, during)| Op::Purge { cutoff, during }),
    ];
    (
        prop::sample::select(vec![1usize, 2, 3, 64]),
        prop::sample::select(vec![1usize, 2, 3]),
        prop::collection::vec(op, 1..30),
    )
        .prop_map(|(max_batch, purge_batch, ops)| Case { max_batch, purge_batch, ops })
}

/// What Redis holds of one id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Entry {
    snap: Option<u64>,
    indexed: bool,
    open: bool,
    closed: Option<u64>,
    log: Vec<u64>,
}

impl Entry {
    fn apply(&mut self, w: &IdWrite) {
        match *w {
            IdWrite::Put(v) => {
                self.snap = Some(v);
                self.indexed = true;
                self.open = v % 2 == 0;
                self.closed = (v % 2 == 1).then_some(v);
            }
            IdWrite::Append(n) => self.log.push(n),
            IdWrite::Delete => *self = Entry::default(),
        }
    }

    /// Closed and last updated before `cutoff`.
    fn due(&self, cutoff: u64) -> bool {
        self.closed.is_some_and(|score| score < cutoff)
    }
}

/// A write to one id, as the model applies it.
#[derive(Debug, Clone, Copy)]
enum IdWrite {
    Put(u64),
    Append(u64),
    Delete,
}

/// Per id: its state when last known (checked), and the writes since,
/// each with its sequence number.
#[derive(Default)]
struct Model {
    known: BTreeMap<&'static str, Entry>,
    since: BTreeMap<&'static str, Vec<(u64, IdWrite)>>,
}

impl Model {
    fn wrote(&mut self, id: &'static str, seq: u64, w: IdWrite) {
        self.since.entry(id).or_default().push((seq, w));
    }

    fn now(&self, id: &str) -> Entry {
        let mut e = self.known.get(id).cloned().unwrap_or_default();
        for (_, w) in self.since.get(id).into_iter().flatten() {
            e.apply(w);
        }
        e
    }
}

fn all_ids() -> impl Iterator<Item = &'static str> {
    IDS.iter().chain(BURST_IDS.iter()).copied()
}

/// Every id's entry, read in one MULTI/EXEC.
fn read(con: &mut redis::Connection) -> BTreeMap<&'static str, Entry> {
    let key = |k: String| format!("trader-{TRADER}:{k}");
    let mut pipe = redis::pipe();
    pipe.atomic();
    for id in all_ids() {
        pipe.cmd("GET").arg(key(format!("counters:{id}")));
        pipe.cmd("SISMEMBER").arg(key("index:counters".into())).arg(id);
        pipe.cmd("SISMEMBER").arg(key("index:counters:open".into())).arg(id);
        pipe.cmd("ZSCORE").arg(key("index:counters:closed".into())).arg(id);
        pipe.cmd("LRANGE").arg(key(format!("counters:{id}:events"))).arg(0).arg(-1);
    }
    let replies: Vec<redis::Value> = pipe.query(con).expect("MULTI/EXEC read");
    let mut replies = replies.into_iter();
    let mut next = || replies.next().expect("one reply per command");
    let mut out = BTreeMap::new();
    for id in all_ids() {
        let snap = Option::<Vec<u8>>::from_redis_value(next())
            .expect("GET")
            .map(|raw| rmp_serde::from_slice::<Job>(&raw).expect("decode snapshot").value);
        let indexed = bool::from_redis_value(next()).expect("SISMEMBER");
        let open = bool::from_redis_value(next()).expect("SISMEMBER");
        let closed = Option::<u64>::from_redis_value(next()).expect("ZSCORE");
        let log = Vec::<Vec<u8>>::from_redis_value(next())
            .expect("LRANGE")
            .iter()
            .map(|b| rmp_serde::from_slice::<Step>(b).expect("decode event").n)
            .collect();
        out.insert(id, Entry { snap, indexed, open, closed, log });
    }
    out
}

struct Runner<'a> {
    cache: &'a Cache,
    model: Model,
    next_event: u64,
    next_burst: u64,
}

impl Runner<'_> {
    fn write(&mut self, w: &Write, admin: &mut redis::Connection) {
        let cache = self.cache;
        match *w {
            Write::Put(i, v) => {
                let seq = cache.put(&Job { id: IDS[i].into(), value: v }).expect("accepted");
                self.model.wrote(IDS[i], seq.get(), IdWrite::Put(v));
            }
            Write::Append(i) => {
                self.next_event += 1;
                let seq = cache.append(IDS[i], &Step { n: self.next_event }).expect("accepted");
                self.model.wrote(IDS[i], seq.get(), IdWrite::Append(self.next_event));
            }
            Write::Delete(i) => {
                let seq = cache.delete::<Job>(IDS[i]).expect("accepted");
                self.model.wrote(IDS[i], seq.get(), IdWrite::Delete);
            }
            Write::Burst(n) => {
                for _ in 0..n {
                    self.next_burst += 1;
                    let id = BURST_IDS[(self.next_burst % BURST_IDS.len() as u64) as usize];
                    if self.next_burst.is_multiple_of(3) {
                        self.next_event += 1;
                        let seq = cache.append(id, &Step { n: self.next_event }).expect("accepted");
                        self.model.wrote(id, seq.get(), IdWrite::Append(self.next_event));
                    } else {
                        // Open values: never a purge candidate.
                        let v = 2 * (self.next_burst % 500);
                        let seq = cache.put(&Job { id: id.into(), value: v }).expect("accepted");
                        self.model.wrote(id, seq.get(), IdWrite::Put(v));
                    }
                }
            }
            Write::Kill => {
                let _: redis::Value = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("normal")
                    .arg("SKIPME")
                    .arg("yes")
                    .query(admin)
                    .expect("CLIENT KILL");
            }
        }
    }

    fn flush(&self, step: usize) -> Result<(), TestCaseError> {
        self.cache
            .flush(Duration::from_secs(30))
            .map_err(|e| TestCaseError::fail(format!("flush at step {step}: {e}")))
    }

    /// After a flush with no purge since the last check: every id is
    /// exactly what its writes made of it.
    fn check_plain(&mut self, admin: &mut redis::Connection, step: usize) -> Result<(), TestCaseError> {
        self.flush(step)?;
        let got = read(admin);
        for id in all_ids() {
            let want = self.model.now(id);
            prop_assert_eq!(&got[id], &want, "id {} after step {}", id, step);
        }
        self.model.known = got;
        self.model.since.clear();
        Ok(())
    }

    /// After a purge (asked for once every write up to `before` was
    /// accepted) and a flush: see the module docs.
    fn check_purge(
        &mut self,
        admin: &mut redis::Connection,
        step: usize,
        cutoff: u64,
        before: u64,
        removed: &[String],
        raced: &[&str],
    ) -> Result<(), TestCaseError> {
        self.flush(step)?;
        let got = read(admin);
        for id in all_ids() {
            let known = self.model.known.get(id).cloned().unwrap_or_default();
            let writes = self.model.since.get(id).cloned().unwrap_or_default();
            let want = self.model.now(id);
            let times = removed.iter().filter(|r| *r == id).count();
            if times == 0 {
                // Untouched since the last check, closed and old: removed.
                let untouched = writes.is_empty() && !raced.contains(&id);
                prop_assert!(
                    !(untouched && known.due(cutoff)),
                    "purge at step {} kept {}, closed and old with no write: {:?}",
                    step,
                    id,
                    known
                );
                prop_assert_eq!(&got[id], &want, "id {} (not removed) after the purge at step {}", id, step);
                continue;
            }
            // Removed (`times` times: re-put closed and old by a write
            // while the purge ran, it may go again): deleted whole at as
            // many points after the writes accepted before the purge, each
            // where it was due.
            prop_assert!(
                deleted_whole(known.clone(), &writes, before, cutoff, times, &got[id]),
                "purge at step {} removed {} ({} times), but Redis holds {:?}: no point after seq {} where \
                 it was due (cutoff {}) and deleted whole gives that; known {:?}, writes since {:?}, without \
                 the purge {:?}",
                step,
                id,
                times,
                got[id],
                before,
                cutoff,
                known,
                writes,
                want
            );
        }
        self.model.known = got;
        self.model.since.clear();
        Ok(())
    }
}

/// Whether `start`, then `writes` with `deletions` whole deletions
/// inserted (each after every write up to `before`, where the entity is
/// closed and older than `cutoff`), ends as `got`.
fn deleted_whole(
    start: Entry,
    writes: &[(u64, IdWrite)],
    before: u64,
    cutoff: u64,
    deletions: usize,
    got: &Entry,
) -> bool {
    let mut at = start;
    if deletions == 0 {
        writes.iter().for_each(|(_, w)| at.apply(w));
        return at == *got;
    }
    for k in 0..=writes.len() {
        if k > 0 {
            at.apply(&writes[k - 1].1);
        }
        let after_all_before = writes.get(k).is_none_or(|(seq, _)| *seq > before);
        if after_all_before
            && at.due(cutoff)
            && deleted_whole(Entry::default(), &writes[k..], before, cutoff, deletions - 1, got)
        {
            return true;
        }
    }
    false
}

fn run(case: Case) -> Result<(), TestCaseError> {
    let server = RedisServer::start();
    let mut admin = server.client();
    let cfg = config(server.port(), TRADER)
        .max_batch(case.max_batch)
        .purge_batch(case.purge_batch)
        .response_timeout(ms(1000))
        .overflow(OverflowPolicy::Block { timeout: Duration::from_secs(30) });
    let cache = Cache::open(cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut r = Runner { cache: &cache, model: Model::default(), next_event: 0, next_burst: 0 };
    for (step, op) in case.ops.iter().enumerate() {
        match op {
            Op::Write(w) => r.write(w, &mut admin),
            Op::Flush => r.check_plain(&mut admin, step)?,
            Op::Purge { cutoff, during } => {
                let cutoff = *cutoff;
                let before = cache.last_seq().get();
                let purged = std::thread::scope(|s| {
                    let purge = s.spawn(|| {
                        cache.purge_closed_before::<Job>(
                            UnixNanos(cutoff * 1_000_000),
                            Duration::from_secs(60),
                        )
                    });
                    for w in during {
                        r.write(w, &mut admin);
                    }
                    purge.join().expect("purge thread")
                })
                .map_err(|e| TestCaseError::fail(format!("purge at step {step}: {e}")))?;
                let removed: Vec<String> = purged.removed.iter().map(|id| id.to_string()).collect();
                let raced: Vec<&str> = during
                    .iter()
                    .filter_map(|w| match *w {
                        Write::Put(i, _) | Write::Append(i) | Write::Delete(i) => Some(IDS[i]),
                        Write::Burst(_) | Write::Kill => None,
                    })
                    .collect();
                r.check_purge(&mut admin, step, cutoff, before, &removed, &raced)?;
            }
        }
    }
    r.check_plain(&mut admin, case.ops.len())?;
    let stats = cache.stats();
    prop_assert_eq!(stats.dropped, 0, "{:?}", stats);
    cache.close(Duration::from_secs(10)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(())
}

#[test]
fn purges_racing_writes_match_the_model() {
    crate::model_based::runner(case(), 24, run);
}

/// Found by `make fuzz`: a step kept D and E (writes pending), D then left
/// the closed index (re-put while the purge ran), and the next step,
/// asking for 4 and getting E, C, A, deleted its batch of 2 and took the
/// collection as done: A, closed and old, was kept and not reported. It
/// depends on when the writes land, so the case runs several times (it
/// failed about one run in three).
#[test]
fn a_step_cut_at_its_batch_does_not_end_the_collection() {
    use Write::*;
    let w = Op::Write;
    let during =
        vec![Put(4, 6), Put(3, 9), Put(4, 101), Put(1, 197), Kill, Put(4, 63), Append(3), Kill, Put(3, 80)];
    let ops = vec![
        w(Put(3, 66)),
        Op::Flush,
        w(Append(4)),
        w(Append(4)),
        w(Put(3, 109)),
        w(Put(0, 71)),
        w(Append(1)),
        w(Put(3, 136)),
        w(Put(0, 20)),
        w(Put(2, 133)),
        w(Put(0, 139)),
        Op::Flush,
        w(Burst(72)),
        w(Put(2, 109)),
        w(Put(1, 4)),
        Op::Purge { cutoff: 164, during: [during, vec![Append(4)]].concat() },
        w(Put(4, 176)),
        Op::Flush,
    ];
    for _ in 0..12 {
        run(Case { max_batch: 64, purge_batch: 2, ops: ops.clone() }).expect("the purge matches the model");
    }
}
