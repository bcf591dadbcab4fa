"""``migrate()``: a trader's state written by NautilusTrader's own Redis
backend, read once into tradecache's layout.

The documented step of switching a node from Nautilus's
``CacheDatabaseAdapter`` to ``TradecacheDatabase`` (README.md next to this
file, "Switching from Nautilus's own backend"). It is an explicit call, not
something the adapter does when it opens: it reads every key of the trader
(about a minute for 10,000 orders on a loaded 2-core machine), it must run
once while no node writes the old layout, and its outcome (what was found,
what did not decode) is for an operator to read, not for a node's log at
start.

How:

1. Their keys are read with Nautilus's own reader (``_their_layout``):
   every entity with every event, in the order written (all in memory:
   a trader's state, as their node's own start holds it).
2. Each entity is written through ``TradecacheDatabase``'s own methods,
   the calls a live ``Cache`` makes (an order: ``add_order`` with its
   position and client id, then ``update_order`` with its last event; an
   account: ``add_account`` and one ``update_account`` per later state; a
   position: ``add_position``), so what is stored is what the adapter
   would hold had the node run on tradecache from the start. Each entity
   is deleted first: a migration that stopped half way is run again.
3. Everything is waited for (acknowledged by Redis), then loaded back
   through the adapter's loads and compared with what was read, event by
   event; any difference raises ``MigrationError`` (nothing marked done).
4. A marker (``ntpy-migration:nautilus``, with the counts) is written and
   acknowledged: a second ``migrate()`` returns the report stored there and
   writes nothing (the node's newer state is never overwritten by the old
   layout).

The old keys are left as they were (switching back to Nautilus's adapter
finds its state as it was at the migration); delete them when no longer
wanted (README.md says which). Their state snapshots
(``snapshots:orders:*``, ``snapshots:positions:*``) stay there too: Nautilus
never reads them back, and its reader refuses them; the report counts them.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from typing import Any, Dict, List, Optional

import tradecache
from nautilus_trader.accounting.factory import AccountFactory
from nautilus_trader.cache.config import CacheConfig
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.model.enums import OrderType
from nautilus_trader.model.events import OrderInitialized
from nautilus_trader.model.identifiers import ClientId, ComponentId, PositionId, StrategyId, TraderId
from nautilus_trader.model.objects import Price
from nautilus_trader.model.orders import LimitOrder, MarketOrder
from nautilus_trader.model.orders.unpacker import OrderUnpacker
from nautilus_trader.model.position import Position

from ._database import COLLECTIONS, TradecacheDatabase, escape_id
from ._their_layout import TheirReader, TheirState, kernel_serializer

#: Where the migration records itself (one entity, id ``nautilus``).
MARKER_COLLECTION = "ntpy-migration"
_MARKER_ID = "nautilus"
#: The tradecache writer the migration writes as (never the node's).
MIGRATION_WRITER = "nautilus-migration"

#: The adapter's collections that hold a trader's state (a target holding
#: any of them already has a state of its own).
_STATE = ("general", "currencies", "instruments", "synthetics", "accounts", "orders", "positions", "actors",
          "strategies")


class MigrationError(tradecache.Error):
    """The migration could not be completed (nothing is marked done; it can
    be run again): the target already holds a state that no migration
    wrote, or what was written does not load back as it was read."""


@dataclasses.dataclass
class MigrationReport:
    """What ``migrate()`` found and wrote.

    ``counts``: entities (and events) read from their layout and written:
    ``general``, ``currencies``, ``instruments``, ``synthetics``,
    ``accounts``, ``account_events``, ``orders``, ``order_events``,
    ``positions``, ``position_fills``, ``actors``, ``strategies``.
    ``left``: keys of their layout that were not read, by collection
    (state snapshots, the heartbeat). ``issues``: values of their layout
    that did not decode or apply (skipped; Nautilus's own loads skip or
    fail on them too). ``already_done``: a migration had completed before;
    nothing was written, and the rest is that migration's report."""

    source: str
    already_done: bool = False
    counts: Dict[str, int] = dataclasses.field(default_factory=dict)
    left: Dict[str, int] = dataclasses.field(default_factory=dict)
    issues: List[str] = dataclasses.field(default_factory=list)
    completed_at: str = ""
    elapsed: float = 0.0


class _Saved:
    """What ``update_actor``/``update_strategy`` read of a component: its
    id and ``save()``."""

    def __init__(self, ident: Any, state: Dict[str, bytes]) -> None:
        self.id = ident
        self._state = state

    def save(self) -> Dict[str, bytes]:
        return self._state


