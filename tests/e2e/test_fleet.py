"""End to end with shared state: three broker instances (two workers each) on one real
Redis, and two on a real Redis Cluster; Redis failing mid-traffic, a cluster master
killed (failed over, or the cluster failed and seen by readiness); the SQLite audit trail
across a kill -9."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from service.tokens.minting import token_fingerprint
from tests import support
from tests.conftest import LeakWatch

BUDGET = 20


FLEET_POLICY = support.POLICY.replace(
    'per_identity = "1000/minute;20000/day"', f'per_identity = "{BUDGET}/minute"'
)


@dataclass
class Fleet:
    instances: list[support.BrokerProcess]
    environment: dict[str, str]
    redis: support.RedisServer | support.RedisCluster
    received: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ask(self, index: int, bearer: str, leaks: LeakWatch, body: Any = None) -> requests.Response:
        url = self.instances[index % len(self.instances)].url
        response = requests.post(
            f"{url}/v1/tokens",
            json=body or {"grants": {"sync": {}}},
            headers={"Authorization": f"Bearer {bearer}"},
            timeout=10,
        )
        if response.status_code == 200:
            leaks.issued.add(response.json()["token"])
            with self.lock:
                self.received += 1
        return response


@contextmanager
def brokers(
    keys: support.Keys,
    directory: Path,
    redis: support.RedisServer | support.RedisCluster,
    count: int,
) -> Iterator[Fleet]:
    """``count`` brokers of two workers each, sharing ``redis``."""
    policy = directory / "policy.toml"
    policy.write_text(FLEET_POLICY)
    with support.serve_jwks(keys.jwks()) as jwks:
        environment = {
            **support.base_environ(jwks.url, str(policy)),
            "BROKER_STATE_URL": redis.url,
        }
        instances = [
            support.start_broker(environment, directory, "--workers", "2") for _ in range(count)
        ]
        try:
            yield Fleet(instances, environment, redis)
        finally:
            for instance in instances:
                support.stop_broker(instance)


@pytest.fixture(scope="module")
def fleet(
    keys: support.Keys, redis_server: support.RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    if redis_server.process is None:
        redis_server.start()
    with brokers(keys, tmp_path_factory.mktemp("fleet"), redis_server, 3) as found:
        yield found


@pytest.fixture(scope="module")
def cluster_fleet(keys: support.Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Two brokers of two workers each on a Redis Cluster of their own (a test here
    kills one of its masters)."""
    directory = tmp_path_factory.mktemp("cluster-fleet")
    cluster = support.RedisCluster(directory / "cluster")
    cluster.start()
    try:
        with brokers(keys, directory, cluster, 2) as found:
            yield found
    finally:
        cluster.stop()


def bearer(keys: support.Keys, leaks: LeakWatch, **claims: Any) -> str:
    token = support.sign(support.caller_claims(**claims), keys.rsa_private, "RS256", "rsa-1")
    leaks.bearers.add(token)
    return token


def _all_refuse(fleet: Fleet, session: str, leaks: LeakWatch, status: int, code: str) -> bool:
    """True when every instance (both workers likely) refuses ``session`` so."""
    answers = [fleet.ask(index, session, leaks) for index in range(len(fleet.instances) * 4)]
    return all(a.status_code == status and a.json()["code"] == code for a in answers)


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize("backend", ["fleet", "cluster_fleet"])
def test_a_budget_of_n_admits_exactly_n_across_the_fleet(
    backend: str, request: pytest.FixtureRequest, keys: support.Keys, leaks: LeakWatch
) -> None:
    fleet: Fleet = request.getfixturevalue(backend)
    session = bearer(keys, leaks, sub="budgeted")
    with ThreadPoolExecutor(max_workers=16) as pool:  # 100 at once over every worker
        statuses = list(pool.map(lambda n: fleet.ask(n, session, leaks).status_code, range(100)))
    assert statuses.count(200) == BUDGET
    assert statuses.count(429) == 100 - BUDGET


