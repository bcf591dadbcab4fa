"""tradecache.Cache: every method, bad input, the exception hierarchy."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

import tradecache
from tradecache import Cache

VALUE = {
    "id": "O-1",
    "px": Decimal("18950.25"),
    "qty": Decimal("-0.00100"),
    "ts": dt.datetime(2026, 12, 2, 6, 30, 1, 123456, tzinfo=dt.timezone.utc),
    "local": dt.datetime(2026, 12, 2, 8, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    "naive": dt.datetime(2026, 1, 1, 0, 0),
    "day": dt.date(2026, 12, 2),
    "tags": ["a", "b"],
    "n": -42,
    "big": 2**64 - 1,
    "f": 0.1,
    "raw": b"\x00\xff",
    "ok": True,
    "none": None,
    "nested": {"x": [1, {"y": [None, 1.5]}], 7: "int key"},
}


def test_put_get_round_trip_every_type(open_cache):
    c = open_cache()
    seq = c.put("orders", "O-1", VALUE)
    assert seq >= 1
    back = c.get("orders", "O-1")  # read-your-writes, no flush
    assert back == VALUE
    assert type(back["px"]) is Decimal and str(back["px"]) == "18950.25"
    assert str(back["qty"]) == "-0.00100"
    assert back["ts"].tzinfo is not None and back["naive"].tzinfo is None
    assert back["local"].utcoffset() == dt.timedelta(hours=2)
    assert type(back["day"]) is dt.date
    assert type(back["raw"]) is bytes and type(back["ok"]) is bool


def test_clear_deletes_this_caches_keys_only(open_cache, server, trader):
    c = open_cache()
    other = open_cache(trader_id=trader + "-other")
    c.put("orders", "O-1", {"a": 1})
    c.append("orders", "O-1", "ev")
    seq_before = c.put("positions", "P-1", {"q": 1})
    other.put("orders", "O-1", {"b": 2})
    r = server.client()
    r.set(f"{trader}-not-a-cache-key", b"x")
    assert c.clear() >= 3  # value, log, index sets
    assert c.acked_seq() > seq_before  # in order with the writes
    assert c.get("orders", "O-1") is None and c.get_events("orders", "O-1") == []
    assert c.load().entities == {}
    c.put("orders", "O-2", {"after": True})  # writes after it are kept
    assert c.get("orders", "O-2") == {"after": True}
    assert other.get("orders", "O-1") == {"b": 2}
    assert r.get(f"{trader}-not-a-cache-key") == b"x"
    r.delete(f"{trader}-not-a-cache-key")
    with pytest.raises(tradecache.ConfigError):
        open_cache(use_trader_prefix=False).clear()


def test_tuple_is_read_back_as_list(open_cache):
    c = open_cache()
    c.put("state", "s", {"t": (1, 2)})
    assert c.get("state", "s") == {"t": [1, 2]}


def test_get_missing_is_none(open_cache):
    c = open_cache()
    assert c.get("positions", "nope") is None
    assert c.get_events("orders", "nope") == []


def test_put_overwrites(open_cache):
    c = open_cache()
    c.put("positions", "P-1", {"q": 1})
    c.put("positions", "P-1", {"q": 2})
    assert c.get("positions", "P-1") == {"q": 2}


def test_append_and_get_events(open_cache):
    c = open_cache()
    c.put("orders", "O-2", {"status": "new"})
    for i in range(1, 6):
        c.append("orders", "O-2", {"n": i, "px": Decimal(f"{i}.5")})
    evs = c.get_events("orders", "O-2")
    assert evs == [{"n": i, "px": Decimal(f"{i}.5")} for i in range(1, 6)]
    pairs = c.get_events("orders", "O-2", with_ids=True)
    assert pairs == [(None, e) for e in evs]


def test_events_are_kept_as_appended(open_cache):
    # Exactly once: every append is in the log once, repeats included.
    c = open_cache()
    c.append("orders", "O-3", "a")
    c.append("orders", "O-3", "a")
    c.append("orders", "O-3", [1, "b"])  # a pair is an event like any other
    assert c.get_events("orders", "O-3") == ["a", "a", [1, "b"]]
    assert "O-3" not in c.load().events.get("orders", {})  # no value: not in the index


def test_append_with_an_event_id_is_deprecated(open_cache):
    c = open_cache()
    with pytest.warns(DeprecationWarning, match="event_id is no longer stored"):
        c.append("orders", "O-5", 7, {"e": 7})
    assert c.get_events("orders", "O-5") == [{"e": 7}]
    with pytest.raises(TypeError):
        c.append("orders", "O-5")
    with pytest.raises(TypeError):
        c.append("orders", "O-5", 1, 2, 3)


def test_any_collection_name_and_closed_entities(open_cache, server):
    c = open_cache()
    names = ["widgets", "my.bots-2", "a" * 256, "Strategy_State"]
    for n in names:
        c.put(n, "x", {"n": n})
        c.append(n, "x", 1)
    c.put("widgets", "done", 1, closed=True)
    snap = c.load()
    for n in names:
        assert snap[n] == {"x": {"n": n}} or n == "widgets"
        assert snap.events[n]["x"] == [1]
    assert snap["widgets"] == {"x": {"n": "widgets"}, "done": 1}
    r = server.client()
    assert {m.decode() for m in r.smembers(f"{c.key_prefix}:index:widgets:open")} == {"x"}
    assert [m.decode() for m in r.zrange(f"{c.key_prefix}:index:widgets:closed", 0, -1)] == ["done"]
    assert c.load(collections=["widgets"]).entities.keys() == {"widgets"}


def test_delete(open_cache):
    c = open_cache()
    c.put("orders", "O-4", {"x": 1})
    c.append("orders", "O-4", {"e": 1})
    c.delete("orders", "O-4")
    assert c.get("orders", "O-4") is None
    assert c.get_events("orders", "O-4") == []
    c.flush()
    assert "O-4" not in c.load()["orders"]


def test_put_with_restart_starts_the_log_again_in_one_write(open_cache, server):
    c = open_cache()
    c.put("positions", "P-9", {"v": 1})
    c.append("positions", "P-9", {"fill": 1})
    c.flush()
    before = c.last_seq()
    seq = c.put("positions", "P-9", {"v": 2}, True, restart=True)
    assert seq == before + 1  # one write: no crash keeps the delete alone
    c.append("positions", "P-9", {"fill": 2})
    assert c.get("positions", "P-9") == {"v": 2}
    assert c.get_events("positions", "P-9") == [{"fill": 2}]
    c.flush()
    r = server.client()
    assert [m.decode() for m in r.zrange(f"{c.key_prefix}:index:positions:closed", 0, -1)] == ["P-9"]
    with pytest.raises(tradecache.ConfigError):
        c.put("positions", "P-9", 1, restart="yes")


def test_wait_flush_and_seqs(open_cache):
    c = open_cache()
    assert c.last_seq() == 0
    s1 = c.put("positions", "P-1", 1)
    s2 = c.put("positions", "P-2", 2)
    assert s2 > s1 and c.last_seq() == s2
    c.wait(s1, timeout=5)
    assert c.acked_seq() >= s1
    c.flush(timeout=5)
    assert c.acked_seq() == s2


def test_load(open_cache):
    c = open_cache()
    for i in range(250):
        c.put("orders", f"O-{i:04}", {"i": i, "px": Decimal(i) / 4})
        c.append("orders", f"O-{i:04}", {"ev": i})
    c.put("positions", "P-1", {"q": Decimal("1.5")})
    c.put("custom", "cfg", [1, 2, 3])
    snap = c.load()
    assert isinstance(snap, tradecache.Snapshot)
    assert len(snap["orders"]) == 250
    assert snap["orders"]["O-0007"] == {"i": 7, "px": Decimal(7) / 4}
    assert snap.events["orders"]["O-0007"] == [{"ev": 7}]
    assert snap["positions"] == {"P-1": {"q": Decimal("1.5")}}
    assert snap["custom"] == {"cfg": [1, 2, 3]}
    assert snap.report["consistent"] is True
    assert snap.report["issues"] == []
    assert "orders" in snap and "nothing" not in snap and snap["nothing"] == {}
    assert "orders: 250" in repr(snap)
    only = c.load(collections=["positions"], events=False)
    assert list(only.entities) == ["positions"] and only.events == {}


def test_health_and_stats(open_cache):
    c = open_cache()
    c.put("positions", "P-1", 1)
    c.flush()
    h = c.health()
    assert isinstance(h, tradecache.Health)
    assert h.connected and h.flusher_running and h.healthy and h.fenced is None
    assert "Health(connected=True" in repr(h)
    s = c.stats()
    assert isinstance(s, tradecache.Stats)
    assert s.accepted >= 1 and s.acked >= 1 and s.batches >= 1
    assert "Stats(accepted=" in repr(s)
    assert "tradecache.Cache trader-" in repr(c)


def test_close_context_manager_and_closed(open_cache, server, trader):
    with Cache(env=False, url=server.url, trader_id=trader) as c:
        c.put("positions", "P-1", {"q": 1})
    assert c.closed
    assert "closed" in repr(c)
    with pytest.raises(tradecache.Closed):
        c.put("positions", "P-1", {"q": 2})
    with pytest.raises(tradecache.Closed):
        c.flush()
    assert c.close() == {}  # twice: a no-op
    c2 = open_cache()
    assert c2.get("positions", "P-1") == {"q": 1}  # close flushed


def test_close_reports(open_cache):
    c = open_cache()
    c.put("positions", "P-1", 1)
    r = c.close(timeout=5)
    assert r["unpersisted"] == 0 and r["acked_seq"] >= 1


def test_options_from_environment(server, trader, monkeypatch):
    monkeypatch.setenv("REDIS_URL", server.url)
    monkeypatch.setenv("CACHE_TRADER_ID", trader)
    with Cache() as c:
        assert c.key_prefix == f"trader-{trader}"
        c.put("state", "s", 1)
    # keyword arguments win over the environment
    with Cache(trader_id=trader + "X") as c:
        assert c.key_prefix == f"trader-{trader}X"
    with Cache(env=True, CACHE_USE_INSTANCE_ID=True, instance_id="i1") as c:
        assert c.key_prefix == f"trader-{trader}:i1"


def test_take_dropped_and_dropped_error(open_cache):
    c = open_cache(max_value_bytes=64)
    c.put("state", "big", "x" * 500)
    with pytest.raises(tradecache.Dropped) as e:
        c.flush()
    assert e.value.count == 1 and e.value.first["key"].endswith("state:big")
    assert isinstance(e.value, tradecache.Error) and e.value.kind == "TooLarge"
    dropped = c.take_dropped()
    assert len(dropped) == 1 and dropped[0]["class"] == "too_large"
    assert c.get("state", "big") is None


# ---- bad input raises the right exception ----


@pytest.mark.parametrize("bad", ["", "a:b", "a b", "{x}", "tab\t", "x" * 2000])
def test_invalid_id(open_cache, bad):
    c = open_cache()
    with pytest.raises(tradecache.InvalidId) as e:
        c.put("orders", bad, {})
    assert isinstance(e.value, ValueError) and e.value.kind == "InvalidId"
    with pytest.raises(tradecache.InvalidId):
        c.get("orders", bad)
    with pytest.raises(tradecache.InvalidId):
        c.append("orders", bad, {})
    with pytest.raises(tradecache.InvalidId):
        c.delete("orders", bad)


def test_bad_collection_names(open_cache):
    c = open_cache()
    for bad in ["", "index", "writer", "stream", "heartbeat", "quotes", "a:b", "{t}", "a b", "café", "x" * 257]:
        with pytest.raises(tradecache.UnknownCollection) as e:
            c.put(bad, "w", 1)
        assert isinstance(e.value, tradecache.ConfigError) and "collection" in str(e.value), bad
        with pytest.raises(tradecache.ConfigError):
            c.get(bad, "x")
        with pytest.raises(tradecache.ConfigError):
            c.append(bad, "x", 1)
        with pytest.raises(tradecache.ConfigError):
            c.delete(bad, "x")
        with pytest.raises(tradecache.ConfigError):
            c.load(collections=[bad])


@pytest.mark.parametrize(
    "bad",
    [{1, 2}, object(), 2**64, -(2**63) - 1, {"k": frozenset()}, complex(1, 2)],
    ids=["set", "object", "2**64", "below-i64", "nested-frozenset", "complex"],
)
def test_unencodable_values(open_cache, bad):
    c = open_cache()
    with pytest.raises(tradecache.EncodeError) as e:
        c.put("state", "s", bad)
    assert isinstance(e.value, TypeError) and isinstance(e.value, tradecache.CodecError)
    with pytest.raises(tradecache.EncodeError):
        c.append("state", "s", bad)


def test_cycle_is_refused(open_cache):
    c = open_cache()
    a: list = []
    a.append(a)
    with pytest.raises(tradecache.EncodeError):
        c.put("state", "s", a)


def test_bad_options(server):
    with pytest.raises(tradecache.ConfigError) as e:
        Cache(env=False, url=server.url, no_such_option=1)
    assert "no_such_option" in str(e.value)
    with pytest.raises(tradecache.ConfigError) as e:
        Cache(env=False, url=server.url, channel_capacity="lots", trader_id="a:b")
    assert len(e.value.problems) == 2 and isinstance(e.value, ValueError)
    with pytest.raises(tradecache.ConfigError):
        Cache(env=False, url=server.url, encoding="json")


def test_bad_timeout(open_cache):
    c = open_cache()
    with pytest.raises(tradecache.ConfigError):
        c.flush(timeout=-1)
    with pytest.raises(tradecache.ConfigError):
        c.wait(1, timeout=float("nan"))


def test_bad_argument_types(open_cache):
    # The class of the argument, never TypeError / OverflowError
    # (test_bad_input.py has them all).
    c = open_cache()
    with pytest.raises(tradecache.UnknownCollection):
        c.put(1, "x", {})
    with pytest.raises(tradecache.InvalidId):
        c.put("orders", 1, {})
    with pytest.raises(tradecache.ConfigError):
        c.append("orders", "O-1", -1, {})


def test_connection_refused():
    from conftest import free_port

    with pytest.raises(tradecache.ConnectionRefused) as e:
        Cache(env=False, url=f"redis://127.0.0.1:{free_port()}/0", connect_attempts=1)
    assert isinstance(e.value, ConnectionError)


def test_wait_timeout_and_full_while_redis_is_paused(open_cache, own_server):
    c = open_cache(own_server, channel_capacity=4, max_pending_snapshots=4, timeout=5)
    c.put("positions", "P-0", 0)
    c.flush()
    own_server.pause()
    try:
        seq = c.put("positions", "P-1", 1)
        with pytest.raises(tradecache.WaitTimeout) as e:
            c.wait(seq, timeout=0.2)
        assert isinstance(e.value, TimeoutError) and e.value.timeout == pytest.approx(0.2)
        full = None
        for i in range(1_000_000):
            try:
                c.put("positions", f"P-{i}", {"i": i})
            except tradecache.Full as err:
                full = err
                break
        assert full is not None, "the channel never filled"
        assert full.value == {"i": i} and full.kind == "Full"
        assert c.stats().rejected >= 1
    finally:
        own_server.resume()
    c.flush(timeout=30)
    assert c.get("positions", "P-1") is not None


def test_fenced_by_a_newer_writer(open_cache):
    old = open_cache()
    old.put("positions", "P-1", "old")
    old.flush()
    new = open_cache()
    fenced = None
    for i in range(10_000):
        try:
            old.put("positions", "P-1", i)
            old.flush(timeout=5)
        except tradecache.Fenced as e:
            fenced = e
            break
    assert fenced is not None and fenced.kind == "Fenced"
    assert old.health().fenced is not None
    new.put("positions", "P-1", "new")
    assert new.get("positions", "P-1") == "new"


def test_exception_hierarchy():
    for name in [
        "ConfigError", "InvalidId", "ConnectionRefused", "Timeout", "WaitTimeout", "AuthError", "TlsError",
        "IoError", "ServerError", "CodecError", "EncodeError", "DecodeError", "TooLarge", "Closed", "Unpersisted",
        "DiscoveryError", "Fenced", "Unavailable", "Full", "Dropped", "NotSupported", "UnknownCollection",
    ]:
        assert issubclass(getattr(tradecache, name), tradecache.Error), name
    assert issubclass(tradecache.Error, Exception)


def test_a_packed_value_is_stored_byte_for_byte(open_cache, server):
    """tradecache.Packed(value) packs once: put and append store its bytes
    as they are, the same bytes as the value itself, closed or not; a
    value that cannot be packed raises EncodeError at Packed(); a Packed
    refused by a full channel is handed back as it is."""
    c = open_cache()
    p = tradecache.Packed(VALUE)
    assert bytes(p) == tradecache.packb(VALUE) and len(p) == len(bytes(p))
    assert tradecache.Packed(p) is not p and bytes(tradecache.Packed(p)) == bytes(p)
    c.put("orders", "plain", VALUE)
    c.put("orders", "packed", p)
    c.put("orders", "closed", p, closed=True)
    c.append("orders", "packed", p)
    c.append("orders", "packed", VALUE)
    c.flush()
    r = server.client()
    raw = {k: r.get(f"{c.key_prefix}:orders:{k}") for k in ("plain", "packed", "closed")}
    assert raw == {k: tradecache.packb(VALUE) for k in raw}
    assert r.lrange(f"{c.key_prefix}:orders:packed:events", 0, -1) == [tradecache.packb(VALUE)] * 2
    assert {m.decode() for m in r.smembers(f"{c.key_prefix}:index:orders:open")} == {"plain", "packed"}
    assert [m.decode() for m in r.zrange(f"{c.key_prefix}:index:orders:closed", 0, -1)] == ["closed"]
    assert c.get("orders", "packed") == VALUE
    with pytest.raises(tradecache.EncodeError):
        tradecache.Packed(object())
    with pytest.raises(tradecache.EncodeError):
        c.put("orders", "nested", {"p": p})  # only a whole value


def test_a_packed_value_refused_is_handed_back(open_cache, own_server):
    c = open_cache(own_server, channel_capacity=4, max_pending_snapshots=4, timeout=5)
    p = tradecache.Packed({"i": 1})
    own_server.pause()
    try:
        with pytest.raises(tradecache.Full) as e:
            for i in range(1_000_000):
                c.put("positions", f"P-{i}", p)
        assert e.value.value is p
    finally:
        own_server.resume()
    c.flush(timeout=30)
    assert c.get("positions", "P-0") == {"i": 1}


def test_packb_unpackb_and_ext_type():
    v = {"d": Decimal("NaN"), "x": tradecache.ExtType(42, b"abc")}
    back = tradecache.unpackb(tradecache.packb(v))
    assert back["d"].is_nan() and back["x"] == tradecache.ExtType(42, b"abc")
    with pytest.raises(tradecache.DecodeError):
        tradecache.unpackb(b"\x92\x01")  # truncated
    with pytest.raises(tradecache.DecodeError):
        tradecache.unpackb(b"\x01\x02")  # trailing bytes


def test_block_overflow_waits_then_hands_the_value_back(open_cache, own_server):
    c = open_cache(own_server, channel_capacity=2, max_pending_snapshots=4, overflow="block", block_timeout_ms=20, timeout=5)
    c.put("positions", "P-0", 0)
    c.flush()
    own_server.pause()
    try:
        full = None
        for i in range(100_000):
            try:
                c.put("positions", f"P-{i}", {"i": i})
            except tradecache.Full as err:
                full = err
                break
        assert full is not None and full.value == {"i": i}
    finally:
        own_server.resume()
    c.flush(timeout=30)


def test_waiting_calls_release_the_gil(open_cache, own_server):
    import threading

    c = open_cache(own_server, timeout=0.5)
    c.put("positions", "P-0", 0)
    c.flush()
    own_server.pause()
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(1)

    t = threading.Thread(target=spin)
    try:
        seq = c.put("positions", "P-1", 1)
        t.start()
        before = len(ticks)
        with pytest.raises(tradecache.WaitTimeout):
            c.wait(seq, timeout=0.3)
        during_wait = len(ticks) - before
        before = len(ticks)
        with pytest.raises(tradecache.WaitTimeout):
            c.get("positions", "P-1", timeout=0.3)
        during_get = len(ticks) - before
    finally:
        stop.set()
        own_server.resume()
        if t.is_alive():
            t.join()
    # the other thread ran while this one waited (it could not hold the GIL)
    assert during_wait > 0 and during_get > 0
    c.flush(timeout=30)


def test_close_while_another_thread_waits(open_cache, own_server):
    """A close waiting for a thread blocked in wait() (GIL released) must not
    stop a third thread that holds the GIL (no deadlock)."""
    import threading

    c = open_cache(own_server, timeout=0.5)
    c.put("positions", "P-0", 0)
    c.flush()
    own_server.pause()
    seq = c.put("positions", "P-1", 1)
    outcome = []
    in_wait = threading.Event()

    def waiter():
        in_wait.set()
        try:
            c.wait(seq, timeout=0.5)
        except tradecache.Error as e:
            outcome.append(type(e).__name__)

    def closer():
        try:
            c.close(timeout=0.5)
            outcome.append("closed")
        except tradecache.Error as e:
            outcome.append(type(e).__name__)

    w = threading.Thread(target=waiter, daemon=True)
    k = threading.Thread(target=closer, daemon=True)
    try:
        w.start()
        in_wait.wait()
        k.start()
        while k.is_alive():
            try:
                c.last_seq()  # takes the lock with the GIL held
            except tradecache.Closed:
                break
        w.join(30)
        k.join(30)
        assert not w.is_alive() and not k.is_alive(), "deadlock"
    finally:
        own_server.resume()
    assert "WaitTimeout" in outcome and c.closed


def test_load_leaves_the_garbage_collector_as_it_found_it(open_cache, own_server):
    import gc

    c = open_cache(own_server)
    for i in range(50):
        c.put("orders", f"O-{i}", {"i": i})
        c.append("orders", f"O-{i}", {"e": i})
    c.flush()
    assert gc.isenabled()
    snap = c.load()
    assert len(snap["orders"]) == 50 and gc.isenabled()
    gc.disable()
    try:
        assert len(c.load()["orders"]) == 50
        assert not gc.isenabled(), "a collector the application turned off stays off"
    finally:
        gc.enable()
    # A load that fails once the pause began turns it back on too.
    own_server.kill()
    with pytest.raises(tradecache.Error):
        c.load(timeout=0.5)
    assert gc.isenabled()


def test_a_cache_dropped_without_close_lets_other_threads_run(own_server, trader):
    """The core's drop flushes for up to close_timeout; the bindings release
    the GIL meanwhile: here another thread runs while the cache is being
    dropped (it resumes the paused Redis, and the drop's flush lands the
    write). Holding the GIL, the drop would end (after close_timeout)
    before that thread could run."""
    import threading
    import weakref

    c = Cache(env=False, url=own_server.url, trader_id=trader, close_timeout_ms=20000, timeout=1,
              reconnect_backoff_min_ms=10, reconnect_backoff_max_ms=100)
    c.put("positions", "P-0", 0)
    c.flush()
    own_server.pause()
    c.put("positions", "P-1", "pending")
    dropping = threading.Event()
    weakref.finalize(c, dropping.set)
    state: dict = {}

    def resumer():
        dropping.wait()
        state["ran during the drop"] = "drop returned" not in state
        own_server.resume()

    t = threading.Thread(target=resumer)
    t.start()
    try:
        del c  # the last reference: dropped here, without close()
        state["drop returned"] = True  # no switch of threads before this
    finally:
        own_server.resume()
        t.join()
    assert state["ran during the drop"] is True
    got = own_server.client().get(f"trader-{trader}:positions:P-1")
    assert got is not None and tradecache.unpackb(got) == "pending"


def _flusher_threads() -> set:
    """The native ids of this process's flusher threads."""
    import os

    out = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().startswith("tradecache-flus"):
                    out.add(int(tid))
        except OSError:
            pass
    return out


