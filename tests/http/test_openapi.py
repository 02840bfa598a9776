"""The OpenAPI document: valid, served, and what the running app answers."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
import schemathesis
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis import checks
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi import checks as openapi_checks
from werkzeug.test import TestResponse

from service import create_app
from service.http.openapi import ERROR_CODES, OPENAPI_DOCUMENT
from service.serving.configuration import Configuration


def schema(name: str) -> dict[str, Any]:
    return {
        **OPENAPI_DOCUMENT["components"]["schemas"][name],
        "components": OPENAPI_DOCUMENT["components"],
    }


CONTRACT = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
]


def on_loopback(configuration: Configuration) -> Any:
    """The app as a caller on the same host sees it (schemathesis sets no REMOTE_ADDR);
    production answers only HTTPS or loopback, and we want past that rule."""
    app = create_app(configuration, audit_stream=io.StringIO())

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        environ.setdefault("REMOTE_ADDR", "127.0.0.1")
        return app(environ, start_response)

    return wsgi


@pytest.fixture
def api(configuration: Configuration) -> Any:
    return schemathesis.openapi.from_wsgi("/openapi.json", on_loopback(configuration))


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


def test_every_response_is_in_the_document(api: Any, caller_token: Any) -> None:
    token = caller_token()
    seen: set[int] = set()
    operations = [result.ok() for result in api.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /v1/tokens",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
    }  # (schemathesis leaves out the document's own path)
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=60 if operation.path == "/v1/tokens" else 5,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def exercise(case: Any) -> None:
            # Half the cases carry a valid caller token, so policy and validation answer too.
            headers = {"Authorization": f"Bearer {token}"} if hash(repr(case.body)) % 2 else {}
            seen.add(case.call_and_validate(headers=headers, checks=CONTRACT).status_code)

        exercise()
    assert {200, 400, 401} <= seen  # it got past validation and authentication, too


def test_the_contract_checks_can_fail(configuration: Configuration) -> None:
    """A response the document does not describe is caught (the checks are not idle)."""
    app = on_loopback(configuration)
    document = schemathesis.openapi.from_wsgi("/openapi.json", app).raw_schema
    del document["paths"]["/v1/tokens"]["post"]["responses"]["401"]
    narrowed = schemathesis.openapi.from_dict(document)
    narrowed.app = app
    operation = narrowed["/v1/tokens"]["POST"]
    case = operation.Case(body={"grants": {"sync": {}}}, media_type="application/json")
    with pytest.raises(FailureGroup) as failed:
        case.call_and_validate(checks=CONTRACT)
    assert "Undocumented status code" in str(failed.value)


def test_every_429_and_503_documents_retry_after() -> None:
    """Clients are told when to come back, and the document says they are."""
    found = [
        (path, method, status, answer)
        for path, operations in OPENAPI_DOCUMENT["paths"].items()
        for method, operation in operations.items()
        for status, answer in operation.get("responses", {}).items()
        if status in ("429", "503") and "problem" in str(answer.get("content", ""))
    ]
    assert found
    for path, method, status, answer in found:
        header = answer.get("headers", {}).get("Retry-After")
        assert header is not None, (path, method, status)
        assert header["schema"]["type"] == "integer"
