"""Every public call x every class of bad argument, generated: each raises
the class python/README.md ("Exceptions") documents for that argument
(never a panic, TypeError, OverflowError or UnicodeEncodeError), and
the good writes made just before and just after each bad call are all in
Redis afterwards, read back with redis-py."""

from __future__ import annotations

import threading
import warnings
from decimal import Decimal

import pytest

import tradecache
from tradecache import ExtType


# ---- values that cannot be stored: factories (a fresh value per call) ----


class RaisingDecimal(Decimal):
    """A Decimal whose str() raises."""

    def __str__(self) -> str:
        raise ValueError("no str for you")


class SurrogateDecimal(Decimal):
    def __str__(self) -> str:
        return "1\ud800"


def growing_dict():
    """A dict that another thread grows while it is packed: its Decimal's
    __str__ releases the GIL (it starts and joins a thread that adds a
    key)."""
    d: dict = {}

    class GrowingDecimal(Decimal):
        def __str__(self) -> str:
            t = threading.Thread(target=lambda: d.__setitem__(f"k{len(d)}", 1))
            t.start()
            t.join()
            return super().__str__()

    d["a"] = GrowingDecimal("1.5")
    d["b"] = 2
    return d


def shrinking_list():
    """A list that loses its last item while it is packed."""
    lst: list = []

    class ShrinkingDecimal(Decimal):
        def __str__(self) -> str:
            lst.pop()
            return super().__str__()

    lst.extend([ShrinkingDecimal("1"), 2, 3])
    return lst


def renaming_dict():
    """A dict whose keys change (same size) while it is packed: stored as
    a whole map of its entries as the walk met them (no panic, no torn
    value), like Python's own iteration of it."""
    d: dict = {}

    class RenamingDecimal(Decimal):
        def __str__(self) -> str:
            if "b" in d:
                del d["b"]
                d["c"] = 3
            return super().__str__()

    d["a"] = RenamingDecimal("1")
    d["b"] = 2
    return d


def cycle():
    a: list = []
    a.append(a)
    return a


BAD_VALUES = {
    "surrogate str": lambda: "\ud800",
    "surrogate dict key": lambda: {"\ud800": 1},
    "surrogate nested": lambda: {"k": ["ok", "x\udfff"]},
    "set": lambda: {1, 2},
    "object": lambda: object(),
    "int 2**64": lambda: 2**64,
    "int below i64": lambda: -(2**63) - 1,
    "ExtType(200)": lambda: ExtType(200, b"x"),
    "ExtType(-129)": lambda: ExtType(-129, b"x"),
    "ExtType(1) (Decimal's code)": lambda: ExtType(1, b"x"),
    "ExtType data not bytes": lambda: ExtType(5, "x"),
    "ExtType code not int": lambda: ExtType("5", b"x"),
    "Decimal whose str raises": lambda: RaisingDecimal("1"),
    "Decimal whose str is a surrogate": lambda: SurrogateDecimal("1"),
    "dict grown by another thread": growing_dict,
    "list shrunk": shrinking_list,
    "cycle": cycle,
}

# ---- the other argument classes: bad value -> documented class ----

NAN, INF = float("nan"), float("inf")

BAD = {
    "collection": (tradecache.UnknownCollection, [1, None, b"orders", "\ud800", "", "a:b", "index", "x" * 300]),
    "id": (tradecache.InvalidId, [1, None, b"x", "\ud800", "a\udfffb", "", "a b", "a:b", "x" * 2000]),
    "name": (tradecache.InvalidId, [1, None, b"x", "\ud800", "", "a b"]),
    "timeout": (tradecache.ConfigError, [-1, -0.5, NAN, INF, -INF, "5", None, [1], 10**400]),
    "seq": (tradecache.ConfigError, [-1, 2**64, 2**70, "1", 1.5, None]),
    "event_id": (tradecache.ConfigError, [-1, 2**64, "1", 1.5, None]),
    "ttl": (tradecache.ConfigError, [-1, NAN, INF, "5", [1]]),
    "flag": (tradecache.ConfigError, ["yes", None, 2, 1.0]),
    "collections": (tradecache.UnknownCollection, ["orders", 5, ["\ud800"], [1], ["index"]]),
    "keys": (tradecache.InvalidId, ["k", 5, ["\ud800"], [1], ["a b"]]),
    "items": (tradecache.Error, [5, [("k",)], [("k", 1, 2)], {"\ud800": 1}, {1: 2}, {"k": {1, 2}}, [("\ud800", 1)]]),
    "data": (tradecache.DecodeError, ["str", 5, None, b"\xd4\x01x", b"\xd4\x02x", b"\xd4\x03x", b"\xc1", b"\x92\x01"]),
}
BAD["value"] = (tradecache.EncodeError, list(BAD_VALUES.values()))
# close(timeout=None) is the configured close_timeout.
BAD["close_timeout"] = (tradecache.ConfigError, [t for t in BAD["timeout"][1] if t is not None])

