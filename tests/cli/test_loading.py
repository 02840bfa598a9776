"""The command line's one configuration loader, strict or lenient, and its exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service.base.errors import TwilioApiError, Unavailable
from service.cli import loading


def test_strict_exits_with_every_problem(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(str(tmp_path))
    monkeypatch.setenv("BROKER_PROFILE", "production")
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_API_KEY_SID", "TWILIO_API_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as exited:
        loading.load()
    assert exited.value.code == loading.EXIT_CONFIGURATION
    error = capsys.readouterr().err
    assert "TWILIO_ACCOUNT_SID is required" in error
    assert "policy file 'policy.toml' cannot be read" in error
    assert loading.load(strict=False) is None


def test_lenient_returns_the_configuration_when_it_loads(process_environ: dict[str, str]) -> None:
    found = loading.load(strict=False)
    assert found is not None
    assert found.settings.profile == "production"


def test_an_unreachable_store_and_twilio_exit_3() -> None:
    def unreachable() -> None:
        raise Unavailable("down")

    with pytest.raises(SystemExit) as exited:
        loading.guarded(unreachable)
    assert exited.value.code == loading.EXIT_UNREACHABLE

    def refused() -> None:
        raise TwilioApiError("HTTP 401 error: Authenticate")

    with pytest.raises(SystemExit) as exited:
        loading.twilio_call(refused)
    assert exited.value.code == loading.EXIT_UNREACHABLE


def test_importing_the_command_line_leaves_prometheus_client_alone() -> None:
    # `serve` must set prometheus_client's multiprocess directory before its first import.
    assert "service.cli" in sys.modules
    code = "import sys, service.cli; print('prometheus_client' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"
