"""Value types shared by the bindings."""

from typing import NamedTuple


class ExtType(NamedTuple):
    """A MessagePack extension value the bindings have no Python type for
    (codes 1, 2, 3 are Decimal, datetime and date); stored and read back as
    is."""

    code: int
    data: bytes
