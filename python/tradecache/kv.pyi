"""Type stubs of tradecache.kv."""

from typing import Any, Awaitable, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, TypeVar, Union

F = TypeVar("F", bound=Callable[..., Any])

class KvHealth:
    writer_connected: bool
    writer_running: bool
    backlog: int
    breaker: str
    near_tracking: Optional[bool]
    last_error: Optional[str]
    backpressure: Optional[str]
    healthy: bool

class KvStats:
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
    latency: Dict[str, Dict[str, float]]

class Kv:
    """A namespaced TTL cache in Redis. ``ttl``: None = the namespace's
    policy, 0 = never expires, else seconds."""

    def __init__(self, *, env: bool = True, **options: Union[str, int, float, bool, None]) -> None: ...
    def __enter__(self) -> "Kv": ...
    def __exit__(self, *exc: Any) -> None: ...
    def get(self, namespace: str, key: str) -> Optional[Any]: ...
    def set(self, namespace: str, key: str, value: Any, ttl: Optional[float] = None) -> int: ...
    def delete(self, namespace: str, key: str) -> int: ...
    def exists(self, namespace: str, key: str) -> bool: ...
    def get_many(self, namespace: str, keys: List[str]) -> List[Optional[Any]]: ...
    def set_many(
        self, namespace: str, items: Union[Mapping[str, Any], Iterable[Tuple[str, Any]]], ttl: Optional[float] = None
    ) -> int: ...
    def clear_namespace(self, namespace: str) -> int: ...
    def touch(self, namespace: str, key: str, ttl: Optional[float] = None) -> int: ...
    def wait(self, seq: int, timeout: float = 5.0) -> None: ...
    def flush(self, timeout: float = 5.0) -> None: ...
    def last_seq(self) -> int: ...
    def take_dropped(self) -> List[Dict[str, Any]]: ...
    def close(self, timeout: float = 5.0) -> Dict[str, int]: ...
    @property
    def closed(self) -> bool: ...
    def health(self) -> KvHealth: ...
    def stats(self) -> KvStats: ...
    def cached(
        self, namespace: str = "default", ttl: Optional[float] = None, key: Optional[Callable[..., str]] = None
    ) -> Callable[[F], F]:
        """Caches a function's (or coroutine function's) result by its
        arguments; concurrent misses of one key call it once; keeps calling
        it, uncached, while Redis is down."""
