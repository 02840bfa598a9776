"""What happened? One structured record per decision, and the one recorder that writes it.

A record names the kind of decision (``event``: a token, a call, a usage alert or an
operator's action), the caller, what was asked or given and why it was refused; it holds
a fingerprint of an issued token, never the token, a bearer credential or a secret.

Every record is one JSON line on standard error, written first, for log collectors. The
durable trail (in the state store, or in PostgreSQL with ``BROKER_AUDIT_URL``) keeps one
record for each token issued, call allowed and operator action, stored before the
effect: if it cannot be stored, nothing happens (``Unavailable``). Refusals of callers
that never authenticated are kept as aggregates, one per client network, decision and
code a minute, with a count: a flood of junk adds a few rows, not one per request.
Other refusals are stored one each, best effort: a refusal keeps its own status when
the store is down.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Literal, TextIO

from service.base.addresses import address_key
from service.base.clock import Clock
from service.base.errors import Unavailable
from service.state import AuditTrail

if TYPE_CHECKING:
    # Only for the annotation: the command line imports this module, and must not import
    # prometheus_client before `serve` has set its multiprocess directory.
    from service.bookkeeping.metrics import Metrics

Event = Literal["token", "call", "usage_alert", "operator"]
Decision = Literal[
    "issued",
    "denied",
    "invalid_request",
    "authentication_failed",
    "unavailable",
    # operator actions (the command line), and a usage alert's pause
    "revoked",
    "unrevoked",
    "paused",
    "resumed",
    # Voice calls through the TwiML app's webhooks
    "call_allowed",
    "call_refused",
]
#: Decisions whose record must be stored before they take effect.
DURABLE: frozenset[Decision] = frozenset(
    {"issued", "call_allowed", "paused", "resumed", "revoked", "unrevoked"}
)
FLUSH_SECONDS = 1.0
MAX_BUFFERED = 10_000
log = logging.getLogger("token_broker")


@dataclass(frozen=True)
class AuditRecord:
    event: Event
    decision: Decision
    request_id: str
    client_ip: str
    at: datetime
    code: str | None = None
    reason: str | None = None
    identity: str | None = None
    #: the identity provider's subject, where the identity is made from it otherwise
    subject: str | None = None
    client: str | None = None
    issuer: str | None = None
    credential: str | None = None  # fingerprint of the bearer credential
    grants: tuple[str, ...] = ()
    room: str | None = None
    room_sid: str | None = None  # a provisioned room's, as Twilio made or found it
    worker_sid: str | None = None  # the TaskRouter Worker a token acts as
    ttl: int | None = None
    token: str | None = None  # fingerprint of the issued token
    destination: str | None = None  # where a call was to go

    @property
    def unauthenticated_refusal(self) -> bool:
        """A refused token request whose caller was never verified: kept as an aggregate."""
        return self.event == "token" and self.decision != "issued" and self.credential is None

    def to_json(self) -> str:
        # Built by hand, not with dataclasses.asdict: this runs once per request.
        found: dict[str, object] = {}
        for name in _FIELD_NAMES:
            value = getattr(self, name)
            if value is not None and value != ():
                found[name] = value
        found["at"] = self.at.isoformat().replace("+00:00", "Z")
        if _trace_source is not None and (trace_id := _trace_source()) is not None:
            found["trace_id"] = trace_id  # the request's trace (tracing enabled)
        return json.dumps(found)


_FIELD_NAMES = tuple(f.name for f in fields(AuditRecord))
#: Where a record finds the trace it was decided in: set only when tracing is enabled.
_trace_source: Callable[[], str | None] | None = None


def trace_ids_from(source: Callable[[], str | None] | None) -> None:
    """Have every record written from now on carry ``source()`` as its ``trace_id``
    (the current span's trace; None outside one). ``None`` turns it off."""
    global _trace_source  # one per process, as OpenTelemetry's provider is
    _trace_source = source


class AuditLog:
    """Writes each record's line, then stores it (or counts it in an aggregate)."""

    def __init__(
        self,
        trail: AuditTrail,
        stream: TextIO | None = None,
        *,
        ipv6_prefix: int = 64,
        in_admission: bool = True,
    ) -> None:
        self._trail = trail
        #: True when the trail is the state store: a durable record goes in with its
        #: admission (one step); else it is written right after (``keep``).
        self.in_admission = in_admission
        self._stream = stream
        self._ipv6_prefix = ipv6_prefix
        self._lock = threading.Lock()
        self._refusals: Counter[tuple[int, str, str, str]] = Counter()
        self._first_refusal = 0.0
        self._flusher: threading.Timer | None = None

    def __repr__(self) -> str:
        return "AuditLog()"

    def record(self, record: AuditRecord) -> None:
        """Log, then store: durably (raising ``Unavailable``), as an aggregate, or best effort."""
        self.log(record.to_json())
        if record.unauthenticated_refusal:
            self._count(record)
        elif record.decision in DURABLE:
            self._trail.append_audit(record.at, record.to_json())
        else:
            try:
                self._trail.append_audit(record.at, record.to_json())
            except Unavailable:
                log.warning("audit record not stored: the audit trail cannot be reached")

    def keep(self, at: datetime, line: str) -> None:
        """Store a durable record the admission did not (a trail of its own); raises
        ``Unavailable``."""
        if not self.in_admission:
            self._trail.append_audit(at, line)

    def log(self, line: str) -> None:
        """The record's JSON line on the stream (standard error by default)."""
        stream = self._stream or sys.stderr  # looked up late: gunicorn may redirect it
        with self._lock:
            stream.write(line + "\n")
            stream.flush()

    def _count(self, record: AuditRecord) -> None:
        moment = record.at.timestamp()
        address = address_key(record.client_ip, self._ipv6_prefix)
        key = (int(moment) // 60 * 60, address, record.decision, record.code or "")
        with self._lock:
            if not self._refusals:
                self._first_refusal = moment
            if key not in self._refusals and len(self._refusals) >= MAX_BUFFERED:
                key = (key[0], "*", key[2], key[3])  # the store is behind: fold the rest
            self._refusals[key] += 1
            due = moment - self._first_refusal >= FLUSH_SECONDS
            if not due and self._flusher is None:
                self._flusher = threading.Timer(FLUSH_SECONDS, self.flush)
                self._flusher.daemon = True
                self._flusher.start()
        if due:
            self.flush()

    def flush(self) -> None:
        """Store the aggregated refusals counted so far (kept for later if the store is down)."""
        with self._lock:
            counts, self._refusals = self._refusals, Counter()
            self._flusher = None
        if not counts:
            return
        try:
            self._trail.count_refusals(counts)
        except Unavailable:
            with self._lock:
                self._refusals.update(counts)
            log.warning("refusal counts not stored yet: the audit trail cannot be reached")


class Recorder:
    """Timestamps, audits and counts every decision of every use case, the same way."""

    def __init__(self, audit: AuditLog, metrics: Metrics, clock: Clock) -> None:
        self._audit = audit
        self._metrics = metrics
        self.now = clock

    def __repr__(self) -> str:
        return "Recorder()"

    def record(self, record: AuditRecord) -> None:
        """Log and store ``record`` (a durable one may raise ``Unavailable``), then count it."""
        self._audit.record(record)
        self._count(record)

    @property
    def in_admission(self) -> bool:
        """Whether a durable record goes into the state store with its admission."""
        return self._audit.in_admission

    def stored(self, record: AuditRecord, line: str) -> None:
        """A record admitted with its request: stored (here, when the trail is a database
        of its own; raises ``Unavailable``), then logged and counted."""
        self._audit.keep(record.at, line)
        self._audit.log(line)
        self._count(record)

    def _count(self, record: AuditRecord) -> None:
        if record.event == "token":
            if record.decision == "issued":
                self._metrics.issued(record.grants)
            else:
                self._metrics.refused(record.code or "", record.reason or "")
        elif record.event == "call":
            self._metrics.call(allowed=record.decision == "call_allowed")
        elif record.event == "usage_alert":
            self._metrics.usage_alert()

    def dependency_failed(self, dependency: str) -> None:
        """A request answered 503 because ``dependency`` failed (its counter)."""
        self._metrics.dependency_failed(dependency)

    def dependencies(self, results: Mapping[str, bool]) -> None:
        """What a readiness look found, by dependency (its gauge)."""
        self._metrics.set_dependencies(results)

    def paused(self, paused: bool) -> None:
        """What the last look at the pause flag found (the paused gauge)."""
        self._metrics.set_paused(paused)

    def signing_key_age(self, seconds: float) -> None:
        """How long the fleet has signed with this instance's key (its gauge)."""
        self._metrics.set_signing_key_age(seconds)

    def account_events(self, counts: Mapping[str, int]) -> None:
        """The fleet's count of account security events (``account watch``)."""
        self._metrics.set_account_events(counts)
