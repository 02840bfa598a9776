"""Every state store: the pause flag, revocations, the audit trail; the URL chooses it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from service.errors import ConfigurationError
from service.state import StateStore, open_store
from service.state.sqlite import sqlite_path

NOW = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)


def _next_millisecond() -> datetime:
    start = datetime.now(UTC)
    while (moment := datetime.now(UTC)) - start < timedelta(milliseconds=2):
        pass  # a clock tick, not a wait for a server
    return moment


def test_pause_and_resume(store: StateStore) -> None:
    assert store.read_controls().pause is None
    store.pause("incident 42", NOW)
    pause = store.read_controls().pause
    assert pause is not None
    assert pause.reason == "incident 42"
    assert pause.since == NOW
    store.resume()
    assert store.read_controls().pause is None


def test_revoke_and_unrevoke(store: StateStore) -> None:
    store.revoke("identity:alice", NOW)
    store.revoke("client:web", NOW + timedelta(seconds=5))
    controls = store.read_controls()
    assert controls.revoked_at("alice", None) == NOW.timestamp()
    assert controls.revoked_at("alice", "web") == NOW.timestamp() + 5
    assert controls.revoked_at("bob", None) is None
    assert store.unrevoke("identity:alice") is True
    assert store.unrevoke("identity:alice") is False
    assert store.read_controls().revoked_at("alice", None) is None


def test_audit_trail_in_order_with_since_and_limit(store: StateStore) -> None:
    for number in range(3):
        store.append_audit(datetime.now(UTC), json.dumps({"n": number}))
    middle = _next_millisecond()
    _next_millisecond()
    for number in range(3, 5):
        store.append_audit(datetime.now(UTC), json.dumps({"n": number}))
    assert [json.loads(line)["n"] for line in store.audit_lines(None, 100)] == [0, 1, 2, 3, 4]
    assert [json.loads(line)["n"] for line in store.audit_lines(None, 2)] == [3, 4]
    assert [json.loads(line)["n"] for line in store.audit_lines(middle, 100)] == [3, 4]


def test_ping(store: StateStore) -> None:
    store.ping()


def test_bad_state_urls() -> None:
    with pytest.raises(ConfigurationError):
        sqlite_path("sqlite://")
    with pytest.raises(ConfigurationError):
        open_store("postgres://db/x", audit_retention_days=1)
