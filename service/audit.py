"""What happened? One structured record per decision.

A record names the caller, what was asked or given and why it was refused; it holds a
fingerprint of an issued token, never the token, a bearer credential or a secret.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Literal, TextIO

from service.state import StateStore

Decision = Literal[
    "issued",
    "denied",
    "invalid_request",
    "authentication_failed",
    "unavailable",
    # operator actions from the command line
    "revoked",
    "unrevoked",
    "paused",
    "resumed",
    # Voice calls placed by clients (the TwiML app's webhook)
    "call_allowed",
    "call_refused",
]


@dataclass(frozen=True)
class AuditRecord:
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
        fields: dict[str, object] = {"event": "token_decision"}
        for name in _FIELD_NAMES:
            value = getattr(self, name)
            if value is not None and value != ():
                fields[name] = value
        fields["at"] = self.at.isoformat().replace("+00:00", "Z")
        return json.dumps(fields)


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