def migrate(
    trader_id: Any,
    config: CacheConfig,
    *,
    instance_id: Optional[str] = None,
    source: Any = None,
    overwrite: bool = False,
    timeout: float = 60.0,
    **options: Any,
) -> MigrationReport:
    """Reads the state that Nautilus's own ``CacheDatabaseAdapter`` wrote for
    ``trader_id`` into tradecache's layout, once (module docstring).

    ``config`` is the node's ``CacheConfig`` (its ``database`` is where
    both layouts live, unless ``source``, a ``DatabaseConfig``, names
    another Redis for theirs; ``encoding`` and ``timestamps_as_iso8601``
    are how theirs was written). ``instance_id``: the instance whose keys to
    read when ``use_instance_id`` is set. ``options``: tradecache's own
    ``Cache`` keywords for the target, as for ``install()``
    (``flush_on_start`` is always off here, a write waits for room in the
    channel, ``overflow="block"``, and the writer is ``MIGRATION_WRITER``,
    so a node running on tradecache is never fenced by it). ``timeout`` bounds each wait for
    Redis. Stop the node that writes the old layout first.

    Returns a ``MigrationReport``. Raises ``MigrationError`` when the target
    already holds a state of its own that no migration wrote (pass
    ``overwrite=True`` to replace, entity by entity, what the old layout
    also holds) or when what was written does not load back as read;
    ``tradecache.Error`` when Redis refuses or times out; what Nautilus's
    reader raises (``RuntimeError``) when their keys cannot be read."""
    started = time.monotonic()
    trader = str(trader_id)
    src_config = config if source is None else _with_database(config, source)
    reader = TheirReader(trader, src_config, instance_id, timeout)
    options = dict(options)
    options["flush_on_start"] = False
    # It writes far faster than Redis takes it (a few writes per event):
    # each write waits for room in the bounded channel instead of failing.
    options["overflow"] = "block"
    options["block_timeout_ms"] = max(1, int(timeout * 1000))
    # A writer of its own: opening as the node's writer would fence a node
    # already running on tradecache (a second, no-op migrate() included).
    options["writer_id"] = MIGRATION_WRITER
    db = TradecacheDatabase(TraderId(trader), UUID4.from_str(instance_id) if instance_id else UUID4(),
                            kernel_serializer(config), config, **options)
    try:
        done = _marker(db, timeout)
        if done is not None and done.get("state") == "done":
            report = MigrationReport(source=reader.key, already_done=True, counts=dict(done.get("counts", {})),
                                     left=dict(done.get("left", {})), issues=list(done.get("issues", [])),
                                     completed_at=str(done.get("completed_at", "")))
            return report
        if done is None and not overwrite and _holds_state(db, timeout):
            raise MigrationError(
                f"tradecache already holds a state for trader {trader} that no migration wrote (a node ran on "
                "tradecache before): migrate() would mix the two; pass overwrite=True to replace, entity by "
                "entity, what the old layout also holds"
            )
        theirs = reader.read()
        report = MigrationReport(source=reader.key, left=dict(theirs.left), issues=list(theirs.issues))
        if theirs.empty:
            report.elapsed = time.monotonic() - started
            return report
        db.cache.wait(db.cache.put(MARKER_COLLECTION, _MARKER_ID, {"state": "started", "source": reader.key}),
                      timeout)
        expected = _write(db, theirs, report)
        db.wait(timeout)
        differences = _compare(db, expected)
        if differences:
            raise MigrationError(
                f"{len(differences)} difference(s) between the state read from {reader.key} and the one "
                "written (nothing marked done):\n" + "\n".join(differences[:20])
            )
        report.completed_at = datetime.datetime.now(datetime.timezone.utc).isoformat()
        report.elapsed = time.monotonic() - started
        marker = {"state": "done", "source": reader.key, "counts": report.counts, "left": report.left,
                  "issues": report.issues, "completed_at": report.completed_at}
        db.cache.wait(db.cache.put(MARKER_COLLECTION, _MARKER_ID, marker), timeout)
        return report
    finally:
        reader.close()
        db.close()


def _with_database(config: CacheConfig, database: Any) -> CacheConfig:
    fields = {f: getattr(config, f) for f in config.__struct_fields__}
    fields["database"] = database
    return CacheConfig(**fields)


def _marker(db: TradecacheDatabase, timeout: float) -> Optional[Dict[str, Any]]:
    value = db.cache.get(MARKER_COLLECTION, _MARKER_ID, timeout=timeout)
    return value if isinstance(value, dict) else None


def _holds_state(db: TradecacheDatabase, timeout: float) -> bool:
    snap = db.cache.load([COLLECTIONS[c] for c in _STATE], events=False, timeout=timeout)
    return any(snap.entities.get(COLLECTIONS[c]) for c in _STATE)


