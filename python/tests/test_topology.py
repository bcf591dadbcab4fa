"""Deployments other than a single server, at the Python level: Sentinel
(with a failover under writes), Redis Cluster (routing by the trader's hash
tag) and TLS (only with a wheel built with the `tls` feature).

The options are the core's `Config::from_env` variables: `sentinels=`
(`REDIS_SENTINELS`, `host:port,host:port`) with `sentinel_master=`
(`REDIS_SENTINEL_MASTER`); `cluster=` (`REDIS_CLUSTER`, seed nodes);
`url="rediss://…"` or `ssl=True` with `tls_ca=`, `tls_cert=`, `tls_key=`.
There is no `redis+sentinel://` URL form (`REDIS_URL` takes `redis://` and
`rediss://` only).

Everything is checked against the servers with redis-py + msgpack."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from decimal import Decimal

import msgpack
import pytest
import redis

import tradecache
from tradecache import Cache
from tradecache import kv as tkv

from conftest import TopoServer, free_port, make_certs, wait_until


def ext_hook(code: int, data: bytes):
    """The bindings' ext types (README, "Values: the wire format")."""
    if code == 1:
        return Decimal(data.decode("ascii"))
    return msgpack.ExtType(code, data)


def unpack(raw: bytes):
    return msgpack.unpackb(raw, raw=False, ext_hook=ext_hook, strict_map_key=False)


def unpack_kv(raw: bytes):
    assert raw[0] == 0xA0, f"kv header {raw[:1]!r} (0xa0: not compressed)"
    return unpack(raw[1:])


FAST = dict(
    timeout=2,
    connect_attempts=3,
    backoff_min_ms=10,
    backoff_max_ms=100,
    reconnect_backoff_min_ms=10,
    reconnect_backoff_max_ms=100,
)


# ---------------------------------------------------------------------------
# Sentinel
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentinels():
    """One master, one replica, three sentinels, shared by the module's
    Sentinel tests (the failover test runs last: it kills the master)."""
    from conftest import SentinelSetup

    s = SentinelSetup(replicas=1, sentinels=3)
    yield s
    s.close()


def test_sentinel_kv_set_get(sentinels):
    # A sentinel that is not there comes first: the next ones are asked.
    dead = free_port()
    prefix = "pyk-" + uuid.uuid4().hex[:8]
    with tkv.Kv(
        env=False,
        sentinels=f"127.0.0.1:{dead},{sentinels.sentinel_list}",
        sentinel_master=sentinels.NAME,
        key_prefix=prefix,
        near_capacity=0,
        **{k: v for k, v in FAST.items() if not k.startswith("reconnect")},
    ) as k:
        k.set("session", "S-1", {"user": "u1", "limit": Decimal("2.50")}, ttl=0)
        k.flush()
        assert k.get("session", "S-1") == {"user": "u1", "limit": Decimal("2.50")}
        assert k.health().writer_connected
    raw = redis.Redis(host="127.0.0.1", port=sentinels.master_port(), socket_timeout=5).get(
        f"{prefix}:session:S-1"
    )
    assert raw is not None and unpack_kv(raw) == {"user": "u1", "limit": Decimal("2.50")}


