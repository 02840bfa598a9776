"""Slow and idle connections cost memory, not the service: a client that trickles its
headers or its body a byte a second, many times over, starves no one, and is dropped."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from service.serving.server import HEADER_SECONDS
from service.serving.worker import BODY_SECONDS, WRITE_SECONDS
from tests import support
from tests.conftest import LeakWatch

ATTACKER = "127.0.0.2"  # another client on loopback than the callers below
HEADER_TRICKLERS, BODY_TRICKLERS = 64, 32
SLACK_SECONDS = 3.0


@dataclass
class Trickler:
    """Connections that send one byte a second, and when the server closed each."""

    port: int
    opened: dict[socket.socket, float] = field(default_factory=dict)
    closed: dict[socket.socket, tuple[float, bytes]] = field(default_factory=dict)
    kinds: dict[socket.socket, str] = field(default_factory=dict)
    answers: dict[socket.socket, bytes] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def open(self, kind: str, first: bytes) -> None:
        connection = socket.socket()
        connection.bind((ATTACKER, 0))
        connection.connect(("127.0.0.1", self.port))
        connection.sendall(first)
        connection.setblocking(False)
        self.opened[connection] = time.monotonic()
        self.kinds[connection] = kind

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        for connection in self.opened:
            selector.register(connection, selectors.EVENT_READ)
        next_byte = time.monotonic()
        while not self.stop.is_set() and len(self.closed) < len(self.opened):
            for key, _ in selector.select(timeout=0.1):
                self._read(key.fileobj, selector)  # type: ignore[arg-type]  # our sockets
            if time.monotonic() >= next_byte:
                next_byte += 1.0
                for connection in list(self.opened):
                    if connection not in self.closed:
                        self._send(connection, selector)

    def _read(self, connection: socket.socket, selector: selectors.BaseSelector) -> None:
        try:
            data = connection.recv(4096)
        except OSError:
            data = b""
        self.answers[connection] = self.answers.get(connection, b"") + data
        if not data:
            selector.unregister(connection)
            self.closed[connection] = (time.monotonic(), self.answers[connection])

    def _send(self, connection: socket.socket, selector: selectors.BaseSelector) -> None:
        try:
            connection.send(b"a")
        except OSError:
            selector.unregister(connection)
            self.closed[connection] = (time.monotonic(), b"")

    def close_all(self) -> None:
        for connection in self.opened:
            connection.close()


def served_within_two_seconds(url: str, bearer: str, leaks: LeakWatch) -> int:
    """Another client asks for /healthz and a token: each answered 200 within 2 s (a
    timeout fails the test). How many answers that was."""
    for method, path in (("GET", "/healthz"), ("POST", "/v1/tokens")):
        asked = time.monotonic()
        response = requests.request(
            method,
            url + path,
            json=support.VIDEO,
            headers={"Authorization": f"Bearer {bearer}"},
            timeout=2,
        )
        assert response.status_code == 200
        assert time.monotonic() - asked < 2
        if "token" in response.text:
            leaks.issued.add(response.json()["token"])
    return 2


@pytest.fixture(params=["sqlite", "redis"])
def broker(
    request: pytest.FixtureRequest, environ: dict[str, str], tmp_path: Path
) -> Iterator[support.BrokerProcess]:
    if request.param == "sqlite":
        server = support.start_broker(environ, tmp_path)  # the default: one worker
    else:
        redis_url = request.getfixturevalue("redis_url")
        server = support.start_broker(
            {**environ, "BROKER_STATE_URL": redis_url}, tmp_path, "--workers", "2"
        )
    yield server
    support.stop_broker(server)


def test_trickling_clients_starve_no_one_and_are_dropped(
    broker: support.BrokerProcess, caller_token: support.Token, leaks: LeakWatch
) -> None:
    port = int(broker.url.rsplit(":", 1)[1])
    trickler = Trickler(port)
    for _ in range(HEADER_TRICKLERS):
        trickler.open("headers", b"GET /healthz HTTP/1.1\r\nHost: broker\r\nX-Slow: ")
    for _ in range(BODY_TRICKLERS):
        trickler.open(
            "body",
            b"POST /v1/tokens HTTP/1.1\r\nHost: broker\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{",
        )
    thread = threading.Thread(target=trickler.run)
    thread.start()
    bearer = caller_token()
    try:
        deadline = time.monotonic() + BODY_SECONDS + SLACK_SECONDS
        answered = 0
        while time.monotonic() < deadline and len(trickler.closed) < len(trickler.opened):
            answered += served_within_two_seconds(broker.url, bearer, leaks)
            trickler.stop.wait(0.25)  # pacing a caller's requests, not a wait for the server
    finally:
        trickler.stop.set()
        thread.join()
        trickler.close_all()
    assert answered >= 10
    for connection, opened in trickler.opened.items():
        assert connection in trickler.closed, "the server never closed a trickling connection"
        closed, answer = trickler.closed[connection]
        if trickler.kinds[connection] == "headers":
            assert closed - opened <= HEADER_SECONDS + SLACK_SECONDS
        else:
            assert closed - opened <= BODY_SECONDS + SLACK_SECONDS
            assert answer.startswith(b"HTTP/1.1 408")


def test_one_network_holds_at_most_its_share_of_a_worker(
    environ: dict[str, str], tmp_path: Path
) -> None:
    server = support.start_broker(environ, tmp_path, "--connections", "64")  # 8 a network
    port = int(server.url.rsplit(":", 1)[1])
    idle: list[socket.socket] = []
    try:
        for _ in range(20):
            connection = socket.socket()
            connection.bind((ATTACKER, 0))
            connection.connect(("127.0.0.1", port))
            connection.settimeout(HEADER_SECONDS + SLACK_SECONDS)
            idle.append(connection)
        started = time.monotonic()
        turned_away = 0
        for connection in idle[8:]:  # past the share: closed at once, not after the deadline
            assert connection.recv(16) == b""
            turned_away += 1
        assert turned_away == 12
        assert time.monotonic() - started < HEADER_SECONDS
        assert requests.get(f"{server.url}/healthz", timeout=2).status_code == 200  # others
    finally:
        for connection in idle:
            connection.close()
        support.stop_broker(server)


ATTACKERS = [f"127.0.0.{n}" for n in range(2, 10)]  # eight networks of the attack
PIPELINED = b"GET /openapi.json HTTP/1.1\r\nHost: broker\r\n\r\n" * 400  # 12 KB answers each
ESTABLISHED = 1  # tcpi_state, the first byte of TCP_INFO


def established(connection: socket.socket) -> bool:
    try:
        info = connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except OSError:
        return False
    return info[0] == ESTABLISHED


def test_readers_that_never_read_are_cut_and_starve_no_one(
    environ: dict[str, str], tmp_path: Path, caller_token: support.Token, leaks: LeakWatch
) -> None:
    """8 networks x 125 connections, each pipelining 400 requests for 12 KB answers and
    never reading: another client gets /healthz and a token within 2 s throughout, and
    every attacking connection is closed within 30 s."""
    server = support.start_broker(environ, tmp_path)  # the default: 1000 connections
    port = int(server.url.rsplit(":", 1)[1])
    attack: list[socket.socket] = []
    bearer = caller_token()
    try:
        started = time.monotonic()
        for address in ATTACKERS:
            for _ in range(125):
                connection = socket.socket()
                connection.bind((address, 0))
                connection.connect(("127.0.0.1", port))
                connection.setblocking(False)
                with contextlib.suppress(OSError):  # turned away, or its buffer full
                    connection.send(PIPELINED)
                attack.append(connection)
        answered, pace = 0, threading.Event()
        while any(established(connection) for connection in attack):
            assert time.monotonic() - started < 30.0, "attacking connections still open"
            answered += served_within_two_seconds(server.url, bearer, leaks)
            pace.wait(
                0.1
            )  # pacing a caller's requests (within its budget), not a wait for the server
        assert answered >= 2
        assert requests.get(f"{server.url}/healthz", timeout=2).status_code == 200
    finally:
        for connection in attack:
            connection.close()
        support.stop_broker(server)


def test_behind_a_trusted_proxy_busy_upstream_requests_lock_no_one_out(
    environ: dict[str, str], tmp_path: Path, caller_token: support.Token, leaks: LeakWatch
) -> None:
    """The proxy (127.0.0.1 here) carries everyone's requests: 125 of them in flight (a
    network's whole share) do not turn away another user's."""
    proxied = {**environ, "BROKER_TRUSTED_PROXIES": "127.0.0.1/32"}
    server = support.start_broker(proxied, tmp_path)
    port = int(server.url.rsplit(":", 1)[1])
    in_flight: list[socket.socket] = []
    try:
        for number in range(125):  # bodies still arriving: each holds its connection
            connection = socket.create_connection(("127.0.0.1", port))
            connection.sendall(
                b"POST /v1/tokens HTTP/1.1\r\nHost: broker\r\nContent-Type: application/json\r\n"
                + f"X-Forwarded-For: 198.51.100.{number % 250}\r\n".encode()
                + b"Content-Length: 100\r\n\r\n{"
            )
            in_flight.append(connection)
        response = requests.post(
            f"{server.url}/v1/tokens",
            json=support.VIDEO,
            headers={
                "Authorization": f"Bearer {caller_token()}",
                "X-Forwarded-For": "203.0.113.9",
                "X-Forwarded-Proto": "https",  # the proxy ends TLS
            },
            timeout=2,
        )
        assert response.status_code == 200
        leaks.issued.add(response.json()["token"])
    finally:
        for connection in in_flight:
            connection.close()
        support.stop_broker(server)


def server_side_established(server_port: int, client: socket.socket) -> bool:
    """Whether the server still holds its end of ``client`` open (from /proc/net/tcp: a
    closed end may still have answers queued behind the client's full window)."""
    client_port = client.getsockname()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = line.split()[1:4]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == (
            client_port
        ):
            return int(state, 16) == ESTABLISHED
    return False


def test_a_client_that_does_not_read_its_answer_is_cut(
    environ: dict[str, str], tmp_path: Path
) -> None:
    """Its receive buffer small and never read: the answers cannot be written, and the
    server closes the connection once a write has waited WRITE_SECONDS."""
    server = support.start_broker(environ, tmp_path)
    port = int(server.url.rsplit(":", 1)[1])
    connection = socket.socket()
    try:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        connection.bind((ATTACKER, 0))
        connection.connect(("127.0.0.1", port))
        connection.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: broker\r\n\r\n" * 31)
        started = time.monotonic()
        # A real server's socket state: polled (support.eventually) up to a deadline.
        assert support.eventually(
            lambda: not server_side_established(port, connection),
            within=WRITE_SECONDS + SLACK_SECONDS,
        ), "never cut"
        assert time.monotonic() - started >= WRITE_SECONDS - 1  # cut by the write deadline
        assert requests.get(f"{server.url}/healthz", timeout=2).status_code == 200
    finally:
        connection.close()
        support.stop_broker(server)
