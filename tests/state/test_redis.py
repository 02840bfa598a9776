"""The Redis store: a trail bounded by age and size, revocations that lapse, and failing
closed while Redis is down."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import redis

from service.base.errors import Unavailable
from service.state import Admission, Retention, open_store
from service.state.redis import REFUSALS_INDEX, revocation_key
from tests import support

NOW = support.NOW


def test_records_past_retention_are_trimmed(
    redis_url: str, retention_clock: support.FakeClock
) -> None:
    store = open_store(redis_url, retention=Retention(audit_days=1), clock=retention_clock)
    for _ in range(300):
        store.append_audit(retention_clock(), '{"old": true}')
    minute = int(retention_clock().timestamp()) // 60 * 60
    store.count_refusals({(minute, "192.0.2.1", "denied", "old"): 1})
    # Stream IDs are the records' times: one stamped a day and an hour on makes all so
    # far older than the retention. Redis trims approximately, in whole stream nodes
    # (100 entries each by default).
    retention_clock.advance(25 * 3600)
    store.append_audit(retention_clock(), '{"old": false}')
    store.count_refusals({(minute + 25 * 3600, "192.0.2.1", "denied", "new"): 1})
    lines = [json.loads(line) for line in store.audit_lines(None, 1000)]
    records = [line for line in lines if "old" in line]
    assert len(records) < 100
    assert records[-1] == {"old": False}
    assert [line["code"] for line in lines if "code" in line] == ["new"]


def test_a_record_behind_the_stream_is_kept(redis_url: str) -> None:
    """An instance whose clock is behind another's still appends (after the last)."""
    store = open_store(redis_url, retention=Retention(), clock=support.FakeClock(NOW))
    store.append_audit(NOW, '{"n": 1}')
    store.append_audit(NOW - timedelta(seconds=5), '{"n": 2}')
    assert [json.loads(line)["n"] for line in store.audit_lines(None, 10)] == [1, 2]


def test_the_trail_keeps_about_its_size(redis_url: str) -> None:
    store = open_store(
        redis_url, retention=Retention(audit_max_records=1000), clock=support.FakeClock(NOW)
    )
    now = NOW
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