@dataclasses.dataclass
class _Expected:
    """The entities as rebuilt from their layout, to compare with the
    adapter's loads."""

    orders: Dict[str, Any] = dataclasses.field(default_factory=dict)
    positions: Dict[str, Any] = dataclasses.field(default_factory=dict)
    accounts: Dict[str, Any] = dataclasses.field(default_factory=dict)
    # client order id -> (position id, client id) as indexed
    order_indexes: Dict[str, tuple] = dataclasses.field(default_factory=dict)
    theirs: Optional[TheirState] = None


def _transform(order: Any, init: Any) -> Any:
    """What Nautilus's loads do with a later ``OrderInitialized`` (an
    emulated order released): the order transformed to its new type."""
    if init.order_type == OrderType.MARKET:
        return MarketOrder.transform_py(order, init.ts_init)
    if init.order_type == OrderType.LIMIT:
        return LimitOrder.transform_py(order, init.ts_init, Price.from_str(init.options["price"]))
    raise ValueError(f"cannot transform an order into {init.order_type}")


def _apply_all(kind: str, ident: str, entity: Any, events: List[Any], apply, issues: List[str]) -> Any:
    """Applies `events` to `entity` (each event id once, in order); an
    event that does not apply is skipped and reported."""
    seen = {e.id for e in getattr(entity, "events", [])}
    for event in events:
        if event.id in seen:
            issues.append(f"{kind}:{ident}: {type(event).__name__} {event.id} is in the log twice (applied once)")
            continue
        seen.add(event.id)
        try:
            entity = apply(entity, event)
        except Exception as e:  # noqa: BLE001 (reported; the rest still applies)
            issues.append(f"{kind}:{ident}: {type(event).__name__} does not apply: {type(e).__name__}: {e}")
    return entity


def _apply_order_event(order: Any, event: Any) -> Any:
    if isinstance(event, OrderInitialized):
        return _transform(order, event)
    order.apply(event)
    return order


def _apply_event(entity: Any, event: Any) -> Any:
    entity.apply(event)
    return entity


def _first(kind: str, ident: str, make, issues: List[str]) -> Any:
    """The entity built from its first event by `make`, or None (reported:
    the entity is not migrated)."""
    try:
        return make()
    except Exception as e:  # noqa: BLE001
        issues.append(f"{kind}:{ident}: {type(e).__name__}: {e} (not migrated)")
        return None


def _write(db: TradecacheDatabase, theirs: TheirState, report: MigrationReport) -> _Expected:
    """Queues every entity of `theirs` through the adapter's methods;
    returns the entities rebuilt (for the comparison)."""
    counts = report.counts
    expected = _Expected(theirs=theirs)
    for key, value in theirs.general.items():
        db.add(key, value)
    for currency in theirs.currencies:
        db.add_currency(currency)
    for instrument in theirs.instruments.values():
        db.add_instrument(instrument)
    for synthetic in theirs.synthetics:
        db.add_synthetic(synthetic)
    for ident, state in theirs.actors.items():
        db.update_actor(_Saved(ComponentId(ident), state))
    for ident, state in theirs.strategies.items():
        db.update_strategy(_Saved(StrategyId(ident), state))
    counts.update(general=len(theirs.general), currencies=len(theirs.currencies),
                  instruments=len(theirs.instruments), synthetics=len(theirs.synthetics),
                  actors=len(theirs.actors), strategies=len(theirs.strategies))
    expected.accounts = _write_accounts(db, theirs, report.issues)
    expected.orders = _write_orders(db, theirs, report.issues, expected.order_indexes)
    expected.positions = _write_positions(db, theirs, report.issues)
    for kind, events, entities in (("accounts", "account_events", expected.accounts),
                                   ("orders", "order_events", expected.orders),
                                   ("positions", "position_fills", expected.positions)):
        counts[kind] = len(entities)
        counts[events] = sum(len(e.events) for e in entities.values())
    return expected


def _write_accounts(db: TradecacheDatabase, theirs: TheirState, issues: List[str]) -> Dict[str, Any]:
    """An account: ``add_account`` with its first state, then one
    ``update_account`` per later state (appended or replacing, as
    ``persist_account_events`` says)."""

    def apply(account: Any, event: Any) -> Any:
        account.apply(event)
        db.update_account(account)
        return account

    out = {}
    for ident, events in theirs.accounts.items():
        account = _first("accounts", ident, lambda: AccountFactory.create(events[0]), issues)
        if account is None:
            continue
        db.cache.delete(COLLECTIONS["accounts"], escape_id(account.id.value))
        db.add_account(account)
        out[ident] = _apply_all("accounts", ident, account, events[1:], apply, issues)
    return out


