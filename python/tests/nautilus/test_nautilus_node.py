"""Whole Nautilus nodes on tradecache: a ``BacktestEngine`` that trades and
a ``TradingNode``, each configured with the specification's ``CacheConfig``
after ``tradecache.nautilus.install()``; what they persisted is recovered
by a fresh cache the node's way, and by a second node."""

from __future__ import annotations

import asyncio

import pytest

from nautilus_trader.backtest.engine import BacktestEngine
from nautilus_trader.cache.cache import Cache
from nautilus_trader.config import BacktestEngineConfig, LoggingConfig, StrategyConfig
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.live.node import TradingNode
from nautilus_trader.config import TradingNodeConfig
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import QuoteTick
from nautilus_trader.model.enums import AccountType, OmsType, OrderSide
from nautilus_trader.model.identifiers import InstrumentId, TraderId, Venue
from nautilus_trader.model.objects import Money, Price, Quantity
from nautilus_trader.trading.strategy import Strategy

import tradecache.nautilus as tn
from nt_workload import (  # noqa: F401 - fixtures
    AUDUSD,
    TEST_OPTIONS,
    assert_state,
    kernel_serializer,
    nt_trader,
    run_workload,
    spec_cache_config,
    start_like_a_node,
    state_of,
)


class FlipConfig(StrategyConfig, frozen=True):
    instrument_id: InstrumentId
    every: int = 7


class Flip(Strategy):
    """Every `every` quotes: buys when flat, sells when long (a NETTING
    position opened and closed again and again); a limit order far below
    the market stays open."""

    def __init__(self, config: FlipConfig) -> None:
        super().__init__(config)
        self.ticks = 0
        self.acknowledged = 0

    def on_order_filled(self, event) -> None:
        # How a strategy knows a fill is in Redis: the node's adapter, by
        # trader id (Nautilus's Cache keeps its database private).
        tn.adapter_for(self.trader_id).wait(5.0)
        self.acknowledged += 1

    def on_start(self) -> None:
        self.subscribe_quote_ticks(self.config.instrument_id)

    def on_quote_tick(self, tick: QuoteTick) -> None:
        self.ticks += 1
        iid = self.config.instrument_id
        if self.ticks == 1:
            price = Price(float(tick.bid_price) * 0.5, AUDUSD.price_precision)
            self.submit_order(self.order_factory.limit(iid, OrderSide.BUY, Quantity.from_int(100_000), price))
        if self.ticks % self.config.every:
            return
        side = OrderSide.BUY if self.portfolio.is_flat(iid) else OrderSide.SELL
        self.submit_order(self.order_factory.market(iid, side, Quantity.from_int(100_000)))


def quotes(n: int) -> list:
    out = []
    for i in range(n):
        mid = 0.70 + (i % 13) / 10_000
        out.append(
            QuoteTick(
                instrument_id=AUDUSD.id,
                bid_price=Price(mid - 0.00005, 5),
                ask_price=Price(mid + 0.00005, 5),
                bid_size=Quantity.from_int(1_000_000),
                ask_size=Quantity.from_int(1_000_000),
                ts_event=1_700_000_000_000_000_000 + i * 1_000_000_000,
                ts_init=1_700_000_000_000_000_000 + i * 1_000_000_000,
            )
        )
    return out


@pytest.fixture(autouse=True)
def installed():
    """install() as a user does (tradecache's options for tests: no
    environment, fail fast); the kernel's own adapter back afterwards."""
    import nautilus_trader.system.kernel as kernel

    before = kernel.CacheDatabaseAdapter
    tn.install(**TEST_OPTIONS)
    yield
    kernel.CacheDatabaseAdapter = before
    tn.TradecacheDatabase.install_options = {}


