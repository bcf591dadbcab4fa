"""tradecache.nautilus: an order or a position that closes leaves
tradecache's open index by a put of the value its first write stored,
kept packed (``tradecache.Packed``) while it is open rather than packed
again. What is stored, the open and closed indexes and what a node start
loads are what they were when the close packed the first event again."""

from __future__ import annotations

import pytest

from nautilus_trader.model.currencies import AUD, USD
from nautilus_trader.model.enums import OmsType, OrderSide
from nautilus_trader.model.events import OrderFilled, OrderInitialized
from nautilus_trader.model.identifiers import ClientOrderId, PositionId, TradeId, VenueOrderId
from nautilus_trader.model.position import Position
from nautilus_trader.test_kit.stubs.events import TestEventStubs
from nautilus_trader.test_kit.stubs.execution import TestExecStubs

import tradecache
import tradecache.nautilus as tn
from nt_workload import (  # noqa: F401 - fixtures
    ACCOUNT_ID,
    AUDUSD,
    assert_same_state,
    make_cache,
    make_db,
    nt_trader,
    run_workload,
    start_like_a_node,
)

_ORDERS = tn.COLLECTIONS["orders"]
_POSITIONS = tn.COLLECTIONS["positions"]


def _stored(r, db, coll: str) -> dict:
    """Every value of ``coll`` in Redis, by id, and its open and closed
    index sets, read with redis-py."""
    prefix = db.cache.key_prefix
    head = f"{prefix}:{coll}:"
    values = {
        k.decode()[len(head):]: r.get(k)
        for k in r.scan_iter(match=f"{head}*")
        if not k.decode().endswith(":events")
    }
    opened = {m.decode() for m in r.smembers(f"{prefix}:index:{coll}:open")}
    closed = {m.decode() for m in r.zrange(f"{prefix}:index:{coll}:closed", 0, -1)}
    return dict(values=values, open=opened, closed=closed)


def _packed(event) -> bytes:
    """``event`` as the facade stores it: its ``to_dict``, packed."""
    return tradecache.packb(type(event).to_dict(event))


def _expect_orders(cache) -> dict:
    """What the orders' values and indexes must be: each order's
    OrderInitialized packed (as the close packed it before), open and
    closed as the order is."""
    return dict(
        values={tn.escape_id(o.client_order_id.value): _packed(o.init_event) for o in cache.orders()},
        open={tn.escape_id(o.client_order_id.value) for o in cache.orders() if not o.is_closed},
        closed={tn.escape_id(o.client_order_id.value) for o in cache.orders() if o.is_closed},
    )


def _expect_positions(cache) -> dict:
    return dict(
        values={tn.escape_id(p.id.value): _packed(p.events[0]) for p in cache.positions()},
        open={tn.escape_id(p.id.value) for p in cache.positions() if not p.is_closed},
        closed={tn.escape_id(p.id.value) for p in cache.positions() if p.is_closed},
    )


def _open_position(cache, tag: str) -> Position:
    """An order filled into a new position left open."""
    order = TestExecStubs.limit_order(
        instrument=AUDUSD, order_side=OrderSide.BUY, client_order_id=ClientOrderId(f"O-{tag}")
    )
    pid = PositionId(f"P-{tag}")
    cache.add_order(order, position_id=pid)
    order.apply(TestEventStubs.order_submitted(order, account_id=ACCOUNT_ID))
    cache.update_order(order)
    order.apply(TestEventStubs.order_accepted(order, account_id=ACCOUNT_ID, venue_order_id=VenueOrderId(f"V-{tag}")))
    cache.update_order(order)
    fill = TestEventStubs.order_filled(
        order, AUDUSD, account_id=ACCOUNT_ID, position_id=pid, trade_id=TradeId(f"E-{tag}"),
        last_px=AUDUSD.make_price(0.7),
    )
    order.apply(fill)
    cache.update_order(order)
    position = Position(AUDUSD, fill)
    cache.add_position(position, OmsType.HEDGING)
    return position


def test_closed_orders_and_positions_restart_as_written(make_cache, server):
    """Orders filled and canceled, positions opened and closed, one order
    and one position left open: each stored value is its first event packed,
    byte for byte; the open and closed indexes hold the open and the closed
    ids; a node start gets back exactly what the writer holds."""
    a, db = make_cache()
    run_workload(a, pairs=3)
    _open_position(a, "held")
    db.wait(5.0)
    r = server.client()
    assert _stored(r, db, _ORDERS) == _expect_orders(a)
    assert _stored(r, db, _POSITIONS) == _expect_positions(a)
    assert len(_expect_orders(a)["closed"]) == 3 * 2 + 2 and len(_expect_positions(a)["closed"]) == 3
    # The node that starts is a newer writer of this trader: it fences `db`,
    # which writes nothing more.
    b, db2 = make_cache()
    start_like_a_node(b)
    assert db2.load_issues() == []
    assert_same_state(a, b)


