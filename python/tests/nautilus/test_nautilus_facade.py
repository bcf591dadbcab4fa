"""tradecache.nautilus: a real Nautilus ``Cache`` on ``TradecacheDatabase``
against private redis-servers; state read back the node's way."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import random
import warnings

import pytest

from nautilus_trader.cache.cache import Cache
from nautilus_trader.cache.facade import CacheDatabaseFacade
from nautilus_trader.common.actor import Actor
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.model.currencies import AUD, USD
from nautilus_trader.model.enums import OrderSide, TriggerType
from nautilus_trader.model.events import OrderEmulated, OrderReleased
from nautilus_trader.model.identifiers import (
    ClientId,
    ClientOrderId,
    ComponentId,
    PositionId,
    TradeId,
    TraderId,
    VenueOrderId,
)
from nautilus_trader.model.objects import Money
from nautilus_trader.model.orders import MarketOrder, StopMarketOrder
from nautilus_trader.test_kit.providers import TestInstrumentProvider
from nautilus_trader.test_kit.stubs.component import TestComponentStubs
from nautilus_trader.test_kit.stubs.events import TestEventStubs
from nautilus_trader.test_kit.stubs.execution import TestExecStubs
from nautilus_trader.trading.strategy import Strategy

import tradecache
import tradecache.nautilus as tn
from nt_workload import (  # noqa: F401 - fixtures
    ACCOUNT_ID,
    AUDUSD,
    account_state,
    assert_same_state,
    assert_state,
    make_cache,
    make_db,
    nt_trader,
    run_workload,
    spec_cache_config,
    start_like_a_node,
    state_of,
    WriteRecorder,
)
from their_backend import differences, write_their_state


def test_a_node_start_gets_back_exactly_what_was_written(make_cache):
    a, db = make_cache()
    run_workload(a, pairs=6)
    db.wait(5.0)
    b, _ = make_cache()
    start_like_a_node(b)
    assert_same_state(a, b)
    assert len(b.orders()) == 14 and len(b.positions()) == 6
    assert len(b.orders_open()) == 1 and len(b.orders_closed()) == 13
    assert len(b.account(ACCOUNT_ID).events) == 1 + 6 * 4
    # cache_all (load_all) the same, but for the order-client index, which
    # Nautilus's cache_all does not load (build_index rebuilds the
    # order-position one from the orders).
    c, _ = make_cache()
    c.cache_all()
    c.build_index()
    assert c.check_integrity()
    expected = state_of(a)
    for o in expected["orders"].values():
        o["client_id"] = None
    assert_state(expected, c)


def test_a_later_session_continues_the_state(make_cache):
    """Two sessions: the second starts from the first's state and trades on
    (update_order / update_position append to the logs the first wrote)."""
    a, db = make_cache()
    run_workload(a, pairs=2, tag="s1-")
    db.close()
    b, db2 = make_cache()
    start_like_a_node(b)
    run_workload(b, pairs=2, tag="s2-")
    db2.wait(5.0)
    c, _ = make_cache()
    start_like_a_node(c)
    assert_same_state(b, c)
    assert len(c.orders()) == 12


@pytest.mark.parametrize(
    "encoding, iso", [("json", False), ("msgpack", True)], ids=["json", "iso8601-timestamps"]
)
def test_other_encodings_round_trip_through_the_serializer(make_cache, server, encoding, iso):
    """encoding="json" or timestamps_as_iso8601: every value is the node
    serializer's bytes (readable as JSON / with ISO 8601 timestamps)."""
    config = spec_cache_config(server.port, encoding=encoding, timestamps_as_iso8601=iso)
    a, db = make_cache(config=config)
    run_workload(a, pairs=2)
    db.wait(5.0)
    raw = server.client().get(f"{db.cache.key_prefix}:ntpy-orders:O-0-BUY")
    stored = tradecache.unpackb(raw)
    assert isinstance(stored, bytes)
    if encoding == "json":
        assert stored.startswith(b"{") and b'"OrderInitialized"' in stored
    b, _ = make_cache(config=config)
    start_like_a_node(b)
    assert_same_state(a, b)


