"""How the broker is served: gunicorn, configured in code, running ``create_app()``.

Every profile runs gunicorn with ``service.serving.worker.BrokerWorker``: gevent, one greenlet a
connection, so slow and idle connections cost memory, not the service (see that module
for the bounds on headers, bodies and each client network's share).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from service.bookkeeping.metrics import mark_worker_dead
from service.serving.app import create_app
from service.serving.tracing import start_tracing
from service.tokens.request import MAX_BODY_BYTES

WORKER_CLASS = "service.serving.worker.BrokerWorker"
#: Headers must arrive within this many seconds; a kept-alive connection idles as long.
HEADER_SECONDS = 5
#: On SIGTERM, requests in flight get this long to finish.
GRACEFUL_SECONDS = 4
DEFAULT_CONNECTIONS = 1000


class _Gunicorn(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    def __init__(self, options: Mapping[str, Any]) -> None:
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self._options.items():
            self.cfg.set(name, value)

    def load(self) -> Flask:
        # Each worker builds its app from the environment, as `service:create_app()` would.
        app = create_app()
        start_tracing(app, os.environ)  # after the fork: each worker its own provider
        from service.serving.worker import BoundedBody  # gevent: only in a serving worker

        app.wsgi_app = BoundedBody(app.wsgi_app, limit=MAX_BODY_BYTES)  # type: ignore[method-assign]  # Flask's documented way to wrap the WSGI app
        # Everything built so far lives as long as the worker: keep it out of the cyclic
        # garbage collector's scans, whose full passes over it are tail latency.
        gc.collect()
        gc.freeze()
        return app


def run(
    *,
    bind: str,
    workers: int,
    connections: int = DEFAULT_CONNECTIONS,
    metrics_directory: str,
    tls: tuple[str, str] | None = None,
) -> None:
    """Serve until stopped. Settings were validated by the caller before this.

    ``metrics_directory`` must already be in the environment as PROMETHEUS_MULTIPROC_DIR,
    set before prometheus_client was first imported.
    """

    def child_exit(server: object, worker: Any) -> None:
        mark_worker_dead(worker.pid, metrics_directory)

    options: dict[str, Any] = {}
    if tls is not None:
        options["certfile"], options["keyfile"] = tls
    _Gunicorn(
        {
            **options,
            "child_exit": child_exit,
            "bind": [bind],
            "workers": workers,
            "worker_class": WORKER_CLASS,
            "worker_connections": connections,
            "keepalive": HEADER_SECONDS,
            "proc_name": "token-broker",
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "info",
            # X-Forwarded-* is honoured only from BROKER_TRUSTED_PROXIES (http.proxies).
            "forwarded_allow_ips": "",
            "graceful_timeout": GRACEFUL_SECONDS,
            # Room for an oversized bearer token to reach the app and get its 401 problem+json.
            "limit_request_field_size": 16384,
            # One control socket per user would clash between instances on one host.
            "control_socket_disable": True,
        }
    ).run()
