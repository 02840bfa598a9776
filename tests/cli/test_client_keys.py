"""token-broker client-key: create, list and revoke; the key is shown once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import Result


def test_the_key_is_shown_once_and_stored_only_as_a_digest(
    keyed: dict[str, str],
    cli: Callable[..., Result],
    create_key: Callable[[dict[str, str], str], str],
) -> None:
    key = create_key(keyed, "backend")
    stored = Path(keyed["BROKER_CLIENT_KEYS_FILE"])
    assert key not in stored.read_text()
    assert stored.stat().st_mode & 0o777 == 0o600
    listing = cli("client-key", "list", env=keyed)
    assert "backend" in listing.output
    assert "active" in listing.output
    assert key not in listing.output
    revoke = cli("client-key", "revoke", "backend", env=keyed)
    assert "revoked 1 key(s)" in revoke.output
    assert "revoked" in cli("client-key", "list", env=keyed).output
    again = cli("client-key", "revoke", "backend", env=keyed)
    assert again.exit_code == 1


def test_client_key_commands_need_the_file_setting(
    environ: dict[str, str], cli: Callable[..., Result]
) -> None:
    result = cli("client-key", "list", env=environ)
    assert result.exit_code == 2
    assert "BROKER_CLIENT_KEYS_FILE" in result.output
