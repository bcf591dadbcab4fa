"""Switching from Nautilus's own backend loses nothing: a trader's state
written by NautilusTrader 1.221.0's own ``CacheDatabaseAdapter`` (through a
real ``Cache``, into a private redis-server it reaches by host and port) is
read into tradecache's layout by ``tradecache.nautilus.migrate``, once, and
a node's start on ``TradecacheDatabase`` then gets back every order (every
event), position, account (every state), instrument, currency, index,
general entry and saved strategy/actor state the writing Cache held."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import msgpack
import pytest

from nautilus_trader.cache.cache import Cache
from nautilus_trader.config import LoggingConfig, TradingNodeConfig
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.model.identifiers import ClientOrderId, TraderId
from nautilus_trader.live.node import TradingNode
from nautilus_trader.test_kit.stubs.events import TestEventStubs

import tradecache.nautilus as tn
from conftest import free_port
from nt_workload import TEST_OPTIONS, kernel_serializer, nt_trader, spec_cache_config, start_like_a_node  # noqa: F401
from their_backend import STRATEGY_STATE, differences, saved_states, their_adapter, write_their_state
from tradecache.nautilus import MigrationError, TradecacheDatabase, migrate

HERE = os.path.dirname(os.path.abspath(__file__))


def open_db(srv, trader, config, instance_id=None):
    return TradecacheDatabase(TraderId(trader), instance_id or UUID4(), kernel_serializer(config), config,
                              **TEST_OPTIONS)


def node_start(srv, trader, config, instance_id=None):
    """A node's start on tradecache: a fresh adapter and Cache, every load
    of ExecutionEngine.load_cache, build_index, check_integrity."""
    db = open_db(srv, trader, config, instance_id)
    cache = Cache(database=db)
    start_like_a_node(cache)
    return cache, db


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
def test_state_written_by_nautilus_own_backend_is_migrated_whole(server, nt_trader, encoding):
    config = spec_cache_config(server.port, encoding=encoding)
    written = write_their_state(config, nt_trader, pairs=20)
    theirs = their_adapter(nt_trader, config)
    saved = saved_states(theirs)  # what their backend gives a node back
    assert (saved[0] == STRATEGY_STATE) == (encoding == "msgpack")

    report = migrate(nt_trader, config, **TEST_OPTIONS)

    assert not report.already_done and report.issues == []
    assert report.counts["orders"] == written.orders == 41
    assert report.counts["order_events"] == written.events
    assert report.counts["positions"] == len(written.cache.positions()) > 0
    assert report.counts["accounts"] == 1
    assert report.counts["account_events"] == len(written.cache.accounts()[0].events) > 1
    assert report.counts["strategies"] == report.counts["actors"] == report.counts["synthetics"] == 1
    # Nautilus never reads its state snapshots back: left where they are, counted.
    assert report.left["snapshots:orders"] > 0 and report.left["snapshots:positions"] > 0

    cache, db = node_start(server, nt_trader, config)
    try:
        assert differences(written.cache, cache, db, saved) == []
        assert db.load_issues() == []
    finally:
        db.close()

    # Their keys are left as they were: their own adapter still loads the same.
    try:
        assert differences(written.cache, _their_start(theirs), theirs, saved) == []
    finally:
        theirs.close()


def test_a_trading_node_starts_with_the_migrated_state(server, nt_trader):
    """The documented steps: migrate(), then install() and the node as
    configured before (the specification's CacheConfig): its kernel's
    start loads every order, position and account."""
    import nautilus_trader.system.kernel as kernel

    config = spec_cache_config(server.port)
    written = write_their_state(config, nt_trader, pairs=5)
    migrate(nt_trader, config, **TEST_OPTIONS)

    before = kernel.CacheDatabaseAdapter
    tn.install(**TEST_OPTIONS)
    try:
        # A loop of its own: the node's dispose closes its loop.
        node = TradingNode(config=TradingNodeConfig(trader_id=TraderId(nt_trader), cache=config,
                                                    logging=LoggingConfig(log_level="ERROR")),
                           loop=asyncio.new_event_loop())
        try:
            db = tn.adapter_for(nt_trader)
            assert isinstance(db, TradecacheDatabase)
            assert differences(written.cache, node.cache, db) == []
            assert node.cache.check_integrity() and db.load_issues() == []
        finally:
            node.dispose()
    finally:
        kernel.CacheDatabaseAdapter = before
        TradecacheDatabase.install_options = {}


def _their_start(adapter) -> Cache:
    cache = Cache(database=adapter)
    start_like_a_node(cache)
    return cache


def test_a_second_migrate_writes_nothing(server, nt_trader):
    """Once done, migrate() is a no-op: the node's later writes are never
    overwritten by the old layout."""
    config = spec_cache_config(server.port)
    write_their_state(config, nt_trader, pairs=3)
    first = migrate(nt_trader, config, **TEST_OPTIONS)

    cache, db = node_start(server, nt_trader, config)
    order = cache.order(ClientOrderId("O-0"))
    before = order.event_count
    open_order = next(o for o in cache.orders_open())
    open_order.apply(TestEventStubs.order_canceled(open_order))
    cache.update_order(open_order)
    db.close()

    again = migrate(nt_trader, config, **TEST_OPTIONS)
    assert again.already_done and again.counts == first.counts

    cache, db = node_start(server, nt_trader, config)
    try:
        assert cache.order(ClientOrderId("O-0")).event_count == before
        assert cache.order(open_order.client_order_id).status_string() == "CANCELED"
    finally:
        db.close()


def test_migrate_never_fences_a_running_node(server, nt_trader):
    """migrate() called again while the node runs on tradecache (it writes
    nothing then) does not take the node's writer over: the node's next
    writes are accepted and acknowledged."""
    config = spec_cache_config(server.port)
    write_their_state(config, nt_trader, pairs=2)
    migrate(nt_trader, config, **TEST_OPTIONS)
    cache, db = node_start(server, nt_trader, config)
    try:
        assert migrate(nt_trader, config, **TEST_OPTIONS).already_done
        order = next(o for o in cache.orders_open())
        order.apply(TestEventStubs.order_canceled(order))
        cache.update_order(order)
        db.wait(5.0)
        assert db.health().fenced is None
    finally:
        db.close()


def test_a_target_with_a_state_of_its_own_is_refused_unless_overwrite(server, nt_trader):
    config = spec_cache_config(server.port)
    written = write_their_state(config, nt_trader, pairs=2)
    db = open_db(server, nt_trader, config)
    db.add("ran-on-tradecache", b"yes")
    db.close()

    with pytest.raises(MigrationError, match="overwrite=True"):
        migrate(nt_trader, config, **TEST_OPTIONS)

    report = migrate(nt_trader, config, overwrite=True, **TEST_OPTIONS)
    assert report.counts["orders"] == written.orders
    cache, db = node_start(server, nt_trader, config)
    try:
        assert differences(written.cache, cache, db) == []
        assert cache.get("ran-on-tradecache") == b"yes"
    finally:
        db.close()


def test_a_migration_that_stopped_half_way_is_run_again_without_duplicates(server, nt_trader):
    """A migration interrupted after its writes, before its marker said
    done, runs again: each entity is replaced, no event doubled."""
    config = spec_cache_config(server.port)
    written = write_their_state(config, nt_trader, pairs=4)
    migrate(nt_trader, config, **TEST_OPTIONS)
    db = open_db(server, nt_trader, config)
    db.cache.wait(db.cache.put("ntpy-migration", "nautilus", {"state": "started"}))
    db.close()

    report = migrate(nt_trader, config, **TEST_OPTIONS)
    assert not report.already_done and report.counts["order_events"] == written.events

    cache, db = node_start(server, nt_trader, config)
    try:
        assert differences(written.cache, cache, db) == []
    finally:
        db.close()


MIGRATING = r"""
import sys
from nt_workload import TEST_OPTIONS, spec_cache_config
from tradecache.nautilus import migrate

migrate(sys.argv[2], spec_cache_config(int(sys.argv[1])), **TEST_OPTIONS)
"""


def test_a_migration_killed_half_way_is_run_again_without_duplicates(own_server, nt_trader):
    """A process running migrate() SIGKILLed while its writes are landing
    (Redis frozen as soon as the first migrated order is there, so the
    kill cuts the migration wherever it is): run again, it completes, and
    nothing is doubled."""
    config = spec_cache_config(own_server.port)
    written = write_their_state(config, nt_trader, pairs=80)
    r = own_server.client()
    index = f"trader-{nt_trader}:index:ntpy-orders"
    marker = f"trader-{nt_trader}:ntpy-migration:nautilus"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen([sys.executable, "-c", MIGRATING, str(own_server.port), nt_trader], cwd=HERE, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not r.scard(index):
            assert child.poll() is None, child.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no migrated order appeared"
            time.sleep(0.002)
        own_server.pause()
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        own_server.resume()
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)
    assert msgpack.unpackb(r.get(marker))["state"] == "started"
    assert 0 < r.scard(index) <= written.orders

    report = migrate(nt_trader, config, **TEST_OPTIONS)
    assert not report.already_done and report.counts["order_events"] == written.events
    cache, db = node_start(own_server, nt_trader, config)
    try:
        assert differences(written.cache, cache, db) == []
    finally:
        db.close()


def test_a_value_of_theirs_that_does_not_decode_is_reported_and_the_rest_migrated(server, nt_trader):
    config = spec_cache_config(server.port)
    written = write_their_state(config, nt_trader, pairs=3)
    r = server.client()
    r.rpush(f"trader-{nt_trader}:orders:O-BROKEN", b"\xc1 not msgpack")
    r.set(f"trader-{nt_trader}:instruments:BROKEN.SIM", b"\xc1")

    report = migrate(nt_trader, config, **TEST_OPTIONS)
    assert sorted(i.split(":")[0] + ":" + i.split(":")[1] for i in report.issues) == [
        "instruments:BROKEN.SIM", "orders:O-BROKEN entry 0"]
    assert report.counts["orders"] == written.orders
    cache, db = node_start(server, nt_trader, config)
    try:
        assert differences(written.cache, cache, db) == []
    finally:
        db.close()


def test_the_old_layout_on_another_redis(server, own_server, nt_trader):
    """``source=``: their keys on one Redis, tradecache's on another."""
    old = spec_cache_config(own_server.port)
    written = write_their_state(old, nt_trader, pairs=2)
    config = spec_cache_config(server.port)

    report = migrate(nt_trader, config, source=old.database, **TEST_OPTIONS)
    assert report.counts["orders"] == written.orders and report.source == f"trader-{nt_trader}"
    cache, db = node_start(server, nt_trader, config)
    try:
        assert differences(written.cache, cache, db) == []
    finally:
        db.close()


def test_a_state_larger_than_the_channel_is_migrated(server, nt_trader):
    """The migration queues far more writes than tradecache's bounded
    channel holds (here 16; 65,536 by default, against a few writes per
    event of tens of thousands of orders): it waits for Redis instead of
    failing with ``Full``."""
    config = spec_cache_config(server.port)
    written = write_their_state(config, nt_trader, pairs=10)

    report = migrate(nt_trader, config, channel_capacity=16, **TEST_OPTIONS)
    assert report.counts["order_events"] == written.events > 16
    cache, db = node_start(server, nt_trader, config)
    try:
        assert differences(written.cache, cache, db) == []
    finally:
        db.close()


def test_an_instance_of_the_trader_with_use_instance_id(server, nt_trader):
    """``use_instance_id``: the keys of one instance (``trader-T:{uuid}:…``)
    are read, and written under the same instance; another instance's are
    not touched. Nautilus 1.221.0's reader refuses its own index hashes
    there (it looks the index name up in the key with the instance id in
    it), so their node cannot start on this state at all; the migration
    reports them, takes each order's position from its fills, and the
    order -> client ids (only in those hashes) are what is missing."""
    config = spec_cache_config(server.port, use_instance_id=True)
    iid, other = UUID4(), UUID4()
    written = write_their_state(config, nt_trader, pairs=2, adapter=their_adapter(nt_trader, config, iid))
    write_their_state(config, nt_trader, pairs=1, adapter=their_adapter(nt_trader, config, other))
    theirs = their_adapter(nt_trader, config, iid)
    try:
        with pytest.raises(RuntimeError, match="Index unknown"):
            _their_start(theirs)
    finally:
        theirs.close()

    with pytest.raises(ValueError, match="instance_id"):
        migrate(nt_trader, config, **TEST_OPTIONS)
    report = migrate(nt_trader, config, instance_id=iid.value, **TEST_OPTIONS)
    assert report.source == f"trader-{nt_trader}:{iid.value}" and report.counts["orders"] == written.orders
    assert [i.split(":")[0] + ":" + i.split(":")[1] for i in report.issues] == [
        "index:order_position", "index:order_client"]
    cache, db = node_start(server, nt_trader, config, iid)
    try:
        assert [d.split(":")[0] for d in differences(written.cache, cache, db)] == ["order -> client"]
    finally:
        db.close()
    cache, db = node_start(server, nt_trader, config, other)
    try:
        assert cache.orders() == []
    finally:
        db.close()


UNREACHABLE = r"""
import sys
from nt_workload import TEST_OPTIONS, spec_cache_config
from tradecache.nautilus import migrate

try:
    migrate("DOWN-001", spec_cache_config(int(sys.argv[1])), timeout=5, **TEST_OPTIONS)
except Exception as e:
    print(type(e).__name__, e)
"""


def test_a_redis_that_is_down_fails_the_migration_instead_of_hanging():
    """Nautilus's reader, left to its Rust defaults (100 attempts, backoff
    up to 1,000 s), waits for hours for a Redis that is down; migrate()
    bounds it and raises (the call runs in a process of its own, bounded
    at 60 s)."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", UNREACHABLE, str(port)], cwd=HERE, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.startswith("RuntimeError") and "refused" in out.stdout, out.stdout + out.stderr[-2000:]