#: Values that look extreme but are valid (they must be accepted).
EDGE_OK = {
    "timeout": [0, 0.0, 1e20, 1e300, 2**64, True],
}


NAMES = {id(f): f"<{name}>" for name, f in BAD_VALUES.items()}


def materialize(v):
    return v() if callable(v) and not isinstance(v, type) else v


def run_cases(calls, before, after, failures):
    """For each call spec (name, function, {arg: good value}, [arg order]),
    and each argument of a bad class, calls it with that argument bad and
    the others good; `before(i)` / `after(i)` write around each call."""
    i = 0
    for name, fn, good, kinds, *edge in calls:
        for arg, kind in kinds.items():
            cls, bads = BAD[kind]
            for bad in bads:
                args = dict(good)
                args[arg] = materialize(bad)
                before(i)
                label = f"{name}({arg}={NAMES.get(id(bad)) or repr(bad)[:80]})"
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", DeprecationWarning)
                        fn(**args)
                except cls as e:
                    if not isinstance(e, tradecache.Error):
                        failures.append(f"{label}: {type(e).__name__} is not a tradecache.Error")
                except BaseException as e:  # noqa: BLE001 - a panic is a BaseException
                    failures.append(f"{label}: raised {type(e).__module__}.{type(e).__name__}: {e}")
                else:
                    failures.append(f"{label}: raised nothing (want {cls.__name__})")
                after(i)
                i += 1
            for ok in EDGE_OK.get(kind, []) if edge != [False] else []:
                args = dict(good)
                args[arg] = ok
                try:
                    fn(**args)
                except tradecache.WaitTimeout:
                    pass  # a wait that timed out: what a small timeout may do
                except BaseException as e:  # noqa: BLE001
                    failures.append(f"{name}({arg}={ok!r}) (valid): raised {type(e).__name__}: {e}")
    return i


def cache_calls(c):
    def append4(collection, id, event_id, event):
        return c.append(collection, id, event_id, event)

    return [
        ("put", c.put, dict(collection="orders", id="O-1", value={"a": 1}, closed=False, restart=False),
         dict(collection="collection", id="id", value="value", closed="flag", restart="flag")),
        ("append", lambda collection, id, event: c.append(collection, id, event),
         dict(collection="orders", id="O-1", event={"e": 1}),
         dict(collection="collection", id="id", event="value")),
        ("append(event_id)", append4, dict(collection="orders", id="O-1", event_id=7, event={"e": 1}),
         dict(collection="collection", id="id", event_id="event_id", event="value")),
        ("delete", c.delete, dict(collection="orders", id="O-gone"), dict(collection="collection", id="id")),
        ("wait", c.wait, dict(seq=0, timeout=1.0), dict(seq="seq", timeout="timeout")),
        ("flush", c.flush, dict(timeout=5.0), dict(timeout="timeout")),
        ("get", c.get, dict(collection="orders", id="O-1", timeout=5.0),
         dict(collection="collection", id="id", timeout="timeout")),
        ("get_events", c.get_events,
         dict(collection="orders", id="O-1", with_ids=False, timeout=5.0, legacy=False),
         dict(collection="collection", id="id", with_ids="flag", timeout="timeout", legacy="flag")),
        ("load", c.load, dict(collections=["orders"], events=True, timeout=5.0, legacy_events=False),
         dict(collections="collections", events="flag", timeout="timeout", legacy_events="flag")),
        # A refused clear deletes nothing (no valid edge values: they would).
        ("clear", c.clear, dict(timeout=5.0), dict(timeout="timeout"), False),
        # A refused close leaves the cache open (the write after it works).
        ("close", c.close, dict(timeout=None), dict(timeout="close_timeout"), False),
    ]


def test_every_cache_call_with_every_bad_argument(open_cache, server):
    c = open_cache()
    r = server.client()
    failures: list = []
    n = run_cases(
        cache_calls(c),
        lambda i: c.put("intact", f"before-{i}", {"i": i, "d": Decimal(i)}),
        lambda i: c.put("intact", f"after-{i}", {"i": i}),
        failures,
    )
    assert not failures, "\n".join(failures)
    c.flush()
    assert c.take_dropped() == []
    assert c.close(timeout=1e300)["unpersisted"] == 0 and c.closed
    for i in range(n):
        got = r.get(f"{c.key_prefix}:intact:before-{i}")
        assert got is not None and tradecache.unpackb(got) == {"i": i, "d": Decimal(i)}, i
        assert tradecache.unpackb(r.get(f"{c.key_prefix}:intact:after-{i}")) == {"i": i}, i