def test_a_full_channel_raises_from_the_cache_call(make_cache, own_server):
    """Redis frozen (SIGSTOP), a small channel: a write that finds it full
    raises tradecache.Full (the value handed back) from Nautilus's Cache
    call, never a silent drop; every write that returned is in Redis once
    it answers again, the refused one is not."""
    small = dict(channel_capacity=8, max_pending_events=16, max_pending_snapshots=16)
    cache, db = make_cache(srv=own_server, **small)
    cache.add_instrument(AUDUSD)
    db.wait(5.0)
    accepted, refused = [], None
    own_server.pause()
    try:
        for i in range(5_000):
            order = TestExecStubs.limit_order(instrument=AUDUSD, client_order_id=ClientOrderId(f"O-full-{i}"))
            try:
                cache.add_order(order)
            except tradecache.Full as e:
                refused = (order, e)
                break
            accepted.append(order.client_order_id)
    finally:
        own_server.resume()
    assert refused is not None, "the channel never filled"
    assert refused[1].value is not None and db.stats().rejected >= 1
    db.wait(20.0)
    b, _ = make_cache(srv=own_server)
    start_like_a_node(b)
    assert {o.client_order_id for o in b.orders()} == set(accepted)
    assert b.order(refused[0].client_order_id) is None



def test_an_event_refused_by_a_full_channel_is_written_with_the_next(make_cache, own_server):
    """Redis frozen: an order, the account and a position (reopened by a
    fill) each updated until a call finds the channel full and raises
    Full (the flusher's pending values and events and the channel filled
    to the brim before each call). Once Redis answers, the next update of
    that order and that position writes the refused event with its own;
    the refused update_account made again writes its state (an account's
    next state alone would not: its states each stand alone). A node start
    then holds what the writing Cache holds, each event once."""
    first, db = make_cache(srv=own_server)
    run_workload(first, pairs=1)
    db.close()
    small = dict(channel_capacity=8, max_pending_events=16, max_pending_snapshots=16)
    a, db = make_cache(srv=own_server, **small)
    start_like_a_node(a)
    order = a.orders_open()[0]
    position = a.positions()[0]  # closed: its next fill reopens it
    account = a.account(ACCOUNT_ID)
    buy = TestExecStubs.limit_order(instrument=AUDUSD, client_order_id=ClientOrderId("O-reopen"))
    n = [0]

    def update_order():
        order.apply(TestEventStubs.order_updated(order, quantity=order.quantity))
        a.update_order(order)

    def update_account():
        n[0] += 1
        account.apply(account_state(1_000 + n[0], 10**6 + n[0]))
        a.update_account(account)

    def fill():
        n[0] += 1
        position.apply(TestEventStubs.order_filled(
            buy, AUDUSD, position_id=position.id, trade_id=TradeId(f"E-reopen-{n[0]}"),
            last_qty=AUDUSD.make_qty(10_000), last_px=AUDUSD.make_price(0.7), ts_event=10**6 + n[0]))
        a.update_position(position)

    own_server.pause()
    try:
        for update in (update_order, update_account, fill):
            for attempt in range(50):
                for write in (lambda i: a.add(f"filler-{n[0]}-{attempt}-{i}", b"x"),
                              lambda i: db.cache.append("ntpy-filler", f"{attempt}", i)):
                    with pytest.raises(tradecache.Full):
                        for i in range(5_000):
                            write(i)
                try:
                    update()
                except tradecache.Full:
                    break
            else:
                pytest.fail(f"{update.__name__}: never refused")
    finally:
        own_server.resume()
    db.wait(20.0)
    # One at a time (a few writes each; the channel holds 8).
    for update in (lambda: a.update_account(account), update_order, fill):
        update()
        db.wait(5.0)
    assert _stored_event_ids(db, order) == [e.id.value for e in order.events]
    b, db2 = make_cache(srv=own_server)
    start_like_a_node(b)
    assert db2.load_issues() == []
    assert [e.id for e in b.order(order.client_order_id).events] == [e.id for e in order.events]
    assert [e.id for e in b.account(ACCOUNT_ID).events] == [e.id for e in account.events]
    assert [e.trade_id for e in b.position(position.id).events] == [e.trade_id for e in position.events]
    assert len(position.events) >= 2

def test_close_is_bounded_and_reports_what_it_could_not_persist(make_cache, own_server):
    """Redis frozen at the node's dispose: close() returns within its
    timeout, never raises, and says what it could not persist."""
    cache, db = make_cache(srv=own_server, close_timeout=0.5)
    cache.add_instrument(AUDUSD)
    db.wait(5.0)
    own_server.pause()
    try:
        cache.add_order(TestExecStubs.limit_order(instrument=AUDUSD, client_order_id=ClientOrderId("O-late")))
        cache.dispose()  # Nautilus's Cache.dispose calls close()
        assert isinstance(db.close_error, tradecache.Unpersisted), db.close_error
        assert db.unpersisted >= 1 and db.cache.closed
    finally:
        own_server.resume()


