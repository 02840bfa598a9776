"""The issuance use case: a caller gets exactly what policy and budgets allow, recorded once."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import jwt
from flask.testing import FlaskClient

from tests import support


def test_valid_caller_gets_exactly_the_requested_grants(
    post: support.Post, caller_token: support.Token
) -> None:
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


def test_default_ttl_comes_from_policy(post: support.Post, caller_token: support.Token) -> None:
    body = post(support.VIDEO, caller_token()).get_json()
    assert body["ttl"] == 600


def test_voice_for_an_agent_uses_configured_sids(
    post: support.Post, caller_token: support.Token
) -> None:
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


def test_voice_direction_can_be_narrowed(post: support.Post, caller_token: support.Token) -> None:
    response = post({"grants": {"voice": {"outgoing": False}}}, caller_token(roles="agent"))
    claims = jwt.decode(response.get_json()["token"], support.API_KEY_SECRET, algorithms=["HS256"])
    assert claims["grants"]["voice"] == {"incoming": {"allow": True}}


def test_identity_is_the_verified_claim_whatever_the_body_says(
    post: support.Post, caller_token: support.Token
) -> None:
    response = post({**support.VIDEO, "identity": "mallory"}, caller_token())
    support.assert_problem(response, 400, "unknown_field")
    response = post({"grants": {"video": {"room": "mallory-1"}}}, caller_token())
    support.assert_problem(response, 403, "room_not_allowed")


def test_room_template_from_a_claim(post: support.Post, caller_token: support.Token) -> None:
    ok = post({"grants": {"video": {"room": "team-blue-daily"}}}, caller_token(team="blue"))
    assert ok.status_code == 200
    refused = post({"grants": {"video": {"room": "team-red-daily"}}}, caller_token(team="blue"))
    support.assert_problem(refused, 403, "room_not_allowed")


def test_per_identity_budget_then_429_and_no_token(
    limited_client: FlaskClient,
    caller_token: Callable[..., str],
    audit_stream: io.StringIO,
    post: support.Post,
) -> None:
    bearer = caller_token()
    statuses = [post(support.VIDEO, bearer, to=limited_client).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    refused = post(support.VIDEO, bearer, to=limited_client)
    assert refused.get_json()["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    records = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    assert [r["decision"] for r in records].count("issued") == 3
    assert records[-1]["reason"] == "per_identity spent"
    metrics = limited_client.get("/metrics").get_data(as_text=True)
    assert 'token_broker_rate_limit_hits_total{budget="per_identity"} 3.0' in metrics
    assert "token_broker_tokens_total 3.0" in metrics


def test_outgoing_voice_costs_more(
    limited_client: FlaskClient, caller_token: Callable[..., str], post: support.Post
) -> None:
    agent = caller_token(roles="agent")
    assert post({"grants": {"voice": {}}}, agent, to=limited_client).status_code == 200  # 3 of 3
    assert (
        post({"grants": {"voice": {"outgoing": False}}}, agent, to=limited_client).status_code
        == 429
    )


def test_failed_authentications_slow_guesses_never_valid_callers(
    limited_client: FlaskClient, caller_token: Callable[..., str], post_from: Callable[..., int]
) -> None:
    statuses = [post_from("garbage", "198.51.100.9", to=limited_client) for _ in range(6)]
    assert statuses == [401] * 4 + [429] * 2  # guesses slowed down
    # but a credential that verifies is never turned away: many users share one NAT address
    assert post_from(caller_token(), "198.51.100.9", to=limited_client) == 200
    assert post_from(caller_token(sub="bob"), "198.51.100.9", to=limited_client) == 200
