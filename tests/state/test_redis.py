"""The Redis store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.errors import Unavailable
from service.state import open_store
from tests import support

NOW = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)


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