def test_only_open_entities_keep_their_first_value_and_delete_drops_it(make_cache):
    """The packed first values kept (for the close) are the open orders' and
    the open position's only, and delete_* drops them."""
    a, db = make_cache()
    run_workload(a, pairs=3)
    held = _open_position(a, "held")
    assert set(db._order_first) == {o.client_order_id.value for o in a.orders_open()}
    assert set(db._position_first) == {held.id.value}
    for o in a.orders_open():
        db.delete_order(o.client_order_id)
    db.delete_position(held.id)
    assert db._order_first == {} and db._position_first == {}
    db.wait(5.0)


def test_a_close_does_not_convert_the_first_event_again(make_cache):
    """Each event is converted (``to_dict``) once per place it is stored:
    an OrderInitialized once (the order's value), a fill twice (the order's
    log, and the position's value or log). Before: the close of an order
    converted its OrderInitialized again, the close of a position its
    opening fill."""
    a, db = make_cache()
    converted: dict = {}

    def counting(to):
        def count(event):
            converted[id(event)] = converted.get(id(event), 0) + 1
            return to(event)

        return count

    for cls in (OrderInitialized, OrderFilled):
        db._to[cls] = counting(db._to[cls])
    run_workload(a, pairs=3)
    inits = {id(o.init_event) for o in a.orders()}  # (the test kit's orders share event ids)
    fills = {id(e) for p in a.positions() for e in p.events}
    assert {k: n for k, n in converted.items() if k in inits} == {k: 1 for k in inits}
    assert {k: n for k, n in converted.items() if k in fills} == {k: 2 for k in fills}
    assert len(inits) == 3 * 2 + 2 and len(fills) == 3 * 2 * 2


def _fill_the_channel(db) -> None:
    """Redis paused: filler writes until the channel refuses one."""
    with pytest.raises(tradecache.Full):
        for i in range(5_000):
            db.cache.put("ntpy-filler", f"f-{i}", i)


def test_an_order_whose_first_put_was_refused_closes_as_written(make_cache, own_server, server):
    """Redis frozen, the channel full: add_order's put of the order is
    refused (Full). Once Redis answers, the order's updates write it whole
    (its value, then every event, then the position pair the Cache indexed
    before it, held until the order is written) and its fill closes it: its
    value is its OrderInitialized packed, it is in the closed index only,
    and a node start gets it back with every event and its position."""
    small = dict(channel_capacity=8, max_pending_events=16, max_pending_snapshots=16)
    a, db = make_cache(srv=own_server, **small)
    for write in (lambda: a.add_currency(AUD), lambda: a.add_currency(USD), lambda: a.add_instrument(AUDUSD)):
        write()
        db.wait(5.0)
    own_server.pause()
    try:
        # The flusher may take one more write off the channel meanwhile:
        # then that order is accepted and another one tried.
        for attempt in range(50):
            coid = "O-refused" if attempt == 0 else f"O-refused-{attempt}"
            order = TestExecStubs.limit_order(instrument=AUDUSD, client_order_id=ClientOrderId(coid))
            _fill_the_channel(db)
            try:
                a.add_order(order, position_id=PositionId(f"P-{coid}"))
            except tradecache.Full:
                break
        else:
            pytest.fail("add_order was never refused")
    finally:
        own_server.resume()
    db.wait(20.0)
    assert db._order_first.get(coid) is None
    assert coid in db._held_positions  # not written without its order
    for event in (
        lambda: TestEventStubs.order_submitted(order, account_id=ACCOUNT_ID),
        lambda: TestEventStubs.order_accepted(order, account_id=ACCOUNT_ID, venue_order_id=VenueOrderId(f"V-{coid}")),
        lambda: TestEventStubs.order_filled(order, AUDUSD, account_id=ACCOUNT_ID, last_px=AUDUSD.make_price(0.7)),
    ):
        order.apply(event())
        a.update_order(order)
        db.wait(5.0)
    assert order.is_closed
    r = own_server.client()
    stored = _stored(r, db, _ORDERS)
    assert stored["values"][coid] == _packed(order.init_event)
    assert coid in stored["closed"] and coid not in stored["open"]
    assert stored == _expect_orders(a)
    assert db._order_first.get(coid) is None
    b, db2 = make_cache(srv=own_server)
    start_like_a_node(b)
    assert db2.load_issues() == []
    assert [e.id for e in b.order(order.client_order_id).events] == [e.id for e in order.events]
    assert b.position_id(order.client_order_id) == PositionId(f"P-{coid}")
    assert_same_state(a, b)


