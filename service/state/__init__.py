"""Shared state: pause flags, revocations, budgets and the durable audit trail.

One interface (``store``), two backends chosen by ``BROKER_STATE_URL``: ``sqlite:///path``
(embedded; budgets in process, so one worker process) and ``redis://...`` (shared by
every worker and instance). The durable audit trail is kept by the store, or by
PostgreSQL when ``BROKER_AUDIT_URL`` names one (``postgres``). A store or trail that
cannot be reached raises ``Unavailable``: issuance fails closed.
"""

from __future__ import annotations

from service.errors import ConfigurationError
from service.state.store import (
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


def open_store(url: str, *, retention: Retention, create: bool = True) -> StateStore:
    """The backend for ``url``: ``sqlite:///relative``, ``sqlite:////absolute`` or Redis.

    Without ``create``, a SQLite file that does not exist is an error (operator commands
    run elsewhere than the server must not make a store of their own).
    """
    if url.startswith("sqlite:"):
        from service.state.sqlite import SqliteStore

        return SqliteStore.from_url(url, retention=retention, create=create)
    if url.startswith(("redis", "rediss")):
        from service.state.redis import RedisStore

        return RedisStore.from_url(url, retention=retention)
    raise ConfigurationError([f"BROKER_STATE_URL scheme is not supported: {url.split(':', 1)[0]}"])


def open_trail(audit_url: str | None, store: StateStore, *, retention: Retention) -> AuditTrail:
    """Where the durable audit trail goes: PostgreSQL at ``audit_url``, else ``store``."""
    if audit_url is None:
        return store
    from service.state.postgres import PostgresTrail

    return PostgresTrail(audit_url, retention=retention)
