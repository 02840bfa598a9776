"""How gunicorn is configured: the options ``serve`` passes, and each worker's app."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from service.serving import server


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The options gunicorn would run with, caught before it runs."""
    seen: dict[str, Any] = {}

    def capture(self: Any) -> None:
        seen.update({name: self.cfg.settings[name].get() for name in self.cfg.settings})
        seen["app"] = self.load

    monkeypatch.setattr(server._Gunicorn, "run", capture)
    return seen


def test_one_gevent_worker_by_default(started: dict[str, Any], tmp_path: Any) -> None:
    server.run(bind="127.0.0.1:0", workers=1, metrics_directory=str(tmp_path))
    assert started["workers"] == 1
    assert started["worker_class"] == "service.serving.worker.BrokerWorker"
    assert started["worker_connections"] == 1000
    assert started["keepalive"] == server.HEADER_SECONDS  # the header deadline too
    assert started["bind"] == ["127.0.0.1:0"]
    assert started["forwarded_allow_ips"] == []  # X-Forwarded-* only through our own proxy list
    assert started["limit_request_field_size"] == 16384
    assert started["certfile"] is None


def test_connections_and_tls(started: dict[str, Any], tmp_path: Any) -> None:
    server.run(
        bind="127.0.0.1:0",
        workers=2,
        connections=64,
        metrics_directory=str(tmp_path),
        tls=("cert.pem", "key.pem"),
    )
    assert started["worker_connections"] == 64
    assert (started["certfile"], started["keyfile"]) == ("cert.pem", "key.pem")


def test_each_worker_builds_the_app_from_the_environment(
    started: dict[str, Any], tmp_path: Any, process_environ: dict[str, str]
) -> None:
    server.run(bind="127.0.0.1:0", workers=1, metrics_directory=str(tmp_path))
    app = started["app"]()
    assert isinstance(app, Flask)
    assert type(app.wsgi_app).__name__ == "BoundedBody"  # bodies read within a deadline
