"""HTTPS for tokens, CORS, security headers and forwarded addresses."""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
import json
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient

from service import create_app
from service.configuration import load_configuration
from tests import support
from tests.conftest import LeakWatch

VIDEO = {"grants": {"video": {"room": "lobby"}}}


APP_ORIGIN = "https://app.example.test"


def client_for(environ: dict[str, str], tmp_path: Path, **extra: str) -> FlaskClient:
    configuration = load_configuration({**environ, **extra}, dotenv_file=tmp_path / "none")
    return create_app(configuration, audit_stream=io.StringIO()).test_client()


def post(
    client: FlaskClient,
    bearer: str,
    *,
    remote: str,
    base_url: str = "http://broker.test",
    **headers: str,
) -> int:
    response = client.post(
        "/v1/tokens",
        json=VIDEO,
        headers={"Authorization": f"Bearer {bearer}", **headers},
        environ_base={"REMOTE_ADDR": remote},
        base_url=base_url,
    )
    if response.status_code != 200:
        assert response.get_json()["code"] == "https_required"
    return response.status_code


@pytest.fixture
def cors_client(environ: dict[str, str], tmp_path: Path) -> FlaskClient:
    return client_for(environ, tmp_path, BROKER_CORS_ORIGINS=f"{APP_ORIGIN},https://other.test")


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
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


LIMITED_POLICY = support.POLICY.replace(
    '[limits]\nper_identity = "1000/minute;20000/day"\n',
    '[limits]\nper_identity = "3/minute"\nper_ip = "6/minute"\nauth_failures_per_ip = "4/minute"\n'
    "voice_outgoing_cost = 3\n",
)


@pytest.fixture
def limited(environ: dict[str, str], tmp_path: Path) -> dict[str, str]:
    policy = tmp_path / "limited.toml"
    policy.write_text(LIMITED_POLICY)
    return {**environ, "BROKER_POLICY_FILE": str(policy)}


def build(environment: dict[str, str], tmp_path: Path, audit_stream: io.StringIO) -> Flask:
    return create_app(
        load_configuration(environment, dotenv_file=tmp_path / "none"), audit_stream=audit_stream
    )


@pytest.fixture
def limited_client(
    limited: dict[str, str], tmp_path: Path, audit_stream: io.StringIO
) -> FlaskClient:
    return build(limited, tmp_path, audit_stream).test_client()


def post_from(
    client: FlaskClient, bearer: str, remote: str, leaks: LeakWatch, forwarded: str | None = None
) -> int:
    headers = {"Authorization": f"Bearer {bearer}"}
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    # As if over TLS at the server: these callers are not on loopback.
    response = client.post(
        "/v1/tokens",
        json=VIDEO,
        headers=headers,
        environ_base={"REMOTE_ADDR": remote},
        base_url="https://broker.example.test",
    )
    leaks.check_response(response)
    return response.status_code


def test_production_refuses_plain_http_from_afar(
    environ: dict[str, str], tmp_path: Path, caller_token: Callable[..., str]
) -> None:
    client = client_for(environ, tmp_path)
    bearer = caller_token()
    assert post(client, bearer, remote="203.0.113.5") == 403
    assert post(client, bearer, remote="203.0.113.5", base_url="https://broker.test") == 200
    assert post(client, bearer, remote="127.0.0.1") == 200
    assert post(client, bearer, remote="::1") == 200
    # a client cannot claim HTTPS itself: without a trusted proxy the header is ignored
    assert post(client, bearer, remote="203.0.113.5", **{"X-Forwarded-Proto": "https"}) == 403


def test_a_trusted_proxy_may_say_https(
    environ: dict[str, str], tmp_path: Path, caller_token: Callable[..., str]
) -> None:
    client = client_for(environ, tmp_path, BROKER_TRUSTED_PROXIES="1")
    bearer = caller_token()
    forwarded = {"X-Forwarded-For": "198.51.100.4", "X-Forwarded-Proto": "https"}
    assert post(client, bearer, remote="10.0.0.2", **forwarded) == 200
    plain = {"X-Forwarded-For": "198.51.100.4", "X-Forwarded-Proto": "http"}
    assert post(client, bearer, remote="10.0.0.2", **plain) == 403


