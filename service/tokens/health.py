"""What the instance and the fleet look like from here: readiness checks and the gauges
that a scrape of ``/metrics`` refreshes (paused, signing key age, account events)."""

from __future__ import annotations

import contextlib

from service.base.errors import Unavailable
from service.bookkeeping.audit import Recorder
from service.callers import Authenticator
from service.state import ACCOUNT_EVENTS, AuditTrail, StateStore
from service.tokens.minting import Minter


class HealthViews:
    """Readiness and the fleet's gauges, for the token use case (a mixin: the use case
    holds the parts)."""

    _authenticator: Authenticator
    _minter: Minter
    _store: StateStore
    _trail: AuditTrail | None
    _recorder: Recorder

    def readiness(self) -> dict[str, bool]:
        """Named checks for /readyz: can this instance issue tokens right now?"""
        providers = all(verifier.keys.ready() for verifier in self._authenticator.verifiers)
        checks = {
            "signing_key": self._minter.can_sign(),
            "state": _answers(self._store),
            "identity_provider": providers,
        }
        if self._trail is not None:
            checks["audit_trail"] = _answers(self._trail)
        self._recorder.dependencies(checks)
        return checks

    def account_events(self) -> None:
        """Show the fleet's count of account security events (the state store's)."""
        with contextlib.suppress(Unavailable):
            self._recorder.account_events(self._store.tally(ACCOUNT_EVENTS))

    def signing_key_age(self) -> float | None:
        """Seconds since the fleet first saw the key this instance signs with (the state
        store remembers it); None when the store cannot say. Sets the gauge too."""
        now = self._recorder.now()
        try:
            first = self._store.first_seen(f"signing-key:{self._minter.key_sid}", now)
        except Unavailable:
            return None
        age = max(0.0, (now - first).total_seconds())
        self._recorder.signing_key_age(age)
        return age

    def paused(self) -> bool | None:
        """Whether an operator paused all issuance (the metrics' gauge); None if unknown."""
        try:
            paused = "all" in self._store.pauses()
        except Unavailable:
            return None
        self._recorder.paused(paused)
        return paused


def _answers(place: AuditTrail) -> bool:
    """Whether a store or trail answers now."""
    try:
        place.ping()
    except Unavailable:
        return False
    return True
