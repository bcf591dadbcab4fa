//! tradecache-nautilus against Nautilus's own Redis backend
//! (nautilus-infrastructure 0.57.0), on one private redis-server, in one
//! run: calling-thread cost, time until in Redis, restart time of
//! `cache_all()`, Redis bytes per order, and the same connection fault
//! injected into both. Writes `target/bench/nautilus.json` and prints a
//! table.
//!
//! Nautilus's Rust adapter (`RedisCacheDatabaseAdapter`) panics on every
//! write method in 0.57.0, so its side writes through
//! `RedisCacheDatabase::insert` / `update` with the payloads Nautilus's
//! Python adapter sends (the order, then each event appended to the
//! order's list; the position; the account), serialized with MessagePack
//! on the calling thread as the Python adapter does; it loads through
//! `RedisCacheDatabaseAdapter::load_all` (driven by Nautilus's `Cache`).
//!
//! `cargo bench -p tradecache-nautilus --bench side_by_side` (or
//! `make bench-nautilus`); sizes: `NAUT_BENCH_ORDERS` (default 10,000),
//! `NAUT_BENCH_RESTART` (default `10000,100000`).

#[path = "../tests/it/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use nautilus_common::cache::{database::CacheDatabaseAdapter, Cache, CacheConfig};
use nautilus_common::live::get_runtime;
use nautilus_core::{UnixNanos, UUID4};
use nautilus_infrastructure::redis::cache::{RedisCacheDatabase, RedisCacheDatabaseAdapter};
use nautilus_model::{
    accounts::{AccountAny, CashAccount},
    enums::{LiquiditySide, OrderSide, OrderType},
    events::{account::stubs::cash_account_state_million_usd, OrderEventAny},
    identifiers::{AccountId, ClientOrderId, PositionId, TradeId, VenueOrderId},
    instruments::{stubs::audusd_sim, Instrument, InstrumentAny},
    orders::{builder::OrderTestBuilder, stubs::TestOrderEventStubs, Order, OrderAny},
    position::Position,
    types::{AccountBalance, Currency, Money, Price, Quantity},
};
use serde_json::json;
use tradecache_nautilus::TradecacheDatabase;

use harness::{cache_config, Redis};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

fn instrument() -> InstrumentAny {
    InstrumentAny::CurrencyPair(audusd_sim())
}

fn account_id() -> AccountId {
    AccountId::from("SIM-001")
}

/// One order's life: the order as added, then submitted, accepted,
/// partially filled and filled (5 events with the initialization), the
/// position after each fill, and an account balance event.
struct Life {
    order: OrderAny,
    events: Vec<OrderEventAny>,
    positions: Vec<Position>,
    account: AccountAny,
}

fn life(n: usize, partial: bool) -> Life {
    let instrument = instrument();
    let order = OrderTestBuilder::new(OrderType::Limit)
        .instrument_id(instrument.id())
        .client_order_id(ClientOrderId::new(format!("O-{n}")))
        .side(OrderSide::Buy)
        .price(Price::from("1.00000"))
        .quantity(Quantity::from("1000"))
        .build();
    let pid = PositionId::new(format!("P-{n}"));
    let mut cur = order.clone();
    let mut events = Vec::new();
    let mut positions = Vec::new();
    let push = |cur: &mut OrderAny, e: OrderEventAny, events: &mut Vec<OrderEventAny>| {
        cur.apply(e.clone()).unwrap();
        events.push(e);
    };
    push(&mut cur, TestOrderEventStubs::submitted(&order, account_id()), &mut events);
    let acc = TestOrderEventStubs::accepted(&cur, account_id(), VenueOrderId::new(format!("V-{n}")));
    push(&mut cur, acc, &mut events);
    let fills: &[&str] = if partial { &["400", "600"] } else { &["1000"] };
    let mut position: Option<Position> = None;
    for (i, qty) in fills.iter().enumerate() {
        let f = TestOrderEventStubs::filled(
            &cur,
            &instrument,
            Some(TradeId::new(format!("T-{n}-{i}"))),
            Some(pid),
            Some(Price::from("1.00000")),
            Some(Quantity::from(*qty)),
            Some(LiquiditySide::Maker),
            Some(Money::from("0.10 USD")),
            Some(UnixNanos::from(1_000 + i as u64)),
            Some(account_id()),
        );
        let OrderEventAny::Filled(fill) = f else { unreachable!() };
        match &mut position {
            None => position = Some(Position::new(&instrument, fill)),
            Some(p) => p.apply(&fill),
        }
        positions.push(position.clone().unwrap());
        push(&mut cur, f, &mut events);
    }
    let mut account = AccountAny::Cash(CashAccount::new(
        cash_account_state_million_usd("1000000 USD", "0 USD", "1000000 USD"),
        true,
        false,
    ));
    let mut s = cash_account_state_million_usd("1000000 USD", "0 USD", "1000000 USD");
    s.event_id = UUID4::new();
    s.balances = vec![AccountBalance::new(
        Money::new(999_999.0, Currency::USD()),
        Money::new(0.0, Currency::USD()),
        Money::new(999_999.0, Currency::USD()),
    )];
    account.apply(s).unwrap();
    Life { order, events, positions, account }
}

