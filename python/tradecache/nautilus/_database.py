"""``TradecacheDatabase``: Nautilus's ``CacheDatabaseFacade`` on
``tradecache.Cache``.

Writes: the calling thread turns the object into what is stored (by
default an event's ``to_dict`` map, packed by tradecache; instruments, and
everything with ``encoding="json"`` or ``timestamps_as_iso8601``, as the
node's own serializer's bytes) and queues it with ``put``/``append`` (no
I/O). Loads: one bulk ``Cache.load`` per call, of
the collections the call needs, then Nautilus's own rebuild (an order from
its ``OrderInitialized`` and its events, a position from its fills, an
account from its states).

Layout (``{trader}`` is ``trader-{trader_id}[:{instance_id}]``): every
collection starts with ``ntpy-`` (``COLLECTIONS``), so none collides with
tradecache's own model, the Rust adapter's ``nt-`` collections (whose
values are Nautilus's Rust serde forms, not the Python serializer's) or
Nautilus's own keys. Ids are Nautilus's ids with ``%``, ``:``, ``{``,
``}``, whitespace and control characters escaped as ``%XX`` (UTF-8).

Over 600 lines because it is one class, the unit Nautilus sees: the 43
methods of the facade (short each, writes then loads) and their helpers;
the event decoding that is not the facade's is in ``_decode``.
"""

from __future__ import annotations

import fnmatch
import functools
import gc
import re
import threading
import weakref
from typing import Any, Dict, List, Optional

import pandas as pd

import tradecache
from tradecache import Packed

from nautilus_trader.accounting.factory import AccountFactory
from nautilus_trader.cache.config import CacheConfig
from nautilus_trader.cache.facade import CacheDatabaseFacade
from nautilus_trader.common.component import Logger
from nautilus_trader.core.datetime import format_iso8601
from nautilus_trader.model.enums import OrderType
from nautilus_trader.model.enums import currency_type_from_str
from nautilus_trader.model.enums import currency_type_to_str
from nautilus_trader.model import events as _events
from nautilus_trader.model.events import AccountState
from nautilus_trader.model.events import OrderEvent
from nautilus_trader.model.events import OrderFilled
from nautilus_trader.model.events import OrderInitialized
from nautilus_trader.model.identifiers import ClientId
from nautilus_trader.model.identifiers import ClientOrderId
from nautilus_trader.model.identifiers import PositionId
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.model.instruments import SyntheticInstrument
from nautilus_trader.model.objects import Currency
from nautilus_trader.model.objects import Price
from nautilus_trader.model.orders import LimitOrder
from nautilus_trader.model.orders import MarketOrder
from nautilus_trader.model.orders.unpacker import OrderUnpacker
from nautilus_trader.model.position import Position

from ._config import tradecache_options
from ._decode import Decoder

#: Nautilus's data → tradecache collection. Values: the node serializer's
#: bytes unless said otherwise.
COLLECTIONS: Dict[str, str] = {
    "general": "ntpy-general",  # [key, bytes]: Cache.add(key, value)
    "currencies": "ntpy-currencies",  # {code, precision, iso4217, name, currency_type}
    "instruments": "ntpy-instruments",
    "synthetics": "ntpy-synthetics",
    "accounts": "ntpy-accounts",  # the first AccountState; events: later states
    "account_tombstones": "ntpy-account-tombstones",  # account id; events: deleted event ids (str)
    "orders": "ntpy-orders",  # the OrderInitialized; events: every later OrderEvent
    "positions": "ntpy-positions",  # the opening OrderFilled; events: later fills of this cycle
    "order_positions": "ntpy-index-order-positions",  # [client_order_id, position_id]
    "order_clients": "ntpy-index-order-clients",  # [client_order_id, client_id]
    "venue_order_ids": "ntpy-index-venue-order-ids",  # [client_order_id, venue_order_id]
    "order_snapshots": "ntpy-order-snapshots",  # client order id; events: every snapshot dict
    "position_snapshots": "ntpy-position-snapshots",  # position id; events: every snapshot dict
    "actors": "ntpy-actors",  # the actor's saved state
    "strategies": "ntpy-strategies",  # the strategy's saved state
    "health": "ntpy-health",  # "heartbeat": ISO 8601 text
}

_C = COLLECTIONS
_GENERAL = _C["general"]
_CURRENCIES = _C["currencies"]
_INSTRUMENTS = _C["instruments"]
_SYNTHETICS = _C["synthetics"]
_ACCOUNTS = _C["accounts"]
_TOMBSTONES = _C["account_tombstones"]
_ORDERS = _C["orders"]
_POSITIONS = _C["positions"]
_ORDER_POSITIONS = _C["order_positions"]
_ORDER_CLIENTS = _C["order_clients"]
_VENUE_ORDER_IDS = _C["venue_order_ids"]
_ORDER_SNAPSHOTS = _C["order_snapshots"]
_POSITION_SNAPSHOTS = _C["position_snapshots"]
_ACTORS = _C["actors"]
_STRATEGIES = _C["strategies"]
_HEALTH = _C["health"]

