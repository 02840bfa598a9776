"""The identity provider's verifier: its issuer, audience and algorithms from settings."""

from __future__ import annotations

from service.callers.oidc import oidc_verifier
from tests import support


def test_the_verifier_takes_the_settings(keys: support.Keys, jwks: support.JwksServer) -> None:
    verifier = oidc_verifier(support.oidc_settings(jwks.url))
    assert verifier.issuer == support.ISSUER
    token = support.sign(support.caller_claims(), keys.ec_private, "ES256", "ec-1")
    assert verifier.verify(token).claims["sub"] == "alice"
    assert support.ISSUER in repr(verifier)
