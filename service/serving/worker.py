"""The gunicorn worker that no slow client can starve: gevent, with deadlines and a cap.

Every connection is a greenlet, so a slow or idle one costs memory, not a worker or a
thread. Three bounds keep that memory in hand:

- headers must arrive within ``keepalive`` seconds of the connection (or of the previous
  answer on a kept-alive one); gunicorn's gevent worker closes it otherwise;
- a body must arrive within ``BODY_SECONDS`` (``BoundedBody``): it is read whole, up to
  the size limit, before the application sees it; a late one gets 408 and a close;
- one client network may hold at most ``connections // ADDRESS_SHARE`` connections of
  a worker, so one client cannot fill the worker's ``worker_connections``.

gevent patches the standard library in ``service.main`` before anything imports
it; this module is imported only by a serving process.
"""

from __future__ import annotations

import contextlib
import io
import resource
import secrets
import socket
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventWorker

from service.base.addresses import address_key
from service.base.errors import PROBLEM_JSON, RequestTimeout, problem_body

#: How long a request body may take to arrive, once its headers have.
BODY_SECONDS = 10.0
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


class BrokerWorker(GeventWorker):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's gevent worker, with a cap on each client network's connections, that
    lets every connection take its turn."""

    def init_process(self) -> None:
        self._open: Counter[str] = Counter()
        self._per_address = max(1, self.cfg.worker_connections // ADDRESS_SHARE)
        _raise_open_files_limit()
        super().init_process()

    def handle(self, listener: Any, client: Any, address: Any) -> None:
        key = address_key(address[0] if isinstance(address, tuple) else None)
        if self._open[key] >= self._per_address:
            client.close()  # this network holds its share already: others go first
            return
        self._open[key] += 1
        try:
            super().handle(listener, client, address)
        finally:
            self._open[key] -= 1
            if not self._open[key]:
                del self._open[key]

    def handle_request(self, *arguments: Any) -> Any:
        try:
            return super().handle_request(*arguments)
        finally:
            # A kept-alive client whose next request is already there would otherwise be
            # served again and again without a switch: every other connection waits.
            gevent.sleep(0)


def _raise_open_files_limit() -> None:
    """Room for the worker's connections: the soft limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, MAX_OPEN_FILES)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
