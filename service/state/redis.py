"""Shared state in Redis: every worker of every instance sees the same switches and budgets.

The client comes from ``limits``' own Redis storage, so every URL form it accepts
(``redis://``, ``rediss://``, ``redis+unix://``, ``redis+sentinel://``,
``redis+cluster://``) works, and rate limits and state share one connection pool. Keys
carry one hash tag so that a cluster keeps them in one slot.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from limits.storage import MovingWindowSupport, Storage, storage_from_string

from service.errors import ConfigurationError, Unavailable
from service.state import Controls, Pause, PauseScope

PREFIX = "{token-broker}:"
PAUSE_KEY = PREFIX + "pause"
VOICE_PAUSE_KEY = PREFIX + "pause:voice_outgoing"
REVOCATIONS_KEY = PREFIX + "revocations"
AUDIT_KEY = PREFIX + "audit"
TIMEOUT_SECONDS = 0.5


class RedisStore:
    in_process_limits = False

    def __init__(self, storage: MovingWindowSupport, *, audit_retention_days: int) -> None:
        self._storage = storage
        self._client: Any = storage.get_connection()  # type: ignore[attr-defined]  # every limits Redis storage has it
        self._retention = timedelta(days=audit_retention_days)

    def __repr__(self) -> str:
        return "RedisStore()"

    @classmethod
    def from_url(cls, url: str, *, audit_retention_days: int) -> RedisStore:
        storage = storage_from_string(
            url,
            wrap_exceptions=True,
            socket_timeout=TIMEOUT_SECONDS,
            socket_connect_timeout=TIMEOUT_SECONDS,
        )
        if not isinstance(storage, Storage) or not isinstance(storage, MovingWindowSupport):
            # an async storage, or one without moving windows: not for this server
            raise ConfigurationError(["BROKER_STATE_URL must name a synchronous Redis storage"])
        return cls(storage, audit_retention_days=audit_retention_days)

    def _call(self, operation: str, *arguments: Any, **options: Any) -> Any:
        try:
            return getattr(self._client, operation)(*arguments, **options)
        except (redis.RedisError, OSError):
            raise Unavailable("the Redis state store cannot be reached") from None

    def read_controls(self) -> Controls:
        try:
            pipeline = self._client.pipeline(transaction=False)
            pipeline.hgetall(PAUSE_KEY)
            pipeline.hgetall(REVOCATIONS_KEY)
            pipeline.hgetall(VOICE_PAUSE_KEY)
            pause_fields, revocations, voice_fields = pipeline.execute()
        except (redis.RedisError, OSError):
            raise Unavailable("the Redis state store cannot be reached") from None
        return Controls(
            pause=_pause(pause_fields),
            revocations={key.decode(): float(value) for key, value in revocations.items()},
            voice_outgoing_pause=_pause(voice_fields),
        )

    def pause(self, reason: str, at: datetime, *, scope: PauseScope = "all") -> None:
        key = PAUSE_KEY if scope == "all" else VOICE_PAUSE_KEY
        self._call("hset", key, mapping={"reason": reason, "since": at.timestamp()})

    def resume(self) -> None:
        self._call("delete", PAUSE_KEY, VOICE_PAUSE_KEY)

    def revoke(self, subject: str, at: datetime) -> None:
        self._call("hset", REVOCATIONS_KEY, subject, at.timestamp())

    def unrevoke(self, subject: str) -> bool:
        return bool(self._call("hdel", REVOCATIONS_KEY, subject))

    def append_audit(self, at: datetime, line: str) -> None:
        oldest = int((at - self._retention).timestamp() * 1000)
        self._call("xadd", AUDIT_KEY, {"record": line}, minid=oldest, approximate=True)

    def audit_lines(self, since: datetime | None, limit: int) -> list[str]:
        # Stream IDs are Redis's arrival times (ms): "since" is by arrival, a hair after `at`.
        low = int(since.timestamp() * 1000) if since else "-"
        entries = self._call("xrevrange", AUDIT_KEY, "+", low, limit)
        return [fields[b"record"].decode() for _, fields in reversed(entries)]

    def ping(self) -> None:
        self._call("ping")

    def limits_storage(self) -> MovingWindowSupport:
        return self._storage


def _pause(fields: dict[bytes, bytes]) -> Pause | None:
    if not fields:
        return None
    since = datetime.fromtimestamp(float(fields[b"since"]), UTC)
    return Pause(fields[b"reason"].decode(), since)
