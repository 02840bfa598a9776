"""A real Prometheus on loopback, loaded with the project's rules, scraping real brokers
(one on SQLite, one on Redis with two workers): every metric the rules and the dashboard
read exists, every dashboard panel finds data, and the pause and down alerts go pending
and clear."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests import support
from tests.conftest import LeakWatch

RULES = support.ROOT / "deploy" / "prometheus" / "token-broker.rules.yml"
DASHBOARD = support.ROOT / "deploy" / "grafana" / "token-broker.json"
DEADLINE_SECONDS = 30
#: What Grafana puts in place of the dashboard's variables.
VARIABLES = {"$job": "token-broker", "$__rate_interval": "5m"}


@dataclass
class Monitored:
    prometheus: str
    sqlite: support.BrokerProcess
    redis: support.BrokerProcess
    environments: dict[str, dict[str, str]]


def start_prometheus(directory: Path, targets: list[str]) -> tuple[str, subprocess.Popen[bytes]]:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "token-broker", "static_configs": [{"targets": targets}]},
        ],
    }
    (directory / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = support.free_port()
    with (directory / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                support.required_tool("prometheus"),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    if not support.eventually(ready, within=DEADLINE_SECONDS):
        support.stop_process(process)
        pytest.fail((directory / "prometheus.log").read_text())
    return url, process


@pytest.fixture(scope="module")
def monitored(keys: support.Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    directory = tmp_path_factory.mktemp("prometheus")
    # A Redis of its own: what other modules leave in the shared one (a pause) stays there.
    redis = support.RedisServer(support.free_port(), str(directory))
    redis.start()
    try:
        yield from _monitored(keys, redis, directory)
    finally:
        redis.stop()


def _monitored(
    keys: support.Keys, redis_server: support.RedisServer, directory: Path
) -> Iterator[Monitored]:
    policy = directory / "policy.toml"
    policy.write_text(support.POLICY)
    with support.serve_jwks(keys.jwks()) as jwks:
        base = support.base_environ(jwks.url, str(policy))
        environments = {
            "sqlite": {**base, "BROKER_STATE_URL": f"sqlite:///{directory}/state.sqlite3"},
            "redis": {**base, "BROKER_STATE_URL": redis_server.url},
        }
        sqlite = support.start_broker(environments["sqlite"], directory)
        redis = support.start_broker(environments["redis"], directory, "--workers", "2")
        targets = [broker.url.removeprefix("http://") for broker in (sqlite, redis)]
        url, prometheus = start_prometheus(directory, targets)
        found = Monitored(url, sqlite, redis, environments)
        try:
            yield found
        finally:
            support.stop_process(prometheus)
            for broker in (found.sqlite, found.redis):  # a test may have replaced one
                support.stop_broker(broker)


def query(url: str, expression: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{url}/api/v1/query", params={"query": expression}, timeout=10)
    assert answer.status_code == 200, answer.text
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


def alert_states(url: str, name: str) -> set[str]:
    alerts = requests.get(f"{url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return {alert["state"] for alert in alerts if alert["labels"]["alertname"] == name}


def drive_traffic(monitored: Monitored, caller_token: Callable[..., str], leaks: LeakWatch) -> None:
    """Tokens issued, refused (403) and failed authentications, on both brokers."""
    good = caller_token()
    for broker in (monitored.sqlite, monitored.redis):
        for body, bearer, status in (
            ({"grants": {"sync": {}, "video": {"room": "lobby"}}}, good, 200),
            ({"grants": {"voice": {}}}, good, 403),
            ({"grants": {"sync": {}}}, "not-a-token", 401),
        ):
            for _ in range(4):
                answer = requests.post(
                    f"{broker.url}/v1/tokens",
                    json=body,
                    headers={"Authorization": f"Bearer {bearer}"},
                    timeout=10,
                )
                assert answer.status_code == status, answer.text
                if status == 200:
                    leaks.issued.add(answer.json()["token"])


def used_metric_names() -> set[str]:
    texts = [RULES.read_text()]
    texts += [
        target["expr"]
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel["targets"]
    ]
    return {name for text in texts for name in re.findall(r"\btoken_broker_[a-z_]+\b", text)}


def panel_queries() -> list[tuple[str, str]]:
    found = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            expression = target["expr"]
            for variable, value in VARIABLES.items():
                expression = expression.replace(variable, value)
            found.append((panel["title"], expression))
    return found


def test_rules_and_dashboard_read_metrics_that_exist_and_every_panel_has_data(
    monitored: Monitored, caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    # Traffic after Prometheus has seen both brokers at zero, so that rates see it.
    assert support.eventually(
        lambda: len(query(monitored.prometheus, "token_broker_tokens_total == 0")) == 2,
        within=DEADLINE_SECONDS,
    )
    drive_traffic(monitored, caller_token, leaks)
    names = used_metric_names()
    assert "token_broker_responses_total" in names
    for broker in (monitored.sqlite, monitored.redis):
        exposition = requests.get(f"{broker.url}/metrics", timeout=10).text
        missing = {n for n in names if not re.search(rf"^{n}[{{ ]", exposition, re.MULTILINE)}
        assert not missing, broker.url
    for title, expression in panel_queries():

        def has_data(expression: str = expression) -> bool:
            return any(
                value != "NaN"
                for series in query(monitored.prometheus, expression)
                for value in [series["value"][1]]
            )

        assert support.eventually(has_data, within=DEADLINE_SECONDS), (title, expression)


def test_paused_goes_pending_and_clears_on_resume(monitored: Monitored) -> None:
    environment = monitored.environments["redis"]
    assert alert_states(monitored.prometheus, "TokenBrokerIssuancePaused") == set()
    support.operator(environment, "pause", "--reason", "alert test")
    try:
        assert support.eventually(
            lambda: "pending" in alert_states(monitored.prometheus, "TokenBrokerIssuancePaused"),
            within=DEADLINE_SECONDS,
        )
    finally:
        support.operator(environment, "resume")
    assert support.eventually(
        lambda: alert_states(monitored.prometheus, "TokenBrokerIssuancePaused") == set(),
        within=DEADLINE_SECONDS,
    )


def test_down_goes_pending_when_a_broker_stops_and_clears_when_it_is_back(
    monitored: Monitored, tmp_path: Path
) -> None:
    assert alert_states(monitored.prometheus, "TokenBrokerDown") == set()
    stopped = monitored.sqlite
    support.stop_broker(stopped)
    assert support.eventually(
        lambda: "pending" in alert_states(monitored.prometheus, "TokenBrokerDown"),
        within=DEADLINE_SECONDS,
    )
    alerts = requests.get(f"{monitored.prometheus}/api/v1/alerts", timeout=10).json()
    instances = {
        alert["labels"]["instance"]
        for alert in alerts["data"]["alerts"]
        if alert["labels"]["alertname"] == "TokenBrokerDown"
    }
    assert instances == {stopped.url.removeprefix("http://")}
    # Back on the same address: Prometheus scrapes it again and the alert clears.
    port = int(stopped.url.rsplit(":", 1)[1])
    monitored.sqlite = support.start_broker(monitored.environments["sqlite"], tmp_path, port=port)
    assert support.eventually(
        lambda: alert_states(monitored.prometheus, "TokenBrokerDown") == set(),
        within=DEADLINE_SECONDS,
    )
