"""App users' identity provider: public keys from its JWKS endpoint.

PyJWT's ``PyJWKClient`` fetches and caches the key set; an unknown ``kid`` refreshes
it at most once per cooldown, so a flood of made-up ``kid`` values cannot turn the
broker into a load generator against the identity provider.
"""

from __future__ import annotations

from jwt import PyJWK, PyJWKClient, PyJWKClientError

from service.callers.verifier import IssuerVerifier
from service.settings import OidcSettings

JWKS_TIMEOUT_SECONDS = 3.0
JWKS_REFRESH_COOLDOWN_SECONDS = 30.0
JWKS_LIFESPAN_SECONDS = 300.0


class JwksKeys:
    """Keys from a JWKS URL, refreshed for an unknown ``kid`` at most once per cooldown."""

    def __init__(self, jwks_url: str, *, cooldown_seconds: float) -> None:
        self._client = PyJWKClient(
            jwks_url,
            cache_keys=False,
            lifespan=JWKS_LIFESPAN_SECONDS,
            timeout=JWKS_TIMEOUT_SECONDS,
            cooldown_duration=cooldown_seconds,
            headers={"User-Agent": "token-broker"},
        )

    def key_for(self, kid: str | None) -> PyJWK:
        if kid is None:
            raise PyJWKClientError("a kid is required with a JWKS")
        return self._client.get_signing_key(kid)


def oidc_verifier(
    settings: OidcSettings, *, cooldown_seconds: float = JWKS_REFRESH_COOLDOWN_SECONDS
) -> IssuerVerifier:
    """The verifier for the configured identity provider."""
    return IssuerVerifier(
        issuer=settings.issuer,
        audience=settings.audience,
        algorithms=settings.algorithms,
        leeway_seconds=settings.leeway_seconds,
        keys=JwksKeys(settings.jwks_url, cooldown_seconds=cooldown_seconds),
    )
