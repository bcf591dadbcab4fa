//! A Nautilus workload driven through the real `Cache`: instruments, an
//! account with balance updates, orders through their lifecycle,
//! positions opened and closed, quotes and bars.

use nautilus_common::cache::Cache;
use nautilus_core::{UnixNanos, UUID4};
use nautilus_model::{
    accounts::{AccountAny, CashAccount},
    data::{
        stubs::{quote_audusd, stub_bar},
        Bar, QuoteTick,
    },
    enums::{LiquiditySide, OmsType, OrderSide, OrderType},
    events::{account::stubs::cash_account_state_million_usd, AccountState, OrderEventAny, OrderFilled},
    identifiers::{AccountId, ClientId, ClientOrderId, PositionId, TradeId, VenueOrderId},
    instruments::{stubs::audusd_sim, Instrument, InstrumentAny},
    orders::{builder::OrderTestBuilder, stubs::TestOrderEventStubs, Order, OrderAny},
    position::Position,
    types::{AccountBalance, Currency, Money, Price, Quantity},
};

/// The instrument of the workload.
pub fn instrument() -> InstrumentAny {
    InstrumentAny::CurrencyPair(audusd_sim())
}

/// The account of the workload.
pub fn account_id() -> AccountId {
    AccountId::from("SIM-001")
}

/// A new account (one million USD).
pub fn account() -> AccountAny {
    AccountAny::Cash(CashAccount::new(
        cash_account_state_million_usd("1000000 USD", "0 USD", "1000000 USD"),
        true,
        false,
    ))
}

/// The next balance event of `account`: `total` USD, `n` orders the time.
pub fn balance_event(total: i64, n: u64) -> AccountState {
    let mut s = cash_account_state_million_usd("1000000 USD", "0 USD", "1000000 USD");
    s.event_id = UUID4::new();
    s.balances = vec![AccountBalance::new(
        Money::new(total as f64, Currency::USD()),
        Money::new(0.0, Currency::USD()),
        Money::new(total as f64, Currency::USD()),
    )];
    s.ts_event = UnixNanos::from(n);
    s.ts_init = UnixNanos::from(n);
    s
}

/// A limit order `O-{n}` of `qty` on the workload's instrument.
pub fn limit_order(n: usize, side: OrderSide, qty: &str) -> OrderAny {
    OrderTestBuilder::new(OrderType::Limit)
        .instrument_id(instrument().id())
        .client_order_id(ClientOrderId::new(format!("O-{n}")))
        .side(side)
        .price(Price::from("1.00000"))
        .quantity(Quantity::from(qty))
        .build()
}

/// A fill of `qty` of `order` (as the cache holds it now) into `position_id`.
pub fn fill(order: &OrderAny, trade: &str, qty: &str, position_id: &PositionId) -> OrderEventAny {
    TestOrderEventStubs::filled(
        order,
        &instrument(),
        Some(TradeId::new(trade)),
        Some(*position_id),
        Some(Price::from("1.00000")),
        Some(Quantity::from(qty)),
        Some(LiquiditySide::Maker),
        Some(Money::from("0.10 USD")),
        Some(UnixNanos::from(1_000)),
        Some(account_id()),
    )
}

/// The `OrderFilled` inside a fill event.
pub fn filled(e: &OrderEventAny) -> OrderFilled {
    match e {
        OrderEventAny::Filled(f) => *f,
        _ => panic!("not a fill"),
    }
}

/// Applies `event` through the cache (which calls `update_order`).
pub fn update(cache: &mut Cache, event: OrderEventAny) -> OrderAny {
    cache.update_order(&event).expect("update_order")
}

/// The current state of an order in `cache`.
pub fn current(cache: &Cache, coid: &ClientOrderId) -> OrderAny {
    cache.order(coid).expect("order in cache").clone()
}

/// The quotes and bars the workload adds.
pub fn market_data() -> (Vec<QuoteTick>, Vec<Bar>) {
    let quotes = (0..5u64)
        .map(|i| {
            let mut q = quote_audusd();
            q.ts_event = UnixNanos::from(i + 1);
            q.ts_init = UnixNanos::from(i + 1);
            q
        })
        .collect();
    let bars = (0..3u64)
        .map(|i| {
            let mut b = stub_bar();
            b.ts_event = UnixNanos::from(i + 1);
            b.ts_init = UnixNanos::from(i + 1);
            b
        })
        .collect();
    (quotes, bars)
}