@pytest.fixture
def event_loop_of_its_own():
    """A TradingNode runs on the current event loop, and its dispose
    closes it: each node test gets a new one."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    if not loop.is_closed():
        loop.close()
    asyncio.set_event_loop(None)


def fresh_cache(trader: str, port: int) -> tuple:
    config = spec_cache_config(port)
    db = tn.TradecacheDatabase(TraderId(trader), UUID4(), kernel_serializer(config), config, **TEST_OPTIONS)
    return Cache(database=db), db


def test_a_real_backtest_persists_and_recovers(server, nt_trader):
    engine = BacktestEngine(
        BacktestEngineConfig(
            trader_id=TraderId(nt_trader),
            cache=spec_cache_config(server.port),
            logging=LoggingConfig(bypass_logging=True),
        )
    )
    db = tn.adapter_for(nt_trader)
    assert isinstance(db, tn.TradecacheDatabase)  # the kernel built ours
    engine.add_venue(
        Venue("SIM"),
        oms_type=OmsType.NETTING,
        account_type=AccountType.MARGIN,
        base_currency=USD,
        starting_balances=[Money(1_000_000, USD)],
    )
    engine.add_instrument(AUDUSD)
    engine.add_data(quotes(150))
    strategy = Flip(FlipConfig(instrument_id=AUDUSD.id))
    engine.add_strategy(strategy)
    engine.run()
    assert strategy.acknowledged == 150 // 7  # every market order's fill waited for
    # Indexed as a node's start indexes (build_index also maps each order
    # with a position id to it, which the running engine's index leaves
    # out for NETTING orders it never called add_position_id for): the
    # persisted data is compared, not that difference of the engine's
    # in-memory index.
    engine.cache.build_index()
    expected = state_of(engine.cache)
    assert len(expected["orders"]) == 1 + 150 // 7
    assert expected["orders_open"] and expected["positions"]
    # One NETTING position, opened and closed 10 times: its fills are this
    # cycle's only.
    engine.dispose()
    assert tn.adapter_for(nt_trader) is None  # closed by the dispose
    assert db.cache.closed and db.unpersisted == 0

    cache, db2 = fresh_cache(nt_trader, server.port)
    start_like_a_node(cache)
    assert_state(expected, cache)
    assert db2.load_issues() == []


def test_a_trading_node_persists_and_a_second_node_recovers(server, nt_trader, event_loop_of_its_own):
    def node_config() -> TradingNodeConfig:
        return TradingNodeConfig(
            trader_id=TraderId(nt_trader),
            cache=spec_cache_config(server.port),
            logging=LoggingConfig(log_level="ERROR"),
        )

    node = TradingNode(config=node_config())
    node.build()
    db = tn.adapter_for(nt_trader)
    assert isinstance(db, tn.TradecacheDatabase)

    async def run_then_stop():
        task = asyncio.ensure_future(node.run_async())
        for _ in range(500):
            if node.trader.is_running:
                break
            await asyncio.sleep(0.01)
        assert node.trader.is_running
        run_workload(node.cache, pairs=3)
        db.wait(5.0)  # what a strategy does to know its writes are in Redis
        await node.stop_async()
        await asyncio.wait_for(task, 30)

    node.get_event_loop().run_until_complete(run_then_stop())
    expected = state_of(node.cache)
    node.dispose()
    assert db.cache.closed

    second = TradingNode(config=node_config())  # its kernel loads the cache
    try:
        assert_state(expected, second.cache)
        assert second.cache.check_integrity()
    finally:
        second.dispose()


def test_a_second_trading_node_with_the_same_trader_id_fences_the_first(server, nt_trader, event_loop_of_its_own):
    """Node 1 runs; node 2 with the same trader id is built (its start
    takes over). Node 1's next cache write raises tradecache.Fenced, an
    ordinary Exception its code can catch and log; node 1 keeps running,
    stops and disposes without hanging; node 2 recovered node 1's state."""
    import tradecache
    from nautilus_trader.model.identifiers import ClientOrderId
    from nautilus_trader.test_kit.stubs.execution import TestExecStubs

    def node_config() -> TradingNodeConfig:
        return TradingNodeConfig(
            trader_id=TraderId(nt_trader),
            cache=spec_cache_config(server.port),
            logging=LoggingConfig(log_level="ERROR"),
        )

    first = TradingNode(config=node_config())
    first.build()
    db1 = tn.adapter_for(nt_trader)
    outcome = {}

    async def run():
        task = asyncio.ensure_future(first.run_async())
        for _ in range(500):
            if first.trader.is_running:
                break
            await asyncio.sleep(0.01)
        run_workload(first.cache, pairs=1)
        db1.wait(5.0)
        second = TradingNode(config=node_config())  # takes over at its start
        outcome["second"] = second
        try:
            for i in range(200):
                order = TestExecStubs.limit_order(instrument=AUDUSD, client_order_id=ClientOrderId(f"O-zombie-{i}"))
                first.cache.add_order(order)
                db1.wait(1.0)
        except Exception as e:  # what a node's component catches and logs
            outcome["raised"] = e
        outcome["running"] = first.trader.is_running
        await first.stop_async()
        await asyncio.wait_for(task, 30)

    first.get_event_loop().run_until_complete(run())
    first.dispose()
    second = outcome["second"]
    try:
        assert isinstance(outcome.get("raised"), (tradecache.Fenced, tradecache.Dropped)), outcome
        assert outcome["running"]
        assert db1.cache.closed  # the dispose completed; close() kept its error
        assert isinstance(db1.close_error, tradecache.Fenced), db1.close_error
        expected_orders = {f"O-0-{side}" for side in ("BUY", "SELL")} | {"O-open", "O-canceled"}
        assert {o.client_order_id.value for o in second.cache.orders()} == expected_orders
    finally:
        second.dispose()
