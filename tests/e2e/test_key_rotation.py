"""Zero-downtime rotation of the signing key under load: watched files, or gunicorn HUP."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
import requests

from service.tokens.signing_keys import CHECK_SECONDS
from tests import support
from tests.conftest import LeakWatch


@dataclass
class Load:
    """Requests tokens without pause; records (start, end, status, token)."""

    url: str
    bearer: str
    results: list[tuple[float, float, int, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            start = time.monotonic()
            try:
                response = requests.post(
                    f"{self.url}/v1/tokens",
                    json={"grants": {"sync": {}}},
                    headers={"Authorization": f"Bearer {self.bearer}"},
                    timeout=10,
                )
                status, token = response.status_code, response.json().get("token")
            except requests.RequestException:
                status, token = 0, None
            self.results.append((start, time.monotonic(), status, token))


def _under_load(
    url: str, bearer: str, rotate: Any, settle: float, leaks: LeakWatch
) -> tuple[Load, float]:
    """Traffic before the switch, then until requests started ``settle`` s after it."""
    load = Load(url, bearer)
    threads = [threading.Thread(target=load.run) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        assert support.eventually(lambda: len(load.results) >= 20)
        switched = rotate()
        assert support.eventually(
            lambda: sum(start > switched + settle for start, *_ in load.results) >= 20
        )
    finally:
        load.stop.set()
        for thread in threads:
            thread.join()
    for _, _, _, token in load.results:
        if token:
            leaks.issued.add(token)
    return load, switched


def _unbudgeted(environment: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The test policy with an identity budget no load of these tests can spend: how
    many requests three threads send in a second or two depends on the machine."""
    policy = tmp_path / "unbudgeted.toml"
    policy.write_text(
        support.POLICY.replace(
            'per_identity = "1000/minute;20000/day"', 'per_identity = "1000000/minute"'
        )
    )
    return {**environment, "BROKER_POLICY_FILE": str(policy)}


def _check(load: Load, switched: float, settle: float) -> None:
    assert load.results
    assert all(status == 200 for _, _, status, _ in load.results), (
        "a request failed during rotation"
    )
    secrets = dict([support.OLD_KEY, support.NEW_KEY])
    for start, end, _, token in load.results:
        assert token is not None
        issuer = str(jwt.decode(token, options={"verify_signature": False})["iss"])
        jwt.decode(token, secrets[issuer], algorithms=["HS256"])  # signed with its own key's secret
        if end < switched:
            assert issuer == support.OLD_KEY[0]
        if start > switched + settle:
            assert issuer == support.NEW_KEY[0]
    assert any(start > switched + settle for start, *_ in load.results)


def test_rotation_by_watched_files_under_load(
    key_environ: dict[str, str], tmp_path: Path, caller_token: Any, leaks: LeakWatch
) -> None:
    server = support.start_broker(_unbudgeted(key_environ, tmp_path), tmp_path)
    try:

        def rotate() -> float:
            support.swap_link(tmp_path / "key", support.write_key(tmp_path / "v2", support.NEW_KEY))
            return time.monotonic()

        settle = 2 * CHECK_SECONDS + 0.2
        load, switched = _under_load(server.url, caller_token(), rotate, settle, leaks)
    finally:
        support.stop_broker(server)
    _check(load, switched, settle)
    leaks.check_text(server.output())


def test_rotation_by_hup_under_load(
    key_environ: dict[str, str], tmp_path: Path, caller_token: Any, leaks: LeakWatch
) -> None:
    server = support.start_broker(_unbudgeted(key_environ, tmp_path), tmp_path)
    try:

        def rotate() -> float:
            support.write_key(
                tmp_path / "v1", support.NEW_KEY
            )  # in place, file by file: HUP makes it one switch
            os.kill(server.process.pid, signal.SIGHUP)
            return time.monotonic()

        load, switched = _under_load(server.url, caller_token(), rotate, 1.5, leaks)
    finally:
        support.stop_broker(server)
    _check(load, switched, settle=1.5)
    leaks.check_text(server.output())


