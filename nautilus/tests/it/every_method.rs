//! Every method of `CacheDatabaseAdapter`, called once at least and its
//! effect checked; the list of methods is checked against the trait's
//! source when the registry copy of nautilus-common is at hand.

use std::collections::BTreeSet;
use std::time::Duration;

use ahash::AHashMap;
use bytes::Bytes;
use nautilus_common::{cache::database::CacheDatabaseAdapter, signal::Signal};
use nautilus_core::{UnixNanos, UUID4};
use nautilus_model::{
    data::{
        greeks::{GreeksData, YieldCurveData},
        stubs::{stub_custom_data, stub_delta, stub_trade_ethusdt_buyer},
        FundingRateUpdate,
    },
    enums::{BookType, OrderSide},
    events::{position::snapshot::PositionSnapshot, OrderSnapshot},
    identifiers::{ClientId, ComponentId, InstrumentId, PositionId, StrategyId, VenueOrderId},
    instruments::{Instrument, SyntheticInstrument},
    orderbook::OrderBook,
    orders::{stubs::TestOrderEventStubs, Order},
    position::Position,
    types::Currency,
};
use ustr::Ustr;

use crate::fixtures::{self, account_id, json, limit_order};
use crate::harness::{block_on, open, Redis};

/// The methods of the trait (nautilus-common 0.57.0), in its order.
const METHODS: [&str; 63] = [
    "close",
    "flush",
    "load_all",
    "load",
    "load_currencies",
    "load_instruments",
    "load_synthetics",
    "load_accounts",
    "load_orders",
    "load_positions",
    "load_greeks",
    "load_yield_curves",
    "load_index_order_position",
    "load_index_order_client",
    "load_currency",
    "load_instrument",
    "load_synthetic",
    "load_account",
    "load_order",
    "load_position",
    "load_actor",
    "load_strategy",
    "load_signals",
    "load_custom_data",
    "load_order_snapshot",
    "load_position_snapshot",
    "load_quotes",
    "load_trades",
    "load_funding_rates",
    "load_bars",
    "add",
    "add_currency",
    "add_instrument",
    "add_synthetic",
    "add_account",
    "add_order",
    "add_order_snapshot",
    "add_position",
    "add_position_snapshot",
    "add_order_book",
    "add_signal",
    "add_custom_data",
    "add_quote",
    "add_trade",
    "add_funding_rate",
    "add_bar",
    "add_greeks",
    "add_yield_curve",
    "delete_actor",
    "delete_strategy",
    "delete_order",
    "delete_position",
    "delete_account_event",
    "index_venue_order_id",
    "index_order_position",
    "update_actor",
    "update_strategy",
    "update_account",
    "update_order",
    "update_position",
    "snapshot_order_state",
    "snapshot_position_state",
    "heartbeat",
];

/// The trait's method names, read from nautilus-common's source in the
/// cargo registry (None when it is not there).
fn trait_methods_from_source() -> Option<BTreeSet<String>> {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo")))?;
    for entry in std::fs::read_dir(home.join("registry/src")).ok()? {
        let path = entry.ok()?.path().join("nautilus-common-0.57.0/src/cache/database.rs");
        let Ok(src) = std::fs::read_to_string(path) else { continue };
        let body = &src[src.find("pub trait CacheDatabaseAdapter")?..];
        let mut names = BTreeSet::new();
        for line in body.lines() {
            let t = line.trim_start();
            let rest = t.strip_prefix("async fn ").or_else(|| t.strip_prefix("fn "));
            if let Some(rest) = rest {
                names.insert(rest.split(['(', '<']).next()?.to_string());
            }
        }
        return Some(names);
    }
    None
}

#[test]
fn the_method_list_is_the_whole_trait() {
    let listed: BTreeSet<String> = METHODS.iter().map(|s| s.to_string()).collect();
    assert_eq!(listed.len(), METHODS.len(), "no method listed twice");
    match trait_methods_from_source() {
        Some(from_source) => assert_eq!(listed, from_source),
        None => eprintln!("nautilus-common's source is not in the registry: list not cross-checked"),
    }
}

