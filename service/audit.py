"""What happened? One structured record per decision, and the one recorder that writes it.

A record names the kind of decision (``event``: a token, a call, a usage alert or an
operator's action), the caller, what was asked or given and why it was refused; it holds
a fingerprint of an issued token, never the token, a bearer credential or a secret.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Literal, TextIO

from service.clock import Clock
from service.state import StateStore

if TYPE_CHECKING:
    # Only for the annotation: the command line imports this module, and must not import
    # prometheus_client before `serve` has set its multiprocess directory.
    from service.metrics import Metrics

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
    client: str | None = None
    issuer: str | None = None
    credential: str | None = None  # fingerprint of the bearer credential
    grants: tuple[str, ...] = ()
    room: str | None = None
    ttl: int | None = None
    token: str | None = None  # fingerprint of the issued token
    destination: str | None = None  # where a call was to go

    def to_json(self) -> str:
        # Built by hand, not with dataclasses.asdict: this runs once per request.
        found: dict[str, object] = {}
        for name in _FIELD_NAMES:
            value = getattr(self, name)
            if value is not None and value != ():
                found[name] = value
        found["at"] = self.at.isoformat().replace("+00:00", "Z")
        return json.dumps(found)


_FIELD_NAMES = tuple(f.name for f in fields(AuditRecord))


class AuditLog:
    """Stores each record in the state store, then writes it as a JSON line to a stream.

    The stored record is the durable trail (``token-broker audit`` reads it) and is
    written before a token is returned: if it cannot be stored, ``Unavailable`` is
    raised and no token leaves. The line on standard error is for log collectors.
    """

    def __init__(self, store: StateStore, stream: TextIO | None = None) -> None:
        self._store = store
        self._stream = stream
        self._lock = threading.Lock()

    def record(self, record: AuditRecord) -> None:
        line = record.to_json()
        self._store.append_audit(record.at, line)
        stream = self._stream or sys.stderr  # looked up late: gunicorn may redirect it
        with self._lock:
            stream.write(line + "\n")
            stream.flush()


class Recorder:
    """Timestamps, audits and counts every decision of every use case, the same way."""

    def __init__(self, audit: AuditLog, metrics: Metrics, clock: Clock) -> None:
        self._audit = audit
        self._metrics = metrics
        self.now = clock

    def __repr__(self) -> str:
        return "Recorder()"

    def record(self, record: AuditRecord) -> None:
        """Store and log ``record`` (may raise ``Unavailable``), then count it."""
        self._audit.record(record)
        if record.event == "token":
            if record.decision == "issued":
                self._metrics.issued(record.grants)
            else:
                self._metrics.refused(record.code or "", record.reason or "")
        elif record.event == "call":
            self._metrics.call(allowed=record.decision == "call_allowed")
        elif record.event == "usage_alert":
            self._metrics.usage_alert()
