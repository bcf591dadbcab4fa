"""Faults under a NautilusTrader node on tradecache, each counted by an
independent read of Redis (redis-py + msgpack, not tradecache: each stored entry against the
``to_dict()`` of every event the writing ``Cache`` holds): the
adapter's connections killed every 200 ms during a workload, a node process
SIGKILLed after its wait for acknowledgement returned, Redis SIGKILLed and
restarted from its AOF (``appendfsync always``). Every write goes through a
real Nautilus ``Cache`` (``nt_workload.run_workload``: orders submitted,
accepted, filled in two parts; positions opened and closed; one account
state per fill) on ``TradecacheDatabase`` with the specification's
``CacheConfig`` (``buffer_interval_ms=100``)."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading

import msgpack
import redis

from nautilus_trader.cache.cache import Cache
from nautilus_trader.cache.config import CacheConfig
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.model.identifiers import ClientOrderId, PositionId, TradeId, TraderId
from nautilus_trader.test_kit.stubs.events import TestEventStubs
from nautilus_trader.test_kit.stubs.execution import TestExecStubs

from nt_workload import (  # noqa: F401 - make_cache, make_db, nt_trader: fixtures
    AUDUSD,
    TEST_OPTIONS,
    WriteRecorder,
    kernel_serializer,
    make_cache,
    make_db,
    nt_trader,
    run_workload,
    spec_cache_config,
    start_like_a_node,
)
from tradecache.nautilus import COLLECTIONS, TradecacheDatabase, escape_id

HERE = os.path.dirname(os.path.abspath(__file__))


def open_db(srv, trader, config):
    return TradecacheDatabase(TraderId(trader), UUID4(), kernel_serializer(config), config, **TEST_OPTIONS)


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def stored_logs(r: redis.Redis, prefix: str, collection: str, ident: str) -> list:
    """What Redis holds for one entity, read without tradecache: its
    value, then every entry of its event log; each a MessagePack map, the
    event's ``to_dict()`` (the adapter's layout with the specification's
    ``encoding="msgpack"``), in a canonical text form."""
    key = f"{prefix}:{COLLECTIONS[collection]}:{escape_id(ident)}"
    head = r.get(key)
    entries = ([] if head is None else [head]) + r.lrange(key + ":events", 0, -1)
    return [_canonical(msgpack.unpackb(e, raw=False)) for e in entries]


def lost_and_duplicated(r: redis.Redis, prefix: str, cache: Cache) -> tuple:
    """(written, lost, duplicated, out of order) over every event of every
    order, position and account the writing ``cache`` holds, against an
    independent read of Redis."""
    written = lost = duplicated = disordered = 0
    entities = [("orders", o.client_order_id.value, o.events) for o in cache.orders()]
    entities += [("positions", p.id.value, p.events) for p in cache.positions()]
    entities += [("accounts", a.id.value, a.events) for a in cache.accounts()]
    for collection, ident, events in entities:
        want = [_canonical(type(e).to_dict(e)) for e in events]
        got = stored_logs(r, prefix, collection, ident)
        written += len(want)
        lost += sum((collections.Counter(want) - collections.Counter(got)).values())
        duplicated += sum((collections.Counter(got) - collections.Counter(want)).values())
        disordered += got != want and sorted(got) == sorted(want)
    return written, lost, duplicated, disordered


def test_connections_killed_every_200ms_lose_and_duplicate_nothing(own_server, nt_trader):
    config = spec_cache_config(own_server.port)
    db = open_db(own_server, nt_trader, config)
    cache = Cache(database=db)
    kills = 0
    stop = threading.Event()

    def killer():
        nonlocal kills
        r = own_server.client()
        while not stop.wait(0.2):
            # Every normal client but this one: the flusher's and the read connection.
            r.client_kill_filter(_type="normal", skipme=True)
            kills += 1

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        rounds = 0
        while kills < 10 and rounds < 400:
            run_workload(cache, pairs=10, tag=f"r{rounds}-")
            rounds += 1
    finally:
        stop.set()
        t.join(5)
    db.wait(30)
    assert kills >= 10, "the workload ended before ten kills"
    assert db.stats().reconnects > 0 and db.take_dropped() == []

    written, lost, duplicated, disordered = lost_and_duplicated(own_server.client(), db.cache.key_prefix, cache)
    assert written >= rounds * 10 * 2 * 5
    assert (lost, duplicated, disordered) == (0, 0, 0), f"of {written} events"
    db.close()


CHILD = r"""
import sys
from nautilus_trader.cache.cache import Cache
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.model.identifiers import ClientOrderId, PositionId, TraderId
from nt_workload import TEST_OPTIONS, kernel_serializer, run_workload, spec_cache_config
from tradecache.nautilus import TradecacheDatabase

