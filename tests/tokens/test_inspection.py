"""Inspecting a token: which Twilio error it would meet, and whether our key signed it."""

from __future__ import annotations

from datetime import timedelta

import jwt

from service.tokens.inspection import inspect_token
from service.tokens.minting import Minter, Services, SigningKey
from service.tokens.policy import Plan, TaskRouterPlan, VideoPlan
from service.tokens.workers import TaskRouterRule
from tests import support
from tests.conftest import LeakWatch

KEY = SigningKey(support.ACCOUNT_SID, support.API_KEY_SID, support.API_KEY_SECRET)
NOW = support.NOW


def minted(leaks: LeakWatch) -> str:
    token = Minter(KEY, Services()).mint(Plan("alice", 600, video=VideoPlan("lobby")), NOW).jwt
    leaks.issued.add(token)
    return token


def test_a_fresh_token_is_valid(leaks: LeakWatch) -> None:
    report = inspect_token(minted(leaks), KEY, NOW)
    assert report.valid
    assert report.identity == "alice"
    assert report.signature == "valid"


def test_expiry_wrong_key_and_no_key(leaks: LeakWatch) -> None:
    token = minted(leaks)
    assert [f.code for f in inspect_token(token, KEY, NOW + timedelta(hours=1)).findings] == [20104]
    other = SigningKey(support.ACCOUNT_SID, support.API_KEY_SID, "x" * 32)
    assert 20107 in [f.code for f in inspect_token(token, other, NOW).findings]
    unchecked = inspect_token(token, None, NOW)
    assert unchecked.signature == "not_checked"
    assert not unchecked.valid
    assert unchecked.notes


def test_garbage_and_a_roomless_video_grant() -> None:
    assert [f.code for f in inspect_token("not a jwt", KEY, NOW).findings] == [20101]
    issued = int(NOW.timestamp())
    roomless = jwt.encode(
        {
            "iss": support.API_KEY_SID,
            "sub": support.ACCOUNT_SID,
            "nbf": issued,
            "exp": issued + 90000,
            "grants": {"identity": "alice", "video": {}},
        },
        support.API_KEY_SECRET,
        algorithm="HS256",
        headers={"cty": "twilio-fpa;v=1"},
    )
    codes = [f.code for f in inspect_token(roomless, KEY, NOW).findings]
    assert 20106 in codes  # a video grant without a room opens every room
    assert 20157 in codes  # lives longer than 24 hours


def test_a_task_router_token_is_explained(leaks: LeakWatch) -> None:
    workspace, worker = "WS" + "a" * 32, "WK" + "b" * 32
    plan = Plan("alice", 600, task_router=TaskRouterPlan(TaskRouterRule(workspace, None), worker))
    token = Minter(KEY, Services()).mint(plan, NOW).jwt
    leaks.issued.add(token)
    report = inspect_token(token, KEY, NOW)
    assert report.valid
    assert report.claims["grants"]["task_router"] == {
        "workspace_sid": workspace,
        "worker_sid": worker,
        "role": "worker",
    }
    issued = int(NOW.timestamp())
    for grant, message in (
        ({"workspace_sid": workspace, "role": "worker"}, "without a Worker SID"),
        ({"worker_sid": worker, "role": "worker"}, "without a Workspace SID"),
        ({"workspace_sid": workspace, "worker_sid": worker, "role": "admin"}, "not worker"),
    ):
        forged = jwt.encode(
            {
                "iss": support.API_KEY_SID,
                "sub": support.ACCOUNT_SID,
                "nbf": issued,
                "exp": issued + 600,
                "grants": {"identity": "alice", "task_router": grant},
            },
            support.API_KEY_SECRET,
            algorithm="HS256",
            headers={"cty": "twilio-fpa;v=1"},
        )
        findings = inspect_token(forged, KEY, NOW).findings
        assert [f.code for f in findings] == [20106]
        assert message in findings[0].message
