"""The issuance use case: a caller gets exactly what policy and budgets allow, recorded once."""

from __future__ import annotations

import io
import json
import sqlite3
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
import redis
from click.testing import Result
from flask.testing import FlaskClient
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from service.state import Retention, open_store
from service.state.redis import revocation_key
from service.state.sqlite import sqlite_path
from tests import support


def test_valid_caller_gets_exactly_the_requested_grants(
    post: support.Post, caller_token: support.Token
) -> None:
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


def test_default_ttl_comes_from_policy(post: support.Post, caller_token: support.Token) -> None:
    body = post(support.VIDEO, caller_token()).get_json()
    assert body["ttl"] == 600


def test_voice_for_an_agent_uses_configured_sids(
    post: support.Post, caller_token: support.Token
) -> None:
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


def test_voice_direction_can_be_narrowed(post: support.Post, caller_token: support.Token) -> None:
    response = post({"grants": {"voice": {"outgoing": False}}}, caller_token(roles="agent"))
    claims = jwt.decode(response.get_json()["token"], support.API_KEY_SECRET, algorithms=["HS256"])
    assert claims["grants"]["voice"] == {"incoming": {"allow": True}}


def test_identity_is_the_verified_claim_whatever_the_body_says(
    post: support.Post, caller_token: support.Token
) -> None:
    response = post({**support.VIDEO, "identity": "mallory"}, caller_token())
    support.assert_problem(response, 400, "unknown_field")
    response = post({"grants": {"video": {"room": "mallory-1"}}}, caller_token())
    support.assert_problem(response, 403, "room_not_allowed")


def test_room_template_from_a_claim(post: support.Post, caller_token: support.Token) -> None:
    ok = post({"grants": {"video": {"room": "team-blue-daily"}}}, caller_token(team="blue"))
    assert ok.status_code == 200
    refused = post({"grants": {"video": {"room": "team-red-daily"}}}, caller_token(team="blue"))
    support.assert_problem(refused, 403, "room_not_allowed")


