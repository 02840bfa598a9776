"""TwiML answers, through twilio's own builders."""

from __future__ import annotations

from service.voice.twiml import dial_twiml, refusal_twiml


def test_dial_a_number_with_our_caller_id_or_ring_clients() -> None:
    number = dial_twiml(number="+15551234567", caller_id="+15005550006")
    assert '<Dial callerId="+15005550006"><Number>+15551234567</Number></Dial>' in number
    clients = dial_twiml(clients=["agent_1", "agent_2"], caller_id="+15005550006")
    assert "<Dial><Client>agent_1</Client><Client>agent_2</Client></Dial>" in clients


def test_a_refusal_says_why_and_hangs_up() -> None:
    twiml = refusal_twiml("This call cannot be placed.")
    assert "<Say>This call cannot be placed.</Say><Hangup />" in twiml
    assert "<Dial" not in twiml
