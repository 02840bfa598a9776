"""The state store on a Redis Cluster: an admission in a step per slot, and readiness
that asks the cluster whether it serves."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis

from service.base.clock import Clock, system_clock
from service.base.errors import Unavailable
from service.state import redis_scripts as scripts
from service.state.redis import (
    DAY,
    RedisStore,
    outcome_of,
    pause_key,
    revocation_key,
    session_key,
    sign_in_key,
    window_key,
)
from service.state.store import Admission, Admitted, Outcome, Refused, Retention, Spend, Window

#: How long a cluster's state, once asked, is taken as known (seconds).
STATE_CACHE_SECONDS = 1.0


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

    def __init__(self, client: Any, *, retention: Retention, clock: Clock = system_clock) -> None:
        super().__init__(client, retention=retention, clock=clock)
        self._refund = client.register_script(scripts.REFUND)
        self._state_checked = (-STATE_CACHE_SECONDS, True)

    def __repr__(self) -> str:
        return "ClusterRedisStore()"

    def admit(self, admission: Admission) -> Outcome:
        try:
            return self._admit_in_steps(admission)
        except (redis.RedisError, OSError):
            raise Unavailable("the Redis state store cannot be reached") from None

    def _admit_in_steps(self, admission: Admission) -> Outcome:
        refused, signed_in = self._switches(admission)
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
                return outcome_of(result, admission, [spend for spend, _ in windows])
            spent.append(keys)
        try:
            self._remember_and_record(admission, now, signed_in)
        except (redis.RedisError, OSError):
            self._give_back(spent, now, admission.cost)
            raise
        return Admitted()

    def _switches(self, admission: Admission) -> tuple[Refused | None, float | None]:
        """Pause flags and revocations, read together (each key on its own slot), with
        the sign-in to judge them by (a session's first sight, remembered here)."""
        pipeline = self._client.pipeline(transaction=False)
        for scope in admission.pauses:
            pipeline.hget(pause_key(scope), "reason")
        for subject in admission.revocations:
            pipeline.get(revocation_key(subject))
        if admission.sign_in_of is not None:
            pipeline.get(sign_in_key(admission.sign_in_of))
        session = admission.session if admission.signed_in_at is not None else None
        if session is not None:
            days = self._retention.revocation_days * DAY
            pipeline.set(session_key(session), repr(admission.signed_in_at), nx=True, ex=days)
            pipeline.get(session_key(session))
        found = pipeline.execute()
        if session is not None:
            first_seen = found.pop()
            found.pop()  # the SET's answer
        reasons, revoked = found[: len(admission.pauses)], found[len(admission.pauses) :]
        signed_in = admission.signed_in_at
        if admission.sign_in_of is not None:
            latest = revoked.pop()
            signed_in = float(latest) if latest is not None else None
        elif session is not None and signed_in is not None and first_seen is not None:
            signed_in = min(signed_in, float(first_seen))
        for scope, reason in zip(admission.pauses, reasons, strict=False):
            if reason is not None:
                return Refused("paused", reason.decode(), scope=scope), signed_in
        for subject, at in zip(admission.revocations, revoked, strict=True):
            if at is not None and (signed_in is None or signed_in <= float(at)):
                return Refused("revoked", subject), signed_in
        return None, signed_in

    def _arguments(
        self, now: float, windows: Sequence[tuple[Spend, Window]], cost: int
    ) -> list[object]:
        """The admission script's arguments for windows only (no switch, no record)."""
        limits = [value for _, window in windows for value in (window.amount, window.seconds)]
        return [repr(now), 0, 0, "", len(windows), cost, *limits, 0, 0, 0, "", 0, 0]

    def _remember_and_record(
        self, admission: Admission, now: float, signed_in: float | None
    ) -> None:
        """A Voice token's sign-in, then the audit record: each a key of its own slot."""
        if admission.remember_sign_in is not None and signed_in is not None:
            days = self._retention.revocation_days * DAY
            arguments: list[object] = [repr(now), 0, 0, repr(signed_in), 0, 1]
            arguments += [0, 1, days, "", 0, 0]
            self._admit(keys=[sign_in_key(admission.remember_sign_in)], args=arguments)
        if admission.record:
            self._append(now, admission.record)

    def _give_back(self, spent: list[list[str]], now: float, cost: int) -> None:
        for keys in spent:
            self._refund(keys=keys, args=[repr(now), cost])

    def ping(self) -> None:
        """Whether the cluster serves: every node may answer ``PING`` while a master is
        lost and no replica took over (``cluster_state:fail``), so ask a node the state.
        The answer is kept a second: readiness probes stay cheap."""
        checked_at, serves = self._state_checked
        if time.monotonic() - checked_at >= STATE_CACHE_SECONDS:
            try:
                serves = self._call("cluster_info").get("cluster_state") == "ok"
            except Unavailable:
                serves = False
            self._state_checked = (time.monotonic(), serves)
        if not serves:
            raise Unavailable("the Redis Cluster does not serve (cluster_state is not ok)")
