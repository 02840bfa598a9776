"""Shared state in Redis: every worker of every instance sees the same switches and budgets.

The client comes from the ``limits`` library's Redis storage, so every URL form it
accepts (``redis://``, ``rediss://``, ``redis+unix://``, ``redis+sentinel://``,
``redis+cluster://``) works. A request is admitted by one server-side script, in one
round trip: pause flags, the caller's revocations and every budget window are tested,
and only when all pass are the budgets spent and the audit record appended.

Keys carry a hash tag of whose state they are (``{identity:alice}``), so that a cluster
spreads callers over its slots; the fleet-wide keys share ``{fleet}``, the trail
``{audit}``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from limits.storage import Storage, storage_from_string

from service.base.clock import Clock, system_clock
from service.base.errors import ConfigurationError, Unavailable
from service.state import redis_scripts as scripts
from service.state.store import (
    Admission,
    Admitted,
    FilteringTrail,
    Outcome,
    Pause,
    PauseScope,
    RefusalCounts,
    Refused,
    Retention,
    newest,
    refusal_line,
)

PREFIX = "tb:"
AUDIT_KEY = PREFIX + "{audit}:records"
REFUSALS_PREFIX = PREFIX + "{audit}:refusals:"
REFUSALS_INDEX = PREFIX + "{audit}:refusals"
REFUSALS_SIZES = PREFIX + "{audit}:refusal-sizes"
INSTANCES_KEY = PREFIX + "{fleet}:signing-keys"
TIMEOUT_SECONDS = 0.5
#: How long making a cluster's client may try again, and how often.
CONNECT_SECONDS = 5.0
CONNECT_RETRY_SECONDS = 0.2
_SCOPES: tuple[PauseScope, ...] = ("all", "voice_outgoing")
_FIELD_SEPARATOR = "\x1f"
DAY = 86400


def connect(url: str) -> Any:
    """A Redis client for ``url``: one server's, or a cluster's (``redis.RedisCluster``).

    A cluster's client asks a node for the slots as it is made; a node that drops that
    one connection must not stop a worker from booting (gunicorn then stops the whole
    server), so that question is asked again for up to ``CONNECT_SECONDS``."""
    deadline = time.monotonic() + CONNECT_SECONDS
    while True:
        try:
            storage = storage_from_string(
                url,
                wrap_exceptions=True,
                socket_timeout=TIMEOUT_SECONDS,
                socket_connect_timeout=TIMEOUT_SECONDS,
            )
            break
        except (redis.RedisError, redis.exceptions.RedisClusterException):
            if time.monotonic() > deadline:
                raise
            time.sleep(CONNECT_RETRY_SECONDS)  # a worker booting: nothing else waits on it
    if not isinstance(storage, Storage) or not hasattr(storage, "get_connection"):
        # an async storage, or one without a Redis client: not for this server
        raise ConfigurationError(["BROKER_STATE_URL must name a synchronous Redis storage"])
    return storage.get_connection()


def _tag(owner: str) -> str:
    return PREFIX + "{" + owner + "}:"


def pause_key(scope: PauseScope) -> str:
    return _tag("fleet") + "pause:" + scope


def revocation_key(subject: str) -> str:
    return _tag(subject) + "revoked"


def sign_in_key(subject: str) -> str:
    return _tag(subject) + "signed-in"


def session_key(session: str) -> str:
    return _tag("session:" + session) + "first-seen"


def window_key(owner: str, budget: str, amount: int, seconds: int) -> str:
    return _tag(owner) + f"w:{budget}:{amount}/{seconds}"


class RedisStore(FilteringTrail):
    in_process_limits = False

    def __init__(self, client: Any, *, retention: Retention, clock: Clock = system_clock) -> None:
        self._client = client
        self._retention = retention
        self._clock = clock
        self._admit = client.register_script(scripts.ADMIT)
        self._count_refusals = client.register_script(scripts.COUNT_REFUSALS)
        self._first_time = client.register_script(scripts.FIRST_TIME)
        self._first_seen = client.register_script(scripts.FIRST_SEEN)

    def __repr__(self) -> str:
        return "RedisStore()"

    def _call(self, operation: str, *arguments: Any, **options: Any) -> Any:
        try:
            return getattr(self._client, operation)(*arguments, **options)
        except (redis.RedisError, OSError):
            raise Unavailable("the Redis state store cannot be reached") from None

    def admit(self, admission: Admission) -> Outcome:
        """Everything in one script, one round trip: every key on this one server."""
        keys = [pause_key(scope) for scope in admission.pauses]
        keys += [revocation_key(subject) for subject in admission.revocations]
        windows = [(spend, window) for spend in admission.spends for window in spend.windows]
        keys += [window_key(s.key, s.budget, w.amount, w.seconds) for s, w in windows]
        remember = admission.remember_sign_in if admission.signed_in_at is not None else None
        for subject in (admission.sign_in_of, remember):
            if subject is not None:
                keys.append(sign_in_key(subject))
        session = admission.session if admission.signed_in_at is not None else None
        if session is not None:
            keys.append(session_key(session))
        record = admission.record or ""
        if record:
            keys.append(AUDIT_KEY)
        now = admission.at.timestamp()
        arguments: list[object] = [
            repr(now),
            len(admission.pauses),
            len(admission.revocations),
            "" if admission.signed_in_at is None else repr(admission.signed_in_at),
            len(windows),
            admission.cost,
            *[value for _, window in windows for value in (window.amount, window.seconds)],
            int(admission.sign_in_of is not None),
            int(remember is not None),
            self._retention.revocation_days * DAY,
            record,
            self._oldest_record_id(now),
            self._retention.audit_max_records,
            int(session is not None),
        ]
        try:
            result = self._admit(keys=keys, args=arguments)
        except (redis.RedisError, OSError):
            raise Unavailable("the Redis state store cannot be reached") from None
        return outcome_of(result, admission, [spend for spend, _ in windows])

    def _oldest_record_id(self, now: float) -> int:
        return int((now - self._retention.audit_days * DAY) * 1000)

    def pauses(self) -> dict[PauseScope, Pause]:
        try:
            pipeline = self._client.pipeline(transaction=False)
            for scope in _SCOPES:
                pipeline.hgetall(pause_key(scope))
            found = pipeline.execute()
        except (redis.RedisError, OSError):
            raise Unavailable("the Redis state store cannot be reached") from None
        return {
            scope: Pause(
                fields[b"reason"].decode(),
                datetime.fromtimestamp(float(fields[b"since"]), UTC),
            )
            for scope, fields in zip(_SCOPES, found, strict=True)
            if fields
        }

    def pause(self, reason: str, at: datetime, *, scope: PauseScope = "all") -> None:
        self._call("hset", pause_key(scope), mapping={"reason": reason, "since": at.timestamp()})

    def resume(self) -> None:
        for scope in _SCOPES:
            self._call("delete", pause_key(scope))

    def revoke(self, subject: str, at: datetime) -> None:
        lapse = self._retention.revocation_days * DAY
        self._call("set", revocation_key(subject), repr(at.timestamp()), ex=lapse)

    def unrevoke(self, subject: str) -> bool:
        return bool(self._call("delete", revocation_key(subject)))

    def append_audit(self, at: datetime, line: str) -> None:
        try:
            self._append(at.timestamp(), line)
        except (redis.RedisError, OSError):
            raise Unavailable("the Redis state store cannot be reached") from None

    def _append(self, now: float, record: str) -> None:
        """The admission script with nothing to test: the record alone, IDed by ``now``."""
        arguments: list[object] = [repr(now), 0, 0, "", 0, 1, 0, 0, 0, record]
        arguments += [self._oldest_record_id(now), self._retention.audit_max_records]
        self._admit(keys=[AUDIT_KEY], args=arguments)

    def count_refusals(self, counts: RefusalCounts) -> None:
        oldest = int(self._clock().timestamp()) - self._retention.audit_days * DAY
        arguments: list[object] = [REFUSALS_PREFIX, oldest, self._retention.audit_max_records]
        for (minute, address, decision, code), count in counts.items():
            arguments += [minute, _FIELD_SEPARATOR.join((address, decision, code)), count]
        try:
            self._count_refusals(keys=[REFUSALS_INDEX, REFUSALS_SIZES], args=arguments)
        except (redis.RedisError, OSError):
            raise Unavailable("the Redis state store cannot be reached") from None

    def _audit_lines(self, since: datetime | None, limit: int) -> list[str]:
        # Stream IDs are the records' times (ms), or for a late record just after the last.
        low = int(since.timestamp() * 1000) if since else "-"
        entries = self._call("xrevrange", AUDIT_KEY, "+", low, limit)
        records = [
            (int(entry_id.split(b"-")[0]) / 1000, fields[b"record"].decode())
            for entry_id, fields in reversed(entries)  # oldest first, for a stable merge
        ]
        return newest([*records, *self._aggregates(since, limit)], limit)

    def _aggregates(self, since: datetime | None, limit: int) -> list[tuple[float, str]]:
        floor = int(since.timestamp()) // 60 * 60 if since else "-inf"
        hashes = self._call("zrevrangebyscore", REFUSALS_INDEX, "+inf", floor, 0, limit)
        found: list[tuple[float, str]] = []
        for hash_key in hashes:
            minute = int(hash_key.decode().removeprefix(REFUSALS_PREFIX))
            for field, count in self._call("hgetall", hash_key).items():
                address, decision, code = field.decode().split(_FIELD_SEPARATOR)
                found.append((minute, refusal_line(minute, address, decision, code, int(count))))
        return found

    def first_time(self, keys: Sequence[str], at: datetime, seconds: int) -> bool:
        tagged = [_tag("seen") + key for key in keys]
        try:
            return bool(self._first_time(keys=tagged, args=[seconds]))
        except (redis.RedisError, OSError):
            raise Unavailable("the Redis state store cannot be reached") from None

    def first_seen(self, mark: str, at: datetime) -> datetime:
        try:
            found = self._first_seen(keys=[_tag("mark") + mark], args=[repr(at.timestamp())])
        except (redis.RedisError, OSError):
            raise Unavailable("the Redis state store cannot be reached") from None
        return datetime.fromtimestamp(float(found), UTC)

    def tally_up(self, tally: str, key: str) -> None:
        self._call("hincrby", _tag("tally:" + tally) + "counts", key, 1)

    def tally(self, tally: str) -> dict[str, int]:
        found = self._call("hgetall", _tag("tally:" + tally) + "counts")
        return {name.decode(): int(count) for name, count in found.items()}

    def report_signing_key(self, instance: str, key_sid: str, at: datetime, seconds: int) -> None:
        self._call("hset", INSTANCES_KEY, instance, f"{key_sid} {at.timestamp() + seconds!r}")

    def remember(self, key: str, value: str, at: datetime, seconds: int) -> None:
        self._call("set", _tag("memo") + key, value, ex=max(1, seconds))

    def recall(self, key: str, at: datetime) -> str | None:
        found = self._call("get", _tag("memo") + key)
        return None if found is None else str(found.decode())

    def signing_keys(self, at: datetime) -> dict[str, str]:
        found: dict[str, str] = {}
        for instance, value in self._call("hgetall", INSTANCES_KEY).items():
            key_sid, until = value.decode().split(" ")
            if float(until) < at.timestamp():
                self._call("hdel", INSTANCES_KEY, instance)  # gone quiet: forgotten
            else:
                found[instance.decode()] = key_sid
        return found

    def ping(self) -> None:
        self._call("ping")

    def close(self) -> None:
        self._client.close()


def outcome_of(result: Sequence[Any], admission: Admission, window_spends: list[Any]) -> Outcome:
    status = int(result[0])
    if status == 0:
        return Admitted()
    index = int(result[1]) - 1
    if status == 1:
        reason = result[2].decode() if isinstance(result[2], bytes) else str(result[2])
        return Refused("paused", reason, scope=admission.pauses[index])
    if status == 2:
        return Refused("revoked", admission.revocations[index])
    return Refused("rate_limited", window_spends[index].budget, retry_after=int(result[2]))
