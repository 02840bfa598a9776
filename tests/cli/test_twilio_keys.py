"""token-broker keys: list, create and delete API keys through Twilio's REST API (a local fake)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests import support
from tests.fake_twilio import ADMIN_SID, FakeTwilio


def _rotated(environ: dict[str, str], tmp_path: Path, age_seconds: float) -> dict[str, str]:
    sid_file, secret_file = tmp_path / "sid", tmp_path / "secret"
    sid_file.write_text("SK" + "2" * 32)
    secret_file.write_text("n" * 40)
    switched = time.time() - age_seconds
    for path in (sid_file, secret_file):
        os.utime(path, (switched, switched))
    rotated = {
        k: v for k, v in environ.items() if k not in ("TWILIO_API_KEY_SID", "TWILIO_API_KEY_SECRET")
    }
    return {
        **rotated,
        "TWILIO_API_KEY_SID_FILE": str(sid_file),
        "TWILIO_API_KEY_SECRET_FILE": str(secret_file),
    }


def test_list_marks_the_key_that_signs(
    environ: dict[str, str], twilio: FakeTwilio, admin_cli: Callable[..., Result]
) -> None:
    twilio.keys[support.API_KEY_SID]["created"] = support.NOW
    result = admin_cli(environ, "keys", "list")
    assert result.exit_code == 0, result.output
    assert (
        f"{support.API_KEY_SID}  2026-11-28T18:00:00+00:00  broker 1  (signs tokens here)"
        in result.output
    )
    assert twilio.requests == [f"GET /2010-04-01/Accounts/{ADMIN_SID}/Keys.json"]


def test_create_prints_the_secret_once(
    environ: dict[str, str], twilio: FakeTwilio, admin_cli: Callable[..., Result]
) -> None:
    result = admin_cli(environ, "keys", "create", "broker 2")
    assert result.exit_code == 0, result.output
    sid, secret = result.stdout.split()[:2]
    assert sid.startswith("SK")
    assert secret == "S" * 32
    assert twilio.keys[sid]["friendly_name"] == "broker 2"


def test_delete_refuses_the_active_key(
    environ: dict[str, str], twilio: FakeTwilio, admin_cli: Callable[..., Result]
) -> None:
    result = admin_cli(environ, "keys", "delete", support.API_KEY_SID)
    assert result.exit_code == 2
    assert "signs with" in result.output
    assert support.API_KEY_SID in twilio.keys
    assert not any(r.startswith("DELETE") for r in twilio.requests)


def test_delete_waits_while_old_tokens_may_be_alive(
    environ: dict[str, str], twilio: FakeTwilio, tmp_path: Path, admin_cli: Callable[..., Result]
) -> None:
    fresh = _rotated(environ, tmp_path, age_seconds=60)  # the policy's max TTL is 3600 s
    refused = admin_cli(fresh, "keys", "delete", support.API_KEY_SID)
    assert refused.exit_code == 1
    assert "may be alive until" in refused.output
    assert support.API_KEY_SID in twilio.keys
    forced = admin_cli(fresh, "keys", "delete", support.API_KEY_SID, "--force")
    assert forced.exit_code == 0, forced.output
    assert support.API_KEY_SID not in twilio.keys


def test_delete_after_the_old_tokens_expired(
    environ: dict[str, str], twilio: FakeTwilio, tmp_path: Path, admin_cli: Callable[..., Result]
) -> None:
    settled = _rotated(environ, tmp_path, age_seconds=2 * 3600)
    result = admin_cli(settled, "keys", "delete", support.API_KEY_SID)
    assert result.exit_code == 0, result.output
    assert (
        twilio.requests[-1]
        == f"DELETE /2010-04-01/Accounts/{ADMIN_SID}/Keys/{support.API_KEY_SID}.json"
    )


def test_twilio_errors_are_reported_not_raised(
    environ: dict[str, str], twilio: FakeTwilio, admin_cli: Callable[..., Result]
) -> None:
    wrong = admin_cli(environ, "keys", "list", token="0" * 32)
    assert wrong.exit_code == 3
    assert "Twilio's REST API" in wrong.output
    assert "0" * 32 not in wrong.output
    missing = admin_cli(environ, "keys", "delete", "SK" + "9" * 32)
    assert missing.exit_code == 3
