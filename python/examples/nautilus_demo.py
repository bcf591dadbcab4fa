"""A NautilusTrader backtest persisting through tradecache, then a second
engine that recovers what it left (`make demo-nautilus`).

    python nautilus_demo.py PORT            both steps, each in its own process
    python nautilus_demo.py PORT backtest   step 1: run the backtest
    python nautilus_demo.py PORT recover    step 2: a new engine loads the state

Step 1 builds a `BacktestEngine` configured with the specification's
`CacheConfig(database=DatabaseConfig(type="redis", ...))` after
`tradecache.nautilus.install()`, so its cache database is tradecache's facade.
A small strategy of its own trades AUD/USD on 5,000 generated quote ticks
(a seeded random walk): it opens a position every 250 ticks and closes it 100
ticks later, with a limit order resting in between. Everything the engine's
`Cache` persists (orders with every event, positions, the account, the
instrument) goes to Redis; `dispose()` closes the
database, which drains every write.

Step 2, a new process: a second `BacktestEngine` with the same trader id and
configuration loads the cache at construction (the execution engine's
`load_cache`: cache_general, cache_currencies, cache_instruments,
cache_accounts, cache_orders, cache_positions), and prints what it found next
to what step 1's cache held (kept in a small JSON file beside the Redis data).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from decimal import Decimal

import tradecache.nautilus
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.cache.config import CacheConfig
from nautilus_trader.common.config import DatabaseConfig, LoggingConfig
from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import QuoteTick
from nautilus_trader.model.enums import AccountType, OmsType, OrderSide, TimeInForce
from nautilus_trader.model.identifiers import InstrumentId, TraderId, Venue
from nautilus_trader.model.objects import Money, Price, Quantity
from nautilus_trader.test_kit.providers import TestInstrumentProvider
from nautilus_trader.trading.strategy import Strategy

TRADER_ID = "DEMO-NAUTILUS-001"
TICKS = 5_000
STATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "target", "redis-demo",
                     "nautilus-demo-step1.json")


def create_redis_cache_config(port: int) -> CacheConfig:
    """The specification's configuration, unchanged."""
    return CacheConfig(
        database=DatabaseConfig(type="redis", host="127.0.0.1", port=port, password=None, ssl=False, timeout=2),
        encoding="msgpack",
        timestamps_as_iso8601=False,
        persist_account_events=True,
        buffer_interval_ms=100,
        use_trader_prefix=True,
        use_instance_id=False,
        flush_on_start=False,
        tick_capacity=10_000,
        bar_capacity=10_000,
    )


class FlipConfig(StrategyConfig, frozen=True):
    instrument_id: InstrumentId
    trade_size: Decimal = Decimal(100_000)
    every: int = 250
    hold: int = 100


class Flip(Strategy):
    """Every `every` quotes: buys at market (a new position), and rests a
    limit sell 15 pips above; `hold` quotes later cancels the limit order if it
    is still open and closes its positions at market. After each fill it
    waits until everything its node wrote so far is acknowledged by Redis
    (what a strategy does where a fill must be durable before it goes on)."""

    def __init__(self, config: FlipConfig) -> None:
        super().__init__(config)
        self.seen = 0
        self.limit = None
        self.waits_ms: list[float] = []

    def on_order_filled(self, event) -> None:
        t0 = time.perf_counter()
        tradecache.nautilus.adapter_for(self.trader_id).wait(5.0)
        self.waits_ms.append((time.perf_counter() - t0) * 1e3)

    def on_start(self) -> None:
        self.instrument = self.cache.instrument(self.config.instrument_id)
        self.subscribe_quote_ticks(self.config.instrument_id)

    def on_quote_tick(self, tick: QuoteTick) -> None:
        self.seen += 1
        qty = self.instrument.make_qty(self.config.trade_size)
        if self.seen % self.config.every == 0:
            self.submit_order(self.order_factory.market(self.config.instrument_id, OrderSide.BUY, qty))
            self.limit = self.order_factory.limit(
                self.config.instrument_id, OrderSide.SELL, qty,
                self.instrument.make_price(float(tick.ask_price) + 0.0015), time_in_force=TimeInForce.GTC,
            )
            self.submit_order(self.limit)
        elif self.seen % self.config.every == self.config.hold:
            if self.limit is not None and self.limit.is_open:
                self.cancel_order(self.limit)
            self.close_all_positions(self.config.instrument_id)

    def on_stop(self) -> None:
        self.cancel_all_orders(self.config.instrument_id)
        self.close_all_positions(self.config.instrument_id)


def quotes(instrument, n: int) -> list[QuoteTick]:
    rnd = random.Random(42)
    mid, ts = 0.70000, 1_764_000_000_000_000_000
    out = []
    for i in range(n):
        mid = max(0.5, mid + rnd.gauss(0, 0.0004))
        out.append(QuoteTick(
            instrument_id=instrument.id,
            bid_price=Price(mid - 0.00005, instrument.price_precision),
            ask_price=Price(mid + 0.00005, instrument.price_precision),
            bid_size=Quantity.from_int(1_000_000), ask_size=Quantity.from_int(1_000_000),
            ts_event=ts + i * 1_000_000_000, ts_init=ts + i * 1_000_000_000,
        ))
    return out


