"""A usage trigger's signed callback pauses issuance everywhere until resume."""

from __future__ import annotations

import json
from collections.abc import Callable

from click.testing import Result
from flask.testing import FlaskClient

from tests import support


def alert(client: FlaskClient) -> int:
    headers = support.twilio_signature(support.ALERT, support.USAGE_ALERT_URL)
    return client.post("/v1/twilio/usage-alert", data=support.ALERT, headers=headers).status_code


def test_a_signed_alert_pauses_every_instance_until_resume(
    environ: dict[str, str],
    redis_url: str,
    make_client: Callable[..., FlaskClient],
    cli: Callable[..., Result],
    clock: support.FakeClock,
    caller_token: support.Token,
    post: support.Post,
) -> None:
    shared = {**environ, "BROKER_STATE_URL": redis_url}
    first, second = make_client(shared), make_client(shared)
    bearer = caller_token()
    assert post(support.VIDEO, bearer, to=second).status_code == 200
    assert alert(first) == 204
    for each in (first, second):
        support.assert_problem(post(support.VIDEO, bearer, to=each), 503, "issuance_paused")
        assert each.get("/readyz").get_json()["paused"] is True
    audit = cli("audit", "--json", "--decision", "paused", env=shared, check=True)
    [record] = [json.loads(line) for line in audit.output.splitlines()]
    assert record["event"] == "usage_alert"
    assert record["reason"].startswith(f"usage trigger UT{'1' * 32}: calls reached 1000.00")
    cli("resume", env=shared, check=True)
    for each in (first, second):
        assert post(support.VIDEO, bearer, to=each).status_code == 200
    assert "token_broker_usage_alerts_total 1.0" in first.get("/metrics").get_data(as_text=True)


def test_pausing_outgoing_voice_only(
    environ: dict[str, str],
    make_client: Callable[..., FlaskClient],
    clock: support.FakeClock,
    caller_token: support.Token,
    post: support.Post,
) -> None:
    client = make_client(policy=support.POLICY + '\n[usage_alert]\npauses = "voice_outgoing"\n')
    agent = caller_token(roles="agent")
    assert alert(client) == 204
    assert post({"grants": {"voice": {}}}, agent, to=client).status_code == 503
    assert post({"grants": {"voice": {"outgoing": False}}}, agent, to=client).status_code == 200
    assert post(support.VIDEO, agent, to=client).status_code == 200
    params = {"From": "client:alice", "To": "+15551234567"}
    headers = support.twilio_signature(params, support.VOICE_URL)
    twiml = client.post("/v1/twilio/voice", data=params, headers=headers).get_data(as_text=True)
    assert "<Dial" not in twiml


def test_a_replayed_alert_never_pauses_again_after_resume(
    client: FlaskClient,
    cli: Callable[..., Result],
    caller_token: support.Token,
    post: support.Post,
) -> None:
    assert alert(client) == 204
    assert post(support.VIDEO, caller_token()).status_code == 503
    cli("resume", check=True)
    assert alert(client) == 403  # the same signed callback, captured and replayed
    assert post(support.VIDEO, caller_token()).status_code == 200  # still issuing


def test_an_alert_signed_for_another_host_is_refused(
    client: FlaskClient, caller_token: support.Token, post: support.Post
) -> None:
    other_host = "https://other-broker.example.test/v1/twilio/usage-alert"
    headers = support.twilio_signature(support.ALERT, other_host)
    response = client.post(
        "/v1/twilio/usage-alert",
        data=support.ALERT,
        headers=headers,
        base_url="https://other-broker.example.test",  # even when it arrives with that Host
    )
    support.assert_problem(response, 403, "invalid_signature")
    assert post(support.VIDEO, caller_token()).status_code == 200
