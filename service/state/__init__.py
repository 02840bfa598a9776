"""Shared state: pause flags, revocations, budgets and the durable audit trail.

One interface (``store``), two backends chosen by ``BROKER_STATE_URL``: ``sqlite:///path``
(embedded; budgets in process, so one worker process) and ``redis://...`` (shared by
every worker and instance). The durable audit trail is kept by the store, or by
PostgreSQL when ``BROKER_AUDIT_URL`` names one (``postgres``). A store or trail that
cannot be reached raises ``Unavailable``: issuance fails closed. Every store reads time
from the injected clock only (retention, partitions, stream IDs).
"""

from __future__ import annotations

from service.base.clock import Clock, system_clock
from service.base.errors import ConfigurationError
from service.state.store import (
    ACCOUNT_EVENTS,
    Admission,
    Admitted,
    AuditTrail,
    Outcome,
    Pause,
    PauseScope,
    RefusalCounts,
    RefusalKind,
    Refused,
    Retention,
    Spend,
    StateStore,
    Window,
)

__all__ = [
    "ACCOUNT_EVENTS",
    "Admission",
    "Admitted",
    "AuditTrail",
    "Outcome",
    "Pause",
    "PauseScope",
    "RefusalCounts",
    "RefusalKind",
    "Refused",
    "Retention",
    "Spend",
    "StateStore",
    "Window",
    "open_store",
    "open_trail",
]


def open_store(
    url: str, *, retention: Retention, create: bool = True, clock: Clock = system_clock
) -> StateStore:
    """The backend for ``url``: ``sqlite:///relative``, ``sqlite:////absolute`` or Redis.

    Without ``create``, a SQLite file that does not exist is an error (operator commands
    run elsewhere than the server must not make a store of their own).
    """
    if url.startswith("sqlite:"):
        from service.state.sqlite import SqliteStore

        return SqliteStore.from_url(url, retention=retention, create=create, clock=clock)
    if url.startswith(("redis", "rediss")):
        import redis

        from service.state.redis import RedisStore, connect
        from service.state.redis_cluster import ClusterRedisStore

        client = connect(url)
        if isinstance(client, redis.RedisCluster):  # one script may touch one slot only
            return ClusterRedisStore(client, retention=retention, clock=clock)
        return RedisStore(client, retention=retention, clock=clock)
    raise ConfigurationError([f"BROKER_STATE_URL scheme is not supported: {url.split(':', 1)[0]}"])


def open_trail(
    audit_url: str | None,
    store: StateStore,
    *,
    retention: Retention,
    clock: Clock = system_clock,
) -> AuditTrail:
    """Where the durable audit trail goes: PostgreSQL at ``audit_url``, else ``store``."""
    if audit_url is None:
        return store
    from service.state.postgres import PostgresTrail

    return PostgresTrail(audit_url, retention=retention, clock=clock)
