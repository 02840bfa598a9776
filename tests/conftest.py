"""Shared fixtures: real keys, a real JWKS endpoint on loopback, the app and its client.

Every test is also a leak check: after it, captured logs must not contain the API key
secret, any caller bearer token or any issued token, and no response may carry the
secret or a bearer token (nor an issued token outside a 200 token response).
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service import create_app
from service.configuration import Configuration, load_configuration
from tests import support


class LeakWatch:
    """Values that must never show up in logs or error responses."""

    def __init__(self) -> None:
        self.secrets: set[str] = {support.API_KEY_SECRET, support.AUTH_TOKEN}
        self.bearers: set[str] = set()
        self.issued: set[str] = set()

    def forbidden_in_logs(self) -> set[str]:
        return self.secrets | self.bearers | self.issued

    def check_text(self, text: str, *, allow: frozenset[str] = frozenset()) -> None:
        for value in self.forbidden_in_logs() - allow:
            assert value not in text, "a secret, bearer or issued token leaked"

    def check_response(self, response: TestResponse) -> None:
        body = response.get_data(as_text=True)
        headers = str(response.headers)
        allowed: frozenset[str] = frozenset()
        if response.status_code == 200 and response.is_json:
            token = (response.get_json() or {}).get("token")
            if isinstance(token, str):
                self.issued.add(token)
                allowed = frozenset({token})
        self.check_text(body + headers, allow=allowed)


@pytest.fixture(scope="session")
def leaks() -> LeakWatch:
    return LeakWatch()


@pytest.fixture(autouse=True)
def _no_leaks_in_logs(caplog: pytest.LogCaptureFixture, leaks: LeakWatch) -> Iterator[None]:
    caplog.set_level("INFO")
    yield
    leaks.check_text(caplog.text)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.RedisServer]:
    """A redis-server of the tests' own; under CI a missing binary fails, never skips."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed; CI must install it")
        pytest.skip("redis-server is not installed")  # only outside CI: CI fails above
    server = support.RedisServer(support.free_port(), str(tmp_path_factory.mktemp("redis")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: support.RedisServer) -> str:
    """An empty Redis database for one test."""
    if redis_server.process is None:  # a test stopped it: start it again
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def keys() -> support.Keys:
    return support.make_keys()


@pytest.fixture
def jwks(keys: support.Keys) -> Iterator[support.JwksServer]:
    with support.serve_jwks(keys.jwks()) as server:
        yield server


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(support.POLICY)
    return path


@pytest.fixture
def environ(jwks: support.JwksServer, policy_file: Path, tmp_path: Path) -> dict[str, str]:
    return {
        **support.base_environ(jwks.url, str(policy_file)),
        "BROKER_DEV_DIR": str(tmp_path / "dev"),
        "BROKER_STATE_URL": f"sqlite:///{tmp_path}/state.sqlite3",
    }


@pytest.fixture
def configuration(environ: dict[str, str], tmp_path: Path) -> Configuration:
    return load_configuration(environ, dotenv_file=tmp_path / "absent.env")


@pytest.fixture
def audit_stream(leaks: LeakWatch) -> Iterator[io.StringIO]:
    """Where the app writes its audit lines; leak-checked after the test."""
    stream = io.StringIO()
    yield stream
    leaks.check_text(stream.getvalue())


@pytest.fixture
def app(configuration: Configuration, audit_stream: io.StringIO) -> Flask:
    return create_app(configuration, audit_stream=audit_stream)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def caller_token(keys: support.Keys, leaks: LeakWatch) -> Callable[..., str]:
    """Sign a caller token with the identity provider's RSA key (or as told)."""

    def make(
        key: Any = None,
        algorithm: str = "RS256",
        kid: str = "rsa-1",
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        token = support.sign(
            support.caller_claims(**claims),
            key or keys.rsa_private,
            algorithm,
            kid,
            **(headers or {}),
        )
        leaks.bearers.add(token)
        return token

    return make


@pytest.fixture
def post(client: FlaskClient, leaks: LeakWatch) -> Callable[..., TestResponse]:
    """POST /v1/tokens and leak-check the response."""

    def post(
        body: Any = None,
        bearer: str | None = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> TestResponse:
        all_headers = {"Content-Type": content_type, **(headers or {})}
        if bearer is not None:
            all_headers["Authorization"] = f"Bearer {bearer}"
        data = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
        response = client.post("/v1/tokens", data=data, headers=all_headers)
        leaks.check_response(response)
        return response

    return post
