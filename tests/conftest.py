"""Shared fixtures, in one place: real keys, a real JWKS endpoint on loopback, a fake clock,
the app and its client, the command line, real Redis, a fake of Twilio's REST API.

Every test is also a leak check: after it, captured logs must not contain the API key
secret, any caller bearer token or any issued token, and no response may carry the
secret or a bearer token (nor an issued token outside a 200 token response).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service import create_app
from service.cli import main
from service.serving.configuration import Configuration, load_configuration
from service.serving.policy_file import Policy
from service.state import AuditTrail, Retention, StateStore, open_store, open_trail
from service.tokens.policy import Allowed, Denied
from service.tokens.request import TokenRequest
from tests import support
from tests.fake_twilio import ADMIN_SID, ADMIN_TOKEN, FakeTwilio, serve_fake_twilio


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


#: The PostgreSQL server the tests use (the machine's; a database of their own in it).
POSTGRES_URL = os.environ.get("BROKER_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A database of the tests' own on the PostgreSQL server, dropped at the end; its URL.
    Under CI a missing server fails, never skips."""
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}: {error}")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")  # outside CI only
    name = f"token_broker_test_{os.getpid()}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urllib.parse.urlunsplit(urllib.parse.urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """The tests' database, emptied of the broker's tables for one test."""
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS token_broker_audit, token_broker_refusals")
    return postgres_server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.RedisCluster]:
    """A Redis Cluster of the tests' own (three masters, three replicas)."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server and redis-cli are needed; CI must install them")
        pytest.skip("redis-server or redis-cli is not installed")  # only outside CI: CI fails above
    cluster = support.RedisCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster: support.RedisCluster) -> str:
    """The cluster, emptied for one test."""
    redis_cluster.flush()
    return redis_cluster.url


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


@pytest.fixture(params=["pinned", "a_year_ahead"])
def retention_clock(request: pytest.FixtureRequest) -> support.FakeClock:
    """The clock of a retention test, twice: at the pinned date, and a year ahead of
    today. Retention goes by the injected clock only, so it holds on any day."""
    if request.param == "pinned":
        return support.FakeClock(support.NOW)
    return support.FakeClock(support.FakeClock()() + timedelta(days=365))


@pytest.fixture
def clock() -> support.FakeClock:
    """The app's clock: time moves only when a test advances it."""
    return support.FakeClock()


@pytest.fixture
def app(configuration: Configuration, audit_stream: io.StringIO, clock: support.FakeClock) -> Flask:
    return create_app(configuration, clock=clock, audit_stream=audit_stream)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def make_client(
    environ: dict[str, str],
    tmp_path: Path,
    audit_stream: io.StringIO,
    clock: support.FakeClock,
) -> Callable[..., FlaskClient]:
    """A client of an app built from ``environment`` (default: ``environ``), and
    ``policy`` (the test policy) when given, sharing the test's clock and audit stream."""
    built = 0

    def make(environment: dict[str, str] | None = None, policy: str | None = None) -> FlaskClient:
        nonlocal built
        environment = dict(environ if environment is None else environment)
        if policy is not None:
            built += 1
            path = tmp_path / f"policy-{built}.toml"
            path.write_text(policy)
            environment["BROKER_POLICY_FILE"] = str(path)
        configuration = load_configuration(environment, dotenv_file=tmp_path / "absent.env")
        return create_app(configuration, clock=clock, audit_stream=audit_stream).test_client()

    return make


