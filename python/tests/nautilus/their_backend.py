"""State written by NautilusTrader's own Redis backend (1.221.0's
`nautilus_trader.cache.database.CacheDatabaseAdapter`) through a real
`nautilus_trader.cache.cache.Cache`, and the comparison of a Cache loaded
the node's way with the one that wrote it.

`write_their_state` is a small trading day with Nautilus's test kit:
currencies, two instruments and a synthetic one, a cash account with one `AccountState` per
fill, orders submitted, accepted, partially filled and filled (positions
opened and closed in pairs), canceled and rejected orders, an emulated
stop-market order transformed into a market order (its log then holds two
`OrderInitialized`), the order-position and order-client indexes, general
entries, a strategy's and an actor's saved state, order and position state
snapshots. Everything goes through their adapter into a Redis it reaches by
host and port; `close()` drains it.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from nautilus_trader.accounting.accounts.base import Account
from nautilus_trader.cache.cache import Cache
from nautilus_trader.cache.config import CacheConfig
from nautilus_trader.cache.database import CacheDatabaseAdapter
from nautilus_trader.common.actor import Actor
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.config import ActorConfig, StrategyConfig
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.model.enums import AccountType, OmsType, OrderSide, TriggerType
from nautilus_trader.model.events import AccountState, OrderEmulated, OrderReleased
from nautilus_trader.model.identifiers import (
    ClientId,
    ClientOrderId,
    ComponentId,
    PositionId,
    StrategyId,
    Symbol,
    TradeId,
    TraderId,
    VenueOrderId,
)
from nautilus_trader.model.objects import AccountBalance, Money, Price, Quantity
from nautilus_trader.model.instruments import SyntheticInstrument
from nautilus_trader.model.orders import MarketOrder, StopMarketOrder
from nautilus_trader.model.position import Position
from nautilus_trader.portfolio.portfolio import Portfolio
from nautilus_trader.test_kit.providers import TestInstrumentProvider
from nautilus_trader.test_kit.stubs.events import TestEventStubs
from nautilus_trader.test_kit.stubs.execution import TestExecStubs
from nautilus_trader.trading.strategy import Strategy

from nt_workload import kernel_serializer

STRATEGY_ID = "EMA-001"
ACTOR_ID = "Recorder"
STRATEGY_STATE = {"fast": b"10", "slow": b"20", "last_signal": b"BUY"}
ACTOR_STATE = {"seen": b"1234"}
GENERAL = {"session": b"2026-12-06", "blob": bytes(range(256))}


def their_adapter(trader_id: str, config: CacheConfig, instance_id: UUID4 | None = None) -> CacheDatabaseAdapter:
    return CacheDatabaseAdapter(
        trader_id=TraderId(trader_id),
        instance_id=instance_id or UUID4(),
        serializer=kernel_serializer(config),
        config=config,
    )


class _SavingStrategy(Strategy):
    def on_save(self) -> dict:
        return dict(STRATEGY_STATE)


class _SavingActor(Actor):
    def on_save(self) -> dict:
        return dict(ACTOR_STATE)


def _registered(component, trader_id: str, cache: Cache):
    clock = LiveClock()
    msgbus = MessageBus(trader_id=TraderId(trader_id), clock=clock)
    portfolio = Portfolio(msgbus=msgbus, clock=clock, cache=cache)
    if isinstance(component, Strategy):
        component.register(TraderId(trader_id), portfolio, msgbus, cache, clock)
    else:
        component.register_base(portfolio, msgbus, cache, clock)
    return component


def _account_state(account_id, total: int, event_no: int) -> AccountState:
    usd = TestInstrumentProvider.default_fx_ccy("AUD/USD").quote_currency
    return AccountState(
        account_id=account_id,
        account_type=AccountType.CASH,
        base_currency=usd,
        reported=True,
        balances=[AccountBalance(Money(total, usd), Money(0, usd), Money(total, usd))],
        margins=[],
        info={},
        event_id=UUID4(),
        ts_event=event_no,
        ts_init=event_no,
    )


@dataclasses.dataclass
class Written:
    """What the writing Cache held when their adapter was closed."""

    cache: Cache
    trader_id: str
    orders: int
    events: int


def write_their_state(config: CacheConfig, trader_id: str, pairs: int = 20, *, adapter=None) -> Written:
    """Writes `pairs` round trips (2 orders each) and the rest of the day
    (module docstring) through a real Cache on their adapter (or `adapter`,
    any cache database), closes the adapter and returns the writing Cache."""
    db = adapter or their_adapter(trader_id, config)
    cache = Cache(database=db)
    audusd = TestInstrumentProvider.default_fx_ccy("AUD/USD")
    ethusdt = TestInstrumentProvider.ethusdt_binance()
    for inst in (audusd, ethusdt):
        cache.add_instrument(inst)
        for ccy in {inst.base_currency, inst.quote_currency} - {None}:
            cache.add_currency(ccy)
    cache.add_synthetic(SyntheticInstrument(
        symbol=Symbol("ETH-AUD"), price_precision=5, components=[audusd.id, ethusdt.id],
        formula=f"({audusd.id} + {ethusdt.id}) / 2", ts_event=0, ts_init=0,
    ))

    account = TestExecStubs.cash_account()
    cache.add_account(account)
    balance = 1_000_000
    ts = 1

    def next_ts() -> int:
        nonlocal ts
        ts += 1
        return ts

    def update(order, event):
        order.apply(event)
        cache.update_order(order)

    def fill(order, qty: Quantity, px: str, pid: PositionId, k: int):
        nonlocal balance
        ev = TestEventStubs.order_filled(
            order, audusd, position_id=pid, last_qty=qty, last_px=Price.from_str(px),
            trade_id=TradeId(f"T-{order.client_order_id.value}-{k}"), ts_event=next_ts(),
        )
        update(order, ev)
        pos = cache.position(pid)
        if pos is None:
            pos = Position(audusd, ev)
            cache.add_position(pos, OmsType.HEDGING)
        else:
            pos.apply(ev)
            cache.update_position(pos)
        balance += 7 if order.side == OrderSide.SELL else -5
        account.apply(_account_state(account.id, balance, next_ts()))
        cache.update_account(account)
        return pos

    strategy = StrategyId(STRATEGY_ID)
    orders = 0
    for p in range(pairs):
        pid = PositionId(f"P-{p}")
        for side in (OrderSide.BUY, OrderSide.SELL):
            n = orders
            orders += 1
            order = TestExecStubs.limit_order(
                instrument=audusd, order_side=side, strategy_id=strategy,
                client_order_id=ClientOrderId(f"O-{n}"), quantity=audusd.make_qty(100_000),
                price=audusd.make_price(0.7 + (n % 7) / 1000),
            )
            cache.add_order(order, pid, ClientId("SIM"))
            update(order, TestEventStubs.order_submitted(order, ts_event=next_ts()))
            if p % 9 == 8 and side == OrderSide.SELL:
                update(order, TestEventStubs.order_rejected(order, ts_event=next_ts()))
                continue
            update(order, TestEventStubs.order_accepted(order, venue_order_id=VenueOrderId(f"V-{n}"), ts_event=next_ts()))
            if p % 5 == 4:
                update(order, TestEventStubs.order_canceled(order, ts_event=next_ts()))
                cache.snapshot_order_state(order)
                continue
            half = audusd.make_qty(50_000)
            pos = fill(order, half, f"{0.7 + n / 10_000:.5f}", pid, 1)
            if side == OrderSide.BUY:
                cache.snapshot_position_state(pos, next_ts(), Money(Decimal("12.5"), audusd.quote_currency))
            pos = fill(order, half, f"{0.7001 + n / 10_000:.5f}", pid, 2)
            cache.snapshot_order_state(order)

    # An emulated stop-market order, emulated, then released as the
    # emulator does it (execution/emulator.pyx): transformed into a market
    # order (`cache.add_order(transformed, ..., overwrite=True)`: its log then
    # holds two `OrderInitialized`), released, submitted, accepted.
    stop = StopMarketOrder(
        trader_id=TraderId(trader_id), strategy_id=strategy, instrument_id=ethusdt.id,
        client_order_id=ClientOrderId(f"O-{orders}"), order_side=OrderSide.BUY,
        quantity=ethusdt.make_qty(1), trigger_price=ethusdt.make_price(1000),
        trigger_type=TriggerType.BID_ASK, init_id=UUID4(), ts_init=next_ts(),
        emulation_trigger=TriggerType.BID_ASK,
    )
    orders += 1
    ids = dict(trader_id=stop.trader_id, strategy_id=strategy, instrument_id=stop.instrument_id,
               client_order_id=stop.client_order_id, event_id=None)
    cache.add_order(stop, None, ClientId("BINANCE"))
    update(stop, OrderEmulated(**{**ids, "event_id": UUID4()}, ts_init=next_ts()))
    transformed = MarketOrder.transform_py(stop, next_ts())
    cache.add_order(transformed, None, ClientId("BINANCE"), overwrite=True)
    update(transformed, OrderReleased(**{**ids, "event_id": UUID4()}, released_price=ethusdt.make_price(1001),
                                      ts_init=next_ts()))
    update(transformed, TestEventStubs.order_submitted(transformed, ts_event=next_ts()))
    update(transformed, TestEventStubs.order_accepted(transformed, venue_order_id=VenueOrderId("V-STOP"),
                                                      ts_event=next_ts()))

    for key, value in GENERAL.items():
        cache.add(key, value)
    cache.update_strategy(_registered(_SavingStrategy(StrategyConfig(strategy_id="EMA", order_id_tag="001")), trader_id, cache))
    cache.update_actor(_registered(_SavingActor(ActorConfig(component_id=ACTOR_ID)), trader_id, cache))

    db.close()
    events = sum(len(o.events) for o in cache.orders())
    return Written(cache=cache, trader_id=trader_id, orders=orders, events=events)


# ---- the comparison ----------------------------------------------------


def _events(obj) -> list:
    out = []
    for k, e in enumerate(obj.events):
        d = type(e).to_dict(e)
        if k and type(e).__name__ == "OrderInitialized":
            # A transformed (released emulated) order: Nautilus's loaders
            # transform it again, with a new `init_id` at each load
            # (MarketOrder.transform).
            d.pop("event_id")
        out.append((type(e).__name__, d))
    return out


def _order_view(o) -> tuple:
    return (type(o).__name__, o.status_string(), o.filled_qty, o.avg_px, o.venue_order_id,
            o.position_id, _events(o))


def _position_view(p) -> tuple:
    return (p.side, p.quantity, p.avg_px_open, p.avg_px_close, p.realized_pnl, p.is_closed,
            [f.trade_id for f in p.events], _events(p))


def _account_view(a: Account) -> tuple:
    return ([str(b) for b in a.balances().values()], [type(e).to_dict(e) for e in a.events])


def expected_currencies(cache: Cache) -> list:
    """The currencies of the instruments the writing Cache holds (the ones
    `write_their_state` added)."""
    out = {}
    for inst in cache.instruments():
        for c in (getattr(inst, "base_currency", None), inst.quote_currency):
            if c is not None:
                out[c.code] = c
    return list(out.values())


def _currencies(cs) -> list:
    return sorted((c.code, c.precision, c.iso4217, c.name, c.currency_type) for c in cs)


def saved_states(db) -> tuple:
    """The strategy's and the actor's saved state as `db` loads them (with
    `encoding="json"` Nautilus's serializer gives the bytes back as base64
    text)."""
    return db.load_strategy(StrategyId(STRATEGY_ID)), db.load_actor(ComponentId(ACTOR_ID))


def differences(expected: Cache, got: Cache, db=None, saved=(STRATEGY_STATE, ACTOR_STATE)) -> list[str]:
    """Every difference a node would see between the Cache that wrote and
    the one loaded (orders with every event, positions, accounts with every
    state, instruments, currencies, indexes, general entries; with `db`,
    the currencies, synthetics and the strategy's and actor's saved state, `saved`):
    empty when they agree."""
    out: list[str] = []

    def same(what, a, b):
        if a != b:
            out.append(f"{what}: wrote {a!r}\n  loaded {b!r}")

    same("order ids", sorted(o.client_order_id.value for o in expected.orders()),
         sorted(o.client_order_id.value for o in got.orders()))
    for o in expected.orders():
        g = got.order(o.client_order_id)
        if g is not None:
            same(f"order {o.client_order_id}", _order_view(o), _order_view(g))
    same("position ids", sorted(p.id.value for p in expected.positions()), sorted(p.id.value for p in got.positions()))
    for p in expected.positions():
        g = got.position(p.id)
        if g is not None:
            same(f"position {p.id}", _position_view(p), _position_view(g))
    same("account ids", sorted(a.id.value for a in expected.accounts()), sorted(a.id.value for a in got.accounts()))
    for a in expected.accounts():
        g = got.account(a.id)
        if g is not None:
            same(f"account {a.id}", _account_view(a), _account_view(g))
    same("instruments", sorted((i.id.value, type(i).to_dict(i).__repr__()) for i in expected.instruments()),
         sorted((i.id.value, type(i).to_dict(i).__repr__()) for i in got.instruments()))
    same("open orders", sorted(o.client_order_id.value for o in expected.orders_open()),
         sorted(o.client_order_id.value for o in got.orders_open()))
    same("closed orders", sorted(o.client_order_id.value for o in expected.orders_closed()),
         sorted(o.client_order_id.value for o in got.orders_closed()))
    same("open positions", sorted(p.id.value for p in expected.positions_open()),
         sorted(p.id.value for p in got.positions_open()))
    same("closed positions", sorted(p.id.value for p in expected.positions_closed()),
         sorted(p.id.value for p in got.positions_closed()))
    same("order -> position", {o.client_order_id.value: str(expected.position_id(o.client_order_id)) for o in expected.orders()},
         {o.client_order_id.value: str(got.position_id(o.client_order_id)) for o in got.orders()})
    same("order -> client", {o.client_order_id.value: str(expected.client_id(o.client_order_id)) for o in expected.orders()},
         {o.client_order_id.value: str(got.client_id(o.client_order_id)) for o in got.orders()})
    same("venue order ids", {o.client_order_id.value: str(got.client_order_id(o.venue_order_id)) for o in expected.orders()
                             if o.venue_order_id is not None},
         {o.client_order_id.value: o.client_order_id.value for o in expected.orders() if o.venue_order_id is not None})
    for key, value in GENERAL.items():
        same(f"general {key}", value, got.get(key))
    if db is not None:
        same("currencies", _currencies(expected_currencies(expected)), _currencies(db.load_currencies().values()))
        same("synthetics", sorted(repr(type(i).to_dict(i)) for i in expected.synthetics()),
             sorted(repr(type(i).to_dict(i)) for i in db.load_synthetics().values()))
        same("strategy and actor state", tuple(saved), saved_states(db))
    return out
