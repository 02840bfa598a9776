"""Schemathesis drives the app from its own OpenAPI document: no 5xx, and every response
(status, content type, body, headers) is one the document describes."""

from __future__ import annotations

import io
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi import checks as openapi_checks

from service import create_app
from service.configuration import Configuration

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
