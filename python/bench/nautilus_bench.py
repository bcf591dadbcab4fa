"""The NautilusTrader bench: one workload through a real
`nautilus_trader.cache.cache.Cache`, once with Nautilus's own
`CacheDatabaseAdapter` (1.221.0) and once with tradecache's facade
(`tradecache.nautilus`), side by side, in one run, against one private
redis-server (AOF on, appendfsync everysec).

The workload is Nautilus's own objects (test kit): limit orders on AUD/USD.SIM
submitted, accepted, partially filled and filled (5 events each: the
`OrderInitialized` of `add_order` and 4 `update_order`s); order 2k buys and
opens position P-k, order 2k+1 sells and closes it (one `add_position`, three
`update_position`s per pair); one `AccountState` per fill (`update_account`).
That is 9 `Cache` calls per order, each timed on the calling thread.

Figures (table printed, JSON in target/bench/nautilus_py.json):
- events lost / duplicated with `CLIENT KILL TYPE normal` every 200 ms while
  5,000 orders are written at 10,000 calls/s and until the adapter's
  `close()` returned, buffer_interval_ms 100 and unset, counted by an
  independent read of Redis (redis-py `GET`/`LRANGE` of every order and of
  the account);
- acknowledged writes lost when the node (a child process) is SIGKILLed 1 s
  after its last order: ours waits for the acknowledgement after each order,
  theirs has nothing to wait on (its calls returned at least 1 s before);
- calling-thread p50 / p99 / p99.9 of add_order, update_order, update_position,
  update_account with buffer_interval_ms=100 (and without a database): 5
  rounds of 5,000 orders per side, the sides' order turned each round (the
  shared machine's bursts of noise then fall on every side alike), the
  percentiles of all rounds' calls together and each round's p99;
- time until a write is in Redis at 2,000 calls/s (an independent process
  polls `LLEN` of the order's log), buffer_interval_ms 100 and unset, in 3
  rounds with the order turned, the probes of all rounds together and each
  round's p99;
- a restart of 10,000 and 100,000 orders the node's way (cache_general,
  cache_currencies, cache_instruments, cache_accounts, cache_orders,
  cache_positions, build_index), with what came back;
- what `flush()` deletes; Redis bytes per order with 5 events.

    scripts/python-test --bench-nautilus      (make bench-nautilus-py)
    NBENCH_RESTART=10000 ...                  restart sizes (default 10000,100000)
    NBENCH_RESTART_TIMEOUT=240                a restart not done by then is reported so
    NBENCH_CALL_ROUNDS=5, NBENCH_CALL_ORDERS=5000   the calling-thread rounds
    NBENCH_INREDIS_ROUNDS=3                   the in-Redis rounds
    NBENCH_SIDES=nautilus ...                 one side only
    NBENCH_PHASES=calls,restart ...           some phases only (calls, in-redis, kill,
                                              sigkill, bytes, restart, flush)
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "nautilus"))
from conftest import RedisServer  # noqa: E402
from nt_workload import kernel_serializer, spec_cache_config  # noqa: E402

import nautilus_trader  # noqa: E402
from nautilus_trader.cache.cache import Cache  # noqa: E402
from nautilus_trader.cache.config import CacheConfig  # noqa: E402
from nautilus_trader.cache.database import CacheDatabaseAdapter  # noqa: E402
from nautilus_trader.cache.facade import CacheDatabaseFacade  # noqa: E402
from nautilus_trader.core.uuid import UUID4  # noqa: E402
from nautilus_trader.model.enums import OmsType, OrderSide  # noqa: E402
from nautilus_trader.model.identifiers import (  # noqa: E402
    ClientOrderId,
    PositionId,
    TradeId,
    TraderId,
    VenueOrderId,
)
from nautilus_trader.model.position import Position  # noqa: E402
from nautilus_trader.test_kit.providers import TestInstrumentProvider  # noqa: E402
from nautilus_trader.test_kit.stubs.events import TestEventStubs  # noqa: E402
from nautilus_trader.test_kit.stubs.execution import TestExecStubs  # noqa: E402

OUT = os.path.join(HERE, "..", "..", "target", "bench", "nautilus_py.json")
ns = time.perf_counter_ns
# CLOCK_MONOTONIC: one clock for this process and the prober's.
mono = time.monotonic_ns
METHODS = ("add_order", "update_order", "add_position", "update_position", "update_account")
EVENTS_PER_ORDER = 5
CALLS_PER_ORDER = 9


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def cache_config(port: int, buffer_interval_ms: int | None) -> CacheConfig:
    """The specification's configuration, `buffer_interval_ms` as given."""
    return spec_cache_config(port, buffer_interval_ms=buffer_interval_ms)


