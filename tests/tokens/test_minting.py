"""Minting: byte for byte what twilio's AccessToken makes, and nothing Twilio would refuse."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import (
    ChatGrant,
    SyncGrant,
    TaskRouterGrant,
    VideoGrant,
    VoiceGrant,
)

from service.base.errors import MintingError
from service.tokens.minting import Minter, Services, SigningKey
from service.tokens.policy import ChatPlan, Plan, TaskRouterPlan, VideoPlan, VoicePlan
from service.tokens.workers import TaskRouterRule
from tests import support

NOW = support.NOW
WORKSPACE, WORKER = "WS" + "a" * 32, "WK" + "b" * 32
AGENT = TaskRouterPlan(TaskRouterRule(WORKSPACE, None), WORKER)


SERVICES = Services(
    twiml_app_sid=support.TWIML_APP_SID,
    conversations_service_sid=support.CONVERSATIONS_SID,
    sync_service_sid=support.SYNC_SID,
    push_credentials={"apns": support.APNS_SID, "fcm": support.FCM_SID},
)


CASES: dict[str, tuple[dict[str, Any], list[Any]]] = {
    "video": ({"video": VideoPlan("standup")}, [VideoGrant(room="standup")]),
    "voice both ways with push": (
        {"voice": VoicePlan(incoming=True, outgoing=True, push="apns")},
        [
            VoiceGrant(
                incoming_allow=True,
                outgoing_application_sid=support.TWIML_APP_SID,
                push_credential_sid=support.APNS_SID,
            )
        ],
    ),
    "voice incoming only": (
        {"voice": VoicePlan(incoming=True, outgoing=False, push=None)},
        [VoiceGrant(incoming_allow=True)],
    ),
    "voice outgoing only": (
        {"voice": VoicePlan(incoming=False, outgoing=True, push=None)},
        [VoiceGrant(outgoing_application_sid=support.TWIML_APP_SID)],
    ),
    "chat with push": (
        {"chat": ChatPlan(push="fcm")},
        [ChatGrant(service_sid=support.CONVERSATIONS_SID, push_credential_sid=support.FCM_SID)],
    ),
    "sync": ({"sync": True}, [SyncGrant(service_sid=support.SYNC_SID)]),
    "task_router worker": (
        {"task_router": AGENT},
        [TaskRouterGrant(workspace_sid=WORKSPACE, worker_sid=WORKER, role="worker")],
    ),
    "task_router with voice": (
        {"voice": VoicePlan(True, False, None), "task_router": AGENT},
        [
            VoiceGrant(incoming_allow=True),
            TaskRouterGrant(workspace_sid=WORKSPACE, worker_sid=WORKER, role="worker"),
        ],
    ),
    "all four": (
        {
            "video": VideoPlan("r1"),
            "voice": VoicePlan(True, False, None),
            "chat": ChatPlan(None),
            "sync": True,
        },
        [
            VideoGrant(room="r1"),
            VoiceGrant(incoming_allow=True),
            ChatGrant(service_sid=support.CONVERSATIONS_SID),
            SyncGrant(service_sid=support.SYNC_SID),
        ],
    ),
}


def _oracle(
    grants: list[Any], ttl: int, region: str | None, monkeypatch: pytest.MonkeyPatch
) -> str:
    # twilio reads time.time() itself; pin it to our clock for the comparison.
    monkeypatch.setattr("twilio.jwt.time.time", lambda: NOW.timestamp())
    monkeypatch.setattr("twilio.jwt.access_token.time.time", lambda: NOW.timestamp())
    token = AccessToken(
        support.ACCOUNT_SID,
        support.API_KEY_SID,
        support.API_KEY_SECRET,
        grants=grants,
        identity="alice",
        ttl=ttl,
        region=region,
    )
    return str(token.to_jwt())


def _decoded(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(
        token,
        support.API_KEY_SECRET,
        algorithms=["HS256"],
        options={"verify_exp": False, "verify_nbf": False},
    )
    return header, claims


@pytest.mark.parametrize("region", [None, "ie1"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_token_matches_twilio_access_token(
    case: str, region: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan_grants, twilio_grants = CASES[case]
    minter = Minter(
        SigningKey(support.ACCOUNT_SID, support.API_KEY_SID, support.API_KEY_SECRET, region),
        SERVICES,
    )
    ours = minter.mint(Plan("alice", 900, **plan_grants), NOW)
    theirs = _oracle(twilio_grants, 900, region, monkeypatch)
    assert _decoded(ours.jwt) == _decoded(theirs)
    assert ours.jwt == theirs  # same bytes, even: same header order and claim order
    assert ours.expires_at == datetime(2026, 11, 28, 18, 15, tzinfo=UTC)


def test_region_header(monkeypatch: pytest.MonkeyPatch) -> None:
    minter = Minter(
        SigningKey(support.ACCOUNT_SID, support.API_KEY_SID, support.API_KEY_SECRET, "au1"),
        SERVICES,
    )
    token = minter.mint(Plan("alice", 600, video=VideoPlan("x")), NOW).jwt
    assert jwt.get_unverified_header(token)["twr"] == "au1"


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (Plan("", 600, video=VideoPlan("x")), "empty"),
        (Plan("a" * 129, 600, video=VideoPlan("x")), "128"),
        (Plan("alice smith", 600, voice=VoicePlan(True, False, None)), "Voice"),
        (Plan("alice", 86401, video=VideoPlan("x")), "ttl"),
        (Plan("alice", 59, video=VideoPlan("x")), "ttl"),
        (Plan("alice", 600), "grant"),
        (Plan("alice", 600, task_router=TaskRouterPlan(AGENT.rule)), "Worker"),
    ],
)
def test_minting_refuses_what_twilio_would(plan: Plan, message: str) -> None:
    minter = Minter(
        SigningKey(support.ACCOUNT_SID, support.API_KEY_SID, support.API_KEY_SECRET), SERVICES
    )
    with pytest.raises(MintingError, match=message):
        minter.mint(plan, NOW)


def test_secret_is_not_in_any_repr() -> None:
    key = SigningKey(support.ACCOUNT_SID, support.API_KEY_SID, support.API_KEY_SECRET)
    minter = Minter(key, SERVICES)
    token = minter.mint(Plan("alice", 600, video=VideoPlan("x")), NOW)
    for text in (repr(key), repr(minter), repr(token)):
        assert support.API_KEY_SECRET not in text
        assert token.jwt not in text
