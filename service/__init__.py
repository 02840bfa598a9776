"""Token Broker: short-lived, narrowly scoped Twilio Access Tokens for authenticated callers.

Two ways in, both light to import: ``create_app`` (gunicorn runs
``service:create_app()``), imported on first use so that the command line can set up
the metrics' multiprocess directory before prometheus_client is first imported; and
``main``, the ``token-broker`` executable.

For ``serve``, ``main`` has gevent patch the standard library first: the server's worker
(``service.serving.worker``) runs every connection in a greenlet, so sockets, locks and
sleeps must be gevent's before any module (ssl, redis, urllib) is imported, or a
blocking call would stall every connection of the worker. Every other command runs
unpatched, and ``healthcheck`` without the rest of the command line. It lives here, not
in ``service.cli``, on purpose: importing a module imports its package first, and
``service.cli`` imports every command (and with them ssl, jwt, threading) before
anything could be patched.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.serving.app import create_app

__all__ = ["create_app", "main"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from service.serving.app import create_app

        return create_app
    raise AttributeError(name)


def main() -> None:
    """The ``token-broker`` executable."""
    if sys.argv[1:2] == ["healthcheck"]:  # every few seconds in a container: stays light
        from service.serving.probe import healthcheck

        healthcheck(sys.argv[2:], prog_name="token-broker healthcheck")
        return
    if sys.argv[1:2] == ["serve"]:
        from gevent import monkey

        monkey.patch_all()
    from service.cli import main as command

    command()
