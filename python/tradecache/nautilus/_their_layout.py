"""Reading a trader's state in the layout of NautilusTrader's own Redis
backend (1.221.0: `nautilus_trader.cache.database.CacheDatabaseAdapter` over
the Rust `RedisCacheDatabase`), for `tradecache.nautilus.migrate`.

Their layout, under the trader key `trader-{trader_id}` (no `trader-` without
`use_trader_prefix`; `:{instance_id}` appended with `use_instance_id`):

| key (after `{trader_key}:`) | type | holds |
| --- | --- | --- |
| `general:{key}` | string | the bytes of `Cache.add(key, value)` |
| `currencies:{code}` | string | `{precision, iso4217, name, currency_type}` |
| `instruments:{id}`, `synthetics:{id}` | string | the instrument |
| `accounts:{id}` | list | every `AccountState` (`RPUSH`/`RPUSHX`) |
| `orders:{client_order_id}` | list | every order event, `OrderInitialized` first (a second one when the emulator transformed the order) |
| `positions:{id}` | list | the position's fills (`OrderFilled`) |
| `actors:{id}:state`, `strategies:{id}:state` | string | the saved state `{name: bytes}` |
| `index:order_position`, `index:order_client` | hash | client order id -> position id / client id |
| `index:order_ids`, `index:orders`, `index:orders_open`, `_closed`, `_inflight`, `_emulated`, `index:positions`, `_open`, `_closed` | set | ids (derived from the entities; Nautilus's loads do not read them) |
| `snapshots:orders:{id}`, `snapshots:positions:{id}` | list | state snapshots (`order.to_dict()`, position state); write-only: Nautilus has no load for them and its reader refuses the collection |
| `health:heartbeat` | string | the last heartbeat |

Every value is the kernel's `MsgSpecSerializer` encoding (MessagePack or
JSON, `timestamps_as_str=True`). The keys are read with Nautilus's own
reader (`nautilus_pyo3.RedisCacheDatabase`: `keys` is a `SCAN` of this
trader's keys, `read` a `GET`/`LRANGE`/`HGETALL` by collection) and decoded
with the kernel's serializer, as their adapter's loads do; the lists are
kept whole (every event, in order), so the events can be replayed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
from nautilus_trader.cache.config import CacheConfig
from nautilus_trader.common.config import msgspec_encoding_hook
from nautilus_trader.core import nautilus_pyo3
from nautilus_trader.model.functions import currency_type_from_str
from nautilus_trader.model.objects import Currency
from nautilus_trader.serialization.serializer import MsgSpecSerializer

# Their collections whose keys are read, and the ones left where they are.
READ = ("general", "currencies", "instruments", "synthetics", "accounts", "orders", "positions", "actors",
        "strategies")
LEFT = ("snapshots:orders", "snapshots:positions", "health")


def _seconds(value: float) -> int:
    """Whole seconds for the Rust config's `u16` timeouts: 1 to 65,535."""
    return min(max(int(value + 0.999), 1), 65_535)


def trader_key(trader_id: str, config: CacheConfig, instance_id: str | None) -> str:
    """Their trader key (crates/infrastructure/src/redis/cache.rs,
    `get_trader_key`)."""
    key = ("trader-" if config.use_trader_prefix else "") + trader_id
    if config.use_instance_id:
        key += f":{instance_id}"
    return key


def kernel_serializer(config: CacheConfig) -> MsgSpecSerializer:
    """The serializer the kernel gives their adapter (system/kernel.py)."""
    return MsgSpecSerializer(
        encoding=msgspec.msgpack if config.encoding.lower() == "msgpack" else msgspec.json,
        timestamps_as_str=True,
        timestamps_as_iso8601=config.timestamps_as_iso8601,
    )


@dataclasses.dataclass
class TheirState:
    """A trader's state as their backend holds it: every entity with every
    event, in the order they were written, and what could not be read."""

    trader_key: str
    general: dict[str, bytes] = dataclasses.field(default_factory=dict)
    currencies: list[Any] = dataclasses.field(default_factory=list)
    instruments: dict[str, Any] = dataclasses.field(default_factory=dict)
    synthetics: list[Any] = dataclasses.field(default_factory=list)
    accounts: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    orders: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    positions: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    order_position: dict[str, str] = dataclasses.field(default_factory=dict)
    order_client: dict[str, str] = dataclasses.field(default_factory=dict)
    actors: dict[str, dict] = dataclasses.field(default_factory=dict)
    strategies: dict[str, dict] = dataclasses.field(default_factory=dict)
    # Keys of their layout that are not read (snapshots, heartbeat), by collection.
    left: dict[str, int] = dataclasses.field(default_factory=dict)
    # Values that did not decode: "orders:O-1 entry 3: ..."
    issues: list[str] = dataclasses.field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any((self.general, self.currencies, self.instruments, self.synthetics, self.accounts,
                        self.orders, self.positions, self.actors, self.strategies))


