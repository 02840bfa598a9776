"""Zero-downtime rotation of the signing key under load: watched files, or gunicorn HUP."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from service.tokens.signing_keys import CHECK_SECONDS
from tests import support
from tests.conftest import LeakWatch

OLD = ("SK" + "1" * 32, "old-secret-" + "o" * 30)


NEW = ("SK" + "2" * 32, "new-secret-" + "n" * 30)


def write_key(directory: Path, key: tuple[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sid").write_text(key[0] + "\n")
    (directory / "secret").write_text(key[1] + "\n")
    return directory


def swap_link(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` in one atomic rename, as Kubernetes does."""
    temporary = link.with_name(link.name + ".new")
    temporary.symlink_to(target)
    temporary.replace(link)


@pytest.fixture
def key_environ(environ: dict[str, str], tmp_path: Path, leaks: LeakWatch) -> dict[str, str]:
    leaks.secrets.update({OLD[1], NEW[1]})
    link = tmp_path / "key"
    swap_link(link, write_key(tmp_path / "v1", OLD))
    rotated = {
        k: v for k, v in environ.items() if k not in ("TWILIO_API_KEY_SID", "TWILIO_API_KEY_SECRET")
    }
    return {
        **rotated,
        "TWILIO_API_KEY_SID_FILE": str(link / "sid"),
        "TWILIO_API_KEY_SECRET_FILE": str(link / "secret"),
    }


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


def _under_load(url: str, bearer: str, rotate: Any, leaks: LeakWatch) -> tuple[Load, float]:
    load = Load(url, bearer)
    threads = [threading.Thread(target=load.run) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)  # traffic before the switch
        switched = rotate()
        time.sleep(2.0)  # and after it
    finally:
        load.stop.set()
        for thread in threads:
            thread.join()
    for _, _, _, token in load.results:
        if token:
            leaks.issued.add(token)
    return load, switched


def _check(load: Load, switched: float, settle: float) -> None:
    assert load.results
    assert all(status == 200 for _, _, status, _ in load.results), (
        "a request failed during rotation"
    )
    secrets = dict([OLD, NEW])
    for start, end, _, token in load.results:
        assert token is not None
        issuer = str(jwt.decode(token, options={"verify_signature": False})["iss"])
        jwt.decode(token, secrets[issuer], algorithms=["HS256"])  # signed with its own key's secret
        if end < switched:
            assert issuer == OLD[0]
        if start > switched + settle:
            assert issuer == NEW[0]
    assert any(start > switched + settle for start, *_ in load.results)


def test_rotation_by_watched_files_under_load(
    key_environ: dict[str, str], tmp_path: Path, caller_token: Any, leaks: LeakWatch
) -> None:
    server = support.start_broker(key_environ, tmp_path, "--threads", "4")
    try:

        def rotate() -> float:
            swap_link(tmp_path / "key", write_key(tmp_path / "v2", NEW))
            return time.monotonic()

        load, switched = _under_load(server.url, caller_token(), rotate, leaks)
    finally:
        support.stop_broker(server)
    _check(load, switched, settle=2 * CHECK_SECONDS + 0.2)
    leaks.check_text(server.output())


def test_rotation_by_hup_under_load(
    key_environ: dict[str, str], tmp_path: Path, caller_token: Any, leaks: LeakWatch
) -> None:
    server = support.start_broker(key_environ, tmp_path, "--threads", "4")
    try:

        def rotate() -> float:
            write_key(tmp_path / "v1", NEW)  # in place, file by file: HUP makes it one switch
            os.kill(server.process.pid, signal.SIGHUP)
            return time.monotonic()

        load, switched = _under_load(server.url, caller_token(), rotate, leaks)
    finally:
        support.stop_broker(server)
    _check(load, switched, settle=1.5)
    leaks.check_text(server.output())
