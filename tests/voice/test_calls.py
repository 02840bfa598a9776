"""The call use case: dialled only as the dial policy says; inbound calls ring who is named."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from twilio.request_validator import RequestValidator

from service import create_app
from service.cli import main
from service.configuration import load_configuration
from tests import support

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


INCOMING_URL = "http://localhost/v1/twilio/voice/incoming"


@pytest.fixture
def inbound(
    voice_environ: dict[str, str], policy_file: Path, tmp_path: Path, audit_stream: io.StringIO
) -> FlaskClient:
    policy_file.write_text(policy_file.read_text() + INCOMING)
    return build(voice_environ, tmp_path, audit_stream)


def test_a_signed_allowed_call_is_dialled_with_our_caller_id(voice: FlaskClient) -> None:
    response = call(voice, ALICE_TO_US, signed(ALICE_TO_US))
    assert response.status_code == 200
    assert response.mimetype == "application/xml"
    twiml = response.get_data(as_text=True)
    assert f'<Dial callerId="{CALLER_ID}"><Number>+15551234567</Number></Dial>' in twiml


@pytest.mark.parametrize(
    ("destination", "expected", "reason"),
    [
        ("+447700900123", "<Number>+447700900123</Number>", None),
        ("+33612345678", None, "country not allowed"),
        ("+19005551234", None, "blocked prefix (premium or high-risk)"),
        ("+448701234567", None, "blocked prefix (premium or high-risk)"),
        ("12345", None, "malformed number"),
        ("+1555abc", None, "malformed number"),
        ("client:agent_7", "<Client>agent_7</Client>", None),
        ("client:bob", None, "client-to-client call to an identity no rule allows"),
        ("client:bad identity", None, "malformed client identity"),
    ],
)
def test_dial_policy(
    voice: FlaskClient,
    audit_stream: io.StringIO,
    destination: str,
    expected: str | None,
    reason: str | None,
) -> None:
    params = {"From": "client:alice", "To": destination}
    twiml = call(voice, params, signed(params)).get_data(as_text=True)
    [record] = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    if expected:
        assert expected in twiml
        assert record["decision"] == "call_allowed"
    else:
        assert "<Dial" not in twiml
        assert "<Hangup" in twiml
        assert record["decision"] == "call_refused"
        assert record["reason"] == reason


def test_the_call_budget_and_callers_that_may_not_call(
    voice: FlaskClient, audit_stream: io.StringIO
) -> None:
    for _ in range(3):
        assert "<Dial" in call(voice, ALICE_TO_US, signed(ALICE_TO_US)).get_data(as_text=True)
    assert "<Dial" not in call(voice, ALICE_TO_US, signed(ALICE_TO_US)).get_data(as_text=True)
    phone = {"From": "+15557654321", "To": "+15551234567"}  # not a Voice SDK client
    assert "<Dial" not in call(voice, phone, signed(phone)).get_data(as_text=True)
    reasons = [json.loads(line).get("reason") for line in audit_stream.getvalue().splitlines()]
    assert "call budget exhausted" in reasons
    assert "caller is not a Voice client identity" in reasons
    metrics = voice.get("/metrics").get_data(as_text=True)
    assert 'token_broker_calls_total{outcome="allowed"} 3.0' in metrics


def test_revoked_identities_cannot_call(
    voice_environ: dict[str, str], tmp_path: Path, audit_stream: io.StringIO
) -> None:
    assert (
        CliRunner().invoke(main, ["revoke", "--identity", "carol"], env=voice_environ).exit_code
        == 0
    )
    client = build(voice_environ, tmp_path, audit_stream)  # a fresh app reads the revocation
    carol = {"From": "client:carol", "To": "+15551234567"}
    assert "<Dial" not in call(client, carol, signed(carol)).get_data(as_text=True)
    assert (
        json.loads(audit_stream.getvalue().splitlines()[-1])["reason"]
        == "caller identity is revoked"
    )


def test_without_a_dial_policy_no_call_leaves(client: FlaskClient) -> None:
    twiml = call(client, ALICE_TO_US, signed(ALICE_TO_US)).get_data(as_text=True)
    assert "<Dial" not in twiml


def test_inbound_calls_ring_the_identities_policy_names(inbound: FlaskClient) -> None:
    params = {"From": "+15551230000", "To": "+15005550006"}
    twiml = inbound.post(
        "/v1/twilio/voice/incoming", data=params, headers=signed(params, url=INCOMING_URL)
    ).get_data(as_text=True)
    assert "<Dial><Client>agent_1</Client><Client>agent_2</Client></Dial>" in twiml


def test_inbound_calls_to_other_numbers_ring_nobody(inbound: FlaskClient) -> None:
    params = {"From": "+15551230000", "To": "+15009999999"}
    twiml = inbound.post(
        "/v1/twilio/voice/incoming", data=params, headers=signed(params, url=INCOMING_URL)
    ).get_data(as_text=True)
    assert "<Dial" not in twiml


def test_inbound_skips_revoked_identities(
    voice_environ: dict[str, str], policy_file: Path, tmp_path: Path, audit_stream: io.StringIO
) -> None:
    policy_file.write_text(policy_file.read_text() + INCOMING)
    assert (
        CliRunner().invoke(main, ["revoke", "--identity", "agent_1"], env=voice_environ).exit_code
        == 0
    )
    client = build(voice_environ, tmp_path, audit_stream)
    params = {"From": "+15551230000", "To": "+15005550006"}
    twiml = client.post(
        "/v1/twilio/voice/incoming", data=params, headers=signed(params, url=INCOMING_URL)
    ).get_data(as_text=True)
    assert "<Client>agent_1</Client>" not in twiml
    assert "<Client>agent_2</Client>" in twiml
