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
    server = support.start_broker(key_environ, tmp_path)
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
    server = support.start_broker(key_environ, tmp_path)
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