def test_sentinel_cache_round_trip_and_failover(sentinels, trader):
    s = sentinels
    old = s.master_port()
    values: dict[tuple[str, str], object] = {}
    events: dict[tuple[str, str], list] = {}
    deleted: set[tuple[str, str]] = set()

    def write(c, i: int, phase: int) -> None:
        oid = f"O-{i:03}"
        v = {"i": i, "phase": phase, "px": Decimal(i) / 4}
        c.put("orders", oid, v)
        values["orders", oid] = v
        c.append("orders", oid, {"ev": "new", "i": i})
        events.setdefault(("orders", oid), []).append({"ev": "new", "i": i})
        pid = f"P-{i % 5}"
        c.put("positions", pid, {"q": i})
        values["positions", pid] = {"q": i}
        # every write of this phase also extends a log of phase 1
        if phase == 2:
            back = f"O-{i % 39:03}"  # not O-039, deleted
            c.append("orders", back, {"ev": "fill", "i": i})
            events.setdefault(("orders", back), []).append({"ev": "fill", "i": i})

    with Cache(env=False, sentinels=s.sentinel_list, sentinel_master=s.NAME, trader_id=trader, **FAST) as c:
        assert c.key_prefix == f"trader-{trader}"
        for i in range(40):
            write(c, i, 1)
        c.delete("orders", "O-039")
        deleted.add(("orders", "O-039"))
        del values["orders", "O-039"]
        del events["orders", "O-039"]
        c.flush(timeout=10)
        snap = c.load()
        assert snap.report["consistent"] and snap.report["issues"] == []
        check_snapshot(snap, values, events)

        # Every acknowledged write is on the replica before the master dies
        # (replication is asynchronous: without replica_wait an acknowledged
        # write may be lost in a failover, docs/deployment.md). A write of our
        # own after them, and WAIT for it.
        m = redis.Redis(host="127.0.0.1", port=old, socket_timeout=10)
        m.set("pytopo:sync", 1)
        assert m.execute_command("WAIT", 1, 10_000) == 1
        m.close()

        s.kill_and_hold(old)
        # Keep writing while the sentinels notice and promote the replica:
        # these writes queue, the flusher asks the sentinels again until they
        # name the new master.
        i = 40
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            write(c, i, 2)
            i += 1
            try:
                ports = {st.master_port(s.NAME) for st in s.sentinels}
            except redis.exceptions.RedisError:
                ports = set()
            if len(ports) == 1 and old not in ports:
                break
            time.sleep(0.02)
        for _ in range(20):  # and some after the promotion
            write(c, i, 2)
            i += 1
        c.delete("orders", "O-041")
        del values["orders", "O-041"]
        del events["orders", "O-041"]
        deleted.add(("orders", "O-041"))
        c.flush(timeout=30)
        new = s.wait_failover(old)
        assert new != old
        assert c.health().connected and c.health().reconnects >= 1
        assert c.acked_seq() == c.last_seq()

        snap = c.load()
        assert snap.report["consistent"] and snap.report["issues"] == []
        check_snapshot(snap, values, events)

    # The new master, read with redis-py: every acknowledged write, each
    # event exactly once and in order.
    r = redis.Redis(host="127.0.0.1", port=new, socket_timeout=5)
    assert r.info("replication")["role"] == "master"
    check_keys(r, f"trader-{trader}", values, events, deleted)


def check_snapshot(snap, values, events) -> None:
    for coll in {c for c, _ in values}:
        assert snap[coll] == {i: v for (c, i), v in values.items() if c == coll}, coll
    for coll in {c for c, _ in events}:
        assert snap.events[coll] == {i: e for (c, i), e in events.items() if c == coll}, coll


def check_keys(r: redis.Redis, prefix: str, values, events, deleted) -> None:
    for (coll, id_), v in values.items():
        raw = r.get(f"{prefix}:{coll}:{id_}")
        assert raw is not None, (coll, id_)
        assert unpack(raw) == v, (coll, id_)
    for (coll, id_), evs in events.items():
        got = [unpack(e) for e in r.lrange(f"{prefix}:{coll}:{id_}:events", 0, -1)]
        assert got == evs, (coll, id_)
    for coll in {c for c, _ in values}:
        ids = {m.decode() for m in r.smembers(f"{prefix}:index:{coll}")}
        assert ids == {i for (c, i) in values if c == coll}, coll
    for coll, id_ in deleted:
        assert not r.exists(f"{prefix}:{coll}:{id_}", f"{prefix}:{coll}:{id_}:events")


# ---------------------------------------------------------------------------
# Cluster
# ---------------------------------------------------------------------------


