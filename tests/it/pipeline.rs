//! The write-behind pipeline against a real redis-server: round trips,
//! ordering, `wait`/`flush`, and a clean close.

use std::time::Duration;

use crate::harness::*;
use tradecache::model::Position;
use tradecache::{Cache, ErrorKind, OverflowPolicy, Seq};

#[test]
fn round_trip_put_append_delete() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    cache.put(&Counter { id: "A".into(), value: 1 }).unwrap();
    cache.put(&Counter { id: "B".into(), value: 2 }).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.append("B", &Tick { n: 1 }).unwrap();
    cache.delete::<Counter>("B").unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();

    let mut con = server.client();
    assert_eq!(counter(&mut con, "T1", "A"), Some(Counter { id: "A".into(), value: 1 }));
    assert_eq!(ticks(&mut con, "T1", "A"), vec![1]);
    assert_eq!(counter(&mut con, "T1", "B"), None);
    assert!(ticks(&mut con, "T1", "B").is_empty(), "delete removes the event log too");
    let index: Vec<String> = redis::cmd("SMEMBERS").arg("trader-T1:index:counters").query(&mut con).unwrap();
    assert_eq!(index, vec!["A".to_string()]);

    let (loaded, report) = cache.load_all::<Counter>().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(loaded, vec![Counter { id: "A".into(), value: 1 }]);
    let (events, _) = cache.load_events::<Tick>("A").unwrap();
    assert_eq!(events, vec![Tick { n: 1 }]);
    cache.close(Duration::from_secs(5)).unwrap();
}

#[test]
fn writes_to_one_key_keep_their_order() {
    let server = RedisServer::start();
    let cache = Cache::open(
        config(server.port(), "T1").overflow(OverflowPolicy::Block { timeout: Duration::from_secs(5) }),
    )
    .unwrap();
    for i in 1..=5_000u64 {
        cache.put(&Counter { id: "A".into(), value: i }).unwrap();
        cache.append("A", &Tick { n: i }).unwrap();
    }
    cache.flush(Duration::from_secs(10)).unwrap();
    let mut con = server.client();
    assert_eq!(counter(&mut con, "T1", "A").unwrap().value, 5_000, "last write wins");
    assert_exactly_once(&ticks(&mut con, "T1", "A"), 5_000);
    let stats = cache.stats();
    assert_eq!(stats.acked, stats.accepted);
    assert_eq!(stats.backlog, 0);
}

