"""Verification of one issuer's JWT access tokens against a source of public keys.

SECURITY: the algorithm list is fixed by configuration and asymmetric only; the
header's ``alg`` must also equal the algorithm of the key its ``kid`` names, so a
token cannot pick HMAC with a public key as the secret. Headers that point at keys
(``jku``, ``x5u``, ``jwk``, ``x5c``) are refused, never followed, and so is any
``crit`` extension, since we implement none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from jwt import PyJWK

from service.errors import AuthenticationFailed, Unavailable

MAX_TOKEN_LENGTH = 8192
MAX_KID_LENGTH = 256
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c", "crit", "b64")
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud"]


class KeySource(Protocol):
    """Finds the public key a token's ``kid`` names."""

    def key_for(self, kid: str | None) -> PyJWK:
        """Return the key, or raise ``jwt.PyJWKClientError`` when there is none."""


@dataclass(frozen=True)
class VerifiedToken:
    claims: Mapping[str, Any]
    issued_at: int
    expires_at: int


class IssuerVerifier:
    """Verifies access tokens of one issuer: signature, ``iss``, ``aud``, times."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        algorithms: tuple[str, ...],
        leeway_seconds: int,
        keys: KeySource,
    ) -> None:
        self.issuer = issuer
        self._audience = audience
        self._algorithms = frozenset(algorithms)
        self._leeway = leeway_seconds
        self._keys = keys
        self._decoder = jwt.PyJWT(options={"require": _REQUIRED_CLAIMS})

    def __repr__(self) -> str:
        return f"IssuerVerifier(issuer={self.issuer!r})"

    def verify(self, token: str) -> VerifiedToken:
        """Verify ``token``; raise ``AuthenticationFailed`` (or ``Unavailable``)."""
        header = unverified_header(token)
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise AuthenticationFailed(f"algorithm {str(algorithm)[:16]!r} not allowed")
        for name in _FORBIDDEN_HEADERS:
            if name in header:
                raise AuthenticationFailed(f"header {name!r} is refused")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > MAX_KID_LENGTH):
            raise AuthenticationFailed("malformed kid")
        try:
            key = self._keys.key_for(kid)
        except jwt.PyJWKClientConnectionError:
            raise Unavailable("identity provider keys cannot be fetched") from None
        except jwt.PyJWTError:
            raise AuthenticationFailed("no key for this kid") from None
        if key.algorithm_name != algorithm:
            raise AuthenticationFailed("algorithm does not match the key")
        try:
            claims = self._decoder.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self.issuer,
                leeway=self._leeway,
            )
        except jwt.PyJWTError as error:
            raise AuthenticationFailed(type(error).__name__) from None
        # PyJWT has checked that both are numbers, but lets a boolean pass as one.
        if isinstance(claims["iat"], bool) or isinstance(claims["exp"], bool):
            raise AuthenticationFailed("iat or exp is a boolean")
        return VerifiedToken(
            claims=claims, issued_at=int(claims["iat"]), expires_at=int(claims["exp"])
        )


def unverified_header(token: str) -> dict[str, Any]:
    """The header of a compact JWS, after shape checks; raise ``AuthenticationFailed``."""
    _check_shape(token)
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthenticationFailed("undecodable header") from None


def unverified_issuer(token: str) -> str | None:
    """The ``iss`` claim, unverified, only to choose which verifier to use."""
    _check_shape(token)
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise AuthenticationFailed("undecodable payload") from None
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else None


def _check_shape(token: str) -> None:
    if len(token) > MAX_TOKEN_LENGTH or not _COMPACT_JWS.fullmatch(token):
        raise AuthenticationFailed("not a compact JWS")
