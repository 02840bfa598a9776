"""App attestation: a rule may require a Firebase App Check token for the grants it
gives; tokens shaped exactly like App Check's, against a local App Check JWKS."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from tests import support

PROJECT = "123456789012"
IOS_APP = f"1:{PROJECT}:ios:0a1b2c3d4e5f6a7b"
ANDROID_APP = f"1:{PROJECT}:android:8c9d0e1f2a3b4c5d"
POLICY = """
[tokens]
default_ttl = 600
max_ttl = 3600

[[rules]]
name = "members"
match = {}
video = { rooms = ["lobby"] }

[[rules]]
name = "answer calls"
match = { claims = { roles = "agent" } }
voice = { incoming = true }
attestation = "required"

[[rules]]
name = "place calls"
match = { claims = { roles = "agent" } }
voice = { outgoing = true }
attestation = "limited_use"

[[rules]]
name = "answer calls, unattested"
match = { claims = { roles = "agent" } }
voice = { incoming = true }
"""
INCOMING = {"grants": {"voice": {"incoming": True, "outgoing": False}}}
OUTGOING = {"grants": {"voice": {"incoming": False, "outgoing": True}}}


@pytest.fixture(scope="module")
def app_check_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def app_check_jwks(app_check_key: rsa.RSAPrivateKey) -> Iterator[support.JwksServer]:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(app_check_key.public_key()))
    with support.serve_jwks({"keys": [{**public, "kid": "appcheck-1", "alg": "RS256"}]}) as jwks:
        yield jwks


def app_check_token(key: Any, *, limited: bool = False, **changes: Any) -> str:
    """An App Check token as Firebase issues one (limited-use ones carry a jti)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": IOS_APP,
        "aud": [f"projects/{PROJECT}", "projects/my-project"],
        "provider": "app_attest",
        "iss": f"https://firebaseappcheck.googleapis.com/{PROJECT}",
        "exp": now + 3600,
        "iat": now,
    }
    if limited:
        claims["jti"] = uuid.uuid4().hex
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "appcheck-1", "typ": "JWT"})


@pytest.fixture
def attested_environ(environ: dict[str, str], app_check_jwks: support.JwksServer) -> dict[str, str]:
    return {
        **environ,
        "TWILIO_CALLER_ID": support.CALLER_ID,
        "APPCHECK_PROJECT_NUMBER": PROJECT,
        "APPCHECK_APP_IDS": f"{IOS_APP},{ANDROID_APP}",
        "APPCHECK_JWKS_URL": app_check_jwks.url,
    }


@pytest.fixture
def attested(
    make_client: Callable[..., FlaskClient], attested_environ: dict[str, str]
) -> FlaskClient:
    return make_client(attested_environ, policy=POLICY)


@pytest.fixture
def ask(post: support.Post, caller_token: support.Token) -> Callable[..., TestResponse]:
    """A token request of an agent to ``client``, with this App Check token, if any."""
    agent = caller_token(roles="agent")

    def send(client: FlaskClient, body: dict[str, Any], app_check: str | None) -> TestResponse:
        headers = {"X-Firebase-AppCheck": app_check} if app_check is not None else {}
        return post(body, agent, to=client, headers=headers)

    return send


def test_a_grant_that_needs_no_attestation_works_without_the_header(
    attested: FlaskClient, ask: Callable[..., TestResponse]
) -> None:
    assert ask(attested, support.VIDEO, None).status_code == 200


def test_a_required_attestation_refuses_a_request_without_it_and_takes_a_valid_one(
    attested: FlaskClient,
    ask: Callable[..., TestResponse],
    app_check_key: rsa.RSAPrivateKey,
    audit_stream: io.StringIO,
) -> None:
    support.assert_problem(ask(attested, INCOMING, None), 403, "attestation_required")
    assert ask(attested, INCOMING, app_check_token(app_check_key)).status_code == 200
    android = app_check_token(app_check_key, sub=ANDROID_APP)
    assert ask(attested, INCOMING, android).status_code == 200
    [refused, *_] = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    assert refused["code"] == "attestation_required"
    assert refused["reason"] == "no X-Firebase-AppCheck header"
    metrics = attested.get("/metrics").get_data(as_text=True)
    assert 'token_broker_refusals_total{code="attestation_required"} 1.0' in metrics


def stranger_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


BAD_ATTESTATIONS: dict[str, Callable[[Any], str]] = {
    "wrong audience": lambda k: app_check_token(k, aud=["projects/999999999999"]),
    "audience a string of another project": lambda k: app_check_token(k, aud="projects/1"),
    "wrong project (issuer)": lambda k: app_check_token(
        k, iss="https://firebaseappcheck.googleapis.com/999999999999"
    ),
    "an app not listed": lambda k: app_check_token(k, sub=f"1:{PROJECT}:web:ffffffffffff"),
    "expired": lambda k: app_check_token(
        k, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200
    ),
    "signed by another key": lambda k: app_check_token(stranger_key()),
    "empty": lambda k: "",
    "garbage": lambda k: "not.a.token",
}