@pytest.fixture
def cli(
    environ: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    """Run ``token-broker ARGS`` in-process with ``env`` (default: ``environ``) only;
    ``check`` asserts that it succeeded."""
    monkeypatch.chdir(tmp_path)  # no stray .env from the working tree
    for name in [*support.base_environ("", ""), "BROKER_DEV_DIR", "BROKER_STATE_URL"]:
        monkeypatch.delenv(name, raising=False)

    def invoke(
        *args: str, env: dict[str, str] | None = None, stdin: str | None = None, check: bool = False
    ) -> Result:
        result = CliRunner().invoke(
            main, list(args), env=environ if env is None else env, input=stdin
        )
        if check:
            assert result.exit_code == 0, result.output
        return result

    return invoke


@pytest.fixture
def admin_cli(cli: Callable[..., Result], twilio: FakeTwilio) -> Callable[..., Result]:
    """Run a command that talks to Twilio's REST API, pointed at the fake."""

    def invoke(environment: dict[str, str], *args: str, token: str = ADMIN_TOKEN) -> Result:
        credentials = {
            "TWILIO_ADMIN_ACCOUNT_SID": ADMIN_SID,
            "TWILIO_ADMIN_AUTH_TOKEN": token,
            "TWILIO_API_BASE_URL": twilio.url,
        }
        return cli(*args, env={**environment, **credentials})

    return invoke


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with serve_fake_twilio() as fake:
        yield fake


STORES = {"sqlite": None, "redis": "redis_url", "redis_cluster": "cluster_url"}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    """Each state store in turn, empty: SQLite, Redis, and a Redis Cluster."""
    url = f"sqlite:///{tmp_path}/state.db"
    if STORES[request.param] is not None:
        url = request.getfixturevalue(str(STORES[request.param]))
    found = open_store(url, retention=Retention(), clock=support.FakeClock(support.NOW))
    yield found
    found.close()


@pytest.fixture(params=[*sorted(STORES), "postgres"])
def trail(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditTrail]:
    """Each place the durable audit trail may be kept, empty: each state store, and
    PostgreSQL (``BROKER_AUDIT_URL``)."""
    url = f"sqlite:///{tmp_path}/state.db"
    if STORES.get(request.param) is not None:
        url = request.getfixturevalue(str(STORES[request.param]))
    clock = support.FakeClock(support.NOW)
    store = open_store(url, retention=Retention(), clock=clock)
    audit_url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    found = open_trail(audit_url, store, retention=Retention(), clock=clock)
    yield found
    found.close()
    store.close()


@pytest.fixture
def keyed(environ: dict[str, str], policy_file: Path, tmp_path: Path) -> dict[str, str]:
    """The test environment with client keys and a rule for the client "backend"."""
    policy_file.write_text(policy_file.read_text() + support.BACKEND_RULE)
    return {**environ, "BROKER_CLIENT_KEYS_FILE": str(tmp_path / "keys" / "client-keys.json")}


@pytest.fixture
def create_key(
    cli: Callable[..., Result], leaks: LeakWatch
) -> Callable[[dict[str, str], str], str]:
    """Create a client key with the command line; from then on it must never leak."""

    def create(environment: dict[str, str], name: str) -> str:
        result = cli("client-key", "create", name, env=environment)
        assert result.exit_code == 0, result.output
        key = result.stdout.strip()
        leaks.bearers.add(key)
        return key

    return create


@pytest.fixture
def voice_environ(environ: dict[str, str], policy_file: Path) -> dict[str, str]:
    """The test environment with the test dial policy and a caller ID."""
    policy_file.write_text(policy_file.read_text() + support.DIAL)
    return {**environ, "TWILIO_CALLER_ID": support.CALLER_ID}


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
    """POST /v1/tokens (to ``client``, default the app's) and leak-check the response.

    ``options`` go to the test client (``environ_base``, ``base_url``).
    """

    def post(
        body: Any = None,
        bearer: str | None = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        to: FlaskClient | None = None,
        **options: Any,
    ) -> TestResponse:
        all_headers = {"Content-Type": content_type, **(headers or {})}
        if bearer is not None:
            all_headers["Authorization"] = f"Bearer {bearer}"
        data = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
        response = (to or client).post("/v1/tokens", data=data, headers=all_headers, **options)
        leaks.check_response(response)
        return response

    return post


@pytest.fixture
def post_from(post: Callable[..., TestResponse]) -> Callable[..., int]:
    """POST a video request as a caller at ``remote`` (over TLS, so not refused for HTTP),
    optionally through a proxy that says ``forwarded``; return the status."""

    def send(
        bearer: str, remote: str, forwarded: str | None = None, to: FlaskClient | None = None
    ) -> int:
        headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
        response = post(
            support.VIDEO,
            bearer,
            headers=headers,
            to=to,
            environ_base={"REMOTE_ADDR": remote},
            base_url="https://broker.example.test",
        )
        return response.status_code

    return send


@pytest.fixture
def limited_client(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    """An app with small budgets (``support.LIMITED_POLICY``)."""
    return make_client(policy=support.LIMITED_POLICY)


@pytest.fixture
def backend(make_client: Callable[..., FlaskClient], keyed: dict[str, str]) -> FlaskClient:
    """An app that knows client keys, with a rule for the client "backend"."""
    return make_client(keyed)


@pytest.fixture
def voice(make_client: Callable[..., FlaskClient], voice_environ: dict[str, str]) -> FlaskClient:
    """An app with the test dial policy."""
    return make_client(voice_environ)


@pytest.fixture
def inbound(
    make_client: Callable[..., FlaskClient], voice_environ: dict[str, str], policy_file: Path
) -> FlaskClient:
    """An app with the test dial policy and inbound routes (``support.INCOMING``)."""
    return make_client(voice_environ, policy=policy_file.read_text() + support.INCOMING)


@pytest.fixture
def key_environ(environ: dict[str, str], tmp_path: Path, leaks: LeakWatch) -> dict[str, str]:
    """The signing key given as files behind a symlink, as a Kubernetes secret mounts it:
    ``tmp_path / "key"``, holding ``support.OLD_KEY``."""
    leaks.secrets.update({support.OLD_KEY[1], support.NEW_KEY[1]})
    link = tmp_path / "key"
    support.swap_link(link, support.write_key(tmp_path / "v1", support.OLD_KEY))
    return {
        **support.without_static_key(environ),
        "TWILIO_API_KEY_SID_FILE": str(link / "sid"),
        "TWILIO_API_KEY_SECRET_FILE": str(link / "secret"),
    }


@pytest.fixture(scope="session")
def decide() -> Callable[..., Allowed | Denied]:
    """The test policy's decision for ``identity`` (default alice) with ``claims``."""
    policy = Policy.from_toml(support.POLICY).tokens

    def decide(
        request: TokenRequest, identity: str = "alice", **claims: object
    ) -> Allowed | Denied:
        return policy.decide(identity, {"sub": identity, **claims}, request)

    return decide


@pytest.fixture
def process_environ(
    environ: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """``environ`` as the process environment, in an empty working directory."""
    monkeypatch.chdir(tmp_path)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return environ
