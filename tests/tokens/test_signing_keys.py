"""The signing key: watched files, applied once they hold still; a bad one never signs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from service.serving.configuration import Configuration, load_configuration
from service.tokens.signing_keys import CHECK_SECONDS, SigningKeySource
from tests import support


@pytest.fixture
def source(
    key_environ: dict[str, str], tmp_path: Path, clock: support.FakeClock
) -> SigningKeySource:
    settings = load_configuration(key_environ, dotenv_file=tmp_path / "absent.env").settings
    return SigningKeySource(settings, clock=clock)


def test_watched_files_switch_the_key_once_they_hold_still(
    source: SigningKeySource, tmp_path: Path, clock: support.FakeClock
) -> None:
    assert source.current().api_key_sid == support.OLD_KEY[0]
    support.swap_link(tmp_path / "key", support.write_key(tmp_path / "v2", support.NEW_KEY))
    assert source.current().api_key_sid == support.OLD_KEY[0]  # not checked again yet
    clock.advance(CHECK_SECONDS)
    assert source.current().api_key_sid == support.OLD_KEY[0]  # changed: seen, not yet applied
    clock.advance(CHECK_SECONDS)
    assert source.current().api_key_sid == support.NEW_KEY[0]  # held still for one check
    assert source.current().secret == support.NEW_KEY[1]


def test_a_half_written_pair_is_never_applied(
    source: SigningKeySource, tmp_path: Path, clock: support.FakeClock
) -> None:
    (tmp_path / "v1" / "sid").write_text(support.NEW_KEY[0] + "\n")  # the secret comes later
    clock.advance(CHECK_SECONDS)
    assert source.current().api_key_sid == support.OLD_KEY[0]
    (tmp_path / "v1" / "secret").write_text(support.NEW_KEY[1] + "\n")
    clock.advance(CHECK_SECONDS)
    assert source.current().api_key_sid == support.OLD_KEY[0]  # changed again: wait again
    clock.advance(CHECK_SECONDS)
    key = source.current()
    assert (key.api_key_sid, key.secret) == support.NEW_KEY


def test_an_unusable_rotation_keeps_the_old_key(
    source: SigningKeySource,
    tmp_path: Path,
    clock: support.FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    support.swap_link(
        tmp_path / "key", support.write_key(tmp_path / "bad", ("AC" + "3" * 32, "short"))
    )
    with caplog.at_level(logging.ERROR):
        for _ in range(3):  # seen, held still, then applied (and refused)
            clock.advance(CHECK_SECONDS)
            assert source.current().api_key_sid == support.OLD_KEY[0]
    assert "rotated API key refused" in caplog.text
    assert "short" not in caplog.text


def test_a_clock_that_goes_back_checks_at_once(
    source: SigningKeySource, tmp_path: Path, clock: support.FakeClock
) -> None:
    support.swap_link(tmp_path / "key", support.write_key(tmp_path / "v2", support.NEW_KEY))
    clock.advance(-3600)  # the system clock was set back an hour
    source.current()
    clock.advance(-1)
    assert source.current().api_key_sid == support.NEW_KEY[0]


def test_static_keys_are_not_watched(configuration: Configuration) -> None:
    source = SigningKeySource(configuration.settings)
    assert source.current() is source.current()
    assert "secret" not in repr(source)
