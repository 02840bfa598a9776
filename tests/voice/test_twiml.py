"""TwiML answers and Twilio's request signatures, through twilio's own builders."""

from __future__ import annotations

from service.voice.twiml import SignatureChecker, dial_twiml, refusal_twiml
from tests import support


def test_dial_a_number_with_our_caller_id_or_ring_clients() -> None:
    number = dial_twiml(number="+15551234567", caller_id="+15005550006")
    assert '<Dial callerId="+15005550006"><Number>+15551234567</Number></Dial>' in number
    clients = dial_twiml(clients=["agent_1", "agent_2"], caller_id="+15005550006")
    assert "<Dial><Client>agent_1</Client><Client>agent_2</Client></Dial>" in clients


def test_a_refusal_says_why_and_hangs_up() -> None:
    twiml = refusal_twiml("This call cannot be placed.")
    assert "<Say>This call cannot be placed.</Say><Hangup />" in twiml
    assert "<Dial" not in twiml


def test_signatures_from_either_auth_token() -> None:
    params = {"From": "client:alice", "To": "+15551234567"}
    checker = SignatureChecker([support.AUTH_TOKEN, "f" * 32])
    url = support.VOICE_URL
    assert checker.valid(url, params, support.twilio_signature(params)["X-Twilio-Signature"])
    secondary = support.twilio_signature(params, token="f" * 32)["X-Twilio-Signature"]
    assert checker.valid(url, params, secondary)
    assert not checker.valid(url, params, None)
    assert not checker.valid(url, {**params, "To": "+1900"}, secondary)
    assert not SignatureChecker([]).valid(url, params, secondary)  # no Auth Token: nothing
    assert support.AUTH_TOKEN not in repr(checker)
