"""Tokens shaped exactly like each hosted provider's (claims, headers, lifetimes), signed
with local keys, against the settings and rules the README gives for that provider.

Each provider's user with the role gets a Voice token (its identity made Voice-safe
from UUID and ``auth0|`` subjects), the same user without the role does not, and the
provider's ID tokens are refused where the provider says what they are.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from flask.testing import FlaskClient

from tests import support

UUID = "6f1c2a9e-3b4d-4e5f-8a6b-7c8d9e0f1a2b"
VOICE_UUID = UUID.replace("-", "_x2d_")
VOICE = {"grants": {"voice": {"incoming": True}}}


def readme_section(title: str) -> tuple[dict[str, str], str]:
    """The ``sh`` settings and the ``toml`` rules of one provider's README section."""
    readme = (support.ROOT / "README.md").read_text()
    start = readme.index(f"\n#### {title}\n")
    end = readme.find("\n###", start + 1)
    section = readme[start:end]
    [settings_block] = re.findall(r"```sh\n(.*?)```", section, re.S)
    [policy] = re.findall(r"```toml\n(.*?)```", section, re.S)
    settings = dict(line.split("=", 1) for line in settings_block.splitlines() if line)
    return settings, policy


@dataclass
class Shape:
    """One provider's access token: its README section, claims, and header."""

    section: str
    claims: dict[str, Any]
    #: what the role rule looks at, and a value that is not the role
    role: tuple[str, Any]
    identity: str
    voice_identity: str
    header: dict[str, Any] = field(default_factory=lambda: {"typ": "JWT"})
    lifetime: int = 3600
    algorithm: str = "RS256"
    #: the provider's ID token for the same user (its claims, its header), where it must
    #: be refused
    id_token: dict[str, Any] | None = None
    id_header: dict[str, Any] = field(default_factory=lambda: {"typ": "JWT"})


def _now() -> int:
    return int(time.time())


