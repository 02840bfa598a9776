"""``token-broker healthcheck``: does the local server answer ``/healthz``?

The container's HEALTHCHECK runs it every few seconds, so it imports only the standard
library and click (``service.main`` runs it without the rest of the command line). With
``--serve-pid`` it asks the running ``token-broker serve`` where it listens (its
``--bind`` and ``--certfile``), so a server on another port or speaking TLS is checked
where it actually is.
"""

from __future__ import annotations

import ssl
import sys
import urllib.request
from pathlib import Path

import click

from service.config.variables import BIND_VARIABLE, DEFAULT_BIND

_BIND_ALL = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104  # bind-all addresses, to reach over loopback
EXIT_UNHEALTHY = 1


@click.command("healthcheck")
@click.option("--bind", default=DEFAULT_BIND, envvar=BIND_VARIABLE, help="As given to serve.")
@click.option("--tls", is_flag=True, help="The server speaks HTTPS (serve --certfile).")
@click.option(
    "--serve-pid",
    type=int,
    help="Ask the `token-broker serve` with this PID (the container's 1) where it listens: "
    "its --bind and --certfile win over the options above.",
)
def healthcheck(bind: str, tls: bool, serve_pid: int | None) -> None:
    """Exit 0 when the local server answers /healthz (the container's HEALTHCHECK)."""
    if serve_pid is not None:
        bind, tls = listening(serve_pid, bind, tls)
    healthy = answers(bind, tls=tls)
    click.echo("healthy" if healthy else "unhealthy")
    sys.exit(0 if healthy else EXIT_UNHEALTHY)


def answers(bind: str, *, tls: bool) -> bool:
    """True when ``GET /healthz`` on ``bind`` (over loopback if it binds every address)
    answers 200 within 2 s."""
    host, _, port = bind.rpartition(":")
    host = _BIND_ALL.get(host.strip("[]"), host.strip("[]"))
    address = f"[{host}]" if ":" in host else host
    url = f"{'https' if tls else 'http'}://{address}:{port}/healthz"
    # A liveness probe over loopback sends nothing secret; the certificate names the
    # public host, not this address, so it is not checked here.
    context = ssl._create_unverified_context() if tls else None  # noqa: S323  # see above
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310  # http(s), built above
            return bool(response.status == 200)
    except OSError:
        return False


def listening(pid: int, bind: str, tls: bool) -> tuple[str, bool]:
    """Where ``token-broker serve`` with ``pid`` listens, from its own arguments; its
    environment is ours, so ``BROKER_BIND`` is in ``bind`` already."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except (OSError, UnicodeDecodeError):
        return bind, tls
    if "serve" not in arguments:
        return bind, tls
    after = arguments[arguments.index("serve") + 1 :]
    for index, argument in enumerate(after):
        name, equals, value = argument.partition("=")
        if not equals and index + 1 < len(after):
            value = after[index + 1]
        if name == "--bind":
            bind = value
        elif name == "--certfile":
            tls = True
    return bind, tls