def traders_on_every_master(cluster) -> dict[int, str]:
    """One trader id per master: the slot of `{trader-<id>}` decides."""
    found: dict[int, str] = {}
    for _ in range(1000):
        t = "PYC-" + uuid.uuid4().hex[:10]
        found.setdefault(cluster.owner(cluster.keyslot(f"trader-{t}")), t)
        if len(found) == len(cluster.nodes):
            return found
    pytest.fail(f"no trader id for every master: {found}")


def test_cluster_cache_routes_each_trader_to_its_slot(cluster_setup):
    cl = cluster_setup
    by_master = traders_on_every_master(cl)
    assert len(by_master) == 3
    for port, t in by_master.items():
        values: dict[tuple[str, str], object] = {}
        events: dict[tuple[str, str], list] = {}
        with Cache(env=False, cluster=cl.seed_list, trader_id=t, **FAST) as c:
            prefix = "{trader-" + t + "}"
            assert c.key_prefix == prefix
            for i in range(30):
                for coll in ["orders", "positions", "strategy.state"]:
                    v = {"coll": coll, "i": i, "px": Decimal(f"{i}.25")}
                    c.put(coll, f"X-{i}", v)
                    values[coll, f"X-{i}"] = v
                c.append("orders", f"X-{i}", {"e": i})
                c.append("orders", f"X-{i}", {"e": -i})
                events["orders", f"X-{i}"] = [{"e": i}, {"e": -i}]
            c.put("positions", "closed-1", {"q": 0}, closed=True)
            values["positions", "closed-1"] = {"q": 0}
            c.flush(timeout=10)
            assert c.get("strategy.state", "X-7") == values["strategy.state", "X-7"]
            snap = c.load()
            assert snap.report["consistent"] and snap.report["issues"] == []
            check_snapshot(snap, values, events)

        # Every key of the trader is on the master owning its hash tag's slot
        # (one slot: one MULTI/EXEC per batch), none on the others.
        owner = cl.client(port)
        keys = {k.decode() for k in owner.keys(prefix + ":*")}
        assert {f"{prefix}:{c_}:{i}" for c_, i in values} <= keys
        assert {f"{prefix}:{c_}:{i}:events" for c_, i in events} <= keys
        assert {f"{prefix}:index:{c_}" for c_ in ["orders", "positions", "strategy.state"]} <= keys
        assert {cl.keyslot(k) for k in keys} == {cl.keyslot(prefix)}
        for other in cl.nodes:
            if other.port != port:
                assert other.client().keys(prefix + ":*") == [], other.port
        check_keys(owner, prefix, values, events, set())
        closed = [m.decode() for m in owner.zrange(f"{prefix}:index:positions:closed", 0, -1)]
        assert closed == ["closed-1"]

    # The same state through redis-py's cluster client (MOVED-following).
    rc = redis.RedisCluster(host="127.0.0.1", port=cl.nodes[0].port, socket_timeout=5)
    try:
        for t in by_master.values():
            raw = rc.get("{trader-" + t + "}:orders:X-3")
            assert unpack(raw) == {"coll": "orders", "i": 3, "px": Decimal("3.25")}
    finally:
        rc.close()


def test_cluster_cache_reopens_and_loads(cluster_setup, trader):
    cl = cluster_setup
    with Cache(env=False, cluster=cl.seed_list, trader_id=trader, **FAST) as c:
        c.put("orders", "O-1", {"s": "new"})
        c.append("orders", "O-1", {"e": 1})
    # Only one seed given: the rest of the cluster is discovered.
    owner = cl.owner(cl.keyslot(f"trader-{trader}"))
    seed = next(n.port for n in cl.nodes if n.port != owner)
    with Cache(env=False, cluster=f"127.0.0.1:{seed}", trader_id=trader, **FAST) as c:
        snap = c.load()
        assert snap["orders"] == {"O-1": {"s": "new"}}
        assert snap.events["orders"] == {"O-1": [{"e": 1}]}
        c.append("orders", "O-1", {"e": 2})
        assert c.get_events("orders", "O-1") == [{"e": 1}, {"e": 2}]


