"""The signing key: watched files, applied once they hold still; a bad one never signs."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from service.configuration import load_configuration
from service.tokens.signing_keys import CHECK_SECONDS, SigningKeySource
from tests.conftest import LeakWatch

OLD = ("SK" + "1" * 32, "old-secret-" + "o" * 30)


NEW = ("SK" + "2" * 32, "new-secret-" + "n" * 30)


def write_key(directory: Path, key: tuple[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sid").write_text(key[0] + "\n")
    (directory / "secret").write_text(key[1] + "\n")
    return directory


def swap_link(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` in one atomic rename, as Kubernetes does."""
    temporary = link.with_name(link.name + ".new")
    temporary.symlink_to(target)
    temporary.replace(link)


@pytest.fixture
def key_environ(environ: dict[str, str], tmp_path: Path, leaks: LeakWatch) -> dict[str, str]:
    leaks.secrets.update({OLD[1], NEW[1]})
    link = tmp_path / "key"
    swap_link(link, write_key(tmp_path / "v1", OLD))
    rotated = {
        k: v for k, v in environ.items() if k not in ("TWILIO_API_KEY_SID", "TWILIO_API_KEY_SECRET")
    }
    return {
        **rotated,
        "TWILIO_API_KEY_SID_FILE": str(link / "sid"),
        "TWILIO_API_KEY_SECRET_FILE": str(link / "secret"),
    }


def wait_for_key(source: SigningKeySource, sid: str) -> None:
    deadline = time.monotonic() + 5
    while source.current().api_key_sid != sid and time.monotonic() < deadline:
        time.sleep(0.05)  # the polling interval, bounded by the deadline


def test_watched_files_switch_the_key(key_environ: dict[str, str], tmp_path: Path) -> None:
    source = SigningKeySource(
        load_configuration(key_environ, dotenv_file=tmp_path / "none").settings
    )
    assert source.current().api_key_sid == OLD[0]
    swap_link(tmp_path / "key", write_key(tmp_path / "v2", NEW))
    wait_for_key(source, NEW[0])
    assert source.current().secret == NEW[1]


def test_an_unusable_rotation_keeps_the_old_key(
    key_environ: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = SigningKeySource(
        load_configuration(key_environ, dotenv_file=tmp_path / "none").settings
    )
    swap_link(tmp_path / "key", write_key(tmp_path / "bad", ("AC" + "3" * 32, "short")))
    with caplog.at_level(logging.ERROR):
        for _ in range(3):  # seen, held still, then applied (and refused)
            time.sleep(CHECK_SECONDS + 0.05)  # let a check interval pass
            assert source.current().api_key_sid == OLD[0]
    assert "rotated API key refused" in caplog.text
    assert "short" not in caplog.text


def test_static_keys_are_not_watched(configuration: Any) -> None:
    source = SigningKeySource(configuration.settings)
    assert source.current() is source.current()