# ---------------------------------------------------------------- the sides


class Theirs:
    """Nautilus's own `CacheDatabaseAdapter` (a Rust tokio task behind an
    unbounded channel). An order is one list, `orders:{id}`: its
    `OrderInitialized`, then every event; an account likewise."""

    name = "nautilus"
    label = f"Nautilus CacheDatabaseAdapter {nautilus_trader.__version__}"

    def adapter(self, trader: str, config: CacheConfig) -> CacheDatabaseFacade:
        return CacheDatabaseAdapter(
            trader_id=TraderId(trader), instance_id=UUID4(), serializer=kernel_serializer(config), config=config
        )

    def keys(self, trader: str, collection: str, id_: str) -> tuple[str | None, str]:
        """(value key or None, log key) of an order or account."""
        return None, f"trader-{trader}:{collection}:{id_}"

    def probe(self, trader: str, order) -> tuple[str, str, int]:
        """How the prober sees the order's last write: (command, key, n)."""
        return "llen", self.keys(trader, "orders", order.client_order_id.value)[1], len(order.events)

    def acknowledge(self, db) -> bool:
        """Nothing to wait on: only `close()` drains."""
        return False

    def reconnects(self, db) -> int | None:
        return None


class Ours:
    """tradecache's facade, `tradecache.nautilus.TradecacheDatabase` (the
    class `install()` gives the kernel). An order is a value, its
    `OrderInitialized`, and a log of its later events."""

    name = "tradecache"

    def __init__(self) -> None:
        import tradecache
        from tradecache.nautilus import TradecacheDatabase, escape_id

        self.cls, self.escape = TradecacheDatabase, escape_id
        self.label = f"tradecache.nautilus {tradecache.__version__}" if hasattr(tradecache, "__version__") \
            else "tradecache.nautilus"

    def adapter(self, trader: str, config: CacheConfig) -> CacheDatabaseFacade:
        # env=False: the node's configuration alone (not REDIS_* of the shell).
        return self.cls(TraderId(trader), UUID4(), kernel_serializer(config), config, env=False)

    def keys(self, trader: str, collection: str, id_: str) -> tuple[str | None, str]:
        key = f"trader-{trader}:ntpy-{collection}:{self.escape(id_)}"
        return key, key + ":events"

    def probe(self, trader: str, order) -> tuple[str, str, int]:
        value, log = self.keys(trader, "orders", order.client_order_id.value)
        n = len(order.events)
        return ("exists", value, 1) if n == 1 else ("llen", log, n - 1)

    def acknowledge(self, db) -> bool:
        db.wait(30.0)
        return True

    def reconnects(self, db) -> int | None:
        return db.stats().reconnects


SIDES = {"nautilus": Theirs, "tradecache": Ours}


def sides() -> list:
    return [SIDES[w]() for w in os.environ.get("NBENCH_SIDES", ",".join(SIDES)).split(",")]


def close_bounded(db, timeout: float = 120.0) -> float | None:
    """`db.close()` on a helper thread; its duration, or None if it did not
    return within `timeout` (the bench goes on)."""
    out: list[float] = []

    def run():
        t0 = time.perf_counter()
        db.close()
        out.append(time.perf_counter() - t0)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    return out[0] if out else None


# ---------------------------------------------------------------- the workload


