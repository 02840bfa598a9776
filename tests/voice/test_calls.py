"""The call use case: dialled only as the dial policy says; inbound calls ring who is named."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from flask.testing import FlaskClient

from service.tokens.issuance import REVOCATION_MARGIN_SECONDS
from tests import support


def test_a_signed_allowed_call_is_dialled_with_our_caller_id(voice: FlaskClient) -> None:
    response = support.call(voice, support.ALICE_TO_US)
    assert response.status_code == 200
    assert response.mimetype == "application/xml"
    twiml = response.get_data(as_text=True)
    assert f'<Dial callerId="{support.CALLER_ID}"><Number>+15551234567</Number></Dial>' in twiml


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
    twiml = support.call(voice, params).get_data(as_text=True)
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
    calls = [{**support.ALICE_TO_US, "CallSid": f"CA{n:032x}"} for n in range(4)]  # four calls
    for call in calls[:3]:
        assert "<Dial" in support.call(voice, call).get_data(as_text=True)
    assert "<Dial" not in support.call(voice, calls[3]).get_data(as_text=True)
    phone = {"From": "+15557654321", "To": "+15551234567"}  # not a Voice SDK client
    assert "<Dial" not in support.call(voice, phone).get_data(as_text=True)
    reasons = [json.loads(line).get("reason") for line in audit_stream.getvalue().splitlines()]
    assert "call budget exhausted" in reasons
    assert "caller is not a Voice client identity" in reasons
    metrics = voice.get("/metrics").get_data(as_text=True)
    assert 'token_broker_calls_total{outcome="allowed"} 3.0' in metrics


def test_revoked_identities_cannot_call(
    voice_environ: dict[str, str],
    audit_stream: io.StringIO,
    make_client: Callable[..., FlaskClient],
    cli: Callable[..., Result],
) -> None:
    client = make_client(voice_environ)  # the server makes the store
    cli("revoke", "--identity", "carol", env=voice_environ, check=True)
    carol = {"From": "client:carol", "To": "+15551234567"}
    assert "<Dial" not in support.call(client, carol).get_data(as_text=True)
    assert (
        json.loads(audit_stream.getvalue().splitlines()[-1])["reason"]
        == "caller identity is revoked"
    )


def test_without_a_dial_policy_no_call_leaves(client: FlaskClient) -> None:
    twiml = support.call(client, support.ALICE_TO_US).get_data(as_text=True)
    assert "<Dial" not in twiml


def test_inbound_calls_ring_the_identities_policy_names(inbound: FlaskClient) -> None:
    params = {"From": "+15551230000", "To": "+15005550006"}
    twiml = support.call(inbound, params, path="/v1/twilio/voice/incoming").get_data(as_text=True)
    assert "<Dial><Client>agent_1</Client><Client>agent_2</Client></Dial>" in twiml


def test_inbound_calls_to_other_numbers_ring_nobody(inbound: FlaskClient) -> None:
    params = {"From": "+15551230000", "To": "+15009999999"}
    twiml = support.call(inbound, params, path="/v1/twilio/voice/incoming").get_data(as_text=True)
    assert "<Dial" not in twiml


def test_inbound_skips_revoked_identities(
    voice_environ: dict[str, str],
    policy_file: Path,
    make_client: Callable[..., FlaskClient],
    cli: Callable[..., Result],
) -> None:
    policy_file.write_text(policy_file.read_text() + support.INCOMING)
    client = make_client(voice_environ)
    cli("revoke", "--identity", "agent_1", env=voice_environ, check=True)
    params = {"From": "+15551230000", "To": "+15005550006"}
    twiml = support.call(client, params, path="/v1/twilio/voice/incoming").get_data(as_text=True)
    assert "<Client>agent_1</Client>" not in twiml
    assert "<Client>agent_2</Client>" in twiml


def test_a_replayed_call_request_dials_nothing_and_spends_nothing(
    voice: FlaskClient, audit_stream: io.StringIO
) -> None:
    assert "<Dial" in support.call(voice, support.ALICE_TO_US).get_data(as_text=True)
    for _ in range(3):  # a captured request, sent again
        replayed = support.call(voice, support.ALICE_TO_US)
        support.assert_problem(replayed, 403, "replayed")
        assert "<Dial" not in replayed.get_data(as_text=True)
    later = {**support.ALICE_TO_US, "CallSid": "CA" + "1" * 32}
    assert "<Dial" in support.call(voice, later).get_data(as_text=True)  # budget untouched
    allowed = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    assert [record["decision"] for record in allowed] == ["call_allowed", "call_allowed"]


def test_one_revocation_rule_for_tokens_and_calls(
    voice: FlaskClient,
    cli: Callable[..., Result],
    caller_token: support.Token,
    post: support.Post,
) -> None:
    now = int(time.time())
    signed_in = now - 600
    session = caller_token(sub="alice", roles="agent", auth_time=signed_in, iat=signed_in)
    voice_grant: dict[str, object] = {"grants": {"voice": {}}}

    def call_once(number: int) -> str:
        params = {**support.ALICE_TO_US, "CallSid": f"CA{number:032x}"}
        return support.call(voice, params).get_data(as_text=True)

    assert post(voice_grant, session, to=voice).status_code == 200
    assert "<Dial" in call_once(1)
    cli("revoke", "--identity", "alice", check=True)
    refreshed = caller_token(sub="alice", roles="agent", auth_time=signed_in, iat=now)
    support.assert_problem(post(voice_grant, refreshed, to=voice), 403, "revoked")
    assert "<Dial" not in call_once(2)  # the revoked session's calls too
    signed_in_again = caller_token(
        sub="alice", roles="agent", auth_time=now + REVOCATION_MARGIN_SECONDS + 1
    )
    assert post(voice_grant, signed_in_again, to=voice).status_code == 200
    assert "<Dial" in call_once(3)  # a new sign-in: tokens and calls alike


def test_a_subject_made_voice_safe_calls_and_is_revoked_by_its_subject(
    voice: FlaskClient,
    cli: Callable[..., Result],
    caller_token: support.Token,
    post: support.Post,
    audit_stream: io.StringIO,
) -> None:
    subject = "6f1c2a9e-3b4d-4e5f-8a6b-7c8d9e0f1a2b"
    identity = subject.replace("-", "_x2d_")
    signed_in = int(time.time()) - 600
    session = caller_token(sub=subject, roles="agent", auth_time=signed_in)
    voice_grant: dict[str, object] = {"grants": {"voice": {}}}

    def call_once(number: int) -> str:
        params = {"From": f"client:{identity}", "To": "+15551234567", "CallSid": f"CA{number:032x}"}
        return support.call(voice, params).get_data(as_text=True)

    response = post(voice_grant, session, to=voice)
    assert response.get_json()["identity"] == identity
    assert "<Dial" in call_once(1)
    cli("revoke", "--identity", subject, check=True)  # the subject, as the provider knows it
    support.assert_problem(post(voice_grant, session, to=voice), 403, "revoked")
    assert "<Dial" not in call_once(2)
    records = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    assert records[-1]["reason"] == "caller identity is revoked"
    assert records[0]["subject"] == subject  # the audit keeps who it was
