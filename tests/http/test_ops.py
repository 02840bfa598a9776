"""Liveness, readiness and metrics."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service import create_app
from service.configuration import load_configuration
from service.http import broker


def build(environment: dict[str, str], tmp_path: Path, audit_stream: io.StringIO) -> Flask:
    return create_app(
        load_configuration(environment, dotenv_file=tmp_path / "none"), audit_stream=audit_stream
    )


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_names_its_checks(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["checks"] == {"settings": "ok", "policy": "ok", "signing_key": "ok", "state": "ok"}
    assert body["paused"] is None


def test_readyz_fails_without_a_signing_key(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    issuer = broker(client.application).issuance
    monkeypatch.setattr(issuer, "readiness", lambda: {"signing_key": False})
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["signing_key"] == "failed"


def test_metrics_require_the_token_when_set(
    environ: dict[str, str], tmp_path: Path, audit_stream: io.StringIO
) -> None:
    client = build(
        {**environ, "BROKER_METRICS_TOKEN": "m" * 32}, tmp_path, audit_stream
    ).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer " + "m" * 32})
    assert ok.status_code == 200
    assert "token_broker_request_seconds" in ok.get_data(as_text=True)