port, trader = int(sys.argv[1]), sys.argv[2]
config = spec_cache_config(port)
db = TradecacheDatabase(TraderId(trader), UUID4(), kernel_serializer(config), config, **TEST_OPTIONS)
cache = Cache(database=db)
for k in range(1000):
    run_workload(cache, pairs=3, tag=f"c{k}-")
    db.wait(30)
    print(k, flush=True)  # round k is acknowledged: every write of it is in Redis
"""


def test_a_node_killed_after_its_wait_returned_keeps_everything_acknowledged(own_server, nt_trader):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(own_server.port), nt_trader], cwd=HERE, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acked = []
    watchdog = threading.Timer(120, child.kill)  # bounds the test if the node hangs
    watchdog.start()
    try:
        for line in child.stdout:
            acked.append(int(line))
            if len(acked) == 5:
                break
    finally:
        watchdog.cancel()
        child.send_signal(signal.SIGKILL)
        _, err = child.communicate(timeout=30)
    assert len(acked) == 5, f"the node stopped early:\n{err[-3000:]}"

    config = spec_cache_config(own_server.port)
    db = open_db(own_server, nt_trader, config)
    cache = Cache(database=db)
    start_like_a_node(cache)
    try:
        for k in acked:
            for i in range(3):
                for side in ("BUY", "SELL"):
                    order = _order(cache, f"O-c{k}-{i}-{side}")
                    assert order is not None and order.status_string() == "FILLED", (k, i, side)
                    assert order.event_count == 5
                assert _position(cache, f"P-c{k}-{i}").is_closed
            assert _order(cache, f"O-c{k}-open").status_string() == "ACCEPTED"
            assert _order(cache, f"O-c{k}-canceled").status_string() == "CANCELED"
        # The same, read without tradecache: every acknowledged order's
        # initialization and its four events, and nothing doubled anywhere,
        # whatever the kill cut.
        r = own_server.client()
        for k in acked:
            for i in range(3):
                for side in ("BUY", "SELL"):
                    stored = stored_logs(r, db.cache.key_prefix, "orders", f"O-c{k}-{i}-{side}")
                    assert [json.loads(e)["type"] for e in stored] == [
                        "OrderInitialized", "OrderSubmitted", "OrderAccepted", "OrderFilled", "OrderFilled"]
        for key in r.scan_iter(f"{db.cache.key_prefix}:*:events"):
            entries = r.lrange(key, 0, -1)
            assert len(entries) == len(set(entries)), key
        assert db.load_issues() == []
    finally:
        db.close()


def test_a_node_starts_from_every_prefix_of_the_adapters_writes(make_cache, make_db, nt_trader):
    """A crash keeps a prefix of what the adapter wrote (batches are
    sequence prefixes), cut anywhere. Each prefix of a workload's writes,
    replayed alone into Redis, is a state a node starts from: its
    integrity check holds, nothing is reported unreadable, and every order
    and position loaded holds a prefix of its events (a position reopened
    by a fill after it was flat: of its events before or after; an order
    or position purged: of its events before). (The
    Cache indexes an order's position before it adds the order: a pair
    written first and cut from its order failed the check.)"""
    writer, db = make_cache()
    rec = WriteRecorder(db)
    run_workload(writer, pairs=2)
    position = writer.position(PositionId("P-0"))
    assert position.is_closed
    earlier = position.events
    buy = TestExecStubs.limit_order(instrument=AUDUSD, client_order_id=ClientOrderId("O-reopen"))
    writer.add_order(buy, position_id=position.id)
    position.apply(TestEventStubs.order_filled(buy, AUDUSD, position_id=position.id, trade_id=TradeId("E-reopen"),
                                               last_px=AUDUSD.make_price(0.7), ts_event=10**15))
    writer.update_position(position)  # its events start again: written anew
    # A closed position and its orders purged from the database.
    purged = {o.client_order_id.value: o.events for o in writer.orders() if o.client_order_id.value.startswith("O-1-")}
    purged["P-1"] = writer.position(PositionId("P-1")).events
    for coid in ("O-1-BUY", "O-1-SELL"):
        writer.purge_order(ClientOrderId(coid), purge_from_database=True)
    writer.purge_position(PositionId("P-1"), purge_from_database=True)
    db.wait(5.0)
    final = {o.client_order_id.value: o.events for o in writer.orders()}
    final.update({p.id.value: p.events for p in writer.positions()})
    final.update(purged)
    assert len(final["P-0"]) == 1
    assert len(rec.calls) > 50
    rec.assert_every_prefix_starts_a_node(make_db, nt_trader, final, {"P-0": earlier})


def test_an_account_without_its_event_log_starts_a_node_from_every_prefix(make_db, nt_trader, server):
    """An adapter configured with ``persist_account_events=False`` replaces
    the stored account state with each new one. Every prefix of its writes
    holds the account (in a state it had), never none: a delete then a put,
    cut between the two, left it absent. (A Nautilus 1.221 ``Cache`` calls
    the database's account methods only with ``persist_account_events``
    on, so the ``Cache`` here has it on; the facade is called the same.)"""
    db = make_db(config=spec_cache_config(server.port, persist_account_events=False))
    writer = Cache(database=db, config=CacheConfig(persist_account_events=True))
    rec = WriteRecorder(db)
    run_workload(writer, pairs=2)
    db.wait(5.0)
    final = {o.client_order_id.value: o.events for o in writer.orders()}
    final.update({p.id.value: p.events for p in writer.positions()})
    assert [n for n, a in rec.calls if a[0] == COLLECTIONS["accounts"]].count("put") > 1
    rec.assert_every_prefix_starts_a_node(make_db, nt_trader, final)


def _order(cache, coid):
    return cache.order(ClientOrderId(coid))


def _position(cache, pid):
    return cache.position(PositionId(pid))


def test_redis_killed_and_restarted_from_its_aof_loses_nothing(own_server, nt_trader):
    """Redis (``appendfsync always``) SIGKILLed with writes in flight and
    restarted from its AOF: the writes acknowledged before, and the ones
    made while it was down, are all there, once."""
    assert own_server.fsync == "always"
    config = spec_cache_config(own_server.port)
    db = open_db(own_server, nt_trader, config)
    cache = Cache(database=db)
    for k in range(3):
        run_workload(cache, pairs=10, tag=f"before{k}-")
    db.wait(30)
    run_workload(cache, pairs=10, tag="in-flight-")
    own_server.kill()
    for k in range(2):
        run_workload(cache, pairs=10, tag=f"down{k}-")  # queued: no I/O on the calling thread
    own_server.start()  # same port and directory: loads the AOF
    db.wait(30)
    assert db.stats().reconnects > 0 and db.take_dropped() == []

    written, lost, duplicated, disordered = lost_and_duplicated(own_server.client(), db.cache.key_prefix, cache)
    assert written >= 6 * 10 * 2 * 5
    assert (lost, duplicated, disordered) == (0, 0, 0), f"of {written} events"
    db.close()

    # And a node's start gets all of it back.
    db = open_db(own_server, nt_trader, config)
    again = Cache(database=db)
    start_like_a_node(again)
    try:
        assert len(again.orders()) == len(cache.orders())
        assert len(again.positions_closed()) == len(cache.positions_closed())
    finally:
        db.close()