class TheirReader:
    """Nautilus's own reader on the Redis of `config.database`."""

    def __init__(self, trader_id: str, config: CacheConfig, instance_id: str | None = None,
                 timeout: float = 60.0) -> None:
        if config.database is None:
            raise ValueError("config.database is None: no Redis to read Nautilus's state from")
        if config.use_instance_id and not instance_id:
            raise ValueError("config.use_instance_id is set: give the instance_id whose state to read")
        self.key = trader_key(trader_id, config, instance_id)
        self.serializer = kernel_serializer(config)
        # The Rust side's DatabaseConfig has connection settings the Python
        # one lacks, and its defaults (100 attempts, backoff up to 1,000 s)
        # make a Redis that is down hang the call for hours: bounded here
        # (the Python `timeout` to connect, `timeout` of migrate() to reply,
        # three attempts a second apart at most).
        settings = msgspec.json.decode(msgspec.json.encode(config, enc_hook=msgspec_encoding_hook))
        settings["database"].update(
            connection_timeout=_seconds(config.database.timeout or 20),
            response_timeout=_seconds(timeout),
            number_of_retries=2,
            max_delay=1,
        )
        self.backing = nautilus_pyo3.RedisCacheDatabase(
            trader_id=nautilus_pyo3.TraderId(trader_id),
            instance_id=nautilus_pyo3.UUID4.from_str(instance_id) if instance_id else nautilus_pyo3.UUID4(),
            config_json=msgspec.json.encode(settings),
        )

    def close(self) -> None:
        self.backing.close()

    def ids(self, collection: str, suffix: str = "") -> list[str]:
        """The ids of `collection` (`{trader_key}:{collection}:{id}{suffix}`),
        sorted."""
        head = f"{self.key}:{collection}:"
        out = []
        for k in self.backing.keys(f"{collection}:*"):
            if k.startswith(head) and k.endswith(suffix):
                out.append(k[len(head):len(k) - len(suffix)])
        return sorted(out)

    def _decode(self, what: str, raw: bytes, state: TheirState) -> Any:
        try:
            return self.serializer.deserialize(raw)
        except Exception as e:  # noqa: BLE001 (whatever their decoder raises is reported)
            state.issues.append(f"{what}: does not decode: {e!r}")
            return None

    def _list(self, collection: str, ident: str, state: TheirState) -> list[Any]:
        out = []
        for n, raw in enumerate(self.backing.read(f"{collection}:{ident}")):
            value = self._decode(f"{collection}:{ident} entry {n}", bytes(raw), state)
            if value is not None:
                out.append(value)
        return out

    def _value(self, collection: str, ident: str, state: TheirState) -> Any:
        raw = self.backing.read(f"{collection}:{ident}")
        return self._decode(f"{collection}:{ident}", bytes(raw[0]), state) if raw else None

    def _hash(self, key: str) -> dict[str, str]:
        raw = self.backing.read(key)
        return dict(msgspec.json.decode(bytes(raw[0]))) if raw else {}

    def read(self) -> TheirState:
        """Everything their loads would find, with every event."""
        state = TheirState(trader_key=self.key)
        for key in self.ids("general"):
            raw = self.backing.read(f"general:{key}")
            if raw:
                state.general[key] = bytes(raw[0])
        for code in self.ids("currencies"):
            c = self._value("currencies", code, state)
            if c is None:
                continue
            try:
                state.currencies.append(Currency(
                    code=code, precision=int(c["precision"]), iso4217=int(c["iso4217"]), name=c["name"],
                    currency_type=currency_type_from_str(c["currency_type"]),
                ))
            except Exception as e:  # noqa: BLE001
                state.issues.append(f"currencies:{code}: not a currency: {e!r}")
        for ident in self.ids("instruments"):
            inst = self._value("instruments", ident, state)
            if inst is not None:
                state.instruments[inst.id.value] = inst
        for ident in self.ids("synthetics"):
            synth = self._value("synthetics", ident, state)
            if synth is not None:
                state.synthetics.append(synth)
        for collection, into in (("accounts", state.accounts), ("orders", state.orders),
                                 ("positions", state.positions)):
            for ident in self.ids(collection):
                events = self._list(collection, ident, state)
                if events:
                    into[ident] = events
        for name, into in (("index:order_position", state.order_position), ("index:order_client", state.order_client)):
            try:
                into.update(self._hash(name))
            except RuntimeError as e:
                # 1.221.0 looks the index name up in the key with the
                # instance id in it (`Index unknown '{uuid}:index:…'`): with
                # `use_instance_id` their reader (and their node's start)
                # refuses both hashes.
                state.issues.append(f"{name}: Nautilus's reader refuses it: {e}")
        for collection, into in (("actors", state.actors), ("strategies", state.strategies)):
            for ident in self.ids(collection, ":state"):
                saved = self._value(collection, f"{ident}:state", state)
                if saved is not None:
                    into[ident] = saved
        for collection in LEFT:
            n = len(self.backing.keys(f"{collection}:*"))
            if n:
                state.left[collection] = n
        return state
