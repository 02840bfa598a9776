"""One error tree, and the one handler that renders every error as problem+json.

``BrokerError`` is the base of everything the broker raises on purpose. Two families
hang below it: ``ConfigurationError`` (start-up: settings or policy are unusable) and
``RequestRefused`` (one request is refused; it carries its HTTP status and a stable
machine code). The ``reason`` of a refusal is for the audit record only: it is never
rendered into a response.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import ClassVar

import werkzeug.exceptions
from flask import Flask, Response, g, json
from werkzeug.exceptions import HTTPException

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:token-broker:problem:"

log = logging.getLogger("token_broker")


class BrokerError(Exception):
    """Base of every error the broker raises on purpose."""


class ConfigurationError(BrokerError):
    """Raised at start-up when settings or policy are unusable; lists every problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


class MintingError(BrokerError):
    """Raised when a plan cannot become a valid Twilio token: a bug upstream of minting."""


class TwilioApiError(BrokerError):
    """Raised when Twilio's REST API refuses or cannot be reached; the message is Twilio's."""


class RequestRefused(BrokerError):
    """Raised when one request is refused. ``reason`` goes to the audit record only."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    detail: ClassVar[str] = "The server could not complete the request."
    #: seconds a client should wait before asking again (RFC 9110 ``Retry-After``), where
    #: waiting helps: every 503 says it
    retry_after: ClassVar[int | None] = None

    def __init__(self, reason: str = "", *, headers: dict[str, str] | None = None) -> None:
        self.reason = reason or self.code
        self.headers = dict(headers or {})
        if self.retry_after is not None:
            self.headers.setdefault("Retry-After", str(self.retry_after))
        super().__init__(self.reason)


class InvalidRequest(RequestRefused):
    """Raised when the request is outside the contract (shape, types, values)."""

    status = 400
    code = "invalid_request"
    detail = "The request does not match the API contract."


class InvalidJson(InvalidRequest):
    """Raised when the body is not strict JSON (syntax, duplicate keys, NaN, Infinity)."""

    code = "invalid_json"
    detail = "The body is not valid JSON."


class UnknownField(InvalidRequest):
    """Raised when the body names a field the caller may not send."""

    code = "unknown_field"
    detail = "The body contains a field that is not accepted."


class InvalidTtl(InvalidRequest):
    """Raised when ``ttl`` is not a plain integer within the allowed range."""

    code = "invalid_ttl"
    detail = "ttl must be an integer number of seconds within the allowed range."


class InvalidRoom(InvalidRequest):
    """Raised when a video room name is empty, too long or has forbidden characters."""

    code = "invalid_room"
    detail = "The room name is not acceptable."


class AuthenticationFailed(RequestRefused):
    """Raised for any caller-authentication failure; the specific reason is audited only."""

    status = 401
    code = "invalid_token"
    detail = "The bearer credential is missing or not valid."

    def __init__(self, reason: str) -> None:
        super().__init__(reason, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


class Forbidden(RequestRefused):
    """Base of refusals by policy or revocation; raised itself for any other refusal."""

    status = 403
    code = "forbidden"
    detail = "This request is not allowed."


class GrantNotAllowed(Forbidden):
    """Raised when policy does not give the caller a requested grant."""

    code = "grant_not_allowed"
    detail = "A requested grant is not allowed for this caller."


class RoomNotAllowed(Forbidden):
    """Raised when the requested room matches none of the caller's room patterns."""

    code = "room_not_allowed"
    detail = "The requested room is not allowed for this caller."


class WorkerNotFound(Forbidden):
    """Raised when no TaskRouter Worker belongs to the caller (claim or friendly name)."""

    code = "worker_not_found"
    detail = "No TaskRouter Worker belongs to this caller."


class RoomConflict(RequestRefused):
    """Raised when the room is in progress with settings other than the policy's."""

    status = 409
    code = "room_conflict"
    detail = "The room is in progress with other settings than the policy gives it."


class HttpsRequired(Forbidden):
    """Raised in production for a token request that did not arrive over HTTPS."""

    code = "https_required"
    detail = "Tokens are issued only over HTTPS."


class InvalidSignature(Forbidden):
    """Raised for a webhook request without a valid ``X-Twilio-Signature``."""

    code = "invalid_signature"
    detail = "The request is not signed by Twilio for this URL."


class Replayed(Forbidden):
    """Raised for a signed webhook request that was acted on before."""

    code = "replayed"
    detail = "This signed request was seen before; it is acted on once."


class AttestationRequired(Forbidden):
    """Raised when a grant's rule requires app attestation and the request has no valid
    Firebase App Check token."""

    code = "attestation_required"
    detail = "These grants need a valid app attestation (X-Firebase-AppCheck)."


class AttestationReplayed(Forbidden):
    """Raised when a limited-use App Check token is presented a second time."""

    code = "attestation_replayed"
    detail = "This app attestation was used before; it is good for one request."


