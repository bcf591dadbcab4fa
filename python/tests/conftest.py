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
    """One redis-server (AOF on, fsync always unless told otherwise), with
    `extra` arguments (`--cluster-enabled yes`, `--tls-port …`)."""

    def __init__(self, fsync: str = "always", *, extra=(), appendonly: bool = True) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="tradecache-py-redis-")
        self.fsync = fsync
        self.extra = [str(a) for a in extra]
        self.appendonly = appendonly
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
                "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", self.fsync,
                "--save", "",
                "--daemonize", "no",
                "--logfile", os.path.join(self.dir, "redis.log"),
                *self.extra,
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
            except (redis.exceptions.BusyLoadingError, redis.exceptions.ConnectionError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.log()
                self.close()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log}")
            time.sleep(0.02)

    def log(self) -> str:
        return _log_tail(os.path.join(self.dir, "redis.log"))

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


# ---- topologies for test_topology.py: Sentinel, Cluster, TLS ----
#
# Every wait below is bounded (TOPOLOGY_TIMEOUT) and fails with what the
# processes said; every process is killed and every temp dir removed by
# the fixtures' teardown.

TOPOLOGY_TIMEOUT = 30.0


def wait_until(what: str, cond, explain=lambda: "", timeout: float = TOPOLOGY_TIMEOUT):
    """Polls `cond` every 20 ms until it returns something truthy (returned);
    fails the test after `timeout` s with `what` and `explain()`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = cond()
        except (redis.exceptions.RedisError, OSError):
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n{explain()}")
        time.sleep(0.02)


def _log_tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return f"(no {path})"


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port for a cluster node: at most 55535, its bus port (+10000)
    free too."""
    for _ in range(1000):
        port = free_port()
        if port <= 55535 and port + 10000 != 6379 and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


class TopoServer(RedisServer):
    """A RedisServer with extra arguments and AOF off unless told otherwise;
    a cluster node gets a port whose bus port (+ 10000) is free too."""

    def __init__(self, *extra, appendonly: bool = False) -> None:
        super().__init__(fsync="everysec", extra=extra, appendonly=appendonly)

    def start(self) -> None:
        if "--cluster-enabled" in self.extra and not (self.port <= 55535 and _bindable(self.port + 10000)):
            # A cluster node also listens on its port + 10000 (the bus).
            self.port = cluster_port()
        super().start()


class Sentinel:
    """One `redis-server sentinel.conf --sentinel` in its own temp dir."""

    def __init__(self, master: str, master_port: int, quorum: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="tradecache-py-sentinel-")
        self.port = free_port()
        conf = os.path.join(self.dir, "sentinel.conf")
        with open(conf, "w") as f:
            f.write(
                f"port {self.port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir {self.dir}\n"
                f"logfile {self.dir}/sentinel.log\n"
                f"sentinel monitor {master} 127.0.0.1 {master_port} {quorum}\n"
                f"sentinel down-after-milliseconds {master} 500\n"
                f"sentinel failover-timeout {master} 4000\n"
                f"sentinel parallel-syncs {master} 1\n"
            )
        self.proc = subprocess.Popen(
            [REDIS_SERVER, conf, "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.client().ping():
                    return
            except redis.exceptions.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.log()
                self.close()
                raise RuntimeError(f"sentinel did not start on port {self.port}:\n{log}")
            time.sleep(0.02)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, decode_responses=True)

    def master_info(self, name: str) -> dict:
        flat = self.client().execute_command("SENTINEL", "MASTER", name)
        if isinstance(flat, dict):
            return {str(k): str(v) for k, v in flat.items()}
        return dict(zip(flat[::2], flat[1::2]))

    def master_port(self, name: str) -> int | None:
        addr = self.client().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
        return int(addr[1]) if addr else None

    def log(self) -> str:
        return _log_tail(os.path.join(self.dir, "sentinel.log"))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def info(port: int, section: str) -> dict:
    try:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).info(section)
    except redis.exceptions.RedisError:
        return {}