@pytest.mark.parametrize("backend", ["fleet", "cluster_fleet"])
def test_pause_and_revoke_reach_every_worker_within_a_second(
    backend: str, request: pytest.FixtureRequest, keys: support.Keys, leaks: LeakWatch
) -> None:
    fleet: Fleet = request.getfixturevalue(backend)
    session = bearer(keys, leaks, sub="operator_target")
    assert fleet.ask(0, session, leaks).status_code == 200
    support.operator(fleet.environment, "pause", "--reason", "drill")
    # The promise under test: obeyed everywhere within one second of the switch, and for good.
    assert support.eventually(
        lambda: _all_refuse(fleet, session, leaks, 503, "issuance_paused"), within=1.0
    )
    assert _all_refuse(fleet, session, leaks, 503, "issuance_paused")
    for instance in fleet.instances:
        assert requests.get(f"{instance.url}/readyz", timeout=5).json()["paused"] is True
    support.operator(fleet.environment, "resume")
    support.operator(fleet.environment, "revoke", "--identity", "operator_target")
    assert support.eventually(
        lambda: _all_refuse(fleet, session, leaks, 403, "revoked"), within=1.0
    )
    assert _all_refuse(fleet, session, leaks, 403, "revoked")
    support.operator(fleet.environment, "unrevoke", "--identity", "operator_target")


def test_metrics_add_up_over_workers_and_instances(
    fleet: Fleet, keys: support.Keys, leaks: LeakWatch
) -> None:
    for number in range(12):
        assert (
            fleet.ask(number, bearer(keys, leaks, sub=f"counted{number}"), leaks).status_code == 200
        )
    total = sum(
        _metric(requests.get(f"{i.url}/metrics", timeout=5).text, "token_broker_tokens_total")
        for i in fleet.instances
    )
    assert total == fleet.received


#: What each request of the background traffic got: (when, status, problem code).
Statuses = list[tuple[float, int, str]]


