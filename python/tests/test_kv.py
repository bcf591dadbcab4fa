"""tradecache.kv: every method, TTL policies, the near cache, decorators
(plain and async) that keep working while Redis is down, bad input."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

import tradecache
from tradecache import kv as tkv


def test_set_get_delete_exists(open_kv):
    kv = open_kv()
    v = {"bid": Decimal("189.50"), "ask": Decimal("189.52")}
    kv.set("market_data", "AAPL:quote", v)
    assert kv.get("market_data", "AAPL:quote") == v  # read-your-writes
    kv.flush()
    assert kv.exists("market_data", "AAPL:quote")
    kv.delete("market_data", "AAPL:quote")
    assert kv.get("market_data", "AAPL:quote") is None
    assert not kv.exists("market_data", "AAPL:quote")


def test_get_many_set_many(open_kv):
    kv = open_kv()
    kv.set_many("portfolio", {"a": 1, "b": [2], "c": {"x": None}})
    kv.set_many("portfolio", [("d", "four")], ttl=10)
    assert kv.get_many("portfolio", ["a", "b", "nope", "c", "d"]) == [1, [2], None, {"x": None}, "four"]
    kv.flush()
    other = open_kv()
    assert other.get_many("portfolio", ["a", "d", "zz"]) == [1, "four", None]


def test_ttls_and_touch(open_kv, server):
    kv = open_kv()
    kv.set("portfolio", "p", 1)  # policy: 300 s
    kv.set("risk", "r", 1, ttl=5)
    kv.set("session", "s", 1, ttl=0)  # never expires
    kv.set("other", "o", 1)  # default: 3600 s
    kv.flush()
    r = server.client()
    p = open_kv.prefix
    assert 290_000 < r.pttl(f"{p}:portfolio:p") <= 300_000
    assert 0 < r.pttl(f"{p}:risk:r") <= 5_000
    assert r.pttl(f"{p}:session:s") == -1
    assert 3_500_000 < r.pttl(f"{p}:other:o") <= 3_600_000
    kv.touch("risk", "r", ttl=100)
    kv.touch("session", "s", ttl=50)
    kv.flush()
    assert 5_000 < r.pttl(f"{p}:risk:r") <= 100_000
    assert 0 < r.pttl(f"{p}:session:s") <= 50_000


def test_ttl_policy_from_options(open_kv, server):
    kv = open_kv(portfolio_ttl=42)
    kv.set("portfolio", "p", 1)
    kv.flush()
    assert 0 < server.client().pttl(f"{open_kv.prefix}:portfolio:p") <= 42_000


def test_clear_namespace(open_kv):
    kv = open_kv()
    kv.set_many("risk", {f"k{i}": i for i in range(50)})
    kv.set("portfolio", "keep", 1)
    kv.flush()
    assert kv.clear_namespace("risk") == 50
    assert kv.get("risk", "k1") is None
    assert kv.get("portfolio", "keep") == 1


def test_near_cache_hits(open_kv):
    kv = open_kv(near_capacity=100)
    kv.set("market_data", "q", {"px": 1.5})
    kv.flush()
    for _ in range(5):
        assert kv.get("market_data", "q") == {"px": 1.5}
    s = kv.stats()
    assert s.near_hits >= 1
    assert isinstance(s, tkv.KvStats) and "KvStats(hits=" in repr(s)


def test_health_stats_close(open_kv):
    kv = open_kv()
    kv.set("x", "k", 1)
    seq = kv.last_seq()
    kv.wait(seq)
    h = kv.health()
    assert isinstance(h, tkv.KvHealth) and h.writer_running and h.healthy and h.breaker == "closed"
    assert "KvHealth(writer_connected=True" in repr(h)
    assert kv.take_dropped() == []
    assert kv.close()["unpersisted"] == 0
    assert kv.closed and "closed" in repr(kv)
    with pytest.raises(tradecache.Closed):
        kv.get("x", "k")
    assert kv.close() == {}


def test_context_manager(server, open_kv):
    with tkv.Kv(env=False, url=server.url, key_prefix=open_kv.prefix) as kv:
        kv.set("x", "k", "v")
    assert open_kv().get("x", "k") == "v"


def test_bad_input(open_kv):
    kv = open_kv()
    with pytest.raises(tradecache.InvalidId):
        kv.set("bad ns", "k", 1)
    with pytest.raises(tradecache.InvalidId):
        kv.get("", "k")
    with pytest.raises(tradecache.ConfigError):
        kv.set("x", "k", 1, ttl=-1)
    with pytest.raises(tradecache.EncodeError):
        kv.set("x", "k", {1, 2})
    with pytest.raises(tradecache.EncodeError):
        kv.set_many("x", {"a": 1, "b": object()})
    with pytest.raises(tradecache.ConfigError):
        tkv.Kv(env=False, url="redis://127.0.0.1:1/0", near_capacity="many")


def test_cached_decorator_plain(open_kv):
    kv = open_kv()
    calls = []

    @kv.cached(namespace="portfolio", ttl=300)
    def value_at_risk(book: str, level: Decimal) -> dict:
        calls.append(book)
        return {"book": book, "var": level * 2}

    assert value_at_risk("A", Decimal("0.99")) == {"book": "A", "var": Decimal("1.98")}
    assert value_at_risk("A", Decimal("0.99")) == {"book": "A", "var": Decimal("1.98")}
    assert value_at_risk("B", Decimal("0.99"))["book"] == "B"
    assert calls == ["A", "B"]
    assert value_at_risk.__name__ == "value_at_risk"


def test_cached_decorator_caches_none_and_custom_key(open_kv):
    kv = open_kv()
    calls = []

    @kv.cached(namespace="risk", key=lambda x: f"k-{x}")
    def f(x):
        calls.append(x)
        return None

    assert f(1) is None and f(1) is None
    assert calls == [1]
    assert kv.get("risk", "k-1") == [None]


def test_cached_decorator_async(open_kv):
    kv = open_kv()
    calls = []

    @kv.cached(namespace="market_data", ttl=60)
    async def fetch_price(symbol: str) -> Decimal:
        calls.append(symbol)
        await asyncio.sleep(0)
        return Decimal("189.50")

    async def main():
        a = await fetch_price("AAPL")
        b = await fetch_price("AAPL")
        return a, b

    assert asyncio.run(main()) == (Decimal("189.50"), Decimal("189.50"))
    assert calls == ["AAPL"]
    assert asyncio.iscoroutinefunction(fetch_price)


def test_cached_keeps_working_while_redis_is_down(own_server, open_kv):
    kv = open_kv(own_server, breaker_failures=2, breaker_open_secs=60, timeout=0.5)
    calls = []

    @kv.cached(namespace="portfolio")
    def compute(x):
        calls.append(x)
        return x * 10

    @kv.cached(namespace="portfolio")
    async def acompute(x):
        calls.append(("a", x))
        return x * 100

    assert compute(1) == 10
    kv.flush()
    own_server.kill()
    for i in range(2, 8):
        assert compute(i) == i * 10  # uncached, but working
        assert asyncio.run(acompute(i)) == i * 100
    assert [c for c in calls if not isinstance(c, tuple)] == [1, 2, 3, 4, 5, 6, 7]
    assert kv.health().breaker.startswith("open")


def test_cached_concurrent_misses_compute_once_threads(open_kv):
    import threading

    kv = open_kv()
    calls = []
    gate = threading.Event()

    @kv.cached(namespace="risk")
    def slow(x):
        calls.append(x)
        gate.wait()
        return x * 2

    results = []
    t1 = threading.Thread(target=lambda: results.append(slow(21)))
    t1.start()
    while not calls:  # the first caller is computing
        threading.Event().wait(0.001)
    t2 = threading.Thread(target=lambda: results.append(slow(21)))
    t2.start()
    flights = slow.__tradecache_flights__
    while not any(f.waiters for f in list(flights.values())):  # the second waits for it
        threading.Event().wait(0.001)
    gate.set()
    t1.join()
    t2.join()
    assert results == [42, 42] and calls == [21]
    s = kv.stats()
    assert (s.computed, s.flight_waits) == (1, 1)


def test_cached_concurrent_misses_compute_once_async(open_kv):
    kv = open_kv()
    calls = []

    async def main():
        gate = asyncio.Event()

        @kv.cached(namespace="risk")
        async def slow(x):
            calls.append(x)
            await gate.wait()
            return x * 3

        async def opener():
            for _ in range(10):
                await asyncio.sleep(0)
            gate.set()

        return await asyncio.gather(slow(5), slow(5), opener())

    a, b, _ = asyncio.run(main())
    assert (a, b) == (15, 15) and calls == [5]


def test_cached_a_failing_first_call_lets_the_others_try(open_kv):
    kv = open_kv()
    attempts = []

    @kv.cached(namespace="risk")
    def flaky(x):
        attempts.append(x)
        if len(attempts) == 1:
            raise RuntimeError("first fails")
        return x

    with pytest.raises(RuntimeError):
        flaky(1)
    assert flaky(1) == 1 and flaky(1) == 1
    assert len(attempts) == 2


def test_cached_counts_its_computations(open_kv):
    kv = open_kv()

    @kv.cached(namespace="risk")
    def double(x):
        return x * 2

    assert [double(1), double(1), double(2), double(2)] == [2, 2, 4, 4]
    s = kv.stats()
    assert (s.computed, s.misses, s.hits, s.flight_waits) == (2, 2, 2, 0)

    @kv.cached(namespace="risk")
    async def adouble(x):
        return x * 2

    assert asyncio.run(adouble(5)) == 10 and asyncio.run(adouble(5)) == 10
    assert kv.stats().computed == 3