#[test]
fn delete_then_put_in_one_batch() {
    let server = RedisServer::start();
    // A linger makes the three writes share one batch.
    let cache = Cache::open(config(server.port(), "T1").buffer_interval_ms(50)).unwrap();
    cache.put(&Counter { id: "A".into(), value: 1 }).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    cache.delete::<Counter>("A").unwrap();
    cache.put(&Counter { id: "A".into(), value: 2 }).unwrap();
    cache.append("A", &Tick { n: 2 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let mut con = server.client();
    assert_eq!(counter(&mut con, "T1", "A").unwrap().value, 2);
    assert_eq!(ticks(&mut con, "T1", "A"), vec![2], "the log restarts after a delete");
}

/// `replace` is a put whose entity starts again: its log and index entry
/// go in the same write (one sequence number), events appended after it
/// stay, and a pending event of the entity before it never lands after it.
/// (That no crash or cut leaves the delete without the put is
/// `model_based::random_sequences_match_the_model`'s `Op::Replace`.)
#[test]
fn replace_restarts_the_log_in_one_write() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1").buffer_interval_ms(50)).unwrap();
    cache.put(&Counter { id: "A".into(), value: 1 }).unwrap();
    cache.append("A", &Tick { n: 1 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    // Pending together (the linger): an event before the replace, one after.
    cache.append("A", &Tick { n: 2 }).unwrap();
    let before = cache.last_seq();
    let seq = cache.replace(&Counter { id: "A".into(), value: 2 }).unwrap();
    assert_eq!(seq.get(), before.get() + 1, "one write");
    cache.append("A", &Tick { n: 3 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    let mut con = server.client();
    assert_eq!(counter(&mut con, "T1", "A").unwrap().value, 2);
    assert_eq!(ticks(&mut con, "T1", "A"), vec![3], "the log restarted at the replace");
    let index: Vec<String> = redis::cmd("SMEMBERS").arg("trader-T1:index:counters").query(&mut con).unwrap();
    assert_eq!(index, vec!["A".to_string()]);
    // A replace of an entity never written is a put.
    cache.replace(&Counter { id: "B".into(), value: 5 }).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(counter(&mut con, "T1", "B").unwrap().value, 5);
}

#[test]
fn wait_and_flush() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1")).unwrap();
    let seq = cache.put(&Counter { id: "A".into(), value: 7 }).unwrap();
    assert_eq!(seq, Seq::new(1));
    cache.wait(seq, Duration::from_secs(5)).unwrap();
    assert!(cache.acked_seq() >= seq);
    assert_eq!(counter(&mut server.client(), "T1", "A").unwrap().value, 7);

    // A sequence number never handed out is never acknowledged.
    let err = cache.wait(Seq::new(1_000), Duration::from_millis(50)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);

    for i in 0..100 {
        cache.append("A", &Tick { n: i + 1 }).unwrap();
    }
    cache.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(ticks(&mut server.client(), "T1", "A").len(), 100);
}

#[test]
fn writes_from_many_threads() {
    let server = RedisServer::start();
    let cache = std::sync::Arc::new(
        Cache::open(
            config(server.port(), "T1").overflow(OverflowPolicy::Block { timeout: Duration::from_secs(10) }),
        )
        .unwrap(),
    );
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                for i in 1..=2_000 {
                    cache.append(&format!("T{t}"), &Tick { n: i }).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    cache.flush(Duration::from_secs(10)).unwrap();
    let mut con = server.client();
    for t in 0..4 {
        assert_exactly_once(&ticks(&mut con, "T1", &format!("T{t}")), 2_000);
    }
}

/// Item 1: the `SADD` of a re-put was skipped because the id was still
/// known to be indexed when the batch was built; the delete before it then
/// removed the id from the index.
#[test]
fn delete_then_put_the_same_id_stays_indexed() {
    let server = RedisServer::start();
    let cache = Cache::open(config(server.port(), "T1").max_batch(1)).unwrap();
    cache.put(&counter_v("X", 1)).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    cache.delete::<Counter>("X").unwrap();
    cache.put(&counter_v("X", 2)).unwrap();
    cache.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(ids::<Counter>(&cache), vec!["X"]);
    // Closing and reopening a position under the same id, many times.
    for round in 0..20u64 {
        cache.put(&Position::example("P-1")).unwrap();
        if round % 3 == 0 {
            cache.flush(Duration::from_secs(5)).unwrap();
        }
        cache.delete::<Position>("P-1").unwrap();
        cache.put(&Position::example("P-1")).unwrap();
    }
    cache.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(ids::<Position>(&cache), vec!["P-1"]);
}

/// Fills the channel of `cache` (Redis stopped, the flusher at its pending
/// bound): puts until one is refused as full, at most 100,000 tries.
fn fill_channel(cache: &Cache) {
    for i in 0..100_000u64 {
        match cache.put(&counter_v(&format!("F-{i}"), i)) {
            Ok(_) => {}
            Err(e) if e.is_full() => return,
            Err(e) => panic!("{e:?}"),
        }
    }
    panic!("the channel never filled");
}

/// A caller waiting for room (`clear`, or a `Block` put) never holds the
/// producer lock while it waits: with the channel full and Redis stopped,
/// a `Reject` put is refused at once and a `Block { timeout }` put gives up
/// after its own timeout, both while the long `clear` is still waiting.
#[test]
fn a_waiting_caller_never_holds_up_another() {
    let server = RedisServer::start();
    let small = |trader: &str, overflow| {
        config(server.port(), trader)
            .channel_capacity(8)
            .max_pending_snapshots(8)
            .response_timeout(ms(200))
            .overflow(overflow)
    };
    let reject = Cache::open(small("R1", OverflowPolicy::Reject)).unwrap();
    let block = Cache::open(small("B1", OverflowPolicy::Block { timeout: ms(20) })).unwrap();
    server.pause();
    for cache in [&reject, &block] {
        // Until the flusher has stopped taking (its pending bound reached
        // while it cannot connect): then the clear below must wait.
        fill_channel(cache);
        wait_until("the flusher to give up its connection", Duration::from_secs(20), || {
            !cache.health().connected
        });
        for _ in 0..50 {
            fill_channel(cache);
            std::thread::sleep(ms(100));
            if cache.put(&counter_v("probe", 0)).is_err_and(|e| e.is_full()) {
                break;
            }
        }
        std::thread::scope(|s| {
            let clear = s.spawn(|| cache.clear(Duration::from_secs(20)));
            // Let the clear start its wait for room (it holds nothing now,
            // so this only makes the interleaving likely, not required).
            std::thread::sleep(ms(100));
            // (The flusher may still take a few writes before its bound.)
            let refused = (0..1_000)
                .any(|i| cache.put(&counter_v(&format!("late-{i}"), 1)).is_err_and(|e| e.is_full()));
            assert!(refused);
            assert!(!clear.is_finished(), "the put returned only after the clear gave up");
            server.resume();
            let cleared = clear.join().unwrap();
            assert!(cleared.is_ok(), "{cleared:?}");
            server.pause();
        });
    }
    server.resume();
}
