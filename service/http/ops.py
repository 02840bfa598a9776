"""Operations endpoints: liveness, readiness and the API document."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, json

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
    results = {"settings": True, "policy": True, **broker(current_app).issuer.readiness()}
    ready = all(results.values())
    checks = {name: "ok" if passed else "failed" for name, passed in results.items()}
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    return Response(json.dumps(body), status=200 if ready else 503, mimetype="application/json")


@blueprint.get("/openapi.json")
def openapi() -> Response:
    return Response(_OPENAPI_JSON, mimetype="application/json")
