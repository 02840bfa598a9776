"""The dial policy's tables: strict, every problem at start-up."""

from __future__ import annotations

import pytest

from service.errors import ConfigurationError
from service.policy_file import Policy


@pytest.mark.parametrize(
    "table",
    [
        '[dial]\nallowed_prefixes = ["1"]',
        '[dial]\nblocked_prefixes = "+1900"',
        '[dial]\nclient_identities = ["bad identity"]',
        '[dial]\ncalls_per_identity = "lots"',
        "[dial]\nsurprise = 1",
    ],
)
def test_malformed_dial_policy_is_a_startup_error(table: str) -> None:
    with pytest.raises(ConfigurationError):
        Policy.from_toml(table)


@pytest.mark.parametrize(
    "table",
    [
        '[incoming]\nnumbers = { "5551234" = ["a"] }',
        '[incoming]\nnumbers = { "+15005550006" = [] }',
        "[incoming]\nother = 1",
    ],
)
def test_malformed_incoming_routes_are_a_startup_error(table: str) -> None:
    with pytest.raises(ConfigurationError):
        Policy.from_toml(table)
