"""A usage trigger's signed callback pauses issuance everywhere until resume."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from flask.testing import FlaskClient
from twilio.request_validator import RequestValidator

from service import create_app
from service.cli import main
from service.configuration import load_configuration
from tests import support
from tests.conftest import LeakWatch

URL = "http://localhost/v1/twilio/usage-alert"


ALERT = {
    "AccountSid": support.ACCOUNT_SID,
    "UsageTriggerSid": "UT" + "1" * 32,
    "UsageCategory": "calls",
    "CurrentValue": "1000.00",
    "TriggerValue": "500",
}


VIDEO = {"grants": {"video": {"room": "lobby"}}}


def signed(params: dict[str, str], url: str = URL) -> dict[str, str]:
    return {
        "X-Twilio-Signature": RequestValidator(support.AUTH_TOKEN).compute_signature(url, params)
    }


def instance(environment: dict[str, str], tmp_path: Path) -> FlaskClient:
    configuration = load_configuration(environment, dotenv_file=tmp_path / "none")
    return create_app(configuration, audit_stream=io.StringIO()).test_client()


def ask(client: FlaskClient, bearer: str, body: Any, leaks: LeakWatch) -> Any:
    response = client.post("/v1/tokens", json=body, headers={"Authorization": f"Bearer {bearer}"})
    leaks.check_response(response)
    return response


def until(check: Callable[[], bool], within: float = 1.0) -> bool:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)  # the polling interval, bounded by the promise under test
    return True


def status_is(
    client: FlaskClient, bearer: str, leaks: LeakWatch, status: int
) -> Callable[[], bool]:
    return lambda: bool(ask(client, bearer, VIDEO, leaks).status_code == status)


def test_a_signed_alert_pauses_every_instance_until_resume(
    environ: dict[str, str],
    redis_url: str,
    tmp_path: Path,
    caller_token: Callable[..., str],
    leaks: LeakWatch,
) -> None:
    shared = {**environ, "BROKER_STATE_URL": redis_url}
    first, second = instance(shared, tmp_path), instance(shared, tmp_path)
    bearer = caller_token()
    assert ask(second, bearer, VIDEO, leaks).status_code == 200
    assert (
        first.post("/v1/twilio/usage-alert", data=ALERT, headers=signed(ALERT)).status_code == 204
    )
    for each in (first, second):
        assert until(status_is(each, bearer, leaks, 503))
        assert ask(each, bearer, VIDEO, leaks).get_json()["code"] == "issuance_paused"
        assert "usage trigger" in each.get("/readyz").get_json()["paused"]["reason"]
    audit = CliRunner().invoke(main, ["audit", "--json", "--decision", "paused"], env=shared)
    [record] = [json.loads(line) for line in audit.output.splitlines()]
    assert record["reason"].startswith(f"usage trigger UT{'1' * 32}: calls reached 1000.00")
    assert CliRunner().invoke(main, ["resume"], env=shared).exit_code == 0
    for each in (first, second):
        assert until(status_is(each, bearer, leaks, 200))
    assert "token_broker_usage_alerts_total 1.0" in first.get("/metrics").get_data(as_text=True)


def test_pausing_outgoing_voice_only(
    environ: dict[str, str],
    policy_file: Path,
    tmp_path: Path,
    caller_token: Callable[..., str],
    leaks: LeakWatch,
) -> None:
    policy_file.write_text(policy_file.read_text() + '\n[usage_alert]\npauses = "voice_outgoing"\n')
    client = instance(environ, tmp_path)
    agent = caller_token(roles="agent")
    assert (
        client.post("/v1/twilio/usage-alert", data=ALERT, headers=signed(ALERT)).status_code == 204
    )
    assert until(lambda: ask(client, agent, {"grants": {"voice": {}}}, leaks).status_code == 503)
    assert ask(client, agent, {"grants": {"voice": {"outgoing": False}}}, leaks).status_code == 200
    assert ask(client, agent, VIDEO, leaks).status_code == 200
    params = {"From": "client:alice", "To": "+15551234567"}
    voice_url = "http://localhost/v1/twilio/voice"
    headers = {
        "X-Twilio-Signature": RequestValidator(support.AUTH_TOKEN).compute_signature(
            voice_url, params
        )
    }
    twiml = client.post("/v1/twilio/voice", data=params, headers=headers).get_data(as_text=True)
    assert "<Dial" not in twiml
