"""Twilio's webhook requests: signed for the URL Twilio called, and acted on once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.base.errors import InvalidSignature, Replayed
from service.state import StateStore
from service.voice.signatures import SignatureChecker, WebhookGuard
from tests import support

PARAMS = {"From": "client:alice", "To": "+15551234567"}


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


def test_a_signed_request_is_admitted_once(store: StateStore) -> None:
    guard = WebhookGuard(SignatureChecker([support.AUTH_TOKEN]), store, lambda: datetime.now(UTC))
    signature = support.twilio_signature(PARAMS)["X-Twilio-Signature"]
    guard.admit(support.VOICE_URL, PARAMS, signature, "idem-1")
    with pytest.raises(Replayed):
        guard.admit(support.VOICE_URL, PARAMS, signature, None)  # the same signature again
    other = {**PARAMS, "To": "+15557654321"}
    other_signature = support.twilio_signature(other)["X-Twilio-Signature"]
    with pytest.raises(Replayed):  # Twilio's retry of a request acted on: same idempotency
        guard.admit(support.VOICE_URL, other, other_signature, "idem-1")
    guard.admit(support.VOICE_URL, other, other_signature, "idem-2")
    with pytest.raises(InvalidSignature):
        guard.admit("https://another-host.test/v1/twilio/voice", PARAMS, signature, None)