def test_cluster_refuses_a_database_and_no_prefix(cluster_setup, trader):
    with pytest.raises(tradecache.ConfigError) as e:
        Cache(env=False, cluster=cluster_setup.seed_list, trader_id=trader, db=3, use_trader_prefix=False)
    text = " ".join(e.value.problems)
    assert len(e.value.problems) == 2 and "cluster" in text, e.value.problems


def test_cluster_kv(cluster_setup):
    cl = cluster_setup
    prefix = "pyk-" + uuid.uuid4().hex[:8]
    with tkv.Kv(env=False, cluster=cl.seed_list, key_prefix=prefix, near_capacity=0, timeout=2) as k:
        items = {f"K-{i}": {"i": i, "px": Decimal(i) / 8} for i in range(40)}
        k.set_many("portfolio", items, ttl=0)
        k.set("risk", "R-1", [1, 2, 3], ttl=0)
        k.flush()
        assert k.get_many("portfolio", list(items)) == list(items.values())
        assert k.get("risk", "R-1") == [1, 2, 3]
        assert k.exists("risk", "R-1")

        # Keys spread over the masters (no key chooses its own slot), each
        # stored as 0xa0 + MessagePack.
        per_node = {}
        for n in cl.nodes:
            found = {kk.decode(): vv for kk in n.client().keys(f"{prefix}:portfolio:*")
                     for vv in [n.client().get(kk)]}
            per_node[n.port] = found
        assert sum(len(f) for f in per_node.values()) == len(items)
        assert sum(1 for f in per_node.values() if f) >= 2, {p: len(f) for p, f in per_node.items()}
        for found in per_node.values():
            for key, raw in found.items():
                assert unpack_kv(raw) == items[key.rsplit(":", 1)[1]]

        k.delete("portfolio", "K-0")
        assert k.get("portfolio", "K-0") is None
        k.clear_namespace("portfolio")  # on every master
        k.flush()
        assert k.get_many("portfolio", list(items)) == [None] * len(items)
        for n in cl.nodes:
            assert n.client().keys(f"{prefix}:portfolio:*") == [], n.port
        assert k.get("risk", "R-1") == [1, 2, 3]


# ---------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------


def tls_built_in() -> bool:
    """Whether the installed module has the core's `tls` feature: without
    it, a `rediss://` URL is a ConfigError saying so (before any I/O)."""
    try:
        Cache(env=False, url=f"rediss://127.0.0.1:{free_port()}/0", connect_attempts=1)
    except tradecache.ConfigError as e:
        if "without its `tls` feature" in str(e):
            return False
        raise
    except tradecache.Error:
        return True  # got as far as connecting
    raise AssertionError("a Cache opened on a port nobody listens on")


def test_tls_detection_matches_the_build():
    """The default wheel has no TLS and says so; either way the detection
    above gives a clear answer (this test always runs)."""
    if not tls_built_in():
        with pytest.raises(tradecache.ConfigError) as e:
            Cache(env=False, url="redis://127.0.0.1:1/0", ssl=True)
        assert "tls" in str(e.value)


