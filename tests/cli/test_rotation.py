"""token-broker keys rotate: a new key in the key files, the fleet waited for, the old key
deleted only once its tokens expired; an interrupted rotation goes on when run again."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result

from service.base import files
from service.cli import rotation
from service.state import Retention, open_store
from tests import support
from tests.fake_twilio import FakeTwilio


@pytest.fixture
def keyed_files(environ: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The broker with its key in two files, and a store the server made."""
    folder = support.write_key(tmp_path / "key", (support.API_KEY_SID, support.API_KEY_SECRET))
    environment = {
        **support.without_static_key(environ),
        "TWILIO_API_KEY_SID_FILE": str(folder / "sid"),
        "TWILIO_API_KEY_SECRET_FILE": str(folder / "secret"),
    }
    open_store(environment["BROKER_STATE_URL"], retention=Retention()).close()
    return environment


def state_of(environment: dict[str, str]) -> dict[str, str]:
    sid_file = Path(environment["TWILIO_API_KEY_SID_FILE"])
    found: dict[str, str] = json.loads((sid_file.parent / ".sid.rotation.json").read_text())
    return found


def new_key(twilio: FakeTwilio) -> str:
    [sid] = [sid for sid in twilio.keys if sid != support.API_KEY_SID]
    return sid


def test_rotate_writes_the_new_key_and_finish_waits_for_the_old_tokens(
    keyed_files: dict[str, str], twilio: FakeTwilio, admin_cli: Callable[..., Result]
) -> None:
    result = admin_cli(keyed_files, "keys", "rotate")
    assert result.exit_code == 0, result.output
    created = new_key(twilio)
    sid_file = Path(keyed_files["TWILIO_API_KEY_SID_FILE"])
    secret_file = Path(keyed_files["TWILIO_API_KEY_SECRET_FILE"])
    assert sid_file.read_text() == created + "\n"
    secret = secret_file.read_text().strip()
    assert secret  # what Twilio showed this once: in the file, and nowhere else
    assert secret not in result.output
    for path in (sid_file, secret_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"rotated: {support.API_KEY_SID} -> {created}" in result.output
    again = admin_cli(keyed_files, "keys", "rotate")  # done already: says so, makes nothing
    assert again.exit_code == 0
    assert len(twilio.keys) == 2
    early = admin_cli(keyed_files, "keys", "rotate", "--finish")
    assert early.exit_code == 1
    assert "may be alive until" in early.output
    assert support.API_KEY_SID in twilio.keys
    state = state_of(keyed_files)
    state["switched_at"] = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    (sid_file.parent / ".sid.rotation.json").write_text(json.dumps(state))
    finished = admin_cli(keyed_files, "keys", "rotate", "--finish")
    assert finished.exit_code == 0, finished.output
    assert list(twilio.keys) == [created]  # the old key only


def test_an_interrupted_rotation_ends_as_an_uninterrupted_one(
    keyed_files: dict[str, str],
    twilio: FakeTwilio,
    admin_cli: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed after Twilio made the key but before the files held it (its secret lost):
    run again, that key is deleted and the rotation completes with a new one."""

    written = files.write_private

    def killed(path: Path, text: str) -> None:
        if path.name == "secret":
            raise KeyboardInterrupt
        written(path, text)

    monkeypatch.setattr(rotation, "write_private", killed)
    interrupted = admin_cli(keyed_files, "keys", "rotate")
    assert interrupted.exit_code != 0
    assert state_of(keyed_files)["phase"] == "creating"
    orphan = new_key(twilio)
    monkeypatch.undo()
    result = admin_cli(keyed_files, "keys", "rotate")
    assert result.exit_code == 0, result.output
    created = new_key(twilio)
    assert created != orphan
    assert sorted(twilio.keys) == sorted([support.API_KEY_SID, created])
    assert Path(keyed_files["TWILIO_API_KEY_SID_FILE"]).read_text().strip() == created
    assert state_of(keyed_files)["phase"] == "switched"


def test_rotate_waits_for_every_live_instance_and_says_which_lag(
    keyed_files: dict[str, str], twilio: FakeTwilio, admin_cli: Callable[..., Result]
) -> None:
    store = open_store(keyed_files["BROKER_STATE_URL"], retention=Retention(), create=False)
    store.report_signing_key("host-a:10", support.API_KEY_SID, datetime.now(UTC), 60)
    waiting = admin_cli(keyed_files, "keys", "rotate", "--timeout", "1")
    assert waiting.exit_code == 1
    assert f"instance host-a:10 still signs with {support.API_KEY_SID}" in waiting.output
    created = new_key(twilio)
    assert state_of(keyed_files)["phase"] == "written"
    store.report_signing_key("host-a:10", created, datetime.now(UTC), 60)  # it picked it up
    store.close()
    result = admin_cli(keyed_files, "keys", "rotate")
    assert result.exit_code == 0, result.output
    assert state_of(keyed_files)["phase"] == "switched"
    assert len(twilio.keys) == 2  # went on: no other key made


def test_rotate_needs_the_key_files(
    environ: dict[str, str], twilio: FakeTwilio, admin_cli: Callable[..., Result]
) -> None:
    result = admin_cli(environ, "keys", "rotate")
    assert result.exit_code == 2
    assert "keys rotate writes the key files" in result.output
    assert len(twilio.keys) == 1
