"""The identity provider's keys: from its JWKS, refreshed for new kids at most once per cooldown."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from werkzeug.test import TestResponse

from service.callers import Authenticator
from service.callers.oidc import oidc_verifier
from service.errors import AuthenticationFailed, Unavailable
from tests import support


def test_unknown_kid_flood_fetches_the_jwks_at_most_once_per_cooldown(
    post: Callable[..., TestResponse], caller_token: Callable[..., str], jwks: support.JwksServer
) -> None:
    assert post(support.VIDEO, caller_token()).status_code == 200
    assert jwks.fetches == 1
    for number in range(50):
        response = post(support.VIDEO, caller_token(kid=f"unknown-{number}"))
        assert response.status_code == 401
    assert jwks.fetches == 1  # the first fetch was within the cooldown: no refresh at all


def test_unknown_kid_refreshes_after_the_cooldown(
    keys: support.Keys, jwks: support.JwksServer
) -> None:
    verifier = oidc_verifier(support.oidc_settings(jwks.url), cooldown_seconds=0.0)
    authenticator = Authenticator([verifier], identity_claim="sub", clock=lambda: datetime.now(UTC))
    token = support.sign(support.caller_claims(), keys.rsa_private, "RS256", "rsa-1")
    authenticator.authenticate(f"Bearer {token}")
    stranger = support.sign(support.caller_claims(), keys.rsa_private, "RS256", "rotated-in")
    with pytest.raises(AuthenticationFailed):
        authenticator.authenticate(f"Bearer {stranger}")
    assert jwks.fetches == 2  # a new kid may be a rotated key: one refresh, once


def test_rotated_key_is_picked_up(keys: support.Keys, jwks: support.JwksServer) -> None:
    verifier = oidc_verifier(support.oidc_settings(jwks.url), cooldown_seconds=0.0)
    authenticator = Authenticator([verifier], identity_claim="sub", clock=lambda: datetime.now(UTC))
    authenticator.authenticate(
        "Bearer " + support.sign(support.caller_claims(), keys.rsa_private, "RS256", "rsa-1")
    )
    document = keys.jwks()
    document["keys"][0]["kid"] = "rsa-2"
    jwks.document = document
    caller = authenticator.authenticate(
        "Bearer "
        + support.sign(support.caller_claims(sub="bob"), keys.rsa_private, "RS256", "rsa-2")
    )
    assert caller.identity == "bob"


def test_unreachable_jwks_is_unavailable_not_unauthorized(keys: support.Keys) -> None:
    verifier = oidc_verifier(support.oidc_settings("http://127.0.0.1:9/jwks.json"))
    authenticator = Authenticator([verifier], identity_claim="sub", clock=lambda: datetime.now(UTC))
    token = support.sign(support.caller_claims(), keys.rsa_private, "RS256", "rsa-1")
    with pytest.raises(Unavailable):
        authenticator.authenticate(f"Bearer {token}")
