"""From an Authorization header to a verified caller: identity from a claim, a bounded cache."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.base.errors import AuthenticationFailed
from service.callers import Authenticator, Provider
from service.callers.oidc import oidc_verifier
from tests import support

_header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300)


def test_verified_caller_is_cached_until_exp_only(
    keys: support.Keys, jwks: support.JwksServer
) -> None:
    now = [datetime.now(UTC)]
    verifier = oidc_verifier(support.oidc_settings(jwks.url))
    authenticator = Authenticator([Provider(verifier)], identity_claim="sub", clock=lambda: now[0])
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
        [Provider(oidc_verifier(support.oidc_settings(jwks.url)))],
        identity_claim="email",
        clock=lambda: datetime.now(UTC),
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


def test_missing_or_non_bearer_authorization(
    client: FlaskClient, post: support.Post, caller_token: support.Token
) -> None:
    support.assert_problem(post(support.VIDEO), 401, "invalid_token")
    response = client.post(
        "/v1/tokens", json=support.VIDEO, headers={"Authorization": "Basic YTpi"}
    )
    support.assert_problem(response, 401, "invalid_token")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(authorization=_header_text)
def test_any_authorization_header_is_a_clean_401(client: FlaskClient, authorization: str) -> None:
    response = client.post(
        "/v1/tokens", json=support.VIDEO, headers={"Authorization": authorization}
    )
    support.assert_problem(response, 401, "invalid_token")
