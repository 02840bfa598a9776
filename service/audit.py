"""What happened? One structured record per decision.

A record names the caller, what was asked or given and why it was refused; it holds a
fingerprint of an issued token, never the token, a bearer credential or a secret.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Literal

AUDIT_LOGGER = "token_broker.audit"
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
    """Writes audit records as one JSON line each to the audit logger."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger(AUDIT_LOGGER)

    def record(self, record: AuditRecord) -> None:
        self._logger.info(record.to_json())


class _MessageOnly(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


def configure_audit_logging() -> None:
    """Send audit lines to stderr unless the host application configured a handler."""
    logger = logging.getLogger(AUDIT_LOGGER)
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_MessageOnly())
        logger.addHandler(handler)
