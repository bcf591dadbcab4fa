"""Private redis-server processes for the tests: free loopback ports, temp
dirs, killed at teardown. Never a Redis on 6379."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != 6379:
            return port


class RedisServer:
    """One redis-server (AOF on, fsync always unless told otherwise)."""

    def __init__(self, fsync: str = "always") -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="tradecache-py-redis-")
        self.fsync = fsync
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", self.dir,
                "--appendonly", "yes",
                "--appendfsync", self.fsync,
                "--save", "",
                "--daemonize", "no",
                "--logfile", os.path.join(self.dir, "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.client().ping():
                    # Loaded (PING answers LOADING errors while the AOF loads).
                    return
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.exceptions.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.resume()
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def server():
    s = RedisServer(fsync="everysec")
    yield s
    s.close()


@pytest.fixture
def own_server():
    """A server of the test's own (to kill, pause or restart)."""
    s = RedisServer()
    yield s
    s.close()


@pytest.fixture
def trader() -> str:
    return "PYT-" + uuid.uuid4().hex[:10]


@pytest.fixture
def open_cache(server, trader):
    """Opens caches on the session server for this test's trader; closes
    them at teardown."""
    import tradecache

    opened = []

    def make(srv=None, **kw):
        srv = srv or server
        opts = dict(url=srv.url, trader_id=trader, connect_attempts=1, backoff_min_ms=10, backoff_max_ms=10)
        opts.update(kw)
        c = tradecache.Cache(env=False, **opts)
        opened.append(c)
        return c

    yield make
    for c in opened:
        try:
            c.close(timeout=2)
        except tradecache.Error:
            pass


@pytest.fixture
def open_kv(server):
    from tradecache import kv as tkv

    opened = []
    prefix = "pyk-" + uuid.uuid4().hex[:8]

    def make(srv=None, **kw):
        srv = srv or server
        opts = dict(url=srv.url, key_prefix=prefix)
        opts.update(kw)
        k = tkv.Kv(env=False, **opts)
        opened.append(k)
        return k

    make.prefix = prefix
    yield make
    for k in opened:
        try:
            k.close(timeout=2)
        except Exception:
            pass
