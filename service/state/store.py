"""What every state store does, in one interface.

A request is *admitted* in one step: the pause flags, the revocations of its caller and
every budget it spends are tested together and, only when all pass, the budgets are
spent and the request's audit record stored. A refusal by any of them spends nothing.
Concurrent admissions never admit more than a budget, across workers and instances.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

PauseScope = Literal["all", "voice_outgoing"]
#: The fleet's tally of account security events (``account watch`` adds, /metrics shows).
ACCOUNT_EVENTS = "account_events"
RefusalKind = Literal["paused", "revoked", "rate_limited"]
#: Aggregated refusals: (minute as epoch seconds, client address, decision, code) -> count
RefusalCounts = Mapping[tuple[int, str, str, str], int]


@dataclass(frozen=True)
class Retention:
    """How much of the past a store keeps."""

    audit_days: int = 30
    audit_max_records: int = 1_000_000
    revocation_days: int = 90


@dataclass(frozen=True)
class Pause:
    reason: str
    since: datetime


@dataclass(frozen=True)
class Window:
    """One moving window of a budget: at most ``amount`` in any ``seconds``."""

    amount: int
    seconds: int


@dataclass(frozen=True)
class Spend:
    """What one budget counts for a request: its name, whose it is, its windows."""

    budget: str
    key: str
    windows: tuple[Window, ...]


@dataclass(frozen=True)
class Admission:
    """Everything that must hold for one request to go ahead."""

    at: datetime
    #: the pause flags that refuse this request
    pauses: tuple[PauseScope, ...] = ()
    #: subjects ("identity:alice") whose revocation refuses this request
    revocations: tuple[str, ...] = ()
    #: the caller's sign-in (epoch seconds): revoked only if at or before a revocation;
    #: None: any revocation refuses
    signed_in_at: float | None = None
    #: remember ``signed_in_at`` as the latest sign-in of this subject (a Voice token's)
    remember_sign_in: str | None = None
    #: take this subject's latest remembered sign-in as ``signed_in_at`` (a call's)
    sign_in_of: str | None = None
    #: the caller's session (a provider's ``sid``) where its token says no ``auth_time``:
    #: remembered with ``signed_in_at`` the first time it is seen, and that first sight
    #: is its sign-in from then on, however often its access token is refreshed
    session: str | None = None
    spends: tuple[Spend, ...] = ()
    cost: int = 1
    #: the audit line to store with the admission, when the store holds the trail
    record: str | None = None


@dataclass(frozen=True)
class Admitted:
    pass


@dataclass(frozen=True)
class Refused:
    kind: RefusalKind
    #: the pause reason, the revoked subject, or the budget spent
    detail: str
    scope: PauseScope | None = None
    retry_after: int = 0


Outcome = Admitted | Refused


class AuditTrail(Protocol):
    """Where the durable audit trail is kept: the state store itself, or a database of its
    own (``BROKER_AUDIT_URL``). Every method may raise ``Unavailable``."""

    def append_audit(self, at: datetime, line: str) -> None: ...

    def count_refusals(self, counts: RefusalCounts) -> None:
        """Add aggregated refusals: one stored row per minute, address, decision, code."""
        ...

    def audit_lines(
        self,
        since: datetime | None,
        limit: int,
        *,
        identity: str | None = None,
        decision: str | None = None,
    ) -> list[str]:
        """The newest ``limit`` records since ``since`` (of ``identity``, with
        ``decision``), oldest first; aggregates included unless an identity is asked for."""
        ...

    def ping(self) -> None: ...

    def close(self) -> None:
        """Let go of connections (the app is done with them)."""
        ...


class StateStore(AuditTrail, Protocol):
    """What every backend provides. Every method may raise ``Unavailable``."""

    #: True when budgets are kept in this process, so only one worker may run.
    in_process_limits: bool

    def admit(self, admission: Admission) -> Outcome:
        """Test everything ``admission`` names; spend and store only if all pass."""
        ...

    def pauses(self) -> dict[PauseScope, Pause]: ...

    def pause(self, reason: str, at: datetime, *, scope: PauseScope = "all") -> None: ...

    def resume(self) -> None: ...

    def revoke(self, subject: str, at: datetime) -> None: ...

    def unrevoke(self, subject: str) -> bool: ...

    def first_time(self, keys: Sequence[str], at: datetime, seconds: int) -> bool:
        """Remember ``keys`` for ``seconds``; False if any was remembered already (a replay)."""
        ...

    def first_seen(self, mark: str, at: datetime) -> datetime:
        """When the fleet first saw ``mark`` (``at``, if this is the first time)."""
        ...

    def tally_up(self, tally: str, key: str) -> None:
        """Add one to ``key`` of the fleet's count ``tally`` (a few keys: event types)."""
        ...

    def tally(self, tally: str) -> dict[str, int]:
        """The fleet's count ``tally``, by key."""
        ...

    def report_signing_key(self, instance: str, key_sid: str, at: datetime, seconds: int) -> None:
        """``instance`` signs with ``key_sid`` (a heartbeat, forgotten after ``seconds``)."""
        ...

    def remember(self, key: str, value: str, at: datetime, seconds: int) -> None:
        """Keep ``value`` under ``key`` for the fleet, for ``seconds`` (a room it made)."""
        ...

    def recall(self, key: str, at: datetime) -> str | None:
        """What ``remember`` keeps under ``key``, while it holds; else None."""
        ...

    def signing_keys(self, at: datetime) -> dict[str, str]:
        """Which key each live instance signs with (``keys rotate`` waits for them)."""
        ...


#: Records read to find the ones a filter asks for, where the store cannot filter.
FILTER_WINDOW = 100_000


def filtered(
    lines: Sequence[str], limit: int, identity: str | None, decision: str | None
) -> list[str]:
    """The newest ``limit`` of ``lines`` (oldest first) of ``identity`` with ``decision``."""
    if identity is None and decision is None:
        return list(lines[-limit:])
    found = []
    for line in lines:
        record = json.loads(line)
        if (identity is None or record.get("identity") == identity) and (
            decision is None or record.get("decision") == decision
        ):
            found.append(line)
    return found[-limit:]


class FilteringTrail(ABC):
    """For stores that read the trail in time order only: filters applied after reading
    (generously: up to ``FILTER_WINDOW`` records), cut to ``limit`` at the end."""

    def audit_lines(
        self,
        since: datetime | None,
        limit: int,
        *,
        identity: str | None = None,
        decision: str | None = None,
    ) -> list[str]:
        wanted = limit if identity is None and decision is None else FILTER_WINDOW
        return filtered(self._audit_lines(since, wanted), limit, identity, decision)

    @abstractmethod
    def _audit_lines(self, since: datetime | None, limit: int) -> list[str]:
        """The newest ``limit`` records since ``since``, oldest first, aggregates included."""


def refusal_line(minute: int, address: str, decision: str, code: str, count: str | int) -> str:
    """An aggregate of refusals as an audit line, in the shape of every other record."""
    at = datetime.fromtimestamp(minute, UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {
            "event": "token",
            "decision": decision,
            "request_id": "aggregate",
            "client_ip": address,
            "at": at,
            "code": code,
            "count": int(count),
        }
    )


def newest(lines: Sequence[tuple[float, str]], limit: int) -> list[str]:
    """The newest ``limit`` of (time, line) pairs, oldest first."""
    return [line for _, line in sorted(lines, key=lambda row: row[0])[-limit:]]