def test_per_identity_budget_then_429_and_no_token(
    limited_client: FlaskClient,
    caller_token: Callable[..., str],
    audit_stream: io.StringIO,
    post: support.Post,
) -> None:
    bearer = caller_token()
    statuses = [post(support.VIDEO, bearer, to=limited_client).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    refused = post(support.VIDEO, bearer, to=limited_client)
    assert refused.get_json()["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    records = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    assert [r["decision"] for r in records].count("issued") == 3
    assert records[-1]["reason"] == "per_identity spent"
    metrics = limited_client.get("/metrics").get_data(as_text=True)
    assert 'token_broker_rate_limit_hits_total{budget="per_identity"} 3.0' in metrics
    assert "token_broker_tokens_total 3.0" in metrics


def test_outgoing_voice_costs_more(
    limited_client: FlaskClient, caller_token: Callable[..., str], post: support.Post
) -> None:
    agent = caller_token(roles="agent")
    assert post({"grants": {"voice": {}}}, agent, to=limited_client).status_code == 200  # 3 of 3
    assert (
        post({"grants": {"voice": {"outgoing": False}}}, agent, to=limited_client).status_code
        == 429
    )


def test_failed_authentications_slow_guesses_never_valid_callers(
    limited_client: FlaskClient, caller_token: Callable[..., str], post_from: Callable[..., int]
) -> None:
    statuses = [post_from("garbage", "198.51.100.9", to=limited_client) for _ in range(6)]
    assert statuses == [401] * 4 + [429] * 2  # guesses slowed down
    # but a credential that verifies is never turned away: many users share one NAT address
    assert post_from(caller_token(), "198.51.100.9", to=limited_client) == 200
    assert post_from(caller_token(sub="bob"), "198.51.100.9", to=limited_client) == 200


def _revoke_many(backend: str, url: str, count: int) -> None:
    """``count`` revocations of other identities, written straight into the store."""
    now = time.time()
    if backend == "redis":
        client = redis.Redis.from_url(url)
        pipeline = client.pipeline(transaction=False)
        for number in range(count):
            pipeline.set(revocation_key(f"identity:user{number}"), repr(now), ex=86400)
        pipeline.execute()
        return
    store = open_store(url, retention=Retention())  # creates the schema
    store.ping()
    with sqlite3.connect(sqlite_path(url)) as connection:
        connection.executemany(
            "INSERT INTO revocations (subject, at) VALUES (?, ?)",
            ((f"identity:user{number}", now) for number in range(count)),
        )


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_hundred_thousand_revocations_cost_a_request_nothing(
    request: pytest.FixtureRequest,
    backend: str,
    environ: dict[str, str],
    tmp_path: Path,
    make_client: Callable[..., FlaskClient],
    cli: Callable[..., Result],
    caller_token: support.Token,
    post: support.Post,
) -> None:
    if backend == "redis":
        base = request.getfixturevalue("redis_url").rsplit("/", 1)[0]
        plain_url, loaded_url = f"{base}/0", f"{base}/1"
    else:
        plain_url, loaded_url = (f"sqlite:///{tmp_path}/{name}.db" for name in ("plain", "loaded"))
    _revoke_many(backend, loaded_url, 100_000)
    plain = make_client({**environ, "BROKER_STATE_URL": plain_url})
    loaded = make_client({**environ, "BROKER_STATE_URL": loaded_url})
    bearer = caller_token()
    durations: dict[str, list[float]] = {"plain": [], "loaded": []}
    for _ in range(150):  # alternating, so that machine noise falls on both alike
        for name, client in (("plain", plain), ("loaded", loaded)):
            started = time.perf_counter()
            assert post(support.VIDEO, bearer, to=client).status_code == 200
            durations[name].append(time.perf_counter() - started)
    plain_p50, loaded_p50 = (statistics.median(durations[n]) for n in ("plain", "loaded"))
    assert loaded_p50 <= 1.5 * plain_p50, (plain_p50, loaded_p50)

    cli(
        "revoke", "--identity", "alice", env={**environ, "BROKER_STATE_URL": loaded_url}, check=True
    )
    revoked = time.monotonic()
    refused = post(support.VIDEO, bearer, to=loaded)
    assert refused.status_code == 403
    assert time.monotonic() - revoked < 1.0  # obeyed at once: nothing cached to wait for


def test_a_spent_fleet_budget_never_spends_a_victims_own(
    make_client: Callable[..., FlaskClient],
    clock: support.FakeClock,
    caller_token: support.Token,
    post: support.Post,
) -> None:
    policy = support.POLICY.replace(
        'per_identity = "1000/minute;20000/day"', 'per_identity = "3/minute"\nglobal = "5/minute"'
    )
    client = make_client(policy=policy)
    for number in range(5):  # others spend the fleet's budget
        assert post(support.VIDEO, caller_token(sub=f"other{number}"), to=client).status_code == 200
    victim = caller_token(sub="victim")
    for _ in range(10):  # the victim retries all through the incident
        assert post(support.VIDEO, victim, to=client).status_code == 429
    clock.advance(60)  # the incident is over
    statuses = [post(support.VIDEO, victim, to=client).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]  # the victim's own budget, whole


def test_an_ipv6_network_is_one_budget_and_every_spelling_one_address(
    limited_client: FlaskClient, caller_token: support.Token, post_from: Callable[..., int]
) -> None:
    # per_ip is 6 a minute (support.LIMITED_POLICY); every caller here is someone else.
    def ask(address: str, number: int) -> int:
        return post_from(caller_token(sub=f"user{address}{number}"), address, to=limited_client)

    one_network = [ask(f"2001:db8:1:1::{n:x}", n) for n in range(10)]
    assert one_network.count(200) == 6
    other_network = [ask(f"2001:db8:1:2::{n:x}", n) for n in range(10)]
    assert other_network.count(200) == 6
    spellings = ["192.0.2.7", "::ffff:192.0.2.7"] * 5
    assert [ask(address, n) for n, address in enumerate(spellings)].count(200) == 6


def test_with_the_store_down_a_refusal_keeps_its_status_and_its_line(
    environ: dict[str, str],
    redis_server: support.RedisServer,
    redis_url: str,
    make_client: Callable[..., FlaskClient],
    caller_token: support.Token,
    post: support.Post,
    audit_stream: io.StringIO,
) -> None:
    client = make_client({**environ, "BROKER_STATE_URL": redis_url})
    redis_server.stop()
    try:
        malformed = post(raw=b'{"grants": ', bearer=caller_token(), to=client)
        support.assert_problem(malformed, 400, "invalid_json")
        forbidden = post({"grants": {"voice": {}}}, caller_token(), to=client)
        support.assert_problem(forbidden, 403, "grant_not_allowed")
        support.assert_problem(post(support.VIDEO, "garbage", to=client), 401, "invalid_token")
        down = post(support.VIDEO, caller_token(), to=client)
        support.assert_problem(down, 503, "unavailable")
        assert down.headers["Retry-After"] == "5"  # an outage is usually seconds
    finally:
        redis_server.start()
    lines = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    assert [line["code"] for line in lines] == [
        "invalid_json",
        "grant_not_allowed",
        "invalid_token",
        "unavailable",
    ]


PROBED_POLICY = """
[[rules]]
name = "ends"
match = {}
video = { rooms = ["*-*-*-*-*-end"] }

[limits]
per_identity = "1000/minute"
denials_per_identity = "3/minute"
"""


def test_refusals_cost_the_caller_then_turn_into_429(
    make_client: Callable[..., FlaskClient],
    environ: dict[str, str],
    caller_token: Callable[..., str],
    post: support.Post,
    clock: support.FakeClock,
    audit_stream: io.StringIO,
) -> None:
    """A pattern that would backtrack, and a room made to make it: refused at once (the
    matcher is linear), and refusals are not free: past the denial budget, 429."""
    client = make_client(environ, policy=PROBED_POLICY)
    bearer = caller_token()
    probe = {"grants": {"video": {"room": "-" * 127 + "x"}}}
    for _ in range(3):
        support.assert_problem(post(probe, bearer, to=client), 403, "room_not_allowed")
    limited = post(probe, bearer, to=client)
    support.assert_problem(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert (
        post({"grants": {"video": {"room": "a-b-c-d-e-end"}}}, bearer, to=client).status_code == 200
    )
    other = caller_token(sub="someone-else")  # the budget is the caller's own
    support.assert_problem(post(probe, other, to=client), 403, "room_not_allowed")
    clock.advance(60)
    support.assert_problem(post(probe, bearer, to=client), 403, "room_not_allowed")
    records = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    assert [record.get("code") for record in records if record.get("identity") == "alice"][:5] == [
        "room_not_allowed",
        "room_not_allowed",
        "room_not_allowed",
        "rate_limited",
        None,
    ]


# Up to 6 characters: even 4-byte ones encode within the 121 a Voice identity may hold.
_subjects = st.text(min_size=1, max_size=6)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=_subjects, second=_subjects, first_voice=st.booleans(), second_voice=st.booleans())
@example(first="a-b", second="a_x2d_b", first_voice=True, second_voice=False)
@example(first="a_x2d_b", second="a-b", first_voice=False, second_voice=True)
@example(first="a-b", second="a_b", first_voice=False, second_voice=False)
def test_distinct_subjects_never_share_the_identity_of_any_grant(
    client: FlaskClient,
    caller_token: Callable[..., str],
    post: support.Post,
    first: str,
    second: str,
    first_voice: bool,
    second_voice: bool,
) -> None:
    """Two people never share a Twilio identity: not in Voice, not in a room, not in a
    conversation or a Sync document, whatever grants each token carries."""
    assume(first != second)
    identities = []
    for subject, voice in ((first, first_voice), (second, second_voice)):
        grants: dict[str, object] = {"video": {"room": "lobby"}, "chat": {}, "sync": {}}
        claims: dict[str, object] = {"sub": subject}
        if voice:
            grants["voice"] = {}
            claims["roles"] = "agent"
        response = post({"grants": grants}, caller_token(**claims), to=client)
        assert response.status_code == 200, response.get_json()
        minted = jwt.decode(response.get_json()["token"], options={"verify_signature": False})
        identities.append(minted["grants"]["identity"])
        assert response.get_json()["identity"] == identities[-1]
    assert identities[0] != identities[1]
