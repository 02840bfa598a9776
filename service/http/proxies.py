"""Who is the client? The direct peer, unless it is one of our proxies.

``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed only when the peer that
connected is in ``BROKER_TRUSTED_PROXIES`` (addresses or networks). The client is then
the nearest hop that is not one of our proxies: walking ``X-Forwarded-For`` from the
right, every trusted hop is skipped and the first untrusted one is the client, so an
address a client wrote there itself is never taken. Anyone else's forwarding headers
are ignored: a client cannot claim another address, nor HTTPS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from service.base.addresses import parse_address
from service.config.variables import Network

Environ = dict[str, Any]
WsgiApp = Callable[[Environ, Callable[..., Any]], Iterable[bytes]]


class TrustedProxies:
    """WSGI middleware: the client address and scheme as our own proxies saw them."""

    def __init__(self, app: WsgiApp, proxies: Sequence[Network]) -> None:
        self._app = app
        self._proxies = tuple(proxies)

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self._trusted(environ.get("REMOTE_ADDR")):
            forwarded_for = environ.get("HTTP_X_FORWARDED_FOR", "")
            environ["REMOTE_ADDR"] = self._client(environ["REMOTE_ADDR"], forwarded_for)
            scheme = environ.get("HTTP_X_FORWARDED_PROTO", "").rsplit(",", 1)[-1].strip()
            if scheme in ("http", "https"):
                environ["wsgi.url_scheme"] = scheme
        return self._app(environ, start_response)

    def _client(self, peer: str, forwarded_for: str) -> str:
        client = peer
        for hop in reversed([part.strip() for part in forwarded_for.split(",") if part.strip()]):
            if parse_address(hop) is None:
                break  # not an address: nothing beyond it can be believed
            client = hop
            if not self._trusted(hop):
                break
        return client

    def _trusted(self, address: str | None) -> bool:
        parsed = parse_address(address)
        return parsed is not None and any(parsed in network for network in self._proxies)