def test_flush_deletes_this_traders_keys_only(make_cache, make_db, server):
    a, db = make_cache()
    run_workload(a, pairs=1)
    other = make_db(trader="NTT-OTHER-" + db.trader_id[4:])
    other.add("k", b"v")
    r = server.client()
    r.set("not-nautilus", b"x")
    db.flush()
    assert db.keys() == []
    assert not [k for k in r.scan_iter(match=f"trader-{db.trader_id}:ntpy-*")]
    assert r.get("not-nautilus") == b"x"
    assert other.load() == {"k": b"v"}
    r.delete("not-nautilus")


def test_the_accounts_next_state_after_flush_is_written(make_cache):
    """After flush() the node's next update_account is written, as the
    account's first state (flush deleted the stored one): a node started
    afterwards gets the account back with that state. Before: it raised
    AttributeError (Nautilus's ``UUID4 == None``, flush forgets the last
    state written per account), then it appended the state to a log with
    no stored account, which a load skipped."""
    a, db = make_cache()
    run_workload(a, pairs=1)
    db.flush()
    account = a.account(ACCOUNT_ID)
    state = account_state(2_000_000, 10**18)
    account.apply(state)
    a.update_account(account)
    db.wait(5.0)
    b, db2 = make_cache()
    start_like_a_node(b)
    loaded = b.account(ACCOUNT_ID)
    assert loaded is not None
    assert [s.id for s in loaded.events] == [state.id]
    assert loaded.balance_total(USD) == Money(2_000_000, USD)
    assert db2.load_issues() == []


def test_the_caches_add_order_writes_the_order_position_pair_once(make_cache):
    """Cache.add_order(order, position_id) indexes the pair itself
    (index_order_position), then hands it to add_order: the pair is
    queued once (before: twice, packed and written again)."""
    a, db = make_cache()
    run_workload(a, pairs=1)
    order = TestExecStubs.limit_order(instrument=AUDUSD, client_order_id=ClientOrderId("O-once"))
    before = db.cache.last_seq()
    a.add_order(order, PositionId("P-once"))
    assert db.cache.last_seq() - before == 2  # the order's initialization, the pair
    db.wait(5.0)
    b, db2 = make_cache()
    start_like_a_node(b)
    assert b.position_id(order.client_order_id) == PositionId("P-once")
    assert db2.load_issues() == []


def test_a_value_that_no_longer_decodes_is_reported_and_skipped(make_cache, server):
    a, db = make_cache()
    run_workload(a, pairs=2)
    a.add_order(TestExecStubs.limit_order(instrument=AUDUSD, client_order_id=ClientOrderId("O-extra")))
    db.wait(5.0)
    r = server.client()
    prefix = db.cache.key_prefix
    # Values the node's serializer no longer decodes: an order's stored
    # initialization and an event appended to another order's log (both
    # MessagePack `bin`, as the adapter writes, but not the serializer's
    # bytes); a log entry that is no MessagePack at all (its whole log
    # cannot be read, so its order is skipped rather than rebuilt from
    # part of its history); a position of another shape. None of them is
    # referenced by another entity, so the node's integrity check holds.
    r.set(f"{prefix}:ntpy-orders:O-extra", tradecache.packb(b"\xc1 not the serializer's"))
    r.rpush(f"{prefix}:ntpy-orders:O-open:events", tradecache.packb(b"\xc1 not the serializer's"))
    r.rpush(f"{prefix}:ntpy-orders:O-canceled:events", b"\xc1")
    r.set(f"{prefix}:ntpy-positions:P-x", tradecache.packb({"no": "fill"}))
    r.sadd(f"{prefix}:index:ntpy-positions", "P-x")
    b, db2 = make_cache()
    start_like_a_node(b)  # the node still starts (check_integrity holds)
    keys = sorted({k for k, _ in db2.load_issues()})
    assert keys == [
        f"{prefix}:ntpy-orders:O-canceled",
        f"{prefix}:ntpy-orders:O-canceled:events",
        f"{prefix}:ntpy-orders:O-extra",
        f"{prefix}:ntpy-orders:O-open:events",
        f"{prefix}:ntpy-positions:P-x",
    ]
    assert b.order(ClientOrderId("O-canceled")) is None
    assert b.order(ClientOrderId("O-extra")) is None
    assert b.position(PositionId("P-x")) is None
    expected = state_of(a)
    del expected["orders"]["O-canceled"]
    del expected["orders"]["O-extra"]
    assert_state(expected, b)  # everything else, O-open with its good events