def engine(port: int) -> BacktestEngine:
    return BacktestEngine(BacktestEngineConfig(
        trader_id=TraderId(TRADER_ID),
        cache=create_redis_cache_config(port),
        logging=LoggingConfig(log_level="ERROR"),
    ))


def summary(cache) -> dict:
    """What a cache holds, in a form two processes can compare."""
    orders = sorted(cache.orders(), key=lambda o: o.client_order_id.value)
    positions = sorted(cache.positions(), key=lambda p: p.id.value)
    accounts = cache.accounts()
    return {
        "orders": len(orders),
        "orders_by_status": _count(o.status_string() for o in orders),
        "order_events": sum(len(o.events) for o in orders),
        "orders_detail": [
            [o.client_order_id.value, o.status_string(), str(o.filled_qty), str(o.avg_px), len(o.events)]
            for o in orders
        ],
        "positions": len(positions),
        "positions_closed": sum(1 for p in positions if p.is_closed),
        "realized_pnl": str(sum((p.realized_pnl.as_decimal() for p in positions if p.realized_pnl), Decimal(0))),
        "positions_detail": [[p.id.value, str(p.quantity), str(p.realized_pnl), p.event_count] for p in positions],
        "account_balances": {a.id.value: [str(b.total) for b in a.balances().values()] for a in accounts},
        "account_events": {a.id.value: a.event_count for a in accounts},
        "instruments": sorted(i.id.value for i in cache.instruments()),
    }


def _count(items) -> dict:
    out: dict = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def show(title: str, s: dict) -> None:
    print(f"  {title}")
    print(f"    orders: {s['orders']} {s['orders_by_status']}, {s['order_events']} events")
    print(f"    positions: {s['positions']} ({s['positions_closed']} closed), realized PnL {s['realized_pnl']} USD")
    for a, bal in s["account_balances"].items():
        print(f"    account {a}: balance {', '.join(bal)} ({s['account_events'][a]} account states)")
    print(f"    instruments: {', '.join(s['instruments'])}")


def backtest(port: int) -> None:
    tradecache.nautilus.install()  # the one step: the kernel now builds tradecache's facade
    e = engine(port)
    e.add_venue(
        venue=Venue("SIM"), oms_type=OmsType.HEDGING, account_type=AccountType.MARGIN,
        base_currency=USD, starting_balances=[Money(1_000_000, USD)],
    )
    instrument = TestInstrumentProvider.default_fx_ccy("AUD/USD")
    e.add_instrument(instrument)
    e.add_data(quotes(instrument, TICKS))
    strategy = Flip(FlipConfig(instrument_id=instrument.id))
    e.add_strategy(strategy)
    t0 = time.perf_counter()
    e.run()
    ran = time.perf_counter() - t0
    s = summary(e.cache)
    adapter = tradecache.nautilus.adapter_for(TRADER_ID)
    print(f"step 1: backtest of {TICKS:,} quote ticks in {ran:.2f} s, "
          f"cache database {type(adapter).__module__}.{type(adapter).__qualname__}")
    show("the engine's cache held:", s)
    w = sorted(strategy.waits_ms)
    if w:
        print(f"    the strategy waited for Redis's acknowledgement after each of {len(w)} fills: "
              f"median {w[len(w) // 2]:.1f} ms, longest {w[-1]:.1f} ms")
    t0 = time.perf_counter()
    e.dispose()  # closes the cache database: drains every accepted write into Redis
    took = time.perf_counter() - t0
    if adapter.unpersisted:
        print(f"  disposed in {took:.2f} s: {adapter.unpersisted} write(s) could NOT be persisted")
        sys.exit(1)
    print(f"  disposed in {took:.2f} s: the database closed with every write in Redis")
    os.makedirs(os.path.dirname(STATE), exist_ok=True)
    with open(STATE, "w") as f:
        json.dump(s, f)


def recover(port: int) -> None:
    tradecache.nautilus.install()
    t0 = time.perf_counter()
    e = engine(port)  # the execution engine loads the cache from the database here
    took = time.perf_counter() - t0
    s = summary(e.cache)
    print(f"step 2: a new engine with trader id {TRADER_ID} loaded its cache from Redis in {took:.2f} s")
    show("it found:", s)
    try:
        with open(STATE) as f:
            before = json.load(f)
    except FileNotFoundError:
        before = None
    if before is not None:
        same = before == s
        print(f"  the same as step 1's cache (every order's status, filled quantity, average price and "
              f"events, every position, the account): {'yes' if same else 'NO'}")
        if not same:
            for k in s:
                if s[k] != before.get(k):
                    print(f"    differs: {k}")
    e.dispose()
    if before is not None and not same:
        sys.exit(1)


def main() -> None:
    port = int(sys.argv[1])
    step = sys.argv[2] if len(sys.argv) > 2 else None
    if step == "backtest":
        backtest(port)
    elif step == "recover":
        recover(port)
    else:
        for s in ("backtest", "recover"):
            subprocess.run([sys.executable, os.path.abspath(__file__), str(port), s], check=True)


if __name__ == "__main__":
    main()
