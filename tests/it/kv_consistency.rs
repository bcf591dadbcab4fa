//! The kv layer's consistency under concurrency and faults: read-your-writes
//! with the near cache while other threads write the same keys and
//! connections are cut and Redis is frozen, a dropped writer connection
//! whose bytes reach Redis late, bursts of writes while Redis is frozen
//! (past the writer's bounds), a `touch` read back before it is written,
//! and a cut during the writer's handshake.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use crate::harness::topology::wait_until;
use crate::harness::{raw_get, Proxy, RedisServer};
use crate::kv::{kv_config, LONG};
use tradecache::kv::{self, Kv, Ttl};

const THREADS: usize = 8;
const KEYS: usize = 8;
const OPS_PER_THREAD: usize = 60_000;
/// One operation in this many is a write (few writes: a stale near-cache
/// entry lives until the next write to its key, long enough to be read).
const WRITE_EVERY: u64 = 32;
/// Faults per run, spread over its operations: every third freezes Redis,
/// the others cut every connection.
const CUTS: usize = 6;
/// Runs per test: the race the model looks for is a matter of
/// interleaving, so each test gives it several chances.
const ROUNDS: usize = 3;

/// A small deterministic generator per thread (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Threads write and read the same keys through one `Kv` with the near
/// cache, while the proxy cuts every connection a few times and Redis is
/// frozen (SIGSTOP) twice, long enough for the writer to fail. Writes to a
/// key are serialised (a per-key lock around `set`), so its values rise in
/// the order Redis applies them. Model: every read by a thread returns a
/// value at least as new as that thread's own last write to the key (and
/// never one nobody wrote); once everything is flushed, every key reads its
/// last value, in this process and from Redis.
fn read_your_writes_under_concurrency(tracking: bool, seed: u64) {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let prefix = if tracking { "ryw-t" } else { "ryw-n" };
    let config = |port: u16| {
        kv_config(port, prefix)
            .near_capacity(1_000)
            .near_ttl(Duration::from_secs(60))
            .near_tracking(tracking)
            // Cuts fail some reads; the breaker must not turn them into
            // misses, which the model would take for lost writes.
            .breaker_failures(1_000_000)
    };
    let kv = Kv::open(config(proxy.port())).unwrap();
    let keys: Vec<String> = (0..KEYS).map(|k| format!("K{k}")).collect();
    // The last value written to each key (its lock serialises the writes).
    let last: Vec<Mutex<u64>> = (0..KEYS).map(|_| Mutex::new(0)).collect();
    for (k, key) in keys.iter().enumerate() {
        let mut l = last[k].lock().unwrap();
        *l = 1;
        kv.set("ryw", key, &*l, Ttl::Never).unwrap();
    }
    kv.flush(LONG).unwrap();
    let done = AtomicUsize::new(0);
    let stale = Mutex::new(Vec::<String>::new());
    let read_errors = AtomicU64::new(0);
    let start = Barrier::new(THREADS + 1);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (kv, keys, last, done, stale, read_errors, start) =
                (&kv, &keys, &last, &done, &stale, &read_errors, &start);
            s.spawn(move || {
                let mut rng = Rng((0x9E37_79B9_7F4A_7C15 ^ seed ^ ((t as u64 + 1) * 0x1234_5678)) | 1);
                let mut own = [0u64; KEYS];
                start.wait();
                for op in 0..OPS_PER_THREAD {
                    let r = rng.next();
                    let k = (r % KEYS as u64) as usize;
                    if (r >> 32).is_multiple_of(WRITE_EVERY) {
                        let mut l = last[k].lock().unwrap();
                        let v = *l + 1;
                        kv.set("ryw", &keys[k], &v, Ttl::Never).unwrap();
                        *l = v;
                        own[k] = v;
                    } else {
                        match kv.get::<u64>("ryw", &keys[k]) {
                            Ok(got) => {
                                let newest = *last[k].lock().unwrap();
                                if got.is_none_or(|g| g < own[k] || g > newest) {
                                    stale.lock().unwrap().push(format!(
                                        "thread {t} op {op}: {} read {got:?} after its own write of {} \
                                         (newest {newest})",
                                        keys[k], own[k]
                                    ));
                                }
                            }
                            Err(_) => {
                                read_errors.fetch_add(1, SeqCst);
                            }
                        }
                    }
                    done.fetch_add(1, SeqCst);
                }
            });
        }
        // The fault thread: a fault after every so many operations (a
        // rendezvous on the progress counter, not on time). Every third
        // fault freezes Redis (SIGSTOP) until the threads have gone on for
        // a while and the writer has failed on it; the others cut every
        // connection.
        let (proxy, server, kv, done, start) = (&proxy, &server, &kv, &done, &start);
        s.spawn(move || {
            start.wait();
            let step = THREADS * OPS_PER_THREAD / (CUTS + 1);
            let errors = || kv.stats().write_errors.iter().map(|(_, n)| *n).sum::<u64>();
            for fault in 1..=CUTS {
                while done.load(SeqCst) < fault * step {
                    std::thread::yield_now();
                }
                if fault % 3 != 0 {
                    proxy.cut_all();
                    continue;
                }
                let before = errors();
                server.pause();
                let until = Instant::now() + LONG;
                while (done.load(SeqCst) < fault * step + step / 4 || errors() == before)
                    && std::time::Instant::now() < until
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                server.resume();
            }
        });
    });
    let stale = stale.into_inner().unwrap();
    assert!(
        stale.is_empty(),
        "{} stale reads (tracking {tracking}): {:#?}",
        stale.len(),
        &stale[..stale.len().min(10)]
    );
    kv.flush(LONG).unwrap();
    let s = kv.stats();
    assert!(s.reconnects >= 1, "the cuts reached the writer: {s:?}");
    let want: Vec<Option<u64>> = last.iter().map(|l| Some(*l.lock().unwrap())).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    for (k, key) in keys.iter().enumerate() {
        assert_eq!(kv.get::<u64>("ryw", key).unwrap(), want[k], "{key} in process after flush");
    }
    assert_eq!(kv.get_many::<u64>("ryw", &refs).unwrap(), want, "get_many in process after flush");
    let fresh = Kv::open(kv_config(server.port(), prefix)).unwrap();
    assert_eq!(fresh.get_many::<u64>("ryw", &refs).unwrap(), want, "Redis after flush");
    eprintln!("tracking {tracking}: {} read errors, stats {s:?}", read_errors.load(SeqCst));
}

