"""tradecache as the cache database of a NautilusTrader Python node.

``install()`` once, before the node (``TradingNode``, ``BacktestNode``,
``BacktestEngine``) is built: a node configured with
``CacheConfig(database=DatabaseConfig(type="redis", ...))`` then persists
through tradecache (``TradecacheDatabase``) instead of Nautilus's own
``CacheDatabaseAdapter``::

    import tradecache.nautilus
    tradecache.nautilus.install()            # tradecache's own options: env (REDIS_*/CACHE_*) or keywords
    node = TradingNode(config=TradingNodeConfig(cache=create_redis_cache_config(), ...))

Needs ``nautilus_trader`` (``pip install "tradecache[nautilus]"``); see
README.md next to this file for the mapping of every configuration field
and the semantics (no I/O on the calling thread, ``Full``/``Fenced``
raised from the ``Cache`` call, ``adapter_for(trader_id).wait()``).
"""

from __future__ import annotations

from typing import Any

try:
    import nautilus_trader  # noqa: F401
except ImportError as e:  # pragma: no cover - the test venv has it
    raise ImportError(
        "tradecache.nautilus needs nautilus_trader: pip install \"tradecache[nautilus]\""
    ) from e

from ._config import tradecache_options
from ._database import COLLECTIONS, TradecacheDatabase, adapter_for, escape_id

__all__ = ["TradecacheDatabase", "install", "adapter_for", "tradecache_options", "escape_id", "COLLECTIONS"]


def install(**options: Any) -> None:
    """Makes every node built afterwards in this process use
    ``TradecacheDatabase`` for ``DatabaseConfig(type="redis")``: rebinds
    ``nautilus_trader.system.kernel.CacheDatabaseAdapter``, the name the
    kernel builds its cache database by. ``options`` are tradecache's own
    (``Cache`` keywords: ``channel_capacity``, ``overflow``,
    ``replica_wait``, ``sentinels``, ``cluster``, ``tls_ca``, ``env``, …),
    given to every adapter built afterwards; they win over the node's
    configuration and the environment. Calling it again replaces them."""
    import nautilus_trader.system.kernel as kernel

    TradecacheDatabase.install_options = dict(options)
    kernel.CacheDatabaseAdapter = TradecacheDatabase
