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

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from limits.storage import Storage, storage_from_string

from service.errors import ConfigurationError, Unavailable
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
    Spend,
    Window,
    newest,
    refusal_line,
)

PREFIX = "tb:"
AUDIT_KEY = PREFIX + "{audit}:records"
REFUSALS_PREFIX = PREFIX + "{audit}:refusals:"
REFUSALS_INDEX = PREFIX + "{audit}:refusals"
REFUSALS_SIZES = PREFIX + "{audit}:refusal-sizes"
TIMEOUT_SECONDS = 0.5
_SCOPES: tuple[PauseScope, ...] = ("all", "voice_outgoing")
_FIELD_SEPARATOR = "\x1f"
_DAY = 86400

# KEYS: pause flags, revocations, budget windows, then (when ARGV says so) the subject
# whose latest sign-in to take, the subject whose sign-in to remember, the audit stream.
# ARGV: now, #pauses, #revocations, signed-in time ("" for none), #windows, cost,
# (amount, seconds) per window, then take-sign-in (0/1), remember-sign-in (0/1), how
# long a sign-in is remembered, record ("" for none), stream MINID, stream MAXLEN.
# Returns {0} admitted; {1, index, reason} paused; {2, index} revoked;
# {3, index, seconds until room} rate limited (index of the refusing window).
_ADMIT = """
local now = tonumber(ARGV[1])
local pauses, revocations = tonumber(ARGV[2]), tonumber(ARGV[3])
local signed_in, windows, cost = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local after = 7 + 2 * windows
local take_sign_in, remember_sign_in = ARGV[after] == '1', ARGV[after + 1] == '1'
local key = 1 + pauses + revocations + windows
local sign_in_key, remember_key, stream_key
if take_sign_in then sign_in_key = KEYS[key]; key = key + 1 end
if remember_sign_in then remember_key = KEYS[key]; key = key + 1 end
stream_key = KEYS[key]
if sign_in_key then signed_in = redis.call('GET', sign_in_key) or '' end
key = 1
for i = 1, pauses do
  local reason = redis.call('HGET', KEYS[key], 'reason')
  if reason then return {1, i, reason} end
  key = key + 1
end
for i = 1, revocations do
  local at = redis.call('GET', KEYS[key])
  if at and (signed_in == '' or tonumber(signed_in) <= tonumber(at)) then return {2, i} end
  key = key + 1
end
local first_window = key
for i = 1, windows do
  local amount, seconds = tonumber(ARGV[5 + 2 * i]), tonumber(ARGV[6 + 2 * i])
  if cost > amount then return {3, i, seconds} end
  local oldest = redis.call('LINDEX', KEYS[key], amount - cost)
  if oldest and tonumber(oldest) > now - seconds then
    return {3, i, math.max(1, math.ceil(tonumber(oldest) + seconds - now))}
  end
  key = key + 1
end
key = first_window
for i = 1, windows do
  local amount, seconds = tonumber(ARGV[5 + 2 * i]), tonumber(ARGV[6 + 2 * i])
  for _ = 1, cost do redis.call('LPUSH', KEYS[key], ARGV[1]) end
  redis.call('LTRIM', KEYS[key], 0, amount - 1)
  redis.call('EXPIRE', KEYS[key], seconds)
  key = key + 1
end
if remember_key then
  local known = redis.call('GET', remember_key)
  if not known or tonumber(known) < tonumber(signed_in) then
    redis.call('SET', remember_key, signed_in, 'EX', ARGV[after + 2])
  end
end
local record = ARGV[after + 3]
if record ~= '' then
  redis.call('XADD', stream_key, 'MINID', '~', ARGV[after + 4], '*', 'record', record)
  redis.call('XTRIM', stream_key, 'MAXLEN', '~', ARGV[after + 5])
end
return {0}
"""

# KEYS: the index of minute hashes (score: minute), their field counts. ARGV: the
# minute-hash prefix, the oldest minute kept, the most fields kept, then (minute,
# field, count) triples. Old minutes go first; then the oldest until within the size.
_COUNT_REFUSALS = """
local index, sizes = KEYS[1], KEYS[2]
local prefix, oldest, most = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 4, #ARGV, 3 do
  local hash = prefix .. ARGV[i]
  if redis.call('HINCRBY', hash, ARGV[i + 1], ARGV[i + 2]) == tonumber(ARGV[i + 2]) then
    redis.call('ZADD', index, tonumber(ARGV[i]), hash)
    redis.call('HINCRBY', sizes, hash, 1)
    redis.call('HINCRBY', sizes, '*', 1)
  end
end
local function drop(hash)
  redis.call('HINCRBY', sizes, '*', -tonumber(redis.call('HGET', sizes, hash) or '0'))
  redis.call('HDEL', sizes, hash)
  redis.call('ZREM', index, hash)
  redis.call('DEL', hash)
end
for _, hash in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. oldest)) do
  drop(hash)
end
while tonumber(redis.call('HGET', sizes, '*') or '0') > most do
  local first = redis.call('ZRANGE', index, 0, 0)
  if #first == 0 then break end
  drop(first[1])
end
return 0
"""