#: The events written on the hot path (orders, fills, account states),
#: stored as their ``to_dict`` (a MessagePack map) and read back with
#: ``from_dict``: a fifth of the serializer's time (it matches every key
#: against a regular expression and turns timestamps into text).
_NATIVE = {
    cls: cls.to_dict
    for cls in (
        getattr(_events, name)
        for name in (
            "OrderInitialized", "OrderDenied", "OrderEmulated", "OrderReleased", "OrderSubmitted",
            "OrderAccepted", "OrderRejected", "OrderCanceled", "OrderExpired", "OrderTriggered",
            "OrderPendingUpdate", "OrderPendingCancel", "OrderModifyRejected", "OrderCancelRejected",
            "OrderUpdated", "OrderFilled", "AccountState",
        )
    )
}
_FROM_NATIVE = {cls.__name__: cls.from_dict for cls in _NATIVE}

_INSTRUMENT_CLASS = {_INSTRUMENTS: Instrument, _SYNTHETICS: SyntheticInstrument}

_UNSAFE = re.compile(r"[%:{}\s\x00-\x1f\x7f]")


def _escape_char(m: "re.Match[str]") -> str:
    return "".join(f"%{b:02X}" for b in m.group(0).encode())


@functools.lru_cache(maxsize=4096)
def escape_id(s: str) -> str:
    """A Nautilus id as a tradecache id: ``%``, ``:``, ``{``, ``}``,
    whitespace and control characters as ``%XX`` (injective). Memoized
    (the last 4,096 ids): every write of an order, position or account
    escapes its id again, and a hit costs a fraction of the search."""
    if _UNSAFE.search(s) is None:
        return s
    return _UNSAFE.sub(_escape_char, s)


def _gc_paused(load: Any) -> Any:
    """Python's cyclic garbage collector paused while a bulk load rebuilds
    the node's objects (as ``Cache.load`` does while it builds the
    snapshot): they hold no cycles, yet every few hundred new objects set
    off a collection, and the older generations' walk the whole snapshot
    again and again (a restart of 10,000 orders took several times as long
    as one of 5,000). A collector the application turned off stays off."""

    @functools.wraps(load)
    def paused(*args: Any, **kwargs: Any) -> Any:
        was = gc.isenabled()
        gc.disable()
        try:
            return load(*args, **kwargs)
        finally:
            if was:
                gc.enable()

    return paused


_live_lock = threading.Lock()
_live: "weakref.WeakValueDictionary[str, TradecacheDatabase]" = weakref.WeakValueDictionary()


