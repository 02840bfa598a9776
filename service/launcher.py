"""The ``token-broker`` executable: for ``serve``, gevent patches the standard library first.

The server's worker (``service.worker``) runs every connection in a greenlet; sockets,
locks and sleeps must be gevent's before any module (ssl, redis, urllib) is imported,
or a blocking call would stall every connection of the worker. Every other command runs
unpatched, and ``healthcheck`` without the rest of the command line.

It lives outside ``service.cli`` on purpose: importing a module imports its package
first, and ``service.cli`` imports every command (and with them ssl, jwt, threading)
before anything could be patched.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["healthcheck"]:  # every few seconds in a container: stays light
        from service.probe import healthcheck

        healthcheck(sys.argv[2:], prog_name="token-broker healthcheck")
        return
    if sys.argv[1:2] == ["serve"]:
        from gevent import monkey

        monkey.patch_all()
    from service.cli import main as command

    command()