def test_an_order_and_a_position_closed_after_flush_are_written_whole(make_cache, server):
    """flush() deletes this trader's keys and forgets what was kept: an
    order and a position open at the flush are written whole by their
    closing update (the order's OrderInitialized and every event; the
    position's opening fill and its later fills) and land in the closed
    index; a node start gets them back."""
    a, db = make_cache()
    run_workload(a, pairs=1)
    position = _open_position(a, "flushed")
    order = a.orders_open()[0]
    db.wait(5.0)
    db.flush()
    assert db._order_first == {} and db._position_first == {}
    a.add_currency(AUD)
    a.add_currency(USD)
    a.add_instrument(AUDUSD)
    order.apply(TestEventStubs.order_filled(order, AUDUSD, account_id=ACCOUNT_ID, last_px=AUDUSD.make_price(0.7)))
    a.update_order(order)
    closing = TestExecStubs.limit_order(
        instrument=AUDUSD, order_side=OrderSide.SELL, client_order_id=ClientOrderId("O-flushed-close")
    )
    fill = TestEventStubs.order_filled(
        closing, AUDUSD, account_id=ACCOUNT_ID, position_id=position.id, trade_id=TradeId("E-flushed-close"),
        last_px=AUDUSD.make_price(0.71),
    )
    position.apply(fill)
    a.update_position(position)
    assert order.is_closed and position.is_closed
    db.wait(5.0)
    r = server.client()
    orders, positions = _stored(r, db, _ORDERS), _stored(r, db, _POSITIONS)
    oid, pid = tn.escape_id(order.client_order_id.value), tn.escape_id(position.id.value)
    assert orders == dict(values={oid: _packed(order.init_event)}, open=set(), closed={oid})
    assert positions == dict(values={pid: _packed(position.events[0])}, open=set(), closed={pid})
    assert db._order_first == {} and db._position_first == {}
    b, db2 = make_cache()
    b.cache_currencies()
    b.cache_instruments()
    b.cache_orders()
    b.cache_positions()
    assert db2.load_issues() == []
    assert [e.id for e in b.order(order.client_order_id).events] == [e.id for e in order.events]
    got = b.position(position.id)
    assert [e.trade_id for e in got.events] == [e.trade_id for e in position.events]
    assert got.is_closed


def test_an_order_added_already_closed_is_in_the_closed_index(make_cache, server):
    """An order that reaches add_order already closed (one rebuilt filled
    from a venue's report, say): its value is its OrderInitialized packed,
    it is in tradecache's closed index and not the open one (so a purge of
    closed orders reaches it and a read of the open ones leaves it out),
    nothing is kept for it, and a node start gets it back with every
    event. (Before: it stayed in the open index.)"""
    a, db = make_cache()
    a.add_currency(AUD)
    a.add_currency(USD)
    a.add_instrument(AUDUSD)
    order = TestExecStubs.limit_order(instrument=AUDUSD, client_order_id=ClientOrderId("O-closed-at-add"))
    order.apply(TestEventStubs.order_submitted(order, account_id=ACCOUNT_ID))
    order.apply(TestEventStubs.order_accepted(order, account_id=ACCOUNT_ID, venue_order_id=VenueOrderId("V-1")))
    order.apply(TestEventStubs.order_filled(order, AUDUSD, account_id=ACCOUNT_ID, last_px=AUDUSD.make_price(0.7)))
    assert order.is_closed
    a.add_order(order)
    db.wait(5.0)
    oid = tn.escape_id(order.client_order_id.value)
    stored = _stored(server.client(), db, _ORDERS)
    assert stored == dict(values={oid: _packed(order.init_event)}, open=set(), closed={oid})
    assert db._order_first == {}
    b, db2 = make_cache()
    b.cache_currencies()
    b.cache_instruments()
    b.cache_orders()
    assert db2.load_issues() == []
    got = b.order(order.client_order_id)
    assert got.is_closed
    assert [e.id for e in got.events] == [e.id for e in order.events]