fn msgpack<T: serde::Serialize>(v: &T) -> Bytes {
    Bytes::from(rmp_serde::to_vec_named(v).expect("msgpack"))
}

// --- the two sides ---------------------------------------------------

/// Nautilus's own backend, written the way its Python adapter writes.
struct Theirs {
    db: RedisCacheDatabase,
}

impl Theirs {
    fn open(port: u16, config: &CacheConfig) -> Theirs {
        let db = get_runtime()
            .block_on(RedisCacheDatabase::new(harness::trader(), UUID4::new(), config.clone()))
            .expect("their RedisCacheDatabase");
        let _ = port;
        Theirs { db }
    }
    fn add_order(&self, order: &OrderAny) {
        let key = format!("orders:{}", order.client_order_id());
        self.db.insert(key, Some(vec![msgpack(order)])).unwrap();
        let coid = Bytes::from(order.client_order_id().to_string());
        self.db.insert("index:orders".into(), Some(vec![coid.clone()])).unwrap();
        self.db.insert("index:orders_open".into(), Some(vec![coid])).unwrap();
    }
    fn update_order(&mut self, event: &OrderEventAny) {
        let key = format!("orders:{}", event.client_order_id());
        self.db.update(key, Some(vec![msgpack(event)])).unwrap();
    }
    fn update_position(&mut self, position: &Position, first: bool) {
        let key = format!("positions:{}", position.id);
        if first {
            self.db.insert(key, Some(vec![msgpack(position)])).unwrap();
        } else {
            self.db.update(key, Some(vec![msgpack(position)])).unwrap();
        }
    }
    fn update_account(&mut self, account: &AccountAny, first: bool) {
        let key = format!("accounts:{}", account.id());
        if first {
            self.db.insert(key, Some(vec![msgpack(account)])).unwrap();
        } else {
            self.db.update(key, Some(vec![msgpack(&account.last_event().unwrap())])).unwrap();
        }
    }
    fn trader_key(&self) -> String {
        self.db.trader_key.clone()
    }
}

/// Ours, with `OverflowPolicy::Block` (10 s): when the bounded channel is
/// full, a write waits for room (and the wait shows in the calling-thread
/// figures) instead of being refused.
fn ours(port: u16) -> TradecacheDatabase {
    let config = cache_config(port);
    let tc = tradecache_nautilus::tradecache_config(harness::trader(), UUID4::new(), &config)
        .expect("config")
        .overflow(tradecache::OverflowPolicy::Block { timeout: Duration::from_secs(10) });
    TradecacheDatabase::open(tc, &config).expect("ours")
}

fn ours_trader_key(db: &TradecacheDatabase) -> String {
    db.cache().unwrap().config().trader_key()
}

// --- measurements ----------------------------------------------------

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap()
}

fn pct(h: &Histogram<u64>) -> serde_json::Value {
    json!({
        "p50_ns": h.value_at_quantile(0.50),
        "p99_ns": h.value_at_quantile(0.99),
        "p999_ns": h.value_at_quantile(0.999),
        "count": h.len(),
    })
}

