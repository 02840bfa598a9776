"""The Grafana dashboard: a data source and a job variable, and every panel's queries
bound to both (the end-to-end test evaluates them against a real Prometheus)."""

from __future__ import annotations

import json

from tests import support

DASHBOARD = support.ROOT / "deploy" / "grafana" / "token-broker.json"
#: What the issue asks an operator to see.
WANTED = (
    "Tokens issued by grant",
    "Refusals by code",
    "Rate-limit hits by budget",
    "Authentication failures",
    "Token request latency",
    "Error budget remaining (30 days)",
    "Issuance paused",
    "Signing key age",
    "Twilio account events",
)


def test_every_panel_reads_the_chosen_data_source_and_job() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["type"] == "query"
    titles = [panel["title"] for panel in dashboard["panels"]]
    assert set(WANTED) <= set(titles)
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(titles)
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert 'job=~"$job"' in target["expr"], panel["title"]
