"""Several identity providers at once: the policy's ``[[providers]]``."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask.testing import FlaskClient

from service.base.errors import ConfigurationError
from service.serving.policy_file import Policy
from tests import support

STAFF = "https://login.staff.example.test/v2.0"
CUSTOMERS = "https://customers.example.test/"


def providers_policy(staff_jwks: str, customers_jwks: str) -> str:
    return (
        support.POLICY
        + f"""
[[providers]]
name = "staff"
issuer = "{STAFF}"
audiences = ["api://broker", "5f8c1b2a-0d7e-4c3b-9a1f-2e6d8c4b7a90"]
jwks_url = "{staff_jwks}"
identity_claim = "oid"
identity_prefix = "staff_"

[[providers]]
name = "customers"
issuer = "{CUSTOMERS}"
audiences = ["https://api.example.test"]
jwks_url = "{customers_jwks}"
identity_prefix = "customer_"
"""
    )


def without_oidc(environ: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if not k.startswith("OIDC_")}


@pytest.fixture
def customer_keys() -> support.Keys:
    return support.make_keys()


@pytest.fixture
def two_providers(
    make_client: Callable[..., FlaskClient],
    environ: dict[str, str],
    jwks: support.JwksServer,
    customer_keys: support.Keys,
) -> Iterator[FlaskClient]:
    with support.serve_jwks(customer_keys.jwks()) as customers:
        yield make_client(without_oidc(environ), policy=providers_policy(jwks.url, customers.url))


SAME = "00000000-1111-2222-3333-444444444444"


def staff_token(keys: support.Keys, **claims: object) -> str:
    shaped = support.caller_claims(**{"iss": STAFF, "aud": "api://broker", "oid": SAME, **claims})
    return support.sign(shaped, keys.rsa_private, "RS256", "rsa-1")


def customer_token(keys: support.Keys) -> str:
    shaped = support.caller_claims(iss=CUSTOMERS, aud="https://api.example.test", sub=SAME)
    return support.sign(shaped, keys.rsa_private, "RS256", "rsa-1")


def test_two_providers_with_the_same_subject_give_different_identities(
    two_providers: FlaskClient,
    keys: support.Keys,
    customer_keys: support.Keys,
    post: support.Post,
) -> None:
    staff = post(support.VIDEO, staff_token(keys, sub="pairwise"), to=two_providers)
    customer = post(support.VIDEO, customer_token(customer_keys), to=two_providers)
    assert staff.status_code == customer.status_code == 200
    # its identity_claim (oid) after its prefix, as every token writes a subject
    assert staff.get_json()["identity"] == "staff_" + SAME.replace("-", "_x2d_")
    assert customer.get_json()["identity"] == "customer_" + SAME.replace("-", "_x2d_")


def test_each_provider_verifies_with_its_own_keys_only(
    two_providers: FlaskClient, keys: support.Keys, post: support.Post
) -> None:
    # the customers' issuer, signed with the staff provider's key: refused
    support.assert_problem(
        post(support.VIDEO, customer_token(keys), to=two_providers), 401, "invalid_token"
    )


def test_entra_second_audience_the_app_guid_is_accepted(
    two_providers: FlaskClient, keys: support.Keys, post: support.Post
) -> None:
    guid = staff_token(keys, aud="5f8c1b2a-0d7e-4c3b-9a1f-2e6d8c4b7a90")
    assert post(support.VIDEO, guid, to=two_providers).status_code == 200
    other = staff_token(keys, aud="https://graph.microsoft.com")
    support.assert_problem(post(support.VIDEO, other, to=two_providers), 401, "invalid_token")


A = '[[providers]]\nissuer = "https://a.test/"\naudiences = ["x"]\n'


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (A + '[[providers]]\nissuer = "https://b.test/"\naudiences = ["x"]\n', "identity_prefix"),
        ('[[providers]]\nissuer = "https://a.test/"\n', "needs audiences, client_ids or both"),
        (A.replace("https", "http"), "issuer"),
        (A + 'identity_prefix = "a-"\n', "identity_prefix"),
        (A + 'algorithms = ["HS256"]\n', "asymmetric"),
        (A + "surprise = 1\n", "unknown key 'surprise'"),
        (
            A + 'identity_prefix = "a_"\n' + A.replace('"x"', '"y"') + 'identity_prefix = "b_"\n',
            "issuer 'https://a.test/' is used twice",
        ),
    ],
)
def test_malformed_providers_are_startup_errors(extra: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Policy.from_toml(support.POLICY + extra)
    assert any(expected in problem for problem in raised.value.problems), raised.value.problems


def test_oidc_variables_and_providers_together_are_refused(
    make_client: Callable[..., FlaskClient], environ: dict[str, str], jwks: support.JwksServer
) -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        make_client(environ, policy=providers_policy(jwks.url, jwks.url))
