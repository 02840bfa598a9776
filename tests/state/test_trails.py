"""Every place the durable audit trail may be kept (each state store, and PostgreSQL):
records and refusal counts listed alike, filtered alike, newest kept, oldest first."""

from __future__ import annotations

import json
from datetime import timedelta

from service.state import AuditTrail
from tests import support

NOW = support.NOW


def record(n: int, **fields: object) -> str:
    return json.dumps({"event": "token", "decision": "issued", "n": n, **fields})


def numbers(lines: list[str]) -> list[object]:
    return [json.loads(line).get("n") for line in lines]


def test_refusals_are_stored_as_counts_and_listed_with_records(trail: AuditTrail) -> None:
    minute = int(NOW.timestamp())
    trail.count_refusals({(minute, "198.51.100.7", "authentication_failed", "invalid_token"): 40})
    trail.count_refusals({(minute, "198.51.100.7", "authentication_failed", "invalid_token"): 2})
    trail.append_audit(NOW, record(1))
    lines = [json.loads(line) for line in trail.audit_lines(None, 10)]
    [aggregate] = [line for line in lines if line.get("count")]
    assert aggregate["count"] == 42
    assert aggregate["client_ip"] == "198.51.100.7"
    assert aggregate["code"] == "invalid_token"
    assert aggregate["decision"] == "authentication_failed"
    assert len(lines) == 2


def test_the_newest_records_oldest_first(trail: AuditTrail) -> None:
    now = NOW  # the Redis stream knows records by their time too
    for n in range(5):
        trail.append_audit(now, record(n))
    assert numbers(trail.audit_lines(None, 3)) == [2, 3, 4]
    assert numbers(trail.audit_lines(now - timedelta(hours=1), 10)) == [0, 1, 2, 3, 4]
    assert trail.audit_lines(now + timedelta(hours=1), 10) == []


def test_filters_by_identity_and_decision(trail: AuditTrail) -> None:
    trail.append_audit(NOW, record(1, identity="alice"))
    trail.append_audit(NOW + timedelta(seconds=1), record(2, identity="bob"))
    trail.append_audit(NOW + timedelta(seconds=2), record(3, identity="alice", decision="denied"))
    trail.append_audit(NOW + timedelta(seconds=3), record(4, identity="alice"))
    minute = int(NOW.timestamp())
    trail.count_refusals({(minute, "198.51.100.7", "denied", "x"): 1})
    assert numbers(trail.audit_lines(None, 10, identity="alice")) == [1, 3, 4]
    assert numbers(trail.audit_lines(None, 1, identity="alice")) == [4]
    assert numbers(trail.audit_lines(None, 10, identity="alice", decision="issued")) == [1, 4]
    denied = [json.loads(line) for line in trail.audit_lines(None, 10, decision="denied")]
    assert [(line.get("n"), line.get("count")) for line in denied] == [(None, 1), (3, None)]
