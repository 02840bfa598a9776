"""Provisioned rooms across a fleet: two brokers of two workers each on one Redis, 20
concurrent first requests for one room: Twilio (the emulator) is asked to create it
once, and every request gets a token for it, the same room SID in every audit line."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from tests import support
from tests.conftest import LeakWatch
from tests.fake_twilio import FakeTwilio

PROVISION = (
    "provision = { max_participants = 6, max_participant_duration = 1800, "
    "empty_room_timeout = 2, unused_room_timeout = 3 }"
)
POLICY = (
    support.POLICY
    + f"""
[[rules]]
name = "classes"
match = {{}}
video = {{ rooms = ["class-*"], {PROVISION} }}
"""
)


def test_twenty_first_requests_over_two_brokers_create_the_room_once(
    keys: support.Keys,
    redis_url: str,
    twilio: FakeTwilio,
    tmp_path: Path,
    leaks: LeakWatch,
) -> None:
    twilio.work_seconds = 0.5  # Twilio takes a while: the requests meet
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    with support.serve_jwks(keys.jwks()) as jwks:
        environment = {
            **support.base_environ(jwks.url, str(policy)),
            "BROKER_STATE_URL": redis_url,
            "TWILIO_API_BASE_URL": twilio.url,
        }
        brokers = [support.start_broker(environment, tmp_path, "--workers", "2") for _ in range(2)]
        try:
            bearer = support.sign(support.caller_claims(), keys.rsa_private, "RS256", "rsa-1")
            leaks.bearers.add(bearer)

            def first(index: int) -> requests.Response:
                return requests.post(
                    f"{brokers[index % 2].url}/v1/tokens",
                    json={"grants": {"video": {"room": "class-42"}}},
                    headers={"Authorization": f"Bearer {bearer}"},
                    timeout=10,
                )

            with ThreadPoolExecutor(20) as pool:
                answers = list(pool.map(first, range(20)))
            for answer in answers:
                assert answer.status_code == 200, answer.text
                leaks.issued.add(answer.json()["token"])
            assert twilio.count("POST /v1/Rooms") == 1
            room = twilio.rooms["class-42"]
            assert (room["max_participants"], room["max_participant_duration"]) == (6, 1800)
            audit = [
                json.loads(line)
                for broker in brokers
                for line in broker.output().splitlines()
                if line.startswith('{"event"')
            ]
            issued: list[dict[str, Any]] = [r for r in audit if r["decision"] == "issued"]
            assert len(issued) == 20
            assert {record["room_sid"] for record in issued} == {room["sid"]}
            for broker in brokers:
                leaks.check_text(broker.output())
                # production, and the REST calls go elsewhere: said at start
                assert "TWILIO_API_BASE_URL is set" in broker.output()
        finally:
            for broker in brokers:
                support.stop_broker(broker)