fn timed<F: FnOnce()>(h: &mut Histogram<u64>, f: F) {
    let t = Instant::now();
    f();
    h.record(t.elapsed().as_nanos().max(1) as u64).unwrap();
}

/// Waits until `key` (a list) has at least `len` entries.
fn wait_len(con: &mut redis::Connection, key: &str, len: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let n: usize = redis::cmd("LLEN").arg(key).query(con).unwrap_or(0);
        if n >= len {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::hint::spin_loop();
    }
}

fn flushall(redis: &Redis) {
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.client()).unwrap();
}

fn used_memory(redis: &Redis) -> i64 {
    let info: String = redis::cmd("INFO").arg("memory").query(&mut redis.client()).unwrap();
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

struct Calls {
    add_order: Histogram<u64>,
    update_order: Histogram<u64>,
    update_position: Histogram<u64>,
}

fn calls_json(c: &Calls) -> serde_json::Value {
    json!({ "add_order": pct(&c.add_order), "update_order": pct(&c.update_order), "update_position": pct(&c.update_position) })
}

/// Calling-thread cost of the write methods, N orders.
fn calling_thread(redis: &Redis, lives: &[Life]) -> (Calls, Calls) {
    flushall(redis);
    let db = ours(redis.port());
    let mut o = Calls { add_order: hist(), update_order: hist(), update_position: hist() };
    for (i, l) in lives.iter().enumerate() {
        timed(&mut o.add_order, || db.add_order(&l.order, None).unwrap());
        for e in &l.events {
            timed(&mut o.update_order, || db.update_order(e).unwrap());
        }
        for (j, p) in l.positions.iter().enumerate() {
            if j == 0 {
                timed(&mut o.update_position, || db.add_position(p).unwrap());
            } else {
                timed(&mut o.update_position, || db.update_position(p).unwrap());
            }
        }
        if i == 0 {
            db.add_account(&l.account).unwrap();
        } else {
            db.update_account(&l.account).unwrap();
        }
    }
    db.flush_pending(Duration::from_secs(120)).unwrap();
    drop(db);

    flushall(redis);
    let mut theirs = Theirs::open(redis.port(), &cache_config(redis.port()));
    let mut t = Calls { add_order: hist(), update_order: hist(), update_position: hist() };
    for (i, l) in lives.iter().enumerate() {
        timed(&mut t.add_order, || theirs.add_order(&l.order));
        for e in &l.events {
            timed(&mut t.update_order, || theirs.update_order(e));
        }
        for (j, p) in l.positions.iter().enumerate() {
            timed(&mut t.update_position, || theirs.update_position(p, j == 0));
        }
        theirs.update_account(&l.account, i == 0);
    }
    let last = lives.last().unwrap();
    let key = format!("{}:orders:{}", theirs.trader_key(), last.order.client_order_id());
    wait_len(&mut redis.client(), &key, 1 + last.events.len(), Duration::from_secs(300));
    theirs.db.close();
    (o, t)
}

/// Time from the call until the event is visible in Redis to an
/// independent reader, events paced at `rate` per second.
fn ack_latency(
    redis: &Redis,
    lives: &[Life],
    rate: u64,
    probe_every: usize,
    their_buffer_ms: Option<usize>,
) -> (Histogram<u64>, Histogram<u64>) {
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    // The orders are added first, and everything they wrote is in Redis
    // before the paced events start: a burst of 10,000 base writes still
    // in flight would otherwise be measured as the first events' latency.
    let run = |write: &mut dyn FnMut(&OrderEventAny),
               key_of: &dyn Fn(&OrderEventAny) -> String,
               base: &mut dyn FnMut(&Life),
               settle: &mut dyn FnMut()| {
        let (tx, rx) = std::sync::mpsc::channel::<(String, usize, Instant)>();
        let port = redis.port();
        let prober = std::thread::spawn(move || {
            let mut con =
                redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap().get_connection().unwrap();
            let mut h = hist();
            for (key, len, t0) in rx {
                if wait_len(&mut con, &key, len, Duration::from_secs(30)) {
                    h.record(t0.elapsed().as_nanos().max(1) as u64).unwrap();
                }
            }
            h
        });
        for l in lives {
            base(l);
        }
        settle();
        let start = Instant::now();
        let mut k = 0u64;
        for l in lives {
            for (j, e) in l.events.iter().enumerate() {
                let due = start + interval * k as u32;
                while Instant::now() < due {
                    std::hint::spin_loop();
                }
                let t0 = Instant::now();
                write(e);
                if (k as usize).is_multiple_of(probe_every) {
                    tx.send((key_of(e), j + 2, t0)).unwrap();
                }
                k += 1;
            }
        }
        drop(tx);
        prober.join().unwrap()
    };

    flushall(redis);
    let db = ours(redis.port());
    let tk = ours_trader_key(&db);
    let mut written: HashMap<ClientOrderId, usize> = HashMap::new();
    let ours_h = {
        let mut base = |l: &Life| {
            db.add_order(&l.order, None).unwrap();
            // One event already in the log, so that `j + 2` entries is this
            // event's arrival in both layouts (theirs holds the order first).
            db.update_order(&l.order.events()[0].clone()).unwrap();
        };
        let mut write = |e: &OrderEventAny| {
            *written.entry(e.client_order_id()).or_default() += 1;
            db.update_order(e).unwrap();
        };
        let key_of = |e: &OrderEventAny| format!("{tk}:nt-orders:{}:events", e.client_order_id());
        let mut settle = || db.flush_pending(Duration::from_secs(60)).unwrap();
        let h = run(&mut write, &key_of, &mut base, &mut settle);
        db.flush_pending(Duration::from_secs(60)).unwrap();
        h
    };
    drop(db);

    flushall(redis);
    let their_config = CacheConfig { buffer_interval_ms: their_buffer_ms, ..cache_config(redis.port()) };
    let mut theirs = Theirs::open(redis.port(), &their_config);
    let tk = theirs.trader_key();
    let theirs_h = {
        let theirs_cell = std::cell::RefCell::new(&mut theirs);
        let mut base = |l: &Life| theirs_cell.borrow_mut().add_order(&l.order);
        let mut write = |e: &OrderEventAny| theirs_cell.borrow_mut().update_order(e);
        let key_of = |e: &OrderEventAny| format!("{tk}:orders:{}", e.client_order_id());
        // Their writer has no acknowledgement: wait for the last order.
        let last = key_of(&lives[lives.len() - 1].events[0]);
        let mut con = redis.client();
        let mut settle =
            || assert!(wait_len(&mut con, &last, 1, Duration::from_secs(60)), "their base writes");
        run(&mut write, &key_of, &mut base, &mut settle)
    };
    theirs.db.close();
    (ours_h, theirs_h)
}

/// Redis bytes per order with 5 events (initialized + 4), both layouts.
fn bytes_per_order(redis: &Redis, lives: &[Life]) -> (f64, f64) {
    flushall(redis);
    let before = used_memory(redis);
    let mut db = ours(redis.port());
    for l in lives {
        db.add_order(&l.order, None).unwrap();
        for e in &l.events {
            db.update_order(e).unwrap();
        }
    }
    db.close().unwrap();
    let ours_b = (used_memory(redis) - before) as f64 / lives.len() as f64;

    flushall(redis);
    let before = used_memory(redis);
    let mut theirs = Theirs::open(redis.port(), &cache_config(redis.port()));
    for l in lives {
        theirs.add_order(&l.order);
        for e in &l.events {
            theirs.update_order(e);
        }
    }
    let last = lives.last().unwrap();
    let key = format!("{}:orders:{}", theirs.trader_key(), last.order.client_order_id());
    wait_len(&mut redis.client(), &key, 1 + last.events.len(), Duration::from_secs(300));
    theirs.db.close();
    let theirs_b = (used_memory(redis) - before) as f64 / lives.len() as f64;
    (ours_b, theirs_b)
}

/// `cache_all()` of a new Nautilus `Cache` on a new adapter, `n` orders
/// with their events and positions.
fn restart(redis: &Redis, template: &Life, n: usize) -> (Duration, Duration, usize, usize) {
    // Populate: ours through the adapter.
    flushall(redis);
    let mut db = ours(redis.port());
    populate(n, template, |order, events, position| {
        db.add_order(order, None).unwrap();
        for e in events {
            db.update_order(e).unwrap();
        }
        db.add_position(position).unwrap();
    });
    db.close().unwrap();
    let t = Instant::now();
    let db = ours(redis.port());
    let mut cache = Cache::new(Some(cache_config(redis.port())), Some(Box::new(db)));
    pollster::block_on(cache.cache_all()).unwrap();
    let ours_t = t.elapsed();
    cache.build_index();
    let ours_n = cache.orders(None, None, None, None, None).len();
    cache.dispose();
    if std::env::var_os("NAUT_BENCH_BREAKDOWN").is_some() {
        let t = Instant::now();
        let db = ours(redis.port());
        let open = t.elapsed();
        let t = Instant::now();
        let orders = pollster::block_on(db.load_orders()).unwrap().len();
        let o = t.elapsed();
        let t = Instant::now();
        let positions = pollster::block_on(db.load_positions()).unwrap().len();
        let p = t.elapsed();
        eprintln!("  ours: open {open:?}, load_orders {o:?} ({orders}), load_positions {p:?} ({positions})");
        // What the bytes cost to fetch and to decode, outside tradecache.
        let tk = ours_trader_key(&db);
        let mut con = redis.client();
        let t = Instant::now();
        let ids: Vec<String> =
            redis::cmd("SMEMBERS").arg(format!("{tk}:index:nt-positions")).query(&mut con).unwrap();
        let mut blobs: Vec<Vec<u8>> = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1_000) {
            let keys: Vec<String> = chunk.iter().map(|id| format!("{tk}:nt-positions:{id}")).collect();
            let v: Vec<Vec<u8>> = redis::cmd("MGET").arg(&keys).query(&mut con).unwrap();
            blobs.extend(v);
        }
        let fetch = t.elapsed();
        let t = Instant::now();
        let mut k = 0;
        for b in &blobs {
            let p: Position = rmp_serde::from_slice(b).unwrap();
            k += p.events.len();
        }
        let decode = t.elapsed();
        eprintln!(
            "  positions: fetch {fetch:?}, rmp_serde decode {decode:?} ({} blobs, {k} events, {} bytes each)",
            blobs.len(),
            blobs[0].len()
        );
        let ids: Vec<String> =
            redis::cmd("SMEMBERS").arg(format!("{tk}:index:nt-orders")).query(&mut con).unwrap();
        let mut blobs: Vec<Vec<u8>> = Vec::new();
        let mut logs: Vec<Vec<Vec<u8>>> = Vec::new();
        let t = Instant::now();
        for chunk in ids.chunks(1_000) {
            let keys: Vec<String> = chunk.iter().map(|id| format!("{tk}:nt-orders:{id}")).collect();
            let v: Vec<Vec<u8>> = redis::cmd("MGET").arg(&keys).query(&mut con).unwrap();
            blobs.extend(v);
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("LRANGE").arg(format!("{tk}:nt-orders:{id}:events")).arg(0).arg(-1);
            }
            let l: Vec<Vec<Vec<u8>>> = pipe.query(&mut con).unwrap();
            logs.extend(l);
        }
        let fetch = t.elapsed();
        let t = Instant::now();
        let mut orders = Vec::with_capacity(blobs.len());
        let mut all_events = Vec::with_capacity(blobs.len());
        for (b, l) in blobs.iter().zip(&logs) {
            let o: OrderAny = rmp_serde::from_slice(b).unwrap();
            let ev: Vec<OrderEventAny> = l.iter().map(|e| rmp_serde::from_slice(e).unwrap()).collect();
            orders.push(o);
            all_events.push(ev);
        }
        let decode = t.elapsed();
        let t = Instant::now();
        for (o, ev) in orders.iter_mut().zip(all_events) {
            for e in ev {
                let _ = o.apply(e);
            }
        }
        let apply = t.elapsed();
        eprintln!(
            "  orders: fetch {fetch:?}, decode {decode:?}, apply {apply:?} ({} orders, {} bytes each)",
            orders.len(),
            blobs[0].len()
        );
    }

    // Theirs: the same payloads written straight into Redis in their layout
    // (pipelined, to keep the bench short; their writer would send the
    // same commands), then their adapter's load_all through the Cache.
    flushall(redis);
    let config = cache_config(redis.port());
    let theirs = Theirs::open(redis.port(), &config);
    let tk = theirs.trader_key();
    drop(theirs);
    {
        let mut con = redis.client();
        let mut pipe = redis::pipe();
        let mut k = 0;
        populate(n, template, |order, events, position| {
            let okey = format!("{tk}:orders:{}", order.client_order_id());
            pipe.rpush(&okey, msgpack(order).to_vec()).ignore();
            for e in events {
                pipe.rpush(&okey, msgpack(e).to_vec()).ignore();
            }
            pipe.rpush(format!("{tk}:positions:{}", position.id), msgpack(position).to_vec()).ignore();
            k += 1;
            if k % 1_000 == 0 {
                let _: () = pipe.query(&mut con).unwrap();
                pipe = redis::pipe();
            }
        });
        if k % 1_000 != 0 {
            let _: () = pipe.query(&mut con).unwrap();
        }
    }
    let t = Instant::now();
    let db = get_runtime()
        .block_on(RedisCacheDatabase::new(harness::trader(), UUID4::new(), config.clone()))
        .unwrap();
    let adapter = RedisCacheDatabaseAdapter { encoding: config.encoding, database: db };
    let mut cache = Cache::new(Some(config), Some(Box::new(adapter)));
    get_runtime().block_on(cache.cache_all()).unwrap();
    let theirs_t = t.elapsed();
    cache.build_index();
    let theirs_n = cache.orders(None, None, None, None, None).len();
    cache.dispose();
    (ours_t, theirs_t, ours_n, theirs_n)
}

