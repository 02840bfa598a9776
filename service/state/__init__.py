"""Shared state: pause flags, revocations, budgets and the durable audit trail.

One interface (``store``), two backends chosen by ``BROKER_STATE_URL``: ``sqlite:///path``
(embedded; budgets in process, so one worker process) and ``redis://...`` (shared by
every worker and instance). A store that cannot be reached raises ``Unavailable``:
issuance fails closed.
"""

from __future__ import annotations

from service.errors import ConfigurationError
from service.state.store import (
    Admission,
    Admitted,
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
