"""Value types shared by the bindings."""

from typing import NamedTuple


class ExtType(NamedTuple):
    """A MessagePack extension value the bindings have no Python type for,
    stored and read back as is: ``code`` an int from -128 to 127 other
    than 1, 2, 3 (Decimal, datetime and date: store those types), ``data``
    bytes; anything else is an ``EncodeError`` at the call."""

    code: int
    data: bytes