def _new_flushers(before: set) -> set:
    """The flusher threads not in `before`, once there is one (a new
    thread names itself once it runs; 5 s at most)."""
    import time

    deadline = time.monotonic() + 5
    while not (_flusher_threads() - before) and time.monotonic() < deadline:
        time.sleep(0.01)
    return _flusher_threads() - before


def _can_run_as_batch() -> bool:
    """Whether this system lets a thread switch itself to SCHED_BATCH (and
    back): Linux, no sandbox refusing it."""
    import os
    import threading

    if not hasattr(os, "SCHED_BATCH") or not os.path.isdir("/proc/self/task"):
        return False
    ok: list = []

    def probe():
        try:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return bool(ok)


@pytest.mark.skipif(not _can_run_as_batch(), reason="needs Linux's SCHED_BATCH (os.sched_setscheduler)")
def test_the_flusher_runs_as_a_background_thread_and_the_caller_keeps_its_policy(open_cache, server, trader):
    """The flusher never preempts the thread that writes when it wakes up
    (SCHED_BATCH, inherited while the cache opens); the thread that opened
    the cache gets its own policy back, and one not under the default
    policy is left as it is (its flusher too)."""
    import os
    import threading

    before = _flusher_threads()
    mine = os.sched_getscheduler(0)
    assert mine == os.SCHED_OTHER
    c = open_cache()
    flushers = _new_flushers(before)
    assert len(flushers) == 1
    assert [os.sched_getscheduler(t) for t in flushers] == [os.SCHED_BATCH]
    assert os.sched_getscheduler(0) == mine
    c.put("orders", "O-1", {"a": 1})
    assert c.get("orders", "O-1") == {"a": 1}

    # A cache that fails to open gives the caller its policy back too.
    from conftest import free_port

    with pytest.raises(tradecache.ConnectionRefused):
        Cache(env=False, url=f"redis://127.0.0.1:{free_port()}/0", connect_attempts=1)
    assert os.sched_getscheduler(0) == mine

    # A caller that chose another policy keeps it, and so does its flusher.
    got: dict = {}

    def idle_caller():
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        seen = _flusher_threads()
        other = Cache(env=False, url=server.url, trader_id=trader + "-idle")
        try:
            got["flushers"] = [os.sched_getscheduler(t) for t in _new_flushers(seen)]
            got["caller"] = os.sched_getscheduler(0)
        finally:
            other.close()

    t = threading.Thread(target=idle_caller)
    t.start()
    t.join()
    assert got == {"flushers": [os.SCHED_IDLE], "caller": os.SCHED_IDLE}


def test_a_write_made_while_a_value_is_packed_is_stored_too(open_cache):
    """Packing a value may run Python code (a Decimal subclass's __str__)
    that writes to the cache on the same thread: both writes are stored
    whole (the thread's packing buffer is in use by the outer one)."""
    c = open_cache()

    class Noisy(Decimal):
        def __str__(self) -> str:
            c.put("orders", "O-inner", {"inner": ["x" * 300, 1]})
            return super().__str__()

    outer = {"px": Noisy("1.5"), "pad": "y" * 500, "n": list(range(40))}
    c.put("orders", "O-outer", outer)
    assert c.get("orders", "O-inner") == {"inner": ["x" * 300, 1]}
    assert c.get("orders", "O-outer") == {"px": Decimal("1.5"), "pad": "y" * 500, "n": list(range(40))}
    big = {"blob": b"z" * 200_000}  # beyond what the buffer keeps
    c.put("orders", "O-big", big)
    c.put("orders", "O-small", {"s": 1})
    assert c.get("orders", "O-big") == big and c.get("orders", "O-small") == {"s": 1}
