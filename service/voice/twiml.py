"""Twilio's webhook side: is a request really from Twilio, and the TwiML we answer.

The only module that imports twilio's ``RequestValidator`` and TwiML builders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Dial, VoiceResponse


class SignatureChecker:
    """Checks ``X-Twilio-Signature`` with the Auth Token, or a secondary one during rotation."""

    def __init__(self, auth_tokens: Sequence[str]) -> None:
        self._validators = [RequestValidator(token) for token in auth_tokens if token]

    def __repr__(self) -> str:
        return f"SignatureChecker(tokens={len(self._validators)})"

    def valid(self, url: str, params: Mapping[str, str], signature: str | None) -> bool:
        """True when some configured Auth Token signed exactly this URL and these params."""
        if not signature:
            return False
        return any(
            validator.validate(url, dict(params), signature) for validator in self._validators
        )


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
