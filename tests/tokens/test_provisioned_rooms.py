"""Rooms with limits: before a token for a provisioned room, the room is in progress
with the policy's settings (created once through the emulated REST API); a room with
other settings is 409; Twilio failing is 503 and no token; other rooms cost no call."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from flask.testing import FlaskClient

from service.base.errors import ConfigurationError
from service.serving.configuration import load_configuration
from tests import support
from tests.fake_twilio import FAILURES, FakeTwilio, failed_within_deadline

LIMITS = (
    "max_participants = 4, max_participant_duration = 3600, "
    "empty_room_timeout = 5, unused_room_timeout = 10"
)
ROOM_POLICY = (
    support.POLICY.replace(
        'video = { rooms = ["lobby", "{identity}-*", "team-{claims.team}-*"] }',
        'video = { rooms = ["lobby", "{identity}-*"] }',
    )
    + f"""
[[rules]]
name = "standups"
match = {{}}
video = {{ rooms = ["standup-*"], provision = {{ {LIMITS} }} }}
"""
)
CREATE = "POST /v1/Rooms"


def ask(room: str) -> dict[str, Any]:
    return {"grants": {"video": {"room": room}}}


@pytest.fixture
def rooms(
    make_client: Callable[..., FlaskClient], environ: dict[str, str], twilio: FakeTwilio
) -> FlaskClient:
    return make_client({**environ, "TWILIO_API_BASE_URL": twilio.url}, policy=ROOM_POLICY)


def issued(audit_stream: Any) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    return [record for record in records if record["decision"] == "issued"]


def test_the_first_token_creates_the_room_with_the_policys_limits_and_then_no_call(
    rooms: FlaskClient,
    post: support.Post,
    caller_token: support.Token,
    twilio: FakeTwilio,
    audit_stream: Any,
) -> None:
    bearer = caller_token()
    answer = post(ask("standup-1"), bearer, to=rooms)
    assert answer.status_code == 200, answer.get_json()
    room = twilio.rooms["standup-1"]
    assert {key: room[key] for key in ("type", "status")} == {
        "type": "group",
        "status": "in-progress",
    }
    assert (
        room["max_participants"],
        room["max_participant_duration"],
        room["empty_room_timeout"],
        room["unused_room_timeout"],
        room["record_participants_on_connect"],
    ) == (4, 3600, 5, 10, False)
    claims = jwt.decode(answer.get_json()["token"], support.API_KEY_SECRET, algorithms=["HS256"])
    assert claims["grants"]["video"] == {"room": "standup-1"}
    assert issued(audit_stream)[-1]["room_sid"] == room["sid"]
    for _ in range(20):  # a live room it knows: no REST call
        assert post(ask("standup-1"), bearer, to=rooms).status_code == 200
    assert twilio.count(CREATE) == 1
    assert len(twilio.requests) == 1
    assert {record["room_sid"] for record in issued(audit_stream)} == {room["sid"]}


def test_a_room_without_provision_makes_no_call(
    rooms: FlaskClient, post: support.Post, caller_token: support.Token, twilio: FakeTwilio
) -> None:
    assert post(ask("lobby"), caller_token(), to=rooms).status_code == 200
    assert twilio.requests == []


def test_concurrent_first_requests_create_the_room_once(
    rooms: FlaskClient, caller_token: support.Token, twilio: FakeTwilio, leaks: Any
) -> None:
    twilio.work_seconds = 0.5
    bearer = caller_token()
    statuses = support.concurrently(rooms, ask("standup-2"), bearer, leaks.issued)
    assert statuses == [200] * 20
    assert twilio.count(CREATE) == 1


def test_a_room_made_elsewhere_with_the_same_settings_is_found(
    rooms: FlaskClient,
    post: support.Post,
    caller_token: support.Token,
    twilio: FakeTwilio,
    audit_stream: Any,
) -> None:
    twilio.rooms["standup-3"] = made_elsewhere("standup-3", max_participants=4)
    answer = post(ask("standup-3"), caller_token(), to=rooms)
    assert answer.status_code == 200, answer.get_json()
    assert twilio.count(CREATE) == 1  # refused with 53113: Room exists
    assert twilio.count("GET /v1/Rooms/standup-3") == 1
    assert issued(audit_stream)[-1]["room_sid"] == twilio.rooms["standup-3"]["sid"]


@pytest.mark.parametrize(
    "other", [{"max_participants": 50}, {"type": "group-small"}, {"record": True}]
)
def test_a_room_in_progress_with_other_settings_is_a_conflict(
    rooms: FlaskClient,
    post: support.Post,
    caller_token: support.Token,
    twilio: FakeTwilio,
    other: dict[str, Any],
    audit_stream: Any,
) -> None:
    twilio.rooms["standup-4"] = made_elsewhere("standup-4", **other)
    bearer = caller_token()
    support.assert_problem(post(ask("standup-4"), bearer, to=rooms), 409, "room_conflict")
    support.assert_problem(post(ask("standup-4"), bearer, to=rooms), 409, "room_conflict")
    assert twilio.count(CREATE) == 1  # the second knew it from the first
    assert issued(audit_stream) == []


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_twilio_failing_is_503_and_no_token(
    rooms: FlaskClient,
    post: support.Post,
    caller_token: support.Token,
    twilio: FakeTwilio,
    failure: str,
    audit_stream: Any,
) -> None:
    failed_within_deadline(
        twilio, failure, lambda: post(ask("standup-5"), caller_token(), to=rooms)
    )
    assert issued(audit_stream) == []


def test_twilio_unreachable_is_503(
    make_client: Callable[..., FlaskClient],
    environ: dict[str, str],
    post: support.Post,
    caller_token: support.Token,
) -> None:
    closed = f"http://127.0.0.1:{support.free_port()}"
    client = make_client({**environ, "TWILIO_API_BASE_URL": closed}, policy=ROOM_POLICY)
    support.assert_problem(post(ask("standup-6"), caller_token(), to=client), 503, "unavailable")


@pytest.mark.parametrize(
    ("provision", "problem"),
    [
        ("max_participants = 51", "max_participants must be a whole number from 1 to 50"),
        ("max_participant_duration = 599", "from 600 to 86400"),
        ("empty_room_timeout = 0", "empty_room_timeout must be a whole number from 1 to 60"),
        ("unused_room_timeout = 61", "unused_room_timeout must be a whole number from 1 to 60"),
        ("record = 1", "record must be true or false"),
        ("region = 'ie1'", "unknown key 'region'"),
    ],
)
def test_provision_outside_twilios_limits_is_refused_at_start(
    environ: dict[str, str], tmp_path: Any, provision: str, problem: str
) -> None:
    limits = dict(item.split(" = ") for item in LIMITS.split(", "))
    key, _, value = provision.partition(" = ")
    limits[key] = value
    table = ", ".join(f"{name} = {text}" for name, text in limits.items())
    policy = tmp_path / "provision.toml"
    policy.write_text(ROOM_POLICY.replace(LIMITS, table))
    with pytest.raises(ConfigurationError) as refused:
        load_configuration({**environ, "BROKER_POLICY_FILE": str(policy)})
    assert any(problem in line for line in refused.value.problems), refused.value.problems


def made_elsewhere(name: str, **settings: Any) -> dict[str, Any]:
    """A room in progress, made by someone else (the console, another app)."""
    return {
        "sid": "RM" + "e" * 32,
        "account_sid": support.ACCOUNT_SID,
        "unique_name": name,
        "status": "in-progress",
        "type": settings.get("type", "group"),
        "max_participants": settings.get("max_participants", 4),
        "max_participant_duration": 3600,
        "empty_room_timeout": 5,
        "unused_room_timeout": 10,
        "record_participants_on_connect": settings.get("record", False),
    }


def test_new_rooms_spend_a_budget_of_their_own_and_known_rooms_nothing(
    make_client: Callable[..., FlaskClient],
    environ: dict[str, str],
    post: support.Post,
    caller_token: support.Token,
    twilio: FakeTwilio,
) -> None:
    """A caller cannot make the broker create rooms without end: each request that makes
    it call Twilio spends ``twilio_calls_per_identity``; tokens for known rooms do not."""
    policy = ROOM_POLICY.replace("[limits]\n", '[limits]\ntwilio_calls_per_identity = "3/minute"\n')
    client = make_client({**environ, "TWILIO_API_BASE_URL": twilio.url}, policy=policy)
    bearer = caller_token()
    for number in range(3):
        assert post(ask(f"standup-{number}"), bearer, to=client).status_code == 200
    refused = post(ask("standup-99"), bearer, to=client)
    support.assert_problem(refused, 429, "rate_limited")
    assert twilio.count(CREATE) == 3  # the fourth room was never asked for
    for number in range(3):  # known: no call, nothing spent
        assert post(ask(f"standup-{number}"), bearer, to=client).status_code == 200
    assert twilio.count(CREATE) == 3


def test_a_paused_fleet_makes_no_room(
    rooms: FlaskClient,
    post: support.Post,
    caller_token: support.Token,
    twilio: FakeTwilio,
    cli: Callable[..., Any],
    environ: dict[str, str],
) -> None:
    assert cli("pause", "--reason", "incident", env=environ).exit_code == 0
    support.assert_problem(post(ask("standup-7"), caller_token(), to=rooms), 503, "issuance_paused")
    assert twilio.requests == []
