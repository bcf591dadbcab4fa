//! A Nautilus `Cache` persisted by tradecache and recovered on the next
//! run: each run loads what the runs before it left (`cache_all`), prints
//! it, then trades one more order (submitted, accepted, filled, opening a
//! position) and closes.
//!
//! ```text
//! make redis-up                                   # the demo Redis
//! REDIS_URL=redis://127.0.0.1:$(cat target/redis-demo/port) \
//!     cargo run -p tradecache-nautilus --example node   # twice
//! ```
//!
//! Without `REDIS_URL` it uses `REDIS_HOST` / `REDIS_PORT`, else
//! 127.0.0.1:6379.

use nautilus_common::{
    cache::{Cache, CacheConfig},
    msgbus::database::DatabaseConfig,
};
use nautilus_core::{UnixNanos, UUID4};
use nautilus_model::{
    enums::{LiquiditySide, OmsType, OrderSide, OrderType},
    events::OrderEventAny,
    identifiers::{AccountId, ClientOrderId, PositionId, TradeId, TraderId, VenueOrderId},
    instruments::{stubs::audusd_sim, Instrument, InstrumentAny},
    orders::{builder::OrderTestBuilder, stubs::TestOrderEventStubs, Order},
    position::Position,
    types::{Money, Price, Quantity},
};
use tradecache_nautilus::TradecacheDatabase;

fn redis_address() -> (String, u16) {
    if let Ok(url) = std::env::var("REDIS_URL") {
        let rest = url.split("://").nth(1).unwrap_or(&url);
        let hostport = rest.rsplit('@').next().unwrap_or(rest).split('/').next().unwrap_or("");
        if let Some((h, p)) = hostport.rsplit_once(':') {
            if let Ok(p) = p.parse() {
                return (h.to_string(), p);
            }
        }
    }
    let host = std::env::var("REDIS_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("REDIS_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(6379);
    (host, port)
}

fn main() -> anyhow::Result<()> {
    let (host, port) = redis_address();
    let config = CacheConfig {
        database: Some(DatabaseConfig {
            host: Some(host.clone()),
            port: Some(port),
            ..DatabaseConfig::default()
        }),
        ..CacheConfig::default()
    };
    let trader_id = TraderId::from("DEMO-001");
    let db = TradecacheDatabase::from_cache_config(trader_id, UUID4::new(), &config)?;
    let mut cache = Cache::new(Some(config), Some(Box::new(db)));

    // Recover what the earlier runs persisted.
    pollster::block_on(cache.cache_all())?;
    cache.build_index();
    let orders = cache.orders(None, None, None, None, None);
    println!(
        "{host}:{port}, trader {trader_id}: recovered {} order(s), {} position(s)",
        orders.len(),
        cache.positions(None, None, None, None, None).len()
    );
    for o in &orders {
        println!(
            "  {} {:?} filled {} with {} event(s)",
            o.client_order_id(),
            o.status(),
            o.filled_qty(),
            o.events().len()
        );
    }
    let n = orders.len() + 1;
    drop(orders);

    // Trade one more order.
    let instrument = InstrumentAny::CurrencyPair(audusd_sim());
    if cache.instrument(&instrument.id()).is_none() {
        cache.add_instrument(instrument.clone())?;
    }
    let account = AccountId::from("SIM-001");
    let coid = ClientOrderId::new(format!("O-DEMO-{n}"));
    let pid = PositionId::new(format!("P-DEMO-{n}"));
    let order = OrderTestBuilder::new(OrderType::Limit)
        .instrument_id(instrument.id())
        .client_order_id(coid)
        .side(OrderSide::Buy)
        .price(Price::from("1.00000"))
        .quantity(Quantity::from("1000"))
        .build();
    cache.add_order(order, None, None, false)?;
    let current = |cache: &Cache| cache.order(&coid).map(|o| o.clone()).expect("order in cache");
    cache.update_order(&TestOrderEventStubs::submitted(&current(&cache), account))?;
    cache.update_order(&TestOrderEventStubs::accepted(
        &current(&cache),
        account,
        VenueOrderId::new(format!("V-{n}")),
    ))?;
    let fill = TestOrderEventStubs::filled(
        &current(&cache),
        &instrument,
        Some(TradeId::new(format!("T-DEMO-{n}"))),
        Some(pid),
        Some(Price::from("1.00000")),
        Some(Quantity::from("1000")),
        Some(LiquiditySide::Taker),
        Some(Money::from("0.10 USD")),
        Some(UnixNanos::from(1)),
        Some(account),
    );
    cache.update_order(&fill)?;
    let OrderEventAny::Filled(filled) = fill else { unreachable!() };
    cache.add_position(&Position::new(&instrument, filled), OmsType::Netting)?;
    println!("traded {coid} (submitted, accepted, filled; opened {pid}); run again to see it recovered");

    cache.dispose(); // closes the adapter: every write is in Redis
    Ok(())
}
