"""Caller authentication: JWKS fetch discipline, the verification cache, the dev issuer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from werkzeug.test import TestResponse

from service.callers import Authenticator
from service.callers.dev_issuer import DevIssuer
from service.callers.oidc import oidc_verifier
from service.errors import AuthenticationFailed, Unavailable
from service.settings import OidcSettings
from tests import support

VIDEO = {"grants": {"video": {"room": "lobby"}}}


def oidc(url: str) -> OidcSettings:
    return OidcSettings(
        issuer=support.ISSUER,
        audience=support.AUDIENCE,
        jwks_url=url,
        algorithms=("RS256", "ES256"),
        leeway_seconds=30,
    )


def test_unknown_kid_flood_fetches_the_jwks_at_most_once_per_cooldown(
    post: Callable[..., TestResponse], caller_token: Callable[..., str], jwks: support.JwksServer
) -> None:
    assert post(VIDEO, caller_token()).status_code == 200
    assert jwks.fetches == 1
    for number in range(50):
        response = post(VIDEO, caller_token(kid=f"unknown-{number}"))
        assert response.status_code == 401
    assert jwks.fetches == 1  # the first fetch was within the cooldown: no refresh at all


def test_unknown_kid_refreshes_after_the_cooldown(
    keys: support.Keys, jwks: support.JwksServer
) -> None:
    verifier = oidc_verifier(oidc(jwks.url), cooldown_seconds=0.0)
    authenticator = Authenticator([verifier], identity_claim="sub", clock=lambda: datetime.now(UTC))
    token = support.sign(support.caller_claims(), keys.rsa_private, "RS256", "rsa-1")
    authenticator.authenticate(f"Bearer {token}")
    stranger = support.sign(support.caller_claims(), keys.rsa_private, "RS256", "rotated-in")
    with pytest.raises(AuthenticationFailed):
        authenticator.authenticate(f"Bearer {stranger}")
    assert jwks.fetches == 2  # a new kid may be a rotated key: one refresh, once


def test_rotated_key_is_picked_up(keys: support.Keys, jwks: support.JwksServer) -> None:
    verifier = oidc_verifier(oidc(jwks.url), cooldown_seconds=0.0)
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
    verifier = oidc_verifier(oidc("http://127.0.0.1:9/jwks.json"))
    authenticator = Authenticator([verifier], identity_claim="sub", clock=lambda: datetime.now(UTC))
    token = support.sign(support.caller_claims(), keys.rsa_private, "RS256", "rsa-1")
    with pytest.raises(Unavailable):
        authenticator.authenticate(f"Bearer {token}")


def test_verified_caller_is_cached_until_exp_only(
    keys: support.Keys, jwks: support.JwksServer
) -> None:
    now = [datetime.now(UTC)]
    verifier = oidc_verifier(oidc(jwks.url))
    authenticator = Authenticator([verifier], identity_claim="sub", clock=lambda: now[0])
    exp = int(now[0].timestamp()) + 120
    token = support.sign(support.caller_claims(exp=exp), keys.rsa_private, "RS256", "rsa-1")
    first = authenticator.authenticate(f"Bearer {token}")
    assert authenticator.authenticate(f"Bearer {token}") is first
    now[0] = datetime.fromtimestamp(exp, UTC)
    # at exp the cache is not used; PyJWT's own clock still accepts within leeway,
    # so the token is verified afresh (a new object) rather than served from the cache
    assert authenticator.authenticate(f"Bearer {token}") is not first


def test_identity_claim_must_be_a_non_empty_string(
    keys: support.Keys, jwks: support.JwksServer
) -> None:
    authenticator = Authenticator(
        [oidc_verifier(oidc(jwks.url))], identity_claim="email", clock=lambda: datetime.now(UTC)
    )
    for claims in (
        support.caller_claims(),
        support.caller_claims(email=""),
        support.caller_claims(email=["a"]),
    ):
        token = support.sign(claims, keys.rsa_private, "RS256", "rsa-1")
        with pytest.raises(AuthenticationFailed):
            authenticator.authenticate(f"Bearer {token}")
    token = support.sign(
        support.caller_claims(email="a@example.test"), keys.rsa_private, "RS256", "rsa-1"
    )
    assert authenticator.authenticate(f"Bearer {token}").identity == "a@example.test"


def test_dev_issuer_tokens_verify_and_keep_their_key(tmp_path: Path) -> None:
    issuer = DevIssuer.load_or_create(tmp_path)
    again = DevIssuer.load_or_create(tmp_path)
    assert (tmp_path / "issuer-key.pem").stat().st_mode & 0o777 == 0o600
    now = datetime.now(UTC)
    token = issuer.session_token("carol", {"roles": "agent"}, now)
    authenticator = Authenticator([again.verifier()], identity_claim="sub", clock=lambda: now)
    caller = authenticator.authenticate(f"Bearer {token}")
    assert caller.identity == "carol"
    assert caller.claims["roles"] == "agent"
    expired = issuer.session_token("carol", {}, now - timedelta(days=2), ttl=timedelta(hours=1))
    with pytest.raises(AuthenticationFailed):
        authenticator.authenticate(f"Bearer {expired}")


def test_dev_issuer_is_not_accepted_in_production(
    post: Callable[..., TestResponse], tmp_path: Path
) -> None:
    dev_token = DevIssuer.load_or_create(tmp_path / "dev").session_token(
        "alice", {}, datetime.now(UTC)
    )
    response = post(VIDEO, dev_token)
    assert response.status_code == 401