def kv_calls(k):
    return [
        ("get", k.get, dict(namespace="ns", key="k"), dict(namespace="name", key="name")),
        ("set", k.set, dict(namespace="ns", key="k", value=1, ttl=None),
         dict(namespace="name", key="name", value="value", ttl="ttl")),
        ("delete", k.delete, dict(namespace="ns", key="gone"), dict(namespace="name", key="name")),
        ("exists", k.exists, dict(namespace="ns", key="k"), dict(namespace="name", key="name")),
        ("get_many", k.get_many, dict(namespace="ns", keys=["k"]), dict(namespace="name", keys="keys")),
        ("set_many", k.set_many, dict(namespace="ns", items={"k": 1}, ttl=None),
         dict(namespace="name", items="items", ttl="ttl")),
        ("clear_namespace", k.clear_namespace, dict(namespace="empty"), dict(namespace="name")),
        ("touch", k.touch, dict(namespace="ns", key="k", ttl=None), dict(namespace="name", key="name", ttl="ttl")),
        ("wait", k.wait, dict(seq=0, timeout=1.0), dict(seq="seq", timeout="timeout")),
        ("flush", k.flush, dict(timeout=5.0), dict(timeout="timeout")),
        ("close", k.close, dict(timeout=5.0), dict(timeout="timeout"), False),
    ]


def test_every_kv_call_with_every_bad_argument(open_kv, server):
    k = open_kv()
    r = server.client()
    failures: list = []
    n = run_cases(
        kv_calls(k),
        lambda i: k.set("intact", f"before-{i}", {"i": i, "d": Decimal(i)}, ttl=0),
        lambda i: k.set("intact", f"after-{i}", {"i": i}, ttl=0),
        failures,
    )
    assert not failures, "\n".join(failures)
    k.flush()
    assert k.take_dropped() == []
    assert k.close(timeout=1e300)["unpersisted"] == 0 and k.closed
    for i in range(n):
        got = r.get(f"{open_kv.prefix}:intact:before-{i}")
        assert got is not None and tradecache.unpackb(got[1:]) == {"i": i, "d": Decimal(i)}, i
        assert tradecache.unpackb(r.get(f"{open_kv.prefix}:intact:after-{i}")[1:]) == {"i": i}, i


def test_kv_ttl_beyond_a_duration_is_accepted(open_kv, server):
    k = open_kv()
    k.set("ns", "long", 1, ttl=1e300)
    k.set("ns", "never", 1, ttl=0)
    k.flush()
    assert k.take_dropped() == []
    r = server.client()
    assert r.pttl(f"{open_kv.prefix}:ns:long") > 10 * 365 * 24 * 3600 * 1000
    assert r.pttl(f"{open_kv.prefix}:ns:never") == -1


def test_module_functions_with_every_bad_argument():
    failures: list = []
    run_cases(
        [
            ("packb", tradecache.packb, dict(value=1), dict(value="value")),
            ("Packed", tradecache.Packed, dict(value=1), dict(value="value")),
            ("unpackb", tradecache.unpackb, dict(data=b"\x01"), dict(data="data")),
        ],
        lambda i: None,
        lambda i: None,
        failures,
    )
    assert not failures, "\n".join(failures)


def test_bad_options_are_config_errors(server, trader):
    class BadStr:
        def __str__(self):
            raise RuntimeError("no")

    from tradecache import kv

    cases = [
        (tradecache.Cache, {"trader_id": trader}, "trader_id"),
        (kv.Kv, {"key_prefix": "pyk-bad"}, "url"),
    ]
    for cls, base, field in cases:
        for extra in ({"env": "yes"}, {"\ud800": 1}, {field: BadStr()}, {field: "\ud800"}):
            kwargs = {"url": server.url, **base, **extra}
            if "env" not in extra:
                kwargs["env"] = False
            with pytest.raises(tradecache.ConfigError):
                cls(**kwargs)


def test_refused_writes_on_a_closed_cache_hand_the_value_back(open_cache, open_kv):
    c = open_cache()
    c.close()
    value = {"a": [1, 2]}
    for call, handed in [
        (lambda: c.put("orders", "O-1", value), value),
        (lambda: c.append("orders", "O-1", value), value),
        (lambda: c.delete("orders", "O-1"), "O-1"),
    ]:
        with pytest.raises(tradecache.Closed) as e:
            call()
        assert e.value.value == handed and e.value.kind == "Closed"
    k = open_kv()
    k.close()
    with pytest.raises(tradecache.Closed) as e:
        k.set("ns", "k", value)
    assert e.value.value == value


def test_a_dict_renamed_while_packed_is_stored_whole(open_cache):
    c = open_cache()
    c.put("state", "renamed", renaming_dict())
    got = c.get("state", "renamed")
    assert got == {"a": Decimal("1"), "c": 3}
    assert tradecache.unpackb(tradecache.packb(renaming_dict())) == got