def test_a_second_node_with_the_same_trader_id_fences_the_first(make_cache):
    a, db = make_cache()
    run_workload(a, pairs=1, tag="first-")
    db.wait(5.0)
    b, db2 = make_cache()  # same trader id: the newest writer wins
    start_like_a_node(b)
    assert_same_state(a, b)
    # The first node learns it from a Cache call: Fenced (a tradecache.Error,
    # an ordinary Exception), raised within a bounded number of writes (the
    # flusher notices at its first batch after the takeover).
    raised = None
    for i in range(200):
        order = TestExecStubs.limit_order(instrument=AUDUSD, client_order_id=ClientOrderId(f"O-zombie-{i}"))
        try:
            a.add_order(order)
            db.wait(1.0)
        except tradecache.Error as e:
            raised = e
            break
    assert isinstance(raised, (tradecache.Fenced, tradecache.Dropped)), raised
    assert isinstance(raised, Exception)
    with pytest.raises(tradecache.Fenced):
        a.add_order(TestExecStubs.limit_order(instrument=AUDUSD, client_order_id=ClientOrderId("O-zombie-x")))
    assert db.health().fenced
    # Nothing the zombie wrote after the takeover landed; the second node's
    # writes do.
    order = TestExecStubs.limit_order(instrument=AUDUSD, client_order_id=ClientOrderId("O-second"))
    b.add_order(order)
    db2.wait(5.0)
    c, _ = make_cache()
    start_like_a_node(c)
    assert c.order(ClientOrderId("O-second")) is not None
    assert not [o for o in c.orders() if o.client_order_id.value.startswith("O-zombie")]


class _SavingStrategy(Strategy):
    def on_save(self) -> dict:
        return {"counter": b"7"}


class _SavingActor(Actor):
    def on_save(self) -> dict:
        return {"seen": b"42"}


