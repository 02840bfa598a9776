"""Plain helpers behind the fixtures (and the benchmark): keys, servers, clocks, policies.

Fixtures live in ``conftest.py``; what is here has no pytest state, so that the benchmark
can use the same servers and polling.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from twilio.request_validator import RequestValidator
from werkzeug.test import TestResponse

from service.config.settings import IdentityProvider

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
VIDEO = {"grants": {"video": {"room": "lobby"}}}
#: The types of the ``post`` and ``caller_token`` fixtures.
Post = Callable[..., TestResponse]
Token = Callable[..., str]
#: Where the test client's webhooks are, as Twilio would sign them.
VOICE_URL = "http://localhost/v1/twilio/voice"
INCOMING_URL = "http://localhost/v1/twilio/voice/incoming"
USAGE_ALERT_URL = "http://localhost/v1/twilio/usage-alert"
CALLER_ID = "+15005550006"
ALICE_TO_US = {"From": "client:alice", "To": "+15551234567", "CallSid": "CA" + "0" * 32}
#: A usage trigger's callback, as Twilio sends it.
ALERT = {
    "AccountSid": ACCOUNT_SID,
    "UsageTriggerSid": "UT" + "1" * 32,
    "UsageCategory": "calls",
    "CurrentValue": "1000.00",
    "TriggerValue": "500",
}


#: The date the tests pin the clock to, where a day of their own is not what they test.
NOW = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)


class FakeClock:
    """The broker's one clock, in a test's hands: it moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def eventually(check: Callable[[], bool], within: float = 10.0) -> bool:
    """Poll ``check`` until it holds or ``within`` seconds pass: for real processes only."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)  # the polling interval, bounded by the deadline
    return True


def twilio_signature(
    params: Mapping[str, str], url: str = VOICE_URL, token: str = AUTH_TOKEN
) -> dict[str, str]:
    """The header Twilio sends: HMAC-SHA1 over the URL and the sorted parameters."""
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, dict(params))}


def call(
    client: Any,
    params: Mapping[str, str],
    headers: Mapping[str, str] | None = None,
    *,
    path: str = "/v1/twilio/voice",
    **options: Any,
) -> TestResponse:
    """POST a Twilio webhook, signed as Twilio signs it for ``path`` unless ``headers`` say."""
    if headers is None:
        headers = twilio_signature(params, "http://localhost" + path)
    response: TestResponse = client.post(path, data=dict(params), headers=dict(headers), **options)
    return response


def assert_problem(response: TestResponse, status: int, code: str) -> None:
    """A problem+json refusal with this status and code, its request id, and no token."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["request_id"] == response.headers["X-Request-Id"]
    assert "token" not in problem
    assert "Traceback" not in response.get_data(as_text=True)
    if status in (429, 503):  # RFC 9110: when to come back, as whole seconds
        assert response.headers["Retry-After"].isdigit(), response.headers
        assert int(response.headers["Retry-After"]) >= 1


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
    """A real JWKS endpoint on loopback that counts how often it is fetched.

    ``behaviour`` makes it misbehave as providers do: ``"not_json"``, ``"error"`` (HTTP
    500), or ``"trickle"`` (the whole answer a few bytes at a time, for ``trickle_seconds``).
    ``documents`` holds other paths (a discovery document, say).
    """

    document: dict[str, Any]
    fetches: int = 0
    url: str = ""
    base_url: str = ""
    behaviour: str = "ok"
    trickle_seconds: float = 20.0
    documents: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> None:
        with self._lock:
            self.fetches += 1


@contextmanager
def serve_jwks(document: dict[str, Any]) -> Iterator[JwksServer]:
    state = JwksServer(document=document)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server dispatches to
            found = state.documents.get(self.path.split("?")[0])
            if found is None:
                state.count()
                found = state.document
            if state.behaviour == "error":
                self._answer(500, b"upstream broke")
            elif state.behaviour == "not_json":
                self._answer(200, b"<html>maintenance</html>")
            elif state.behaviour == "trickle":
                self._trickle(json.dumps(found).encode())
            else:
                self._answer(200, json.dumps(found).encode())

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _trickle(self, body: bytes) -> None:
            answer = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            pause = state.trickle_seconds / len(answer)
            stop = threading.Event()
            for offset in range(0, len(answer), 4):
                try:
                    self.wfile.write(answer[offset : offset + 4])
                    self.wfile.flush()
                except OSError:
                    return
                stop.wait(pause)  # the misbehaviour under test: a slow server

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    state.url = f"{state.base_url}/jwks.json"
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


