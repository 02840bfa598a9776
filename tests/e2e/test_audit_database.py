"""End to end: the audit trail in PostgreSQL under a real gunicorn broker, its database
connections killed mid-traffic: only 503 for issuance, no token without its record, and
recovery without a restart."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import requests

from service.state import Retention
from service.state.postgres import PostgresTrail
from service.tokens.minting import token_fingerprint
from tests import support
from tests.conftest import LeakWatch

REQUESTS = 240


def kill_broker_connections(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as connection:
        killed = connection.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'token-broker' AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(killed[0]) if killed else 0


def test_killed_database_connections_mid_traffic(
    postgres_url: str, keys: support.Keys, tmp_path: Path, leaks: LeakWatch
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(support.POLICY)
    with support.serve_jwks(keys.jwks()) as jwks:
        environ = {
            **support.base_environ(jwks.url, str(policy)),
            "BROKER_STATE_URL": f"sqlite:///{tmp_path}/state.sqlite3",
            "BROKER_AUDIT_URL": postgres_url,
        }
        server = support.start_broker(environ, tmp_path)
        try:
            bearers = [
                support.sign(
                    support.caller_claims(sub=f"user{n}"), keys.rsa_private, "RS256", "rsa-1"
                )
                for n in range(REQUESTS)
            ]
            leaks.bearers.update(bearers)

            def ask(bearer: str) -> tuple[int, dict[str, Any]]:
                """Status and body; the response (and its socket) let go at once."""
                with requests.post(
                    f"{server.url}/v1/tokens",
                    json=support.VIDEO,
                    headers={"Authorization": f"Bearer {bearer}"},
                    timeout=10,
                ) as response:
                    return response.status_code, response.json()

            assert ask(bearers[0])[0] == 200  # connected before the kills
            killed: list[int] = []
            done = threading.Event()

            def killer() -> None:
                while not done.wait(0.15):  # the pace of the kills, bounded by the traffic
                    killed.append(kill_broker_connections(postgres_url))

            thread = threading.Thread(target=killer)
            thread.start()
            try:
                with ThreadPoolExecutor(max_workers=4) as pool:
                    responses = list(pool.map(ask, bearers[1:]))
            finally:
                done.set()
                thread.join()
            statuses = {status for status, _ in responses}
            assert statuses <= {200, 503}, statuses
            assert sum(killed) > 0  # connections were killed while it served
            refused = [body for status, body in responses if status == 503]
            assert all(body["code"] == "unavailable" for body in refused)
            assert support.eventually(lambda: ask(bearers[0])[0] == 200, within=60.0)  # no restart
            issued = [body["token"] for status, body in responses if status == 200]
            leaks.issued.update(issued)
            trail = PostgresTrail(postgres_url, retention=Retention())
            try:
                lines = trail.audit_lines(None, 10_000, decision="issued")
            finally:
                trail.close()
            recorded = {json.loads(line)["token"] for line in lines}
            assert {token_fingerprint(token) for token in issued} <= recorded
            leaks.check_text(server.output())
        finally:
            support.stop_broker(server)
