"""The Python bench: tradecache against redis-py, side by side, in one run,
on one private redis-server (AOF on, appendfsync everysec).

- calling-thread cost of Cache.put / Kv.set (p50, p99) against redis-py
  SET (msgpack-encoded value, one round trip per call) and a redis-py
  pipeline flushed every 100 ms (the flush's cost lands on the call that
  triggers it), all paced at 20,000 calls/s (20 a millisecond) except the
  plain SET;
- Kv.get served from the near cache against redis-py GET (+ unpackb);
- Cache.load() of 100,000 orders with one event each against redis-py
  reading the same keys (SMEMBERS, then pipelines of one MGET and one
  LRANGE per id per 1,000 ids, msgpack-decoded).

Prints a table and writes target/bench/python.json.
    scripts/python-test --bench      (make bench-python)
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import uuid
from decimal import Decimal

import msgpack
import redis

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from conftest import RedisServer  # noqa: E402

import tradecache  # noqa: E402
from tradecache import kv as tkv  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "target", "bench", "python.json")
RATE = 20_000  # calls/s for the paced loops
ns = time.perf_counter_ns


def position(i: int) -> dict:
    return {
        "id": f"P-{i}",
        "i": "BTCUSDT-PERP.BINANCE",
        "a": "BINANCE-001",
        "s": "Long",
        "q": 1.5,
        "po": 18950.25,
        "pnl": -12.5,
        "to": 1_764_000_000_000_000_000 + i,
        "tl": 1_764_000_000_000_000_000 + i,
    }


def default(o):
    if isinstance(o, Decimal):
        return msgpack.ExtType(1, str(o).encode())
    raise TypeError(type(o))


def pack(v) -> bytes:
    return msgpack.packb(v, default=default, use_bin_type=True)


def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p))]


def summary(samples):
    return {"p50_ns": pct(samples, 0.50), "p99_ns": pct(samples, 0.99), "p999_ns": pct(samples, 0.999), "n": len(samples)}


def paced(n, call):
    """Times each call, paced at RATE: bursts of RATE/1000 calls, one burst
    per millisecond, sleeping in between (as an engine reacting to market
    data does; a spinning loop on a shared machine gets preempted inside
    the calls it times)."""
    out = []
    burst = max(1, RATE // 1000)
    nxt = ns()
    i = 0
    while i < n:
        for _ in range(min(burst, n - i)):
            t0 = ns()
            call(i)
            out.append(ns() - t0)
            i += 1
        nxt += 1_000_000
        delay = nxt - ns()
        if delay > 0:
            time.sleep(delay / 1e9)
    return out


def main() -> None:
    server = RedisServer(fsync="everysec")
    try:
        run(server)
    finally:
        server.close()


def run(server: RedisServer) -> None:
    r = redis.Redis(host="127.0.0.1", port=server.port)
    trader = "BENCH-" + uuid.uuid4().hex[:6]
    values = [position(i) for i in range(1000)]
    ids = [f"P-{i}" for i in range(1000)]
    rkeys = [f"rp:{trader}:positions:P-{i}" for i in range(1000)]
    pkeys = [f"rpp:{trader}:positions:P-{i}" for i in range(1000)]
    report: dict = {
        "python": platform.python_version(),
        "redis_py": redis.__version__,
        "rate": RATE,
        "loadavg_before": os.getloadavg(),
    }

    # --- put ---
    cache = tradecache.Cache(env=False, url=server.url, trader_id=trader)
    paced(5_000, lambda i: cache.put("positions", ids[i % 1000], values[i % 1000]))  # warm up
    cache.flush(30)
    put = paced(40_000, lambda i: cache.put("positions", ids[i % 1000], values[i % 1000]))
    cache.flush(30)
    report["put"] = summary(put)

    # --- kv.set ---
    kv = tkv.Kv(env=False, url=server.url, key_prefix="bench-" + uuid.uuid4().hex[:6], near_capacity=10_000)
    paced(5_000, lambda i: kv.set("portfolio", ids[i % 1000], values[i % 1000]))
    kv.flush(30)
    kset = paced(40_000, lambda i: kv.set("portfolio", ids[i % 1000], values[i % 1000]))
    kv.flush(30)
    report["kv_set"] = summary(kset)

    # --- redis-py SET, one round trip per call ---
    def rset(i):
        r.set(rkeys[i % 1000], pack(values[i % 1000]))

    for i in range(1000):
        rset(i)
    rs = []
    for i in range(5_000):
        t0 = ns()
        rset(i)
        rs.append(ns() - t0)
    report["redis_py_set"] = summary(rs)

    # --- redis-py pipeline flushed every 100 ms ---
    pipe = r.pipeline(transaction=False)
    state = {"last": ns()}

    def pset(i):
        pipe.set(pkeys[i % 1000], pack(values[i % 1000]))
        if ns() - state["last"] >= 100_000_000:
            pipe.execute()
            state["last"] = ns()

    paced(5_000, pset)
    pp = paced(40_000, pset)
    pipe.execute()
    report["redis_py_pipeline_100ms"] = summary(pp)

    # --- near-cache hit vs redis-py GET ---
    kv.set("market_data", "AAPL:quote", values[0])
    kv.flush(10)
    assert kv.get("market_data", "AAPL:quote") == values[0]
    hits = []
    for _ in range(50_000):
        t0 = ns()
        kv.get("market_data", "AAPL:quote")
        hits.append(ns() - t0)
    report["kv_get_near_hit"] = summary(hits)
    report["kv_near_hits"] = kv.stats().near_hits
    gets = []
    key = f"rp:{trader}:positions:P-1"
    for _ in range(5_000):
        t0 = ns()
        msgpack.unpackb(r.get(key))
        gets.append(ns() - t0)
    report["redis_py_get"] = summary(gets)

    # --- load of 100,000 orders with one event each ---
    n = 100_000
    ltrader = trader + "-L"
    lc = tradecache.Cache(env=False, url=server.url, trader_id=ltrader)
    for i in range(n):
        oid = f"O-{i:06}"
        lc.put("orders", oid, {"id": oid, "px": Decimal(i) / 100, "q": 1.0, "st": "Filled", "ts": i})
        lc.append("orders", oid, {"e": 1, "k": "Filled", "ts": i})
        if i % 20_000 == 0:
            lc.flush(60)
    lc.flush(120)
    loads = []
    for _ in range(3):
        t0 = ns()
        snap = lc.load()
        loads.append(ns() - t0)
        assert len(snap["orders"]) == n and len(snap.events["orders"]) == n
    prefix = lc.key_prefix

    def redis_py_load():
        ids = sorted(m.decode() for m in r.smembers(f"{prefix}:index:orders"))
        orders, events = {}, {}
        for c in range(0, len(ids), 1000):
            chunk = ids[c : c + 1000]
            p = r.pipeline(transaction=False)
            p.mget([f"{prefix}:orders:{i}" for i in chunk])
            for i in chunk:
                p.lrange(f"{prefix}:orders:{i}:events", 0, -1)
            res = p.execute()
            for i, raw in zip(chunk, res[0]):
                orders[i] = msgpack.unpackb(raw, strict_map_key=False, ext_hook=lambda c, d: Decimal(d.decode()))
            for i, evs in zip(chunk, res[1:]):
                events[i] = [msgpack.unpackb(e) for e in evs]
        return orders, events

    rloads = []
    for _ in range(3):
        t0 = ns()
        o, e = redis_py_load()
        rloads.append(ns() - t0)
        assert len(o) == n and len(e) == n
    report["load_100k_s"] = sorted(loads)[1] / 1e9
    report["redis_py_load_100k_s"] = sorted(rloads)[1] / 1e9
    lc.close(30)
    cache.close(30)
    kv.close(30)

    # --- ratios and the table ---
    report["loadavg_after"] = os.getloadavg()
    report["ratios"] = {
        "redis_py_set_p50_over_put_p50": report["redis_py_set"]["p50_ns"] / report["put"]["p50_ns"],
        "redis_py_get_p50_over_near_hit_p50": report["redis_py_get"]["p50_ns"] / report["kv_get_near_hit"]["p50_ns"],
        "redis_py_set_p99_over_put_p99": report["redis_py_set"]["p99_ns"] / report["put"]["p99_ns"],
        "redis_py_set_p99_over_kv_set_p99": report["redis_py_set"]["p99_ns"] / report["kv_set"]["p99_ns"],
        "redis_py_get_p99_over_near_hit_p99": report["redis_py_get"]["p99_ns"] / report["kv_get_near_hit"]["p99_ns"],
        "load_speedup": report["redis_py_load_100k_s"] / report["load_100k_s"],
    }
    ra = report["ratios"]
    rows = [
        ("Cache.put (calling thread, 20k/s)", report["put"], f"redis-py SET: {fmt(report['redis_py_set'])}; pipeline/100 ms: {fmt(report['redis_py_pipeline_100ms'])}", f"p99 ≤ 1/20 of SET: {ra['redis_py_set_p99_over_put_p99']:.0f}x (p50 {ra['redis_py_set_p50_over_put_p50']:.0f}x)"),
        ("Kv.set (calling thread, 20k/s)", report["kv_set"], f"redis-py SET: {fmt(report['redis_py_set'])}", f"{ra['redis_py_set_p99_over_kv_set_p99']:.0f}x"),
        ("Kv.get near-cache hit", report["kv_get_near_hit"], f"redis-py GET+unpackb: {fmt(report['redis_py_get'])}", f"p99 ≤ 1/20 of GET: {ra['redis_py_get_p99_over_near_hit_p99']:.0f}x (p50 {ra['redis_py_get_p50_over_near_hit_p50']:.0f}x)"),
    ]
    print()
    print(f"{'figure':38} {'tradecache p50 / p99':24} {'redis-py (same run) p50 / p99':70} ratio")
    for name, s, alt, ratio in rows:
        print(f"{name:38} {fmt(s):24} {alt:70} {ratio}")
    print(
        f"{'load() 100,000 orders + 1 event each':38} {report['load_100k_s']:.3f} s{'':16} "
        f"{'redis-py SMEMBERS + pipelined MGET/LRANGE + unpackb: ' + format(report['redis_py_load_100k_s'], '.3f') + ' s':70} "
        f"≥ 5x: {ra['load_speedup']:.1f}x"
    )
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(report, f, indent=2)
    la, lb = report["loadavg_before"], report["loadavg_after"]
    print(f"load average before / after: {la[0]:.1f} / {lb[0]:.1f} ({os.cpu_count()} CPUs)")
    print(f"\nwritten: {os.path.normpath(OUT)}")


def fmt(s) -> str:
    return f"{s['p50_ns'] / 1000:.2f} / {s['p99_ns'] / 1000:.2f} µs"


if __name__ == "__main__":
    main()
