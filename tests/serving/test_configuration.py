"""Settings and policy validated together: every problem at once, grants the settings can fill."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.base.errors import ConfigurationError
from service.serving.configuration import load_configuration


def test_policy_and_settings_problems_are_reported_together(
    environ: dict[str, str], tmp_path: Path
) -> None:
    bad_policy = tmp_path / "bad.toml"
    bad_policy.write_text("[tokens]\nmax_ttl = 99999\n")
    environ["BROKER_POLICY_FILE"] = str(bad_policy)
    environ["TWILIO_REGION"] = "mars1"
    with pytest.raises(ConfigurationError) as raised:
        load_configuration(environ, dotenv_file=tmp_path / "none")
    joined = "\n".join(raised.value.problems)
    assert "TWILIO_REGION" in joined
    assert "max_ttl" in joined


def test_policy_needs_the_sids_it_grants(environ: dict[str, str], tmp_path: Path) -> None:
    environ.pop("TWILIO_TWIML_APP_SID")
    environ.pop("TWILIO_CONVERSATIONS_SERVICE_SID")
    with pytest.raises(ConfigurationError) as raised:
        load_configuration(environ, dotenv_file=tmp_path / "none")
    joined = "\n".join(raised.value.problems)
    assert "TWILIO_TWIML_APP_SID" in joined
    assert "TWILIO_CONVERSATIONS_SERVICE_SID" in joined
