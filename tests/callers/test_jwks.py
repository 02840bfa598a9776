"""The identity provider's keys: refreshed for a new kid at most once per cooldown, fetched
within a deadline, and a misbehaving provider is 503, never 401 nor hammered."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service.base.errors import AuthenticationFailed, Unavailable
from service.callers import Authenticator, Provider
from service.callers.fetch import DEADLINE_SECONDS
from service.callers.jwks import COOLDOWN_SECONDS, LIFESPAN_SECONDS
from service.callers.oidc import oidc_verifier
from tests import support


def test_unknown_kid_flood_fetches_the_jwks_at_most_once_per_cooldown(
    post: Callable[..., TestResponse], caller_token: Callable[..., str], jwks: support.JwksServer
) -> None:
    assert post(support.VIDEO, caller_token()).status_code == 200
    assert jwks.fetches == 1
    for number in range(50):
        response = post(support.VIDEO, caller_token(kid=f"unknown-{number}"))
        assert response.status_code == 401
    assert jwks.fetches == 2  # the first unknown kid fetched once; the other 49 wait


def test_a_key_rotated_in_works_on_its_first_token_however_recent_the_last_fetch(
    post: support.Post,
    caller_token: support.Token,
    keys: support.Keys,
    jwks: support.JwksServer,
    clock: support.FakeClock,
) -> None:
    assert post(support.VIDEO, caller_token()).status_code == 200  # the first load
    clock.advance(LIFESPAN_SECONDS)
    assert post(support.VIDEO, caller_token()).status_code == 200  # due: a routine refresh
    assert support.eventually(lambda: jwks.fetches == 2)
    document = keys.jwks()
    document["keys"].append({**document["keys"][0], "kid": "rsa-rotated"})
    jwks.document = document
    assert post(support.VIDEO, caller_token(kid="rsa-rotated")).status_code == 200
    assert jwks.fetches == 3  # neither the load nor the refresh held the new key back


def test_unknown_kid_refreshes_after_the_cooldown(
    keys: support.Keys, jwks: support.JwksServer
) -> None:
    verifier = oidc_verifier(support.oidc_settings(jwks.url), cooldown_seconds=0.0)
    authenticator = Authenticator(
        [Provider(verifier)], identity_claim="sub", clock=lambda: datetime.now(UTC)
    )
    token = support.sign(support.caller_claims(), keys.rsa_private, "RS256", "rsa-1")
    authenticator.authenticate(f"Bearer {token}")
    stranger = support.sign(support.caller_claims(), keys.rsa_private, "RS256", "rotated-in")
    with pytest.raises(AuthenticationFailed):
        authenticator.authenticate(f"Bearer {stranger}")
    assert jwks.fetches == 2  # a new kid may be a rotated key: one refresh, once


def test_rotated_key_is_picked_up(keys: support.Keys, jwks: support.JwksServer) -> None:
    verifier = oidc_verifier(support.oidc_settings(jwks.url), cooldown_seconds=0.0)
    authenticator = Authenticator(
        [Provider(verifier)], identity_claim="sub", clock=lambda: datetime.now(UTC)
    )
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
    authenticator = Authenticator(
        [Provider(verifier)], identity_claim="sub", clock=lambda: datetime.now(UTC)
    )
    token = support.sign(support.caller_claims(), keys.rsa_private, "RS256", "rsa-1")
    with pytest.raises(Unavailable):
        authenticator.authenticate(f"Bearer {token}")


@pytest.fixture
def timed(
    make_client: Callable[..., FlaskClient], post: support.Post
) -> Callable[..., tuple[int, float]]:
    """(status, seconds) of a token request to ``client``."""

    def send(client: FlaskClient, bearer: str) -> tuple[int, float]:
        started = time.monotonic()
        status = post(support.VIDEO, bearer, to=client).status_code
        return status, time.monotonic() - started

    return send


@pytest.mark.parametrize("behaviour", ["not_json", "error", "no_usable_key"])
def test_a_bad_answer_is_503_audited_and_not_hammered(
    behaviour: str,
    jwks: support.JwksServer,
    client: FlaskClient,
    clock: support.FakeClock,
    caller_token: support.Token,
    timed: Callable[..., tuple[int, float]],
    audit_stream: io.StringIO,
) -> None:
    if behaviour == "no_usable_key":
        jwks.document = {"keys": [{"kty": "RSA", "kid": "rsa-1"}, {"kty": "nope", "kid": "x"}]}
    else:
        jwks.behaviour = behaviour
    statuses = [timed(client, caller_token(kid=f"kid-{n}"))[0] for n in range(20)]
    assert statuses == [503] * 20  # the provider is broken: never "invalid token"
    assert jwks.fetches == 1  # one fetch per cooldown, however many callers
    records = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    assert {record["code"] for record in records} == {"unavailable"}
    clock.advance(COOLDOWN_SECONDS)
    jwks.behaviour, jwks.document = "ok", support.make_keys().jwks()
    timed(client, caller_token())
    assert jwks.fetches == 2  # and it is asked again once the cooldown is over


def test_a_trickling_provider_is_cut_off_while_cached_callers_go_on(
    jwks: support.JwksServer,
    make_client: Callable[..., FlaskClient],
    clock: support.FakeClock,
    caller_token: support.Token,
    timed: Callable[..., tuple[int, float]],
) -> None:
    client = make_client()
    assert timed(client, caller_token())[0] == 200  # rsa-1 is cached now
    jwks.behaviour = "trickle"
    clock.advance(COOLDOWN_SECONDS)  # a new kid may fetch again
    stranger: list[tuple[int, float]] = []
    fetching = threading.Thread(
        # the same app, its own test client: one per thread
        target=lambda: stranger.append(
            timed(client.application.test_client(), caller_token(kid="rotated"))
        )
    )
    fetching.start()
    assert support.eventually(lambda: jwks.fetches == 2)  # the fetch is under way
    status, seconds = timed(client, caller_token(sub="bob"))  # a cached kid meanwhile
    fetching.join()
    assert status == 200
    assert seconds < 1.0  # never behind the fetch
    [(stranger_status, stranger_seconds)] = stranger
    assert stranger_status == 503
    assert stranger_seconds < DEADLINE_SECONDS + 1.5  # the trickle lasts 20 s: cut at 3 s
