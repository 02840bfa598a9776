"""Where are the provider's keys? ``OIDC_ISSUER`` alone finds them (OpenID discovery).

The issuer's ``/.well-known/openid-configuration`` names its ``jwks_uri``; the document
must name exactly the configured issuer (a typo, or a proxy answering for another
provider, is caught here), and the keys' URL must be https (plain http only on
loopback). An explicit JWKS URL (``OIDC_JWKS_URL``, a provider's ``jwks_url``) wins.
"""

from __future__ import annotations

import threading

from service.callers.fetch import DEADLINE_SECONDS, FetchFailed, fetch_json
from service.config import variables

WELL_KNOWN = "/.well-known/openid-configuration"


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + WELL_KNOWN


def discover_jwks_url(issuer: str, *, deadline_seconds: float = DEADLINE_SECONDS) -> str:
    """The issuer's ``jwks_uri``; ``FetchFailed`` saying exactly what is wrong."""
    url = discovery_url(issuer)
    document = fetch_json(url, deadline_seconds=deadline_seconds)
    if not isinstance(document, dict):
        raise FetchFailed(f"{url} is not an OpenID discovery document")
    named = document.get("issuer")
    if named != issuer:
        raise FetchFailed(
            f"{url} names the issuer {named!r}, not {issuer!r}: check OIDC_ISSUER (exactly, "
            "trailing slash included)"
        )
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise FetchFailed(f"{url} names no jwks_uri")
    try:
        return variables.key_url(jwks_uri)
    except ValueError as error:
        raise FetchFailed(f"{url}: jwks_uri {jwks_uri!r} {error}") from None


class JwksLocation:
    """The JWKS URL: given, or discovered once (and again only while discovery fails)."""

    def __init__(self, issuer: str, jwks_url: str | None) -> None:
        self._issuer = issuer
        self._url = jwks_url
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JwksLocation({self._url or discovery_url(self._issuer)!r})"

    def __call__(self) -> str:
        with self._lock:
            if self._url is None:
                self._url = discover_jwks_url(self._issuer)
            return self._url