/// The seeds of the rounds to run: `ROUNDS` fixed ones in the suite; with
/// `FUZZ_SECONDS` set (`make fuzz`), fresh ones for that many seconds.
fn rounds(tracking: bool) {
    let Some(secs) = std::env::var("FUZZ_SECONDS").ok().map(|s| s.parse::<u64>().unwrap_or(60)) else {
        for seed in 0..ROUNDS as u64 {
            read_your_writes_under_concurrency(tracking, seed);
        }
        return;
    };
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    while std::time::Instant::now() < until {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(n, |d| d.as_nanos() as u64);
        eprintln!("kv read-your-writes (tracking {tracking}) round {n}, seed {seed:#x}");
        read_your_writes_under_concurrency(tracking, seed);
        n += 1;
    }
    eprintln!("kv read-your-writes (tracking {tracking}): {n} rounds in {secs} s");
}

#[test]
fn kv_near_cache_read_your_writes_without_tracking() {
    rounds(false);
}

#[test]
fn kv_near_cache_read_your_writes_with_tracking() {
    rounds(true);
}

/// `connected_clients` of the server behind `con`.
fn connected_clients(con: &mut redis::Connection) -> usize {
    let info: String = redis::cmd("INFO").arg("clients").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// The writer's connection stalls (the proxy holds its bytes), so it gives
/// up on it and writes the batch again on a new one; newer writes follow.
/// When the old connection's bytes are delivered at last, they must not
/// bring back the older value of one key or a deleted other key.
#[test]
fn kv_a_dropped_writer_connection_delivered_late_changes_nothing() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let kv = Kv::open(kv_config(proxy.port(), "late")).unwrap();
    kv.set("ns", "a", &1u32, Ttl::Never).unwrap();
    kv.set("ns", "b", &1u32, Ttl::Never).unwrap();
    kv.flush(LONG).unwrap();
    // The writer's (and the idle read pool's) connection now forwards
    // nothing; connections opened later flow.
    proxy.freeze_current(true);
    kv.set("ns", "a", &2u32, Ttl::Never).unwrap();
    kv.set("ns", "b", &2u32, Ttl::Never).unwrap();
    // Settled only on a new connection, after the reply timeout.
    kv.flush(LONG).unwrap();
    assert!(kv.stats().reconnects >= 1, "{:?}", kv.stats());
    kv.set("ns", "a", &3u32, Ttl::Never).unwrap();
    kv.delete("ns", "b").unwrap();
    kv.flush(LONG).unwrap();
    let mut con = server.client();
    let live = proxy.open_connections();
    proxy.freeze_current(false);
    // The dropped connection's bytes reach the server (or its killed
    // connection), and it is gone on both sides: whatever it could apply,
    // it has applied.
    wait_until(
        "the dropped connection to be delivered and closed",
        LONG,
        || proxy.open_connections() < live && connected_clients(&mut con) == proxy.open_connections() + 1,
        || {
            format!(
                "proxy {} (was {live}), server {}",
                proxy.open_connections(),
                connected_clients(&mut server.client()) - 1
            )
        },
    );
    let a = raw_get(&mut con, "late:ns:a").map(|b| kv::decode::<u32>(&b).unwrap());
    assert_eq!(a, Some(3), "a acknowledged as 3");
    assert_eq!(raw_get(&mut con, "late:ns:b"), None, "b acknowledged as deleted");
    assert_eq!(kv.get::<u32>("ns", "a").unwrap(), Some(3));
    assert_eq!(kv.get::<u32>("ns", "b").unwrap(), None);
    kv.close(LONG).unwrap();
}