@pytest.mark.parametrize("case", sorted(BAD_ATTESTATIONS))
def test_an_invalid_attestation_is_refused(
    case: str,
    attested: FlaskClient,
    ask: Callable[..., TestResponse],
    app_check_key: rsa.RSAPrivateKey,
) -> None:
    response = ask(attested, INCOMING, BAD_ATTESTATIONS[case](app_check_key))
    support.assert_problem(response, 403, "attestation_required")


def test_the_strictest_rule_giving_a_grant_wins(
    attested: FlaskClient, ask: Callable[..., TestResponse], app_check_key: rsa.RSAPrivateKey
) -> None:
    # incoming is given by a rule that requires attestation and by one that does not
    support.assert_problem(ask(attested, INCOMING, None), 403, "attestation_required")
    # incoming and outgoing together: the outgoing rule's limited use applies to the token
    both: dict[str, Any] = {"grants": {"voice": {}}}
    support.assert_problem(
        ask(attested, both, app_check_token(app_check_key)), 403, "attestation_required"
    )
    assert ask(attested, both, app_check_token(app_check_key, limited=True)).status_code == 200


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_limited_use_token_works_once(
    backend: str,
    request: pytest.FixtureRequest,
    make_client: Callable[..., FlaskClient],
    attested_environ: dict[str, str],
    ask: Callable[..., TestResponse],
    app_check_key: rsa.RSAPrivateKey,
) -> None:
    if backend == "redis":
        attested_environ = {
            **attested_environ,
            "BROKER_STATE_URL": request.getfixturevalue("redis_url"),
        }
    client = make_client(attested_environ, policy=POLICY)
    once = app_check_token(app_check_key, limited=True)
    assert ask(client, OUTGOING, once).status_code == 200
    support.assert_problem(ask(client, OUTGOING, once), 403, "attestation_replayed")
    no_jti = app_check_token(app_check_key)
    support.assert_problem(ask(client, OUTGOING, no_jti), 403, "attestation_required")


def test_a_limited_use_token_works_once_across_instances_sharing_redis(
    make_client: Callable[..., FlaskClient],
    attested_environ: dict[str, str],
    redis_url: str,
    ask: Callable[..., TestResponse],
    app_check_key: rsa.RSAPrivateKey,
) -> None:
    shared = {**attested_environ, "BROKER_STATE_URL": redis_url}
    first, second = make_client(shared, policy=POLICY), make_client(shared, policy=POLICY)
    once = app_check_token(app_check_key, limited=True)
    assert ask(first, OUTGOING, once).status_code == 200
    support.assert_problem(ask(second, OUTGOING, once), 403, "attestation_replayed")


def test_a_refused_attestation_spends_no_budget(
    make_client: Callable[..., FlaskClient],
    attested_environ: dict[str, str],
    ask: Callable[..., TestResponse],
    app_check_key: rsa.RSAPrivateKey,
) -> None:
    limited = POLICY + '\n[limits]\nper_identity = "2/minute"\n'
    client = make_client(attested_environ, policy=limited)
    once = app_check_token(app_check_key, limited=True)
    assert ask(client, OUTGOING, once).status_code == 200
    for _ in range(5):  # replays, and requests without the header: refused before budgets
        support.assert_problem(ask(client, OUTGOING, once), 403, "attestation_replayed")
        support.assert_problem(ask(client, INCOMING, None), 403, "attestation_required")
    assert ask(client, OUTGOING, app_check_token(app_check_key, limited=True)).status_code == 200


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(header=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=300))
def test_any_header_is_a_clean_refusal(
    attested: FlaskClient, ask: Callable[..., TestResponse], header: str
) -> None:
    response = ask(attested, INCOMING, header)
    if response.status_code == 429:  # the caller's denial budget (20/minute) is spent
        support.assert_problem(response, 429, "rate_limited")
    else:
        support.assert_problem(response, 403, "attestation_required")


def test_a_rule_requiring_attestation_needs_app_check_settings(
    make_client: Callable[..., FlaskClient], environ: dict[str, str]
) -> None:
    from service.base.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="requires attestation"):
        make_client({**environ, "TWILIO_CALLER_ID": support.CALLER_ID}, policy=POLICY)


def test_the_callers_own_token_is_no_attestation(
    attested: FlaskClient, ask: Callable[..., TestResponse], caller_token: support.Token
) -> None:
    response = ask(attested, INCOMING, caller_token(roles="agent"))
    support.assert_problem(response, 403, "attestation_required")
