"""The serving worker's bounds: a body read whole within a deadline before the app runs."""

from __future__ import annotations

import io
import ipaddress
import socket
from typing import Any

import gevent

from service.serving.worker import BoundedBody, ConnectionShares


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


def test_a_network_holds_its_share_keyed_by_the_ipv6_prefix() -> None:
    wide = ConnectionShares(80, ipv6_prefix=48)  # 10 a network
    taken = [wide.take(f"2001:db8:1:{n:x}::1") for n in range(12)]  # one /48, twelve /64s
    assert [served for served, _ in taken] == [True] * 10 + [False] * 2
    assert {key for _, key in taken if key} == {"2001:db8:1::/48"}
    assert wide.take("2001:db8:2::1") == (True, "2001:db8:2::/48")  # another network
    narrow = ConnectionShares(80)  # the default /64: each of them a network of its own
    assert all(narrow.take(f"2001:db8:1:{n:x}::1")[0] for n in range(12))


def test_no_set_of_networks_takes_the_last_free_connections() -> None:
    shares = ConnectionShares(1000)  # 125 a network
    for network in range(8):
        for _ in range(125):
            shares.take(f"192.0.2.{network}")
    served, key = shares.take("198.51.100.7")  # eight networks at their share: room left
    assert (served, key) == (True, "198.51.100.7")
    assert shares.take("192.0.2.0") == (False, None)
    shares.give_back(key)


def test_our_proxies_are_counted_never_refused() -> None:
    proxy = ipaddress.ip_network("10.0.0.0/8")
    shares = ConnectionShares(16, proxies=(proxy,))  # 2 a network
    assert all(shares.take("10.1.2.3") == (True, None) for _ in range(10))
    assert shares.take("192.0.2.1") == (True, "192.0.2.1")  # 6 free: half of them is 3
    assert shares.take("192.0.2.2") == (True, "192.0.2.2")  # 5 free
    assert shares.take("192.0.2.1") == (True, "192.0.2.1")  # 4 free, it holds 1 of 2
    assert shares.take("192.0.2.2") == (False, None)  # 3 free: half is 1, it holds 1
    for _ in range(10):
        shares.give_back(None)
    assert shares.take("192.0.2.2") == (True, "192.0.2.2")  # 13 free, and 2 a network