/// Calls `f` for `n` orders made from `template` by renaming its ids
/// (building 100,000 lives through the stubs would dominate the bench).
fn populate(n: usize, template: &Life, mut f: impl FnMut(&OrderAny, &[OrderEventAny], &Position)) {
    let order_json = serde_json::to_string(&template.order).unwrap();
    let events_json = serde_json::to_string(&template.events).unwrap();
    let pos_json = serde_json::to_string(template.positions.last().unwrap()).unwrap();
    let (coid, pid) = (template.order.client_order_id().to_string(), template.positions[0].id.to_string());
    for i in 0..n {
        let (c, p) = (format!("R-{i}"), format!("RP-{i}"));
        let q = |s: &str, from: &str, to: &str| s.replace(&format!("\"{from}\""), &format!("\"{to}\""));
        let order: OrderAny = serde_json::from_str(&q(&order_json, &coid, &c)).unwrap();
        let mut events: Vec<OrderEventAny> =
            serde_json::from_str(&q(&q(&events_json, &coid, &c), &pid, &p)).unwrap();
        // Fresh event ids: each order's events are its own.
        for e in &mut events {
            let v = serde_json::to_value(&*e).unwrap();
            let mut v = v;
            if let Some(obj) =
                v.as_object_mut().and_then(|o| o.values_mut().next()).and_then(|x| x.as_object_mut())
            {
                obj.insert("event_id".into(), serde_json::Value::String(UUID4::new().to_string()));
            }
            *e = serde_json::from_value(v).unwrap();
        }
        let position: Position = serde_json::from_str(&q(&q(&pos_json, &coid, &c), &pid, &p)).unwrap();
        f(&order, &events, &position);
    }
}