def test_every_facade_method(make_cache, make_db):
    """Each method of Nautilus's CacheDatabaseFacade, enumerated from the
    class itself (a method a later nautilus_trader adds fails this test
    until it is covered here)."""
    facade_methods = {n for n, v in vars(CacheDatabaseFacade).items() if not n.startswith("_") and callable(v)}
    cache, db = make_cache()
    covered = set()

    def call(name, *args, **kw):
        covered.add(name)
        return getattr(db, name)(*args, **kw)

    inst = AUDUSD
    synth = TestInstrumentProvider.synthetic_instrument()
    call("add", "general-key", b"\x00bytes")
    assert call("load") == {"general-key": b"\x00bytes"}
    call("add_currency", AUD)
    call("add_currency", USD)
    assert call("load_currency", "AUD") == AUD
    assert call("load_currencies") == {"AUD": AUD, "USD": USD}
    call("add_instrument", inst)
    assert call("load_instrument", inst.id) == inst
    assert call("load_instruments") == {inst.id: inst}
    call("add_synthetic", synth)
    assert call("load_synthetic", synth.id).formula == synth.formula
    assert list(call("load_synthetics")) == [synth.id]

    account = TestExecStubs.cash_account(ACCOUNT_ID)
    call("add_account", account)
    second = account_state(2_000_000, 5)
    account.apply(second)
    call("update_account", account)
    third = account_state(3_000_000, 6)
    account.apply(third)
    call("update_account", account)
    loaded = call("load_account", ACCOUNT_ID)
    assert [e.id for e in loaded.events] == [e.id for e in account.events]
    call("delete_account_event", ACCOUNT_ID, second.id.value)
    loaded = call("load_accounts")[ACCOUNT_ID]
    assert [e.id for e in loaded.events] == [account.events[0].id, third.id]
    assert loaded.balance_total(USD) == Money(3_000_000, USD)

    order = TestExecStubs.limit_order(instrument=inst, order_side=OrderSide.BUY, client_order_id=ClientOrderId("O-1"))
    call("add_order", order, PositionId("P-1"), ClientId("SIM"))
    order.apply(TestEventStubs.order_submitted(order, account_id=ACCOUNT_ID))
    call("update_order", order)
    order.apply(TestEventStubs.order_accepted(order, account_id=ACCOUNT_ID, venue_order_id=VenueOrderId("V-1")))
    call("update_order", order)
    call("index_venue_order_id", order.client_order_id, VenueOrderId("V-1"))
    fill = TestEventStubs.order_filled(order, inst, account_id=ACCOUNT_ID, position_id=PositionId("P-1"))
    order.apply(fill)
    call("update_order", order)
    # A pair indexed before its order is written (as the Cache's add_order
    # does) is written right after the order, never without it.
    call("index_order_position", ClientOrderId("O-2"), PositionId("P-2"))
    assert ClientOrderId("O-2") not in call("load_index_order_position")
    db.add_order(TestExecStubs.limit_order(instrument=inst, client_order_id=ClientOrderId("O-2")))
    assert call("load_order", order.client_order_id).to_dict() == order.to_dict()
    assert call("load_orders")[order.client_order_id].to_dict() == order.to_dict()
    assert call("load_index_order_position") == {
        ClientOrderId("O-1"): PositionId("P-1"),
        ClientOrderId("O-2"): PositionId("P-2"),
    }
    db.delete_order(ClientOrderId("O-2"))
    assert call("load_index_order_client") == {ClientOrderId("O-1"): ClientId("SIM")}
    venue = db.cache.get(tn.COLLECTIONS["venue_order_ids"], "O-1")
    assert venue == ["O-1", "V-1"]

    from nautilus_trader.model.position import Position

    position = Position(inst, fill)
    call("add_position", position)
    sell = TestExecStubs.limit_order(instrument=inst, order_side=OrderSide.SELL, client_order_id=ClientOrderId("O-3"))
    sell.apply(TestEventStubs.order_submitted(sell, account_id=ACCOUNT_ID))
    sell.apply(TestEventStubs.order_accepted(sell, account_id=ACCOUNT_ID))
    fill2 = TestEventStubs.order_filled(sell, inst, account_id=ACCOUNT_ID, position_id=PositionId("P-1"))
    position.apply(fill2)
    call("update_position", position)
    assert call("load_position", position.id).to_dict() == position.to_dict()
    assert call("load_positions")[position.id].to_dict() == position.to_dict()

    call("snapshot_order_state", order)
    call("snapshot_order_state", order)
    call("snapshot_position_state", position, 123, Money(5, USD))
    snaps = db.cache.get_events(tn.COLLECTIONS["order_snapshots"], "O-1")
    assert len(snaps) == 2
    pos_snap = db.cache.get_events(tn.COLLECTIONS["position_snapshots"], "P-1")[0]  # a map
    assert pos_snap["ts_snapshot"] == 123 and pos_snap["unrealized_pnl"] == "5.00 USD"

    loaded = call("load_all")
    assert set(loaded) == {"currencies", "instruments", "synthetics", "accounts", "orders", "positions"}
    assert loaded["orders"][order.client_order_id].to_dict() == order.to_dict()
    assert loaded["positions"][position.id].to_dict() == position.to_dict()

    strategy = _SavingStrategy()
    strategy.register(
        trader_id=TraderId(db.trader_id),
        portfolio=TestComponentStubs.portfolio(),
        msgbus=TestComponentStubs.msgbus(),
        cache=cache,
        clock=TestComponentStubs.clock(),
    )
    call("update_strategy", strategy)
    assert call("load_strategy", strategy.id)["counter"] == b"7"
    call("delete_strategy", strategy.id)
    assert call("load_strategy", strategy.id) == {}
    actor = _SavingActor()
    actor.register_base(
        portfolio=TestComponentStubs.portfolio(),
        msgbus=TestComponentStubs.msgbus(),
        cache=cache,
        clock=TestComponentStubs.clock(),
    )
    call("update_actor", actor)
    assert call("load_actor", actor.id)["seen"] == b"42"
    call("delete_actor", actor.id)
    assert call("load_actor", ComponentId(actor.id.value)) == {}

    now = dt.datetime(2026, 12, 6, 8, 0, tzinfo=dt.timezone.utc)
    call("heartbeat", now)
    assert db.cache.get(tn.COLLECTIONS["health"], "heartbeat").startswith("2026-12-06T08:00:00")
    prefix = db.cache.key_prefix
    keys = call("keys", "ntpy-orders:*")
    assert sorted(keys) == [f"{prefix}:ntpy-orders:O-1", f"{prefix}:ntpy-orders:O-1:events"]
    assert f"{prefix}:ntpy-health:heartbeat" in call("keys")

    call("delete_order", order.client_order_id)
    assert call("load_order", order.client_order_id) is None
    assert ClientOrderId("O-1") not in call("load_index_order_position")
    call("delete_position", position.id)
    assert call("load_position", position.id) is None

    call("flush")
    assert call("keys") == []
    call("close")
    assert db.cache.closed
    assert covered == facade_methods, f"not exercised: {sorted(facade_methods - covered)}; unknown: {sorted(covered - facade_methods)}"
    assert len(facade_methods) == 43