class Workload:
    """Nautilus objects for one `Cache`: the instrument, its currencies, one
    cash account; `calls()` yields each `Cache` call of the orders' lives as
    (name, bound method, args, order or None), the objects already updated,
    so that a caller can time the call alone."""

    def __init__(self) -> None:
        self.instrument = TestInstrumentProvider.default_fx_ccy("AUD/USD")
        self.account = TestExecStubs.cash_account()
        self.states = 1

    def setup(self, cache: Cache) -> None:
        cache.add_currency(self.instrument.base_currency)
        cache.add_currency(self.instrument.quote_currency)
        cache.add_instrument(self.instrument)
        cache.add_account(self.account)

    def calls(self, cache: Cache, start: int, n: int, *, orders_only: bool = False):
        inst, acct = self.instrument, self.account
        positions: dict[PositionId, Position] = {}
        for i in range(start, start + n):
            opening = i % 2 == 0
            pid = PositionId(f"P-{i // 2:07}")
            o = TestExecStubs.limit_order(
                instrument=inst,
                order_side=OrderSide.BUY if opening else OrderSide.SELL,
                client_order_id=ClientOrderId(f"O-{i:07}"),
                quantity=inst.make_qty(100),
            )
            yield "add_order", cache.add_order, (o, None if orders_only else pid), o
            o.apply(TestEventStubs.order_submitted(o, account_id=acct.id))
            yield "update_order", cache.update_order, (o,), o
            o.apply(TestEventStubs.order_accepted(o, account_id=acct.id, venue_order_id=VenueOrderId(f"V-{i:07}")))
            yield "update_order", cache.update_order, (o,), o
            for k, qty in enumerate((40, 60)):
                fill = TestEventStubs.order_filled(
                    o, inst, position_id=pid, trade_id=TradeId(f"E-{i:07}-{k}"),
                    last_qty=inst.make_qty(qty), account=acct,
                )
                o.apply(fill)
                yield "update_order", cache.update_order, (o,), o
                if orders_only:
                    continue
                if opening and k == 0:
                    p = Position(inst, fill)
                    positions[pid] = p
                    yield "add_position", cache.add_position, (p, OmsType.HEDGING), None
                else:
                    p = positions[pid]
                    p.apply(fill)
                    if p.is_closed:
                        del positions[pid]
                    yield "update_position", cache.update_position, (p,), None
                acct.apply(TestEventStubs.cash_account_state(account_id=acct.id))
                self.states += 1
                yield "update_account", cache.update_account, (acct,), None


def node_cache(side, trader: str, config: CacheConfig):
    db = side.adapter(trader, config)
    return db, Cache(database=db, config=config)


class Tee(CacheDatabaseFacade):
    """Hands every write to several adapters, so that one generation of the
    objects fills both sides' layouts with the same orders (the restart
    phase)."""

    def __init__(self, dbs) -> None:
        super().__init__(CacheConfig())
        self.dbs = dbs


def _forward(name):
    def f(self, *args):
        for db in self.dbs:
            getattr(db, name)(*args)

    f.__name__ = name
    return f


for _m in ("add_currency", "add_instrument", "add_account", "add_order", "add_position", "update_order",
           "update_position", "update_account", "index_venue_order_id", "index_order_position"):
    setattr(Tee, _m, _forward(_m))


# ---------------------------------------------------------------- Redis reads


def log_counts(r: redis.Redis, keys: list[tuple[str | None, str]], expected: int) -> dict:
    """Per (value key, log key): the entries (the value, if the side keeps
    one, then the log's), distinct entries (an event's bytes carry its own
    UUID, so equal bytes are a duplicate). Returns totals."""
    lost = dup = gone = 0
    for c in range(0, len(keys), 500):
        p = r.pipeline(transaction=False)
        for value, log in keys[c : c + 500]:
            if value is not None:
                p.get(value)
            p.lrange(log, 0, -1)
        replies = iter(p.execute())
        for value, _log in keys[c : c + 500]:
            entries = []
            if value is not None:
                v = next(replies)
                entries += [] if v is None else [v]
            entries += next(replies)
            distinct = len(set(entries))
            dup += len(entries) - distinct
            lost += max(0, expected - distinct)
            gone += distinct == 0
    return {"lost": lost, "duplicated": dup, "gone": gone, "expected": expected * len(keys)}


def pct(samples: list[int], p: float) -> int:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p))] if s else 0


def summary(samples: list[int]) -> dict:
    return {
        "p50_us": pct(samples, 0.50) / 1e3,
        "p99_us": pct(samples, 0.99) / 1e3,
        "p999_us": pct(samples, 0.999) / 1e3,
        "n": len(samples),
    }


# ---------------------------------------------------------------- phases


def calling_thread(server: RedisServer, side, buffer_interval_ms, n: int, round_: int = 0, warmup: int = 500) -> dict:
    """Every call of `n` orders' lives, timed on the calling thread, as fast
    as they come (an unpaced burst, as a busy node's): each method's samples
    in ns, and `close_s`."""
    trader = f"CALLS{side.name.upper() if side else 'NONE'}-{round_ + 1:03}"
    config = cache_config(server.port, buffer_interval_ms)
    if side is None:
        db, cache = None, Cache(database=None, config=config)
    else:
        db, cache = node_cache(side, trader, config)
    w = Workload()
    w.setup(cache)
    for _name, fn, args, _o in w.calls(cache, 0, warmup):
        fn(*args)
    samples: dict[str, list[int]] = {m: [] for m in METHODS}
    for name, fn, args, _o in w.calls(cache, warmup, n):
        t0 = ns()
        fn(*args)
        samples[name].append(ns() - t0)
    out: dict = {"samples": samples}
    if db is not None:
        out["close_s"] = close_bounded(db)
    return out