/// While Redis is frozen (SIGSTOP) the writer waits for replies and
/// handshakes that do not come; a burst of writes meanwhile (to a bounded
/// set of keys) is taken into its pending set, coalesced per key, not
/// refused, and lands once Redis runs again. (A set the channel refuses
/// because the burst outran the writer thread, on a loaded machine, is
/// tried again once the thread has had the CPU: the channel drains while
/// Redis is frozen, so each is taken within `LONG`; one still refused then
/// is a writer that stopped taking writes in.)
#[test]
fn kv_a_burst_while_redis_is_frozen_is_taken_not_refused() {
    const KEYS: usize = 500;
    let server = RedisServer::start();
    let kv = Kv::open(kv_config(server.port(), "frz").channel_capacity(1_000)).unwrap();
    kv.set("ns", "warm", &0u64, Ttl::Never).unwrap();
    kv.flush(LONG).unwrap();
    let errors = |kv: &Kv| kv.stats().write_errors.iter().map(|(_, n)| *n).sum::<u64>();
    let before = errors(&kv);
    server.pause();
    let keys: Vec<String> = (0..KEYS).map(|k| format!("K{k}")).collect();
    let mut last: Vec<Option<u64>> = vec![None; KEYS];
    let (mut n, mut refused) = (0u64, 0u64);
    let mut first_refusal = None;
    // Until the writer has failed twice (the reply timeout, then a
    // handshake), so the burst spans its waits; bounded in count.
    while errors(&kv) < before + 2 && n < 3_000_000 {
        let k = (n % KEYS as u64) as usize;
        let deadline = Instant::now() + LONG;
        loop {
            match kv.set("ns", &keys[k], &n, Ttl::Never) {
                Ok(_) => last[k] = Some(n),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_micros(100));
                    continue;
                }
                Err(e) => {
                    refused += 1;
                    first_refusal.get_or_insert(e.to_string());
                }
            }
            break;
        }
        n += 1;
        if refused > 0 {
            break;
        }
    }
    server.resume();
    kv.flush(LONG).unwrap();
    assert_eq!(refused, 0, "{refused} of {n} writes refused while Redis was frozen: {first_refusal:?}");
    assert!(errors(&kv) >= before + 2, "the writer met the frozen server: {:?}", kv.stats());
    let mut con = server.client();
    for (k, key) in keys.iter().enumerate() {
        let got = raw_get(&mut con, &format!("frz:ns:{key}")).map(|b| kv::decode::<u64>(&b).unwrap());
        assert_eq!(got, last[k], "{key}");
    }
    assert_eq!(kv.stats().dropped, 0);
}

