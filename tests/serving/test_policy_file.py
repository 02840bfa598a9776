"""The policy file: read once, every table to its feature, problems across tables."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from service.base.errors import ConfigurationError
from service.serving.policy_file import Policy
from tests import support


def test_the_design_example_is_accepted() -> None:
    shipped = Policy.load(support.ROOT / "policy.toml")
    assert [rule.name for rule in shipped.tokens.rules] == ["members", "agents"]
    assert shipped.budgets.budgets["per_identity"] == "10/minute;200/day"


def test_unreadable_policy_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read"):
        Policy.load(tmp_path / "absent.toml")


def test_each_table_reaches_its_feature() -> None:
    policy = Policy.from_toml(
        support.POLICY
        + support.DIAL
        + support.INCOMING
        + '[usage_alert]\npauses = "voice_outgoing"\n[usage]\ntoday = { calls = 5.0 }\n'
    )
    assert policy.tokens.identity_claim == "sub"
    assert policy.budgets.budgets == {
        "per_identity": "1000/minute;20000/day",
        "denials_per_identity": "100000/minute",
        "twilio_calls_per_identity": "10/minute;200/day",  # the default
    }
    assert policy.dial is not None
    assert policy.dial.allowed_prefixes == ("+1", "+44")
    assert policy.incoming == {"+15005550006": ("agent_1", "agent_2")}
    assert policy.usage.alert_pauses == "voice_outgoing"
    assert str(policy.usage.thresholds["today"]["calls"]) == "5.0"
    assert policy.all_budgets().budgets["calls_per_identity"] == "3/hour"


def test_unknown_tables_and_malformed_toml_are_errors() -> None:
    with pytest.raises(ConfigurationError, match="unknown key 'limit' in the top level"):
        Policy.from_toml('[limit]\nper_ip = "1/minute"\n')
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        Policy.from_toml("[tokens\n")


def test_an_outgoing_cost_above_a_budget_is_an_error() -> None:
    # Every token that can place calls would be refused for ever: not a usable policy.
    with pytest.raises(ConfigurationError, match=r"voice_outgoing_cost \(5\).*per_identity"):
        Policy.from_toml('[limits]\nper_identity = "3/minute;100/day"\nvoice_outgoing_cost = 5\n')
    accepted = Policy.from_toml('[limits]\nper_identity = "5/minute"\nvoice_outgoing_cost = 5\n')
    assert accepted.budgets.voice_outgoing_cost == 5


HOSTILE_DEPTHS = {
    "array": "x = " + "[" * 100_000 + "]" * 100_000 + "\n",
    "inline_table": "x = " + "{a = " * 5_000 + "1" + "}" * 5_000 + "\n",
    "dotted_claim": '[[rules]]\nname = "r"\nsync = {}\nmatch = { claims = { '
    + ".".join(["a"] * 3_000)
    + ' = "x" } }\n',
    "just_too_deep": "x = " + "[" * 17 + "]" * 17 + "\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_DEPTHS))
def test_a_policy_too_deep_is_one_line_never_a_traceback(
    name: str, cli: Callable[..., Result], environ: dict[str, str], tmp_path: Path
) -> None:
    policy = tmp_path / "deep.toml"
    policy.write_text(HOSTILE_DEPTHS[name])
    result = cli("check-config", env={**environ, "BROKER_POLICY_FILE": str(policy)})
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    problems = [line for line in result.output.splitlines() if line.startswith("  - ")]
    assert problems == [f"  - {policy}: nested more than 16 deep (arrays, tables or dotted keys)"]


def test_a_policy_as_deep_as_allowed_is_read() -> None:
    with pytest.raises(ConfigurationError) as raised:  # unknown table, but read whole
        Policy.from_toml("x = " + "[" * 15 + "]" * 15 + "\n")
    assert "nested" not in str(raised.value)
