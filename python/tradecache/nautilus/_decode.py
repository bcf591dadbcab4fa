"""Rebuilding Nautilus events from their stored ``to_dict`` maps, faster
than the classes' own ``from_dict`` for the events a restart reads most
(fills, submissions, acceptances, account states): ``from_dict`` parses every identifier,
price, quantity and amount anew and validates each event id through
Python's ``uuid`` module (8 of an acceptance's 10 µs). Here, within one
load, equal strings are parsed once (identifiers, prices, quantities and
amounts are immutable values, so events may share them) and an event id
that has the exact shape of a version-4 UUID is taken without ``uuid``;
anything else goes through ``from_dict`` (which reports it)."""

from __future__ import annotations

import re
from typing import Any, Callable, Dict

from nautilus_trader.core.uuid import UUID4
from nautilus_trader.model.enums import account_type_from_str
from nautilus_trader.model.enums import liquidity_side_from_str
from nautilus_trader.model.enums import order_side_from_str
from nautilus_trader.model.enums import order_type_from_str
from nautilus_trader.model.events import AccountState
from nautilus_trader.model.events import OrderAccepted
from nautilus_trader.model.events import OrderFilled
from nautilus_trader.model.events import OrderSubmitted
from nautilus_trader.model.identifiers import AccountId
from nautilus_trader.model.identifiers import ClientOrderId
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.identifiers import PositionId
from nautilus_trader.model.identifiers import StrategyId
from nautilus_trader.model.identifiers import TradeId
from nautilus_trader.model.identifiers import TraderId
from nautilus_trader.model.identifiers import VenueOrderId
from nautilus_trader.model.objects import AccountBalance
from nautilus_trader.model.objects import Currency
from nautilus_trader.model.objects import MarginBalance
from nautilus_trader.model.objects import Money
from nautilus_trader.model.objects import Price
from nautilus_trader.model.objects import Quantity

_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")


def _uuid4(s: str) -> UUID4:
    if type(s) is str and _UUID4.match(s):
        u = UUID4.__new__(UUID4)
        u.__setstate__(s)
        return u
    return UUID4.from_str(s)  # raises for anything else


class _Memo(dict):
    """``memo[s]``: ``parse(s)``, computed once (a C-level lookup on a hit)."""

    __slots__ = ("parse",)

    def __init__(self, parse: Callable[[Any], Any]) -> None:
        super().__init__()
        self.parse = parse

    def __missing__(self, key: Any) -> Any:
        v = self[key] = self.parse(key)
        return v


class Decoder:
    """One load's decoder: ``decode(d)`` is ``cls.from_dict(d)``."""

    def __init__(self, from_dict: Dict[str, Callable[[dict], Any]]) -> None:
        self._from_dict = from_dict
        self._trader = _Memo(TraderId)
        self._strategy = _Memo(StrategyId)
        self._instrument = _Memo(InstrumentId.from_str)
        self._client_order = _Memo(ClientOrderId)
        self._venue_order = _Memo(VenueOrderId)
        self._account = _Memo(AccountId)
        self._position = _Memo(PositionId)
        self._side = _Memo(order_side_from_str)
        self._order_type = _Memo(order_type_from_str)
        self._liquidity = _Memo(liquidity_side_from_str)
        self._account_type = _Memo(account_type_from_str)
        self._qty = _Memo(Quantity.from_str)
        self._px = _Memo(Price.from_str)
        self._currency = _Memo(Currency.from_str)
        self._money_str = _Memo(Money.from_str)
        self._money = _Memo(lambda k: Money(k[0], self._currency[k[1]]))
        self._fast = {
            "OrderFilled": self._filled,
            "OrderAccepted": self._accepted,
            "OrderSubmitted": self._submitted,
            "AccountState": self._account_state,
        }

    def decode(self, d: dict) -> Any:
        kind = d.get("type")
        fast = self._fast.get(kind)  # type: ignore[arg-type]
        if fast is not None:
            try:
                return fast(d)
            except (KeyError, TypeError, ValueError):
                pass  # from_dict below reports it
        from_dict = self._from_dict.get(kind)  # type: ignore[arg-type]
        return d if from_dict is None else from_dict(d)

    def _filled(self, d: dict) -> OrderFilled:
        pid = d.get("position_id")
        return OrderFilled(
            trader_id=self._trader[d["trader_id"]],
            strategy_id=self._strategy[d["strategy_id"]],
            instrument_id=self._instrument[d["instrument_id"]],
            client_order_id=self._client_order[d["client_order_id"]],
            venue_order_id=self._venue_order[d["venue_order_id"]],
            account_id=self._account[d["account_id"]],
            trade_id=TradeId(d["trade_id"]),
            position_id=self._position[pid] if pid is not None else None,
            order_side=self._side[d["order_side"]],
            order_type=self._order_type[d["order_type"]],
            last_qty=self._qty[d["last_qty"]],
            last_px=self._px[d["last_px"]],
            currency=self._currency[d["currency"]],
            commission=self._money_str[d["commission"]],
            liquidity_side=self._liquidity[d["liquidity_side"]],
            event_id=_uuid4(d["event_id"]),
            ts_event=d["ts_event"],
            ts_init=d["ts_init"],
            info=d["info"],
            reconciliation=d.get("reconciliation", False),
        )

    def _accepted(self, d: dict) -> OrderAccepted:
        return OrderAccepted(
            trader_id=self._trader[d["trader_id"]],
            strategy_id=self._strategy[d["strategy_id"]],
            instrument_id=self._instrument[d["instrument_id"]],
            client_order_id=self._client_order[d["client_order_id"]],
            venue_order_id=self._venue_order[d["venue_order_id"]],
            account_id=self._account[d["account_id"]],
            event_id=_uuid4(d["event_id"]),
            ts_event=d["ts_event"],
            ts_init=d["ts_init"],
            reconciliation=d.get("reconciliation", False),
        )

    def _submitted(self, d: dict) -> OrderSubmitted:
        return OrderSubmitted(
            trader_id=self._trader[d["trader_id"]],
            strategy_id=self._strategy[d["strategy_id"]],
            instrument_id=self._instrument[d["instrument_id"]],
            client_order_id=self._client_order[d["client_order_id"]],
            account_id=self._account[d["account_id"]],
            event_id=_uuid4(d["event_id"]),
            ts_event=d["ts_event"],
            ts_init=d["ts_init"],
        )

    def _account_state(self, d: dict) -> AccountState:
        money = self._money
        base = d["base_currency"]
        balances = [
            AccountBalance(
                total=money[(b["total"], b["currency"])],
                locked=money[(b["locked"], b["currency"])],
                free=money[(b["free"], b["currency"])],
            )
            for b in d["balances"]
        ]
        margins = [
            MarginBalance(
                initial=money[(x["initial"], x["currency"])],
                maintenance=money[(x["maintenance"], x["currency"])],
                instrument_id=self._instrument[x["instrument_id"]] if x.get("instrument_id") is not None else None,
            )
            for x in d["margins"]
        ]
        return AccountState(
            account_id=self._account[d["account_id"]],
            account_type=self._account_type[d["account_type"]],
            base_currency=self._currency[base] if base is not None else None,
            reported=d["reported"],
            balances=balances,
            margins=margins,
            info=d["info"],
            event_id=_uuid4(d["event_id"]),
            ts_event=d["ts_event"],
            ts_init=d["ts_init"],
        )
