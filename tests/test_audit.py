"""The audit trail: one record per decision, a fingerprint of the token, never the token."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from werkzeug.test import TestResponse

from service.tokens.minting import token_fingerprint


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
