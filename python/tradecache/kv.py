"""tradecache.kv: a namespaced key-value cache with TTLs in Redis.

Keys are ``{key_prefix}:{namespace}:{key}``. Each namespace has a TTL policy
(defaults: 3600 s; ``market_data`` 60 s, ``portfolio`` 300 s, ``risk`` 180 s,
``session`` 1800 s; ``CACHE_*_TTL`` variables). Writes are queued (no I/O on
the calling thread) and read back at once; reads then go to the near cache
(``near_capacity``) and Redis. After ``breaker_failures`` consecutive
failures the circuit breaker keeps calls away from Redis for
``breaker_open`` seconds.

``@kv.cached(namespace="portfolio", ttl=300)`` caches a function's result
(plain or ``async def``) by its arguments, and keeps calling the function,
uncached, while Redis is down.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, TypeVar

from ._errors import Error
from ._tradecache import Kv as _Kv
from ._tradecache import packb

F = TypeVar("F", bound=Callable[..., Any])

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


@dataclass(frozen=True)
class KvHealth:
    """The kv writer's health (``Kv.health()``)."""

    writer_connected: bool
    writer_running: bool
    backlog: int
    breaker: str
    near_tracking: Optional[bool] = None
    last_error: Optional[str] = None
    backpressure: Optional[str] = None
    healthy: bool = True


@dataclass(frozen=True)
class KvStats:
    """The kv cache's counters (``Kv.stats()``); ``latency[op]`` has
    ``count``, ``p50_us``, ``p99_us``, ``p999_us``. ``computed`` and
    ``flight_waits`` count the ``cached`` decorator's computations and
    waits for another caller's."""

    hits: int
    misses: int
    hit_rate: float
    near_hits: int
    overlay_hits: int
    corrupt: int
    computed: int
    flight_waits: int
    accepted: int
    acked: int
    written: int
    coalesced: int
    dropped: int
    rejected: int
    reconnects: int
    breaker: str
    breaker_opened: int
    short_circuited: int
    slow_ops: int
    near_entries: int
    near_invalidations: int
    latency: Dict[str, Dict[str, float]] = field(default_factory=dict)


class _Flight:
    """One computation in progress; the callers that missed the same key
    meanwhile wait for it."""

    __slots__ = ("done", "ok", "value", "waiters")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.value: Any = None
        self.waiters = 0


_FAILED = object()


def _arg_key(fn: Callable[..., Any], args: tuple, kwargs: dict) -> str:
    name = _UNSAFE.sub("_", f"{fn.__module__}.{fn.__qualname__}")
    try:
        blob = packb([list(args), sorted(kwargs.items())])
    except Error:
        blob = repr((args, sorted(kwargs.items()))).encode()
    return f"{name}.{hashlib.sha256(blob).hexdigest()[:32]}"


class Kv(_Kv):
    """A namespaced TTL cache in Redis.

    ``Kv(url="redis://127.0.0.1:6379/0", key_prefix="app", near_capacity=10000)``:
    keyword arguments are the variables of the core's ``KvConfig.from_env``
    (by name, or without the ``REDIS_``/``CACHE_`` prefix in lower case);
    unless ``env=False`` the environment fills in the rest. TTLs: ``None``
    is the namespace's policy, ``0`` never expires, else seconds.
    """

    def __enter__(self) -> "Kv":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def health(self) -> KvHealth:
        return KvHealth(**self._health())

    def stats(self) -> KvStats:
        return KvStats(**self._stats())

    def _lookup(self, namespace: str, key: str) -> tuple:
        try:
            hit = self.get(namespace, key)
        except Error:
            return (False, None)
        if isinstance(hit, list) and len(hit) == 1:
            return (True, hit[0])
        return (False, None)

    def _store(self, namespace: str, key: str, value: Any, ttl: Optional[float]) -> None:
        try:
            self.set(namespace, key, [value], ttl)
        except Error:
            pass  # Redis down, channel full, value not storable: stay uncached

    def cached(
        self,
        namespace: str = "default",
        ttl: Optional[float] = None,
        key: Optional[Callable[..., str]] = None,
    ) -> Callable[[F], F]:
        """Caches the decorated function's result in ``namespace`` under a
        key made of its qualified name and a hash of its arguments (or
        ``key(*args, **kwargs)``), for ``ttl`` seconds (None: the
        namespace's policy). Works for ``async def`` functions too.
        Concurrent misses of one key call the function once: the other
        callers (threads, or tasks of the same event loop) wait for its
        result (and call it themselves if it raised). Any
        cache failure (Redis down, the breaker open, a result that cannot be
        stored) just calls the function: it keeps working, uncached."""

        def decorate(fn: F) -> F:
            def make_key(args: tuple, kwargs: dict) -> str:
                return key(*args, **kwargs) if key is not None else _arg_key(fn, args, kwargs)

            if inspect.iscoroutinefunction(fn):
                # Per event loop: the misses of one key wait for the first.
                aflights: Dict[tuple, Any] = {}

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    k = make_key(args, kwargs)
                    found, value = self._lookup(namespace, k)
                    if found:
                        return value
                    loop = asyncio.get_running_loop()
                    fk = (id(loop), k)
                    pending = aflights.get(fk)
                    if pending is not None:
                        self._count_computed(True)
                        value = await asyncio.shield(pending)
                        if value is not _FAILED:
                            return value
                        self._count_computed(False)
                        return await fn(*args, **kwargs)  # the first one failed: try ourselves
                    fut = loop.create_future()
                    aflights[fk] = fut
                    self._count_computed(False)
                    try:
                        value = await fn(*args, **kwargs)
                    except BaseException:
                        fut.set_result(_FAILED)
                        raise
                    finally:
                        aflights.pop(fk, None)
                    fut.set_result(value)
                    self._store(namespace, k, value, ttl)
                    return value

                async_wrapper.__tradecache_flights__ = aflights  # type: ignore[attr-defined]
                return async_wrapper  # type: ignore[return-value]

            # Across threads: the misses of one key wait for the first.
            flights: Dict[str, _Flight] = {}
            lock = threading.Lock()

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                k = make_key(args, kwargs)
                found, value = self._lookup(namespace, k)
                if found:
                    return value
                with lock:
                    flight = flights.get(k)
                    leader = flight is None
                    if flight is None:
                        flight = flights[k] = _Flight()
                    else:
                        flight.waiters += 1
                if not leader:
                    self._count_computed(True)
                    flight.done.wait()
                    if flight.ok:
                        return flight.value
                    self._count_computed(False)
                    return fn(*args, **kwargs)  # the first one failed: try ourselves
                self._count_computed(False)
                try:
                    value = fn(*args, **kwargs)
                    flight.value, flight.ok = value, True
                finally:
                    with lock:
                        flights.pop(k, None)
                    flight.done.set()
                self._store(namespace, k, value, ttl)
                return value

            wrapper.__tradecache_flights__ = flights  # type: ignore[attr-defined]
            return wrapper  # type: ignore[return-value]

        return decorate

    def __repr__(self) -> str:
        return "<tradecache.kv.Kv closed>" if self.closed else f"<tradecache.kv.Kv last_seq={self.last_seq()}>"


__all__ = ["Kv", "KvHealth", "KvStats"]