FIREBASE = Shape(
    section="Firebase Authentication",
    claims={
        "iss": "https://securetoken.google.com/my-project",
        "aud": "my-project",
        "auth_time": 0,
        "user_id": "kX3pQ9rT2vW8yZ1aB4cD6eF7gH0j",
        "sub": "kX3pQ9rT2vW8yZ1aB4cD6eF7gH0j",
        "email": "alice@example.com",
        "email_verified": True,
        "roles": ["agent"],
        "firebase": {
            "identities": {"email": ["alice@example.com"]},
            "sign_in_provider": "password",
        },
    },
    role=("roles", ["member"]),
    identity="kX3pQ9rT2vW8yZ1aB4cD6eF7gH0j",
    voice_identity="kX3pQ9rT2vW8yZ1aB4cD6eF7gH0j",
)
AUTH0 = Shape(
    section="Auth0",
    claims={
        "https://example.com/roles": ["agent"],
        "iss": "https://my-tenant.us.auth0.com/",
        "sub": "auth0|64f1c2a93b4d4e5f8a6b7c8d",
        "aud": ["https://api.example.com", "https://my-tenant.us.auth0.com/userinfo"],
        "azp": "Xk2m9Qp4Rt7Vw1Yz3Ab5Cd8Ef0Gh6Ij",
        "scope": "openid profile email",
    },
    role=("https://example.com/roles", []),
    identity="auth0|64f1c2a93b4d4e5f8a6b7c8d",
    voice_identity="auth0_x7c_64f1c2a93b4d4e5f8a6b7c8d",
    lifetime=86400,
)
COGNITO = Shape(
    section="Amazon Cognito",
    claims={
        "sub": UUID,
        "cognito:groups": ["agents"],
        "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEfGhI",
        "version": 2,
        "client_id": "3n4b5urk1ft4fl3mg5e62d9ado",
        "origin_jti": "0d3c4f5e-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
        "event_id": "1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b",
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin",
        "auth_time": 0,
        "jti": "2f3a4b5c-6d7e-4f8a-9b0c-1d2e3f4a5b6c",
        "username": "alice",
    },
    role=("cognito:groups", ["customers"]),
    identity=UUID,
    voice_identity=VOICE_UUID,
    header={},
    id_token={
        "token_use": "id",
        "aud": "3n4b5urk1ft4fl3mg5e62d9ado",
        "client_id": None,
        "cognito:username": "alice",
    },
)
OKTA = Shape(
    section="Okta",
    claims={
        "ver": 1,
        "jti": "AT.8kRr2x7VwQpZ3nY5bC1dE9fG4hJ6kL0mN",
        "iss": "https://dev-123456.okta.com/oauth2/default",
        "aud": "api://default",
        "cid": "0oa8k2m9qp4rt7vw1yz3",
        "uid": "00u1a2b3c4d5e6f7g8h9",
        "scp": ["openid", "profile", "twilio.voice"],
        "auth_time": 0,
        "sub": "alice@example.com",
        "groups": ["Everyone", "Agents"],
    },
    role=("groups", ["Everyone"]),
    identity="00u1a2b3c4d5e6f7g8h9",
    voice_identity="00u1a2b3c4d5e6f7g8h9",
    header={},
)
ENTRA = Shape(
    section="Microsoft Entra ID",
    claims={
        "aud": "5f8c1b2a-0d7e-4c3b-9a1f-2e6d8c4b7a90",
        "iss": "https://login.microsoftonline.com/8f6a1c2e-4b3d-4e5f-9a8b-7c6d5e4f3a2b/v2.0",
        "aio": "AWQAm/8YAAAAx",
        "azp": "1d2e3f4a-5b6c-4d7e-8f9a-0b1c2d3e4f5a",
        "azpacr": "0",
        "name": "Alice",
        "oid": UUID,
        "preferred_username": "alice@example.com",
        "rh": "0.AXwA",
        "roles": ["Broker.Agent"],
        "scp": "access_as_user",
        "sub": "Qx8sZy3lM0nJ_pairwise_subject_per_app",
        "tid": "8f6a1c2e-4b3d-4e5f-9a8b-7c6d5e4f3a2b",
        "uti": "dBx5",
        "ver": "2.0",
    },
    role=("roles", ["Broker.Reader"]),
    identity=UUID,
    voice_identity=VOICE_UUID,
    lifetime=4299,
)
KEYCLOAK = Shape(
    section="Keycloak",
    claims={
        "jti": "3a4b5c6d-7e8f-4a9b-0c1d-2e3f4a5b6c7d",
        "iss": "https://keycloak.example.com/realms/myrealm",
        "aud": "account",
        "sub": UUID,
        "typ": "Bearer",
        "azp": "mobile-app",
        "sid": "4b5c6d7e-8f9a-4b0c-1d2e-3f4a5b6c7d8e",
        "acr": "1",
        "realm_access": {"roles": ["offline_access", "agent", "default-roles-myrealm"]},
        "resource_access": {"account": {"roles": ["manage-account", "view-profile"]}},
        "scope": "openid email profile",
        "email_verified": True,
        "preferred_username": "alice",
    },
    role=("realm_access", {"roles": ["offline_access"]}),
    identity=UUID,
    voice_identity=VOICE_UUID,
    lifetime=300,
    id_token={"typ": "ID", "aud": "mobile-app", "at_hash": "x7Yz"},
)
SUPABASE = Shape(
    section="Supabase",
    claims={
        "iss": "https://abcdefghijklmnopqrst.supabase.co/auth/v1",
        "sub": UUID,
        "aud": "authenticated",
        "email": "alice@example.com",
        "phone": "",
        "app_metadata": {"provider": "email", "providers": ["email"], "roles": ["agent"]},
        "user_metadata": {"email_verified": True, "roles": ["admin"]},
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": 0}],
        "session_id": "5c6d7e8f-9a0b-4c1d-2e3f-4a5b6c7d8e9f",
        "is_anonymous": False,
    },
    role=("app_metadata", {"provider": "email", "roles": []}),
    identity=UUID,
    voice_identity=VOICE_UUID,
    algorithm="ES256",
)
CLERK = Shape(
    section="Clerk",
    claims={
        "azp": "https://app.example.com",
        "fva": [0, -1],
        "iss": "https://clerk.example.com",
        "sid": "sess_2abcDEFghiJKLmnoPQRstuVWXyz",
        "sub": "user_2NNEqL2nrIRdJ194ndJqAHwEfxC",
        "v": 2,
        "o": {"id": "org_2abcDEFghiJKL", "rol": "admin", "slg": "acme"},
    },
    role=("o", {"id": "org_2abcDEFghiJKL", "rol": "member", "slg": "acme"}),
    identity="user_2NNEqL2nrIRdJ194ndJqAHwEfxC",
    voice_identity="user_2NNEqL2nrIRdJ194ndJqAHwEfxC",
    lifetime=60,
)
GENERIC = Shape(
    section="Any OpenID provider",
    claims={
        "iss": "https://id.example.com/",
        "aud": "https://api.example.com",
        "sub": "alice",
        "client_id": "web-app",
        "jti": "a1b2c3",
        "scope": "openid twilio:voice",
        "roles": ["agent"],
    },
    role=("scope", "openid"),
    identity="alice",
    voice_identity="alice",
    header={"typ": "at+jwt"},
    # the audience is the client id here, as some providers make it: only typ tells
    id_token={"client_id": None, "scope": None, "nonce": "n-0S6_WzA2Mj"},
)
SHAPES = [FIREBASE, AUTH0, COGNITO, OKTA, ENTRA, KEYCLOAK, SUPABASE, CLERK, GENERIC]