/// Read-your-writes with Redis frozen (SIGSTOP) through a burst that runs
/// past every bound of the writer: 200,000 sets to distinct keys while the
/// writer may hold 2,000 keys (the batch on its way included), its channel
/// 500 more writes, and its batches (of up to 500 keys) wait for replies
/// that do not come. Each set is accepted or refused at the call (the
/// channel is full). Model:
/// - a write the writer has taken in is kept: the first 2,000 accepted
///   (taken in before any other) are never dropped, and every read of them
///   returns the value, from the first read on;
/// - every accepted write is read back, with no round trip to the frozen
///   server, unless it was dropped on arrival and reported so
///   (`take_dropped`, collected after every call so that none goes
///   unlisted);
/// - after SIGCONT, Redis holds every kept write.
#[test]
fn kv_read_your_writes_while_redis_is_frozen_past_the_bounds() {
    use std::collections::HashSet;
    const SETS: u64 = 200_000;
    const HELD: usize = 2_000;
    let server = RedisServer::start();
    let config = kv::KvConfig::builder()
        .redis(crate::harness::config(server.port(), "KV").max_batch(500))
        .key_prefix("frozen")
        .channel_capacity(500)
        .max_pending_keys(HELD);
    let kv = Kv::open(config).unwrap();
    kv.set("ns", "warm", &0u64, Ttl::Never).unwrap();
    kv.flush(LONG).unwrap();
    let errors = |kv: &Kv| kv.stats().write_errors.iter().map(|(_, n)| *n).sum::<u64>();
    let before = errors(&kv);
    let full = |n: u64| format!("frozen:ns:K{n}");
    let mut dropped: HashSet<String> = HashSet::new();
    let collect = |kv: &Kv, dropped: &mut HashSet<String>| {
        dropped.extend(kv.take_dropped().into_iter().map(|d| d.key));
    };
    // (write, what a read of it returned) for every read that did not
    // return the value written.
    let mut misread: Vec<(u64, String)> = Vec::new();
    let read = |kv: &Kv, n: u64, misread: &mut Vec<(u64, String)>| match kv.get::<u64>("ns", &format!("K{n}"))
    {
        Ok(Some(v)) if v == n => {}
        other => misread.push((n, format!("{other:?}"))),
    };
    server.pause();
    let mut accepted: Vec<u64> = Vec::new();
    let (mut n, mut refused) = (0u64, 0u64);
    // The sets, until the writer has failed twice (a reply timeout, then a
    // handshake), so the burst spans its waits; bounded in count.
    while (n < SETS || errors(&kv) < before + 2) && n < 3_000_000 {
        match kv.set("ns", &format!("K{n}"), &n, Ttl::Never) {
            Ok(_) => accepted.push(n),
            Err(e) => {
                assert_eq!(e.kind(), tradecache::ErrorKind::Unavailable, "{e}");
                refused += 1;
            }
        }
        collect(&kv, &mut dropped);
        // Now and then, reads of the first write and of the newest (unless
        // reported dropped). A read that reaches the frozen server waits
        // for it, a few times: then the breaker answers at once.
        if n % 997 == 0 {
            for m in [accepted.first(), accepted.last()].into_iter().flatten() {
                if !dropped.contains(&full(*m)) {
                    read(&kv, *m, &mut misread);
                }
            }
        }
        n += 1;
    }
    assert!(errors(&kv) >= before + 2, "the writer met the frozen server: {:?}", kv.stats());
    assert!(refused > 0 && kv.stats().dropped > 0, "the bounds were reached: {:?}", kv.stats());
    // Every write taken in, and every other accepted write not reported
    // dropped, read while still frozen.
    collect(&kv, &mut dropped);
    for (i, &m) in accepted.iter().enumerate() {
        if misread.len() > 20 {
            break;
        }
        if i < HELD || !dropped.contains(&full(m)) {
            read(&kv, m, &mut misread);
        }
    }
    server.resume();
    let mut flushed = kv.flush(LONG);
    while let Err(tradecache::Error::Dropped { .. }) = flushed {
        collect(&kv, &mut dropped);
        flushed = kv.flush(LONG);
    }
    flushed.unwrap();
    collect(&kv, &mut dropped);
    let s = kv.stats();
    assert_eq!(s.dropped_unlisted, 0, "every drop was listed, so the model knows them: {s:?}");
    let first_read_failed: Vec<_> =
        misread.iter().filter(|(m, _)| accepted[..HELD.min(accepted.len())].contains(m)).collect();
    assert!(first_read_failed.is_empty(), "reads of writes taken in: {first_read_failed:?}");
    let taken_in: Vec<&u64> = accepted.iter().take(HELD).filter(|m| dropped.contains(&full(**m))).collect();
    assert!(taken_in.is_empty(), "writes the writer had taken in were dropped: {taken_in:?}");
    let unreported: Vec<_> = misread.iter().filter(|(m, _)| !dropped.contains(&full(*m))).collect();
    assert!(
        unreported.is_empty(),
        "{} reads of kept writes (of {} accepted, {} dropped) did not return the value: {:?}",
        unreported.len(),
        accepted.len(),
        dropped.len(),
        &unreported[..unreported.len().min(10)]
    );
    // Redis converges: every kept write is there, no dropped one.
    let mut con = server.client();
    let mut kept = 0;
    for &m in &accepted {
        let got = raw_get(&mut con, &full(m)).map(|b| kv::decode::<u64>(&b).unwrap());
        if dropped.contains(&full(m)) {
            assert_eq!(got, None, "{}", full(m));
        } else {
            assert_eq!(got, Some(m), "{}", full(m));
            kept += 1;
        }
    }
    eprintln!(
        "{n} sets: {} accepted, {kept} kept, {} dropped, {refused} refused",
        accepted.len(),
        dropped.len()
    );
}

