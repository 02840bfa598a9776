"""The state stores, SQLite and Redis, through the one interface."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service.errors import ConfigurationError, Unavailable
from service.state import CachedControls, Controls, StateStore, open_store
from service.state.sqlite import SqliteStore, sqlite_path
from tests import support

NOW = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
    if request.param == "sqlite":
        return open_store(f"sqlite:///{tmp_path}/state.db", audit_retention_days=30)
    return open_store(request.getfixturevalue("redis_url"), audit_retention_days=30)


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


def _next_millisecond() -> datetime:
    start = datetime.now(UTC)
    while (moment := datetime.now(UTC)) - start < timedelta(milliseconds=2):
        pass  # a clock tick, not a wait for a server
    return moment


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


def test_sqlite_prunes_records_past_retention(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db", audit_retention_days=1)
    store.append_audit(datetime.now(UTC) - timedelta(days=2), '{"old": true}')
    store.append_audit(datetime.now(UTC), '{"old": false}')
    reopened = SqliteStore(tmp_path / "state.db", audit_retention_days=1)  # prunes on open
    assert reopened.audit_lines(None, 10) == ['{"old": false}']


def test_redis_trims_records_past_retention(redis_url: str) -> None:
    store = open_store(redis_url, audit_retention_days=1)
    for _ in range(300):
        store.append_audit(datetime.now(UTC), '{"old": true}')
    # Stream IDs are arrival times, so travel the record's clock instead: one stamped a
    # day and an hour on makes all that arrived so far older than the retention. Redis
    # trims approximately, in whole stream nodes (100 entries each by default).
    store.append_audit(datetime.now(UTC) + timedelta(days=1, hours=1), '{"old": false}')
    assert len(store.audit_lines(None, 1000)) < 100


def test_redis_down_is_unavailable(redis_server: support.RedisServer, redis_url: str) -> None:
    store = open_store(redis_url, audit_retention_days=1)
    store.ping()
    redis_server.stop()
    try:
        for action in (
            store.ping,
            store.read_controls,
            lambda: store.append_audit(NOW, "{}"),
            lambda: store.audit_lines(None, 1),
            lambda: store.pause("x", NOW),
        ):
            with pytest.raises(Unavailable):
                action()
    finally:
        redis_server.start()
    store.ping()  # and it comes back by itself, same client


def test_cached_controls_read_at_most_once_per_max_age() -> None:
    class CountingStore:
        reads = 0

        def read_controls(self) -> Controls:
            self.reads += 1
            return Controls(pause=None, revocations={})

    counting = CountingStore()
    cached = CachedControls(counting, max_age=60)  # type: ignore[arg-type]  # a partial store
    for _ in range(100):
        cached.current()
    assert counting.reads == 1
    fresh = CachedControls(counting, max_age=0)  # type: ignore[arg-type]  # a partial store
    fresh.current()
    fresh.current()
    assert counting.reads == 3


@pytest.mark.parametrize(
    ("url", "path"),
    [("sqlite:///var/broker.sqlite3", "var/broker.sqlite3"), ("sqlite:////srv/b.db", "/srv/b.db")],
)
def test_sqlite_urls(url: str, path: str) -> None:
    assert sqlite_path(url) == Path(path)


def test_bad_state_urls() -> None:
    with pytest.raises(ConfigurationError):
        sqlite_path("sqlite://")
    with pytest.raises(ConfigurationError):
        open_store("postgres://db/x", audit_retention_days=1)


def test_unwritable_sqlite_file_is_a_startup_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigurationError):
        SqliteStore(blocker / "state.db", audit_retention_days=1)
