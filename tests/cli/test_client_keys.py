"""token-broker client-key: create, list and revoke; the key is shown once."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from service import create_app
from service.cli import main
from service.configuration import load_configuration
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


def test_the_key_is_shown_once_and_stored_only_as_a_digest(
    keyed: dict[str, str], leaks: LeakWatch
) -> None:
    key = create_key(keyed, "backend", leaks)
    stored = Path(keyed["BROKER_CLIENT_KEYS_FILE"])
    assert key not in stored.read_text()
    assert stored.stat().st_mode & 0o777 == 0o600
    listing = CliRunner().invoke(main, ["client-key", "list"], env=keyed)
    assert "backend" in listing.output
    assert "active" in listing.output
    assert key not in listing.output
    revoke = CliRunner().invoke(main, ["client-key", "revoke", "backend"], env=keyed)
    assert "revoked 1 key(s)" in revoke.output
    assert "revoked" in CliRunner().invoke(main, ["client-key", "list"], env=keyed).output
    again = CliRunner().invoke(main, ["client-key", "revoke", "backend"], env=keyed)
    assert again.exit_code == 1


def test_client_key_commands_need_the_file_setting(environ: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["client-key", "list"], env=environ)
    assert result.exit_code == 2
    assert "BROKER_CLIENT_KEYS_FILE" in result.output
