"""Twilio's webhooks: only requests Twilio signed for this URL are acted on."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from twilio.request_validator import RequestValidator

from service import create_app
from service.configuration import load_configuration
from tests import support
from tests.conftest import LeakWatch

DIAL = """
[dial]
allowed_prefixes = ["+1", "+44"]
blocked_prefixes = ["+1900", "+44870"]
client_identities = ["agent_*"]
calls_per_identity = "3/hour"
"""


CALLER_ID = "+15005550006"


URL = "http://localhost/v1/twilio/voice"


@pytest.fixture
def voice_environ(environ: dict[str, str], policy_file: Path) -> dict[str, str]:
    policy_file.write_text(policy_file.read_text() + DIAL)
    return {**environ, "TWILIO_CALLER_ID": CALLER_ID}


def build(environment: dict[str, str], tmp_path: Path, audit: io.StringIO) -> FlaskClient:
    configuration = load_configuration(environment, dotenv_file=tmp_path / "none")
    return create_app(configuration, audit_stream=audit).test_client()


@pytest.fixture
def voice(voice_environ: dict[str, str], tmp_path: Path, audit_stream: io.StringIO) -> FlaskClient:
    return build(voice_environ, tmp_path, audit_stream)


def signed(
    params: dict[str, str], url: str = URL, token: str = support.AUTH_TOKEN
) -> dict[str, str]:
    """The header Twilio sends: HMAC-SHA1 over the URL and the sorted parameters."""
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, params)}


def call(
    client: FlaskClient, params: dict[str, str], headers: dict[str, str], **options: Any
) -> Any:
    return client.post("/v1/twilio/voice", data=params, headers=headers, **options)


ALICE_TO_US = {"From": "client:alice", "To": "+15551234567", "CallSid": "CA" + "0" * 32}


INCOMING = """
[incoming]
numbers = { "+15005550006" = ["agent_1", "agent_2"] }
"""


@pytest.fixture
def inbound(
    voice_environ: dict[str, str], policy_file: Path, tmp_path: Path, audit_stream: io.StringIO
) -> FlaskClient:
    policy_file.write_text(policy_file.read_text() + INCOMING)
    return build(voice_environ, tmp_path, audit_stream)


ALERT = {
    "AccountSid": support.ACCOUNT_SID,
    "UsageTriggerSid": "UT" + "1" * 32,
    "UsageCategory": "calls",
    "CurrentValue": "1000.00",
    "TriggerValue": "500",
}


VIDEO = {"grants": {"video": {"room": "lobby"}}}


def ask(client: FlaskClient, bearer: str, body: Any, leaks: LeakWatch) -> Any:
    response = client.post("/v1/tokens", json=body, headers={"Authorization": f"Bearer {bearer}"})
    leaks.check_response(response)
    return response


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no signature header at all
        {"X-Twilio-Signature": "not-a-signature"},
        signed(ALICE_TO_US, token="0" * 32),  # signed with another account's token
        signed(ALICE_TO_US, url="http://localhost/v1/twilio/voice/incoming"),  # replayed here
        signed({**ALICE_TO_US, "To": "+15550000000"}),  # a parameter changed after signing
    ],
)
def test_unsigned_or_wrongly_signed_requests_get_no_dial(
    voice: FlaskClient, headers: dict[str, str]
) -> None:
    response = call(voice, ALICE_TO_US, headers)
    assert response.status_code == 403
    assert response.get_json()["code"] == "invalid_signature"
    assert "<Dial" not in response.get_data(as_text=True)


def test_the_secondary_auth_token_works_during_rotation(
    voice_environ: dict[str, str], tmp_path: Path, audit_stream: io.StringIO
) -> None:
    secondary = "e" * 32
    client = build(
        {**voice_environ, "TWILIO_AUTH_TOKEN_SECONDARY": secondary}, tmp_path, audit_stream
    )
    assert call(client, ALICE_TO_US, signed(ALICE_TO_US, token=secondary)).status_code == 200
    assert call(client, ALICE_TO_US, signed(ALICE_TO_US)).status_code == 200


def test_behind_a_proxy_the_public_url_is_what_twilio_signed(
    voice_environ: dict[str, str], tmp_path: Path, audit_stream: io.StringIO
) -> None:
    public = "https://broker.example.test"
    client = build({**voice_environ, "BROKER_PUBLIC_URL": public}, tmp_path, audit_stream)
    headers = signed(ALICE_TO_US, url=f"{public}/v1/twilio/voice")
    assert call(client, ALICE_TO_US, headers, base_url="http://10.0.0.5:8000").status_code == 200
    assert call(client, ALICE_TO_US, signed(ALICE_TO_US)).status_code == 403  # internal URL


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Twilio-Signature": "forged"}, signed({"From": "+1", "To": "+15005550006"}, url=URL)],
)
def test_inbound_requires_a_signature_for_its_own_url(
    inbound: FlaskClient, headers: dict[str, str]
) -> None:
    params = {"From": "+1", "To": "+15005550006"}
    response = inbound.post("/v1/twilio/voice/incoming", data=params, headers=headers)
    assert response.status_code == 403
    assert "<Dial" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Twilio-Signature": "forged"},
        signed(ALERT, url="http://localhost/v1/twilio/voice"),
        signed({**ALERT, "CurrentValue": "1.00"}),
    ],
)
def test_unsigned_alerts_change_nothing(
    client: FlaskClient, headers: dict[str, str], caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    response = client.post("/v1/twilio/usage-alert", data=ALERT, headers=headers)
    assert response.status_code == 403
    assert response.get_json()["code"] == "invalid_signature"
    assert client.get("/readyz").get_json()["paused"] is None
    assert ask(client, caller_token(), VIDEO, leaks).status_code == 200
