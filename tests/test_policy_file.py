"""The policy file: read once, every table to its feature, problems across tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import ConfigurationError
from service.policy_file import Policy
from tests import support


def test_the_design_example_is_accepted() -> None:
    shipped = Policy.load(support.ROOT / "policy.toml")
    assert [rule.name for rule in shipped.tokens.rules] == ["members", "agents"]
    assert shipped.budgets.budgets["per_identity"] == "10/minute;200/day"


def test_unreadable_policy_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read"):
        Policy.load(tmp_path / "absent.toml")
