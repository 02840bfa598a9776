"""Operations endpoints and the OpenAPI document, checked against real responses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
from flask.testing import FlaskClient
from openapi_spec_validator import validate
from werkzeug.test import TestResponse

from service.http import broker
from service.http.openapi import ERROR_CODES, OPENAPI_DOCUMENT


def schema(name: str) -> dict[str, Any]:
    return {
        **OPENAPI_DOCUMENT["components"]["schemas"][name],
        "components": OPENAPI_DOCUMENT["components"],
    }


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


def test_openapi_document_is_valid_and_served(client: FlaskClient) -> None:
    validate(OPENAPI_DOCUMENT)
    assert client.get("/openapi.json").get_json() == OPENAPI_DOCUMENT


def test_responses_match_the_document(
    post: Callable[..., TestResponse], caller_token: Callable[..., str]
) -> None:
    ok = post({"grants": {"video": {"room": "lobby"}}}, caller_token())
    jsonschema.validate(ok.get_json(), schema("TokenResponse"))
    for response in (
        post({"grants": {}}, caller_token()),
        post({"grants": {"video": {"room": "lobby"}}}, "not-a-token"),
        post({"grants": {"voice": {}}}, caller_token()),
    ):
        jsonschema.validate(response.get_json(), schema("Problem"))
        assert response.get_json()["code"] in ERROR_CODES[response.status_code]


def test_example_request_matches_the_request_schema() -> None:
    example = {
        "grants": {"video": {"room": "standup"}, "voice": {"push": "apns"}, "chat": {}, "sync": {}},
        "ttl": 900,
    }
    jsonschema.validate(example, schema("TokenRequest"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"grants": {"video": {}}}, schema("TokenRequest"))
