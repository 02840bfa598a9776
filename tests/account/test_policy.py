"""The [usage] and [usage_alert] tables."""

from __future__ import annotations

import pytest

from service.base.errors import ConfigurationError
from service.serving.policy_file import Policy


def test_malformed_usage_thresholds_are_a_startup_error() -> None:
    with pytest.raises(ConfigurationError):
        Policy.from_toml('[usage]\ntoday = { calls = "lots" }')
    with pytest.raises(ConfigurationError):
        Policy.from_toml("[usage]\nweekly = {}")
