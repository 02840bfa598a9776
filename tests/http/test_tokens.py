"""POST /v1/tokens over HTTP: content checks, problem+json for every refusal."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient

from tests import support

BAD_BODIES: dict[str, tuple[bytes, int, str]] = {
    "malformed json": (b'{"grants": ', 400, "invalid_json"),
    "duplicate keys": (
        b'{"grants": {"video": {"room": "lobby"}}, "grants": {"chat": {}}}',
        400,
        "invalid_json",
    ),
    "NaN": (b'{"grants": {"video": {"room": "lobby"}}, "ttl": NaN}', 400, "invalid_json"),
    "Infinity": (b'{"grants": {"video": {"room": "lobby"}}, "ttl": Infinity}', 400, "invalid_json"),
    "ttl string": (b'{"grants": {"video": {"room": "lobby"}}, "ttl": "600"}', 400, "invalid_ttl"),
    "ttl true": (b'{"grants": {"video": {"room": "lobby"}}, "ttl": true}', 400, "invalid_ttl"),
    "ttl fraction": (b'{"grants": {"video": {"room": "lobby"}}, "ttl": 600.5}', 400, "invalid_ttl"),
    "ttl negative": (b'{"grants": {"video": {"room": "lobby"}}, "ttl": -1}', 400, "invalid_ttl"),
    "ttl zero": (b'{"grants": {"video": {"room": "lobby"}}, "ttl": 0}', 400, "invalid_ttl"),
    "ttl over a day": (
        b'{"grants": {"video": {"room": "lobby"}}, "ttl": 86401}',
        400,
        "invalid_ttl",
    ),
    "ttl 5000 digits": (
        b'{"grants": {"video": {"room": "lobby"}}, "ttl": ' + b"9" * 4000 + b"}",
        400,
        "invalid_ttl",
    ),
    "ttl above policy": (
        b'{"grants": {"video": {"room": "lobby"}}, "ttl": 3601}',
        400,
        "invalid_ttl",
    ),
    "identity from an app user": (
        b'{"grants": {"video": {"room": "lobby"}}, "identity": "bob"}',
        400,
        "unknown_field",
    ),
    "account_sid": (
        b'{"grants": {"video": {"room": "lobby"}}, "account_sid": "AC1"}',
        400,
        "unknown_field",
    ),
    "application_sid": (b'{"grants": {"voice": {"application_sid": "AP1"}}}', 400, "unknown_field"),
    "params": (b'{"grants": {"voice": {"params": {"to": "+1900"}}}}', 400, "unknown_field"),
    "unknown grant": (b'{"grants": {"taskrouter": {}}}', 400, "unknown_field"),
    "video without room": (b'{"grants": {"video": {}}}', 400, "invalid_room"),
    "room with control": (b'{"grants": {"video": {"room": "lob\\u0007by"}}}', 400, "invalid_room"),
    "room with newline": (b'{"grants": {"video": {"room": "lobby\\nadmin"}}}', 400, "invalid_room"),
    "room with bidi override": (
        b'{"grants": {"video": {"room": "lobby\\u202e"}}}',
        400,
        "invalid_room",
    ),
    "room too long": (
        b'{"grants": {"video": {"room": "' + b"r" * 129 + b'"}}}',
        400,
        "invalid_room",
    ),
    "no grants": (b'{"grants": {}}', 400, "invalid_request"),
    "not an object": (b"[1, 2]", 400, "invalid_request"),
    "not utf-8": (b'{"grants": "\xff"}', 400, "invalid_json"),
    "unknown push": (b'{"grants": {"chat": {"push": "pigeon"}}}', 400, "invalid_request"),
    "voice allowing nothing": (
        b'{"grants": {"voice": {"incoming": false, "outgoing": false}}}',
        400,
        "invalid_request",
    ),
    "grant not in policy": (b'{"grants": {"voice": {}}}', 403, "grant_not_allowed"),
    "room outside patterns": (
        b'{"grants": {"video": {"room": "board-room"}}}',
        403,
        "room_not_allowed",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_bodies_are_refused(case: str, post: support.Post, caller_token: support.Token) -> None:
    raw, status, code = BAD_BODIES[case]
    support.assert_problem(post(bearer=caller_token(), raw=raw), status, code)


def test_body_over_4_kib(post: support.Post, caller_token: support.Token) -> None:
    raw = json.dumps({"grants": {"video": {"room": "lobby"}}, "pad": "x" * 5000}).encode()
    support.assert_problem(post(bearer=caller_token(), raw=raw), 413, "payload_too_large")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1", ""],
)
def test_wrong_content_type(
    content_type: str, post: support.Post, caller_token: support.Token
) -> None:
    response = post(support.VIDEO, caller_token(), content_type=content_type)
    support.assert_problem(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_on_tokens(method: str, client: FlaskClient) -> None:
    response = client.open("/v1/tokens", method=method)
    support.assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_unknown_path(client: FlaskClient) -> None:
    support.assert_problem(client.get("/v1/nothing"), 404, "not_found")
