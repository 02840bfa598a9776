"""TaskRouter Worker tokens: the policy's workspace and the caller's own Worker (from a
claim, or looked up by friendly name through the emulated REST API, cached), never one
the request names; Twilio failing is 503 with no token."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st
from twilio.jwt.access_token.grants import TaskRouterGrant

from service.base.errors import InvalidRequest
from service.tokens.request import parse_token_request
from service.tokens.workers import FOUND_SECONDS, MISSING_SECONDS
from tests import support
from tests.fake_twilio import FAILURES, FakeTwilio, failed_within_deadline

CLAIM_WORKSPACE = "WS" + "a" * 32
NAME_WORKSPACE = "WS" + "b" * 32
ALICE_WORKER = "WK" + "1" * 32
AGENT_POLICY = (
    support.POLICY
    + f"""
[[rules]]
name = "worker-by-claim"
match = {{ claims = {{ desk = "claim" }} }}
task_router = {{ workspace = "{CLAIM_WORKSPACE}", worker = "claim:worker_sid" }}

[[rules]]
name = "worker-by-name"
match = {{ claims = {{ desk = "name" }} }}
task_router = {{ workspace = "{NAME_WORKSPACE}", worker = "friendly_name" }}
"""
)
ASK: dict[str, Any] = {"grants": {"task_router": {}}}


@pytest.fixture
def agents(
    make_client: Callable[..., FlaskClient], environ: dict[str, str], twilio: FakeTwilio
) -> FlaskClient:
    twilio.workers.append(
        {"sid": ALICE_WORKER, "friendly_name": "alice", "workspace_sid": NAME_WORKSPACE}
    )
    return make_client({**environ, "TWILIO_API_BASE_URL": twilio.url}, policy=AGENT_POLICY)


def grant_of(token: str) -> dict[str, Any]:
    claims = jwt.decode(token, support.API_KEY_SECRET, algorithms=["HS256"])
    grants: dict[str, Any] = claims["grants"]
    return grants


def oracle(workspace: str, worker: str) -> tuple[str, dict[str, str]]:
    grant = TaskRouterGrant(workspace_sid=workspace, worker_sid=worker, role="worker")
    return grant.key, grant.to_payload()


def test_a_claim_names_the_worker(
    agents: FlaskClient,
    post: support.Post,
    caller_token: support.Token,
    twilio: FakeTwilio,
    audit_stream: Any,
) -> None:
    worker = "WK" + "2" * 32
    answer = post(ASK, caller_token(desk="claim", worker_sid=worker), to=agents)
    assert answer.status_code == 200, answer.json
    key, payload = oracle(CLAIM_WORKSPACE, worker)
    grants = grant_of(answer.get_json()["token"])
    assert grants[key] == payload
    assert set(grants) == {key, "identity"}
    assert twilio.requests == []  # a claim needs no REST call
    issued = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    assert issued[-1]["worker_sid"] == worker
    assert issued[-1]["grants"] == ["task_router"]


@pytest.mark.parametrize("claim", [None, "", "WS" + "2" * 32, "WK" + "2" * 31, ["WK" + "2" * 32]])
def test_a_claim_without_a_worker_sid_is_worker_not_found(
    agents: FlaskClient, post: support.Post, caller_token: support.Token, claim: object
) -> None:
    answer = post(ASK, caller_token(desk="claim", worker_sid=claim), to=agents)
    support.assert_problem(answer, 403, "worker_not_found")


def test_the_worker_named_as_the_caller_is_looked_up_once_per_period(
    agents: FlaskClient,
    post: support.Post,
    caller_token: support.Token,
    twilio: FakeTwilio,
    clock: support.FakeClock,
) -> None:
    bearer = caller_token(desk="name")
    key, payload = oracle(NAME_WORKSPACE, ALICE_WORKER)
    for _ in range(100):
        answer = post(ASK, bearer, to=agents)
        assert answer.status_code == 200, answer.json
        assert grant_of(answer.get_json()["token"])[key] == payload
    lookups = f"GET /v1/Workspaces/{NAME_WORKSPACE}/Workers"
    assert twilio.count(lookups) == 1
    assert "FriendlyName=alice" in twilio.requests[0]
    clock.advance(FOUND_SECONDS + 1)  # the cache period is over: Twilio is asked again
    assert post(ASK, bearer, to=agents).status_code == 200
    assert twilio.count(lookups) == 2


def test_concurrent_requests_of_one_identity_wait_for_one_lookup(
    agents: FlaskClient,
    caller_token: support.Token,
    twilio: FakeTwilio,
    leaks: Any,
) -> None:
    twilio.work_seconds = 0.3
    bearer = caller_token(desk="name")
    statuses = support.concurrently(agents, ASK, bearer, leaks.issued)
    assert statuses == [200] * 20
    assert twilio.count(f"GET /v1/Workspaces/{NAME_WORKSPACE}/Workers") == 1


def test_an_identity_without_a_worker_is_refused_and_the_miss_cached_briefly(
    agents: FlaskClient,
    post: support.Post,
    caller_token: support.Token,
    twilio: FakeTwilio,
    clock: support.FakeClock,
) -> None:
    bearer = caller_token(desk="name", sub="mallory")
    for _ in range(5):
        support.assert_problem(post(ASK, bearer, to=agents), 403, "worker_not_found")
    lookups = f"GET /v1/Workspaces/{NAME_WORKSPACE}/Workers"
    assert twilio.count(lookups) == 1
    clock.advance(MISSING_SECONDS + 1)
    twilio.workers.append(
        {"sid": "WK" + "3" * 32, "friendly_name": "mallory", "workspace_sid": NAME_WORKSPACE}
    )
    assert post(ASK, bearer, to=agents).status_code == 200  # made meanwhile: found now
    assert twilio.count(lookups) == 2


def test_a_rule_without_task_router_gives_none(
    agents: FlaskClient, post: support.Post, caller_token: support.Token
) -> None:
    support.assert_problem(post(ASK, caller_token(), to=agents), 403, "grant_not_allowed")


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_twilio_failing_is_503_with_no_token_within_the_deadline(
    agents: FlaskClient,
    post: support.Post,
    caller_token: support.Token,
    twilio: FakeTwilio,
    failure: str,
    audit_stream: Any,
) -> None:
    failed_within_deadline(twilio, failure, lambda: post(ASK, caller_token(desk="name"), to=agents))
    records = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    assert records[-1]["decision"] == "unavailable"
    assert not any(record["decision"] == "issued" for record in records)


@pytest.mark.parametrize("field", ["worker_sid", "workspace_sid", "role", "worker", "identity"])
def test_a_caller_cannot_name_a_worker(field: str) -> None:
    body = json.dumps({"grants": {"task_router": {field: "WK" + "9" * 32}}}).encode()
    with pytest.raises(InvalidRequest) as refused:
        parse_token_request(body)
    assert refused.value.code == "unknown_field"


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=40), min_size=1, max_size=4))
def test_no_task_router_member_is_accepted(members: dict[str, str]) -> None:
    body = json.dumps({"grants": {"task_router": members}}).encode()
    with pytest.raises(InvalidRequest) as refused:
        parse_token_request(body)
    assert refused.value.code in {"unknown_field", "invalid_request"}
