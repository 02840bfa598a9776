"""The issuance use case: a caller gets exactly what policy and budgets allow, recorded once."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service import create_app
from service.configuration import load_configuration
from tests import support
from tests.conftest import LeakWatch

Post = Callable[..., TestResponse]


Token = Callable[..., str]


VIDEO = {"grants": {"video": {"room": "lobby"}}}


def assert_problem(response: TestResponse, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["request_id"] == response.headers["X-Request-Id"]
    assert "token" not in problem
    assert "Traceback" not in response.get_data(as_text=True)


LIMITED_POLICY = support.POLICY.replace(
    '[limits]\nper_identity = "1000/minute;20000/day"\n',
    '[limits]\nper_identity = "3/minute"\nper_ip = "6/minute"\nauth_failures_per_ip = "4/minute"\n'
    "voice_outgoing_cost = 3\n",
)


@pytest.fixture
def limited(environ: dict[str, str], tmp_path: Path) -> dict[str, str]:
    policy = tmp_path / "limited.toml"
    policy.write_text(LIMITED_POLICY)
    return {**environ, "BROKER_POLICY_FILE": str(policy)}


def build(environment: dict[str, str], tmp_path: Path, audit_stream: io.StringIO) -> Flask:
    return create_app(
        load_configuration(environment, dotenv_file=tmp_path / "none"), audit_stream=audit_stream
    )


@pytest.fixture
def limited_client(
    limited: dict[str, str], tmp_path: Path, audit_stream: io.StringIO
) -> FlaskClient:
    return build(limited, tmp_path, audit_stream).test_client()


def ask(client: FlaskClient, bearer: str, leaks: LeakWatch, body: Any = None) -> Any:
    response = client.post(
        "/v1/tokens", json=body or VIDEO, headers={"Authorization": f"Bearer {bearer}"}
    )
    leaks.check_response(response)
    return response


def post_from(
    client: FlaskClient, bearer: str, remote: str, leaks: LeakWatch, forwarded: str | None = None
) -> int:
    headers = {"Authorization": f"Bearer {bearer}"}
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    # As if over TLS at the server: these callers are not on loopback.
    response = client.post(
        "/v1/tokens",
        json=VIDEO,
        headers=headers,
        environ_base={"REMOTE_ADDR": remote},
        base_url="https://broker.example.test",
    )
    leaks.check_response(response)
    return response.status_code


def test_valid_caller_gets_exactly_the_requested_grants(post: Post, caller_token: Token) -> None:
    response = post(
        {"grants": {"video": {"room": "alice-standup"}, "chat": {}, "sync": {}}, "ttl": 900},
        caller_token(),
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["identity"] == "alice"
    assert body["ttl"] == 900
    assert body["grants"] == ["video", "chat", "sync"]
    claims = jwt.decode(body["token"], support.API_KEY_SECRET, algorithms=["HS256"])
    assert claims["grants"] == {
        "identity": "alice",
        "video": {"room": "alice-standup"},
        "chat": {"service_sid": support.CONVERSATIONS_SID},
        "data_sync": {"service_sid": support.SYNC_SID},
    }
    assert claims["exp"] - claims["nbf"] == 900
    expires_at = body["expires_at"]
    assert expires_at.endswith("Z")


def test_default_ttl_comes_from_policy(post: Post, caller_token: Token) -> None:
    body = post(VIDEO, caller_token()).get_json()
    assert body["ttl"] == 600


def test_voice_for_an_agent_uses_configured_sids(post: Post, caller_token: Token) -> None:
    token = caller_token(roles=["member", "agent"])
    response = post({"grants": {"voice": {"push": "apns"}}}, token)
    assert response.status_code == 200
    claims = jwt.decode(response.get_json()["token"], support.API_KEY_SECRET, algorithms=["HS256"])
    assert claims["grants"]["voice"] == {
        "incoming": {"allow": True},
        "outgoing": {"application_sid": support.TWIML_APP_SID},
        "push_credential_sid": support.APNS_SID,
    }
    # the agents rule caps voice at 900 s although the global maximum is 3600 s
    assert post({"grants": {"voice": {}}, "ttl": 901}, token).status_code == 400


def test_voice_direction_can_be_narrowed(post: Post, caller_token: Token) -> None:
    response = post({"grants": {"voice": {"outgoing": False}}}, caller_token(roles="agent"))
    claims = jwt.decode(response.get_json()["token"], support.API_KEY_SECRET, algorithms=["HS256"])
    assert claims["grants"]["voice"] == {"incoming": {"allow": True}}


def test_identity_is_the_verified_claim_whatever_the_body_says(
    post: Post, caller_token: Token
) -> None:
    response = post({**VIDEO, "identity": "mallory"}, caller_token())
    assert_problem(response, 400, "unknown_field")
    response = post({"grants": {"video": {"room": "mallory-1"}}}, caller_token())
    assert_problem(response, 403, "room_not_allowed")


def test_room_template_from_a_claim(post: Post, caller_token: Token) -> None:
    ok = post({"grants": {"video": {"room": "team-blue-daily"}}}, caller_token(team="blue"))
    assert ok.status_code == 200
    refused = post({"grants": {"video": {"room": "team-red-daily"}}}, caller_token(team="blue"))
    assert_problem(refused, 403, "room_not_allowed")


def test_per_identity_budget_then_429_and_no_token(
    limited_client: FlaskClient,
    caller_token: Callable[..., str],
    leaks: LeakWatch,
    audit_stream: io.StringIO,
) -> None:
    bearer = caller_token()
    statuses = [ask(limited_client, bearer, leaks).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    refused = ask(limited_client, bearer, leaks)
    assert refused.get_json()["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    records = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    assert [r["decision"] for r in records].count("issued") == 3
    assert records[-1]["reason"] == "per_identity spent"
    metrics = limited_client.get("/metrics").get_data(as_text=True)
    assert 'token_broker_rate_limit_hits_total{budget="per_identity"} 3.0' in metrics
    assert "token_broker_tokens_total 3.0" in metrics


def test_outgoing_voice_costs_more(
    limited_client: FlaskClient, caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    agent = caller_token(roles="agent")
    assert ask(limited_client, agent, leaks, {"grants": {"voice": {}}}).status_code == 200  # 3 of 3
    assert (
        ask(limited_client, agent, leaks, {"grants": {"voice": {"outgoing": False}}}).status_code
        == 429
    )


def test_failed_authentications_spend_the_address_budget(
    limited_client: FlaskClient, caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    statuses = [post_from(limited_client, "garbage", "198.51.100.9", leaks) for _ in range(6)]
    assert statuses == [401] * 4 + [429] * 2
    # even a valid caller from that address waits; another address does not
    assert post_from(limited_client, caller_token(), "198.51.100.9", leaks) == 429
    assert post_from(limited_client, caller_token(), "198.51.100.10", leaks) == 200
