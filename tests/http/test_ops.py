"""Liveness, readiness and metrics."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from service.http import broker
from tests import support


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_names_its_checks(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["checks"] == {
        "settings": "ok",
        "policy": "ok",
        "signing_key": "ok",
        "state": "ok",
        "identity_provider": "ok",
    }
    assert body["paused"] is False


def test_readyz_fails_without_a_signing_key(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    issuance = broker(client.application).issuance
    monkeypatch.setattr(issuance, "readiness", lambda: {"signing_key": False})
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["signing_key"] == "failed"


def test_metrics_require_the_token_when_set(
    environ: dict[str, str], make_client: Callable[..., FlaskClient]
) -> None:
    client = make_client({**environ, "BROKER_METRICS_TOKEN": "m" * 32})
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer " + "m" * 32})
    assert ok.status_code == 200
    assert "token_broker_request_seconds" in ok.get_data(as_text=True)


def test_metrics_show_how_long_the_fleet_has_signed_with_the_key(
    client: FlaskClient, clock: support.FakeClock, make_client: Callable[..., FlaskClient]
) -> None:
    """The age counts from the fleet's first sight of the key (the state store), so a
    restart or another instance does not make it young again."""
    assert key_age(client) == 0
    clock.advance(95 * 86400)
    assert key_age(client) == 95 * 86400
    another = make_client()  # another instance on the same store, started just now
    assert key_age(another) == 95 * 86400
    assert client.get("/readyz").status_code == 200  # an old key is a warning, not an outage


def key_age(client: FlaskClient) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    [line] = [line for line in text.splitlines() if line.startswith("token_broker_signing_key_age")]
    return float(line.split()[-1])
