"""App users' identity provider: its tokens verified against its JWKS (see ``jwks``)."""

from __future__ import annotations

from service.callers.jwks import COOLDOWN_SECONDS, JwksKeys
from service.callers.verifier import IssuerVerifier
from service.clock import Clock, system_clock
from service.settings import OidcSettings


def oidc_verifier(
    settings: OidcSettings,
    *,
    clock: Clock = system_clock,
    cooldown_seconds: float = COOLDOWN_SECONDS,
) -> IssuerVerifier:
    """The verifier for the configured identity provider."""
    return IssuerVerifier(
        issuer=settings.issuer,
        audience=settings.audience,
        algorithms=settings.algorithms,
        leeway_seconds=settings.leeway_seconds,
        keys=JwksKeys(settings.jwks_url, clock=clock, cooldown_seconds=cooldown_seconds),
    )
