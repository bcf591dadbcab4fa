"""Where the calling thread's tail goes (issue 29): the calling-thread phase
of nautilus_bench.py, with every call attributed.

For each timed call it records, next to its duration: the cyclic garbage
collections that ran in it (``gc.callbacks``: how many, the oldest
generation, their time), and this thread's scheduler counters around it
(``/proc/thread-self/schedstat``: time spent runnable but waiting for a
CPU; ``getrusage(RUSAGE_THREAD)``: voluntary and involuntary context
switches, minor page faults). The counters are read outside the timed
window, so they cover the call and a few microseconds around it.

Variants (``NTAIL_VARIANTS``, comma-separated):

- ``none``: the same calls with no database (Nautilus's own cost);
- ``nautilus``: Nautilus's ``CacheDatabaseAdapter``;
- ``tradecache``: ``tradecache.nautilus.TradecacheDatabase``;
- ``noop``: the same facade with its writes made no-ops (``to_dict`` and
  the facade's own bookkeeping, no packing, no channel push; its flusher
  idle);
- ``pack``: the facade with each write packed (``tradecache.packb``) and
  dropped (everything but the push);
- ``floor``: the least an adapter that stores Nautilus's ``to_dict`` must
  do on the calling thread: each new event's ``to_dict`` and nothing else
  (no bookkeeping, no packing, no push, no index writes); a bound for the
  facade, not an adapter;
- ``tradecache-other``: the facade with its flusher thread put back under
  the default scheduling policy (``SCHED_OTHER``), as it was before the
  bindings started it as ``SCHED_BATCH``;
- ``tradecache-nice5`` (any N): the flusher also at nice N;
- ``tradecache-reclose``: the facade with an order's (a position's) close
  converting and packing its first event again, as before "The closing
  rewrite" (python/bench/README.md), rather than putting the value it kept;
- ``tradecache-gcoff``, ``nautilus-gcoff``, ``none-gcoff``: the
  collector disabled during the timed calls (an experiment only: it is not
  something the adapter does to a node).

Per variant it also prints, per timed call, the CPU time and the times
switched in of every other thread of the process that ran meanwhile (by
name: the flusher, Nautilus's tokio workers) and redis-server's CPU time
(``INFO cpu``).

    NTAIL_OPTS="idle_poll_us=1000"            tradecache options of the facade

    NTAIL_ORDERS=5000 NTAIL_VARIANTS=none,nautilus,tradecache,tradecache-other \
        target/pyenv/bin/python python/bench/nautilus_tail.py

Prints one table per variant; JSON in target/bench/nautilus_tail.json.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import nautilus_bench as nb  # noqa: E402

import tradecache  # noqa: E402
from nautilus_trader.cache.cache import Cache  # noqa: E402

OUT = os.path.join(HERE, "..", "..", "target", "bench", "nautilus_tail.json")
ns = time.perf_counter_ns
cpu = time.thread_time_ns
MAIN = ("add_order", "update_order", "update_position", "update_account")


class Probe:
    """This thread's counters: (runnable-wait ns, involuntary switches,
    voluntary switches, minor faults, gc collections, oldest gen, gc ns)."""

    def __init__(self) -> None:
        self.fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        self.gc_n = 0
        self.gc_gen = -1
        self.gc_ns = 0
        self._t = 0
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t = ns()
        else:
            self.gc_n += 1
            self.gc_gen = max(self.gc_gen, info["generation"])
            self.gc_ns += ns() - self._t

    def read(self) -> tuple:
        wait = int(os.pread(self.fd, 128, 0).split()[1])
        ru = resource.getrusage(resource.RUSAGE_THREAD)
        return wait, ru.ru_nivcsw, ru.ru_nvcsw, ru.ru_minflt

    def close(self) -> None:
        gc.callbacks.remove(self._gc)
        os.close(self.fd)


def other_threads() -> dict:
    """tid → (name, ns on a CPU, times switched in) of this process's
    threads other than the calling one."""
    me = str(threading.get_native_id())
    out = {}
    for tid in os.listdir("/proc/self/task"):
        if tid == me:
            continue
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                run, _wait, slices = (int(x) for x in f.read().split())
        except OSError:
            continue
        out[tid] = (name, run, slices)
    return out


def flushers(wait_for_new: set | None = None) -> set:
    """The native ids of this process's flusher threads; with
    `wait_for_new`, once one not in it is there (a new thread names itself
    once it runs; 5 s at most)."""
    deadline = time.monotonic() + 5
    while True:
        out = {int(t) for t, (name, _run, _n) in other_threads().items() if name.startswith("tradecache-flus")}
        if wait_for_new is None or out - wait_for_new or time.monotonic() > deadline:
            return out
        time.sleep(0.01)


def redis_cpu_ms(server) -> float:
    i = server.client().info("cpu")
    return (i["used_cpu_sys"] + i["used_cpu_user"]) * 1e3


def opts() -> dict:
    """NTAIL_OPTS="idle_poll_us=1000,buffer_interval_ms=1": tradecache
    options of the adapter."""
    out = {}
    for kv in filter(None, os.environ.get("NTAIL_OPTS", "").split(",")):
        k, v = kv.split("=")
        out[k] = int(v)
    return out


def variant(server, name: str, n: int, warmup: int = 500) -> dict:
    base, _, mode = name.partition("-")
    trader = f"TAIL{base.upper()}-001"
    config = nb.cache_config(server.port, 100)
    db = None
    if base == "none":
        cache = Cache(database=None, config=config)
    elif base == "nautilus":
        db, cache = nb.node_cache(nb.Theirs(), trader, config)
    elif base == "floor":
        db, cache = ours(trader, config, cls=_floor_class())
    elif mode == "other":
        # Experiment: the flusher put back under the default policy
        # (SCHED_OTHER), as before the bindings started it as SCHED_BATCH.
        before = flushers()
        db, cache = ours(trader, config)
        for tid in flushers(wait_for_new=before) - before:
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
    elif mode == "reclose":
        # The facade keeps no first value, so each close packs it again.
        db, cache = ours(trader, config)
        db._order_first = db._position_first = _Forgetful()
    elif mode.startswith("nice"):
        # Experiment: the flusher at a lower priority (nice N) as well.
        before = flushers()
        db, cache = ours(trader, config)
        for tid in flushers(wait_for_new=before) - before:
            os.setpriority(os.PRIO_PROCESS, tid, int(mode[4:]))
    else:
        db, cache = ours(trader, config)
        if base == "noop":
            db._put = lambda *a: 0
            db._append = lambda *a: 0
            db._cache.delete = lambda *a: 0
        elif base == "pack":
            packb = tradecache.packb
            db._put = lambda c, i, v, closed=False: packb(v)
            db._append = lambda c, i, v: packb(v)
            db._cache.delete = lambda *a: 0
    w = nb.Workload()
    w.setup(cache)
    for _name, fn, args, _o in w.calls(cache, 0, warmup):
        fn(*args)
    probe = Probe()
    f0, r0 = other_threads(), redis_cpu_ms(server)
    rows: dict[str, list] = {m: [] for m in nb.METHODS}
    gc_was = gc.isenabled()
    if mode == "gcoff":
        gc.disable()
    try:
        for mname, fn, args, _o in w.calls(cache, warmup, n):
            gn, gns = probe.gc_n, probe.gc_ns
            probe.gc_gen = -1
            a = probe.read()
            c0 = cpu()
            t0 = ns()
            fn(*args)
            dt = ns() - t0
            c1 = cpu()
            b = probe.read()
            rows[mname].append((dt, b[0] - a[0], b[1] - a[1], b[2] - a[2], b[3] - a[3], probe.gc_n - gn,
                                probe.gc_gen, probe.gc_ns - gns, c1 - c0))
    finally:
        if gc_was:
            gc.enable()
        probe.close()
    f1, r1 = other_threads(), redis_cpu_ms(server)
    out = {m: attribute(r) for m, r in rows.items() if r}
    calls = sum(len(r) for r in rows.values())
    per: dict = {"redis-server": [(r1 - r0) * 1e3 / calls, None]}
    for t, (name, run, slices) in f1.items():
        if t in f0 and run > f0[t][1]:
            c = per.setdefault(name, [0.0, 0.0])
            c[0] += (run - f0[t][1]) / 1e3 / calls
            c[1] += (slices - f0[t][2]) / calls
    # Per timed call: CPU µs and times switched in, of each other thread
    # that ran meanwhile (by name), and of redis-server (CPU only).
    out["per_call"] = {k: [round(v[0], 2), None if v[1] is None else round(v[1], 3)] for k, v in per.items()}
    if db is not None:
        out["close_s"] = nb.close_bounded(db)
    return out


def _floor_class():
    from tradecache.nautilus import TradecacheDatabase

    class Floor(TradecacheDatabase):
        """``floor``: each write call converts its new event and drops it."""

        def add_order(self, order, position_id=None, client_id=None):
            order.init_event.to_dict(order.init_event)

        def update_order(self, order):
            order.last_event.to_dict(order.last_event)

        def add_position(self, position):
            position.last_event.to_dict(position.last_event)

        def update_position(self, position):
            position.last_event.to_dict(position.last_event)

        def update_account(self, account):
            account.last_event.to_dict(account.last_event)

        def index_order_position(self, client_order_id, position_id):
            pass

    return Floor


class _Forgetful(dict):
    """A dict that stores nothing (``tradecache-reclose``)."""

    def __setitem__(self, key, value) -> None:
        pass


def attribute(rows: list) -> dict:
    """p50/p99/p99.9 of the calls; of the calls at or above the p99 (the
    tail): the share that had a collection in them, had to wait for a CPU,
    were switched out involuntarily or voluntarily, or took a page fault,
    and the share with none of these; and the p99 of the calls with no
    collection and no wait for a CPU; and the p50/p99 of the thread's own
    CPU time per call (``time.thread_time_ns()`` read outside the timed
    window: what the call costs, preemptions left out)."""
    durs = sorted(r[0] for r in rows)
    p99 = durs[min(len(durs) - 1, int(len(durs) * 0.99))]
    tail = [r for r in rows if r[0] >= p99]

    def share(rs, f) -> float:
        return round(100.0 * sum(1 for r in rs if f(r)) / len(rs), 1) if rs else 0.0

    def pct(v: list, p: float) -> float:
        v = sorted(v)
        return v[min(len(v) - 1, int(len(v) * p))] / 1e3 if v else 0.0

    clean = [r[0] for r in rows if r[5] == 0 and r[1] == 0]
    return {
        "n": len(rows),
        "p50_us": pct(durs, 0.5), "p99_us": p99 / 1e3, "p999_us": pct(durs, 0.999),
        "calls_with_gc_pct": share(rows, lambda r: r[5] > 0),
        "gc_gen_of_calls_with_gc": {g: sum(1 for r in rows if r[5] > 0 and r[6] == g) for g in (0, 1, 2)},
        "mean_gc_us_in_calls_with_gc": round(
            sum(r[7] for r in rows if r[5]) / max(1, sum(1 for r in rows if r[5])) / 1e3, 1),
        "calls_waiting_for_cpu_pct": share(rows, lambda r: r[1] > 0),
        "tail": {
            "n": len(tail),
            "gc_pct": share(tail, lambda r: r[5] > 0),
            "waited_for_cpu_pct": share(tail, lambda r: r[1] > 0),
            "mean_cpu_wait_us": round(sum(r[1] for r in tail) / max(1, len(tail)) / 1e3, 1),
            "involuntary_switch_pct": share(tail, lambda r: r[2] > 0),
            "voluntary_switch_pct": share(tail, lambda r: r[3] > 0),
            "page_fault_pct": share(tail, lambda r: r[4] > 0),
            "none_of_these_pct": share(tail, lambda r: not (r[5] or r[1] or r[2] or r[3] or r[4])),
        },
        "p99_us_without_gc_or_cpu_wait": pct(clean, 0.99),
        "p99_us_gc_excluded": pct([r[0] for r in rows if r[5] == 0], 0.99),
        "cpu_p50_us": pct([r[8] for r in rows], 0.5),
        "cpu_p99_us": pct([r[8] for r in rows], 0.99),
    }


def ours(trader, config, cls=None):
    from nautilus_trader.model.identifiers import TraderId
    from nautilus_trader.core.uuid import UUID4
    from tradecache.nautilus import TradecacheDatabase

    cls = cls or TradecacheDatabase
    db = cls(TraderId(trader), UUID4(), nb.kernel_serializer(config), config, env=False, **opts())
    return db, Cache(database=db, config=config)


def main() -> None:
    n = int(os.environ.get("NTAIL_ORDERS", 5000))
    names = os.environ.get("NTAIL_VARIANTS", "none,nautilus,tradecache,tradecache-other,noop").split(",")
    server = nb.RedisServer(fsync="everysec")
    report = {"opts": opts(), "loadavg_before": os.getloadavg(), "gc_threshold": gc.get_threshold(), "variants": {}}
    try:
        for name in names:
            print(f"tail: {name} ...", file=sys.stderr, flush=True)
            report["variants"][name] = variant(server, name, n)
            server.client().flushall()
    finally:
        server.close()
    report["loadavg_after"] = os.getloadavg()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(report, f, indent=2)
    for name, v in report["variants"].items():
        print(f"\n== {name}")
        for m in MAIN:
            a = v[m]
            t = a["tail"]
            print(f"  {m:16} p50 {a['p50_us']:7.1f}  p99 {a['p99_us']:7.1f}  p99.9 {a['p999_us']:7.1f} µs | "
                  f"gc in {a['calls_with_gc_pct']:4.1f}% of calls ({a['mean_gc_us_in_calls_with_gc']} µs), "
                  f"cpu-wait in {a['calls_waiting_for_cpu_pct']:4.1f}% | tail: gc {t['gc_pct']}%, "
                  f"cpu-wait {t['waited_for_cpu_pct']}% ({t['mean_cpu_wait_us']} µs), invol {t['involuntary_switch_pct']}%, "
                  f"vol {t['voluntary_switch_pct']}%, fault {t['page_fault_pct']}%, none {t['none_of_these_pct']}% | "
                  f"p99 w/o gc {a['p99_us_gc_excluded']:.1f}, w/o gc & wait {a['p99_us_without_gc_or_cpu_wait']:.1f} | "
                  f"thread CPU p50 {a['cpu_p50_us']:.1f} p99 {a['cpu_p99_us']:.1f}")
    for name, v in report["variants"].items():
        print(f"{name}: per call {v['per_call']}")
    print(f"\nload {report['loadavg_before'][0]:.1f} / {report['loadavg_after'][0]:.1f}; written {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