def calling_thread_rounds(server: RedisServer, side_list, buffer_interval_ms, n: int, rounds: int) -> dict:
    """`calling_thread` for no database and each side, in `rounds` rounds
    whose side order turns each round, so that a burst of the shared
    machine's noise lands on every side alike. Per side and method: the
    percentiles of all rounds' samples together, and each round's p99 (the
    spread)."""
    entries = [None] + list(side_list)
    pooled: dict[str, dict[str, list[int]]] = {}
    per_round: dict[str, dict[str, list[float]]] = {}
    closes: dict[str, list] = {}
    for k in range(rounds):
        turn = k % len(entries)
        for side in entries[turn:] + entries[:turn]:
            name = side.name if side else "none"
            got = calling_thread(server, side, buffer_interval_ms, n, k)
            for m, s in got["samples"].items():
                pooled.setdefault(name, {}).setdefault(m, []).extend(s)
                per_round.setdefault(name, {}).setdefault(m, []).append(pct(s, 0.99) / 1e3)
            if "close_s" in got:
                closes.setdefault(name, []).append(got["close_s"])
    out: dict = {"rounds": rounds, "orders_per_round": n}
    for name, methods in pooled.items():
        out[name] = {m: dict(summary(s), p99_us_per_round=per_round[name][m]) for m, s in methods.items()}
        if name in closes:
            out[name]["close_s"] = closes[name]
    return out


