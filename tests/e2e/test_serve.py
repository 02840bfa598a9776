"""End to end: token-broker serve under gunicorn, a JWKS on loopback, real HTTP."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from tests import support
from tests.conftest import LeakWatch


@dataclass
class Deployment:
    server: support.BrokerProcess
    jwks: support.JwksServer


@pytest.fixture(scope="module")
def deployment(
    keys: support.Keys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    directory = tmp_path_factory.mktemp("e2e")
    policy = directory / "policy.toml"
    policy.write_text(support.POLICY)
    with support.serve_jwks(keys.jwks()) as jwks:
        server = support.start_broker(support.base_environ(jwks.url, str(policy)), directory)
        try:
            yield Deployment(server, jwks)
        finally:
            support.stop_broker(server)


def token_request(url: str, body: Any, bearer: str, leaks: LeakWatch) -> requests.Response:
    leaks.bearers.add(bearer)
    response = requests.post(
        f"{url}/v1/tokens",
        data=json.dumps(body),
        headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"},
        timeout=10,
    )
    if response.status_code == 200:
        leaks.issued.add(response.json()["token"])
    return response


def decoded(token: str) -> dict[str, Any]:
    return jwt.decode(token, support.API_KEY_SECRET, algorithms=["HS256"])


def test_rsa_and_ec_callers_get_exactly_their_policy(
    deployment: Deployment, keys: support.Keys, leaks: LeakWatch
) -> None:
    url = deployment.server.url
    member = support.sign(support.caller_claims(sub="alice"), keys.rsa_private, "RS256", "rsa-1")
    response = token_request(
        url, {"grants": {"video": {"room": "alice-1"}, "chat": {}}}, member, leaks
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    grants = decoded(response.json()["token"])["grants"]
    assert grants == {
        "identity": "alice",
        "video": {"room": "alice-1"},
        "chat": {"service_sid": support.CONVERSATIONS_SID},
    }
    assert (
        token_request(url, {"grants": {"voice": {}}}, member, leaks).json()["code"]
        == "grant_not_allowed"
    )

    agent = support.sign(
        support.caller_claims(sub="bob", roles=["agent"]), keys.ec_private, "ES256", "ec-1"
    )
    response = token_request(url, {"grants": {"voice": {}}, "ttl": 900}, agent, leaks)
    assert response.status_code == 200
    claims = decoded(response.json()["token"])
    assert claims["grants"]["identity"] == "bob"
    assert claims["grants"]["voice"]["outgoing"] == {"application_sid": support.TWIML_APP_SID}
    assert claims["exp"] - claims["nbf"] == 900


def test_identity_is_the_verified_claim(
    deployment: Deployment, keys: support.Keys, leaks: LeakWatch
) -> None:
    bearer = support.sign(support.caller_claims(sub="carol"), keys.rsa_private, "RS256", "rsa-1")
    url = deployment.server.url
    refused = token_request(url, {"grants": {"sync": {}}, "identity": "admin"}, bearer, leaks)
    assert refused.status_code == 400
    assert refused.json()["code"] == "unknown_field"
    issued = token_request(url, {"grants": {"sync": {}}}, bearer, leaks)
    assert issued.json()["identity"] == "carol"


def test_hostile_callers_over_real_http(
    deployment: Deployment, keys: support.Keys, leaks: LeakWatch
) -> None:
    url = deployment.server.url
    unsigned = (
        support.sign(support.caller_claims(), keys.rsa_private, "RS256", "rsa-1").rsplit(".", 1)[0]
        + "."
    )
    expired = support.sign(
        support.caller_claims(exp=1_000_000, iat=999_000), keys.rsa_private, "RS256", "rsa-1"
    )
    for bearer in (unsigned, expired, "x" * 10_000):
        response = token_request(url, {"grants": {"sync": {}}}, bearer, leaks)
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_token"
    fetches = deployment.jwks.fetches
    for number in range(30):
        bogus = support.sign(support.caller_claims(), keys.rsa_private, "RS256", f"bogus-{number}")
        assert token_request(url, {"grants": {"sync": {}}}, bogus, leaks).status_code == 401
    assert deployment.jwks.fetches - fetches <= 1
    for method in ("GET", "PUT"):
        response = requests.request(method, f"{url}/v1/tokens", timeout=5)
        assert response.status_code == 405
        assert response.json()["code"] == "method_not_allowed"


def test_server_logs_hold_no_secret_or_token(
    deployment: Deployment, keys: support.Keys, leaks: LeakWatch
) -> None:
    bearer = support.sign(support.caller_claims(sub="dave"), keys.rsa_private, "RS256", "rsa-1")
    token_request(deployment.server.url, {"grants": {"sync": {}}}, bearer, leaks)
    output = deployment.server.output()
    assert '"decision": "issued"' in output
    leaks.check_text(output)


def test_first_run_prints_a_curl_that_works(tmp_path: Path, leaks: LeakWatch) -> None:
    (tmp_path / "policy.toml").write_text((support.ROOT / "policy.toml").read_text())
    server = support.start_broker({"BROKER_PROFILE": "dev"}, tmp_path)
    try:
        banner = server.output()
        assert "Twilio will reject them until real credentials are in .env" in banner
        assert "BROKER_PROFILE=dev" in banner  # how to inspect the token it returns
        [curl] = [line.strip() for line in banner.splitlines() if line.strip().startswith("curl ")]
        leaks.bearers.add(shlex.split(curl)[6].removeprefix("Authorization: Bearer "))
        result = subprocess.run(shlex.split(curl), capture_output=True, check=True, timeout=10)
        body = json.loads(result.stdout)
        assert body["identity"] == "alice"
        leaks.issued.add(body["token"])
        inspected = subprocess.run(
            [support.BROKER, "inspect"],
            input=body["token"] + "\n",
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={"PATH": os.environ.get("PATH", ""), "BROKER_PROFILE": "dev"},
            timeout=30,
        )
        assert inspected.returncode == 0, inspected.stdout + inspected.stderr
        assert "verdict:   valid" in inspected.stdout
    finally:
        support.stop_broker(server)
    leaks.check_text(server.output().replace(curl, ""))
