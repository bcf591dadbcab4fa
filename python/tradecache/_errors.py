"""The exceptions of tradecache: one class per ``tradecache::ErrorKind`` a
call can return, under :class:`Error`, with the builtin base a Python
caller would catch (``InvalidId`` is a ``ValueError``, ``WaitTimeout`` a
``TimeoutError``, the connection errors ``ConnectionError``s).

Every instance has ``kind``: the core's ``ErrorKind`` name (``"Fenced"``,
``"Timeout"``, ...); ``Full``/``Closed``/``Forked``/``Fenced`` raised by a
write carry the value that was not accepted as ``value`` (the id, for a
``delete``).

Bad input to any public call raises the class its argument documents
(python/README.md, "Exceptions"): ``UnknownCollection`` for a collection,
``InvalidId`` for an id, namespace or key, ``EncodeError`` for a value,
``ConfigError`` for a timeout, ttl, seq, event id, flag or option,
``DecodeError`` for ``unpackb``'s data; never ``TypeError``,
``OverflowError``, ``UnicodeEncodeError`` or a panic. Calling with missing,
extra or unknown arguments is a ``TypeError``, as for any function.
"""

from __future__ import annotations

from typing import Any


class Error(Exception):
    """Base of every tradecache error."""

    kind: str = "Error"
    #: The value a refused write hands back (``Full``, ``Closed``, ``Fenced``).
    value: Any = None


class ConfigError(Error, ValueError):
    """The configuration (or an argument) is invalid; ``problems`` lists
    every problem found (never a password)."""

    problems: list = []


class NotSupported(ConfigError):
    """The bindings cannot do this with this configuration. (Reserved: since
    reads go through the core, every deployment the core supports is read
    and written alike, and nothing raises it.)"""


class UnknownCollection(ConfigError):
    """A collection name the core's rule refuses (any call naming it): empty
    or longer than 256 bytes, anything but ASCII letters, digits and
    punctuation other than ``:``, ``{``, ``}``, or a name the key layout
    uses itself (``index``, ``writer``, ``stream``, ``heartbeat``,
    ``quotes``, ``trades``, ``bars``)."""


class InvalidId(Error, ValueError):
    """An id (or key, or namespace) is empty, too long, or contains ``:``,
    ``{``, ``}``, whitespace or control characters."""


class ConnectionRefused(Error, ConnectionError):
    """Redis refused the connection."""


class Timeout(Error, TimeoutError):
    """Redis did not answer in time."""


class WaitTimeout(Timeout):
    """``wait``/``flush`` timed out before Redis acknowledged; ``timeout``
    is the bound in seconds. The writes are still queued."""

    timeout: float = 0.0


class AuthError(Error, ConnectionError):
    """Authentication failed (ACL user, password)."""


class TlsError(Error, ConnectionError):
    """TLS failure."""


class IoError(Error, ConnectionError):
    """An I/O error talking to Redis."""


class ServerError(Error):
    """Redis answered with an error."""


class CodecError(Error):
    """A value could not be encoded or decoded."""


class EncodeError(CodecError, TypeError):
    """A Python value that cannot be stored (a set, an object, an int beyond
    64 bits, a cycle)."""


class DecodeError(CodecError):
    """Stored bytes that are not a value the bindings read."""


class TooLarge(Error):
    """A value larger than ``max_value_bytes``."""


class Closed(Error):
    """The cache is closed."""


class Forked(Closed):
    """This process is a forked child of the one that opened the ``Cache``
    or ``Kv`` (``os.fork()``, multiprocessing's ``fork`` start method, a
    pre-forking server): its connections and writer thread are the
    parent's, so every call here refuses (a refused write hands the value
    back as ``value``); ``close()`` just lets go of it, and the child's exit
    does not wait for it. Open a new one in the child. ``kind`` is
    ``"Closed"``."""


class Unpersisted(Closed):
    """``close`` ended with accepted writes not persisted (``unpersisted``,
    ``acked_seq``)."""

    acked_seq: int = 0
    unpersisted: int = 0


class DiscoveryError(Error, ConnectionError):
    """Sentinel or Cluster discovery failed."""


class Fenced(Error):
    """A newer writer with the same trader, instance and writer id opened:
    this one's writes are no longer applied."""


class Unavailable(Error):
    """Redis is unavailable (kv: the write channel is full, or the breaker is
    open)."""


class Full(Error):
    """The write channel is full (Redis slow or down); the value was not
    accepted and is handed back as ``value``."""


class Dropped(Error):
    """Accepted writes were dropped by the flusher and are not in Redis
    (``count``; ``first``: a dict with seq, writes, key, class, detail).
    ``take_dropped()`` lists them."""

    count: int = 0
    first: dict = {}


__all__ = [
    "Error",
    "ConfigError",
    "NotSupported",
    "UnknownCollection",
    "InvalidId",
    "ConnectionRefused",
    "Timeout",
    "WaitTimeout",
    "AuthError",
    "TlsError",
    "IoError",
    "ServerError",
    "CodecError",
    "EncodeError",
    "DecodeError",
    "TooLarge",
    "Closed",
    "Forked",
    "Unpersisted",
    "DiscoveryError",
    "Fenced",
    "Unavailable",
    "Full",
    "Dropped",
]
