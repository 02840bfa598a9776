"""POST /v1/tokens: content checks, then the issuer decides."""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, g, request
from werkzeug.http import parse_options_header

from service.base.errors import UnsupportedMediaType
from service.callers.attestation import HEADER as APP_CHECK_HEADER
from service.http import broker
from service.http.transport import require_https
from service.tokens.issuance import RequestContext

blueprint = Blueprint("tokens", __name__)
_NO_STORE = {"Cache-Control": "no-store"}


@blueprint.post("/v1/tokens")
def create_token() -> Response:
    found = broker(current_app)
    require_https(found.settings, request)
    if not _is_json(request.headers.get("Content-Type", "")):
        raise UnsupportedMediaType("content type is not application/json")
    # MAX_CONTENT_LENGTH makes Werkzeug refuse a larger body (413), streamed or not.
    body = request.get_data(cache=False)
    context = RequestContext(
        request_id=g.request_id,
        client_ip=request.remote_addr or "",
        app_check=request.headers.get(APP_CHECK_HEADER),
    )
    token = found.issuance.issue(request.headers.get("Authorization"), body, context)
    payload = {
        "token": token.jwt,
        "identity": token.identity,
        "expires_at": token.expires_at.isoformat().replace("+00:00", "Z"),
        "ttl": token.ttl,
        "grants": list(token.grants),
    }
    return Response(json.dumps(payload), mimetype="application/json", headers=_NO_STORE)


def _is_json(content_type: str) -> bool:
    if content_type == "application/json":  # the common case, without parsing
        return True
    mimetype, options = parse_options_header(content_type)
    return mimetype == "application/json" and options.get("charset", "utf-8").lower() == "utf-8"
