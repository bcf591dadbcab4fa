"""The support of tradecache.nautilus's tests (imported by each test
module; a conftest.py here would shadow ../conftest.py, which other test
modules import by name): fixtures building a real NautilusTrader ``Cache``
whose database is a ``TradecacheDatabase`` on a private redis-server (the
session server of ../conftest.py), the way the kernel builds its adapter
(``MsgSpecSerializer``, the node's ``CacheConfig``); a trading workload
through it (Nautilus's test-kit objects); the comparison of two caches'
state."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from nautilus_trader.accounting.accounts.cash import CashAccount
from nautilus_trader.cache.cache import Cache
from nautilus_trader.cache.config import CacheConfig
from nautilus_trader.common.config import DatabaseConfig
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.model.currencies import AUD, USD
from nautilus_trader.model.enums import AccountType, OmsType, OrderSide
from nautilus_trader.model.events import AccountState, OrderInitialized
from nautilus_trader.model.identifiers import (
    AccountId,
    ClientId,
    ClientOrderId,
    PositionId,
    TradeId,
    TraderId,
    VenueOrderId,
)
from nautilus_trader.model.objects import AccountBalance, Money
from nautilus_trader.model.position import Position
from nautilus_trader.serialization.serializer import MsgSpecSerializer
from nautilus_trader.test_kit.providers import TestInstrumentProvider
from nautilus_trader.test_kit.stubs.events import TestEventStubs
from nautilus_trader.test_kit.stubs.execution import TestExecStubs

import tradecache
from tradecache.nautilus import COLLECTIONS, TradecacheDatabase, escape_id

AUDUSD = TestInstrumentProvider.default_fx_ccy("AUD/USD")
ACCOUNT_ID = AccountId("SIM-001")

#: tradecache options of every test adapter: no environment, fail fast.
TEST_OPTIONS = dict(env=False, connect_attempts=1, backoff_min_ms=10, backoff_max_ms=10)


def spec_cache_config(port: int, **overrides) -> CacheConfig:
    """The specification's ``CacheConfig`` (issue 29) on a test server."""
    kw = dict(
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
    kw.update(overrides)
    return CacheConfig(**kw)


def kernel_serializer(config: CacheConfig) -> MsgSpecSerializer:
    """The serializer the kernel gives its cache database."""
    return MsgSpecSerializer(
        encoding=msgspec.msgpack if config.encoding == "msgpack" else msgspec.json,
        timestamps_as_str=True,
        timestamps_as_iso8601=config.timestamps_as_iso8601,
    )


def start_like_a_node(cache: Cache) -> None:
    """What a node's start does (``ExecutionEngine.load_cache``): every
    load, then ``build_index`` and ``check_integrity``."""
    cache.clear_index()
    cache.cache_general()
    cache.cache_currencies()
    cache.cache_instruments()
    cache.cache_accounts()
    cache.cache_orders()
    cache.cache_order_lists()
    cache.cache_positions()
    cache.build_index()
    assert cache.check_integrity()


class WriteRecorder:
    """The adapter's writes, in the order it makes them (each a call of
    ``tradecache.Cache``'s ``put``, ``append`` or ``delete``): the
    sequence a crash may cut anywhere, since tradecache persists a prefix
    of it."""

    def __init__(self, db):
        self.calls = []
        self._inner = db._cache
        db._put = self._recording("put")
        db._append = self._recording("append")
        db._cache = self

    def _recording(self, name):
        method = getattr(self._inner, name)

        def call(*args):
            self.calls.append((name, args))
            return method(*args)

        return call

    def delete(self, *args):
        self.calls.append(("delete", args))
        return self._inner.delete(*args)

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def assert_every_prefix_starts_a_node(self, make_db, trader: str, final: dict, earlier: dict | None = None) -> None:
        """Replays each prefix of the recorded writes alone (into a trader
        of its own) and starts a node from it: its integrity check holds,
        nothing is reported, and every order and position loaded holds a
        prefix of its ``final`` events (by id, ``{id: events}``; or of its
        ``earlier`` ones, for an entity written anew since). A transformed
        order's later ``OrderInitialized`` is compared by type: Nautilus's
        transform, which a load replays, gives it a new id (with Nautilus's
        own backend too). An order or position is loaded exactly when a
        put of it is in the prefix and no delete after it, and a delete is
        the last write of its entity: once written, an entity is absent
        from no later prefix unless it was deleted for good (accounts too)."""
        entities = (COLLECTIONS["orders"], COLLECTIONS["positions"], COLLECTIONS["accounts"])
        deleted = set()
        for name, args in self.calls:
            key = args[:2]
            assert key not in deleted, f"{name} of {key} after its delete"
            if name == "delete" and key[0] in entities:
                deleted.add(key)
        for cut in range(len(self.calls) + 1):
            replay = make_db(trader=f"{trader}-{cut}")
            for name, args in self.calls[:cut]:
                getattr(replay.cache, name)(*args)
            replay.wait(5.0)
            node = Cache(database=replay)
            start_like_a_node(node)  # asserts check_integrity()
            assert replay.load_issues() == [], cut
            present = set()
            for name, args in self.calls[:cut]:
                if args[0] in entities and name in ("put", "delete"):
                    (present.add if name == "put" else present.discard)(args[:2])
            loaded = {(entities[0], escape_id(o.client_order_id.value)) for o in node.orders()}
            loaded |= {(entities[1], escape_id(p.id.value)) for p in node.positions()}
            loaded |= {(entities[2], escape_id(a.id.value)) for a in node.accounts()}
            assert loaded == present, cut
            for entity in list(node.orders()) + list(node.positions()):
                ident = (getattr(entity, "client_order_id", None) or entity.id).value
                events = _event_keys(entity.events)
                before = _event_keys((earlier or {}).get(ident, []))
                assert events in (_event_keys(final[ident])[: len(events)], before[: len(events)]), (cut, ident)
            replay.close()



def _event_keys(events) -> list:
    """Each event's id; a later ``OrderInitialized`` (a transform's) by
    its type."""
    return [type(e).__name__ if k and isinstance(e, OrderInitialized) else e.id for k, e in enumerate(events)]


@pytest.fixture
def nt_trader() -> str:
    return "NTT-" + uuid.uuid4().hex[:10]


@pytest.fixture
def make_db(server, nt_trader):
    """Builds ``TradecacheDatabase``s for this test's trader (on ``srv``,
    the session server by default); closes them at teardown."""
    opened = []

    def make(srv=None, trader=None, config=None, **options):
        srv = srv or server
        config = config or spec_cache_config(srv.port)
        opts = dict(TEST_OPTIONS)
        opts.update(options)
        db = TradecacheDatabase(
            TraderId(trader or nt_trader), UUID4(), kernel_serializer(config), config, **opts
        )
        opened.append(db)
        return db

    yield make
    for db in opened:
        try:
            db.close()
        except tradecache.Error:
            pass


@pytest.fixture
def make_cache(make_db):
    """A real Nautilus ``Cache`` on a fresh ``TradecacheDatabase``."""

    def make(**kw):
        db = make_db(**kw)
        return Cache(database=db, config=db_config(db)), db

    return make


def db_config(db) -> CacheConfig:
    return CacheConfig(persist_account_events=db._persist_account_events)


def account_state(balance: int, ts: int) -> AccountState:
    return AccountState(
        account_id=ACCOUNT_ID,
        account_type=AccountType.CASH,
        base_currency=USD,
        reported=True,
        balances=[AccountBalance(Money(balance, USD), Money(0, USD), Money(balance, USD))],
        margins=[],
        info={},
        event_id=UUID4(),
        ts_event=ts,
        ts_init=ts,
    )


def run_workload(cache: Cache, pairs: int = 5, tag: str = "") -> None:
    """Currencies, an instrument, an account with one state per fill,
    ``pairs`` positions opened by a buy and closed by a sell (each order
    submitted, accepted, partially filled, filled; order-position and
    order-client indexed), one order left open and one canceled."""
    inst = AUDUSD
    if cache.instrument(inst.id) is None:
        cache.add_currency(AUD)
        cache.add_currency(USD)
        cache.add_instrument(inst)
    account = cache.account(ACCOUNT_ID)
    if account is None:
        account = CashAccount(account_state(1_000_000, 1))
        cache.add_account(account)
    ts = account.last_event.ts_event + 1
    for k in range(pairs):
        pid = PositionId(f"P-{tag}{k}")
        position = None
        for side in (OrderSide.BUY, OrderSide.SELL):
            coid = ClientOrderId(f"O-{tag}{k}-{side.name}")
            order = TestExecStubs.limit_order(
                instrument=inst, order_side=side, quantity=inst.make_qty(100_000), client_order_id=coid
            )
            cache.add_order(order, position_id=pid, client_id=ClientId("SIM"))
            for event in (
                TestEventStubs.order_submitted(order, account_id=ACCOUNT_ID, ts_event=ts),
                TestEventStubs.order_accepted(order, account_id=ACCOUNT_ID, venue_order_id=VenueOrderId(f"V-{coid.value}"), ts_event=ts + 1),
            ):
                order.apply(event)
                cache.update_order(order)
            for part in (1, 2):
                ts += 10
                fill = TestEventStubs.order_filled(
                    order,
                    inst,
                    account_id=ACCOUNT_ID,
                    position_id=pid,
                    trade_id=TradeId(f"E-{coid.value}-{part}"),
                    last_qty=inst.make_qty(50_000),
                    last_px=inst.make_price(0.7 + k / 1000 + part / 10_000),
                    ts_event=ts,
                )
                order.apply(fill)
                cache.update_order(order)
                if position is None:
                    position = Position(inst, fill)
                    cache.add_position(position, OmsType.HEDGING)
                else:
                    position.apply(fill)
                    cache.update_position(position)
                account.apply(account_state(1_000_000 + k * 100 + part + (side == OrderSide.SELL) * 10, ts))
                cache.update_account(account)
    # One order left working, one canceled.
    for name, cancel in (("open", False), ("canceled", True)):
        order = TestExecStubs.limit_order(
            instrument=inst, order_side=OrderSide.BUY, client_order_id=ClientOrderId(f"O-{tag}{name}")
        )
        cache.add_order(order, client_id=ClientId("SIM"))
        order.apply(TestEventStubs.order_submitted(order, account_id=ACCOUNT_ID))
        cache.update_order(order)
        order.apply(TestEventStubs.order_accepted(order, account_id=ACCOUNT_ID, venue_order_id=VenueOrderId(f"V-{tag}{name}")))
        cache.update_order(order)
        if cancel:
            order.apply(TestEventStubs.order_canceled(order))
            cache.update_order(order)


def state_of(cache: Cache) -> dict:
    """What a cache holds, as plain comparable structures: every order
    (status, filled quantity, average price, every event in order, its
    whole ``to_dict``, its position and client ids), position (with its
    fills), account (balances, every state), instrument (currencies have
    no accessor on Nautilus's ``Cache``: test_every_facade_method), and
    which orders and positions are open."""
    orders = {}
    for o in cache.orders():
        orders[o.client_order_id.value] = dict(
            status=o.status,
            filled_qty=o.filled_qty,
            avg_px=o.avg_px,
            venue_order_id=_str(o.venue_order_id),
            events=[(type(e).__name__, e.id.value) for e in o.events],
            full=o.to_dict(),
            position_id=_str(cache.position_id(o.client_order_id)),
            client_id=_str(cache.client_id(o.client_order_id)),
        )
    positions = {
        p.id.value: dict(full=p.to_dict(), fills=[e.id.value for e in p.events]) for p in cache.positions()
    }
    accounts = {
        a.id.value: dict(balances=a.balances(), events=[e.id.value for e in a.events]) for a in cache.accounts()
    }
    return dict(
        orders=orders,
        positions=positions,
        accounts=accounts,
        instruments={i.id.value: i for i in cache.instruments()},
        orders_open=sorted(o.client_order_id.value for o in cache.orders_open()),
        positions_open=sorted(p.id.value for p in cache.positions_open()),
    )


def _str(x) -> str | None:
    return None if x is None else str(x)


def assert_same_state(a: Cache, b: Cache) -> None:
    """``b`` (loaded) holds exactly what ``a`` (the writer) held."""
    assert_state(state_of(a), b)


def assert_state(expected: dict, b: Cache) -> None:
    got = state_of(b)
    for part in expected:
        if part in ("orders", "positions", "accounts"):
            assert sorted(got[part]) == sorted(expected[part]), part
            for id_, want in expected[part].items():
                diff = {k: (v, got[part][id_].get(k)) for k, v in want.items() if got[part][id_].get(k) != v}
                assert not diff, f"{part} {id_}: (expected, got) {diff}"
        else:
            assert got[part] == expected[part], part