/// A `touch` of a key whose value is settled (in Redis, not among the
/// queued writes) is read back before the writer has sent it: once its
/// new TTL has passed, the key is gone for this process, even while the
/// writer's `PEXPIRE` cannot reach Redis (the proxy holds it) and Redis
/// itself, asked, still has the value.
#[test]
fn kv_a_touch_of_a_settled_key_is_read_back_before_it_is_written() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    // Every connection forwards until it sends a PEXPIRE (only the writer
    // does), which waits there.
    proxy.hold_new_at(b"PEXPIRE");
    let kv = Kv::open(kv_config(proxy.port(), "touch")).unwrap();
    kv.set("session", "u-1", &"alice", Ttl::Never).unwrap();
    kv.set("session", "u-2", &"bob", Ttl::Never).unwrap();
    kv.flush(LONG).unwrap();
    assert_eq!(kv.get::<String>("session", "u-1").unwrap().as_deref(), Some("alice"));
    kv.touch("session", "u-1", Ttl::After(Duration::from_millis(30))).unwrap();
    kv.touch("session", "u-2", Ttl::After(Duration::from_secs(600))).unwrap();
    wait_until("the writer to send the PEXPIRE", LONG, || proxy.held() >= 1, String::new);
    std::thread::sleep(Duration::from_millis(60));
    // Redis has not seen the touch: it still holds u-1, without a TTL.
    assert!(raw_get(&mut server.client(), "touch:session:u-1").is_some());
    assert_eq!(kv.get::<String>("session", "u-1").unwrap(), None, "served past its new TTL");
    assert!(!kv.exists("session", "u-1").unwrap());
    assert_eq!(kv.get_many::<String>("session", &["u-1", "u-2"]).unwrap(), vec![None, Some("bob".into())]);
    assert_eq!(kv.get::<String>("session", "u-2").unwrap().as_deref(), Some("bob"), "extended: still there");
    proxy.release();
    kv.flush(LONG).unwrap();
    // Sent with what was left of its TTL when packed: it runs out in Redis
    // too (`PEXPIRE` counts from when Redis applies it).
    let mut con = server.client();
    wait_until(
        "u-1 to expire in Redis",
        LONG,
        || raw_get(&mut con, "touch:session:u-1").is_none(),
        String::new,
    );
    assert_eq!(kv.get::<String>("session", "u-1").unwrap(), None);
    assert_eq!(kv.get::<String>("session", "u-2").unwrap().as_deref(), Some("bob"));
}