@pytest.fixture(params=SHAPES, ids=[shape.section for shape in SHAPES])
def shape(request: pytest.FixtureRequest) -> Shape:
    found: Shape = request.param
    return found


@pytest.fixture
def provider(
    shape: Shape,
    make_client: Callable[..., FlaskClient],
    environ: dict[str, str],
    jwks: support.JwksServer,
) -> FlaskClient:
    """The broker with the README's settings and rules for ``shape``'s provider (its keys
    at the local JWKS, since the provider's own are out of reach)."""
    settings, rules = readme_section(shape.section)
    plain = {k: v for k, v in environ.items() if not k.startswith("OIDC_")}
    policy = f"[tokens]\ndefault_ttl = 600\nmax_ttl = 3600\n\n{rules}"
    return make_client({**plain, **settings, "OIDC_JWKS_URL": jwks.url}, policy=policy)


def provider_token(
    shape: Shape, keys: support.Keys, header: dict[str, Any] | None = None, **changes: Any
) -> str:
    now = _now()
    claims = {**shape.claims, "iat": now, "exp": now + shape.lifetime}
    if shape is CLERK:
        claims["nbf"] = now - 5
    for name in ("auth_time",):
        if name in claims:
            claims[name] = now
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    key, kid = (
        (keys.ec_private, "ec-1") if shape.algorithm == "ES256" else (keys.rsa_private, "rsa-1")
    )
    headers = {**(shape.header if header is None else header), "kid": kid}
    return jwt.encode(claims, key, algorithm=shape.algorithm, headers=headers)


def test_each_providers_user_gets_voice_by_its_role_claim(
    shape: Shape, provider: FlaskClient, keys: support.Keys, post: support.Post
) -> None:
    response = post(VOICE, provider_token(shape, keys), to=provider)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["identity"] == shape.voice_identity
    claims = jwt.decode(response.get_json()["token"], support.API_KEY_SECRET, algorithms=["HS256"])
    assert claims["grants"]["identity"] == shape.voice_identity
    assert claims["grants"]["voice"] == {"incoming": {"allow": True}}


def test_without_the_role_the_same_user_gets_no_voice(
    shape: Shape, provider: FlaskClient, keys: support.Keys, post: support.Post
) -> None:
    name, other = shape.role
    response = post(VOICE, provider_token(shape, keys, **{name: other}), to=provider)
    support.assert_problem(response, 403, "grant_not_allowed")


def test_the_audit_record_keeps_the_original_subject(
    shape: Shape,
    provider: FlaskClient,
    keys: support.Keys,
    post: support.Post,
    audit_stream: Any,
) -> None:
    assert post(VOICE, provider_token(shape, keys), to=provider).status_code == 200
    [record] = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    assert record["identity"] == shape.voice_identity
    if shape.voice_identity != shape.identity:
        assert record["subject"] == shape.identity


@pytest.mark.parametrize(
    "shape",
    [shape for shape in SHAPES if shape.id_token is not None],
    ids=lambda shape: shape.section,
)
def test_the_providers_id_token_is_refused(
    shape: Shape, provider: FlaskClient, keys: support.Keys, post: support.Post
) -> None:
    assert shape.id_token is not None
    token = provider_token(shape, keys, header=shape.id_header, **shape.id_token)
    support.assert_problem(post(VOICE, token, to=provider), 401, "invalid_token")
