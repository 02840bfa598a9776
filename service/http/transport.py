"""How may a network or a browser reach us? HTTPS for tokens, CORS, security headers.

- Production issues tokens only over HTTPS: TLS at gunicorn, or one of our proxies that
  says so (``X-Forwarded-Proto`` from a peer in ``BROKER_TRUSTED_PROXIES``), or a caller
  on loopback (a proxy or sidecar on the same host).
- CORS only for the exact origins in ``BROKER_CORS_ORIGINS``: the origin is echoed with
  ``Vary: Origin``; a preflight may ask for ``POST`` with ``Authorization``,
  ``Content-Type`` and the App Check header only; every answer exposes ``Retry-After``
  and ``X-Request-Id`` to the page. Any other origin, or ``null``, gets no CORS header.
- Every response carries headers that keep browsers from sniffing, framing or leaking.
"""

from __future__ import annotations

import ipaddress

from flask import Flask, Request, Response, request

from service.base.errors import HttpsRequired
from service.callers.attestation import HEADER as APP_CHECK_HEADER
from service.config.settings import Settings

TOKENS_PATH = "/v1/tokens"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
HSTS = "max-age=63072000"
#: What a browser may send: the caller's token, JSON, and the App Check token.
ALLOWED_HEADERS = ("Authorization", "Content-Type", APP_CHECK_HEADER)
PREFLIGHT_HEADERS = frozenset(name.lower() for name in ALLOWED_HEADERS)
#: How long a browser may reuse a preflight: two hours, the most Chromium keeps one (a
#: token refreshed every few minutes then costs one preflight in many).
PREFLIGHT_MAX_AGE = "7200"
#: What a page may read of an answer beside its body: when to retry (429), and the
#: request id to quote to support.
EXPOSED_HEADERS = "Retry-After, X-Request-Id"


def require_https(settings: Settings, incoming: Request) -> None:
    """Refuse a production token request that came over plain HTTP from afar."""
    if settings.profile != "production" or incoming.is_secure:
        return
    if not _is_loopback(incoming.remote_addr):
        raise HttpsRequired("plain HTTP from a non-loopback address")


def init_app(app: Flask, settings: Settings) -> None:
    """Attach the CORS preflight answer and the response headers to ``app``."""
    origins = frozenset(settings.cors_origins)

    @app.before_request
    def answer_preflight() -> Response | None:
        if request.method != "OPTIONS" or request.path != TOKENS_PATH:
            return None
        response = Response(status=204)
        origin = request.headers.get("Origin", "")
        asked_method = request.headers.get("Access-Control-Request-Method", "")
        asked_headers = {
            name.strip().lower()
            for name in request.headers.get("Access-Control-Request-Headers", "").split(",")
            if name.strip()
        }
        if origin in origins and asked_method == "POST" and asked_headers <= PREFLIGHT_HEADERS:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "POST"
            response.headers["Access-Control-Allow-Headers"] = ", ".join(ALLOWED_HEADERS)
            response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        return response

    @app.after_request
    def add_headers(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        if request.is_secure:
            response.headers["Strict-Transport-Security"] = HSTS
        if origins and request.path == TOKENS_PATH:
            response.vary.add("Origin")
            origin = request.headers.get("Origin", "")
            if origin in origins and request.method == "POST":
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
