"""The dial policy: strict tables, and the high-risk ranges refused unless named."""

from __future__ import annotations

import pytest

from service.base.errors import ConfigurationError
from service.serving.policy_file import Policy
from service.voice.dialing import (
    HIGH_RISK_PREFIXES,
    CallAllowed,
    CallRefused,
    DialPolicy,
    decide_call,
)
from tests import support


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


def shipped_example() -> DialPolicy:
    """The [dial] table of the shipped policy, uncommented as an operator would."""
    text = (support.ROOT / "policy.toml").read_text()
    start = text.index("# [dial]")
    table = [
        line.removeprefix("# ")
        for line in text[start:].split("\n\n")[0].splitlines()
        if (line.startswith("# ") and not line.startswith("# [dial]")) or line == "# [dial]"
    ]
    dial = Policy.from_toml("\n".join(table)).dial
    assert dial is not None
    return dial


@pytest.mark.parametrize("prefix", HIGH_RISK_PREFIXES)
def test_high_risk_destinations_are_refused_unless_named(prefix: str) -> None:
    number = (prefix + "5550123456")[:13]
    wide = DialPolicy(allowed_prefixes=("+1", "+44", "+8", "+9"))
    for policy in (shipped_example(), wide):
        refused = decide_call(policy, number)
        assert isinstance(refused, CallRefused), number
    named = DialPolicy(allowed_prefixes=("+1", "+44", prefix))
    assert isinstance(decide_call(named, number), CallAllowed)


def test_ordinary_numbers_of_an_allowed_country_still_go() -> None:
    assert isinstance(decide_call(shipped_example(), "+14155550123"), CallAllowed)
    assert isinstance(decide_call(shipped_example(), "+442071234567"), CallAllowed)
