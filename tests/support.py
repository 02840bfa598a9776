"""Test helpers shared by several test modules: keys, a JWKS server, caller tokens."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://id.example.test/"
AUDIENCE = "token-broker-tests"
ACCOUNT_SID = "AC" + "1a2b3c4d" * 4
API_KEY_SID = "SK" + "5e6f7a8b" * 4
API_KEY_SECRET = "kVq3pZ8wX1rT6yB0nM4cL7hJ2gF5dS9a"  # a test-only 32-character secret
AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
TWIML_APP_SID = "AP" + "0a1b2c3d" * 4
CONVERSATIONS_SID = "IS" + "1b2c3d4e" * 4
SYNC_SID = "IS" + "2c3d4e5f" * 4
APNS_SID = "CR" + "3d4e5f6a" * 4
FCM_SID = "CR" + "4e5f6a7b" * 4


@dataclass
class Keys:
    rsa_private: rsa.RSAPrivateKey
    ec_private: ec.EllipticCurvePrivateKey
    other_rsa_private: rsa.RSAPrivateKey

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = json.loads(RSAAlgorithm.to_jwk(self.rsa_private.public_key()))
        ec_jwk = json.loads(ECAlgorithm.to_jwk(self.ec_private.public_key()))
        return {
            "keys": [
                {**rsa_jwk, "kid": "rsa-1", "alg": "RS256", "use": "sig"},
                {**ec_jwk, "kid": "ec-1", "alg": "ES256", "use": "sig"},
            ]
        }


def make_keys() -> Keys:
    return Keys(
        rsa_private=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec_private=ec.generate_private_key(ec.SECP256R1()),
        other_rsa_private=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


@dataclass
class JwksServer:
    """A real JWKS endpoint on loopback that counts how often it is fetched."""

    document: dict[str, Any]
    fetches: int = 0
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> None:
        with self._lock:
            self.fetches += 1


@contextmanager
def serve_jwks(document: dict[str, Any]) -> Iterator[JwksServer]:
    state = JwksServer(document=document)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server dispatches to
            state.count()
            body = json.dumps(state.document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ServerNotHealthy(RuntimeError):
    """Raised when a started server exits or stays unhealthy past its deadline."""


def wait_until_healthy(
    url: str,
    process: subprocess.Popen[bytes],
    deadline_seconds: float = 30.0,
    context: ssl.SSLContext | None = None,
) -> None:
    """Poll ``url``/healthz until it answers 200; never a fixed sleep."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerNotHealthy("the server exited during start-up")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1, context=context) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)  # the polling interval, bounded by the deadline
    raise ServerNotHealthy("the server did not become healthy in time")


def caller_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 300,
    }
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def sign(claims: Mapping[str, Any], key: Any, algorithm: str, kid: str, **headers: Any) -> str:
    return jwt.encode(dict(claims), key, algorithm=algorithm, headers={"kid": kid, **headers})


def base_environ(jwks_url: str, policy_file: str) -> dict[str, str]:
    return {
        "BROKER_PROFILE": "production",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_API_KEY_SID": API_KEY_SID,
        "TWILIO_API_KEY_SECRET": API_KEY_SECRET,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_TWIML_APP_SID": TWIML_APP_SID,
        "TWILIO_CONVERSATIONS_SERVICE_SID": CONVERSATIONS_SID,
        "TWILIO_SYNC_SERVICE_SID": SYNC_SID,
        "TWILIO_PUSH_CREDENTIALS": f"apns={APNS_SID},fcm={FCM_SID}",
        "OIDC_ISSUER": ISSUER,
        "OIDC_AUDIENCE": AUDIENCE,
        "OIDC_JWKS_URL": jwks_url,
        "BROKER_POLICY_FILE": policy_file,
    }


POLICY = """
[tokens]
default_ttl = 600
max_ttl = 3600

[identity]
claim = "sub"

[[rules]]
name = "members"
match = {}
video = { rooms = ["lobby", "{identity}-*", "team-{claims.team}-*"] }
chat = true
sync = true

[[rules]]
name = "agents"
match = { claims = { roles = "agent" } }
voice = { incoming = true, outgoing = true }
max_ttl = 900

[limits]
per_identity = "1000/minute;20000/day"
"""


@dataclass
class RedisServer:
    """A real redis-server on a free loopback port, owned by the tests."""

    port: int
    directory: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise ServerNotHealthy("redis-server is not installed")
        self.process = subprocess.Popen(
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)  # the polling interval, bounded by the deadline
        raise ServerNotHealthy("redis-server did not answer PING in time")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


ROOT = Path(__file__).resolve().parent.parent
BROKER = str(Path(sys.executable).parent / "token-broker")
START_DEADLINE_SECONDS = 30.0


@dataclass
class BrokerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_broker(
    env: dict[str, str], cwd: Path, *extra: str, context: ssl.SSLContext | None = None
) -> BrokerProcess:
    """Start ``token-broker serve``; with ``context``, it serves HTTPS (give --certfile)."""
    port = free_port()
    log = cwd / f"server-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [BROKER, "serve", "--bind", f"127.0.0.1:{port}", *extra],
            env={"PATH": os.environ.get("PATH", ""), **env},
            cwd=cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, for kill -9 of master and workers
        )
    url = f"{'https' if context else 'http'}://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, START_DEADLINE_SECONDS, context)
    except ServerNotHealthy as problem:
        pytest.fail(f"{problem}:\n{log.read_text()}")
    return BrokerProcess(url, process, log)


def stop_broker(server: BrokerProcess) -> None:
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
