"""Abuse containment over HTTP, embedded SQLite state: limits, revocation, the kill switch,
the durable audit trail and the metrics."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient

from service import create_app
from service.cli import main
from service.configuration import load_configuration
from tests import support
from tests.conftest import LeakWatch

VIDEO = {"grants": {"video": {"room": "lobby"}}}
LIMITED_POLICY = support.POLICY.replace(
    '[limits]\nper_identity = "1000/minute;20000/day"\n',
    '[limits]\nper_identity = "3/minute"\nper_ip = "6/minute"\nauth_failures_per_ip = "4/minute"\n'
    "voice_outgoing_cost = 3\n",
)


@pytest.fixture
def limited(environ: dict[str, str], tmp_path: Path) -> dict[str, str]:
    policy = tmp_path / "limited.toml"
    policy.write_text(LIMITED_POLICY)
    return {**environ, "BROKER_POLICY_FILE": str(policy)}


def build(environment: dict[str, str], tmp_path: Path, audit_stream: io.StringIO) -> Flask:
    return create_app(
        load_configuration(environment, dotenv_file=tmp_path / "none"), audit_stream=audit_stream
    )


@pytest.fixture
def limited_client(
    limited: dict[str, str], tmp_path: Path, audit_stream: io.StringIO
) -> FlaskClient:
    return build(limited, tmp_path, audit_stream).test_client()


def cli(environment: dict[str, str], *args: str) -> Result:
    result = CliRunner().invoke(main, list(args), env=environment)
    assert result.exit_code == 0, result.output
    return result


def ask(client: FlaskClient, bearer: str, leaks: LeakWatch, body: Any = None) -> Any:
    response = client.post(
        "/v1/tokens", json=body or VIDEO, headers={"Authorization": f"Bearer {bearer}"}
    )
    leaks.check_response(response)
    return response


def post_from(
    client: FlaskClient, bearer: str, remote: str, leaks: LeakWatch, forwarded: str | None = None
) -> int:
    headers = {"Authorization": f"Bearer {bearer}"}
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    # As if over TLS at the server: these callers are not on loopback.
    response = client.post(
        "/v1/tokens",
        json=VIDEO,
        headers=headers,
        environ_base={"REMOTE_ADDR": remote},
        base_url="https://broker.example.test",
    )
    leaks.check_response(response)
    return response.status_code


def wait_for_status(send: Callable[[], Any], status: int, within: float = 1.0) -> Any:
    """Poll until a request answers ``status``; the promise is 'within one second'."""
    deadline = time.monotonic() + within
    while True:
        response = send()
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.02)  # the polling interval, bounded by the deadline


def test_pause_is_obeyed_within_a_second_and_resume_restores(
    client: FlaskClient, environ: dict[str, str], caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    bearer = caller_token()
    assert ask(client, bearer, leaks).status_code == 200
    cli(environ, "pause", "--reason", "incident 42")
    paused = wait_for_status(lambda: ask(client, bearer, leaks), 503)
    assert paused.status_code == 503
    assert paused.get_json()["code"] == "issuance_paused"
    ready = client.get("/readyz").get_json()
    assert ready["paused"]["reason"] == "incident 42"
    assert "token_broker_paused 1.0" in client.get("/metrics").get_data(as_text=True)
    cli(environ, "resume")
    assert wait_for_status(lambda: ask(client, bearer, leaks), 200).status_code == 200
    assert "token_broker_paused 0.0" in client.get("/metrics").get_data(as_text=True)


def test_revoked_identity_needs_a_new_session(
    client: FlaskClient, environ: dict[str, str], caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    old_session = caller_token()
    assert ask(client, old_session, leaks).status_code == 200
    output = cli(environ, "revoke", "--identity", "alice").output
    assert "revoked identity:alice" in output
    refused = wait_for_status(lambda: ask(client, old_session, leaks), 403)
    assert refused.get_json()["code"] == "revoked"
    assert ask(client, caller_token(sub="bob"), leaks).status_code == 200  # others unaffected
    new_session = caller_token(iat=int(time.time()) + 1)  # signed in again, after the revocation
    assert ask(client, new_session, leaks).status_code == 200
    cli(environ, "unrevoke", "--identity", "alice")
    assert wait_for_status(lambda: ask(client, old_session, leaks), 200).status_code == 200


def test_revoked_client_app(
    client: FlaskClient, environ: dict[str, str], caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    web, ios = caller_token(azp="web-app"), caller_token(sub="carol", client_id="ios-app")
    cli(environ, "revoke", "--client", "web-app")
    assert wait_for_status(lambda: ask(client, web, leaks), 403).get_json()["code"] == "revoked"
    assert ask(client, ios, leaks).status_code == 200


def test_revoke_needs_exactly_one_subject(environ: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["revoke"], env=environ)
    assert result.exit_code != 0
    result = CliRunner().invoke(main, ["revoke", "--identity", "a", "--client", "b"], env=environ)
    assert result.exit_code != 0


def test_per_identity_budget_then_429_and_no_token(
    limited_client: FlaskClient,
    caller_token: Callable[..., str],
    leaks: LeakWatch,
    audit_stream: io.StringIO,
) -> None:
    bearer = caller_token()
    statuses = [ask(limited_client, bearer, leaks).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    refused = ask(limited_client, bearer, leaks)
    assert refused.get_json()["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    records = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    assert [r["decision"] for r in records].count("issued") == 3
    assert records[-1]["reason"] == "per_identity spent"
    metrics = limited_client.get("/metrics").get_data(as_text=True)
    assert 'token_broker_rate_limit_hits_total{budget="per_identity"} 3.0' in metrics
    assert "token_broker_tokens_total 3.0" in metrics


def test_outgoing_voice_costs_more(
    limited_client: FlaskClient, caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    agent = caller_token(roles="agent")
    assert ask(limited_client, agent, leaks, {"grants": {"voice": {}}}).status_code == 200  # 3 of 3
    assert (
        ask(limited_client, agent, leaks, {"grants": {"voice": {"outgoing": False}}}).status_code
        == 429
    )


def test_spoofed_forwarded_for_does_not_escape_the_address_budget(
    limited_client: FlaskClient, caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    statuses = [
        post_from(
            limited_client,
            caller_token(sub=f"user{n}"),
            "198.51.100.1",
            leaks,
            forwarded=f"203.0.113.{n}",
        )
        for n in range(8)
    ]
    assert statuses == [200] * 6 + [429] * 2  # per_ip is 6: every request counted as .100.1


def test_one_trusted_proxy_uses_the_address_it_appended(
    limited: dict[str, str],
    tmp_path: Path,
    audit_stream: io.StringIO,
    caller_token: Callable[..., str],
    leaks: LeakWatch,
) -> None:
    client = build({**limited, "BROKER_TRUSTED_PROXIES": "1"}, tmp_path, audit_stream).test_client()
    for n in range(8):  # eight clients behind one proxy: each its own address budget
        assert (
            post_from(
                client,
                caller_token(sub=f"user{n}"),
                "10.0.0.2",
                leaks,
                forwarded=f"spoof, 203.0.113.{n}",
            )
            == 200
        )
    records = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    assert records[0]["client_ip"] == "203.0.113.0"


def test_failed_authentications_spend_the_address_budget(
    limited_client: FlaskClient, caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    statuses = [post_from(limited_client, "garbage", "198.51.100.9", leaks) for _ in range(6)]
    assert statuses == [401] * 4 + [429] * 2
    # even a valid caller from that address waits; another address does not
    assert post_from(limited_client, caller_token(), "198.51.100.9", leaks) == 429
    assert post_from(limited_client, caller_token(), "198.51.100.10", leaks) == 200


def test_metrics_require_the_token_when_set(
    environ: dict[str, str], tmp_path: Path, audit_stream: io.StringIO
) -> None:
    client = build(
        {**environ, "BROKER_METRICS_TOKEN": "m" * 32}, tmp_path, audit_stream
    ).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer " + "m" * 32})
    assert ok.status_code == 200
    assert "token_broker_request_seconds" in ok.get_data(as_text=True)


def test_audit_command_reads_the_durable_trail(
    client: FlaskClient, environ: dict[str, str], caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    ask(client, caller_token(), leaks)
    ask(client, caller_token(sub="bob"), leaks, {"grants": {"voice": {}}})
    cli(environ, "pause", "--reason", "drill")
    cli(environ, "resume")
    every = [json.loads(line) for line in cli(environ, "audit", "--json").output.splitlines()]
    assert [r["decision"] for r in every] == ["issued", "denied", "paused", "resumed"]
    denied = cli(environ, "audit", "--decision", "denied", "--since", "1h").output
    assert "bob" in denied
    assert "alice" not in denied
    assert cli(environ, "audit", "--identity", "alice").output.count("issued") == 1
    bad = CliRunner().invoke(main, ["audit", "--since", "yesterday"], env=environ)
    assert bad.exit_code != 0


def test_sqlite_state_refuses_several_workers(environ: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["serve", "--workers", "2"], env=environ)
    assert result.exit_code == 2
    assert "one worker" in result.output
