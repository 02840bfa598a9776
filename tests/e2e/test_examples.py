"""The client examples, run against a real broker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests import support
from tests.conftest import LeakWatch

ROOT = support.ROOT
sys.path.insert(0, str(ROOT / "examples" / "python"))

from token_client import BrokerError, TokenClient  # noqa: E402  # the example, as an app imports it


@pytest.fixture
def broker(environ: dict[str, str], tmp_path: Path) -> Iterator[support.BrokerProcess]:
    server = support.start_broker(environ, tmp_path)
    yield server
    support.stop_broker(server)


@pytest.fixture
def node() -> str:
    """Node.js, for the JavaScript example; under CI its absence fails, never skips."""
    return support.required_tool("node")


def test_javascript_client_refreshes_before_expiry(
    node: str, broker: support.BrokerProcess, caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    result = subprocess.run(
        [node, str(ROOT / "examples" / "web" / "refresh-demo.mjs")],
        env={
            **os.environ,
            "BROKER_URL": broker.url,
            "SESSION_TOKEN": caller_token(),
            "REFRESHES": "2",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"refreshes": 2, "beforeExpiry": True, "distinct": True}
    leaks.check_text(result.stdout + result.stderr)


def test_python_client_caches_then_reports_refusals(
    broker: support.BrokerProcess, caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    session = caller_token()
    client = TokenClient(broker.url, session_token=lambda: session)
    first = client.token({"sync": {}})
    leaks.issued.add(first)
    assert client.token({"sync": {}}) == first  # cached: far from expiry
    eager = TokenClient(broker.url, session_token=lambda: session, refresh_margin_seconds=3600)
    leaks.issued.add(eager.token({"sync": {}}, ttl=60))
    with pytest.raises(BrokerError) as refused:
        client.token({"voice": {}})
    assert refused.value.status == 403
    assert refused.value.code == "grant_not_allowed"


def test_clients_come_back_when_a_paused_broker_says(
    node: str,
    environ: dict[str, str],
    broker: support.BrokerProcess,
    caller_token: Callable[..., str],
    leaks: LeakWatch,
) -> None:
    """A paused broker's 503 says Retry-After: 60. The web example schedules its next
    try at exactly that; the Python client does not ask again before it."""
    session = caller_token()
    support.operator(environ, "pause", "--reason", "incident")
    script = (
        f'import {{ TokenClient }} from "{ROOT / "examples" / "web" / "token-client.mjs"}";'
        "const tokens = new TokenClient({ brokerUrl: process.env.BROKER_URL,"
        " getSessionToken: async () => process.env.SESSION_TOKEN, grants: { sync: {} } });"
        "const scheduled = []; tokens.schedule = (seconds) => scheduled.push(seconds);"
        "const error = await tokens.start().catch((e) => e.message);"
        "console.log(JSON.stringify({ error, scheduled }));"
    )
    result = subprocess.run(
        [node, "--input-type=module", "-e", script],
        env={**os.environ, "BROKER_URL": broker.url, "SESSION_TOKEN": session},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"error": "token broker said 503 issuance_paused", "scheduled": [60]}
    client = TokenClient(broker.url, session_token=lambda: session)
    with pytest.raises(BrokerError) as paused:
        client.token({"sync": {}})
    assert (paused.value.status, paused.value.code, paused.value.retry_after) == (
        503,
        "issuance_paused",
        60,
    )
    support.operator(environ, "resume")
    with pytest.raises(BrokerError) as waiting:  # resumed, but Retry-After has not passed
        client.token({"sync": {}})
    assert waiting.value.code == "issuance_paused"
    assert 0 < (waiting.value.retry_after or 0) <= 60
    fresh = TokenClient(broker.url, session_token=lambda: session)  # one that was never told
    leaks.issued.add(fresh.token({"sync": {}}))
    leaks.check_text(result.stdout + result.stderr)


def test_javascript_client_sends_the_app_check_token(
    node: str,
    environ: dict[str, str],
    tmp_path: Path,
    caller_token: Callable[..., str],
    leaks: LeakWatch,
) -> None:
    """Where a rule requires attestation, the example's getAppCheckToken is what passes."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    policy = tmp_path / "attested.toml"
    policy.write_text(ATTESTED_POLICY)
    with support.serve_jwks({"keys": [{**public, "kid": "appcheck-1", "alg": "RS256"}]}) as keys:
        server = support.start_broker(
            {
                **environ,
                "BROKER_POLICY_FILE": str(policy),
                "APPCHECK_PROJECT_NUMBER": "123456789012",
                "APPCHECK_APP_IDS": "1:123456789012:web:0a1b2c3d",
                "APPCHECK_JWKS_URL": keys.url,
            },
            tmp_path,
        )
        try:
            now = int(time.time())
            app_check = jwt.encode(
                {
                    "sub": "1:123456789012:web:0a1b2c3d",
                    "aud": ["projects/123456789012"],
                    "iss": "https://firebaseappcheck.googleapis.com/123456789012",
                    "iat": now,
                    "exp": now + 3600,
                },
                key,
                algorithm="RS256",
                headers={"kid": "appcheck-1"},
            )
            script = (
                f'import {{ TokenClient }} from "{ROOT / "examples" / "web" / "token-client.mjs"}";'
                "const tokens = new TokenClient({ brokerUrl: process.env.BROKER_URL,"
                " getSessionToken: async () => process.env.SESSION_TOKEN,"
                " getAppCheckToken: async () => process.env.APP_CHECK_TOKEN,"
                " grants: { voice: {} } });"
                "const issued = await tokens.start(); tokens.stop();"
                "console.log(JSON.stringify(issued.grants));"
            )
            result = subprocess.run(
                [node, "--input-type=module", "-e", script],
                env={
                    **os.environ,
                    "BROKER_URL": server.url,
                    "SESSION_TOKEN": caller_token(roles="agent"),
                    "APP_CHECK_TOKEN": app_check,
                },
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            support.stop_broker(server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["voice"]
    leaks.check_text(result.stdout + result.stderr)


ATTESTED_POLICY = """
[[rules]]
name = "answer calls"
match = { claims = { roles = "agent" } }
voice = { incoming = true }
attestation = "required"
"""


WORKSPACE, WORKER = "WS" + "a" * 32, "WK" + "b" * 32
TASK_ROUTER_RULE = f"""
[[rules]]
name = "agents-desk"
match = {{ claims = {{ desk = "support" }} }}
task_router = {{ workspace = "{WORKSPACE}", worker = "claim:worker_sid" }}
"""


def test_a_taskrouter_worker_connects_with_a_broker_token(
    node: str,
    environ: dict[str, str],
    tmp_path: Path,
    caller_token: Callable[..., str],
    leaks: LeakWatch,
) -> None:
    """The TaskRouter JS SDK (twilio-taskrouter, pinned) takes a broker token: its own
    reading of the token finds the policy's workspace and the agent's Worker, and its
    Worker connects to the event bridge it is given (a loopback stand-in), not Twilio."""
    policy = tmp_path / "agents.toml"
    policy.write_text(support.POLICY + TASK_ROUTER_RULE)
    server = support.start_broker({**environ, "BROKER_POLICY_FILE": str(policy)}, tmp_path)
    node_dir = ROOT / "tests" / "e2e" / "node"
    run = Path(tempfile.mkdtemp(dir=node_dir))  # node_modules of the e2e tests are found
    with event_bridge() as (bridge_url, asked):
        try:
            for example in ("taskrouter-worker.mjs", "token-client.mjs"):
                shutil.copy(ROOT / "examples" / "web" / example, run / example)
            result = subprocess.run(
                [node, str(run / "taskrouter-worker.mjs")],
                env={
                    **os.environ,
                    "BROKER_URL": server.url,
                    "SESSION_TOKEN": caller_token(desk="support", worker_sid=WORKER),
                    "TASKROUTER_EVENT_BRIDGE": bridge_url,
                    "EXIT_AFTER_MS": "1500",
                },
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            shutil.rmtree(run, ignore_errors=True)
            support.stop_broker(server)
        assert result.returncode == 0, result.stdout + result.stderr
        read = json.loads(result.stdout.splitlines()[0])
        assert read == {"workspaceSid": WORKSPACE, "workerSid": WORKER, "role": "worker"}
        assert asked, "the Worker never tried to connect"  # to the stand-in, not to Twilio
        assert all(path.startswith("/v1/wschannels") for path in asked)
    leaks.check_text(result.stdout + result.stderr)


@contextmanager
def event_bridge() -> Iterator[tuple[str, list[str]]]:
    """A stand-in for TaskRouter's event bridge on loopback: records what the SDK asks
    (any method) and answers 503, so the Worker never gets further than asking."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _refuse(self) -> None:
            asked.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_OPTIONS = _refuse  # noqa: N815  # http.server's names

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()
