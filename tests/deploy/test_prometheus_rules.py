"""The Prometheus rules operators load: valid, every contract alert present and
annotated, each alert's unit test passing, and failing once its condition is gone."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import support

RULES = support.ROOT / "deploy" / "prometheus" / "token-broker.rules.yml"
RULE_TESTS = sorted((support.ROOT / "deploy" / "prometheus" / "tests").glob("*.test.yml"))
#: The alert names the design fixes (operators put them in runbooks and routes).
CONTRACT_ALERTS = {
    "TokenBrokerDown",
    "TokenBrokerIssuancePaused",
    "TokenBrokerErrorBudgetBurn",
    "TokenBrokerLatencyHigh",
    "TokenBrokerStateUnavailable",
    "TokenBrokerAuthFailureSpike",
    "TokenBrokerSigningKeyOld",
    "TokenBrokerAccountEvent",
}
NEVER = "vector(0) > 1"


def alerts(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def readme_anchors() -> set[str]:
    """GitHub's anchors of the README's headings."""
    text = (support.ROOT / "README.md").read_text()
    headings = re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-") for heading in headings}


def promtool(*arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [support.required_tool("promtool"), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def test_the_rules_are_valid_and_their_unit_tests_pass() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", *map(str, RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_contract_alert_is_there_annotated_with_a_runbook_in_the_readme() -> None:
    found = alerts(yaml.safe_load(RULES.read_text()))
    assert {alert["alert"] for alert in found} >= CONTRACT_ALERTS
    anchors = readme_anchors()
    assert "runbook" in anchors
    for alert in found:
        assert alert["labels"]["severity"] in {"critical", "warning"}, alert["alert"]
        annotations = alert["annotations"]
        assert annotations["summary"], alert["alert"]
        assert annotations["description"], alert["alert"]
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page.endswith("/README.md"), alert["alert"]
        assert anchor == alert["alert"].lower(), alert["alert"]
        assert anchor in anchors, alert["alert"]


def test_every_alert_is_unit_tested() -> None:
    tested = {
        case["alertname"]
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert tested == {alert["alert"] for alert in alerts(yaml.safe_load(RULES.read_text()))}


@pytest.mark.parametrize("index", range(len(alerts(yaml.safe_load(RULES.read_text())))))
def test_an_alert_without_its_condition_fails_its_unit_test(index: int, tmp_path: Path) -> None:
    document = yaml.safe_load(RULES.read_text())
    alerts(document)[index]["expr"] = NEVER
    (tmp_path / "tests").mkdir()
    (tmp_path / RULES.name).write_text(yaml.safe_dump(document))
    for path in RULE_TESTS:
        (tmp_path / "tests" / path.name).write_text(path.read_text())
    tested = promtool("test", "rules", *(str(tmp_path / "tests" / p.name) for p in RULE_TESTS))
    assert tested.returncode != 0
    assert "FAILED" in tested.stdout + tested.stderr