/// A connection cut while the writer's new connection waits for the reply
/// to `CLIENT INFO` (its handshake) is a lost connection, counted as `io`,
/// never as `auth` (an ACL without `+client|info`): the writer reconnects
/// and writes.
#[test]
fn kv_a_cut_during_the_writers_handshake_is_not_an_auth_error() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let kv = Kv::open(kv_config(proxy.port(), "hs")).unwrap();
    kv.set("ns", "a", &1u32, Ttl::Never).unwrap();
    kv.flush(LONG).unwrap();
    // New connections stop at `CLIENT INFO` (`SETINFO` does not match).
    proxy.hold_new_at(b"$4\r\nINFO\r\n");
    proxy.cut_all();
    kv.set("ns", "a", &2u32, Ttl::Never).unwrap();
    wait_until(
        "the writer's new connection to send CLIENT INFO",
        LONG,
        || proxy.held() >= 1,
        || format!("{:?}", kv.stats().write_errors),
    );
    proxy.cut_all();
    proxy.release();
    kv.flush(LONG).unwrap();
    let s = kv.stats();
    assert!(s.reconnects >= 1, "{s:?}");
    assert!(
        s.write_errors.iter().all(|(class, _)| *class != "auth"),
        "a cut connection counted as an auth error: {:?} (last: {:?})",
        s.write_errors,
        kv.health().last_error
    );
    assert_eq!(kv.get::<u32>("ns", "a").unwrap(), Some(2));
}