@contextmanager
def traffic(
    fleet: Fleet, keys: support.Keys, leaks: LeakWatch, threads: int, subject: Callable[[int], str]
) -> Iterator[Statuses]:
    """Token requests from ``threads`` threads, round robin over the fleet, from the first
    200 until the block ends; the caller of request ``n`` is ``subject(n)``."""
    statuses: Statuses = []
    stop = threading.Event()

    def ask(offset: int) -> None:
        number = offset
        while not stop.is_set():
            response = fleet.ask(number, bearer(keys, leaks, sub=subject(number)), leaks)
            code = response.json().get("code", "") if response.status_code != 200 else ""
            statuses.append((time.monotonic(), response.status_code, code))
            number += threads

    workers = [threading.Thread(target=ask, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    try:
        assert support.eventually(lambda: any(status == 200 for _, status, _ in statuses))
        yield statuses
    finally:
        stop.set()
        for worker in workers:
            worker.join()


def test_redis_failure_fails_closed_and_recovers_by_itself(
    fleet: Fleet, keys: support.Keys, leaks: LeakWatch
) -> None:
    pids = [instance.process.pid for instance in fleet.instances]
    assert isinstance(fleet.redis, support.RedisServer)
    try:
        with traffic(fleet, keys, leaks, 3, lambda number: f"outage{number % 50}") as statuses:
            fleet.redis.stop()
            stopped_at = time.monotonic()
            assert support.eventually(
                lambda: any(moment > stopped_at + 1.0 for moment, _, _ in statuses)
            )
            for instance in fleet.instances:
                assert requests.get(f"{instance.url}/readyz", timeout=5).status_code == 503
    finally:
        fleet.redis.start()
    during = [(status, code) for moment, status, code in statuses if moment > stopped_at + 1.0]
    assert during
    assert set(during) == {(503, "unavailable")}
    assert all(status in (200, 429, 503) for _, status, _ in statuses)  # never a 500

    session = bearer(keys, leaks, sub="after_outage")
    assert support.eventually(
        lambda: [fleet.ask(n, session, leaks).status_code for n in range(3)] == [200, 200, 200]
    )
    assert [instance.process.pid for instance in fleet.instances] == pids
    assert all(instance.process.poll() is None for instance in fleet.instances)


def test_a_cluster_master_killed_fails_closed_then_its_replica_serves(
    cluster_fleet: Fleet, keys: support.Keys, leaks: LeakWatch
) -> None:
    fleet = cluster_fleet
    assert isinstance(fleet.redis, support.RedisCluster)
    cluster = fleet.redis
    pids = [instance.process.pid for instance in fleet.instances]
    # Each caller asks once: none comes near its budget.
    with traffic(fleet, keys, leaks, 2, lambda number: f"failover{number}") as statuses:
        cluster.kill(cluster.masters()[0])
        killed_at = time.monotonic()
        assert support.eventually(
            lambda: any(moment > killed_at and status == 503 for moment, status, _ in statuses),
            within=15.0,
        )
        assert support.eventually(cluster.healthy, within=30.0)  # its replica took over
        healed_at = time.monotonic()
        assert support.eventually(
            lambda: (
                sum(1 for moment, status, _ in statuses if moment > healed_at and status == 200)
                >= 20
            ),
            within=30.0,
        )
    refused = {(status, code) for moment, status, code in statuses if status != 200}
    assert refused <= {(503, "unavailable")}  # never a 500, never a wrong answer
    assert [instance.process.pid for instance in fleet.instances] == pids


def readiness(fleet: Fleet) -> list[tuple[int, str]]:
    """Each instance's /readyz: its status and its state check."""
    answers = [requests.get(f"{i.url}/readyz", timeout=5) for i in fleet.instances]
    return [(answer.status_code, answer.json()["checks"]["state"]) for answer in answers]


def test_readiness_sees_a_failed_cluster_and_its_healing(
    keys: support.Keys, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Three masters, no replica: one killed, the cluster fails while every other node
    still answers PING. Both brokers say not ready (naming the state check) within 3 s,
    and ready again within 3 s of the killed master's return, without a restart."""
    directory = tmp_path_factory.mktemp("failed-cluster")
    cluster = support.RedisCluster(directory / "cluster", replicas=0)
    cluster.start()
    try:
        with brokers(keys, directory, cluster, 2) as fleet:
            pids = [instance.process.pid for instance in fleet.instances]
            assert readiness(fleet) == [(200, "ok"), (200, "ok")]
            victim = cluster.masters()[0]
            cluster.kill(victim)
            assert support.eventually(lambda: cluster.state() == "fail", within=15.0)
            not_ready = [(503, "failed"), (503, "failed")]
            logs = "\n".join(instance.output()[-3000:] for instance in fleet.instances)
            assert support.eventually(lambda: readiness(fleet) == not_ready, within=3.0), logs
            cluster.restart(victim)
            assert support.eventually(lambda: cluster.state() == "ok", within=15.0)
            ready = [(200, "ok"), (200, "ok")]
            assert support.eventually(lambda: readiness(fleet) == ready, within=3.0)
            assert [instance.process.pid for instance in fleet.instances] == pids
    finally:
        cluster.stop()


def test_sqlite_audit_trail_survives_kill_9(
    keys: support.Keys, tmp_path: Path, leaks: LeakWatch, jwks: support.JwksServer
) -> None:
    (tmp_path / "policy.toml").write_text(support.POLICY)
    environment = {
        **support.base_environ(jwks.url, str(tmp_path / "policy.toml")),
        "BROKER_STATE_URL": f"sqlite:///{tmp_path}/state.sqlite3",
    }
    server = support.start_broker(environment, tmp_path)
    received = []
    session = bearer(keys, leaks, sub="durable")
    for _ in range(25):
        response = requests.post(
            f"{server.url}/v1/tokens",
            json={"grants": {"sync": {}}},
            headers={"Authorization": f"Bearer {session}"},
            timeout=10,
        )
        assert response.status_code == 200
        received.append(response.json()["token"])
        leaks.issued.add(received[-1])
    os.killpg(server.process.pid, signal.SIGKILL)  # master and worker, no goodbye
    server.process.wait()

    restarted = support.start_broker(environment, tmp_path)
    support.stop_broker(restarted)
    result = subprocess.run(
        [support.BROKER, "audit", "--json", "--identity", "durable", "--limit", "1000"],
        env={"PATH": os.environ.get("PATH", ""), **environment},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        cwd=tmp_path,
    )
    stored = {json.loads(line)["token"] for line in result.stdout.splitlines()}
    assert {token_fingerprint(token) for token in received} <= stored