# KEYS: windows of one slot that a refused admission spent. ARGV: the time pushed, how
# many times. The entries come out again; any trimmed for them were past their windows.
_REFUND = """
for _, key in ipairs(KEYS) do
  redis.call('LREM', key, tonumber(ARGV[2]), ARGV[1])
end
return 0
"""


# KEYS: what a request is known by. ARGV: how long to remember them. Returns 0 when any
# was remembered already (a replay), else remembers them all and returns 1.
_FIRST_TIME = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then return 0 end
end
for _, key in ipairs(KEYS) do
  redis.call('SET', key, '1', 'EX', ARGV[1])
end
return 1
"""


def _tag(owner: str) -> str:
    return PREFIX + "{" + owner + "}:"


def pause_key(scope: PauseScope) -> str:
    return _tag("fleet") + "pause:" + scope


def revocation_key(subject: str) -> str:
    return _tag(subject) + "revoked"


def sign_in_key(subject: str) -> str:
    return _tag(subject) + "signed-in"


def window_key(owner: str, budget: str, amount: int, seconds: int) -> str:
    return _tag(owner) + f"w:{budget}:{amount}/{seconds}"


class RedisStore(FilteringTrail):
    in_process_limits = False

    def __init__(self, client: Any, *, retention: Retention) -> None:
        self._client = client
        self._retention = retention
        self._admit = client.register_script(_ADMIT)
        self._count_refusals = client.register_script(_COUNT_REFUSALS)
        self._first_time = client.register_script(_FIRST_TIME)

    def __repr__(self) -> str:
        return "RedisStore()"

    @classmethod
    def from_url(cls, url: str, *, retention: Retention) -> RedisStore:
        """The store for ``url``; on a Redis Cluster (``redis+cluster://``), one that
        admits in a step per slot (``ClusterRedisStore``)."""
        storage = storage_from_string(
            url,
            wrap_exceptions=True,
            socket_timeout=TIMEOUT_SECONDS,
            socket_connect_timeout=TIMEOUT_SECONDS,
        )
        if not isinstance(storage, Storage) or not hasattr(storage, "get_connection"):
            # an async storage, or one without a Redis client: not for this server
            raise ConfigurationError(["BROKER_STATE_URL must name a synchronous Redis storage"])
        client = storage.get_connection()
        if isinstance(client, redis.RedisCluster):
            return ClusterRedisStore(client, retention=retention)
        return cls(client, retention=retention)

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
            self._retention.revocation_days * _DAY,
            record,
            self._oldest_record_id(now),
            self._retention.audit_max_records,
        ]
        try:
            result = self._admit(keys=keys, args=arguments)
        except (redis.RedisError, OSError):
            raise Unavailable("the Redis state store cannot be reached") from None
        return _outcome(result, admission, [spend for spend, _ in windows])

    def _oldest_record_id(self, now: float) -> int:
        return int((now - self._retention.audit_days * _DAY) * 1000)

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
        lapse = self._retention.revocation_days * _DAY
        self._call("set", revocation_key(subject), repr(at.timestamp()), ex=lapse)

    def unrevoke(self, subject: str) -> bool:
        return bool(self._call("delete", revocation_key(subject)))

    def append_audit(self, at: datetime, line: str) -> None:
        try:
            pipeline = self._client.pipeline(transaction=False)
            pipeline.xadd(
                AUDIT_KEY,
                {"record": line},
                minid=self._oldest_record_id(at.timestamp()),
                approximate=True,
            )
            pipeline.xtrim(AUDIT_KEY, maxlen=self._retention.audit_max_records, approximate=True)
            pipeline.execute()
        except (redis.RedisError, OSError):
            raise Unavailable("the Redis state store cannot be reached") from None

    def count_refusals(self, counts: RefusalCounts) -> None:
        oldest = int(datetime.now(UTC).timestamp()) - self._retention.audit_days * _DAY
        arguments: list[object] = [REFUSALS_PREFIX, oldest, self._retention.audit_max_records]
        for (minute, address, decision, code), count in counts.items():
            arguments += [minute, _FIELD_SEPARATOR.join((address, decision, code)), count]
        try:
            self._count_refusals(keys=[REFUSALS_INDEX, REFUSALS_SIZES], args=arguments)
        except (redis.RedisError, OSError):
            raise Unavailable("the Redis state store cannot be reached") from None

    def _audit_lines(self, since: datetime | None, limit: int) -> list[str]:
        # Stream IDs are Redis's arrival times (ms): "since" is by arrival, a hair after `at`.
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

    def ping(self) -> None:
        self._call("ping")

    def close(self) -> None:
        self._client.close()


class ClusterRedisStore(RedisStore):
    """The store on a Redis Cluster, where one script may only touch keys of one slot.

    Each owner's keys share a slot (``{identity:alice}``, ``{ip:...}``), so callers
    spread over the cluster and only the fleet-wide keys (pause flags, the global
    budget) share one. An admission takes a step per slot: the switches are read
    (pause flags, revocations, the caller's sign-in), then each owner's windows are
    tested and spent by the admission script on that owner's slot; if one refuses, the
    windows already spent are given back. Concurrent admissions never exceed a budget
    (each budget is tested and spent in one script); one may be refused for a moment by
    a spend that is then given back. The audit record (when the store keeps the trail)
    is appended last, and without it the spends are given back and nothing is admitted.
    """

    def __init__(self, client: Any, *, retention: Retention) -> None:
        super().__init__(client, retention=retention)
        self._refund = client.register_script(_REFUND)

    def __repr__(self) -> str:
        return "ClusterRedisStore()"

    def admit(self, admission: Admission) -> Outcome:
        try:
            return self._admit_in_steps(admission)
        except (redis.RedisError, OSError):
            raise Unavailable("the Redis state store cannot be reached") from None

    def _admit_in_steps(self, admission: Admission) -> Outcome:
        refused = self._switches(admission)
        if refused is not None:
            return refused
        now = admission.at.timestamp()
        groups: dict[str, list[tuple[Spend, Window]]] = {}
        for spend in admission.spends:
            groups.setdefault(spend.key, []).extend((spend, w) for w in spend.windows)
        spent: list[list[str]] = []
        for windows in groups.values():
            keys = [window_key(s.key, s.budget, w.amount, w.seconds) for s, w in windows]
            result = self._admit(keys=keys, args=self._arguments(now, windows, admission.cost))
            if int(result[0]) != 0:
                self._give_back(spent, now, admission.cost)
                return _outcome(result, admission, [spend for spend, _ in windows])
            spent.append(keys)
        try:
            self._remember_and_record(admission, now)
        except (redis.RedisError, OSError):
            self._give_back(spent, now, admission.cost)
            raise
        return Admitted()

    def _switches(self, admission: Admission) -> Refused | None:
        """Pause flags and revocations, read together (each key on its own slot)."""
        pipeline = self._client.pipeline(transaction=False)
        for scope in admission.pauses:
            pipeline.hget(pause_key(scope), "reason")
        for subject in admission.revocations:
            pipeline.get(revocation_key(subject))
        if admission.sign_in_of is not None:
            pipeline.get(sign_in_key(admission.sign_in_of))
        found = pipeline.execute()
        reasons, revoked = found[: len(admission.pauses)], found[len(admission.pauses) :]
        for scope, reason in zip(admission.pauses, reasons, strict=False):
            if reason is not None:
                return Refused("paused", reason.decode(), scope=scope)
        signed_in = admission.signed_in_at
        if admission.sign_in_of is not None:
            latest = revoked.pop()
            signed_in = float(latest) if latest is not None else None
        for subject, at in zip(admission.revocations, revoked, strict=True):
            if at is not None and (signed_in is None or signed_in <= float(at)):
                return Refused("revoked", subject)
        return None

    def _arguments(
        self, now: float, windows: Sequence[tuple[Spend, Window]], cost: int
    ) -> list[object]:
        """The admission script's arguments for windows only (no switch, no record)."""
        limits = [value for _, window in windows for value in (window.amount, window.seconds)]
        return [repr(now), 0, 0, "", len(windows), cost, *limits, 0, 0, 0, "", 0, 0]

    def _remember_and_record(self, admission: Admission, now: float) -> None:
        """A Voice token's sign-in, then the audit record: each a key of its own slot."""
        if admission.remember_sign_in is not None and admission.signed_in_at is not None:
            days = self._retention.revocation_days * _DAY
            arguments: list[object] = [repr(now), 0, 0, repr(admission.signed_in_at), 0, 1]
            arguments += [0, 1, days, "", 0, 0]
            self._admit(keys=[sign_in_key(admission.remember_sign_in)], args=arguments)
        if admission.record:
            arguments = [repr(now), 0, 0, "", 0, 1, 0, 0, 0, admission.record]
            arguments += [self._oldest_record_id(now), self._retention.audit_max_records]
            self._admit(keys=[AUDIT_KEY], args=arguments)

    def _give_back(self, spent: list[list[str]], now: float, cost: int) -> None:
        for keys in spent:
            self._refund(keys=keys, args=[repr(now), cost])


def _outcome(result: Sequence[Any], admission: Admission, window_spends: list[Any]) -> Outcome:
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