#[test]
#[allow(clippy::too_many_lines)]
fn every_method_does_what_the_trait_says() {
    let redis = Redis::start();
    let mut db = open(redis.port());
    let mut seen = BTreeSet::new();
    macro_rules! call {
        ($name:literal, $e:expr) => {{
            seen.insert($name);
            $e
        }};
    }
    let wait =
        |db: &tradecache_nautilus::TradecacheDatabase| db.flush_pending(Duration::from_secs(10)).unwrap();

    // --- generic entries, currencies, instruments, synthetics ---
    call!("add", db.add("cache://position-snapshots/P-1/0".into(), Bytes::from_static(b"blob")).unwrap());
    call!("add", db.add("plain".into(), Bytes::from_static(b"x")).unwrap());
    let general = call!("load", db.load().unwrap());
    assert_eq!(general.len(), 2);
    assert_eq!(general["cache://position-snapshots/P-1/0"], Bytes::from_static(b"blob"));

    call!("add_currency", db.add_currency(&Currency::USD()).unwrap());
    call!("add_currency", db.add_currency(&Currency::BTC()).unwrap());
    assert_eq!(
        call!("load_currency", block_on(db.load_currency(&Ustr::from("BTC"))).unwrap()),
        Some(Currency::BTC())
    );
    assert_eq!(call!("load_currencies", block_on(db.load_currencies()).unwrap()).len(), 2);

    let instrument = fixtures::instrument();
    let iid = instrument.id();
    call!("add_instrument", db.add_instrument(&instrument).unwrap());
    let got = call!("load_instrument", block_on(db.load_instrument(&iid)).unwrap()).unwrap();
    assert_eq!(json(&got), json(&instrument));
    assert_eq!(call!("load_instruments", block_on(db.load_instruments()).unwrap()).len(), 1);

    let synthetic = SyntheticInstrument::default();
    call!("add_synthetic", db.add_synthetic(&synthetic).unwrap());
    let got = call!("load_synthetic", block_on(db.load_synthetic(&synthetic.id)).unwrap()).unwrap();
    assert_eq!(got.formula, synthetic.formula);
    assert_eq!(call!("load_synthetics", block_on(db.load_synthetics()).unwrap()).len(), 1);

    // --- accounts ---
    let mut account = fixtures::account();
    call!("add_account", db.add_account(&account).unwrap());
    let e1 = fixtures::balance_event(999_000, 1);
    let e2 = fixtures::balance_event(998_000, 2);
    for e in [&e1, &e2] {
        account.apply(e.clone()).unwrap();
        call!("update_account", db.update_account(&account).unwrap());
    }
    let got = call!("load_account", block_on(db.load_account(&account_id())).unwrap()).unwrap();
    assert_eq!(json(&got), json(&account));
    assert_eq!(got.events().len(), 3);
    call!("delete_account_event", db.delete_account_event(&account_id(), &e2.event_id.to_string()).unwrap());
    let got = block_on(db.load_account(&account_id())).unwrap().unwrap();
    assert_eq!(got.events().len(), 2, "the deleted event is left out");
    assert_eq!(json(&got.last_event().unwrap()), json(&e1));
    assert_eq!(call!("load_accounts", block_on(db.load_accounts()).unwrap()).len(), 1);

    // --- orders, their events, indexes, snapshots ---
    let mut order = limit_order(1, OrderSide::Buy, "1000");
    let coid = order.client_order_id();
    call!("add_order", db.add_order(&order, Some(ClientId::new("SIM"))).unwrap());
    let submitted = TestOrderEventStubs::submitted(&order, account_id());
    order.apply(submitted.clone()).unwrap();
    call!("update_order", db.update_order(&submitted).unwrap());
    let accepted = TestOrderEventStubs::accepted(&order, account_id(), VenueOrderId::new("V-1"));
    order.apply(accepted.clone()).unwrap();
    call!("update_order", db.update_order(&accepted).unwrap());
    let got = call!("load_order", block_on(db.load_order(&coid)).unwrap()).unwrap();
    assert_eq!(json(&got), json(&order));
    assert_eq!(call!("load_orders", block_on(db.load_orders()).unwrap()).len(), 1);
    call!("index_venue_order_id", db.index_venue_order_id(coid, VenueOrderId::new("V-1")).unwrap());
    assert_eq!(db.load_index_venue_order_ids().unwrap()[&coid], VenueOrderId::new("V-1"));
    let clients = call!("load_index_order_client", db.load_index_order_client().unwrap());
    assert_eq!(clients[&coid], ClientId::new("SIM"));

    call!("snapshot_order_state", db.snapshot_order_state(&order).unwrap());
    let snap = call!("load_order_snapshot", db.load_order_snapshot(&coid).unwrap()).unwrap();
    assert_eq!(snap, OrderSnapshot::from(order.clone()));
    let mut older = snap.clone();
    older.ts_last = UnixNanos::from(7);
    call!("add_order_snapshot", db.add_order_snapshot(&older).unwrap());
    assert_eq!(db.load_order_snapshot(&coid).unwrap().unwrap().ts_last, UnixNanos::from(7));

    // --- positions ---
    let pid = PositionId::new("P-1");
    let fill = fixtures::fill(&order, "T-1", "1000", &pid);
    order.apply(fill.clone()).unwrap();
    db.update_order(&fill).unwrap();
    let mut position = Position::new(&instrument, fixtures::filled(&fill));
    call!("add_position", db.add_position(&position).unwrap());
    call!("index_order_position", db.index_order_position(coid, pid).unwrap());
    let index = call!("load_index_order_position", db.load_index_order_position().unwrap());
    assert_eq!(json(&index[&coid]), json(&position));
    position.realized_return = 0.5;
    call!("update_position", db.update_position(&position).unwrap());
    let got = call!("load_position", block_on(db.load_position(&pid)).unwrap()).unwrap();
    assert_eq!(json(&got), json(&position));
    assert_eq!(call!("load_positions", block_on(db.load_positions()).unwrap()).len(), 1);
    call!("snapshot_position_state", db.snapshot_position_state(&position).unwrap());
    let snap = call!("load_position_snapshot", db.load_position_snapshot(&pid).unwrap()).unwrap();
    assert_eq!(snap, PositionSnapshot::from(&position, None));
    call!("add_position_snapshot", db.add_position_snapshot(&snap).unwrap());
    assert_eq!(db.load_position_snapshot(&pid).unwrap(), Some(snap));

    // --- actors and strategies ---
    let actor = ComponentId::new("Actor-1");
    let strategy = StrategyId::new("S-001");
    let state: AHashMap<String, Bytes> = [("k".to_string(), Bytes::from_static(b"v"))].into_iter().collect();
    db.stage_actor_state(actor, state.clone());
    call!("update_actor", db.update_actor().unwrap());
    assert_eq!(call!("load_actor", db.load_actor(&actor).unwrap()), state);
    db.stage_strategy_state(strategy, state.clone());
    call!("update_strategy", db.update_strategy().unwrap());
    assert_eq!(call!("load_strategy", db.load_strategy(&strategy).unwrap()), state);
    call!("delete_actor", db.delete_actor(&actor).unwrap());
    call!("delete_strategy", db.delete_strategy(&strategy).unwrap());
    assert!(db.load_actor(&actor).unwrap().is_empty());
    assert!(db.load_strategy(&strategy).unwrap().is_empty());

    // --- signals, custom data, market data, books, greeks ---
    let signal = Signal::new(Ustr::from("momentum"), "1.5".into(), UnixNanos::from(1), UnixNanos::from(2));
    call!("add_signal", db.add_signal(&signal).unwrap());
    assert_eq!(call!("load_signals", db.load_signals("momentum").unwrap()), vec![signal]);
    let custom = stub_custom_data(5, 42, None, None);
    call!("add_custom_data", db.add_custom_data(&custom).unwrap());
    let got = call!("load_custom_data", db.load_custom_data(&custom.data_type).unwrap());
    assert_eq!(got.len(), 1);
    assert_eq!(serde_json::to_value(&got[0]).unwrap(), serde_json::to_value(&custom).unwrap());

    let (quotes, bars) = fixtures::market_data();
    for q in &quotes {
        call!("add_quote", db.add_quote(q).unwrap());
    }
    assert_eq!(json(&call!("load_quotes", db.load_quotes(&iid).unwrap())), json(&quotes));
    let trade = stub_trade_ethusdt_buyer();
    call!("add_trade", db.add_trade(&trade).unwrap());
    assert_eq!(call!("load_trades", db.load_trades(&trade.instrument_id).unwrap()), vec![trade]);
    for b in &bars {
        call!("add_bar", db.add_bar(b).unwrap());
    }
    let bar_iid = bars[0].bar_type.instrument_id();
    assert_eq!(json(&call!("load_bars", db.load_bars(&bar_iid).unwrap())), json(&bars));
    let rate = FundingRateUpdate::new(iid, "0.0001".parse().unwrap(), Some(480), None, 1.into(), 2.into());
    call!("add_funding_rate", db.add_funding_rate(&rate).unwrap());
    assert_eq!(call!("load_funding_rates", db.load_funding_rates(&iid).unwrap()), vec![rate]);

    let delta = stub_delta();
    let mut book = OrderBook::new(delta.instrument_id, BookType::L3_MBO);
    book.apply_delta(&delta).unwrap();
    call!("add_order_book", db.add_order_book(&book).unwrap());
    let got = db.load_order_book(&delta.instrument_id).unwrap().unwrap();
    assert_eq!(got.best_bid_price(), book.best_bid_price());
    assert_eq!(got.best_bid_size(), book.best_bid_size());

    let mut greeks = GreeksData { instrument_id: InstrumentId::from("ESZ5.XCME"), ..GreeksData::default() };
    greeks.greeks.delta = 0.25;
    call!("add_greeks", db.add_greeks(&greeks).unwrap());
    let got = call!("load_greeks", block_on(db.load_greeks()).unwrap());
    assert_eq!(got[&greeks.instrument_id].greeks.delta, 0.25);
    let curve = YieldCurveData::new(1.into(), 2.into(), "USD".into(), vec![1.0, 2.0], vec![0.04, 0.05]);
    call!("add_yield_curve", db.add_yield_curve(&curve).unwrap());
    let got = call!("load_yield_curves", block_on(db.load_yield_curves()).unwrap());
    assert_eq!(got["USD"].interest_rates, vec![0.04, 0.05]);

    call!("heartbeat", db.heartbeat(UnixNanos::from(123)).unwrap());
    assert_eq!(db.last_heartbeat().unwrap(), Some(UnixNanos::from(123)));

    // --- load_all, deletes, flush, close ---
    let all = call!("load_all", block_on(db.load_all()).unwrap());
    assert_eq!(
        (
            all.currencies.len(),
            all.instruments.len(),
            all.synthetics.len(),
            all.accounts.len(),
            all.orders.len()
        ),
        (2, 1, 1, 1, 1)
    );
    assert_eq!((all.positions.len(), all.greeks.len(), all.yield_curves.len()), (1, 1, 1));
    assert_eq!(all.orders[&coid].events().len(), 4);

    call!("delete_order", db.delete_order(&coid).unwrap());
    assert!(block_on(db.load_order(&coid)).unwrap().is_none());
    assert!(db.load_index_order_client().unwrap().is_empty());
    call!("delete_position", db.delete_position(&pid).unwrap());
    assert!(block_on(db.load_position(&pid)).unwrap().is_none());
    assert!(db.load_position_snapshot(&pid).unwrap().is_none());
    wait(&db);

    // flush deletes this trader's keys only.
    let mut con = redis.client();
    let _: () = redis::cmd("SET").arg("someone-else:key").arg("kept").query(&mut con).unwrap();
    call!("flush", db.flush().unwrap());
    assert!(block_on(db.load_instruments()).unwrap().is_empty());
    assert!(db.load().unwrap().is_empty());
    let kept: Option<String> = redis::cmd("GET").arg("someone-else:key").query(&mut con).unwrap();
    assert_eq!(kept.as_deref(), Some("kept"));

    call!("close", db.close().unwrap());
    assert!(db.add_currency(&Currency::USD()).is_err(), "closed");
    assert!(db.close().is_ok(), "closing twice is fine");
    let _ = UUID4::new();

    let called: BTreeSet<&str> = seen.into_iter().collect();
    let all: BTreeSet<&str> = METHODS.into_iter().collect();
    let missing: Vec<_> = all.difference(&called).collect();
    assert!(missing.is_empty(), "not exercised: {missing:?}");
}