def test_the_fast_decoder_equals_from_dict(make_cache):
    """tradecache.nautilus._decode rebuilds fills, submissions,
    acceptances and account states (cash and margin, with and without a
    position id) exactly as their from_dict would, from the maps stored;
    a malformed one is refused as from_dict refuses it."""
    from nautilus_trader.test_kit.stubs.events import TestEventStubs as E

    from tradecache.nautilus._database import _FROM_NATIVE
    from tradecache.nautilus._decode import Decoder

    a, _ = make_cache()
    run_workload(a, pairs=2)
    events = [e for o in a.orders() for e in o.events] + [e for acc in a.accounts() for e in acc.events]
    events.append(E.margin_account_state())
    order = a.order(ClientOrderId("O-open"))
    events.append(E.order_filled(order, AUDUSD, account_id=ACCOUNT_ID, position_id=None, last_qty=AUDUSD.make_qty(1)))
    dec = Decoder(_FROM_NATIVE)
    kinds = set()
    for e in events:
        stored = tradecache.unpackb(tradecache.packb(type(e).to_dict(e)))
        got = dec.decode(stored)
        assert type(got) is type(e)
        assert type(e).to_dict(got) == type(e).to_dict(e)
        kinds.add(type(e).__name__)
    assert {"OrderFilled", "OrderAccepted", "OrderSubmitted", "AccountState"} <= kinds
    bad = dict(type(events[0]).to_dict(events[0]), event_id="not-a-uuid")
    with pytest.raises(Exception):
        dec.decode(bad)


def test_user_values_in_an_order_come_back_with_their_types(make_cache):
    """An order's execution-algorithm parameters are the user's own values:
    a Decimal, a datetime and a date among them come back as such after a
    restart (tradecache's ext types), not as the text another encoder would
    write for them."""
    from decimal import Decimal

    from nautilus_trader.common.component import TestClock
    from nautilus_trader.common.factories import OrderFactory
    from nautilus_trader.model.identifiers import ExecAlgorithmId, StrategyId

    a, db = make_cache()
    a.add_currency(USD)
    a.add_currency(AUD)
    a.add_instrument(AUDUSD)
    params = {"size": Decimal("1.25"), "start": dt.datetime(2026, 1, 2, 3, 4, 5), "day": dt.date(2026, 1, 2), "n": 3}
    factory = OrderFactory(trader_id=TraderId("TESTER-000"), strategy_id=StrategyId("S-001"), clock=TestClock())
    order = factory.limit(AUDUSD.id, OrderSide.BUY, AUDUSD.make_qty(100), AUDUSD.make_price(1.0),
                          exec_algorithm_id=ExecAlgorithmId("TWAP"), exec_algorithm_params=params)
    a.add_order(order)
    db.wait(5.0)
    b, _ = make_cache()
    start_like_a_node(b)
    got = b.order(order.client_order_id).exec_algorithm_params
    assert got == params and [type(v) for v in got.values()] == [type(v) for v in params.values()], got


def test_ids_that_are_no_tradecache_ids_are_escaped(make_cache):
    """Nautilus ids may hold what tradecache's keys cannot (':', spaces);
    they are escaped, and read back as they were."""
    a, db = make_cache()
    a.add_currency(USD)
    odd = TestExecStubs.limit_order(instrument=AUDUSD, client_order_id=ClientOrderId("O:1 {x}%"))
    a.add_order(odd)
    a.add("a key: with {odd} %chars", b"v")
    db.wait(5.0)
    assert db.cache.get(tn.COLLECTIONS["orders"], "O%3A1%20%7Bx%7D%25") is not None
    b, _ = make_cache()
    start_like_a_node(b)
    assert b.order(ClientOrderId("O:1 {x}%")).to_dict() == odd.to_dict()
    assert b.get("a key: with {odd} %chars") == b"v"


