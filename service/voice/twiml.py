"""The TwiML we answer Twilio's webhooks with, built by twilio's own builders."""

from __future__ import annotations

from collections.abc import Sequence

from twilio.twiml.voice_response import Dial, VoiceResponse


def dial_twiml(
    *, number: str | None = None, clients: Sequence[str] = (), caller_id: str | None = None
) -> str:
    """``<Dial>`` one number (with our caller ID), or client identities (ringing together)."""
    response = VoiceResponse()
    dial = Dial(caller_id=caller_id) if caller_id and number else Dial()
    if number is not None:
        dial.number(number)
    for client in clients:
        dial.client(client)
    response.append(dial)
    return str(response)


def refusal_twiml(message: str) -> str:
    """Say briefly why, then hang up; never a ``<Dial>``."""
    response = VoiceResponse()
    response.say(message)
    response.hangup()
    return str(response)