def test_development_profile_allows_plain_http(policy_file: Path, tmp_path: Path) -> None:
    client = client_for(
        {"BROKER_PROFILE": "dev", "BROKER_POLICY_FILE": str(policy_file)},
        tmp_path,
        BROKER_DEV_DIR=str(tmp_path / "dev"),
        BROKER_STATE_URL=f"sqlite:///{tmp_path}/state.db",
    )
    response = client.post("/v1/tokens", json=VIDEO, environ_base={"REMOTE_ADDR": "203.0.113.5"})
    assert response.status_code == 401  # past the HTTPS rule, stopped by authentication


def test_cors_echoes_only_configured_origins(
    cors_client: FlaskClient, caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    bearer = caller_token()
    for origin, allowed in ((APP_ORIGIN, True), ("https://evil.test", False), ("null", False)):
        response = cors_client.post(
            "/v1/tokens",
            json=VIDEO,
            headers={"Authorization": f"Bearer {bearer}", "Origin": origin},
        )
        leaks.check_response(response)
        assert response.status_code == 200
        assert "Origin" in response.headers["Vary"]
        assert response.headers.get("Access-Control-Allow-Origin") == (origin if allowed else None)


@pytest.mark.parametrize(
    ("origin", "method", "headers", "allowed"),
    [
        (APP_ORIGIN, "POST", "authorization, content-type", True),
        (APP_ORIGIN, "POST", "Content-Type", True),
        (APP_ORIGIN, "PUT", "content-type", False),
        (APP_ORIGIN, "POST", "content-type, x-debug", False),
        ("https://evil.test", "POST", "content-type", False),
        ("null", "POST", "content-type", False),
    ],
)
def test_preflight(
    cors_client: FlaskClient, origin: str, method: str, headers: str, allowed: bool
) -> None:
    response = cors_client.options(
        "/v1/tokens",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )
    assert response.status_code == 204
    if allowed:
        assert response.headers["Access-Control-Allow-Origin"] == origin
        assert response.headers["Access-Control-Allow-Methods"] == "POST"
        assert response.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
    else:
        assert not any(name.startswith("Access-Control-") for name, _ in response.headers)


def test_without_configured_origins_there_is_no_cors(
    client: FlaskClient, caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    response = client.post(
        "/v1/tokens",
        json=VIDEO,
        headers={"Authorization": f"Bearer {caller_token()}", "Origin": APP_ORIGIN},
    )
    leaks.check_response(response)
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("path", ["/healthz", "/v1/nothing", "/openapi.json"])
def test_security_headers_everywhere_and_no_versions(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert "Strict-Transport-Security" not in response.headers  # only over HTTPS
    assert "Server" not in response.headers
    assert "Werkzeug" not in response.get_data(as_text=True)
    secure = client.get(path, base_url="https://broker.test")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")


def test_serve_speaks_tls_directly(
    environ: dict[str, str], tmp_path: Path, caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    certfile, keyfile = _self_signed(tmp_path)
    context = ssl.create_default_context(cafile=str(certfile))
    server = support.start_broker(
        environ, tmp_path, "--certfile", str(certfile), "--keyfile", str(keyfile), context=context
    )
    try:
        response = requests.post(
            f"{server.url}/v1/tokens",
            json=VIDEO,
            headers={"Authorization": f"Bearer {caller_token()}"},
            verify=str(certfile),
            timeout=10,
        )
        assert response.status_code == 200
        leaks.issued.add(response.json()["token"])
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
        assert response.headers["Server"] == "gunicorn"  # a name, never a version
    finally:
        support.stop_broker(server)


def test_spoofed_forwarded_for_does_not_escape_the_address_budget(
    limited_client: FlaskClient, caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    statuses = [
        post_from(
            limited_client,
            caller_token(sub=f"user{n}"),
            "198.51.100.1",
            leaks,
            forwarded=f"203.0.113.{n}",
        )
        for n in range(8)
    ]
    assert statuses == [200] * 6 + [429] * 2  # per_ip is 6: every request counted as .100.1


def test_one_trusted_proxy_uses_the_address_it_appended(
    limited: dict[str, str],
    tmp_path: Path,
    audit_stream: io.StringIO,
    caller_token: Callable[..., str],
    leaks: LeakWatch,
) -> None:
    client = build({**limited, "BROKER_TRUSTED_PROXIES": "1"}, tmp_path, audit_stream).test_client()
    for n in range(8):  # eight clients behind one proxy: each its own address budget
        assert (
            post_from(
                client,
                caller_token(sub=f"user{n}"),
                "10.0.0.2",
                leaks,
                forwarded=f"spoof, 203.0.113.{n}",
            )
            == 200
        )
    records = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    assert records[0]["client_ip"] == "203.0.113.0"
