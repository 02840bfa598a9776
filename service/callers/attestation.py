"""Which program is asking? Firebase App Check attests the genuine, unmodified app.

App Check (Apple App Attest and DeviceCheck, Play Integrity, reCAPTCHA Enterprise behind
one interface) gives the app a JWT that any server can verify offline: RS256 from App
Check's public keys (fetched and cached as the identity provider's are, ``jwks``),
issued by ``https://firebaseappcheck.googleapis.com/<project number>``, for an audience
that includes ``projects/<project number>``, unexpired, its ``sub`` the app's id.
"Limited-use" tokens are meant to be consumed once: the caller keeps the ``jti``
(``consume``).

A rule of the policy says which grants need it (``attestation = "required"`` or
``"limited_use"``); a request without those grants never needs the header.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.base.clock import Clock, system_clock
from service.base.errors import AttestationRequired, AuthenticationFailed
from service.callers.jwks import JwksKeys
from service.callers.verifier import IssuerVerifier
from service.config.settings import AppCheckSettings

HEADER = "X-Firebase-AppCheck"
#: App Check tokens live 30 minutes to 7 days; their clocks are Google's.
LEEWAY_SECONDS = 30


@dataclass(frozen=True)
class Attestation:
    """A verified App Check token: which app, and (for limited use) what to consume."""

    app_id: str
    jti: str | None
    expires_at: int


class AppCheck:
    """Verifies ``X-Firebase-AppCheck`` tokens of one Firebase project's apps."""

    def __init__(self, settings: AppCheckSettings, *, clock: Clock = system_clock) -> None:
        self._app_ids = frozenset(settings.app_ids)
        self._verifier = IssuerVerifier(
            issuer=settings.issuer,
            audiences=(settings.audience,),
            algorithms=("RS256",),
            leeway_seconds=LEEWAY_SECONDS,
            keys=JwksKeys(settings.jwks_url, clock=clock),
        )

    def __repr__(self) -> str:
        return f"AppCheck(apps={len(self._app_ids)})"

    def verify(self, token: str | None) -> Attestation:
        """The attestation of ``token``; ``AttestationRequired`` saying why not.

        ``Unavailable`` when App Check's keys cannot be had (503, as for the identity
        provider's): a valid app is never told it is not genuine because of an outage.
        """
        if not token:
            raise AttestationRequired(f"no {HEADER} header")
        try:
            verified = self._verifier.verify(token.strip())
        except AuthenticationFailed as failure:
            raise AttestationRequired(f"App Check token refused: {failure.reason}") from None
        claims = verified.claims
        app_id = claims.get("sub")
        if not isinstance(app_id, str) or app_id not in self._app_ids:
            raise AttestationRequired("App Check token of an app not in APPCHECK_APP_IDS")
        jti = claims.get("jti")
        return Attestation(
            app_id=app_id,
            jti=jti if isinstance(jti, str) and jti else None,
            expires_at=verified.expires_at,
        )
