"""Operations endpoints: liveness, readiness and the API document."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, json, request
from prometheus_client import CONTENT_TYPE_LATEST

from service.base.errors import AuthenticationFailed
from service.http import broker
from service.http.openapi import OPENAPI_DOCUMENT

blueprint = Blueprint("ops", __name__)
_OPENAPI_JSON = json.dumps(OPENAPI_DOCUMENT)


@blueprint.get("/healthz")
def healthz() -> Response:
    return Response('{"status":"ok"}', mimetype="application/json")


@blueprint.get("/readyz")
def readyz() -> Response:
    # Settings and policy were validated by create_app, or there would be no app.
    issuance = broker(current_app).issuance
    results = {"settings": True, "policy": True, **issuance.readiness()}
    ready = all(results.values())
    checks = {name: "ok" if passed else "failed" for name, passed in results.items()}
    body: dict[str, object] = {"status": "ready" if ready else "not_ready", "checks": checks}
    # Paused is not "not ready": the instance is healthy and answers issuance_paused. The
    # reason is for the audit trail and the command line, never for anyone who asks.
    body["paused"] = issuance.paused()
    return Response(json.dumps(body), status=200 if ready else 503, mimetype="application/json")


@blueprint.get("/metrics")
def metrics() -> Response:
    found = broker(current_app)
    expected = found.settings.metrics_token
    if expected is not None:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode(), expected.encode()
        ):
            raise AuthenticationFailed("metrics token missing or wrong")
    found.issuance.readiness()  # the dependencies' gauge, as /readyz sees them
    found.issuance.paused()  # refreshes the paused gauge even when no token is asked for
    found.issuance.signing_key_age()  # and the key's age
    found.issuance.account_events()  # and the fleet's count of account events
    return Response(found.metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)


@blueprint.get("/openapi.json")
def openapi() -> Response:
    return Response(_OPENAPI_JSON, mimetype="application/json")
