"""Server-to-server callers with client keys: stored as digests, limited by policy."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from service import create_app
from service.callers.client_keys import ClientKeyFile
from service.cli import main
from service.configuration import load_configuration
from service.errors import ConfigurationError
from tests.conftest import LeakWatch

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


def test_a_backend_acts_for_identities_its_rule_allows(
    backend: FlaskClient, keyed: dict[str, str], leaks: LeakWatch
) -> None:
    key = create_key(keyed, "backend", leaks)
    ok = ask(
        backend, key, {"identity": "user_42", "grants": {"video": {"room": "user_42-call"}}}, leaks
    )
    assert ok.status_code == 200
    assert ok.get_json()["identity"] == "user_42"
    outside = ask(backend, key, {"identity": "admin", "grants": {"voice": {}}}, leaks)
    assert outside.status_code == 403
    assert outside.get_json()["code"] == "grant_not_allowed"
    nameless = ask(backend, key, {"grants": {"voice": {}}}, leaks)
    assert nameless.status_code == 400
    # rules for app users (match = {}) never apply to a client key
    chat = ask(backend, key, {"identity": "user_42", "grants": {"chat": {}}}, leaks)
    assert chat.get_json()["code"] == "grant_not_allowed"


def test_app_users_never_get_client_rules_nor_name_identities(
    backend: FlaskClient, caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    user = caller_token(sub="user_42")
    assert (
        ask(backend, user, {"grants": {"voice": {}}}, leaks).get_json()["code"]
        == "grant_not_allowed"
    )
    named = ask(backend, user, {"identity": "user_7", "grants": {"sync": {}}}, leaks)
    assert named.get_json()["code"] == "unknown_field"


def test_wrong_revoked_and_unknown_keys_look_the_same(
    backend: FlaskClient, keyed: dict[str, str], leaks: LeakWatch
) -> None:
    key = create_key(keyed, "backend", leaks)
    revoked = create_key(keyed, "backend", leaks)
    revoked_id = revoked.split("_")[1]
    assert CliRunner().invoke(main, ["client-key", "revoke", revoked_id], env=keyed).exit_code == 0
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    unknown = "tbk_0123456789abcdef_" + "A" * 43
    bodies = []
    for candidate in (wrong, revoked, unknown, "tbk_short"):
        leaks.bearers.add(candidate)
        response = ask(backend, candidate, {"identity": "user_1", "grants": {"voice": {}}}, leaks)
        assert response.status_code == 401
        body = response.get_json()
        body.pop("request_id")
        bodies.append(body)
    assert all(body == bodies[0] for body in bodies)


def test_a_client_key_without_a_keys_file_is_refused(client: FlaskClient, leaks: LeakWatch) -> None:
    key = "tbk_0123456789abcdef_" + "A" * 43
    leaks.bearers.add(key)
    assert (
        ask(client, key, {"identity": "user_1", "grants": {"sync": {}}}, leaks).status_code == 401
    )


def test_bad_client_names_and_files(tmp_path: Path) -> None:
    keys = ClientKeyFile(tmp_path / "keys.json")
    with pytest.raises(ConfigurationError):
        keys.create("Not A Name!", __import__("datetime").datetime.now(__import__("datetime").UTC))
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"keys": [{"id": 1}]}))
    with pytest.raises(ConfigurationError):
        ClientKeyFile(broken)