class SentinelSetup:
    """A master (AOF off), `replicas` replicas and `sentinels` sentinels
    (quorum: a majority) on loopback, every sentinel aware of the replicas
    and of the others."""

    NAME = "pytcmaster"

    def __init__(self, replicas: int = 1, sentinels: int = 3) -> None:
        self.servers: list[TopoServer] = []
        self.sentinels: list[Sentinel] = []
        self.held: list[socket.socket] = []
        try:
            self._start(replicas, sentinels)
        except BaseException:
            self.close()
            raise

    def _start(self, replicas: int, sentinels: int) -> None:
        master = TopoServer()
        self.servers.append(master)
        for _ in range(replicas):
            r = TopoServer()
            self.servers.append(r)
            r.client().execute_command("REPLICAOF", "127.0.0.1", str(master.port))
        wait_until(
            "the replicas to be in sync",
            lambda: info(master.port, "replication").get("connected_slaves") == replicas
            and all(
                info(master.port, "replication").get(f"slave{k}", {}).get("state") == "online"
                for k in range(replicas)
            ),
            self.describe,
        )
        quorum = sentinels // 2 + 1
        for _ in range(sentinels):
            self.sentinels.append(Sentinel(self.NAME, master.port, quorum))
        wait_until(
            "every sentinel to know the replicas and the other sentinels",
            lambda: all(
                int(s.master_info(self.NAME).get("num-slaves", -1)) == replicas
                and int(s.master_info(self.NAME).get("num-other-sentinels", -1)) == sentinels - 1
                for s in self.sentinels
            ),
            self.describe,
        )

    @property
    def sentinel_list(self) -> str:
        """`REDIS_SENTINELS`: `127.0.0.1:p1,127.0.0.1:p2,…`."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def master_port(self) -> int:
        """The master every sentinel names (and which says role:master)."""

        def agreed():
            ports = {s.master_port(self.NAME) for s in self.sentinels}
            if len(ports) == 1:
                (p,) = ports
                if p and info(p, "replication").get("role") == "master":
                    return p
            return None

        return wait_until("the sentinels to agree on a master", agreed, self.describe)

    def server(self, port: int) -> TopoServer:
        return next(s for s in self.servers if s.port == port)

    def kill_and_hold(self, port: int) -> None:
        """SIGKILLs the data server on `port` and keeps the port bound (a
        listener that never answers) until teardown: the sentinels keep
        calling a lost master, and must not find another server there."""
        self.server(port).kill()

        def bind():
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the killed server's TIME_WAITs
            try:
                s.bind(("127.0.0.1", port))
                s.listen(1)
            except OSError:
                s.close()
                return None
            return s

        self.held.append(wait_until(f"port {port} to be free", bind))

    def wait_failover(self, old_port: int) -> int:
        """Waits until every sentinel names one master other than
        `old_port` and it says role:master; returns its port."""

        def promoted():
            ports = {s.master_port(self.NAME) for s in self.sentinels}
            if len(ports) == 1:
                (p,) = ports
                if p and p != old_port and info(p, "replication").get("role") == "master":
                    return p
            return None

        return wait_until("the sentinels to promote a replica", promoted, self.describe)

    def describe(self) -> str:
        out = []
        for s in self.sentinels:
            try:
                out.append(f"sentinel {s.port}: {s.master_info(self.NAME)}")
            except redis.exceptions.RedisError as e:
                out.append(f"sentinel {s.port}: {e}")
        for r in self.servers:
            i = info(r.port, "replication")
            out.append(f"server {r.port}: role={i.get('role')} slaves={i.get('connected_slaves')}")
        if self.sentinels:
            out.append(f"--- sentinel {self.sentinels[0].port} log ---\n{self.sentinels[0].log()}")
        return "\n".join(out)

    def close(self) -> None:
        # Sentinels first (they would reconfigure whatever they find), then
        # the servers, then the held ports.
        for s in self.sentinels:
            s.close()
        for r in self.servers:
            r.close()
        for h in self.held:
            h.close()


@pytest.fixture
def sentinel_setup():
    """A fresh master, one replica and three sentinels (the test may fail
    the master over)."""
    s = SentinelSetup(replicas=1, sentinels=3)
    yield s
    s.close()


REDIS_CLI = shutil.which("redis-cli") or os.path.join(os.path.dirname(REDIS_SERVER), "redis-cli")


class ClusterSetup:
    """`n` cluster-enabled masters (no replicas) joined with
    `redis-cli --cluster create`, every node at cluster_state:ok."""

    def __init__(self, n: int = 3) -> None:
        self.nodes: list[TopoServer] = []
        try:
            for _ in range(n):
                self.nodes.append(
                    TopoServer(
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "5000",
                    )
                )
            out = subprocess.run(
                [REDIS_CLI, "--cluster", "create", *[f"127.0.0.1:{s.port}" for s in self.nodes],
                 "--cluster-replicas", "0", "--cluster-yes"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TOPOLOGY_TIMEOUT,
            )
            assert out.returncode == 0, f"redis-cli --cluster create failed:\n{out.stdout}\n{out.stderr}"
            wait_until(
                "cluster_state:ok on every node",
                lambda: all(self.client(s.port).cluster("info").get("cluster_state") == "ok" for s in self.nodes),
                self.describe,
            )
        except BaseException:
            self.close()
            raise

    @staticmethod
    def client(port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)

    @property
    def seed_list(self) -> str:
        """`REDIS_CLUSTER`: `127.0.0.1:p1,127.0.0.1:p2,…`."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.nodes)

    def keyslot(self, key: str) -> int:
        return int(self.client(self.nodes[0].port).execute_command("CLUSTER", "KEYSLOT", key))

    def owner(self, slot: int) -> int:
        """The port of the master owning `slot` (CLUSTER SLOTS)."""
        for lo, hi, master, *_ in self.client(self.nodes[0].port).execute_command("CLUSTER", "SLOTS"):
            if lo <= slot <= hi:
                return int(master[1])
        raise AssertionError(f"no owner for slot {slot}:\n{self.describe()}")

    def describe(self) -> str:
        out = []
        for s in self.nodes:
            try:
                out.append(f"node {s.port}: {self.client(s.port).cluster('info').get('cluster_state')}")
            except redis.exceptions.RedisError as e:
                out.append(f"node {s.port}: {e}")
        return "\n".join(out)

    def close(self) -> None:
        for s in self.nodes:
            s.close()


@pytest.fixture(scope="module")
def cluster_setup():
    c = ClusterSetup(3)
    yield c
    c.close()


def make_certs(directory: str, ca_name: str = "tradecache py test CA") -> dict:
    """A test PKI made with the openssl CLI in `directory` (the commands of
    tests/it/harness/tls.rs): a CA, a server certificate for 127.0.0.1 /
    localhost and a client certificate, both signed by it (P-256, 2 days)."""

    def run(*args):
        subprocess.run(["openssl", *args], cwd=directory, stdin=subprocess.DEVNULL,
                       capture_output=True, check=True, timeout=TOPOLOGY_TIMEOUT)

    run("req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", f"/CN={ca_name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, cn, ext in [
        ("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "tradecache py client", "extendedKeyUsage=clientAuth\n"),
    ]:
        with open(os.path.join(directory, f"{name}.ext"), "w") as f:
            f.write(f"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}")
        run("req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    return {n: os.path.join(directory, n) for n in
            ["ca.crt", "server.crt", "server.key", "client.crt", "client.key"]}
