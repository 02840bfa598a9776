"""The gunicorn worker that no slow client can starve: gevent, with deadlines and caps.

Every connection is a greenlet, so a slow or idle one costs memory, not a worker or a
thread. These bounds keep that memory, and the worker's connections, in hand:

- headers must arrive within ``keepalive`` seconds of the connection (or of the previous
  answer on a kept-alive one); gunicorn's gevent worker closes it otherwise;
- a body must arrive within ``BODY_SECONDS`` (``BoundedBody``): it is read whole, up to
  the size limit, before the application sees it; a late one gets 408 and a close;
- an answer must be taken within ``WRITE_SECONDS``: a client that does not read (its
  buffers full, say, of pipelined answers) is cut, whatever it sent; the kernel keeps
  at most ``SEND_BUFFER_BYTES`` of answers for a connection;
- a connection serves at most ``REQUESTS_PER_CONNECTION`` requests, then closes (a
  client reconnects for nothing; a pipeline of hundreds is not served whole);
- one client network (``BROKER_IPV6_PREFIX`` for IPv6) may hold at most
  ``connections // ADDRESS_SHARE`` connections of a worker, and never more than half of
  those still free: however many networks share out the worker, another one finds room.
  Our own proxies (``BROKER_TRUSTED_PROXIES``) are not held to it: they carry every
  user's requests, and each user's budgets apply by the address they report.

gevent patches the standard library in ``service.main`` before anything imports
it; this module is imported only by a serving process.
"""

from __future__ import annotations

import contextlib
import errno
import io
import resource
import secrets
import socket
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventWorker

from service.base.addresses import DEFAULT_IPV6_PREFIX, address_key, parse_address
from service.base.errors import PROBLEM_JSON, RequestTimeout, Unavailable, problem_body
from service.config.variables import Network
from service.http import broker
from service.tokens.signing_keys import HEARTBEAT_SECONDS, KeyHeartbeat

#: How long a request body may take to arrive, once its headers have.
BODY_SECONDS = 10.0
#: How long one write of an answer may wait for the client to read.
WRITE_SECONDS = 5.0
#: The kernel's send buffer of a connection: what an answer may queue there while the
#: client does not read (autotuned, one could reach megabytes; a thousand of them, a GB).
SEND_BUFFER_BYTES = 64 * 1024
#: Requests one connection serves before it is closed.
REQUESTS_PER_CONNECTION = 32
#: One client network may hold 1/ADDRESS_SHARE of a worker's connections.
ADDRESS_SHARE = 8
MAX_OPEN_FILES = 65536

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class BoundedBody:
    """WSGI middleware: read the body whole, within ``seconds``, before the app runs.

    A body larger than ``limit`` is left to the application (which refuses it with 413
    without reading it); a chunked one is read up to ``limit`` + 1 bytes.
    """

    def __init__(self, app: WsgiApp, *, limit: int, seconds: float = BODY_SECONDS) -> None:
        self._app = app
        self._limit = limit
        self._seconds = seconds

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        wanted = self._wanted(environ)
        if wanted:
            try:
                with gevent.Timeout(self._seconds):
                    body = _read(environ["wsgi.input"], wanted)
            except gevent.Timeout:
                return _too_slow(environ, start_response)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self._app(environ, start_response)

    def _wanted(self, environ: Environ) -> int:
        """How many bytes to read ahead: all of a body within the limit, else none."""
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return self._limit + 1
        length = environ.get("CONTENT_LENGTH", "")
        if not length.isdigit() or int(length) > self._limit:
            return 0
        return int(length)