def test_the_specification_config_maps_to_tradecache_options():
    from nautilus_trader.common.config import DatabaseConfig

    config = spec_cache_config(
        7000,
        database=DatabaseConfig(type="redis", host="10.0.0.1", port=7000, username="u", password="p", ssl=True, timeout=2),
    )
    opts = tn.tradecache_options(TraderId("TESTER-001"), "inst-1", config, channel_capacity=1024)
    assert opts == dict(
        host="10.0.0.1",
        port=7000,
        username="u",
        password="p",
        timeout=2,
        ssl=True,
        trader_id="TESTER-001",
        instance_id="inst-1",
        use_trader_prefix=True,
        use_instance_id=False,
        flush_on_start=False,
        persist_account_events=True,
        tick_capacity=10_000,
        bar_capacity=10_000,
        channel_capacity=1024,
    )
    # buffer_interval_ms is a bound tradecache always meets (it sends at
    # once), not a linger; asked for explicitly, it is one.
    assert "buffer_interval_ms" not in opts
    assert tn.tradecache_options("T", None, config, buffer_interval_ms=5)["buffer_interval_ms"] == 5
    with pytest.raises(tradecache.ConfigError):
        tn.tradecache_options("T", None, spec_cache_config(1, database=DatabaseConfig(type="postgres")))


def _stored_event_ids(db, order) -> list:
    """The event ids of `order`'s stored log (its initialization, then
    every event appended), as written by `db`, read back from Redis."""
    id_ = tn.escape_id(order.client_order_id.value)
    init = db.cache.get(tn.COLLECTIONS["orders"], id_)
    return [init["event_id"]] + [e["event_id"] for e in db.cache.get_events(tn.COLLECTIONS["orders"], id_)]


def test_the_emulators_transformed_order_is_written_once(make_db, make_cache, server, nt_trader):
    """The emulator re-adds a released order transformed into a market
    order (Cache.add_order(overwrite=True), its events: the earlier ones,
    then a second OrderInitialized): only that new event is appended, so a
    node start finds every event once and nothing to report (before: the
    OrderEmulated twice, "InvalidStateTrigger EMULATED -> EMULATED")."""
    written = write_their_state(spec_cache_config(server.port), nt_trader, pairs=2, adapter=make_db())
    b, db = make_cache()
    start_like_a_node(b)
    assert db.load_issues() == []
    assert differences(written.cache, b, db) == []
    for order in written.cache.orders():
        assert _stored_event_ids(db, order) == [e.id.value for e in order.events]


def test_each_order_event_is_written_once_whatever_the_cache_calls(make_cache, make_db, nt_trader):
    """Model-based: random sequences of what Nautilus's components make the
    Cache do with orders (a new event then update_order; update_order
    again with no new event; add_order(overwrite=True) of the same order;
    the emulator's transform then add_order(overwrite=True)): the stored log
    is the order's events, each once, and a node start rebuilds every
    order with them and reports nothing; so does a node start from each
    prefix of the writes (what a crash can leave)."""
    rng = random.Random(29)
    a, db = make_cache()
    rec = WriteRecorder(db)
    ts = [1]

    def next_ts() -> int:
        ts[0] += 1
        return ts[0]

    def ids(order) -> dict:
        return dict(trader_id=order.trader_id, strategy_id=order.strategy_id, instrument_id=order.instrument_id,
                    client_order_id=order.client_order_id, event_id=UUID4(), ts_init=next_ts())

    def apply(order, event):
        order.apply(event)
        a.update_order(order)
        return order

    def transform(order):
        released = MarketOrder.transform_py(order, next_ts())
        a.add_order(released, None, ClientId("SIM"), overwrite=True)
        return released

    common = [
        lambda o: apply(o, TestEventStubs.order_submitted(o, ts_event=next_ts())),
        lambda o: apply(o, TestEventStubs.order_accepted(o, venue_order_id=VenueOrderId(f"V-{o.client_order_id}"),
                                                         ts_event=next_ts())),
        lambda o: apply(o, TestEventStubs.order_filled(o, AUDUSD, last_px=AUDUSD.make_price(0.8),
                                                       ts_event=next_ts())),
    ]
    emulated = [
        lambda o: apply(o, OrderEmulated(**ids(o))),
        transform,
        lambda o: apply(o, OrderReleased(**ids(o), released_price=AUDUSD.make_price(0.8))),
    ]
    orders, scripts = [], []
    for n in range(12):
        coid = ClientOrderId(f"O-{n}")
        if n % 3 == 0:
            order = StopMarketOrder(
                trader_id=TraderId("TESTER-000"), strategy_id=TestExecStubs.limit_order().strategy_id,
                instrument_id=AUDUSD.id, client_order_id=coid, order_side=OrderSide.BUY,
                quantity=AUDUSD.make_qty(100_000), trigger_price=AUDUSD.make_price(0.8),
                trigger_type=TriggerType.BID_ASK, init_id=UUID4(), ts_init=next_ts(),
                emulation_trigger=TriggerType.BID_ASK,
            )
            scripts.append(emulated + common)
        else:
            order = TestExecStubs.limit_order(instrument=AUDUSD, client_order_id=coid)
            scripts.append(list(common))
        a.add_order(order, None, ClientId("SIM"))
        orders.append(order)
    for _ in range(200):
        k = rng.randrange(len(orders))
        op = rng.choice(("step", "step", "update", "readd"))
        if op == "step" and scripts[k]:
            orders[k] = scripts[k].pop(0)(orders[k])
        elif op == "update":
            a.update_order(orders[k])
        elif op == "readd":
            a.add_order(orders[k], None, ClientId("SIM"), overwrite=True)
    db.wait(5.0)
    for order in orders:
        assert _stored_event_ids(db, order) == [e.id.value for e in order.events], order
    b, db2 = make_cache()
    start_like_a_node(b)
    assert db2.load_issues() == []
    for order in orders:
        got = b.order(order.client_order_id)
        assert [type(e).__name__ for e in got.events] == [type(e).__name__ for e in order.events]
        assert got.status_string() == order.status_string()
    final = {o.client_order_id.value: o.events for o in orders}
    rec.assert_every_prefix_starts_a_node(make_db, nt_trader, final)


