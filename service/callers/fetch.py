"""Fetch a small JSON document (a key set, a discovery document) within one deadline.

Timeouts of the standard library are per read: a server that trickles its answer a byte
at a time never trips them. Here every read gets only what is left of one overall
deadline, however the bytes come, and the answer is cut off at ``MAX_BYTES``. Redirects
are not followed. ``FetchFailed`` says what went wrong, in words fit for a log line.
"""

from __future__ import annotations

import http.client
import io
import json
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from service.base.errors import BrokerError

DEADLINE_SECONDS = 3.0
MAX_BYTES = 1 << 20
USER_AGENT = "token-broker"


class FetchFailed(BrokerError):
    """Raised when a document cannot be fetched, is not JSON, or is too large."""


class _DeadlineReader(io.RawIOBase):
    """Reads a socket, each read bounded by what is left of the deadline."""

    def __init__(self, sock: Any, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline passed")
        self._sock.settimeout(left)
        count: int = self._sock.recv_into(buffer)
        return count


class _DeadlineSocket:
    """A connected socket whose ``makefile`` (what http.client reads) keeps the deadline."""

    def __init__(self, sock: Any, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str, *arguments: object) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))

    def close(self) -> None:
        """Left to ``fetch_json``: http.client closes early while the body is still read."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _connection(url: str, deadline: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchFailed(f"not an http(s) URL: {url}")
    timeout = max(0.001, deadline - time.monotonic())
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return connection, path


def fetch_json(url: str, *, deadline_seconds: float = DEADLINE_SECONDS) -> Any:
    """The JSON document at ``url``; raise ``FetchFailed`` for anything but a good answer."""
    deadline = time.monotonic() + deadline_seconds
    connection, path = _connection(url, deadline)
    sock = None
    try:
        connection.connect()
        sock = connection.sock
        connection.sock = _DeadlineSocket(sock, deadline)
        connection.request("GET", path, headers={"User-Agent": USER_AGENT, "Accept": "*/*"})
        response = connection.getresponse()
        if response.status != http.client.OK:
            raise FetchFailed(f"{url} answered HTTP {response.status}")
        body = response.read(MAX_BYTES + 1)
    except (OSError, http.client.HTTPException) as error:
        raise FetchFailed(f"{url} cannot be fetched ({type(error).__name__}: {error})") from None
    finally:
        connection.close()
        if sock is not None:
            sock.close()
    if len(body) > MAX_BYTES:
        raise FetchFailed(f"{url} answered more than {MAX_BYTES} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise FetchFailed(f"{url} did not answer JSON") from None
