"""POST /v1/tokens: content checks, then the issuer decides."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, json, request

from service.errors import UnsupportedMediaType
from service.http import broker
from service.issuer import RequestContext

blueprint = Blueprint("tokens", __name__)


@blueprint.post("/v1/tokens")
def create_token() -> Response:
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if request.mimetype != "application/json" or charset != "utf-8":
        raise UnsupportedMediaType("content type is not application/json")
    # MAX_CONTENT_LENGTH makes Werkzeug refuse a larger body (413), streamed or not.
    body = request.get_data(cache=False)
    context = RequestContext(request_id=g.request_id, client_ip=request.remote_addr or "")
    token = broker(current_app).issuer.issue(request.headers.get("Authorization"), body, context)
    payload = {
        "token": token.jwt,
        "identity": token.identity,
        "expires_at": token.expires_at.isoformat().replace("+00:00", "Z"),
        "ttl": token.ttl,
        "grants": list(token.grants),
    }
    response = Response(json.dumps(payload), mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response