def test_cache_calls_with_nothing_new_write_nothing(make_cache):
    """update_order, update_position and update_account called again with
    no new event, and add_order(overwrite=True) of an order already
    written, append nothing: a node start gets back the same state and
    has nothing to report (before: the last fill twice, "KeyError:
    duplicate trade_id"; the last account state twice)."""
    a, db = make_cache()
    run_workload(a, pairs=2)
    for order in a.orders():
        a.update_order(order)
        a.add_order(order, a.position_id(order.client_order_id), a.client_id(order.client_order_id), overwrite=True)
    for position in a.positions():
        a.update_position(position)
    a.update_account(a.account(ACCOUNT_ID))
    db.wait(5.0)
    b, db2 = make_cache()
    start_like_a_node(b)
    assert db2.load_issues() == []
    assert_same_state(a, b)


def _calls_in_a_forked_child(a, db) -> dict:
    """What a forked child (a multiprocessing worker beside a node) gets
    from the node's Cache and adapter: name -> "Forked" or what happened."""
    order = TestExecStubs.limit_order(instrument=AUDUSD, client_order_id=ClientOrderId("O-child"))
    open_order = a.orders_open()[0]
    calls = {
        "add_order": lambda: a.add_order(order, None, ClientId("SIM")),
        "update_order": lambda: (open_order.apply(TestEventStubs.order_canceled(open_order)),
                                 a.update_order(open_order)),
        "update_position": lambda: a.update_position(a.positions()[0]),
        "update_account": lambda: (a.account(ACCOUNT_ID).apply(account_state(7, 10**6)),
                                   a.update_account(a.account(ACCOUNT_ID))),
        "add": lambda: a.add("k", b"v"),
        "wait": lambda: db.wait(1.0),
        "flush": db.flush,
        "load_orders": db.load_orders,
        "node start": lambda: start_like_a_node(Cache(database=db)),
    }
    out = {}
    for name, call in calls.items():
        try:
            call()
            out[name] = "returned"
        except tradecache.Forked:
            out[name] = "Forked"
        except BaseException as e:  # noqa: BLE001
            out[name] = f"{type(e).__name__}: {e}"
    try:
        db.close()
        out["close"] = f"returned, close_error={db.close_error!r}"
    except BaseException as e:  # noqa: BLE001
        out["close"] = f"{type(e).__name__}: {e}"
    return out


def test_a_forked_child_gets_forked_from_every_call(make_cache):
    """A multiprocessing worker forked beside a node (the 'fork' start
    method) that uses the node's Cache: every write, wait, flush and load
    raises tradecache.Forked (through Nautilus's Cache too), close() returns
    without touching the parent's writer, and the parent goes on: its
    writes after the fork are persisted, none of the child's."""
    a, db = make_cache()
    run_workload(a, pairs=1)
    db.wait(5.0)
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe(duplex=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
        child = ctx.Process(target=lambda: child_end.send(_calls_in_a_forked_child(a, db)))
        child.start()
    assert parent_end.poll(60), "the child reported nothing"
    report = parent_end.recv()
    child.join(60)
    assert child.exitcode == 0
    assert report.pop("close") == "returned, close_error=None"
    assert report == {name: "Forked" for name in report}, report
    run_workload(a, pairs=1, tag="after-")
    db.wait(5.0)
    b, _ = make_cache()
    start_like_a_node(b)
    assert_same_state(a, b)
    assert b.order(ClientOrderId("O-child")) is None
