"""Liveness, readiness and metrics."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from service.http import broker


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
