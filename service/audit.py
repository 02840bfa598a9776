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

Decision = Literal["issued", "denied", "invalid_request", "authentication_failed", "unavailable"]


@dataclass(frozen=True)
class AuditRecord:
    decision: Decision
    request_id: str
    client_ip: str
    at: datetime
    code: str | None = None
    reason: str | None = None
    identity: str | None = None
    issuer: str | None = None
    credential: str | None = None  # fingerprint of the bearer credential
    grants: tuple[str, ...] = ()
    room: str | None = None
    ttl: int | None = None
    token: str | None = None  # fingerprint of the issued token

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
    """Writes audit records as JSON lines to a text stream (standard error by default).

    A direct, locked write rather than the logging module: this runs once per request
    and a log record costs several times the write itself.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def record(self, record: AuditRecord) -> None:
        line = record.to_json() + "\n"
        stream = self._stream or sys.stderr  # looked up late: gunicorn may redirect it
        with self._lock:
            stream.write(line)
            stream.flush()