/// Runs the whole workload on `cache` (with a database, so every step is
/// persisted through the adapter).
pub fn run(cache: &mut Cache) {
    let instrument = instrument();
    cache.add_currency(Currency::USD()).unwrap();
    cache.add_currency(Currency::AUD()).unwrap();
    cache.add_instrument(instrument.clone()).unwrap();

    // The account, and two balance updates.
    let mut account = account();
    cache.add_account(account.clone()).unwrap();
    for (i, total) in [999_990i64, 999_980].into_iter().enumerate() {
        account.apply(balance_event(total, i as u64 + 1)).unwrap();
        cache.update_account(&account).unwrap();
    }

    let venue = instrument.id().venue;
    let pid = PositionId::new("P-1");
    let client = ClientId::new("SIM");

    // O-1: submitted, accepted, partially filled, filled; opens P-1.
    let o1 = limit_order(1, OrderSide::Buy, "100000");
    let coid1 = o1.client_order_id();
    let strategy = o1.strategy_id();
    cache.add_order(o1.clone(), Some(pid), Some(client), false).unwrap();
    update(cache, TestOrderEventStubs::submitted(&current(cache, &coid1), account_id()));
    update(
        cache,
        TestOrderEventStubs::accepted(&current(cache, &coid1), account_id(), VenueOrderId::new("V-1")),
    );
    let f1 = fill(&current(cache, &coid1), "T-1", "40000", &pid);
    let o1_now = update(cache, f1.clone());
    let mut position = Position::new(&instrument, filled(&f1));
    cache.add_position(&position, OmsType::Netting).unwrap();
    cache.add_position_id(&pid, &venue, &coid1, &strategy).unwrap();
    let f2 = fill(&o1_now, "T-2", "60000", &pid);
    update(cache, f2.clone());
    position.apply(&filled(&f2));
    cache.update_position(&position).unwrap();

    // O-2: submitted, accepted, canceled.
    let o2 = limit_order(2, OrderSide::Buy, "50000");
    let coid2 = o2.client_order_id();
    cache.add_order(o2, None, Some(client), false).unwrap();
    update(cache, TestOrderEventStubs::submitted(&current(cache, &coid2), account_id()));
    update(
        cache,
        TestOrderEventStubs::accepted(&current(cache, &coid2), account_id(), VenueOrderId::new("V-2")),
    );
    update(
        cache,
        TestOrderEventStubs::canceled(&current(cache, &coid2), account_id(), Some(VenueOrderId::new("V-2"))),
    );

    // O-3: sells the position flat (closes P-1).
    let o3 = limit_order(3, OrderSide::Sell, "100000");
    let coid3 = o3.client_order_id();
    cache.add_order(o3, Some(pid), Some(client), false).unwrap();
    update(cache, TestOrderEventStubs::submitted(&current(cache, &coid3), account_id()));
    update(
        cache,
        TestOrderEventStubs::accepted(&current(cache, &coid3), account_id(), VenueOrderId::new("V-3")),
    );
    let f3 = fill(&current(cache, &coid3), "T-3", "100000", &pid);
    update(cache, f3.clone());
    cache.add_position_id(&pid, &venue, &coid3, &strategy).unwrap();
    position.apply(&filled(&f3));
    assert!(position.is_closed());
    cache.update_position(&position).unwrap();

    // O-4: stays open (accepted).
    let o4 = limit_order(4, OrderSide::Buy, "10000");
    let coid4 = o4.client_order_id();
    cache.add_order(o4, None, Some(client), false).unwrap();
    update(cache, TestOrderEventStubs::submitted(&current(cache, &coid4), account_id()));
    update(
        cache,
        TestOrderEventStubs::accepted(&current(cache, &coid4), account_id(), VenueOrderId::new("V-4")),
    );

    let (quotes, bars) = market_data();
    for q in quotes {
        cache.add_quote(q).unwrap();
    }
    for b in bars {
        cache.add_bar(b).unwrap();
    }
}

/// A value's serde form, for comparing whole Nautilus values (their
/// `PartialEq` compares ids only).
pub fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("serialize")
}
