"""Crashes: a SIGKILLed Python engine loses nothing it saw acknowledged; Redis
killed and restarted under writes leaves every write applied exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from decimal import Decimal

import tradecache

ENGINE = textwrap.dedent(
    """
    import sys
    from decimal import Decimal
    import tradecache

    url, trader = sys.argv[1], sys.argv[2]
    c = tradecache.Cache(env=False, url=url, trader_id=trader)
    i = 0
    while True:
        c.put("orders", f"O-{i}", {"i": i, "px": Decimal(i) / 8})
        c.append("orders", f"O-{i}", {"e": i})
        i += 1
        if i % 50 == 0:
            c.flush(timeout=30)
            print(i, flush=True)  # every order below i is acknowledged
    """
)


def test_sigkilled_engine_loses_nothing_acknowledged(own_server, trader, tmp_path, open_cache):
    script = tmp_path / "engine.py"
    script.write_text(ENGINE)
    proc = subprocess.Popen(
        [sys.executable, str(script), own_server.url, trader],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(tmp_path),
    )
    acked = 0
    try:
        for line in proc.stdout:
            acked = int(line)
            if acked >= 3000:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert acked >= 3000, "the engine stopped early"
    c = open_cache(own_server)
    snap = c.load()
    orders = snap["orders"]
    for i in range(acked):
        assert orders[f"O-{i}"] == {"i": i, "px": Decimal(i) / 8}, i
        assert snap.events["orders"][f"O-{i}"] == [{"e": i}], i
    assert snap.report["consistent"]


def test_redis_restarted_under_writes_exactly_once(own_server, open_cache):
    c = open_cache(own_server, reconnect_backoff_min_ms=10, reconnect_backoff_max_ms=100)
    logs = [f"L-{k}" for k in range(10)]
    n = 4000
    for j in range(n):
        log = logs[j % len(logs)]
        c.append("orders", log, {"j": j})
        c.put("positions", log, {"last": j})
        if j == n // 3:
            c.flush(timeout=30)
        if j == n // 2:
            own_server.restart()  # SIGKILL; AOF with appendfsync always
    c.flush(timeout=60)
    assert c.stats().reconnects >= 1
    r = own_server.client()
    for k, log in enumerate(logs):
        raw = r.lrange(f"{c.key_prefix}:orders:{log}:events", 0, -1)
        got = [tradecache.unpackb(b)["j"] for b in raw]
        assert got == list(range(k, n, len(logs))), f"{log}: not every event exactly once, in order"
        last = max(range(k, n, len(logs)))
        assert c.get("positions", log) == {"last": last}


def test_engine_exiting_without_close_persists_what_it_put(own_server, trader, open_cache):
    # The Cache is dropped at interpreter exit: the core's drop flushes
    # (close_timeout) before the process ends.
    code = (
        "import tradecache\n"
        f"c = tradecache.Cache(env=False, url={own_server.url!r}, trader_id={trader!r})\n"
        "for i in range(20000):\n"
        "    c.put('orders', f'O-{i}', {'i': i})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    orders = open_cache(own_server).load()["orders"]
    assert len(orders) == 20000 and orders["O-19999"] == {"i": 19999}