def paced(calls, n: int, rate: int, after=None) -> float:
    """Makes the first `n` calls of `calls` at `rate` calls/s, in bursts of
    rate/1000 every millisecond with sleeps in between (as a node reacting
    to market data does); `after(order)` follows each call of an order.
    Returns the seconds taken."""
    per_ms = max(1, rate // 1000)
    nxt = t_start = mono()
    done = 0
    while done < n:
        for _ in range(min(per_ms, n - done)):
            _name, fn, args, o = next(calls)
            fn(*args)
            if after is not None and o is not None:
                after(o)
            done += 1
        nxt += 1_000_000
        delay = nxt - mono()
        if delay > 0:
            time.sleep(delay / 1e9)
    return (mono() - t_start) / 1e9


def prober_main(port: int) -> None:
    """The prober process: reads `command key n t_ns` lines on stdin (a
    write that returned at t_ns and is in Redis once `LLEN key` or `EXISTS
    key` reaches n), polls every pending one (one pipeline a round), and
    prints the
    delays as JSON once stdin says END and nothing is pending (10 s at most
    after END)."""
    r = redis.Redis(host="127.0.0.1", port=port)
    fd = sys.stdin.fileno()
    os.set_blocking(fd, False)
    buf = b""
    pending: list[tuple[str, str, int, int]] = []
    lat: list[int] = []
    end_at = None
    r.ping()
    print("READY", flush=True)
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            chunk = None
        if chunk == b"" and end_at is None:
            end_at = mono()
        if chunk:
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line == b"END":
                    end_at = mono()
                elif line:
                    cmd, key, want, t = line.split()
                    pending.append((cmd.decode(), key.decode(), int(want), int(t)))
        if pending:
            p = r.pipeline(transaction=False)
            for cmd, key, _, _ in pending:
                p.llen(key) if cmd == "llen" else p.exists(key)
            lens = p.execute()
            now = mono()
            keep = []
            for item, got in zip(pending, lens):
                if got >= item[2]:
                    lat.append(now - item[3])
                else:
                    keep.append(item)
            pending = keep
        elif end_at is not None:
            break
        if end_at is not None and mono() - end_at > 10e9:
            break
        time.sleep(0.0001)
    print(json.dumps({"lat_ns": lat, "unresolved": len(pending)}), flush=True)


def in_redis(server: RedisServer, side, buffer_interval_ms, rate: int, seconds: float, round_: int = 0) -> dict:
    """The workload paced at `rate` calls/s (bursts every millisecond); every
    4th order write (add_order, update_order) is probed: the time from the
    call's return until the order's log in Redis holds it, seen by an
    independent process."""
    trader = f"INREDIS{side.name.upper()}{buffer_interval_ms or 0}-{round_ + 1:03}"
    config = cache_config(server.port, buffer_interval_ms)
    prober = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--prober", str(server.port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    assert prober.stdout.readline().strip() == b"READY"
    db, cache = node_cache(side, trader, config)
    w = Workload()
    w.setup(cache)
    total = int(rate * seconds)
    seen = [0]

    def probe(o) -> None:
        seen[0] += 1
        if seen[0] % 4 == 0:
            t = mono()
            cmd, key, want = side.probe(trader, o)
            prober.stdin.write(f"{cmd} {key} {want} {t}\n".encode())
            prober.stdin.flush()

    elapsed = paced(w.calls(cache, 0, total // CALLS_PER_ORDER + 1), total, rate, probe)
    prober.stdin.write(b"END\n")
    prober.stdin.flush()
    out, _ = prober.communicate(timeout=60)
    res = json.loads(out)
    close_bounded(db)
    return {"lat_ns": res["lat_ns"], "unresolved": res["unresolved"], "calls": total, "elapsed_s": elapsed}


def in_redis_rounds(server: RedisServer, side_list, rate: int, seconds: float, rounds: int) -> dict:
    """`in_redis` for each side, `buffer_interval_ms` 100 and unset, in
    `rounds` rounds whose side order turns each round: per side and
    setting, the percentiles of all rounds' probes together (a write still
    not in Redis 10 s after the last call counts as never: None) and each
    round's p99."""
    runs = [(s, b) for s in side_list for b in (100, None)]
    got: dict[str, list[dict]] = {}
    for k in range(rounds):
        turn = (k * 2) % len(runs)
        for s, b in runs[turn:] + runs[:turn]:
            got.setdefault(f"{s.name}/{b or 'unset'}", []).append(in_redis(server, s, b, rate, seconds, k))

    def ms(v):
        return None if v == float("inf") else v / 1e6

    out: dict = {"rounds": rounds}
    for key, rs in got.items():
        lat = [x for r in rs for x in r["lat_ns"] + [float("inf")] * r["unresolved"]]
        seen = [x for r in rs for x in r["lat_ns"]]
        unresolved = sum(r["unresolved"] for r in rs)
        out[key] = {
            "p50_ms": ms(pct(lat, 0.5)), "p99_ms": ms(pct(lat, 0.99)), "max_seen_ms": ms(pct(seen, 1.0)),
            "probes": len(lat), "not_in_redis_10s_after_the_last_call": unresolved,
            "p99_ms_per_round": [ms(pct(r["lat_ns"] + [float("inf")] * r["unresolved"], 0.99)) for r in rs],
            "calls": sum(r["calls"] for r in rs), "calls_per_s": sum(r["calls"] for r in rs) / sum(r["elapsed_s"] for r in rs),
        }
    return out


def client_kill(server: RedisServer, side, buffer_interval_ms, n: int, rate: int) -> dict:
    """`n` orders' lives written at `rate` calls/s while another client sends
    `CLIENT KILL TYPE normal SKIPME yes` every 200 ms, from the first write
    until the adapter's `close()` returned (so that the fault also meets
    whatever is still on its way to Redis); then every order's events and
    the account's states are read back."""
    trader = f"KILL{side.name.upper()}{buffer_interval_ms or 0}-001"
    config = cache_config(server.port, buffer_interval_ms)
    db, cache = node_cache(side, trader, config)
    w = Workload()
    w.setup(cache)
    stop = threading.Event()
    kills = [0]

    def killer():
        k = server.client()
        while not stop.wait(0.2):
            try:
                k.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
                kills[0] += 1
            except redis.RedisError:
                pass

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    raised: dict[str, int] = {}

    def guarded(calls):
        for name, fn, args, o in calls:
            yield name, _guard(fn, raised), args, o

    write_s = paced(guarded(w.calls(cache, 0, n)), n * CALLS_PER_ORDER, rate)
    side.acknowledge(db)
    reconnects = side.reconnects(db)
    close_s = close_bounded(db)
    stop.set()
    t.join()
    r = server.client()
    orders = log_counts(r, [side.keys(trader, "orders", f"O-{i:07}") for i in range(n)], EVENTS_PER_ORDER)
    account = log_counts(r, [side.keys(trader, "accounts", w.account.id.value)], w.states)
    return {
        "orders": n, "rate": rate, "kills": kills[0], "reconnects": reconnects, "write_s": write_s,
        "close_s": close_s, "raised": raised,
        "order_events": orders, "account_states": account,
    }


def _guard(fn, raised: dict):
    """`fn`, with whatever it raises counted in `raised` by class (a write
    the caller learns was refused) instead of propagated."""

    def call(*args):
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - counted, reported
            raised[type(e).__name__] = raised.get(type(e).__name__, 0) + 1

    return call


def node_child_main(side_name: str, port: int, trader: str, buffer_interval_ms: int, n: int) -> None:
    """The node the SIGKILL phase kills: writes `n` orders' lives (10 ms
    apart), reports each one (`ACK i` once acknowledged, for a side that can
    wait; `RET i` once its calls returned, for one that cannot), then idles
    until killed."""
    side = SIDES[side_name]()
    config = cache_config(port, buffer_interval_ms or None)
    db, cache = node_cache(side, trader, config)
    w = Workload()
    w.setup(cache)
    calls = w.calls(cache, 0, n)
    for i in range(n):
        for _ in range(CALLS_PER_ORDER):
            name, fn, args, _o = next(calls)
            fn(*args)
        acked = side.acknowledge(db)
        print(f"{'ACK' if acked else 'RET'} {i} {mono()}", flush=True)
        time.sleep(0.01)
    print("DONE", flush=True)
    time.sleep(3600)


def sigkill(server: RedisServer, side, buffer_interval_ms: int, n: int) -> dict:
    trader = f"SIGKILL{side.name.upper()}-001"
    child = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--node-child", side.name, str(server.port), trader,
         str(buffer_interval_ms or 0), str(n)],
        stdout=subprocess.PIPE, text=True,
    )
    reported: list[tuple[str, int, int]] = []
    try:
        for line in child.stdout:
            if line.startswith("DONE"):
                break
            kind, i, t = line.split()
            reported.append((kind, int(i), int(t)))
        # 1 s after the last order was acknowledged (or returned).
        time.sleep(max(0.0, (reported[-1][2] + 1_000_000_000 - mono()) / 1e9))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    killed_at = mono()
    r = server.client()
    incomplete = []
    counts = log_counts(r, [side.keys(trader, "orders", f"O-{i:07}") for _k, i, _t in reported], EVENTS_PER_ORDER)
    for _kind, i, _t in reported:
        one = log_counts(r, [side.keys(trader, "orders", f"O-{i:07}")], EVENTS_PER_ORDER)
        if one["lost"]:
            incomplete.append(i)
    return {
        "orders_reported": len(reported),
        "reported_as": reported[0][0] if reported else None,
        "min_age_at_kill_s": (killed_at - reported[-1][2]) / 1e9 if reported else None,
        "orders_incomplete": len(incomplete),
        "events_lost": counts["lost"],
        "events_duplicated": counts["duplicated"],
        "first_incomplete": incomplete[:5],
    }


RESTART_STEPS = ("cache_general", "cache_currencies", "cache_instruments", "cache_accounts", "cache_orders",
                 "cache_positions", "build_index")


def populate(server: RedisServer, side_list, n: int) -> tuple[str, dict]:
    """`n` orders' lives written once through a `Cache` whose database hands
    every call to each side's adapter (buffer_interval_ms=100: the fastest
    way into Redis for theirs); every adapter closed (drained)."""
    trader = f"RESTART{n}-001"
    config = cache_config(server.port, 100)
    dbs = [s.adapter(trader, config) for s in side_list]
    cache = Cache(database=Tee(dbs), config=config)
    w = Workload()
    w.setup(cache)
    t0 = time.perf_counter()
    for name, fn, args, _o in w.calls(cache, 0, n):
        fn(*args)
    write_s = time.perf_counter() - t0
    closes = {s.name: close_bounded(db, 600) for s, db in zip(side_list, dbs)}
    return trader, {"write_s": write_s, "close_s": closes, "account_states": w.states}


def restart_child_main(side_name: str, port: int, trader: str) -> None:
    """A node's start, in a process of its own: a fresh adapter and `Cache`,
    then the kernel's loads and `build_index`, each timed; prints what came
    back as JSON."""
    side = SIDES[side_name]()
    config = cache_config(port, 100)
    db, cache = node_cache(side, trader, config)
    steps = {}
    t_all = time.perf_counter()
    for step in RESTART_STEPS:
        t0 = time.perf_counter()
        getattr(cache, step)()
        steps[step] = time.perf_counter() - t0
    total = time.perf_counter() - t_all
    orders = cache.orders()
    acct = cache.accounts()
    out = {
        "total_s": total,
        "steps_s": steps,
        "orders": len(orders),
        "orders_filled_with_5_events": sum(
            1 for o in orders if o.is_closed and o.filled_qty == o.quantity and len(o.events) == EVENTS_PER_ORDER
        ),
        "positions": len(cache.positions()),
        "positions_closed": len(cache.positions_closed()),
        "instruments": len(cache.instruments()),
        "account_events": len(acct[0].events) if acct else 0,
        "integrity": cache.check_integrity(),
    }
    close_bounded(db)
    print(json.dumps(out), flush=True)


def restart(server: RedisServer, side, trader: str, timeout: float) -> dict:
    """`restart_child_main` in a new process, given `timeout` seconds."""
    child = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--restart-child", side.name, str(server.port), trader],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        out, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        return {"total_s": None, "not_finished_within_s": timeout}
    return json.loads(out.strip().splitlines()[-1])


def flush_scope(server: RedisServer, side) -> dict:
    """One order for this trader and for another trader of the same side,
    and a key of another application; then this trader's `flush()`: what is
    left."""
    r = server.client()
    r.set("other-app:config", b"keep me")
    config = cache_config(server.port, None)
    mine, other = f"FLUSH{side.name.upper()}-001", f"FLUSH{side.name.upper()}-002"
    dbs = []
    for trader in (mine, other):
        db, cache = node_cache(side, trader, config)
        w = Workload()
        w.setup(cache)
        for name, fn, args, _o in w.calls(cache, 0, 2):
            fn(*args)
        dbs.append((db, cache))
    dbs[1][0].close()
    dbs[0][1].flush_db()
    dbs[0][0].close()
    left = {
        "this_trader_orders": r.exists(side.keys(mine, "orders", "O-0000000")[1]),
        "other_trader_orders": r.exists(side.keys(other, "orders", "O-0000000")[1]),
        "other_application_key": r.exists("other-app:config"),
    }
    r.flushall()
    return {
        "left": left,
        "scope": "this trader's keys only" if left["other_trader_orders"] and left["other_application_key"]
        and not left["this_trader_orders"] else "the whole database (FLUSHDB)"
        if not any(left.values()) else f"other: {left}",
    }


def bytes_per_order(server: RedisServer, side, n: int) -> dict:
    """Redis `used_memory` before and after `n` orders with their 5 events
    (no positions, no account), per order."""
    r = server.client()
    r.flushall()
    before = r.info("memory")["used_memory"]
    trader = f"BYTES{side.name.upper()}-001"
    config = cache_config(server.port, 100)
    db, cache = node_cache(side, trader, config)
    w = Workload()
    for name, fn, args, _o in w.calls(cache, 0, n, orders_only=True):
        fn(*args)
    close_bounded(db)
    after = r.info("memory")["used_memory"]
    keys = r.dbsize()
    r.flushall()
    return {"bytes_per_order": (after - before) / n, "orders": n, "keys": keys}


# ---------------------------------------------------------------- main


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--prober":
        prober_main(int(sys.argv[2]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--restart-child":
        restart_child_main(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--node-child":
        node_child_main(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
        return
    server = RedisServer(fsync="everysec")
    try:
        run(server)
    finally:
        server.close()


def phase(title: str):
    print(f"nautilus bench: {title} ...", file=sys.stderr, flush=True)


PHASES = ("calls", "in-redis", "kill", "sigkill", "bytes", "restart", "flush")


def run(server: RedisServer) -> None:
    side_list = sides()
    wanted = os.environ.get("NBENCH_PHASES", ",".join(PHASES)).split(",")
    r = server.client()
    t_start = time.perf_counter()
    report: dict = {
        "python": platform.python_version(),
        "nautilus_trader": nautilus_trader.__version__,
        "redis": r.info("server")["redis_version"],
        "sides": {s.name: s.label for s in side_list},
        "loadavg_before": os.getloadavg(),
    }
    if "calls" in wanted:
        calls_n = env_int("NBENCH_CALL_ORDERS", 5_000)
        rounds = env_int("NBENCH_CALL_ROUNDS", 5)
        phase(f"calling thread, {rounds} rounds of {calls_n:,} orders per side")
        report["calling_thread_buffer_100"] = calling_thread_rounds(server, side_list, 100, calls_n, rounds)
        r.flushall()

    if "in-redis" in wanted:
        phase("in Redis at 2,000 calls/s")
        report["in_redis_2000_per_s"] = in_redis_rounds(
            server, side_list, 2_000, 4.0, env_int("NBENCH_INREDIS_ROUNDS", 3)
        )
        r.flushall()

    if "kill" in wanted:
        kill_n = env_int("NBENCH_KILL_ORDERS", 5_000)
        phase(f"CLIENT KILL every 200 ms, {kill_n:,} orders at 10,000 calls/s")
        report["client_kill"] = {}
        for s in side_list:
            for b in (100, None):
                report["client_kill"][f"{s.name}/{b or 'unset'}"] = client_kill(server, s, b, kill_n, 10_000)
        r.flushall()

    if "sigkill" in wanted:
        phase("node SIGKILLed")
        report["sigkill"] = {s.name: sigkill(server, s, 100, 200) for s in side_list}
        r.flushall()

    if "bytes" in wanted:
        phase("bytes per order")
        report["bytes_per_order_5_events"] = {s.name: bytes_per_order(server, s, 2_000) for s in side_list}

    if "restart" in wanted:
        report["restart"] = {}
        restart_timeout = float(os.environ.get("NBENCH_RESTART_TIMEOUT", 240))
        for n in [int(x) for x in os.environ.get("NBENCH_RESTART", "10000,100000").split(",") if x]:
            phase(f"restart of {n:,} orders: writing them")
            trader, written = populate(server, side_list, n)
            row = {"written": written}
            for s in side_list:
                phase(f"restart of {n:,} orders: {s.name}")
                row[s.name] = restart(server, s, trader, restart_timeout)
            report["restart"][str(n)] = row
            r.flushall()

    if "flush" in wanted:
        phase("flush()")
        report["flush"] = {s.name: flush_scope(server, s) for s in side_list}
    report["loadavg_after"] = os.getloadavg()
    report["elapsed_s"] = time.perf_counter() - t_start
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(report, f, indent=2)
    print_table(report, side_list)
    print(f"\nwritten: {os.path.normpath(OUT)}")


def print_table(rep: dict, side_list) -> None:
    names = [s.name for s in side_list]
    w = 40

    def row(label: str, cells: list[str]) -> None:
        print(f"{label:60} " + " ".join(f"{c:{w}}" for c in cells))

    def ms(v):
        return "never" if v is None else f"{v:.2f}"

    def took(x):
        if x["total_s"] is None:
            return f"not done in {x['not_finished_within_s']:.0f} s"
        return f"{x['total_s']:.2f} s ({x['orders']:,} orders, {x['positions']:,} pos)"

    print()
    row("figure", [rep["sides"][n] for n in names])
    for b in ("100", "unset") if "client_kill" in rep else ():
        cells = []
        for n in names:
            k = rep["client_kill"][f"{n}/{b}"]
            o, a = k["order_events"], k["account_states"]
            cells.append(f"{o['lost']:,}/{o['expected']:,} lost, {o['duplicated']} dup; acct {a['lost']} lost")
        row(f"CLIENT KILL every 200 ms, buffer {b}: order events", cells)
    if "sigkill" in rep:
        row("SIGKILL of the node 1 s after its last order: incomplete", [
            f"{rep['sigkill'][n]['orders_incomplete']} of {rep['sigkill'][n]['orders_reported']}"
            f" ({'acknowledged' if rep['sigkill'][n]['reported_as'] == 'ACK' else 'calls returned'})"
            for n in names
        ])
    if "calling_thread_buffer_100" in rep:
        ct = rep["calling_thread_buffer_100"]
        for m in ("add_order", "update_order", "update_position", "update_account"):
            row(f"{m}, buffer 100: p50 / p99 / p99.9 µs", [
                f"{ct[n][m]['p50_us']:.1f} / {ct[n][m]['p99_us']:.1f} / {ct[n][m]['p999_us']:.0f}" for n in names
            ] + [f"(no database: {ct['none'][m]['p50_us']:.1f} / {ct['none'][m]['p99_us']:.1f}"
                 f" / {ct['none'][m]['p999_us']:.0f})"])
            row(f"  its p99 in each of {ct['rounds']} rounds, lowest-highest µs", [
                f"{min(ct[n][m]['p99_us_per_round']):.0f}-{max(ct[n][m]['p99_us_per_round']):.0f}" for n in names
            ])
    for b in ("100", "unset") if "in_redis_2000_per_s" in rep else ():
        ir = rep["in_redis_2000_per_s"]
        row(f"in Redis at 2,000 calls/s, buffer {b}: p50 / p99 ms", [
            f"{ms(ir[f'{n}/{b}']['p50_ms'])} / {ms(ir[f'{n}/{b}']['p99_ms'])}"
            f" ({ir[f'{n}/{b}']['not_in_redis_10s_after_the_last_call']} never)" for n in names
        ])
        row(f"  its p99 in each of {ir['rounds']} rounds, ms", [
            ", ".join(ms(v) for v in ir[f"{n}/{b}"]["p99_ms_per_round"]) for n in names
        ])
    for size, r in rep.get("restart", {}).items():
        row(f"restart of {int(size):,} orders the node's way", [took(r[n]) for n in names])
    if "flush" in rep:
        row("flush()", [rep["flush"][n]["scope"] for n in names])
    if "bytes_per_order_5_events" in rep:
        row("Redis bytes per order with 5 events", [
            f"{rep['bytes_per_order_5_events'][n]['bytes_per_order']:,.0f}" for n in names
        ])
    la, lb = rep["loadavg_before"], rep["loadavg_after"]
    print(f"load average before / after: {la[0]:.1f} / {lb[0]:.1f} ({os.cpu_count()} CPUs); "
          f"whole run {rep['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
