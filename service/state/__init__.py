"""Shared state: the pause flag, revocations, the durable audit trail and rate-limit storage.

One interface, two backends chosen by ``BROKER_STATE_URL``: ``sqlite:///path``
(embedded; rate limits in process, so one worker process) and ``redis://...`` (shared by
every worker and instance). A store that cannot be reached raises ``Unavailable``:
issuance fails closed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from limits.storage import MovingWindowSupport

from service.clock import Clock, system_clock
from service.errors import ConfigurationError

#: How stale the pause flag and revocations may be in one process (the "within one
#: second" promise, with room for the request in flight).
CONTROLS_MAX_AGE_SECONDS = 0.5


PauseScope = Literal["all", "voice_outgoing"]


@dataclass(frozen=True)
class Pause:
    reason: str
    since: datetime


@dataclass(frozen=True)
class Controls:
    """The operator's switches as of one read of the store."""

    pause: Pause | None
    #: "identity:NAME" or "client:ID" -> epoch seconds of the revocation
    revocations: Mapping[str, float]
    #: a pause of Voice tokens that can place calls (and of the calls themselves) only
    voice_outgoing_pause: Pause | None = None

    def revoked_at(self, identity: str, client: str | None) -> float | None:
        """When the latest revocation that covers this identity or client happened."""
        times = [self.revocations.get(f"identity:{identity}")]
        if client is not None:
            times.append(self.revocations.get(f"client:{client}"))
        found = [moment for moment in times if moment is not None]
        return max(found) if found else None


class StateStore(Protocol):
    """What every backend provides. Every method may raise ``Unavailable``."""

    #: True when rate limits are kept in this process, so only one worker may run.
    in_process_limits: bool

    def read_controls(self) -> Controls: ...

    def pause(self, reason: str, at: datetime, *, scope: PauseScope = "all") -> None: ...

    def resume(self) -> None: ...

    def revoke(self, subject: str, at: datetime) -> None: ...

    def unrevoke(self, subject: str) -> bool: ...

    def append_audit(self, at: datetime, line: str) -> None: ...

    def audit_lines(self, since: datetime | None, limit: int) -> list[str]: ...

    def ping(self) -> None: ...

    def limits_storage(self) -> MovingWindowSupport: ...


class CachedControls:
    """The store's controls, read at most once per ``max_age`` seconds per process.

    ``on_read`` is called with each fresh read (the metrics' paused gauge follows it).
    """

    def __init__(
        self,
        store: StateStore,
        *,
        clock: Clock = system_clock,
        max_age: float = CONTROLS_MAX_AGE_SECONDS,
        on_read: Callable[[Controls], None] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._max_age = max_age
        self._on_read = on_read
        self._lock = threading.Lock()
        self._controls: Controls | None = None
        self._read_at = clock()

    def current(self) -> Controls:
        """Fresh enough controls; raise ``Unavailable`` when the store cannot be read."""
        controls = self._controls
        if controls is not None and self._fresh():
            return controls
        with self._lock:
            if self._controls is None or not self._fresh():
                self._controls = self._store.read_controls()
                self._read_at = self._clock()
                if self._on_read is not None:
                    self._on_read(self._controls)
            return self._controls

    def _fresh(self) -> bool:
        # A clock that went backwards makes the copy stale, never fresher.
        age = (self._clock() - self._read_at).total_seconds()
        return 0 <= age < self._max_age


def open_store(url: str, *, audit_retention_days: int) -> StateStore:
    """The backend for ``url``: ``sqlite:///relative``, ``sqlite:////absolute`` or Redis."""
    if url.startswith("sqlite:"):
        from service.state.sqlite import SqliteStore

        return SqliteStore.from_url(url, audit_retention_days=audit_retention_days)
    if url.startswith(("redis", "rediss")):
        from service.state.redis import RedisStore

        return RedisStore.from_url(url, audit_retention_days=audit_retention_days)
    raise ConfigurationError([f"BROKER_STATE_URL scheme is not supported: {url.split(':', 1)[0]}"])
