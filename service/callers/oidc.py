"""App users' identity providers: their tokens verified against their keys (see ``jwks``),
found through discovery unless a JWKS URL is given (see ``discovery``)."""

from __future__ import annotations

from service.base.clock import Clock, system_clock
from service.callers.authenticator import Provider
from service.callers.discovery import JwksLocation
from service.callers.jwks import COOLDOWN_SECONDS, JwksKeys
from service.callers.verifier import IssuerVerifier
from service.config.settings import IdentityProvider


def oidc_verifier(
    settings: IdentityProvider,
    *,
    clock: Clock = system_clock,
    cooldown_seconds: float = COOLDOWN_SECONDS,
) -> IssuerVerifier:
    """The verifier of one identity provider."""
    return IssuerVerifier(
        issuer=settings.issuer,
        audiences=settings.audiences,
        client_ids=settings.client_ids,
        algorithms=settings.algorithms,
        leeway_seconds=settings.leeway_seconds,
        required_typ=settings.required_typ,
        keys=JwksKeys(
            JwksLocation(settings.issuer, settings.jwks_url),
            clock=clock,
            cooldown_seconds=cooldown_seconds,
        ),
    )


def provider_of(settings: IdentityProvider, *, clock: Clock = system_clock) -> Provider:
    """An identity provider, ready for the authenticator."""
    return Provider(
        oidc_verifier(settings, clock=clock),
        identity_claim=settings.identity_claim,
        identity_prefix=settings.identity_prefix,
    )
