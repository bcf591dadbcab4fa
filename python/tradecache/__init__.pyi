"""Type stubs of tradecache (the bindings' Cache and helpers)."""

from typing import Any, Dict, List, Literal, Optional, Tuple, Union, overload

from ._errors import (
    AuthError as AuthError,
    Closed as Closed,
    CodecError as CodecError,
    ConfigError as ConfigError,
    ConnectionRefused as ConnectionRefused,
    DecodeError as DecodeError,
    DiscoveryError as DiscoveryError,
    Dropped as Dropped,
    EncodeError as EncodeError,
    Error as Error,
    Fenced as Fenced,
    Forked as Forked,
    Full as Full,
    InvalidId as InvalidId,
    IoError as IoError,
    NotSupported as NotSupported,
    ServerError as ServerError,
    Timeout as Timeout,
    TlsError as TlsError,
    TooLarge as TooLarge,
    Unavailable as Unavailable,
    UnknownCollection as UnknownCollection,
    Unpersisted as Unpersisted,
    WaitTimeout as WaitTimeout,
)
from ._types import ExtType as ExtType

__version__: str

#: A value the bindings store: dict, list, tuple, str, int (64-bit), float,
#: bytes, bool, None, decimal.Decimal, datetime.datetime, datetime.date.
Value = Any

#: The collections put/append/delete accept.

def packb(value: Value) -> bytes:
    """The MessagePack bytes the bindings store for ``value``."""

def unpackb(data: bytes) -> Value:
    """Decodes MessagePack bytes as the bindings read them."""

class Packed:
    """``value`` packed once (the bytes ``packb`` gives): ``Cache.put`` and
    ``Cache.append`` store them as they are, without packing again."""

    def __init__(self, value: Value) -> None: ...
    def __bytes__(self) -> bytes: ...
    def __len__(self) -> int: ...

class Health:
    connected: bool
    flusher_running: bool
    backlog: int
    reconnects: int
    last_error: Optional[str]
    last_error_class: Optional[str]
    last_error_age: Optional[float]
    backpressure: Optional[str]
    fenced: Optional[str]
    marker_lost: Optional[str]
    @property
    def healthy(self) -> bool: ...

class Stats:
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
    errors: Dict[str, int]
    batch_latency_p50_us: Optional[int]
    batch_latency_p99_us: Optional[int]

class Snapshot:
    entities: Dict[str, Dict[str, Value]]
    events: Dict[str, Dict[str, List[Value]]]
    report: Dict[str, Any]
    def __getitem__(self, collection: str) -> Dict[str, Value]: ...
    def __contains__(self, collection: str) -> bool: ...

class Cache:
    """A write-behind cache of a trading engine's state in Redis.

    Options are the variables of the core's ``Config.from_env`` by name or
    without their REDIS_/CACHE_ prefix in lower case (``url``,
    ``trader_id``, ``writer_id``, ``channel_capacity``, ``overflow``, ...).
    """

    def __init__(self, *, env: bool = True, **options: Union[str, int, float, bool, None]) -> None: ...
    def __enter__(self) -> "Cache": ...
    def __exit__(self, *exc: Any) -> None: ...
    def put(self, collection: str, id: str, value: Value, closed: bool = False, restart: bool = False) -> int:
        """Queues the latest value of ``id``; returns its sequence number (no I/O).
        ``closed=True``: the entity is done (leaves the open index; purges may remove it).
        ``restart=True``: its event log is deleted by the same write (never cut apart)."""
    @overload
    def append(self, collection: str, id: str, event: Value) -> int:
        """Appends ``event`` to the event log of ``id``; returns its sequence number."""
    @overload
    def append(self, collection: str, id: str, event_id: int, event: Value) -> int:
        """Deprecated form: ``event_id`` is checked but not stored."""
    def delete(self, collection: str, id: str) -> int:
        """Queues the deletion of ``id`` (value, events, index entries)."""
    def wait(self, seq: int, timeout: float = 5.0) -> None:
        """Blocks (without the GIL) until ``seq`` and every write before it are in Redis."""
    def flush(self, timeout: float = 5.0) -> None:
        """Blocks (without the GIL) until every accepted write is in Redis."""
    def clear(self, timeout: float = 5.0) -> int:
        """Deletes this cache's keys (never another trader's, never FLUSHDB), in order with the writes; returns how many."""
    def close(self, timeout: Optional[float] = None) -> Dict[str, int]:
        """Flushes and stops; ``{"acked_seq", "unpersisted"}``; a no-op the second time."""
    @property
    def closed(self) -> bool: ...
    @property
    def key_prefix(self) -> str: ...
    def last_seq(self) -> int: ...
    def acked_seq(self) -> int: ...
    def get(self, collection: str, id: str, timeout: float = 5.0) -> Optional[Value]:
        """The latest value of ``id`` (sees this process's earlier writes), or None."""
    @overload
    def get_events(self, collection: str, id: str, with_ids: Literal[False] = False, timeout: float = 5.0, legacy: bool = False) -> List[Value]: ...
    @overload
    def get_events(self, collection: str, id: str, with_ids: Literal[True], timeout: float = 5.0, legacy: bool = False) -> List[Tuple[Optional[int], Value]]: ...
    def load(self, collections: Optional[List[str]] = None, events: bool = True, timeout: float = 5.0, legacy_events: bool = False) -> Snapshot:
        """Everything this trader persisted (every collection with an index set), as plain Python structures."""
    def take_dropped(self) -> List[Dict[str, Any]]: ...
    def health(self) -> Health: ...
    def stats(self) -> Stats: ...
