"""Verification of one issuer's JWT access tokens against a source of public keys.

SECURITY: the algorithm list is fixed by configuration and asymmetric only; the
header's ``alg`` must also equal the algorithm of the key its ``kid`` names, so a
token cannot pick HMAC with a public key as the secret. Headers that point at keys
(``jku``, ``x5u``, ``jwk``, ``x5c``) are refused, never followed, and so is any
``crit`` extension, since we implement none.

Who the token is for: its ``aud`` must name one of the audiences, or its ``client_id``,
``azp`` or ``cid`` one of the client ids (providers whose access tokens carry no
audience: Cognito, Clerk, Keycloak's defaults). ID tokens are not access tokens: with
``required_typ`` (``at+jwt``, RFC 9068) every token must say what it is, and the ID
tokens that say so in a claim (Cognito's ``token_use``, Keycloak's ``typ``) are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from jwt import PyJWK

from service.base.errors import AuthenticationFailed, Unavailable

MAX_TOKEN_LENGTH = 8192
MAX_KID_LENGTH = 256
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c", "crit", "b64")
_REQUIRED_CLAIMS = ["exp", "iat", "iss"]
CLIENT_CLAIMS = ("client_id", "azp", "cid")


class KeySource(Protocol):
    """Finds the public key a token's ``kid`` names."""

    def key_for(self, kid: str | None) -> PyJWK:
        """Return the key, or raise ``jwt.PyJWKClientError`` when there is none."""

    def ready(self) -> bool:
        """True when keys are at hand (a readiness check)."""


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
        audiences: tuple[str, ...],
        algorithms: tuple[str, ...],
        leeway_seconds: int,
        keys: KeySource,
        client_ids: tuple[str, ...] = (),
        required_typ: str | None = None,
    ) -> None:
        self.issuer = issuer
        self.keys = keys
        self._audiences = frozenset(audiences)
        self._client_ids = frozenset(client_ids)
        self._required_typ = (
            required_typ.lower().removeprefix("application/") if required_typ else None
        )
        self._algorithms = frozenset(algorithms)
        self._leeway = leeway_seconds
        self._decoder = jwt.PyJWT(options={"require": _REQUIRED_CLAIMS, "verify_aud": False})

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
        self._check_typ(header)
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > MAX_KID_LENGTH):
            raise AuthenticationFailed("malformed kid")
        try:
            key = self.keys.key_for(kid)
        except jwt.PyJWKClientConnectionError:
            raise Unavailable(
                "identity provider keys cannot be fetched", dependency="identity_provider"
            ) from None
        except jwt.PyJWTError:
            raise AuthenticationFailed("no key for this kid") from None
        if key.algorithm_name != algorithm:
            raise AuthenticationFailed("algorithm does not match the key")
        try:
            claims = self._decoder.decode(
                token, key=key, algorithms=[algorithm], issuer=self.issuer, leeway=self._leeway
            )
        except jwt.PyJWTError as error:
            raise AuthenticationFailed(type(error).__name__) from None
        self._check_audience(claims)
        _check_not_an_id_token(claims)
        # PyJWT has checked that both are numbers, but lets a boolean pass as one.
        if isinstance(claims["iat"], bool) or isinstance(claims["exp"], bool):
            raise AuthenticationFailed("iat or exp is a boolean")
        return VerifiedToken(
            claims=claims, issued_at=int(claims["iat"]), expires_at=int(claims["exp"])
        )

    def _check_typ(self, header: Mapping[str, Any]) -> None:
        if self._required_typ is None:
            return
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower().removeprefix("application/") != (
            self._required_typ
        ):
            raise AuthenticationFailed(f"typ is not {self._required_typ}")

    def _check_audience(self, claims: Mapping[str, Any]) -> None:
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if isinstance(audiences, list) and self._audiences.intersection(
            item for item in audiences if isinstance(item, str)
        ):
            return
        for name in CLIENT_CLAIMS:
            client = claims.get(name)
            if isinstance(client, str) and client in self._client_ids:
                return
        raise AuthenticationFailed("audience and client not accepted")


def _check_not_an_id_token(claims: Mapping[str, Any]) -> None:
    """An ID token says who signed in to an app; it is no credential for an API."""
    if claims.get("token_use", "access") != "access" or claims.get("typ") == "ID":
        raise AuthenticationFailed("an ID token, not an access token")


def client_of(claims: Mapping[str, Any]) -> str | None:
    """The app (OAuth client) a token was issued to: ``azp``, ``client_id`` or ``cid``."""
    for name in ("azp", "client_id", "cid"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    return None


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
