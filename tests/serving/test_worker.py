"""The serving worker's bounds: a body read whole within a deadline before the app runs."""

from __future__ import annotations

import io
import socket
from typing import Any

import gevent

from service.serving.worker import BoundedBody


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def call(middleware: BoundedBody, environ: dict[str, Any]) -> tuple[str, bytes]:
    seen: list[str] = []
    body = b"".join(middleware(environ, lambda status, headers: seen.append(status)))
    return seen[0], body


def test_a_body_within_the_limit_is_read_ahead_whole() -> None:
    middleware = BoundedBody(app, limit=16)
    environ = {"CONTENT_LENGTH": "5", "wsgi.input": io.BytesIO(b"hello, and more")}
    assert call(middleware, environ) == ("200 OK", b"hello")
    chunked = {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": io.BytesIO(b"x" * 40)}
    _, body = call(middleware, chunked)
    assert len(body) == 17  # the limit and one more, for the app to refuse as too large
    assert chunked["CONTENT_LENGTH"] == "17"
    assert "HTTP_TRANSFER_ENCODING" not in chunked


def test_a_body_over_the_limit_is_left_to_the_app() -> None:
    stream = io.BytesIO(b"x" * 100)
    middleware = BoundedBody(app, limit=16)
    assert call(middleware, {"CONTENT_LENGTH": "100", "wsgi.input": stream})[0] == "200 OK"
    assert call(middleware, {"CONTENT_LENGTH": "", "wsgi.input": io.BytesIO()})[1] == b""


class Trickle(io.RawIOBase):
    def read(self, size: int = -1) -> bytes:
        gevent.sleep(0.05)  # a byte now and then, cooperatively
        return b"x"


def test_a_slow_body_gets_408_and_no_more_reading() -> None:
    served, client = socket.socketpair()
    middleware = BoundedBody(app, limit=4096, seconds=0.2)
    environ = {"CONTENT_LENGTH": "100", "wsgi.input": Trickle(), "gunicorn.socket": served}
    status, body = call(middleware, environ)
    assert status == "408 Request Timeout"
    assert b"request_timeout" in body
    assert served.recv(10) == b""  # shut for reading: the rest never reaches anyone
    served.close()
    client.close()