/// The same fault for both: every 200 ms, `CLIENT KILL TYPE normal SKIPME
/// yes` (every client connection but the killer's) while `lives` are
/// written at full speed; then an independent read counts, per order, the
/// events lost and duplicated.
fn fault(redis: &Redis, lives: &[Life]) -> ((u64, u64), (u64, u64)) {
    let kill = |stop: Arc<AtomicBool>, port: u16| {
        std::thread::spawn(move || {
            let mut con =
                redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap().get_connection().unwrap();
            let mut kills = 0u64;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let _: redis::RedisResult<i64> = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("normal")
                    .arg("SKIPME")
                    .arg("yes")
                    .query(&mut con);
                kills += 1;
            }
            kills
        })
    };
    let count = |redis: &Redis, key_of: &dyn Fn(&Life) -> String, skip: usize| -> (u64, u64) {
        let mut con = redis.client();
        let (mut lost, mut dup) = (0u64, 0u64);
        for l in lives {
            let entries: Vec<Vec<u8>> =
                redis::cmd("LRANGE").arg(key_of(l)).arg(0).arg(-1).query(&mut con).unwrap();
            let mut seen = std::collections::HashSet::new();
            for e in entries.iter().skip(skip) {
                if !seen.insert(e.clone()) {
                    dup += 1;
                }
            }
            lost += l.events.len().saturating_sub(seen.len()) as u64;
        }
        (lost, dup)
    };

    flushall(redis);
    let stop = Arc::new(AtomicBool::new(false));
    let killer = kill(stop.clone(), redis.port());
    let mut db = ours(redis.port());
    let tk = ours_trader_key(&db);
    for l in lives {
        let _ = db.add_order(&l.order, None);
        for e in &l.events {
            let _ = db.update_order(e);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    stop.store(true, Ordering::Relaxed);
    let kills = killer.join().unwrap();
    let _ = db.close();
    let ours_c = count(redis, &|l| format!("{tk}:nt-orders:{}:events", l.order.client_order_id()), 0);
    eprintln!("fault (ours): {kills} kills");

    flushall(redis);
    let stop = Arc::new(AtomicBool::new(false));
    let killer = kill(stop.clone(), redis.port());
    let mut theirs = Theirs::open(redis.port(), &cache_config(redis.port()));
    let tk = theirs.trader_key();
    for l in lives {
        theirs.add_order(&l.order);
        for e in &l.events {
            theirs.update_order(e);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    stop.store(true, Ordering::Relaxed);
    let kills = killer.join().unwrap();
    // Their writer has no acknowledgement: wait until Redis stops changing.
    let mut last = -1i64;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let n: i64 = redis::cmd("DBSIZE").query(&mut redis.client()).unwrap();
        let total: i64 = lives
            .iter()
            .take(50)
            .map(|l| {
                redis::cmd("LLEN")
                    .arg(format!("{tk}:orders:{}", l.order.client_order_id()))
                    .query::<i64>(&mut redis.client())
                    .unwrap_or(0)
            })
            .sum::<i64>()
            + n;
        if total == last {
            break;
        }
        last = total;
    }
    theirs.db.close();
    let theirs_c = count(redis, &|l| format!("{tk}:orders:{}", l.order.client_order_id()), 1);
    eprintln!("fault (theirs): {kills} kills");
    (ours_c, theirs_c)
}

fn us(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1_000.0)
}

fn main() {
    let n = env_usize("NAUT_BENCH_ORDERS", 10_000);
    let restarts: Vec<usize> = std::env::var("NAUT_BENCH_RESTART")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().replace('_', "").parse().ok())
        .collect();
    let redis = Redis::start();
    eprintln!("building {n} order lives ...");
    let lives: Vec<Life> = (0..n).map(|i| life(i, true)).collect();

    if std::env::var_os("NAUT_BENCH_BREAKDOWN").is_some() {
        // Where a restart's time goes (printed, no report).
        for &r in &restarts {
            let (o, t, on, tn) = restart(&redis, &lives[0], r);
            eprintln!("restart {r}: ours {o:?} ({on}), theirs {t:?} ({tn})");
        }
        return;
    }
    eprintln!("calling-thread cost ...");
    let (ours_calls, theirs_calls) = calling_thread(&redis, &lives);
    eprintln!("ack latency at 10,000 events/s ...");
    let ack_n = n.min(5_000);
    let (ours_ack, theirs_ack) = ack_latency(&redis, &lives[..ack_n], 10_000, 10, None);
    eprintln!("ack latency, their buffer_interval_ms = 100 ...");
    let (_, theirs_ack_100) = ack_latency(&redis, &lives[..ack_n], 10_000, 10, Some(100));
    eprintln!("bytes per order ...");
    let (ours_bytes, theirs_bytes) = bytes_per_order(&redis, &lives);
    let mut restart_rows = Vec::new();
    for &r in &restarts {
        eprintln!("restart with {r} orders ...");
        let (o, t, on, tn) = restart(&redis, &lives[0], r);
        restart_rows.push((r, o, t, on, tn));
    }
    eprintln!("fault: CLIENT KILL every 200 ms ...");
    let fault_n = n.min(5_000);
    let ((ol, od), (tl, td)) = fault(&redis, &lives[..fault_n]);

    let report = json!({
        "orders": n,
        "nautilus_version": "0.57.0",
        "calling_thread": { "tradecache": calls_json(&ours_calls), "nautilus": calls_json(&theirs_calls) },
        "ack_latency_10k_per_s": {
            "tradecache": pct(&ours_ack),
            "nautilus_default_buffer_interval": pct(&theirs_ack),
            "nautilus_buffer_interval_100ms": pct(&theirs_ack_100),
        },
        "redis_bytes_per_order_5_events": { "tradecache": ours_bytes, "nautilus": theirs_bytes },
        "restart_cache_all": restart_rows.iter().map(|(r, o, t, on, tn)| json!({
            "orders": r, "tradecache_ms": o.as_secs_f64() * 1e3, "nautilus_ms": t.as_secs_f64() * 1e3,
            "tradecache_orders_loaded": on, "nautilus_orders_loaded": tn,
        })).collect::<Vec<_>>(),
        "fault_client_kill_200ms": {
            "orders": fault_n,
            "events": fault_n * lives[0].events.len(),
            "tradecache": { "lost": ol, "duplicated": od },
            "nautilus": { "lost": tl, "duplicated": td },
        },
    });
    std::fs::create_dir_all("target/bench").ok();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench/nautilus.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();

    println!("\n| measure | tradecache-nautilus | Nautilus Redis backend (0.57.0) |");
    println!("| --- | --- | --- |");
    for (name, o, t) in [
        ("add_order", &ours_calls.add_order, &theirs_calls.add_order),
        ("update_order", &ours_calls.update_order, &theirs_calls.update_order),
        ("update_position", &ours_calls.update_position, &theirs_calls.update_position),
    ] {
        println!(
            "| `{name}` calling thread p50 / p99 / p99.9 | {} / {} / {} | {} / {} / {} |",
            us(o.value_at_quantile(0.5)),
            us(o.value_at_quantile(0.99)),
            us(o.value_at_quantile(0.999)),
            us(t.value_at_quantile(0.5)),
            us(t.value_at_quantile(0.99)),
            us(t.value_at_quantile(0.999)),
        );
    }
    println!(
        "| in Redis after the call, 10,000 events/s, p50 / p99 | {} / {} | {} / {} (default `buffer_interval_ms`: none); {} / {} (100 ms) |",
        us(ours_ack.value_at_quantile(0.5)),
        us(ours_ack.value_at_quantile(0.99)),
        us(theirs_ack.value_at_quantile(0.5)),
        us(theirs_ack.value_at_quantile(0.99)),
        us(theirs_ack_100.value_at_quantile(0.5)),
        us(theirs_ack_100.value_at_quantile(0.99)),
    );
    for (r, o, t, on, tn) in &restart_rows {
        println!(
            "| `cache_all()` restart, {r} orders (orders loaded) | {:.0} ms ({on}) | {:.0} ms ({tn}) |",
            o.as_secs_f64() * 1e3,
            t.as_secs_f64() * 1e3
        );
    }
    println!("| Redis bytes per order with 5 events | {ours_bytes:.0} | {theirs_bytes:.0} |");
    println!(
        "| `CLIENT KILL` every 200 ms, {} events: lost / duplicated | {ol} / {od} | {tl} / {td} |",
        fault_n * lives[0].events.len()
    );
    println!("\nreport: {}", path.display());
}
