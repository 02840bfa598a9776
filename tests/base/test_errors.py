"""One error tree: each refusal's status and code, Werkzeug's errors with their own status."""

from __future__ import annotations

import pytest
import werkzeug.exceptions
from flask import Flask, abort

from service.base.errors import (
    BrokerError,
    ConfigurationError,
    Forbidden,
    MintingError,
    RateLimited,
    RequestRefused,
    TwilioApiError,
    error_codes,
    register_error_handlers,
)


@pytest.fixture
def app() -> Flask:
    app = Flask("errors-test")
    register_error_handlers(app)

    @app.get("/abort/<int:status>")
    def aborting(status: int) -> str:
        abort(status)

    @app.get("/forbidden")
    def forbidden() -> str:
        raise Forbidden("a reason for the audit only")

    return app


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "invalid_request"),
        (403, "forbidden"),
        (404, "not_found"),
        (408, "request_timeout"),
        (413, "payload_too_large"),
        (416, "requested_range_not_satisfiable"),
        (418, "im_a_teapot"),
        (429, "too_many_requests"),
        (431, "request_header_fields_too_large"),
        (501, "not_implemented"),
        (503, "unavailable"),
    ],
)
def test_werkzeug_errors_keep_their_own_status(app: Flask, status: int, code: str) -> None:
    response = app.test_client().get(f"/abort/{status}")
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == code
    assert response.headers["Cache-Control"] == "no-store"


def test_forbidden_has_its_own_code_and_keeps_its_reason_to_itself(app: Flask) -> None:
    response = app.test_client().get("/forbidden")
    assert response.status_code == 403
    assert response.get_json()["code"] == "forbidden"
    assert "a reason" not in response.get_data(as_text=True)


def test_every_refusal_class_is_in_the_derived_codes() -> None:
    codes = error_codes()
    pending: list[type[RequestRefused]] = [RequestRefused]
    while pending:
        refusal = pending.pop()
        assert refusal.code in codes[refusal.status]
        pending.extend(refusal.__subclasses__())
    assert codes[403].count("forbidden") == 1
    assert "internal_error" in codes[500]


def test_every_error_of_ours_is_a_broker_error() -> None:
    for error in (ConfigurationError(["x"]), MintingError("x"), TwilioApiError("x"), Forbidden()):
        assert isinstance(error, BrokerError)
    assert RateLimited("spent", retry_after=0).headers["Retry-After"] == "1"
    assert issubclass(werkzeug.exceptions.NotFound, werkzeug.exceptions.HTTPException)
