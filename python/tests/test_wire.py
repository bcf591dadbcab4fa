"""The wire format: what the bindings store is read back byte-identical by
redis-py + msgpack (the contract other clients of the same Redis rely on).

- ``{trader}:{collection}:{id}``: ``msgpack.packb(value)``
- ``{trader}:{collection}:{id}:events``: one ``packb([event_id, event])`` per entry
- ``{trader}:index:{collection}``: a set of the ids
- kv ``{key_prefix}:{namespace}:{key}``: a header byte ``0xa0``, then ``packb(value)``
- ``Decimal`` / ``datetime`` / ``date``: ext 1 / 2 / 3 with ``str()`` / ``isoformat()`` text
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import msgpack

import tradecache


def default(o):
    if isinstance(o, Decimal):
        return msgpack.ExtType(1, str(o).encode())
    if isinstance(o, dt.datetime):
        return msgpack.ExtType(2, o.isoformat().encode())
    if isinstance(o, dt.date):
        return msgpack.ExtType(3, o.isoformat().encode())
    raise TypeError(type(o))


def ext_hook(code, data):
    if code == 1:
        return Decimal(data.decode())
    if code == 2:
        return dt.datetime.fromisoformat(data.decode())
    if code == 3:
        return dt.date.fromisoformat(data.decode())
    return msgpack.ExtType(code, data)


def pack(v) -> bytes:
    return msgpack.packb(v, default=default, use_bin_type=True)


def unpack(b: bytes):
    return msgpack.unpackb(b, ext_hook=ext_hook, raw=False, strict_map_key=False)


VALUES = [
    None,
    True,
    False,
    0,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2**32,
    2**63,
    2**64 - 1,
    -1,
    -32,
    -33,
    -128,
    -129,
    -(2**31),
    -(2**63),
    0.0,
    -1.5,
    1e300,
    float("inf"),
    "",
    "é",
    "x" * 31,
    "x" * 32,
    "x" * 255,
    "x" * 256,
    "x" * 70000,
    b"",
    b"\x00" * 300,
    [],
    list(range(16)),
    list(range(70000)),
    {},
    {str(i): i for i in range(16)},
    {"px": Decimal("18950.25"), "qty": Decimal("-1E-8"), "inf": Decimal("Infinity")},
    {"ts": dt.datetime(2026, 12, 2, 6, 30, 1, 123456, tzinfo=dt.timezone.utc), "d": dt.date(1999, 12, 31)},
    {"naive": dt.datetime(2026, 1, 1), "off": dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5)))},
    {"nested": [{"a": [1, [2, [3, {"b": None}]]]}], 1: "int key", "t": [True, b"\x01"]},
]


def test_snapshots_byte_identical(open_cache, server):
    c = open_cache()
    for i, v in enumerate(VALUES):
        c.put("state", f"v{i}", v)
    c.flush()
    r = server.client()
    prefix = c.key_prefix
    for i, v in enumerate(VALUES):
        raw = r.get(f"{prefix}:state:v{i}")
        assert raw == pack(v), f"value {i}: {v!r:.80}"
        assert unpack(raw) == v
        # and the bindings' own codec agrees
        assert tradecache.packb(v) == raw
    ids = {m.decode() for m in r.smembers(f"{prefix}:index:state")}
    assert ids == {f"v{i}" for i in range(len(VALUES))}


def test_events_byte_identical(open_cache, server):
    c = open_cache()
    evs = [(1, {"kind": "Submitted"}), (2, {"kind": "Filled", "px": Decimal("1.25")}), (2**40, "x"), (200, None)]
    for eid, ev in evs:
        c.append("orders", "O-1", ev)
    c.flush()
    raw = server.client().lrange(f"{c.key_prefix}:orders:O-1:events", 0, -1)
    assert raw == [pack(ev) for _, ev in evs]


def test_values_written_by_redis_py_are_read(open_cache, server):
    c = open_cache()
    v = {"from": "redis-py", "px": Decimal("3.14"), "l": [1, 2]}
    r = server.client()
    r.set(f"{c.key_prefix}:custom:ext", pack(v))
    r.sadd(f"{c.key_prefix}:index:custom", "ext")
    r.rpush(f"{c.key_prefix}:custom:ext:events", pack({"e": "a"}), pack("b"))
    assert c.get("custom", "ext") == v
    assert c.get_events("custom", "ext") == [{"e": "a"}, "b"]
    snap = c.load(["custom"])
    assert snap["custom"]["ext"] == v and snap.events["custom"]["ext"] == [{"e": "a"}, "b"]
    # A load of every collection reads the registry of collections
    # (`{prefix}:index:`): a collection created by another client is found
    # once that client adds its name, as the key layout asks.
    assert "custom" not in c.load()
    r.sadd(f"{c.key_prefix}:index:", "custom")
    snap = c.load()
    assert snap["custom"]["ext"] == v and snap.events["custom"]["ext"] == [{"e": "a"}, "b"]


def test_old_format_events_are_read_with_legacy(open_cache, server):
    # Before events were stored as themselves, an entry was [event_id, event].
    c = open_cache()
    r = server.client()
    r.set(f"{c.key_prefix}:custom:old", pack(1))
    r.sadd(f"{c.key_prefix}:index:custom", "old")
    r.sadd(f"{c.key_prefix}:index:", "custom")
    r.rpush(f"{c.key_prefix}:custom:old:events", pack([1, "a"]), pack([1, "again"]), pack([2, "b"]))
    assert c.get_events("custom", "old") == [[1, "a"], [1, "again"], [2, "b"]]
    assert c.get_events("custom", "old", legacy=True) == ["a", "b"]
    assert c.get_events("custom", "old", with_ids=True, legacy=True) == [(1, "a"), (2, "b")]
    assert c.load(legacy_events=True).events["custom"]["old"] == ["a", "b"]


def test_undecodable_values_are_reported_by_load(open_cache, server):
    c = open_cache()
    c.put("custom", "good", 1)
    c.flush()
    r = server.client()
    r.set(f"{c.key_prefix}:custom:bad", b"\xc1")
    r.sadd(f"{c.key_prefix}:index:custom", "bad")
    snap = c.load()
    assert snap["custom"] == {"good": 1}
    assert [k for k, _ in snap.report["issues"]] == [f"{c.key_prefix}:custom:bad"]
    import pytest

    with pytest.raises(tradecache.DecodeError):
        c.get("custom", "bad")


def test_kv_values_byte_identical(open_kv, server):
    kv = open_kv()
    vals = {"a": {"bid": Decimal("189.50"), "ts": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}, "b": [1, "x", None]}
    for k, v in vals.items():
        kv.set("market_data", k, v)
    kv.flush()
    r = server.client()
    for k, v in vals.items():
        raw = r.get(f"{open_kv.prefix}:market_data:{k}")
        assert raw[0] == 0xA0, "kv header byte: MessagePack, not compressed"
        assert raw[1:] == pack(v)
        assert unpack(raw[1:]) == v


def test_event_entries_of_other_writers_are_read_whole(open_cache, server):
    c = open_cache()
    r = server.client()
    key = f"{c.key_prefix}:orders:RUST-1:events"
    rust_like = {"e": 1, "o": "RUST-1", "te": 5, "k": "Canceled"}
    r.rpush(key, pack(rust_like), pack([2, "ours"]))
    assert c.get_events("orders", "RUST-1") == [rust_like, [2, "ours"]]
    assert c.get_events("orders", "RUST-1", legacy=True) == [rust_like, "ours"]
    assert c.get_events("orders", "RUST-1", with_ids=True, legacy=True) == [(None, rust_like), (2, "ours")]