def test_keys_rotate_returns_when_every_instance_signs_with_the_new_key(
    environ: dict[str, str], tmp_path: Path, caller_token: Any, leaks: LeakWatch
) -> None:
    """Two running brokers read the key files; `keys rotate` (against the emulator of
    Twilio's REST API) returns once both sign with the new key: the next token from
    either names it in its iss, with no restart."""
    from tests.fake_twilio import ADMIN_SID, ADMIN_TOKEN, serve_fake_twilio

    folder = support.write_key(tmp_path / "key", (support.API_KEY_SID, support.API_KEY_SECRET))
    environment = {
        **support.without_static_key(environ),
        "TWILIO_API_KEY_SID_FILE": str(folder / "sid"),
        "TWILIO_API_KEY_SECRET_FILE": str(folder / "secret"),
    }
    brokers = [support.start_broker(environment, tmp_path) for _ in range(2)]
    bearer = caller_token()
    try:
        with serve_fake_twilio() as twilio:
            result = subprocess.run(
                [support.BROKER, "keys", "rotate", "--timeout", "30"],
                env={
                    "PATH": os.environ.get("PATH", ""),
                    **environment,
                    "TWILIO_ADMIN_ACCOUNT_SID": ADMIN_SID,
                    "TWILIO_ADMIN_AUTH_TOKEN": ADMIN_TOKEN,
                    "TWILIO_API_BASE_URL": twilio.url,
                },
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 0, result.stdout + result.stderr
            [created] = [sid for sid in twilio.keys if sid != support.API_KEY_SID]
        pids = [broker.process.pid for broker in brokers]
        for broker in brokers:  # at once: no waiting after the command returned
            response = requests.post(
                f"{broker.url}/v1/tokens",
                json={"grants": {"sync": {}}},
                headers={"Authorization": f"Bearer {bearer}"},
                timeout=10,
            )
            assert response.status_code == 200
            token = response.json()["token"]
            leaks.issued.add(token)
            assert jwt.decode(token, options={"verify_signature": False})["iss"] == created
        assert [broker.process.pid for broker in brokers] == pids  # no restart
        secret = (folder / "secret").read_text().strip()
        assert secret not in result.stdout + result.stderr
        assert all(secret not in broker.output() for broker in brokers)
    finally:
        for broker in brokers:
            support.stop_broker(broker)


def everything_in_redis(url: str) -> str:
    """Every key and value of a Redis database, as text (values by the key's type)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    readers: dict[str, Callable[[str], object]] = {
        "string": client.get,
        "hash": client.hgetall,
        "list": lambda key: client.lrange(key, 0, -1),
        "set": client.smembers,
        "zset": lambda key: client.zrange(key, 0, -1),
        "stream": client.xrange,
    }
    found = [f"{key} {readers[str(client.type(key))](key)!r}" for key in client.scan_iter()]
    client.close()
    return "\n".join(found)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_no_secret_is_written_by_the_broker_or_the_account_commands(
    backend: str,
    environ: dict[str, str],
    tmp_path: Path,
    caller_token: Any,
    leaks: LeakWatch,
    request: pytest.FixtureRequest,
) -> None:
    """The Auth Token, the old and new key secrets and the monitor key's secret appear in
    nothing the commands and the broker wrote: outputs, logs, the state store."""
    from tests.fake_twilio import (
        ADMIN_SID,
        ADMIN_TOKEN,
        MONITOR_KEY_SECRET,
        MONITOR_KEY_SID,
        serve_fake_twilio,
    )

    folder = support.write_key(tmp_path / "key", (support.API_KEY_SID, support.API_KEY_SECRET))
    environment = {
        **support.without_static_key(environ),
        "TWILIO_API_KEY_SID_FILE": str(folder / "sid"),
        "TWILIO_API_KEY_SECRET_FILE": str(folder / "secret"),
    }
    if backend == "redis":
        environment["BROKER_STATE_URL"] = request.getfixturevalue("redis_url")
    policy = tmp_path / "guarded.toml"
    policy.write_text(
        Path(environ["BROKER_POLICY_FILE"]).read_text()
        + '\n[account_guard]\npause_on = ["account-api-keys.created"]\n'
    )
    environment["BROKER_POLICY_FILE"] = str(policy)
    broker = support.start_broker(environment, tmp_path)
    written: list[str] = []
    bearer = caller_token()
    first = requests.post(
        f"{broker.url}/v1/tokens",
        json={"grants": {"sync": {}}},
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=10,
    )
    leaks.issued.add(first.json()["token"])
    try:
        with serve_fake_twilio() as twilio:
            twilio.events.append(
                {
                    "sid": "AE" + "9" * 32,
                    "event_type": "account-api-keys.created",
                    "event_date": "2026-12-01T10:00:00Z",
                    "source_ip_address": "203.0.113.66",
                    "actor_sid": "US" + "a" * 32,
                    "resource_sid": "SK" + "e" * 32,
                    "description": None,
                }
            )
            commands = {
                "TWILIO_ADMIN_ACCOUNT_SID": ADMIN_SID,
                "TWILIO_ADMIN_AUTH_TOKEN": ADMIN_TOKEN,
                "TWILIO_MONITOR_API_KEY_SID": MONITOR_KEY_SID,
                "TWILIO_MONITOR_API_KEY_SECRET": MONITOR_KEY_SECRET,
                "TWILIO_API_BASE_URL": twilio.url,
                "PATH": os.environ.get("PATH", ""),
            }
            for command in (
                ["keys", "rotate", "--timeout", "30"],
                ["account", "check", "--json"],
                ["account", "watch", "--once"],
            ):
                done = subprocess.run(
                    [support.BROKER, *command],
                    env={**environment, **commands},
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                written += [done.stdout, done.stderr]
            assert "account-api-keys.created" in written[-2]  # the watch reported it

        def refused() -> bool:
            response = requests.post(
                f"{broker.url}/v1/tokens",
                json={"grants": {"sync": {}}},
                headers={"Authorization": f"Bearer {bearer}"},
                timeout=10,
            )
            return response.status_code == 503 and response.json()["code"] == "issuance_paused"

        assert support.eventually(refused, within=1.0)  # the running broker, paused at once
        written.append(requests.get(f"{broker.url}/metrics", timeout=10).text)
    finally:
        support.stop_broker(broker)
    new_secret = (folder / "secret").read_text().strip()
    assert new_secret != support.API_KEY_SECRET  # rotated
    written.append(broker.output())
    if backend == "redis":
        written.append(everything_in_redis(environment["BROKER_STATE_URL"]))
    else:
        for state in tmp_path.glob("state.sqlite3*"):
            written.append(state.read_bytes().decode("latin-1"))
    everything = "\n".join(written)
    assert 'token_broker_account_events_total{event_type="account-api-keys.created"} 1.0' in (
        everything
    )
    for secret in (ADMIN_TOKEN, support.API_KEY_SECRET, new_secret, MONITOR_KEY_SECRET):
        assert secret not in everything
