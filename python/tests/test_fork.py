"""Fork: a child never uses the Cache or Kv it inherited (its connections
and writer thread are the parent's): every call there raises
`tradecache.Forked`, its exit does not wait for a flusher it does not
have, and the parent's reads keep returning their own values. With
os.fork and multiprocessing's 'fork' start method, with Redis paused and
under load."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import warnings

import pytest

import tradecache
from tradecache import kv as tkv

pytestmark = pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")


def child_calls(obj):
    """Every call of an inherited Cache or Kv, for the child to try."""
    if isinstance(obj, tradecache.Cache):
        return {
            "get": lambda: obj.get("p2", "B"),
            "get_events": lambda: obj.get_events("p2", "B"),
            "load": lambda: obj.load(),
            "put": lambda: obj.put("p2", "B", "from the child"),
            "append": lambda: obj.append("p2", "B", "from the child"),
            "delete": lambda: obj.delete("p1", "A"),
            "flush": lambda: obj.flush(1),
            "wait": lambda: obj.wait(1, 1),
            "last_seq": obj.last_seq,
            "acked_seq": obj.acked_seq,
            "health": obj.health,
            "stats": obj.stats,
            "take_dropped": obj.take_dropped,
        }
    return {
        "get": lambda: obj.get("ns", "B"),
        "exists": lambda: obj.exists("ns", "B"),
        "get_many": lambda: obj.get_many("ns", ["A", "B"]),
        "set": lambda: obj.set("ns", "B", "from the child"),
        "set_many": lambda: obj.set_many("ns", {"B": "from the child"}),
        "delete": lambda: obj.delete("ns", "A"),
        "touch": lambda: obj.touch("ns", "A", 5),
        "clear_namespace": lambda: obj.clear_namespace("ns"),
        "flush": lambda: obj.flush(1),
        "wait": lambda: obj.wait(1, 1),
        "health": obj.health,
        "stats": obj.stats,
    }


def try_all(obj) -> dict:
    out = {}
    for name, call in child_calls(obj).items():
        try:
            call()
            out[name] = "returned"
        except tradecache.Forked as e:
            ok = isinstance(e, tradecache.Closed) and str(os.getpid()) in str(e)
            out[name] = "Forked" if ok else f"Forked without the pid: {e}"
        except BaseException as e:  # noqa: BLE001
            out[name] = f"{type(e).__name__}: {e}"
    out["closed"] = obj.closed
    out["close"] = repr(obj.close())
    return out


def in_forked_child(obj) -> dict:
    """Forks; the child tries every call of `obj` and reports; returns the
    report. The child leaves with os._exit (no pytest teardown in it)."""
    r, w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.write(w, json.dumps(try_all(obj)).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def assert_all_forked(report: dict) -> None:
    calls = {k: v for k, v in report.items() if k not in ("closed", "close")}
    assert all(v == "Forked" for v in calls.values()), report
    assert report["closed"] is True and report["close"] == "{}", report


def test_child_refuses_an_inherited_cache_while_redis_is_paused(open_cache, own_server):
    c = open_cache(own_server, timeout=1)
    c.put("p1", "A", "value of A")
    c.put("p2", "B", "value of B")
    assert c.get("p1", "A") == "value of A"  # the read connection is open
    own_server.pause()
    try:
        report = in_forked_child(c)
    finally:
        own_server.resume()
    assert_all_forked(report)
    for _ in range(3):
        assert c.get("p1", "A") == "value of A"
        assert c.get("p2", "B") == "value of B"
    assert c.load(["p1", "p2"]).entities == {"p1": {"A": "value of A"}, "p2": {"B": "value of B"}}
    c.put("p1", "A", "after")
    assert c.get("p1", "A") == "after" and not c.closed
    assert c.close()["unpersisted"] == 0


def test_child_refuses_an_inherited_kv_while_redis_is_paused(open_kv, own_server):
    k = open_kv(own_server, timeout=1)
    k.set("ns", "A", "value of A")
    k.set("ns", "B", "value of B")
    k.flush()
    assert k.get("ns", "A") == "value of A"
    own_server.pause()
    try:
        report = in_forked_child(k)
    finally:
        own_server.resume()
    assert_all_forked(report)
    for _ in range(3):
        assert k.get("ns", "A") == "value of A"
        assert k.get("ns", "B") == "value of B"
    assert k.get_many("ns", ["A", "B"]) == ["value of A", "value of B"]
    assert not k.closed and k.close()["unpersisted"] == 0


# multiprocessing 'fork' workers use the cache they inherited from here.
_INHERITED: dict = {}


def _worker(n: int) -> dict:
    counts: dict = {}
    for _ in range(n):
        for obj in _INHERITED.values():
            for name, call in child_calls(obj).items():
                try:
                    call()
                    outcome = f"{name} returned"
                except tradecache.Forked:
                    outcome = "Forked"
                except BaseException as e:  # noqa: BLE001
                    outcome = f"{name}: {type(e).__name__}"
                counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def test_multiprocessing_fork_workers_under_load(open_cache, open_kv, own_server):
    c = open_cache(own_server)
    k = open_kv(own_server)
    keys = [f"K{i}" for i in range(100)]
    for key in keys:
        c.put("p2", key, f"value of {key}")
        k.set("ns", key, f"value of {key}")
    c.flush()
    k.flush()
    _INHERITED.update(cache=c, kv=k)
    wrong: list = []
    reads = [0]
    stop = threading.Event()

    def reader():
        i = 0
        while not stop.is_set() and i < 20_000:
            key = keys[i % len(keys)]
            got, kgot = c.get("p2", key), k.get("ns", key)
            if got != f"value of {key}" or kgot != f"value of {key}":
                wrong.append((key, got, kgot))
            i += 1
            reads[0] += 1

    threads = [threading.Thread(target=reader) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with multiprocessing.get_context("fork").Pool(2) as pool:
                results = pool.map(_worker, [20] * 8)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        _INHERITED.clear()
    total: dict = {}
    for r in results:
        for key, v in r.items():
            total[key] = total.get(key, 0) + v
    assert set(total) == {"Forked"}, total
    assert reads[0] > 0 and wrong == [], f"{len(wrong)} of {reads[0]} parent reads got another value: {wrong[:5]}"
    c.put("p2", "K0", "after")
    assert c.get("p2", "K0") == "after" and c.close()["unpersisted"] == 0


def test_child_exit_does_not_wait_for_the_parents_flusher(own_server, trader, open_cache):
    """A child that ends normally (interpreter exit, the inherited Cache and
    Kv dropped) neither waits close_timeout (300 s here) for a flusher it
    does not have nor writes anything; the parent goes on."""
    script = textwrap.dedent(
        f"""
        import os, sys, warnings
        import tradecache
        from tradecache import kv
        warnings.simplefilter("ignore", DeprecationWarning)
        c = tradecache.Cache(env=False, url={own_server.url!r}, trader_id={trader!r}, close_timeout_ms=300000)
        k = kv.Kv(env=False, url={own_server.url!r}, key_prefix={trader!r})
        c.put("p", "A", 1)
        k.set("ns", "A", 1)
        c.flush()
        k.flush()
        pid = os.fork()
        if pid == 0:
            for call in (lambda: c.put("p", "B", 2), lambda: k.set("ns", "B", 2)):
                try:
                    call()
                    print("child: accepted", flush=True)
                except tradecache.Forked:
                    print("child: Forked", flush=True)
            sys.exit(0)  # a normal exit: c and k are dropped at finalization
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status), flush=True)
        c.put("p", "C", 3)
        k.set("ns", "C", 3)
        print("parent close", c.close()["unpersisted"], k.close()["unpersisted"], flush=True)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "child: Forked",
        "child: Forked",
        "child exit 0",
        "parent close 0 0",
    ], out.stdout + out.stderr
    snap = open_cache(own_server).load(["p"])
    assert snap["p"] == {"A": 1, "C": 3}
    r = own_server.client()
    assert sorted(r.keys(f"{trader}:ns:*")) == [f"{trader}:ns:A".encode(), f"{trader}:ns:C".encode()]
