"""Is a webhook request really from Twilio, and the first time it comes?

``X-Twilio-Signature`` is checked with twilio's ``RequestValidator`` against the URL
Twilio called (``BROKER_PUBLIC_URL`` in production, never a request's Host), with the
Auth Token or, during its rotation, the secondary one. A signed request is then acted on
at most once: its signature and its ``I-Twilio-Idempotency-Token`` are remembered in the
state store for a day, so a captured request replayed later changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from twilio.request_validator import RequestValidator

from service.base.clock import Clock
from service.base.errors import InvalidSignature, Replayed
from service.state import StateStore

REPLAY_WINDOW_SECONDS = 86400


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


class WebhookGuard:
    """Signed by Twilio, and new: or refused (``InvalidSignature``, ``Replayed``)."""

    def __init__(self, signatures: SignatureChecker, store: StateStore, clock: Clock) -> None:
        self._signatures = signatures
        self._store = store
        self._clock = clock

    def __repr__(self) -> str:
        return f"WebhookGuard({self._signatures!r})"

    def admit(
        self,
        url: str,
        params: Mapping[str, str],
        signature: str | None,
        idempotency_token: str | None,
    ) -> None:
        """Raise unless this request is Twilio's, for ``url``, and not seen before."""
        if not self._signatures.valid(url, params, signature):
            raise InvalidSignature("missing or wrong X-Twilio-Signature")
        keys = ["signature:" + _digest(f"{url}|{signature}")]
        if idempotency_token:
            keys.append("idempotency:" + _digest(idempotency_token))
        if not self._store.first_time(keys, self._clock(), REPLAY_WINDOW_SECONDS):
            raise Replayed("a signed request seen before")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
