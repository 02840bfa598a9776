"""How gunicorn is configured: the options ``serve`` passes, and each worker's app."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from service import server


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The options gunicorn would run with, caught before it runs."""
    seen: dict[str, Any] = {}

    def capture(self: Any) -> None:
        seen.update({name: self.cfg.settings[name].get() for name in self.cfg.settings})
        seen["app"] = self.load

    monkeypatch.setattr(server._Gunicorn, "run", capture)
    return seen


def test_one_sync_worker_by_default(started: dict[str, Any], tmp_path: Any) -> None:
    server.run(bind="127.0.0.1:0", workers=1, threads=1, metrics_directory=str(tmp_path))
    assert started["workers"] == 1
    assert started["worker_class"] == "sync"
    assert started["bind"] == ["127.0.0.1:0"]
    assert started["forwarded_allow_ips"] == []  # X-Forwarded-* only through our own proxy list
    assert started["limit_request_field_size"] == 16384
    assert started["certfile"] is None


def test_threads_and_tls(started: dict[str, Any], tmp_path: Any) -> None:
    server.run(
        bind="127.0.0.1:0",
        workers=2,
        threads=4,
        metrics_directory=str(tmp_path),
        tls=("cert.pem", "key.pem"),
    )
    assert started["worker_class"] == "gthread"
    assert started["threads"] == 4
    assert (started["certfile"], started["keyfile"]) == ("cert.pem", "key.pem")


def test_each_worker_builds_the_app_from_the_environment(
    started: dict[str, Any], tmp_path: Any, process_environ: dict[str, str]
) -> None:
    server.run(bind="127.0.0.1:0", workers=1, threads=1, metrics_directory=str(tmp_path))
    assert isinstance(started["app"](), Flask)
