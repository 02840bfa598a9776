"""OIDC_ISSUER alone finds the provider's keys; a wrong discovery says what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from click.testing import Result
from flask.testing import FlaskClient

from service.callers.discovery import WELL_KNOWN, discover_jwks_url
from service.callers.fetch import FetchFailed
from tests import support


def discovery(jwks: support.JwksServer, **overrides: Any) -> dict[str, Any]:
    """The provider's discovery document, with the issuer at ``jwks.base_url``."""
    document = {
        "issuer": jwks.base_url,
        "jwks_uri": jwks.url,
        "token_endpoint": f"{jwks.base_url}/token",
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        **overrides,
    }
    jwks.documents[WELL_KNOWN] = document
    return document


@pytest.fixture
def discovered(environ: dict[str, str], jwks: support.JwksServer) -> dict[str, str]:
    """The test environment with OIDC_ISSUER and OIDC_AUDIENCE only."""
    discovery(jwks)
    found = {k: v for k, v in environ.items() if k != "OIDC_JWKS_URL"}
    return {**found, "OIDC_ISSUER": jwks.base_url}


@pytest.fixture
def token(keys: support.Keys, jwks: support.JwksServer) -> str:
    """A caller token of the provider at ``jwks.base_url``."""
    return support.sign(
        support.caller_claims(iss=jwks.base_url), keys.rsa_private, "RS256", "rsa-1"
    )


def test_the_issuer_alone_finds_the_keys(
    make_client: Callable[..., FlaskClient],
    discovered: dict[str, str],
    jwks: support.JwksServer,
    token: str,
    post: support.Post,
) -> None:
    client = make_client(discovered)
    assert post(support.VIDEO, token, to=client).status_code == 200
    assert jwks.fetches == 1


def test_a_document_naming_another_issuer_is_503_and_not_ready(
    make_client: Callable[..., FlaskClient],
    discovered: dict[str, str],
    jwks: support.JwksServer,
    token: str,
    post: support.Post,
) -> None:
    discovery(jwks, issuer="https://someone-else.example.test/")
    client = make_client(discovered)
    support.assert_problem(post(support.VIDEO, token, to=client), 503, "unavailable")
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["identity_provider"] == "failed"
    assert jwks.fetches == 0  # the keys of a provider that is not the configured one: never


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"issuer": "https://other.example.test/"}, "names the issuer"),
        ({"jwks_uri": None}, "names no jwks_uri"),
        ({"jwks_uri": "http://keys.example.test/jwks"}, "https"),
    ],
)
def test_discovery_says_exactly_what_is_wrong(
    jwks: support.JwksServer, overrides: dict[str, Any], expected: str
) -> None:
    document = discovery(jwks, **overrides)
    if overrides.get("jwks_uri", "") is None:
        del document["jwks_uri"]
    with pytest.raises(FetchFailed, match=expected):
        discover_jwks_url(jwks.base_url)


def test_the_issuer_must_match_exactly_trailing_slash_included(jwks: support.JwksServer) -> None:
    discovery(jwks, issuer=jwks.base_url + "/")
    with pytest.raises(FetchFailed, match="trailing slash"):
        discover_jwks_url(jwks.base_url)


def test_an_explicit_jwks_url_overrides_discovery(
    make_client: Callable[..., FlaskClient],
    discovered: dict[str, str],
    jwks: support.JwksServer,
    token: str,
    post: support.Post,
) -> None:
    discovery(jwks, jwks_uri=f"{jwks.base_url}/elsewhere")
    client = make_client({**discovered, "OIDC_JWKS_URL": jwks.url})
    assert post(support.VIDEO, token, to=client).status_code == 200


def test_check_config_online_reports_the_keys_found(
    cli: Callable[..., Result], discovered: dict[str, str], jwks: support.JwksServer
) -> None:
    result = cli("check-config", "--online", env=discovered, check=True)
    assert f"ok: identity provider {jwks.base_url}: 2 keys, found by discovery" in result.output


def test_check_config_online_fails_naming_the_problem(
    cli: Callable[..., Result], discovered: dict[str, str], jwks: support.JwksServer
) -> None:
    offline = cli("check-config", env={**discovered, "OIDC_ISSUER": jwks.base_url + "/"})
    assert offline.exit_code == 0  # nothing is fetched without --online
    result = cli("check-config", "--online", env={**discovered, "OIDC_ISSUER": jwks.base_url + "/"})
    assert result.exit_code != 0
    assert f"names the issuer {jwks.base_url!r}" in result.output
