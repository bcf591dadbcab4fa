"""tradecache: write-behind persistence of a trading engine's state to Redis.

``Cache`` queues writes (``put``, ``append``, ``delete``) without I/O on the
calling thread; one flusher thread writes them as atomic ``MULTI``/``EXEC``
batches, exactly once through reconnects, fenced against a second writer.
``load()`` reads the whole state back after a restart. ``tradecache.kv`` is
a namespaced TTL cache with a near cache and a circuit breaker.

Values are Python objects stored as MessagePack: dict, list, tuple, str,
int, float, bytes, bool, None, ``decimal.Decimal``, ``datetime.datetime``
and ``datetime.date`` (the last three as extension types 1, 2, 3; exact).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from . import _errors
from ._errors import *  # noqa: F401,F403
from ._errors import __all__ as _error_names
from ._tradecache import Packed, packb, unpackb
from ._tradecache import Cache as _Cache
from ._types import ExtType

__version__ = "0.1.0"


@dataclass(frozen=True)
class Health:
    """The flusher's health (``Cache.health()``)."""

    connected: bool
    flusher_running: bool
    backlog: int
    reconnects: int
    last_error: Optional[str] = None
    last_error_class: Optional[str] = None
    last_error_age: Optional[float] = None
    backpressure: Optional[str] = None
    fenced: Optional[str] = None
    marker_lost: Optional[str] = None

    @property
    def healthy(self) -> bool:
        """Connected, running, neither fenced nor with a lost marker."""
        return self.connected and self.flusher_running and self.fenced is None and self.marker_lost is None


@dataclass(frozen=True)
class Stats:
    """The cache's counters (``Cache.stats()``)."""

    accepted: int
    acked: int
    backlog: int
    rejected: int
    batches: int
    commands: int
    coalesced: int
    reconnects: int
    replays: int
    purged: int
    marker_losses: int
    dropped: int
    errors: Dict[str, int] = field(default_factory=dict)
    batch_latency_p50_us: Optional[int] = None
    batch_latency_p99_us: Optional[int] = None


@dataclass
class Snapshot:
    """What ``Cache.load()`` read: ``entities[collection][id]`` is a value,
    ``events[collection][id]`` its event log (oldest first); ``report``
    says whether the read is a consistent cut, what it read and which
    values could not be decoded (``issues``: ``(key, problem)`` pairs)."""

    entities: Dict[str, Dict[str, Any]]
    events: Dict[str, Dict[str, List[Any]]]
    report: Dict[str, Any]

    def __getitem__(self, collection: str) -> Dict[str, Any]:
        return self.entities.get(collection, {})

    def __contains__(self, collection: str) -> bool:
        return collection in self.entities

    def __repr__(self) -> str:
        counts = ", ".join(f"{c}: {len(v)}" for c, v in self.entities.items())
        r = self.report
        return (
            f"Snapshot({{{counts}}}, consistent={r.get('consistent')}, keys_read={r.get('keys_read')}, "
            f"issues={len(r.get('issues', []))}, elapsed={r.get('elapsed', 0.0):.3f}s)"
        )


class Cache(_Cache):
    """A write-behind cache of a trading engine's state in Redis.

    ``Cache(url="redis://127.0.0.1:6379/0", trader_id="T1")``: keyword
    arguments are the variables of the core's ``Config.from_env`` by name
    (``REDIS_URL``) or without their ``REDIS_``/``CACHE_`` prefix in lower
    case (``url``, ``trader_id``, ``writer_id``, ``channel_capacity``,
    ``overflow``, ...); unless ``env=False``, the environment fills in the
    rest. Use it as a context manager to close it (flushing) at the end.
    """

    def __enter__(self) -> "Cache":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def load(
        self,
        collections: Optional[List[str]] = None,
        events: bool = True,
        timeout: float = 5.0,
        legacy_events: bool = False,
    ) -> Snapshot:
        """Reads everything this trader persisted (every collection the
        registry of collections ``{key_prefix}:index:`` names with an index
        set, or only ``collections``), with the event logs unless
        ``events=False``, as plain Python structures, through the core's
        loader (any deployment: TLS, Sentinel, Cluster). Waits (without the
        GIL) for the writes accepted before it; reads the commit marker
        before and after and reads again (three times at most) if a batch
        landed in between. ``legacy_events=True`` also reads event entries
        of the old ``[event_id, event]`` format (see ``get_events``). The
        cyclic garbage collector is paused while the objects are built (if
        it was on), then turned back on."""
        d = self._load(collections, events, timeout, legacy_events)
        return Snapshot(d["entities"], d["events"], d["report"])

    def health(self) -> Health:
        """Connected, flusher running, backlog, last error, fenced, ..."""
        return Health(**self._health())

    def stats(self) -> Stats:
        """Counters: accepted, acked, batches, coalesced, replays, ..."""
        return Stats(**self._stats())

    def __repr__(self) -> str:
        if self.closed:
            return "<tradecache.Cache closed>"
        return f"<tradecache.Cache {self.key_prefix or '(no prefix)'} last_seq={self.last_seq()} acked_seq={self.acked_seq()}>"


__all__ = [
    "Cache",
    "Health",
    "Stats",
    "Snapshot",
    "ExtType",
    "Packed",
    "packb",
    "unpackb",
    *_error_names,
]
del _errors
