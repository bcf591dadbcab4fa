//! The whole workload through a real Nautilus `Cache`, closed, and read
//! back by a second `Cache` on a new adapter: everything equal.

use ahash::AHashMap;
use bytes::Bytes;
use nautilus_common::cache::{database::CacheDatabaseAdapter, Cache};
use nautilus_model::{
    identifiers::{ComponentId, StrategyId},
    instruments::Instrument,
    orders::Order,
};

use crate::fixtures::{self, json};
use crate::harness::{block_on, cache_config, open, Redis};

#[test]
fn a_second_cache_recovers_what_the_first_wrote() {
    let redis = Redis::start();
    let db = open(redis.port());

    // Actor and strategy state go through the adapter (the Cache has no
    // calls for them): staged, then written by update_actor/update_strategy.
    let actor = ComponentId::new("Actor-1");
    let strategy = StrategyId::new("S-001");
    let state: AHashMap<String, Bytes> = [
        ("count".to_string(), Bytes::from_static(b"\x01\x02")),
        ("mode".into(), Bytes::from_static(b"live")),
    ]
    .into_iter()
    .collect();
    db.stage_actor_state(actor, state.clone());
    db.update_actor().unwrap();
    db.stage_strategy_state(strategy, state.clone());
    db.update_strategy().unwrap();

    let mut cache = Cache::new(Some(cache_config(redis.port())), Some(Box::new(db)));
    fixtures::run(&mut cache);
    assert!(cache.check_integrity());

    // What the first cache holds, before it is disposed of.
    let mut orders: Vec<_> =
        cache.orders(None, None, None, None, None).into_iter().map(|o| o.clone()).collect();
    orders.sort_by_key(|o| o.client_order_id());
    assert_eq!(orders.len(), 4);
    let positions: Vec<_> =
        cache.positions(None, None, None, None, None).into_iter().map(|p| p.clone()).collect();
    assert_eq!(positions.len(), 1);
    let account = cache.account(&fixtures::account_id()).unwrap().clone();
    let instrument = cache.instrument(&fixtures::instrument().id()).unwrap().clone();
    let venue_ids: Vec<_> =
        orders.iter().map(|o| cache.venue_order_id(&o.client_order_id()).copied()).collect();
    let position_ids: Vec<_> =
        orders.iter().map(|o| cache.position_id(&o.client_order_id()).copied()).collect();
    let (open_n, closed_n) = (
        cache.orders_open_count(None, None, None, None, None),
        cache.orders_closed_count(None, None, None, None, None),
    );
    cache.dispose(); // closes the adapter

    // A new adapter on the same Redis: first its direct loads.
    let db2 = open(redis.port());
    assert_eq!(db2.load_actor(&actor).unwrap(), state);
    assert_eq!(db2.load_strategy(&strategy).unwrap(), state);
    let (quotes, bars) = fixtures::market_data();
    let iid = fixtures::instrument().id();
    assert_eq!(json(&db2.load_quotes(&iid).unwrap()), json(&quotes));
    assert_eq!(json(&db2.load_bars(&bars[0].bar_type.instrument_id()).unwrap()), json(&bars));
    assert!(db2.load_issues().is_empty());

    let mut cache2 = Cache::new(Some(cache_config(redis.port())), Some(Box::new(db2)));
    block_on(cache2.cache_all()).unwrap();
    cache2.build_index();
    assert!(cache2.check_integrity());

    for (i, order) in orders.iter().enumerate() {
        let coid = order.client_order_id();
        let got = cache2.order(&coid).unwrap_or_else(|| panic!("{coid} recovered")).clone();
        assert_eq!(json(&got), json(order), "{coid}");
        let want_events: Vec<_> = order.events().into_iter().map(json).collect();
        let got_events: Vec<_> = got.events().into_iter().map(json).collect();
        assert_eq!(got_events, want_events, "{coid}: every event, in order");
        // build_index rebuilds venue order id -> client order id.
        if let Some(v) = venue_ids[i] {
            assert_eq!(cache2.client_order_id(&v), Some(&coid), "{coid}: venue order id index");
        }
        assert_eq!(cache2.position_id(&coid).copied(), position_ids[i], "{coid} position index");
    }
    for p in &positions {
        let got = cache2.position(&p.id).unwrap().clone();
        assert_eq!(json(&got), json(p));
    }
    assert_eq!(json(&*cache2.account(&fixtures::account_id()).unwrap()), json(&account));
    assert_eq!(json(cache2.instrument(&fixtures::instrument().id()).unwrap()), json(&instrument));
    assert_eq!(cache2.orders_open_count(None, None, None, None, None), open_n);
    assert_eq!(cache2.orders_closed_count(None, None, None, None, None), closed_n);
    cache2.dispose();
}