class Revoked(Forbidden):
    """Raised when the caller's session was issued before a revocation of it."""

    code = "revoked"
    detail = "This session has been revoked; sign in again."


class NotFound(RequestRefused):
    """Raised for an unknown path."""

    status = 404
    code = "not_found"
    detail = "There is nothing at this path."


class MethodNotAllowed(RequestRefused):
    """Raised for a known path with a method it does not accept."""

    status = 405
    code = "method_not_allowed"
    detail = "This method is not allowed on this path."


class RequestTimeout(RequestRefused):
    """Raised (by the serving worker) when a request body does not arrive in time."""

    status = 408
    code = "request_timeout"
    detail = "The request body did not arrive in time."


class PayloadTooLarge(RequestRefused):
    """Raised when the body is over the size limit."""

    status = 413
    code = "payload_too_large"
    detail = "The body is too large."


class UnsupportedMediaType(RequestRefused):
    """Raised when the body is not ``application/json``."""

    status = 415
    code = "unsupported_media_type"
    detail = "The body must be application/json."


class RateLimited(RequestRefused):
    """Raised when a budget is spent; ``Retry-After`` says when to come back."""

    status = 429
    code = "rate_limited"
    detail = "Too many requests; retry later."

    def __init__(self, reason: str, *, retry_after: int) -> None:
        super().__init__(reason, headers={"Retry-After": str(max(1, retry_after))})


class IssuancePaused(RequestRefused):
    """Raised while an operator has paused all issuance (the kill switch)."""

    status = 503
    code = "issuance_paused"
    detail = "Token issuance is paused by the operator."
    retry_after = 60  # until an operator resumes: minutes, often; asking every minute is enough


class Unavailable(RequestRefused):
    """Raised when a dependency (identity provider keys, state store) cannot be reached."""

    status = 503
    code = "unavailable"
    detail = "The service is temporarily unavailable."
    retry_after = 5  # an outage of a dependency is usually seconds (a failover, a restart)

    def __init__(
        self, reason: str = "", *, dependency: str = "state", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(reason, headers=headers)
        #: which dependency failed (a metrics label: a fixed name, never a value)
        self.dependency = dependency


_WERKZEUG_EQUIVALENTS: dict[int, type[RequestRefused]] = {
    400: InvalidRequest,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    500: RequestRefused,
    503: Unavailable,
}


def error_codes() -> dict[int, list[str]]:
    """Every status the broker answers with a problem, and its codes: from the classes."""
    codes: dict[int, set[str]] = {}
    pending: list[type[RequestRefused]] = [RequestRefused]
    while pending:
        refusal = pending.pop()
        codes.setdefault(refusal.status, set()).add(refusal.code)
        pending.extend(refusal.__subclasses__())
    return {status: sorted(found) for status, found in sorted(codes.items())}


def problem_response(error: RequestRefused) -> Response:
    """Render a refusal as RFC 9457 problem details; nothing internal is included."""
    return _problem(error.status, error.code, error.detail, error.headers)


def problem_body(status: int, code: str, detail: str, request_id: str) -> str:
    """RFC 9457 problem details as JSON: nothing internal, a stable code, the request id."""
    return json.dumps(
        {
            "type": PROBLEM_TYPE_PREFIX + code,
            "title": HTTPStatus(status).phrase,
            "status": status,
            "code": code,
            "detail": detail,
            "request_id": request_id,
        }
    )


def _problem(status: int, code: str, detail: str, headers: dict[str, str]) -> Response:
    body = problem_body(status, code, detail, g.get("request_id", ""))
    response = Response(body, status=status, mimetype=PROBLEM_JSON)
    response.headers.update(headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def _render_http_exception(error: HTTPException) -> Response:
    """Werkzeug's errors keep their own status; ours stand in where one exists."""
    status = error.code or 500
    headers = {}
    if isinstance(error, werkzeug.exceptions.MethodNotAllowed) and error.valid_methods:
        headers["Allow"] = ", ".join(error.valid_methods)
    refusal_class = _WERKZEUG_EQUIVALENTS.get(status)
    if refusal_class is not None:
        return problem_response(refusal_class(headers=headers))
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        status, phrase = 500, HTTPStatus.INTERNAL_SERVER_ERROR.phrase
    code = phrase.lower().replace(" ", "_").replace("-", "_").replace("'", "")
    return _problem(status, code, f"{phrase}.", headers)


def _render_unexpected(error: Exception) -> Response:
    # A bug: log the type and request id for the operator, tell the client nothing.
    log.error(
        "unhandled %s in request %s", type(error).__name__, g.get("request_id", ""), exc_info=error
    )
    return problem_response(RequestRefused())


def register_error_handlers(app: Flask) -> None:
    """Render every error (ours, Werkzeug's, unexpected ones) as problem+json."""
    app.register_error_handler(RequestRefused, problem_response)
    app.register_error_handler(HTTPException, _render_http_exception)
    app.register_error_handler(Exception, _render_unexpected)
