"""The Redis store: a trail bounded by age and size, revocations that lapse, and failing
closed while Redis is down."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import redis

from service.errors import Unavailable
from service.state import Admission, Retention, open_store
from service.state.redis import REFUSALS_INDEX, revocation_key
from tests import support

NOW = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)


def test_records_past_retention_are_trimmed(redis_url: str) -> None:
    store = open_store(redis_url, retention=Retention(audit_days=1))
    for _ in range(300):
        store.append_audit(datetime.now(UTC), '{"old": true}')
    # Stream IDs are arrival times, so travel the record's clock instead: one stamped a
    # day and an hour on makes all that arrived so far older than the retention. Redis
    # trims approximately, in whole stream nodes (100 entries each by default).
    store.append_audit(datetime.now(UTC) + timedelta(days=1, hours=1), '{"old": false}')
    assert len(store.audit_lines(None, 1000)) < 100


def test_the_trail_keeps_about_its_size(redis_url: str) -> None:
    store = open_store(redis_url, retention=Retention(audit_max_records=1000))
    now = datetime.now(UTC)
    for number in range(3000):
        store.append_audit(now, json.dumps({"n": number}))
    kept = [json.loads(line)["n"] for line in store.audit_lines(None, 10_000)]
    assert len(kept) < 1200  # trimmed in whole stream nodes: about the size
    assert kept[-1] == 2999
    minute = int(now.timestamp()) // 60 * 60
    store.count_refusals(
        {(minute - 60 * n, f"192.0.2.{n % 250}", "denied", "x"): 1 for n in range(1500)}
    )
    client = redis.Redis.from_url(redis_url)
    assert client.zcard(REFUSALS_INDEX) <= 1000


def test_revocations_lapse_by_themselves(redis_url: str) -> None:
    store = open_store(redis_url, retention=Retention(revocation_days=90))
    store.revoke("identity:alice", NOW)
    ttl = redis.Redis.from_url(redis_url).ttl(revocation_key("identity:alice"))
    assert 89 * 86400 < ttl <= 90 * 86400


def test_redis_down_is_unavailable(redis_server: support.RedisServer, redis_url: str) -> None:
    store = open_store(redis_url, retention=Retention())
    store.ping()
    redis_server.stop()
    try:
        for action in (
            store.ping,
            store.pauses,
            lambda: store.admit(Admission(at=NOW, pauses=("all",))),
            lambda: store.append_audit(NOW, "{}"),
            lambda: store.count_refusals({(0, "x", "denied", "x"): 1}),
            lambda: store.audit_lines(None, 1),
            lambda: store.pause("x", NOW),
        ):
            with pytest.raises(Unavailable):
                action()
    finally:
        redis_server.start()
    store.ping()  # and it comes back by itself, same client
