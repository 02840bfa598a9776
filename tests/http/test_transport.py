"""HTTPS for tokens, CORS, security headers and forwarded addresses."""

from __future__ import annotations

import io
import json
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from click.testing import Result
from flask.testing import FlaskClient

from tests import support
from tests.conftest import LeakWatch

APP_ORIGIN = "https://app.example.test"


@pytest.fixture
def https_status(post: support.Post, caller_token: support.Token) -> Callable[..., int]:
    """The status of a token request from ``remote``; a refusal must be https_required."""
    bearer = caller_token()

    def send(
        client: FlaskClient, *, remote: str, base_url: str = "http://broker.test", **headers: str
    ) -> int:
        response = post(
            support.VIDEO,
            bearer,
            to=client,
            headers=headers,
            environ_base={"REMOTE_ADDR": remote},
            base_url=base_url,
        )
        if response.status_code != 200:
            assert response.get_json()["code"] == "https_required"
        return response.status_code

    return send


@pytest.fixture
def cors_client(make_client: Callable[..., FlaskClient], environ: dict[str, str]) -> FlaskClient:
    return make_client({**environ, "BROKER_CORS_ORIGINS": f"{APP_ORIGIN},https://other.test"})


def test_production_refuses_plain_http_from_afar(
    client: FlaskClient, https_status: Callable[..., int]
) -> None:
    assert https_status(client, remote="203.0.113.5") == 403
    assert https_status(client, remote="203.0.113.5", base_url="https://broker.test") == 200
    assert https_status(client, remote="127.0.0.1") == 200
    assert https_status(client, remote="::1") == 200
    # a client cannot claim HTTPS itself: without a trusted proxy the header is ignored
    assert https_status(client, remote="203.0.113.5", **{"X-Forwarded-Proto": "https"}) == 403


def test_a_trusted_proxy_may_say_https(
    make_client: Callable[..., FlaskClient],
    environ: dict[str, str],
    https_status: Callable[..., int],
) -> None:
    client = make_client({**environ, "BROKER_TRUSTED_PROXIES": "10.0.0.0/8"})
    forwarded = {"X-Forwarded-For": "198.51.100.4", "X-Forwarded-Proto": "https"}
    assert https_status(client, remote="10.0.0.2", **forwarded) == 200
    plain = {"X-Forwarded-For": "198.51.100.4", "X-Forwarded-Proto": "http"}
    assert https_status(client, remote="10.0.0.2", **plain) == 403
    # the same headers from anyone but our proxy are ignored
    assert https_status(client, remote="203.0.113.9", **forwarded) == 403
    # and claiming to be on loopback from afar gets nowhere either
    assert https_status(client, remote="203.0.113.9", **{"X-Forwarded-For": "127.0.0.1"}) == 403


def test_development_profile_allows_plain_http(
    make_client: Callable[..., FlaskClient], policy_file: Path, tmp_path: Path, post: support.Post
) -> None:
    client = make_client(
        {
            "BROKER_PROFILE": "dev",
            "BROKER_POLICY_FILE": str(policy_file),
            "BROKER_DEV_DIR": str(tmp_path / "dev"),
            "BROKER_STATE_URL": f"sqlite:///{tmp_path}/state.db",
        }
    )
    response = post(support.VIDEO, to=client, environ_base={"REMOTE_ADDR": "203.0.113.5"})
    assert response.status_code == 401  # past the HTTPS rule, stopped by authentication


def test_cors_echoes_only_configured_origins(
    cors_client: FlaskClient, caller_token: support.Token, post: support.Post
) -> None:
    bearer = caller_token()
    for origin, allowed in ((APP_ORIGIN, True), ("https://evil.test", False), ("null", False)):
        response = post(support.VIDEO, bearer, to=cors_client, headers={"Origin": origin})
        assert response.status_code == 200
        assert "Origin" in response.headers["Vary"]
        assert response.headers.get("Access-Control-Allow-Origin") == (origin if allowed else None)
        exposed = response.headers.get("Access-Control-Expose-Headers")
        assert exposed == ("Retry-After, X-Request-Id" if allowed else None)