def without_static_key(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without TWILIO_API_KEY_SID/SECRET, for giving the key as files."""
    return {
        k: v for k, v in environ.items() if k not in ("TWILIO_API_KEY_SID", "TWILIO_API_KEY_SECRET")
    }


#: Two API keys, before and after a rotation.
OLD_KEY = ("SK" + "1" * 32, "old-secret-" + "o" * 30)
NEW_KEY = ("SK" + "2" * 32, "new-secret-" + "n" * 30)


def write_key(directory: Path, key: tuple[str, str]) -> Path:
    """Write an API key (SID, secret) as the two files a Kubernetes secret would mount."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sid").write_text(key[0] + "\n")
    (directory / "secret").write_text(key[1] + "\n")
    return directory


def swap_link(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` in one atomic rename, as Kubernetes does."""
    temporary = link.with_name(link.name + ".new")
    temporary.symlink_to(target)
    temporary.replace(link)


def oidc_settings(jwks_url: str, **overrides: Any) -> IdentityProvider:
    """The test identity provider's settings, with its keys at ``jwks_url``."""
    settings: dict[str, Any] = {
        "issuer": ISSUER,
        "audiences": (AUDIENCE,),
        "jwks_url": jwks_url,
        **overrides,
    }
    return IdentityProvider(**settings)


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
        # What Twilio calls: the test client's own URL (webhook signatures are over it).
        "BROKER_PUBLIC_URL": "http://localhost",
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
# Property tests refuse one caller thousands of times: room for them (the default is
# 20/minute; tests of the denial budget set their own).
denials_per_identity = "100000/minute"
"""
#: Small budgets, to see them spent.
LIMITED_POLICY = POLICY.replace(
    '[limits]\nper_identity = "1000/minute;20000/day"\n',
    '[limits]\nper_identity = "3/minute"\nper_ip = "6/minute"\nauth_failures_per_ip = "4/minute"\n'
    "voice_outgoing_cost = 3\n",
)
DIAL = """
[dial]
allowed_prefixes = ["+1", "+44"]
blocked_prefixes = ["+1900", "+44870"]
client_identities = ["agent_*"]
calls_per_identity = "3/hour"
"""
INCOMING = """
[incoming]
numbers = { "+15005550006" = ["agent_1", "agent_2"] }
"""
BACKEND_RULE = """
[[rules]]
name = "backend"
match = { clients = ["backend"], identities = ["user_*"] }
video = { rooms = ["{identity}-*"] }
voice = { incoming = true }
"""


@dataclass
class RedisServer:
    """A real redis-server on a free loopback port, owned by the tests."""

    port: int
    directory: str
    process: subprocess.Popen[bytes] | None = None
    #: more redis-server options (a cluster node's)
    options: tuple[str, ...] = ()

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
                *self.options,
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


def cluster_port() -> int:
    """A free port whose cluster bus port (10000 above) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 < 65536:
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise ServerNotHealthy("no free port pair for a cluster node")


@dataclass
class RedisCluster:
    """A real Redis Cluster on loopback: three masters, a replica each unless told
    otherwise, owned by the tests. ``kill`` stops a node by its PID (a master's replica
    takes over; without one the cluster fails until ``restart`` brings it back)."""

    directory: Path
    nodes: list[RedisServer] = field(default_factory=list)
    #: how long a silent master takes to be failed over (milliseconds)
    node_timeout: int = 1500
    replicas: int = 1

    @property
    def url(self) -> str:
        live = next(node for node in self.nodes if node.process is not None)
        return f"redis+cluster://127.0.0.1:{live.port}"

    def start(self) -> None:
        for index in range(3 * (1 + self.replicas)):
            folder = self.directory / f"node{index}"
            folder.mkdir(parents=True, exist_ok=True)
            node = RedisServer(cluster_port(), str(folder))
            node.options = (
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"{folder}/nodes.conf",
                "--cluster-node-timeout",
                str(self.node_timeout),
            )
            node.start()
            self.nodes.append(node)
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [
                shutil.which("redis-cli") or "redis-cli",
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        if not eventually(self.healthy, within=30.0):
            raise ServerNotHealthy("the Redis Cluster did not come up")

    def command(self, node: RedisServer, *arguments: str) -> str:
        result = subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "-p", str(node.port), *arguments],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return result.stdout

    def healthy(self) -> bool:
        """Every live node sees the cluster ok, and every replica has synced its master."""
        live = [node for node in self.nodes if node.process is not None]
        return all(
            "cluster_state:ok" in self.command(node, "cluster", "info")
            and "master_link_status:down" not in self.command(node, "info", "replication")
            for node in live
        )

    def masters(self) -> list[RedisServer]:
        return [
            node
            for node in self.nodes
            if node.process is not None
            and "role:master" in self.command(node, "info", "replication")
        ]

    def flush(self) -> None:
        for node in self.masters():
            self.command(node, "flushall")

    def keys_by_master(self) -> dict[int, int]:
        """How many keys each master holds (by port)."""
        return {
            node.port: int(self.command(node, "dbsize").strip() or 0) for node in self.masters()
        }

    def kill(self, node: RedisServer) -> None:
        node.stop()

    def restart(self, node: RedisServer) -> None:
        """Start a killed node again: with its nodes.conf, it rejoins as it was."""
        node.start()

    def state(self) -> str:
        """``cluster_state`` as the first live node sees it (``ok`` or ``fail``)."""
        live = next(node for node in self.nodes if node.process is not None)
        info = self.command(live, "cluster", "info")
        found = re.search(r"^cluster_state:(\w+)", info, re.MULTILINE)
        return found.group(1) if found else "unknown"

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


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
    env: dict[str, str],
    cwd: Path,
    *extra: str,
    context: ssl.SSLContext | None = None,
    port: int | None = None,
) -> BrokerProcess:
    """Start ``token-broker serve`` (on ``port``, else a free one); with ``context``, it
    serves HTTPS (give --certfile)."""
    port = port or free_port()
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


def operator(environment: dict[str, str], *arguments: str) -> None:
    """Run ``token-broker ARGUMENTS`` as an operator would, beside running brokers."""
    subprocess.run(
        [BROKER, *arguments],
        env={"PATH": os.environ.get("PATH", ""), **environment},
        check=True,
        capture_output=True,
        timeout=30,
    )


def stop_broker(server: BrokerProcess) -> None:
    stop_process(server.process)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL past ``timeout``: every process a test starts ends."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


class TcpProxy:
    """A TCP relay on a free loopback port to ``target_port``, for cutting a server off:
    ``cut`` refuses new connections and severs the open ones (as a crashed database or a
    lost network would), ``restore`` relays again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *_: object) -> None:
        self.cut()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, []
        for open_socket in [listener, *sockets]:
            if open_socket is not None:
                with contextlib.suppress(OSError):
                    open_socket.shutdown(socket.SHUT_RDWR)
                open_socket.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


def required_tool(name: str) -> str:
    """The path of a program the tests run (promtool, prometheus, kubectl); under CI a
    missing one fails, never skips."""
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed; CI must install it (.ci/run)")
        pytest.skip(f"{name} is not installed")  # only outside CI: CI fails above
    return found


def concurrently(
    client: Any, body: Any, bearer: str, issued: set[str], count: int = 20
) -> list[int]:
    """POST /v1/tokens ``count`` times at once (threads, each its own test client of
    ``client``'s app); the statuses. Issued tokens go into ``issued`` (leak checks)."""
    statuses: list[int] = []

    def ask() -> None:
        answer = client.application.test_client().post(
            "/v1/tokens", json=body, headers={"Authorization": f"Bearer {bearer}"}
        )
        if answer.status_code == 200:
            issued.add(answer.get_json()["token"])
        statuses.append(answer.status_code)

    threads = [threading.Thread(target=ask) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return statuses
