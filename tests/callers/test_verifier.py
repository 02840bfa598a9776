"""Verifying an issuer's tokens: fixed algorithms, exact iss and aud, no key-pointing headers."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import support


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unsigned(alg: str) -> str:
    return f"{_b64({'alg': alg, 'typ': 'JWT', 'kid': 'rsa-1'})}.{_b64(support.caller_claims())}."


def _hs256_with_public_key(keys: support.Keys) -> str:
    public_pem = keys.rsa_private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"})
    payload = _b64(support.caller_claims())
    import hashlib
    import hmac

    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def _raw_signed(claims: dict[str, Any], keys: support.Keys) -> str:
    # PyJWT's encode refuses some malformed claims; sign the bytes directly instead.
    return jwt.PyJWS().encode(
        json.dumps(claims).encode(), keys.rsa_private, "RS256", {"kid": "rsa-1"}
    )


BAD_CREDENTIALS: dict[str, Callable[[support.Token, support.Keys], str]] = {
    "alg none": lambda t, k: _unsigned("none"),
    "alg None": lambda t, k: _unsigned("None"),
    "alg NONE": lambda t, k: _unsigned("NONE"),
    "alg nOnE": lambda t, k: _unsigned("nOnE"),
    "HS256 signed with the public key": lambda t, k: _hs256_with_public_key(k),
    "embedded jwk": lambda t, k: t(
        headers={
            "jwk": json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.other_rsa_private.public_key()))
        },
        key=k.other_rsa_private,
    ),
    "jku header": lambda t, k: t(headers={"jku": "http://127.0.0.1:9/keys"}),
    "x5u header": lambda t, k: t(headers={"x5u": "http://127.0.0.1:9/cert"}),
    "x5c header": lambda t, k: t(headers={"x5c": ["MIIB"]}),
    "kid path traversal": lambda t, k: t(kid="../../../../dev/null"),
    "kid sql injection": lambda t, k: t(kid="' OR '1'='1"),
    "kid very long": lambda t, k: t(kid="k" * 5000),
    "signed by a stranger's key": lambda t, k: t(key=k.other_rsa_private),
    "rsa key id with an EC signature": lambda t, k: t(
        key=k.ec_private, algorithm="ES256", kid="rsa-1"
    ),
    "expired": lambda t, k: t(exp=1_000_000, iat=999_000),
    "nbf in the future": lambda t, k: t(nbf=4_000_000_000),
    "iat in the future": lambda t, k: t(iat=4_000_000_000, exp=4_000_000_300),
    "wrong iss": lambda t, k: t(iss="https://evil.example.test/"),
    "iss prefix": lambda t, k: t(iss=support.ISSUER[:-1]),
    "iss suffix": lambda t, k: t(iss=support.ISSUER + "x"),
    "iss as a list": lambda t, k: _raw_signed(
        {**support.caller_claims(), "iss": [support.ISSUER]}, k
    ),
    "wrong aud": lambda t, k: t(aud="someone-else"),
    "aud prefix": lambda t, k: t(aud=support.AUDIENCE[:-1]),
    "missing exp": lambda t, k: t(exp=None),
    "missing iat": lambda t, k: t(iat=None),
    "missing sub": lambda t, k: t(sub=None),
    "no aud, no client listed": lambda t, k: t(aud=None, azp="some-app"),
    "aud as an object": lambda t, k: t(aud={"x": support.AUDIENCE}),
    "client id as a list": lambda t, k: t(aud=None, client_id=["some-app"]),
    "an ID token by token_use (Cognito)": lambda t, k: t(token_use="id"),
    "an ID token by typ (Keycloak)": lambda t, k: t(typ="ID"),
    "unknown crit": lambda t, k: t(headers={"crit": ["exp-ext"], "exp-ext": 1}),
    "two parts": lambda t, k: ".".join(t().split(".")[:2]),
    "four parts": lambda t, k: t() + ".AAAA",
    "bad base64": lambda t, k: "e!!.e!!.e!!",
    "10 KB": lambda t, k: "a" * 5000 + "." + "b" * 5000 + ".c",
    "not a jwt": lambda t, k: "hello",
}


_segment = st.binary(max_size=120).map(
    lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
)


@pytest.mark.parametrize("case", sorted(BAD_CREDENTIALS))
def test_bad_credentials_are_refused(
    case: str, post: support.Post, caller_token: support.Token, keys: support.Keys
) -> None:
    response = post(support.VIDEO, BAD_CREDENTIALS[case](caller_token, keys))
    support.assert_problem(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_ec_caller_is_accepted(
    post: support.Post, caller_token: support.Token, keys: support.Keys
) -> None:
    response = post(support.VIDEO, caller_token(key=keys.ec_private, algorithm="ES256", kid="ec-1"))
    assert response.status_code == 200


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(header=_segment, payload=_segment, signature=_segment)
def test_any_three_part_garbage_is_a_clean_401(
    client: FlaskClient, header: str, payload: str, signature: str
) -> None:
    bearer = f"Bearer {header}.{payload}.{signature}"
    response = client.post("/v1/tokens", json=support.VIDEO, headers={"Authorization": bearer})
    support.assert_problem(response, 401, "invalid_token")
