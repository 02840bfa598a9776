"""The audit trail: one record per decision, a fingerprint of the token, never the token."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import Result
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service.tokens.minting import token_fingerprint
from tests import support


def audit_records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_issued_token_is_audited_with_its_fingerprint(
    post: Callable[..., TestResponse],
    caller_token: Callable[..., str],
    audit_stream: io.StringIO,
) -> None:
    response = post({"grants": {"video": {"room": "lobby"}}, "ttl": 120}, caller_token())
    [record] = audit_records(audit_stream)
    token = response.get_json()["token"]
    assert record["decision"] == "issued"
    assert record["identity"] == "alice"
    assert record["grants"] == ["video"]
    assert record["room"] == "lobby"
    assert record["ttl"] == 120
    assert record["token"] == token_fingerprint(token)
    assert record["request_id"] == response.headers["X-Request-Id"]
    assert record["client_ip"] == "127.0.0.1"
    assert token not in audit_stream.getvalue()


@pytest.mark.parametrize(
    ("body", "bearer", "decision", "code", "reason"),
    [
        (
            {"grants": {"video": {"room": "lobby"}}},
            "garbage",
            "authentication_failed",
            "invalid_token",
            "not a compact JWS",
        ),
        ({"grants": {"voice": {}}}, None, "denied", "grant_not_allowed", "no rule gives voice"),
        (
            {"grants": {"video": {"room": "x"}}},
            None,
            "denied",
            "room_not_allowed",
            "room matches no allowed pattern",
        ),
        ({"grants": {}}, None, "invalid_request", "invalid_request", "grants must be an object"),
    ],
)
def test_refusals_are_audited_with_the_reason(
    post: Callable[..., TestResponse],
    caller_token: Callable[..., str],
    audit_stream: io.StringIO,
    body: dict[str, Any],
    bearer: str | None,
    decision: str,
    code: str,
    reason: str,
) -> None:
    response = post(body, bearer or caller_token())
    [record] = audit_records(audit_stream)
    assert record["decision"] == decision
    assert record["code"] == code
    assert reason in record["reason"]
    assert reason not in response.get_data(as_text=True)  # the reason is for the audit only


def stored_bytes(backend: str, location: str) -> int:
    """What the store holds on disk (SQLite and its journal) or in memory (Redis)."""
    if backend == "redis":
        return int(redis.Redis.from_url(location).info("memory")["used_memory"])
    return sum(path.stat().st_size for path in Path(location).parent.glob("state.db*"))


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_flood_of_junk_is_counted_not_stored_record_by_record(
    request: pytest.FixtureRequest,
    backend: str,
    environ: dict[str, str],
    tmp_path: Path,
    make_client: Callable[..., FlaskClient],
    cli: Callable[..., Result],
    clock: support.FakeClock,
    caller_token: support.Token,
    post: support.Post,
) -> None:
    if backend == "redis":
        url = location = request.getfixturevalue("redis_url")
    else:
        location = str(tmp_path / "state.db")
        url = f"sqlite:///{location}"
    environment = {**environ, "BROKER_STATE_URL": url}
    policy = support.POLICY + 'auth_failures_per_ip = "20/minute"\n'
    client = make_client(environment, policy=policy)
    issued = [post(support.VIDEO, caller_token(sub=f"user{n}"), to=client) for n in range(5)]
    before = stored_bytes(backend, location)
    long_room = {"grants": {"video": {"room": "é" * 128}}}
    for number in range(10_000):
        body = long_room if number % 3 else support.VIDEO
        assert post(body, f"garbage-{number}", to=client).status_code in (401, 429)
    clock.advance(1)  # the counts are written at most once a second, by the clock
    post(support.VIDEO, "garbage-last", to=client)
    grown = stored_bytes(backend, location) - before
    assert grown <= 2 * 1024 * 1024, f"stored audit data grew by {grown} bytes"

    lines = cli("audit", "--json", "--limit", "1000", env=environment, check=True)
    records = [json.loads(line) for line in lines.output.splitlines()]
    flood = [record for record in records if record.get("count")]
    assert sum(record["count"] for record in flood) == 10_001
    assert {record["code"] for record in flood} == {"invalid_token", "rate_limited"}
    assert all(record["client_ip"] == "127.0.0.1" for record in flood)
    fingerprints = {record.get("token") for record in records if record["decision"] == "issued"}
    assert {token_fingerprint(r.get_json()["token"]) for r in issued} <= fingerprints
    text = cli("audit", env=environment, check=True).output
    assert "count=" in text