@pytest.fixture(scope="module")
def tls_server():
    if not tls_built_in():
        pytest.skip(
            "the installed tradecache has no TLS: build the wheel with "
            "`maturin build --features extension-module,tls` (python/) to run the TLS tests"
        )
    if not shutil.which("openssl"):
        pytest.skip("no openssl CLI to make the test certificates")
    d = tempfile.mkdtemp(prefix="tradecache-py-tls-")
    other = tempfile.mkdtemp(prefix="tradecache-py-tls-other-")
    servers = []
    try:
        certs = make_certs(d)
        certs["other-ca.crt"] = make_certs(other, ca_name="an unrelated CA")["ca.crt"]
        for auth in ["no", "yes"]:
            port = free_port()
            try:
                srv = TopoServer(
                    "--tls-port", port,
                    "--tls-cert-file", certs["server.crt"],
                    "--tls-key-file", certs["server.key"],
                    "--tls-ca-cert-file", certs["ca.crt"],
                    "--tls-auth-clients", auth,
                )
            except RuntimeError as e:
                pytest.skip(f"redis-server does not start with --tls-port (built without TLS?): {e}")
            srv.tls_port = port
            servers.append(srv)
        yield certs, servers[0], servers[1]
    finally:
        for s in servers:
            s.close()
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(other, ignore_errors=True)


def test_tls_cache_and_kv(tls_server, trader):
    certs, srv, _ = tls_server
    url = f"rediss://127.0.0.1:{srv.tls_port}/0"
    with Cache(env=False, url=url, tls_ca=certs["ca.crt"], trader_id=trader, **FAST) as c:
        c.put("orders", "O-1", {"px": Decimal("1.5")})
        c.append("orders", "O-1", {"e": 1})
        c.flush()
        snap = c.load()
        assert snap["orders"] == {"O-1": {"px": Decimal("1.5")}}
        assert snap.events["orders"] == {"O-1": [{"e": 1}]}
    with tkv.Kv(env=False, url=url, tls_ca=certs["ca.crt"], key_prefix="pyk-tls", near_capacity=0) as k:
        k.set("session", "S-1", "v", ttl=0)
        k.flush()
        assert k.get("session", "S-1") == "v"
    r = srv.client()  # the plaintext port of the same server
    assert unpack(r.get(f"trader-{trader}:orders:O-1")) == {"px": Decimal("1.5")}
    assert unpack_kv(r.get("pyk-tls:session:S-1")) == "v"


def test_tls_mutual(tls_server, trader):
    certs, _, srv = tls_server
    url = f"rediss://127.0.0.1:{srv.tls_port}/0"
    with Cache(
        env=False, url=url, tls_ca=certs["ca.crt"], tls_cert=certs["client.crt"], tls_key=certs["client.key"],
        trader_id=trader, **FAST,
    ) as c:
        c.put("positions", "P-1", {"q": 1})
        c.flush()
    assert unpack(srv.client().get(f"trader-{trader}:positions:P-1")) == {"q": 1}
    # Without a client certificate the server refuses the handshake.
    with pytest.raises(tradecache.TlsError) as e:
        Cache(env=False, url=url, tls_ca=certs["ca.crt"], trader_id=trader, connect_attempts=1, timeout=2)
    assert "tls_cert" in str(e.value), str(e.value)


def test_tls_untrusted_server_and_plaintext_port(tls_server, trader):
    certs, srv, _ = tls_server
    with pytest.raises(tradecache.TlsError) as e:
        Cache(env=False, url=f"rediss://127.0.0.1:{srv.tls_port}/0", tls_ca=certs["other-ca.crt"],
              trader_id=trader, connect_attempts=1, timeout=2)
    assert "UnknownIssuer" in str(e.value) and "tls_ca" in str(e.value), str(e.value)
    # A TLS config never talks plaintext, and the reverse.
    with pytest.raises(tradecache.Timeout) as e:
        Cache(env=False, url=f"rediss://127.0.0.1:{srv.port}/0", tls_ca=certs["ca.crt"],
              trader_id=trader, connect_attempts=1, timeout=1)
    assert "TLS port" in str(e.value), str(e.value)
    with pytest.raises(tradecache.Error) as e:
        Cache(env=False, url=f"redis://127.0.0.1:{srv.tls_port}/0", trader_id=trader, connect_attempts=1, timeout=1)
    assert isinstance(e.value, ConnectionError), repr(e.value)