def _too_slow(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """408 problem+json, and no more reading: the rest of this body never reaches anyone."""
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        # Shut for reading: gunicorn sends this answer, finds the body cut short, closes.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)
    request_id = secrets.token_hex(16)
    refusal = RequestTimeout
    body = problem_body(refusal.status, refusal.code, refusal.detail, request_id).encode()
    start_response(
        "408 Request Timeout",
        [
            ("Content-Type", PROBLEM_JSON),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Request-Id", request_id),
        ],
    )
    return [body]


def _read(stream: Any, wanted: int) -> bytes:
    chunks, received = [], 0
    while received < wanted:
        chunk = stream.read(wanted - received)
        if not chunk:
            break
        chunks.append(chunk)
        received += len(chunk)
    return b"".join(chunks)


class _WriteDeadline:
    """A client socket whose every write must be taken within ``seconds``."""

    def __init__(self, sock: Any, seconds: float) -> None:
        self._sock = sock
        self._seconds = seconds

    def sendall(self, data: bytes) -> None:
        # An OSError gunicorn knows (EPIPE): it closes the connection and logs no trace.
        cut = BrokenPipeError(errno.EPIPE, "the client did not read its answer in time")
        with gevent.Timeout(self._seconds, cut):
            self._sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class ConnectionShares:
    """Which client network holds how many of a worker's connections, and whether one
    more may: at most ``capacity // ADDRESS_SHARE`` a network, never more than half of
    those still free; our proxies' connections are counted, never refused."""

    def __init__(
        self,
        capacity: int,
        *,
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
        proxies: tuple[Network, ...] = (),
    ) -> None:
        self._capacity = capacity
        self._per_network = max(1, capacity // ADDRESS_SHARE)
        self._ipv6_prefix = ipv6_prefix
        self._proxies = proxies
        self._open: Counter[str] = Counter()
        self._in_use = 0

    def take(self, peer: str | None) -> tuple[bool, str | None]:
        """Whether a new connection from ``peer`` may be served, and the network it is
        counted under (None for a proxy's); a refused one is not counted."""
        parsed = parse_address(peer) if self._proxies else None
        if parsed is not None and any(parsed in network for network in self._proxies):
            self._in_use += 1
            return True, None
        key = address_key(peer, self._ipv6_prefix)
        held, free = self._open[key], self._capacity - self._in_use
        if held >= self._per_network or held >= free // 2:
            return False, None
        self._open[key] += 1
        self._in_use += 1
        return True, key

    def give_back(self, key: str | None) -> None:
        self._in_use -= 1
        if key is not None:
            self._open[key] -= 1
            if not self._open[key]:
                del self._open[key]


class BrokerWorker(GeventWorker):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's gevent worker, with a cap on each client network's connections, a
    deadline on every write and a bound on requests per connection, that lets every
    connection take its turn."""

    def init_process(self) -> None:
        self._served: dict[int, int] = {}
        self._shares = ConnectionShares(int(self.cfg.worker_connections))
        _raise_open_files_limit()
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        found = broker(self.wsgi)
        if found.heartbeat is not None:
            gevent.spawn(_beat, found.heartbeat)
        settings = found.settings
        self._shares = ConnectionShares(
            int(self.cfg.worker_connections),
            ipv6_prefix=settings.ipv6_prefix,
            proxies=settings.trusted_proxies,
        )

    def handle(self, listener: Any, client: Any, address: Any) -> None:
        served, key = self._shares.take(address[0] if isinstance(address, tuple) else None)
        if not served:
            client.close()  # this network holds its share already: others go first
            return
        with contextlib.suppress(OSError):
            client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        try:
            super().handle(listener, client, address)
        finally:
            self._served.pop(id(client), None)
            self._shares.give_back(key)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        served = self._served[id(sock)] = self._served.get(id(sock), 0) + 1
        if served >= REQUESTS_PER_CONNECTION:
            req.must_close = True  # answered with Connection: close, then closed
        try:
            return super().handle_request(
                listener_name, req, _WriteDeadline(sock, WRITE_SECONDS), addr
            )
        finally:
            # A kept-alive client whose next request is already there would otherwise be
            # served again and again without a switch: every other connection waits.
            gevent.sleep(0)


def _beat(heartbeat: KeyHeartbeat) -> None:
    """Tell the fleet, every second, which key this worker signs with (and pick up new
    key files then, with no request needed)."""
    while True:
        with contextlib.suppress(Unavailable):  # the store back, the next beat reports
            heartbeat.beat()
        gevent.sleep(HEARTBEAT_SECONDS)


def _raise_open_files_limit() -> None:
    """Room for the worker's connections: the soft limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, MAX_OPEN_FILES)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
