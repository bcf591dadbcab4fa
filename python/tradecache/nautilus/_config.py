"""The node's ``CacheConfig``/``DatabaseConfig`` as ``tradecache.Cache``
options (the table in README.md says what maps to what)."""

from __future__ import annotations

from typing import Any, Dict

import tradecache


def tradecache_options(trader_id: Any, instance_id: Any, config: Any, **overrides: Any) -> Dict[str, Any]:
    """The keyword arguments of ``tradecache.Cache`` for a node with
    ``trader_id``, ``instance_id`` and ``config`` (a ``CacheConfig``).

    What the node's configuration states is passed; what it leaves unset
    (``host=None``, ``buffer_interval_ms=None``) is left to the environment
    (``REDIS_*``/``CACHE_*``, read by ``Cache(env=True)``) and tradecache's
    defaults. ``overrides`` (tradecache's own options: ``url``,
    ``sentinels``, ``cluster``, ``replica_wait``, ``channel_capacity``,
    ``overflow``, ``tls_ca``, …) win over both. Raises
    ``tradecache.ConfigError`` for a database type other than ``redis``."""
    opts: Dict[str, Any] = {}
    db = getattr(config, "database", None)
    if db is not None:
        kind = (getattr(db, "type", None) or "redis").lower()
        if kind != "redis":
            raise tradecache.ConfigError(
                f"DatabaseConfig.type: tradecache serves 'redis' databases, got {kind!r}"
            )
        for field, option in (
            ("host", "host"),
            ("port", "port"),
            ("username", "username"),
            ("password", "password"),
            ("timeout", "timeout"),
        ):
            value = getattr(db, field, None)
            if value is not None:
                opts[option] = value
        if getattr(db, "ssl", False):
            opts["ssl"] = True
    opts["trader_id"] = str(trader_id)
    if instance_id is not None:
        opts["instance_id"] = str(instance_id)
    for field in ("use_trader_prefix", "use_instance_id", "flush_on_start", "persist_account_events"):
        value = getattr(config, field, None)
        if value is not None:
            opts[field] = bool(value)
    # buffer_interval_ms is the most a write may wait before it is sent.
    # tradecache's flusher sends each batch as soon as it is free (batches
    # grow with the load by themselves), which always meets that bound, so
    # it is not turned into a linger (a linger of 100 ms would hold every
    # batch, and every wait() after a fill, for 100 ms). To linger anyway:
    # install(buffer_interval_ms=...) or CACHE_BUFFER_INTERVAL_MS.
    for field in ("tick_capacity", "bar_capacity"):
        value = getattr(config, field, None)
        if value is not None:
            opts[field] = int(value)
    opts.update(overrides)
    return opts