/// Issue 28, item 2, for the kv layer: the connection is cut at each reply
/// boundary in turn (counted across the writer's `MULTI … EXEC` batches,
/// the readers' pipelined `MGET`s, `GET`, `EXISTS`, `SCAN`/`UNLINK`, and
/// the handshakes of the connections opened after a cut). A reply stream
/// read past a failure would fall out of step: a write settled on a
/// reply meant for another command, a read answered with another key's
/// value. Every cut is a reconnect: every write lands once, as written,
/// and every read that succeeds returns its own key's value.
#[test]
fn kv_a_cut_at_every_reply_boundary_keeps_writer_and_readers_in_step() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    // Batches (and `MGET` chunks) of 3: several pipelined replies each;
    // one read connection, so the readers' replies follow in order.
    let cfg = kv_config(proxy.port(), "cut").max_batch_size(3).max_connections(1).breaker_failures(1_000_000);
    let kv = Kv::open(cfg).unwrap();
    let mut admin = server.client();
    let keys = ["a", "b", "c", "d", "e", "f", "g"];
    let value = |round: u64, i: usize| round * 100 + i as u64;
    // Reads retried until one succeeds (a cut read is an error, or retried
    // inside on a new connection); whatever succeeds must be right.
    fn settled<T>(what: &str, mut f: impl FnMut() -> tradecache::Result<T>) -> T {
        let mut last = None;
        for _ in 0..5 {
            match f() {
                Ok(v) => return v,
                Err(e) => last = Some(e),
            }
        }
        panic!("{what}: still failing after 5 tries: {last:?}")
    }
    // Round n cuts after n replies, until a round ends before its cut:
    // then every reply boundary of a round has been cut at.
    let mut uncut = None;
    for round in 0..400u64 {
        proxy.cut_after_replies(round);
        // The last key is deleted every other round, written otherwise.
        let deleted = round % 2 == 1;
        for (i, k) in keys.iter().enumerate() {
            if deleted && i == keys.len() - 1 {
                kv.delete("ns", k).unwrap();
            } else {
                kv.set("ns", k, &value(round, i), Ttl::Never).unwrap();
            }
        }
        kv.set("tmp", "x", &round, Ttl::Never).unwrap();
        kv.set("tmp", "y", &round, Ttl::Never).unwrap();
        kv.flush(LONG).unwrap_or_else(|e| panic!("round {round}: flush: {e}"));
        let want: Vec<Option<u64>> =
            (0..keys.len()).map(|i| (!(deleted && i == keys.len() - 1)).then(|| value(round, i))).collect();
        for (i, k) in keys.iter().enumerate() {
            let stored = raw_get(&mut admin, &format!("cut:ns:{k}")).map(|b| kv::decode::<u64>(&b).unwrap());
            assert_eq!(stored, want[i], "round {round}: key {k} in Redis");
        }
        let got = settled("get_many", || kv.get_many::<u64>("ns", &keys));
        assert_eq!(got, want, "round {round}: get_many");
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(settled("get", || kv.get::<u64>("ns", k)), want[i], "round {round}: get {k}");
            assert_eq!(
                settled("exists", || kv.exists("ns", k)),
                want[i].is_some(),
                "round {round}: exists {k}"
            );
        }
        settled("clear_namespace", || kv.clear_namespace("tmp"));
        assert_eq!(raw_get(&mut admin, "cut:tmp:x"), None, "round {round}");
        assert_eq!(raw_get(&mut admin, "cut:tmp:y"), None, "round {round}");
        if proxy.disarm_reply_cut() {
            uncut = Some(round);
            break;
        }
    }
    let uncut = uncut.expect("a round with fewer replies than its cut waited for");
    assert!(uncut >= 20, "a round has only {uncut} replies: the sweep cut at too few boundaries");
    let s = kv.stats();
    assert!(s.reconnects >= 1, "{s:?}");
    assert!(kv.take_dropped().is_empty(), "{s:?}");
    assert!(
        s.write_errors.iter().all(|(class, _)| *class != "protocol"),
        "a reply read out of step: {:?} (last: {:?})",
        s.write_errors,
        kv.health().last_error
    );
    let report = kv.close(LONG).unwrap();
    assert_eq!(report.unpersisted, 0, "{report:?}");
}

/// Issue 28, item 2, for the kv readers: a read whose reply does not come
/// in time (the network stalls both ways, so the reply is only late) must
/// leave nothing behind on the pool: once the stalled bytes flow again,
/// the next reads get their own replies, never the late reply of a read
/// that timed out.
#[test]
fn kv_a_timed_out_reads_late_reply_is_never_taken_for_a_later_read() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    // `MGET`s of one key: `get_many` of two keys pipelines two commands.
    let cfg =
        kv_config(proxy.port(), "late_read").max_batch_size(1).max_connections(1).breaker_failures(1_000_000);
    let kv = Kv::open(cfg).unwrap();
    kv.set("ns", "a", &1u32, Ttl::Never).unwrap();
    kv.set("ns", "b", &2u32, Ttl::Never).unwrap();
    kv.flush(LONG).unwrap();
    assert_eq!(kv.get::<u32>("ns", "a").unwrap(), Some(1));
    proxy.half_open(true);
    let stalled = kv.get::<u32>("ns", "a");
    assert!(stalled.is_err(), "{stalled:?}");
    let stalled = kv.get_many::<u32>("ns", &["a", "a"]);
    assert!(stalled.is_err(), "{stalled:?}");
    proxy.half_open(false);
    assert_eq!(kv.get::<u32>("ns", "b").unwrap(), Some(2));
    assert_eq!(kv.get_many::<u32>("ns", &["b", "b"]).unwrap(), vec![Some(2), Some(2)]);
    assert!(!kv.exists("ns", "c").unwrap());
    assert_eq!(kv.get::<u32>("ns", "b").unwrap(), Some(2));
    kv.close(LONG).unwrap();
}