def test_cors_exposes_retry_after_and_the_request_id_on_refusals_too(
    cors_client: FlaskClient, post: support.Post
) -> None:
    response = post(support.VIDEO, "not-a-token", to=cors_client, headers={"Origin": APP_ORIGIN})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert response.headers["Access-Control-Expose-Headers"] == "Retry-After, X-Request-Id"


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
        assert response.headers["Access-Control-Allow-Headers"] == (
            "Authorization, Content-Type, X-Firebase-AppCheck"
        )
        assert response.headers["Access-Control-Max-Age"] == "7200"
    else:
        assert not any(name.startswith("Access-Control-") for name, _ in response.headers)


def test_without_configured_origins_there_is_no_cors(
    caller_token: support.Token, post: support.Post
) -> None:
    response = post(support.VIDEO, caller_token(), headers={"Origin": APP_ORIGIN})
    assert response.status_code == 200
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
    certfile, keyfile = support.self_signed_certificate(tmp_path)
    context = ssl.create_default_context(cafile=str(certfile))
    server = support.start_broker(
        environ, tmp_path, "--certfile", str(certfile), "--keyfile", str(keyfile), context=context
    )
    try:
        response = requests.post(
            f"{server.url}/v1/tokens",
            json=support.VIDEO,
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
    limited_client: FlaskClient, caller_token: Callable[..., str], post_from: Callable[..., int]
) -> None:
    statuses = [
        post_from(
            caller_token(sub=f"user{n}"),
            "198.51.100.1",
            forwarded=f"203.0.113.{n}",
            to=limited_client,
        )
        for n in range(8)
    ]
    assert statuses == [200] * 6 + [429] * 2  # per_ip is 6: every request counted as .100.1


def test_one_trusted_proxy_uses_the_address_it_appended(
    make_client: Callable[..., FlaskClient],
    environ: dict[str, str],
    audit_stream: io.StringIO,
    caller_token: support.Token,
    post_from: Callable[..., int],
) -> None:
    client = make_client(
        {**environ, "BROKER_TRUSTED_PROXIES": "10.0.0.0/8"}, policy=support.LIMITED_POLICY
    )
    for n in range(8):  # eight clients behind two of our proxies: each its own budget
        status = post_from(
            caller_token(sub=f"user{n}"),
            "10.0.0.2",
            forwarded=f"spoof, 203.0.113.{n}, 10.0.0.7",
            to=client,
        )
        assert status == 200
    records = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    assert records[0]["client_ip"] == "203.0.113.0"  # the nearest hop not ours


def test_only_the_proxy_at_its_address_may_forward(
    make_client: Callable[..., FlaskClient],
    environ: dict[str, str],
    caller_token: support.Token,
    post_from: Callable[..., int],
) -> None:
    client = make_client(
        {**environ, "BROKER_TRUSTED_PROXIES": "127.0.0.1"}, policy=support.LIMITED_POLICY
    )
    # A client on 127.0.0.2 rotating X-Forwarded-For gains nothing: per_ip is 6.
    direct = [
        post_from(caller_token(sub=f"a{n}"), "127.0.0.2", forwarded=f"203.0.113.{n}", to=client)
        for n in range(8)
    ]
    assert direct == [200] * 6 + [429] * 2
    # The same through our proxy on 127.0.0.1 is honoured: eight clients, eight budgets.
    proxied = [
        post_from(caller_token(sub=f"b{n}"), "127.0.0.1", forwarded=f"198.51.100.{n}", to=client)
        for n in range(8)
    ]
    assert proxied == [200] * 8


def test_the_old_hop_count_is_refused_with_the_new_form(
    cli: Callable[..., Result], environ: dict[str, str]
) -> None:
    result = cli("check-config", env={**environ, "BROKER_TRUSTED_PROXIES": "1"})
    assert result.exit_code == 2
    assert "BROKER_TRUSTED_PROXIES takes the addresses or networks" in result.output
    assert "10.0.0.0/8,127.0.0.1" in result.output
