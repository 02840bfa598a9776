"""The development issuer: a local key, development profile only."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service import create_app
from service.callers import Authenticator
from service.callers.dev_issuer import DevIssuer
from service.cli import main
from service.configuration import load_configuration
from service.errors import AuthenticationFailed
from tests.conftest import LeakWatch

VIDEO = {"grants": {"video": {"room": "lobby"}}}


BACKEND_RULE = """
[[rules]]
name = "backend"
match = { clients = ["backend"], identities = ["user_*"] }
video = { rooms = ["{identity}-*"] }
voice = { incoming = true }
"""


@pytest.fixture
def keyed(environ: dict[str, str], policy_file: Path, tmp_path: Path) -> dict[str, str]:
    policy_file.write_text(policy_file.read_text() + BACKEND_RULE)
    return {**environ, "BROKER_CLIENT_KEYS_FILE": str(tmp_path / "keys" / "client-keys.json")}


def create_key(environment: dict[str, str], name: str, leaks: LeakWatch) -> str:
    result = CliRunner().invoke(main, ["client-key", "create", name], env=environment)
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    leaks.bearers.add(key)  # from now on it must not show up in any log or response
    return key


@pytest.fixture
def backend(keyed: dict[str, str], tmp_path: Path, audit_stream: io.StringIO) -> FlaskClient:
    configuration = load_configuration(keyed, dotenv_file=tmp_path / "none")
    return create_app(configuration, audit_stream=audit_stream).test_client()


def ask(client: FlaskClient, key: str, body: dict[str, Any], leaks: LeakWatch) -> Any:
    response = client.post("/v1/tokens", json=body, headers={"Authorization": f"Bearer {key}"})
    leaks.check_response(response)
    return response


def test_dev_issuer_tokens_verify_and_keep_their_key(tmp_path: Path) -> None:
    issuer = DevIssuer.load_or_create(tmp_path)
    again = DevIssuer.load_or_create(tmp_path)
    assert (tmp_path / "issuer-key.pem").stat().st_mode & 0o777 == 0o600
    now = datetime.now(UTC)
    token = issuer.session_token("carol", {"roles": "agent"}, now)
    authenticator = Authenticator([again.verifier()], identity_claim="sub", clock=lambda: now)
    caller = authenticator.authenticate(f"Bearer {token}")
    assert caller.identity == "carol"
    assert caller.claims["roles"] == "agent"
    expired = issuer.session_token("carol", {}, now - timedelta(days=2), ttl=timedelta(hours=1))
    with pytest.raises(AuthenticationFailed):
        authenticator.authenticate(f"Bearer {expired}")


def test_dev_issuer_is_not_accepted_in_production(
    post: Callable[..., TestResponse], tmp_path: Path
) -> None:
    dev_token = DevIssuer.load_or_create(tmp_path / "dev").session_token(
        "alice", {}, datetime.now(UTC)
    )
    response = post(VIDEO, dev_token)
    assert response.status_code == 401


def test_client_keys_and_the_development_issuer_stay_apart(
    policy_file: Path, tmp_path: Path, leaks: LeakWatch
) -> None:
    policy_file.write_text(policy_file.read_text() + BACKEND_RULE)
    development = {
        "BROKER_PROFILE": "dev",
        "BROKER_POLICY_FILE": str(policy_file),
        "BROKER_DEV_DIR": str(tmp_path / "dev"),
        "BROKER_STATE_URL": f"sqlite:///{tmp_path}/state.db",
        "BROKER_CLIENT_KEYS_FILE": str(tmp_path / "keys.json"),
    }
    key = create_key(development, "backend", leaks)
    session = CliRunner().invoke(main, ["dev-session", "user_1"], env=development).stdout.strip()
    leaks.bearers.add(session)
    client = create_app(
        load_configuration(development, dotenv_file=tmp_path / "none"), audit_stream=io.StringIO()
    ).test_client()
    # the client key is a client, never a development session: it must name an identity
    assert ask(client, key, {"grants": {"voice": {}}}, leaks).status_code == 400
    assert (
        ask(client, key, {"identity": "user_1", "grants": {"voice": {}}}, leaks).status_code == 200
    )
    # a development session is an app user, never a client: the client rule is not its
    assert ask(client, session, {"grants": {"voice": {}}}, leaks).status_code == 403
    # and a development session cannot pass for a key (nor a key for a session)
    assert (
        ask(
            client, "tbk_" + session, {"identity": "user_1", "grants": {"sync": {}}}, leaks
        ).status_code
        == 401
    )
