"""POST /v1/tokens over HTTP: the contract, and every hostile request it must refuse."""

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
from werkzeug.test import TestResponse

from tests import support

Post = Callable[..., TestResponse]
Token = Callable[..., str]
VIDEO = {"grants": {"video": {"room": "lobby"}}}


def assert_problem(response: TestResponse, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["request_id"] == response.headers["X-Request-Id"]
    assert "token" not in problem
    assert "Traceback" not in response.get_data(as_text=True)


def test_valid_caller_gets_exactly_the_requested_grants(post: Post, caller_token: Token) -> None:
    response = post(
        {"grants": {"video": {"room": "alice-standup"}, "chat": {}, "sync": {}}, "ttl": 900},
        caller_token(),
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["identity"] == "alice"
    assert body["ttl"] == 900
    assert body["grants"] == ["video", "chat", "sync"]
    claims = jwt.decode(body["token"], support.API_KEY_SECRET, algorithms=["HS256"])
    assert claims["grants"] == {
        "identity": "alice",
        "video": {"room": "alice-standup"},
        "chat": {"service_sid": support.CONVERSATIONS_SID},
        "data_sync": {"service_sid": support.SYNC_SID},
    }
    assert claims["exp"] - claims["nbf"] == 900
    expires_at = body["expires_at"]
    assert expires_at.endswith("Z")


def test_default_ttl_comes_from_policy(post: Post, caller_token: Token) -> None:
    body = post(VIDEO, caller_token()).get_json()
    assert body["ttl"] == 600


def test_voice_for_an_agent_uses_configured_sids(post: Post, caller_token: Token) -> None:
    token = caller_token(roles=["member", "agent"])
    response = post({"grants": {"voice": {"push": "apns"}}}, token)
    assert response.status_code == 200
    claims = jwt.decode(response.get_json()["token"], support.API_KEY_SECRET, algorithms=["HS256"])
    assert claims["grants"]["voice"] == {
        "incoming": {"allow": True},
        "outgoing": {"application_sid": support.TWIML_APP_SID},
        "push_credential_sid": support.APNS_SID,
    }
    # the agents rule caps voice at 900 s although the global maximum is 3600 s
    assert post({"grants": {"voice": {}}, "ttl": 901}, token).status_code == 400


def test_voice_direction_can_be_narrowed(post: Post, caller_token: Token) -> None:
    response = post({"grants": {"voice": {"outgoing": False}}}, caller_token(roles="agent"))
    claims = jwt.decode(response.get_json()["token"], support.API_KEY_SECRET, algorithms=["HS256"])
    assert claims["grants"]["voice"] == {"incoming": {"allow": True}}


def test_identity_is_the_verified_claim_whatever_the_body_says(
    post: Post, caller_token: Token
) -> None:
    response = post({**VIDEO, "identity": "mallory"}, caller_token())
    assert_problem(response, 400, "unknown_field")
    response = post({"grants": {"video": {"room": "mallory-1"}}}, caller_token())
    assert_problem(response, 403, "room_not_allowed")


def test_room_template_from_a_claim(post: Post, caller_token: Token) -> None:
    ok = post({"grants": {"video": {"room": "team-blue-daily"}}}, caller_token(team="blue"))
    assert ok.status_code == 200
    refused = post({"grants": {"video": {"room": "team-red-daily"}}}, caller_token(team="blue"))
    assert_problem(refused, 403, "room_not_allowed")


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


BAD_CREDENTIALS: dict[str, Callable[[Token, support.Keys], str]] = {
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
    "unknown crit": lambda t, k: t(headers={"crit": ["exp-ext"], "exp-ext": 1}),
    "two parts": lambda t, k: ".".join(t().split(".")[:2]),
    "four parts": lambda t, k: t() + ".AAAA",
    "bad base64": lambda t, k: "e!!.e!!.e!!",
    "10 KB": lambda t, k: "a" * 5000 + "." + "b" * 5000 + ".c",
    "not a jwt": lambda t, k: "hello",
}


@pytest.mark.parametrize("case", sorted(BAD_CREDENTIALS))
def test_bad_credentials_are_refused(
    case: str, post: Post, caller_token: Token, keys: support.Keys
) -> None:
    response = post(VIDEO, BAD_CREDENTIALS[case](caller_token, keys))
    assert_problem(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_ec_caller_is_accepted(post: Post, caller_token: Token, keys: support.Keys) -> None:
    response = post(VIDEO, caller_token(key=keys.ec_private, algorithm="ES256", kid="ec-1"))
    assert response.status_code == 200


def test_missing_or_non_bearer_authorization(
    client: FlaskClient, post: Post, caller_token: Token
) -> None:
    assert_problem(post(VIDEO), 401, "invalid_token")
    response = client.post("/v1/tokens", json=VIDEO, headers={"Authorization": "Basic YTpi"})
    assert_problem(response, 401, "invalid_token")


BAD_BODIES: dict[str, tuple[bytes, int, str]] = {
    "malformed json": (b'{"grants": ', 400, "invalid_json"),
    "duplicate keys": (
        b'{"grants": {"video": {"room": "lobby"}}, "grants": {"chat": {}}}',
        400,
        "invalid_json",
    ),
    "NaN": (b'{"grants": {"video": {"room": "lobby"}}, "ttl": NaN}', 400, "invalid_json"),
    "Infinity": (b'{"grants": {"video": {"room": "lobby"}}, "ttl": Infinity}', 400, "invalid_json"),
    "ttl string": (b'{"grants": {"video": {"room": "lobby"}}, "ttl": "600"}', 400, "invalid_ttl"),
    "ttl true": (b'{"grants": {"video": {"room": "lobby"}}, "ttl": true}', 400, "invalid_ttl"),
    "ttl fraction": (b'{"grants": {"video": {"room": "lobby"}}, "ttl": 600.5}', 400, "invalid_ttl"),
    "ttl negative": (b'{"grants": {"video": {"room": "lobby"}}, "ttl": -1}', 400, "invalid_ttl"),
    "ttl zero": (b'{"grants": {"video": {"room": "lobby"}}, "ttl": 0}', 400, "invalid_ttl"),
    "ttl over a day": (
        b'{"grants": {"video": {"room": "lobby"}}, "ttl": 86401}',
        400,
        "invalid_ttl",
    ),
    "ttl 5000 digits": (
        b'{"grants": {"video": {"room": "lobby"}}, "ttl": ' + b"9" * 4000 + b"}",
        400,
        "invalid_ttl",
    ),
    "ttl above policy": (
        b'{"grants": {"video": {"room": "lobby"}}, "ttl": 3601}',
        400,
        "invalid_ttl",
    ),
    "identity from an app user": (
        b'{"grants": {"video": {"room": "lobby"}}, "identity": "bob"}',
        400,
        "unknown_field",
    ),
    "account_sid": (
        b'{"grants": {"video": {"room": "lobby"}}, "account_sid": "AC1"}',
        400,
        "unknown_field",
    ),
    "application_sid": (b'{"grants": {"voice": {"application_sid": "AP1"}}}', 400, "unknown_field"),
    "params": (b'{"grants": {"voice": {"params": {"to": "+1900"}}}}', 400, "unknown_field"),
    "unknown grant": (b'{"grants": {"taskrouter": {}}}', 400, "unknown_field"),
    "video without room": (b'{"grants": {"video": {}}}', 400, "invalid_room"),
    "room with control": (b'{"grants": {"video": {"room": "lob\\u0007by"}}}', 400, "invalid_room"),
    "room with newline": (b'{"grants": {"video": {"room": "lobby\\nadmin"}}}', 400, "invalid_room"),
    "room with bidi override": (
        b'{"grants": {"video": {"room": "lobby\\u202e"}}}',
        400,
        "invalid_room",
    ),
    "room too long": (
        b'{"grants": {"video": {"room": "' + b"r" * 129 + b'"}}}',
        400,
        "invalid_room",
    ),
    "no grants": (b'{"grants": {}}', 400, "invalid_request"),
    "not an object": (b"[1, 2]", 400, "invalid_request"),
    "not utf-8": (b'{"grants": "\xff"}', 400, "invalid_json"),
    "unknown push": (b'{"grants": {"chat": {"push": "pigeon"}}}', 400, "invalid_request"),
    "voice allowing nothing": (
        b'{"grants": {"voice": {"incoming": false, "outgoing": false}}}',
        400,
        "invalid_request",
    ),
    "grant not in policy": (b'{"grants": {"voice": {}}}', 403, "grant_not_allowed"),
    "room outside patterns": (
        b'{"grants": {"video": {"room": "board-room"}}}',
        403,
        "room_not_allowed",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_bodies_are_refused(case: str, post: Post, caller_token: Token) -> None:
    raw, status, code = BAD_BODIES[case]
    assert_problem(post(bearer=caller_token(), raw=raw), status, code)


def test_body_over_4_kib(post: Post, caller_token: Token) -> None:
    raw = json.dumps({"grants": {"video": {"room": "lobby"}}, "pad": "x" * 5000}).encode()
    assert_problem(post(bearer=caller_token(), raw=raw), 413, "payload_too_large")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1", ""],
)
def test_wrong_content_type(content_type: str, post: Post, caller_token: Token) -> None:
    response = post(VIDEO, caller_token(), content_type=content_type)
    assert_problem(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_on_tokens(method: str, client: FlaskClient) -> None:
    response = client.open("/v1/tokens", method=method)
    assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_unknown_path(client: FlaskClient) -> None:
    assert_problem(client.get("/v1/nothing"), 404, "not_found")


def test_every_response_has_a_request_id(client: FlaskClient) -> None:
    first = client.get("/healthz").headers["X-Request-Id"]
    second = client.get("/healthz").headers["X-Request-Id"]
    assert len(first) == 32
    assert first != second


def test_unexpected_error_is_a_bare_500(
    client: FlaskClient, post: Post, caller_token: Token, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.http import broker

    def explode(*args: object) -> None:
        raise RuntimeError("secret detail " + support.API_KEY_SECRET[:4])

    monkeypatch.setattr(broker(client.application).issuance, "issue", explode)
    response = post(VIDEO, caller_token())
    assert_problem(response, 500, "internal_error")
    assert "secret detail" not in response.get_data(as_text=True)


_header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300)
_segment = st.binary(max_size=120).map(
    lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(authorization=_header_text)
def test_any_authorization_header_is_a_clean_401(client: FlaskClient, authorization: str) -> None:
    response = client.post("/v1/tokens", json=VIDEO, headers={"Authorization": authorization})
    assert_problem(response, 401, "invalid_token")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(header=_segment, payload=_segment, signature=_segment)
def test_any_three_part_garbage_is_a_clean_401(
    client: FlaskClient, header: str, payload: str, signature: str
) -> None:
    bearer = f"Bearer {header}.{payload}.{signature}"
    response = client.post("/v1/tokens", json=VIDEO, headers={"Authorization": bearer})
    assert_problem(response, 401, "invalid_token")
