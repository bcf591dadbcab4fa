//! Crash consistency: a writer in a child process applies a deterministic
//! sequence of writes and is killed with SIGKILL at a random moment (or
//! Redis is). The state loaded afterwards must equal the state after some
//! prefix of the sequence, and that prefix must include every write the
//! writer had seen acknowledged: no torn batch, no duplicate event, no lost
//! acknowledged write.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;
use tradecache::{Cache, OverflowPolicy};

const KEYS: u64 = 20;
const STEPS: u64 = 200_000;

/// Message `m` (1-based, equal to its `Seq`) of the deterministic sequence:
/// step k = (m + 2) / 3 writes `C{k % KEYS}` = k, appends tick k to it, and
/// sets `total` = k.
fn child(port: u16, trader: &str) -> ! {
    let cache = Arc::new(
        Cache::open(
            config(port, trader).overflow(OverflowPolicy::Block { timeout: Duration::from_secs(60) }),
        )
        .expect("open"),
    );
    let acked = Arc::new(AtomicU64::new(0));
    {
        let (cache, acked) = (cache.clone(), acked.clone());
        std::thread::spawn(move || loop {
            let a = cache.acked_seq().get();
            if a > acked.swap(a, Ordering::Relaxed) {
                println!("acked {a}");
            }
            std::thread::sleep(ms(2));
        });
    }
    for k in 1..=STEPS {
        let id = format!("C{}", k % KEYS);
        cache.put(&Counter { id: id.clone(), value: k }).expect("put");
        cache.append(&id, &Tick { n: k }).expect("append");
        cache.put(&Counter { id: "total".into(), value: k }).expect("put");
    }
    cache.flush(Duration::from_secs(60)).expect("flush");
    std::thread::sleep(Duration::from_secs(3600));
    std::process::exit(0)
}

/// The state after the first `m` messages, compared with what is stored.
fn matches_prefix(con: &mut redis::Connection, trader: &str, m: u64) -> Result<(), String> {
    let steps_done = m / 3; // complete steps
    let partial = m % 3; // messages of step steps_done + 1 applied
    for key in 0..KEYS {
        let id = format!("C{key}");
        let mut expect_ticks: Vec<u64> = (1..=steps_done).filter(|k| k % KEYS == key).collect();
        let mut expect_value = expect_ticks.last().copied();
        let next = steps_done + 1;
        if next % KEYS == key {
            if partial >= 1 {
                expect_value = Some(next);
            }
            if partial >= 2 {
                expect_ticks.push(next);
            }
        }
        let got_value = counter(con, trader, &id).map(|c| c.value);
        if got_value != expect_value {
            return Err(format!("{id} = {got_value:?}, expected {expect_value:?}"));
        }
        let got_ticks = ticks(con, trader, &id);
        if got_ticks != expect_ticks {
            return Err(format!("{id} has {} ticks, expected {}", got_ticks.len(), expect_ticks.len()));
        }
    }
    Ok(())
}

/// Finds the prefix the stored state equals, if any.
fn stored_prefix(con: &mut redis::Connection, trader: &str) -> Result<u64, String> {
    let total = counter(con, trader, "total").map_or(0, |c| c.value);
    let mut errors = Vec::new();
    for m in [3 * total, 3 * total + 1, 3 * total + 2] {
        match matches_prefix(con, trader, m) {
            Ok(()) => return Ok(m),
            Err(e) => errors.push(format!("prefix {m}: {e}")),
        }
    }
    Err(errors.join("; "))
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Runs one trial; `kill_redis` kills Redis first (appendfsync always),
/// then the writer, then restarts Redis from its AOF.
fn trial(server: &mut RedisServer, trader: &str, rng: &mut Rng, kill_redis: bool) -> (u64, u64) {
    // This test's path in the test binary (`crash::crash_consistency`),
    // from the module it is in, so the child runs just this test.
    let this_test = format!("{}::crash_consistency", module_path!().split_once("::").map_or("", |(_, m)| m));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([this_test.as_str(), "--exact", "--nocapture", "--test-threads", "1"])
        .env("CRASH_CHILD", format!("{}:{trader}", server.port()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let reader = {
        let acked = acked.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(n) = line.strip_prefix("acked ").and_then(|n| n.parse().ok()) {
                    acked.store(n, Ordering::SeqCst);
                }
            }
        })
    };
    // Wait until writing is under way, then a random moment more.
    let start = Instant::now();
    while acked.load(Ordering::SeqCst) == 0 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(ms(5));
    }
    assert!(
        acked.load(Ordering::SeqCst) > 0,
        "{trader}: the child acknowledged nothing in 20 s (did `{this_test} --exact` match no test?)"
    );
    std::thread::sleep(ms(20 + rng.below(400)));
    if kill_redis {
        server.kill();
    }
    // SIGKILL: no destructor runs, nothing is flushed.
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    if kill_redis {
        server.restart();
    }
    let acked = acked.load(Ordering::SeqCst);
    let mut con = server.client();
    let prefix = stored_prefix(&mut con, trader).unwrap_or_else(|e| panic!("{trader}: torn state: {e}"));
    assert!(prefix >= acked, "{trader}: lost acknowledged writes: stored prefix {prefix} < acked {acked}");
    (prefix, acked)
}

#[test]
fn crash_consistency() {
    if let Ok(spec) = std::env::var("CRASH_CHILD") {
        let (port, trader) = spec.split_once(':').unwrap();
        child(port.parse().unwrap(), trader);
    }
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("crash_consistency seed {seed}");
    let mut rng = Rng(seed);
    let mut server = RedisServer::builder().appendfsync("always").start();
    for t in 0..4 {
        let (prefix, acked) = trial(&mut server, &format!("E{t}"), &mut rng, false);
        eprintln!("engine killed: stored prefix {prefix}, acked {acked}");
    }
    for t in 0..3 {
        let (prefix, acked) = trial(&mut server, &format!("R{t}"), &mut rng, true);
        eprintln!("redis killed: stored prefix {prefix}, acked {acked}");
    }
}