def _write_orders(db: TradecacheDatabase, theirs: TheirState, issues: List[str],
                  indexes: Dict[str, tuple]) -> Dict[str, Any]:
    """An order: ``add_order`` with its position and client id and every
    event but the last, then ``update_order`` with the last one (its
    closed state and venue order id, as update_order records them); a
    transform as the last event is added whole."""
    out = {}
    for ident, events in theirs.orders.items():
        order = _first("orders", ident, lambda: OrderUnpacker.from_init(events[0]), issues)
        if order is None:
            continue
        position_id = theirs.order_position.get(ident)
        client_id = theirs.order_client.get(ident)
        rest = events[1:]
        last = rest[-1:] if rest and not isinstance(rest[-1], OrderInitialized) else []
        order = _apply_all("orders", ident, order, rest[: len(rest) - len(last)], _apply_order_event, issues)
        db.delete_order(order.client_order_id)
        db.add_order(order, PositionId(position_id) if position_id else None,
                     ClientId(client_id) if client_id else None)
        if last:
            n = order.event_count
            order = _apply_all("orders", ident, order, last, _apply_order_event, issues)
            if order.event_count > n:
                db.update_order(order)
        if position_id is None and order.position_id is not None:
            # Their hash unreadable (``use_instance_id``): the position its
            # fills name, as the node's ``build_index`` derives it.
            db.index_order_position(order.client_order_id, order.position_id)
            position_id = order.position_id.value
        out[ident] = order
        indexes[ident] = (position_id, client_id)
    return out


def _write_positions(db: TradecacheDatabase, theirs: TheirState, issues: List[str]) -> Dict[str, Any]:
    """A position: ``add_position`` with all its fills (it replaces what
    the adapter held for the id)."""
    out = {}
    for ident, fills in theirs.positions.items():
        instrument = theirs.instruments.get(fills[0].instrument_id.value)
        if instrument is None:
            issues.append(f"positions:{ident}: no instrument {fills[0].instrument_id} stored (not migrated)")
            continue
        position = _first("positions", ident, lambda: Position(instrument, fills[0]), issues)
        if position is None:
            continue
        position = _apply_all("positions", ident, position, fills[1:], _apply_event, issues)
        db.add_position(position)
        out[ident] = position
    return out


def _events(entity: Any) -> List[Any]:
    out = []
    for k, e in enumerate(entity.events):
        d = type(e).to_dict(e)
        if k and isinstance(e, OrderInitialized):
            d.pop("event_id")  # a transform: a new init id at each load (MarketOrder.transform)
        out.append(d)
    return out


def _compare(db: TradecacheDatabase, expected: _Expected) -> List[str]:
    """Differences between what was read and what the adapter's loads
    return for it (the target may hold more, with ``overwrite``)."""
    out: List[str] = []
    theirs = expected.theirs
    assert theirs is not None

    def same(what: str, want: Any, got: Any) -> None:
        if want != got:
            out.append(f"{what}: read {want!r}, loaded {got!r}")

    def each(kind: str, want: Dict[str, Any], got: Dict[str, Any], view) -> None:
        for ident, value in want.items():
            same(f"{kind}:{ident}", view(value), view(got[ident]) if ident in got else None)

    loaded = db.load_all()
    for kind, want in (("orders", expected.orders), ("positions", expected.positions),
                       ("accounts", expected.accounts)):
        each(kind, want, {k.value: v for k, v in loaded[kind].items()}, _events)
    each("currencies", {c.code: c for c in theirs.currencies}, loaded["currencies"],
         lambda c: (c.code, c.precision, c.iso4217, c.name, c.currency_type))
    each("instruments", theirs.instruments, {k.value: v for k, v in loaded["instruments"].items()},
         lambda i: type(i).to_dict(i))
    each("synthetics", {s.id.value: s for s in theirs.synthetics},
         {k.value: v for k, v in loaded["synthetics"].items()}, lambda s: type(s).to_dict(s))
    each("general", theirs.general, db.load(), lambda v: v)
    positions = {k.value: v.value for k, v in db.load_index_order_position().items()}
    clients = {k.value: v.value for k, v in db.load_index_order_client().items()}
    for ident, (position_id, client_id) in expected.order_indexes.items():
        same(f"orders:{ident} position, client", (position_id, client_id), (positions.get(ident), clients.get(ident)))
    for ident, state in theirs.actors.items():
        same(f"actors:{ident}", state, db.load_actor(ComponentId(ident)))
    for ident, state in theirs.strategies.items():
        same(f"strategies:{ident}", state, db.load_strategy(StrategyId(ident)))
    return out