class TradecacheDatabase(CacheDatabaseFacade):
    """A ``CacheDatabaseFacade`` persisting through ``tradecache.Cache``,
    built with the kernel's signature ``(trader_id, instance_id,
    serializer, config)``; ``options`` are tradecache's own ``Cache``
    keywords (they win over ``install(**options)``, which win over the
    node's ``config`` and the environment).

    Writes raise what ``tradecache.Cache`` raises when it refuses one
    (``Full`` after the channel stayed full, ``Fenced`` after another node
    with the same trader id took over, ``Closed``): Nautilus's ``Cache``
    lets it propagate to the component that called it. Loads report
    values that no longer decode (logged, kept in ``load_issues()``) and
    skip them."""

    #: Options given to ``install()`` (the kernel passes none of ours).
    install_options: Dict[str, Any] = {}

    def __init__(
        self,
        trader_id: Any,
        instance_id: Any,
        serializer: Any,
        config: Optional[CacheConfig] = None,
        **options: Any,
    ) -> None:
        if config is None:
            config = CacheConfig()
        super().__init__(config)
        self._log = Logger(type(self).__name__)
        self._serializer = serializer
        self._serialize = serializer.serialize
        self._deserialize = serializer.deserialize
        # The default (msgpack, timestamps as nanoseconds): events and
        # dicts stored as MessagePack maps by tradecache itself; instruments
        # as the serializer's bytes. With encoding="json" or
        # timestamps_as_iso8601 everything is the serializer's bytes.
        native = (config.encoding or "msgpack").lower() == "msgpack" and not config.timestamps_as_iso8601
        self._native = native
        self._to = _NATIVE if native else {}
        self._persist_account_events = bool(config.persist_account_events)
        merged = dict(self.install_options)
        merged.update(options)
        env = merged.pop("env", True)
        self._load_timeout = float(merged.pop("load_timeout", 60.0))
        self._close_timeout = merged.pop("close_timeout", None)
        self.trader_id = str(trader_id)
        self._cache = tradecache.Cache(env=env, **tradecache_options(trader_id, instance_id, config, **merged))
        self._put = self._cache.put
        self._append = self._cache.append
        # The venue order id last indexed per order: update_order indexes
        # it only when it changed (one put per change, not per event).
        self._venue_ids: Dict[str, str] = {}
        # Per order: how many of its events its log holds (the order's
        # event count when it was last written or loaded). add_order and
        # update_order append only the events past it, so each event is
        # written once whatever the Cache's calls: the emulator and the
        # execution algorithms re-add a transformed order
        # (add_order(overwrite=True)) whose events begin with those already
        # written; an update_order with no new event appends nothing.
        self._order_events: Dict[str, int] = {}
        # The same per position (its fills), and per account the id of its
        # last state written: a call with nothing new writes nothing.
        self._position_events: Dict[str, int] = {}
        self._account_last: Dict[str, Any] = {}
        # Per open order (position) written by this adapter: its first
        # event and the value put for it, packed (a tradecache.Packed).
        # Its close puts those bytes again with closed=True (to move it to
        # the closed index) instead of packing the first event again (its
        # to_dict and pack, ~8 µs, on one update in four: the p99's tail).
        # One value per open entity; dropped at its close, delete_* and
        # flush(). Entities loaded at a start keep nothing (packed again
        # at their close, as before).
        self._order_first: Dict[str, tuple] = {}
        self._position_first: Dict[str, tuple] = {}
        # flush() deleted every stored account: an account not written
        # since starts again with its next state, as after add_account.
        self._flushed = False
        # The Cache's add_order indexes an order's position
        # (index_order_position) before it hands the order to add_order. A
        # pair indexed for an order not written yet is held here
        # (client order id -> (position id, escaped id)) and written right
        # after the order's first write: a crash keeps a prefix of the
        # writes, and a pair without its order fails the node's
        # check_integrity at its next start.
        self._held_positions: Dict[str, tuple] = {}
        # The last (client order id, position id) pair written: add_order
        # does not write it again.
        self._last_order_position: Optional[tuple] = None
        self._issues: List[tuple] = []
        self._unreadable: set = set()
        self._decoder = Decoder(_FROM_NATIVE)
        #: What close() could not persist (``Unpersisted.unpersisted``) and
        #: the error it met, if any.
        self.unpersisted = 0
        self.close_error: Optional[tradecache.Error] = None
        with _live_lock:
            _live[self.trader_id] = self

    # ---- tradecache's own: waiting, health ----

    @property
    def cache(self) -> tradecache.Cache:
        """The underlying ``tradecache.Cache``."""
        return self._cache

    def wait(self, timeout: float = 5.0) -> None:
        """Blocks (without the GIL) until every write accepted so far is
        acknowledged by Redis (applied by its ``EXEC``, and by
        ``replica_wait`` replicas when configured). Raises
        ``tradecache.WaitTimeout``, ``Dropped``, ``Fenced``."""
        self._cache.flush(timeout)

    def health(self) -> tradecache.Health:
        return self._cache.health()

    def stats(self) -> tradecache.Stats:
        return self._cache.stats()

    def take_dropped(self) -> List[Dict[str, Any]]:
        """Writes accepted and then dropped (fenced, too large, marker
        lost), taken once."""
        return self._cache.take_dropped()

    def load_issues(self) -> List[tuple]:
        """``(key, problem)`` for every value a load skipped since this
        adapter was built (also logged as errors)."""
        return list(self._issues)

    # ---- the facade: lifecycle ----

    def close(self) -> None:
        """Flushes and stops tradecache (bounded by ``close_timeout``,
        ``CACHE_CLOSE_TIMEOUT_MS`` by default): every accepted write is in
        Redis, or the error is logged and kept in ``close_error`` (with
        ``Unpersisted``, the count in ``unpersisted``); close never raises,
        so the node's dispose completes."""
        with _live_lock:
            if _live.get(self.trader_id) is self:
                del _live[self.trader_id]
        try:
            self._cache.close(self._close_timeout)
        except tradecache.Error as e:
            self.close_error = e
            if isinstance(e, tradecache.Unpersisted):
                self.unpersisted = e.unpersisted
            self._log.error(f"tradecache: close did not persist everything: {type(e).__name__}: {e}")

    def flush(self) -> None:
        """Deletes this trader's keys (tradecache's ``clear``: its own keys
        only, in order with the writes; never ``FLUSHDB``)."""
        n = self._cache.clear(self._load_timeout)
        self._venue_ids.clear()
        self._order_events.clear()
        self._position_events.clear()
        self._order_first.clear()
        self._position_first.clear()
        self._account_last.clear()
        self._flushed = True
        self._held_positions.clear()
        self._last_order_position = None
        self._log.info(f"Flushed {n} key(s) of this trader")

    @_gc_paused
    def keys(self, pattern: str = "*") -> List[str]:
        """This trader's keys written by this adapter that match the glob
        ``pattern`` (after ``{trader}:``), as full keys, built from one bulk
        load (no ``SCAN``, no ``KEYS``)."""
        snap = self._load(list(COLLECTIONS.values()))
        prefix = self._cache.key_prefix
        head = f"{prefix}:" if prefix else ""
        out = []
        for coll, entities in snap.entities.items():
            events = snap.events.get(coll, {})
            for id_ in entities:
                rest = f"{coll}:{id_}"
                if fnmatch.fnmatchcase(rest, pattern):
                    out.append(head + rest)
                if id_ in events and fnmatch.fnmatchcase(rest + ":events", pattern):
                    out.append(f"{head}{rest}:events")
        return out

    def heartbeat(self, timestamp: Any) -> None:
        self._put(_HEALTH, "heartbeat", format_iso8601(pd.Timestamp(timestamp)))

    # ---- writes ----

    def add(self, key: str, value: bytes) -> None:
        self._put(_GENERAL, escape_id(key), [key, value])

    def add_currency(self, currency: Currency) -> None:
        c_map = {
            "code": currency.code,
            "precision": currency.precision,
            "iso4217": currency.iso4217,
            "name": currency.name,
            "currency_type": currency_type_to_str(currency.currency_type),
        }
        self._put(_CURRENCIES, escape_id(currency.code), self._pack(c_map))

    def add_instrument(self, instrument: Any) -> None:
        self._put(_INSTRUMENTS, escape_id(instrument.id.value), self._serialize(instrument))

    def add_synthetic(self, synthetic: Any) -> None:
        self._put(_SYNTHETICS, escape_id(synthetic.id.value), self._serialize(synthetic))

    def add_account(self, account: Any) -> None:
        state = account.last_event
        self._put(_ACCOUNTS, escape_id(account.id.value), self._pack(state))
        self._account_last[account.id.value] = state.id

    def update_account(self, account: Any) -> None:
        """Appends the account's last state (``persist_account_events``);
        without it, the last state replaces the stored one."""
        state = account.last_event
        aid = account.id.value
        state_id = state.id
        last = self._account_last.get(aid)
        if last is None and self._flushed:
            # Its stored value went with flush(): this state is its first.
            self.add_account(account)
            return
        if last is not None and last == state_id:
            return  # written already (None: Nautilus's UUID4 == None raises)
        to = self._to.get(type(state))
        event = to(state) if to is not None else self._pack(state)
        if self._persist_account_events:
            self._append(_ACCOUNTS, escape_id(aid), event)
        else:
            # One write: a crash keeps the last state or this one, never neither.
            self._put(_ACCOUNTS, escape_id(aid), event, False, True)
        self._account_last[aid] = state_id

    def delete_account_event(self, account_id: Any, event_id: str) -> None:
        """Records the event id as deleted: loads leave that state out."""
        id_ = escape_id(account_id.value)
        self._put(_TOMBSTONES, id_, account_id.value)
        self._append(_TOMBSTONES, id_, str(event_id))

    def add_order(self, order: Any, position_id: Any = None, client_id: Any = None) -> None:
        """A new order: its initialization, then any events already
        applied (an order rebuilt from a report). An order already written
        (re-added transformed, or again): only its events not yet written."""
        coid = order.client_order_id.value
        # The Cache indexed the pair just before (index_order_position):
        # its escaped id is the one to use.
        held = self._held_positions.get(coid) if self._held_positions else None
        id_ = held[1] if held is not None else escape_id(coid)
        if order.event_count == 1 and coid not in self._order_events:
            self._write_new_order(coid, id_, order)  # (the usual case; writes a held pair)
        else:
            self._write_order(coid, id_, order)
        if position_id is not None and self._last_order_position != (coid, position_id.value):
            self._put_order_position(coid, position_id.value, id_)
        if client_id is not None:
            self._put(_ORDER_CLIENTS, id_, [coid, client_id.value])
        venue_order_id = order.venue_order_id
        if venue_order_id is not None:
            self.index_venue_order_id(order.client_order_id, venue_order_id)

    def update_order(self, order: Any) -> None:
        """Appends the order's new event (its last; every event not yet
        written, if several; none if none; never reads the log back); an
        order that closed leaves tradecache's open index; a new venue
        order id is indexed."""
        coid = order.client_order_id.value
        id_ = escape_id(coid)
        written = self._order_events.get(coid)
        if written is not None and order.event_count == written + 1:
            # The usual case, inline: one new event.
            event = order.last_event
            to = self._to.get(type(event))
            self._append(_ORDERS, id_, to(event) if to is not None else self._serialize(event))
            self._order_events[coid] = written + 1
        else:
            self._write_order(coid, id_, order)
        venue_order_id = order.venue_order_id
        if venue_order_id is not None and self._venue_ids.get(coid) != venue_order_id.value:
            self.index_venue_order_id(order.client_order_id, venue_order_id)
        if order.is_closed:
            kept = self._order_first.pop(coid, None)
            init = order.init_event
            value = kept[1] if kept is not None and kept[0] is init else self._pack(init)
            self._put(_ORDERS, id_, value, True)

    def _write_order(self, coid: str, id_: str, order: Any) -> None:
        """The order's events not yet written; all of them for an order
        this adapter has not written (or whose first write was refused)."""
        written = self._order_events.get(coid)
        if written is None:
            self._write_new_order(coid, id_, order)
            written = 1
        self._append_past(_ORDERS, id_, order, self._order_events, coid, written)

    def _write_new_order(self, coid: str, id_: str, order: Any) -> None:
        """Puts the order's initialization (its first event), in the
        closed index at once for an order written closed (added closed,
        say); for an open one the packed value is kept for its close."""
        init = order.init_event
        first = Packed(self._pack(init))
        closed = order.is_closed
        self._put(_ORDERS, id_, first, closed)
        if not closed:
            self._order_first[coid] = (init, first)
        self._order_events[coid] = 1
        if self._held_positions:
            held = self._held_positions.pop(coid, None)
            if held is not None:
                self._put(_ORDER_POSITIONS, id_, [coid, held[0]])
                self._last_order_position = (coid, held[0])

    def _append_past(self, coll: str, id_: str, entity: Any, counts: Dict[str, int], key: str, written: int) -> None:
        """Appends the events of ``entity`` (an order, a position) past
        its first ``written`` (the last one alone without copying the list,
        the usual case), counting each in ``counts[key]`` once queued: an
        append refused (``Full``) is made by the entity's next write."""
        count = entity.event_count
        if count == written + 1:
            event = entity.last_event
            to = self._to.get(type(event))
            self._append(coll, id_, to(event) if to is not None else self._serialize(event))
        elif count > written:
            for event in entity.events[written:]:
                self._append(coll, id_, self._pack(event))
                written += 1
                counts[key] = written
        counts[key] = count

    def index_venue_order_id(self, client_order_id: Any, venue_order_id: Any) -> None:
        coid = client_order_id.value
        self._venue_ids[coid] = venue_order_id.value
        self._put(_VENUE_ORDER_IDS, escape_id(coid), [coid, venue_order_id.value])

    def index_order_position(self, client_order_id: Any, position_id: Any) -> None:
        """Writes the pair; for an order not written yet (the Cache's
        add_order indexes the pair first), right after the order's first
        write, so Redis never holds the pair without its order."""
        coid = client_order_id.value
        id_ = escape_id(coid)
        if coid in self._order_events:
            self._put_order_position(coid, position_id.value, id_)
        else:
            self._held_positions[coid] = (position_id.value, id_)

    def _put_order_position(self, coid: str, pid: str, id_: str) -> None:
        self._put(_ORDER_POSITIONS, id_, [coid, pid])
        self._last_order_position = (coid, pid)

    def add_position(self, position: Any) -> None:
        """The position as it is (its log written anew)."""
        self._write_position(escape_id(position.id.value), position)

    def _write_position(self, id_: str, position: Any) -> None:
        pid = position.id.value
        self._position_events.pop(pid, None)
        self._position_first.pop(pid, None)
        opening = position.events[0]
        first = Packed(self._pack(opening))
        closed = position.is_closed
        # Its old log goes in the same write (restart): a crash keeps the
        # position as it was or as it is now, never neither.
        self._put(_POSITIONS, id_, first, closed, True)
        if not closed:
            self._position_first[pid] = (opening, first)
        self._position_events[pid] = 1
        self._append_past(_POSITIONS, id_, position, self._position_events, pid, 1)

    def update_position(self, position: Any) -> None:
        """Appends the fills not yet written (the last one, usually; none
        when none is new); a position whose fills started again (it
        reopened after it was flat: its first fill) or were purged is
        written anew; a closed one leaves tradecache's open index."""
        pid = position.id.value
        id_ = escape_id(pid)
        count = position.event_count
        written = self._position_events.get(pid)
        if written is None or count == 1 or count < written:
            self._write_position(id_, position)
            return
        if count == written + 1:
            # The usual case, inline: one new fill.
            event = position.last_event
            to = self._to.get(type(event))
            self._append(_POSITIONS, id_, to(event) if to is not None else self._serialize(event))
            self._position_events[pid] = count
        else:
            self._append_past(_POSITIONS, id_, position, self._position_events, pid, written)
        if position.is_closed:
            kept = self._position_first.pop(pid, None)
            opening = position.events[0]
            value = kept[1] if kept is not None and kept[0] is opening else self._pack(opening)
            self._put(_POSITIONS, id_, value, True)

    def update_actor(self, actor: Any) -> None:
        self._put(_ACTORS, escape_id(actor.id.value), self._pack(actor.save()))

    def update_strategy(self, strategy: Any) -> None:
        self._put(_STRATEGIES, escape_id(strategy.id.value), self._pack(strategy.save()))

    def snapshot_order_state(self, order: Any) -> None:
        coid = order.client_order_id.value
        id_ = escape_id(coid)
        self._put(_ORDER_SNAPSHOTS, id_, coid)
        self._append(_ORDER_SNAPSHOTS, id_, self._pack(order.to_dict()))

    def snapshot_position_state(self, position: Any, ts_snapshot: int, unrealized_pnl: Any = None) -> None:
        state = position.to_dict()
        if unrealized_pnl is not None:
            state["unrealized_pnl"] = str(unrealized_pnl)
        state["ts_snapshot"] = ts_snapshot
        pid = position.id.value
        id_ = escape_id(pid)
        self._put(_POSITION_SNAPSHOTS, id_, pid)
        self._append(_POSITION_SNAPSHOTS, id_, self._pack(state))

    def delete_order(self, client_order_id: Any) -> None:
        coid = client_order_id.value
        id_ = escape_id(coid)
        self._venue_ids.pop(coid, None)
        self._order_events.pop(coid, None)
        self._order_first.pop(coid, None)
        self._held_positions.pop(coid, None)
        self._last_order_position = None
        # The order last: a crash keeps a prefix of these, and an index
        # entry left without its order fails the node's check_integrity.
        for coll in (_ORDER_POSITIONS, _ORDER_CLIENTS, _VENUE_ORDER_IDS, _ORDER_SNAPSHOTS, _ORDERS):
            self._cache.delete(coll, id_)

    def delete_position(self, position_id: Any) -> None:
        id_ = escape_id(position_id.value)
        self._position_events.pop(position_id.value, None)
        self._position_first.pop(position_id.value, None)
        self._cache.delete(_POSITIONS, id_)
        self._cache.delete(_POSITION_SNAPSHOTS, id_)

    def delete_actor(self, component_id: Any) -> None:
        self._cache.delete(_ACTORS, escape_id(component_id.value))

    def delete_strategy(self, strategy_id: Any) -> None:
        self._cache.delete(_STRATEGIES, escape_id(strategy_id.value))

    def _pack(self, obj: Any) -> Any:
        """What is stored for ``obj``: an event's ``to_dict`` or a dict as
        it is (tradecache packs it), else the serializer's bytes."""
        to = self._to.get(type(obj))
        if to is not None:
            return to(obj)
        if self._native and type(obj) is dict:
            return obj
        return self._serialize(obj)

    # ---- loads ----

    def _load(self, collections: List[str]) -> tradecache.Snapshot:
        snap = self._cache.load(collections, events=True, timeout=self._load_timeout)
        self._decoder = Decoder(_FROM_NATIVE)  # one load's memo of parsed strings
        # Keys whose value or log could not be read at all: an entity
        # whose log is one of them is skipped (never rebuilt from part of
        # its history).
        self._unreadable = set()
        for key, problem in snap.report.get("issues", []):
            self._unreadable.add(key)
            self._issue(key, problem)
        return snap

    def _log_unreadable(self, coll: str, id_: str) -> bool:
        key = self._key(coll, id_)
        if key + ":events" in self._unreadable:
            self._issue(key, "skipped: its event log could not be read")
            return True
        return False

    def _issue(self, key: str, problem: str) -> None:
        self._issues.append((key, problem))
        self._log.error(f"tradecache: skipped {key}: {problem}")

    def _key(self, coll: str, id_: str) -> str:
        prefix = self._cache.key_prefix
        return f"{prefix}:{coll}:{id_}" if prefix else f"{coll}:{id_}"

    def _decode(self, coll: str, id_: str, value: Any, cls: Any = None) -> Any:
        """The object of a stored value (of class ``cls`` when given), or
        None (reported)."""
        try:
            if isinstance(value, bytes):
                obj = self._deserialize(value)
            elif isinstance(value, dict):
                obj = self._decoder.decode(value)
            else:
                raise ValueError(f"not a stored Nautilus value: {type(value).__name__}")
            if cls is not None and not isinstance(obj, cls):
                raise ValueError(f"a {type(obj).__name__}, not a {cls.__name__}")
            return obj
        except Exception as e:  # noqa: BLE001 - any bad value is reported and skipped
            self._issue(self._key(coll, id_), f"{type(e).__name__}: {e}")
            return None

    @_gc_paused
    def load_all(self) -> Dict[str, Dict[Any, Any]]:
        """Currencies, instruments, synthetics, accounts, orders and
        positions in one bulk load (``Cache.cache_all``)."""
        snap = self._load([_CURRENCIES, _INSTRUMENTS, _SYNTHETICS, _ACCOUNTS, _TOMBSTONES, _ORDERS, _POSITIONS])
        instruments = self._instruments_of(snap, _INSTRUMENTS)
        return {
            "currencies": self._currencies_of(snap),
            "instruments": instruments,
            "synthetics": self._instruments_of(snap, _SYNTHETICS),
            "accounts": self._accounts_of(snap),
            "orders": self._orders_of(snap),
            "positions": self._positions_of(snap, instruments),
        }

    @_gc_paused
    def load(self) -> Dict[str, bytes]:
        """The general entries (``Cache.add``): key → bytes."""
        snap = self._load([_GENERAL])
        out = {}
        for id_, v in snap[_GENERAL].items():
            if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], bytes):
                out[v[0]] = v[1]
            else:
                self._issue(self._key(_GENERAL, id_), "not a [key, bytes] pair")
        return out

    @_gc_paused
    def load_currencies(self) -> Dict[str, Currency]:
        return self._currencies_of(self._load([_CURRENCIES]))

    def _currencies_of(self, snap: tradecache.Snapshot) -> Dict[str, Currency]:
        out = {}
        for id_, v in snap[_CURRENCIES].items():
            c = self._currency(id_, v)
            if c is not None:
                out[c.code] = c
        return out

    def _currency(self, id_: str, v: Any) -> Optional[Currency]:
        m = self._decode(_CURRENCIES, id_, v, dict)
        if m is None:
            return None
        try:
            return Currency(
                code=m["code"],
                precision=int(m["precision"]),
                iso4217=int(m["iso4217"]),
                name=m["name"],
                currency_type=currency_type_from_str(m["currency_type"]),
            )
        except Exception as e:  # noqa: BLE001
            self._issue(self._key(_CURRENCIES, id_), f"{type(e).__name__}: {e}")
            return None

    @_gc_paused
    def load_instruments(self) -> Dict[Any, Any]:
        return self._instruments_of(self._load([_INSTRUMENTS]), _INSTRUMENTS)

    @_gc_paused
    def load_synthetics(self) -> Dict[Any, Any]:
        return self._instruments_of(self._load([_SYNTHETICS]), _SYNTHETICS)

    def _instruments_of(self, snap: tradecache.Snapshot, coll: str) -> Dict[Any, Any]:
        out = {}
        for id_, v in snap[coll].items():
            inst = self._decode(coll, id_, v, _INSTRUMENT_CLASS[coll])
            if inst is not None:
                out[inst.id] = inst
        return out

    @_gc_paused
    def load_accounts(self) -> Dict[Any, Any]:
        return self._accounts_of(self._load([_ACCOUNTS, _TOMBSTONES]))

    def _accounts_of(self, snap: tradecache.Snapshot) -> Dict[Any, Any]:
        out = {}
        events = snap.events.get(_ACCOUNTS, {})
        tombstones = snap.events.get(_TOMBSTONES, {})
        for id_, v in snap[_ACCOUNTS].items():
            if self._log_unreadable(_ACCOUNTS, id_):
                continue
            account = self._account(id_, v, events.get(id_, ()), set(tombstones.get(id_, ())))
            if account is not None:
                out[account.id] = account
        return out

    def _account(self, id_: str, value: Any, events: Any, deleted: set) -> Any:
        states = []
        for raw in (value, *events):
            state = self._decode(_ACCOUNTS, id_, raw, AccountState)
            if state is not None and state.id.value not in deleted:
                states.append(state)
        if not states:
            return None
        try:
            account = AccountFactory.create(states[0])
        except Exception as e:  # noqa: BLE001
            self._issue(self._key(_ACCOUNTS, id_), f"{type(e).__name__}: {e}")
            return None
        for state in states[1:]:
            try:
                account.apply(state)
            except Exception as e:  # noqa: BLE001
                self._issue(self._key(_ACCOUNTS, id_) + ":events", f"{type(e).__name__}: {e}")
        self._account_last[account.id.value] = account.last_event.id
        return account

    @_gc_paused
    def load_orders(self) -> Dict[Any, Any]:
        return self._orders_of(self._load([_ORDERS]))

    def _orders_of(self, snap: tradecache.Snapshot) -> Dict[Any, Any]:
        out = {}
        events = snap.events.get(_ORDERS, {})
        for id_, v in snap[_ORDERS].items():
            if self._log_unreadable(_ORDERS, id_):
                continue
            order = self._order(id_, v, events.get(id_, ()))
            if order is not None:
                out[order.client_order_id] = order
        return out

    def _order(self, id_: str, value: Any, events: Any) -> Any:
        init = self._decode(_ORDERS, id_, value, OrderInitialized)
        if init is None:
            return None
        try:
            order = OrderUnpacker.from_init(init)
        except Exception as e:  # noqa: BLE001
            self._issue(self._key(_ORDERS, id_), f"{type(e).__name__}: {e}")
            return None
        for raw in events:
            event = self._decode(_ORDERS, id_ + ":events", raw, OrderEvent)
            if event is None:
                continue
            try:
                if isinstance(event, OrderInitialized):
                    # A transformed order (emulated, then released).
                    if event.order_type == OrderType.MARKET:
                        order = MarketOrder.transform_py(order, event.ts_init)
                    elif event.order_type == OrderType.LIMIT:
                        price = Price.from_str(event.options["price"])
                        order = LimitOrder.transform_py(order, event.ts_init, price)
                    else:
                        raise ValueError(f"cannot transform an order to {event.order_type}")
                else:
                    order.apply(event)
            except Exception as e:  # noqa: BLE001
                self._issue(self._key(_ORDERS, id_) + ":events", f"{type(event).__name__}: {type(e).__name__}: {e}")
        self._order_events[order.client_order_id.value] = order.event_count
        return order

    @_gc_paused
    def load_positions(self) -> Dict[Any, Any]:
        snap = self._load([_POSITIONS, _INSTRUMENTS])
        return self._positions_of(snap, self._instruments_of(snap, _INSTRUMENTS))

    def _positions_of(self, snap: tradecache.Snapshot, instruments: Dict[Any, Any]) -> Dict[Any, Any]:
        out = {}
        events = snap.events.get(_POSITIONS, {})
        for id_, v in snap[_POSITIONS].items():
            if self._log_unreadable(_POSITIONS, id_):
                continue
            position = self._position(id_, v, events.get(id_, ()), instruments)
            if position is not None:
                out[position.id] = position
        return out

    def _position(self, id_: str, value: Any, events: Any, instruments: Dict[Any, Any]) -> Any:
        first = self._decode(_POSITIONS, id_, value, OrderFilled)
        if first is None:
            return None
        instrument = instruments.get(first.instrument_id)
        if instrument is None:
            self._issue(self._key(_POSITIONS, id_), f"no instrument {first.instrument_id} stored")
            return None
        try:
            position = Position(instrument, first)
        except Exception as e:  # noqa: BLE001
            self._issue(self._key(_POSITIONS, id_), f"{type(e).__name__}: {e}")
            return None
        for raw in events:
            fill = self._decode(_POSITIONS, id_ + ":events", raw, OrderFilled)
            if fill is None:
                continue
            try:
                position.apply(fill)
            except Exception as e:  # noqa: BLE001
                self._issue(self._key(_POSITIONS, id_) + ":events", f"{type(e).__name__}: {e}")
        self._position_events[position.id.value] = position.event_count
        return position

    @_gc_paused
    def load_index_order_position(self) -> Dict[Any, Any]:
        snap = self._load([_ORDER_POSITIONS])
        return {ClientOrderId(v[0]): PositionId(v[1]) for v in self._pairs(snap, _ORDER_POSITIONS)}

    @_gc_paused
    def load_index_order_client(self) -> Dict[Any, Any]:
        snap = self._load([_ORDER_CLIENTS])
        return {ClientOrderId(v[0]): ClientId(v[1]) for v in self._pairs(snap, _ORDER_CLIENTS)}

    def _pairs(self, snap: tradecache.Snapshot, coll: str) -> List[Any]:
        out = []
        for id_, v in snap[coll].items():
            if isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) and x for x in v):
                out.append(v)
            else:
                self._issue(self._key(coll, id_), "not a pair of ids")
        return out

    def _get(self, coll: str, id_: str) -> Any:
        self._decoder = Decoder(_FROM_NATIVE)
        return self._cache.get(coll, id_, timeout=self._load_timeout)

    def load_currency(self, code: str) -> Optional[Currency]:
        id_ = escape_id(code)
        v = self._get(_CURRENCIES, id_)
        return None if v is None else self._currency(id_, v)

    def load_instrument(self, instrument_id: Any) -> Any:
        return self._one(_INSTRUMENTS, escape_id(instrument_id.value), Instrument)

    def load_synthetic(self, instrument_id: Any) -> Any:
        if not instrument_id.is_synthetic():
            raise ValueError("instrument_id was not for a synthetic instrument")
        return self._one(_SYNTHETICS, escape_id(instrument_id.value), SyntheticInstrument)

    def _one(self, coll: str, id_: str, cls: Any = None) -> Any:
        v = self._get(coll, id_)
        return None if v is None else self._decode(coll, id_, v, cls)

    def load_account(self, account_id: Any) -> Any:
        id_ = escape_id(account_id.value)
        v = self._get(_ACCOUNTS, id_)
        if v is None:
            return None
        events = self._cache.get_events(_ACCOUNTS, id_, timeout=self._load_timeout)
        deleted = set(self._cache.get_events(_TOMBSTONES, id_, timeout=self._load_timeout))
        return self._account(id_, v, events, deleted)

    def load_order(self, client_order_id: Any) -> Any:
        id_ = escape_id(client_order_id.value)
        v = self._get(_ORDERS, id_)
        if v is None:
            return None
        return self._order(id_, v, self._cache.get_events(_ORDERS, id_, timeout=self._load_timeout))

    def load_position(self, position_id: Any) -> Any:
        id_ = escape_id(position_id.value)
        v = self._get(_POSITIONS, id_)
        if v is None:
            return None
        first = self._decode(_POSITIONS, id_, v, OrderFilled)
        if first is None:
            return None
        instrument = self.load_instrument(first.instrument_id)
        instruments = {} if instrument is None else {instrument.id: instrument}
        events = self._cache.get_events(_POSITIONS, id_, timeout=self._load_timeout)
        return self._position(id_, v, events, instruments)

    def load_actor(self, component_id: Any) -> Dict[str, Any]:
        return self._state(_ACTORS, escape_id(component_id.value))

    def load_strategy(self, strategy_id: Any) -> Dict[str, Any]:
        return self._state(_STRATEGIES, escape_id(strategy_id.value))

    def _state(self, coll: str, id_: str) -> Dict[str, Any]:
        state = self._one(coll, id_, dict)
        return state if isinstance(state, dict) else {}


def adapter_for(trader_id: Any) -> Optional[TradecacheDatabase]:
    """The open ``TradecacheDatabase`` of ``trader_id`` in this process
    (the most recently built), or None."""
    return _live.get(str(trader_id))
