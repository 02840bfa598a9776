"""Who is calling? Turns an ``Authorization`` header into a verified ``Caller``.

The identity always comes from a verified claim, never from the request. A repeated
bearer token is verified once and then served from a small cache keyed by its SHA-256
digest: bounded in size and never used at or past the token's ``exp``.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, NewType

from service.callers.client_keys import ClientKeyFile, looks_like_client_key
from service.callers.verifier import IssuerVerifier, unverified_issuer
from service.clock import Clock, epoch_seconds
from service.errors import AuthenticationFailed

Identity = NewType("Identity", str)
CallerKind = Literal["app_user", "client"]
CLIENT_KEY_ISSUER = "client-key"
#: A client key does not expire by itself; its caller is never cached.
_NEVER = 2**62
CACHE_SIZE = 4096


@dataclass(frozen=True)
class Caller:
    """A verified caller. ``claims`` are the verified claims of its credential.

    An app user's identity is its verified claim. A server-to-server caller (``kind``
    "client", ``client`` its key's name) names the identity it acts for in its request;
    until ``acting_as`` sets it, its identity is empty and nothing is issued for it.
    """

    identity: Identity
    claims: Mapping[str, Any]
    kind: CallerKind
    issuer: str
    #: when the caller's credential was issued (``iat``)
    issued_at: int
    expires_at: int
    credential_fingerprint: str
    #: the app (OAuth client) the session belongs to (``azp``, ``client_id``), or the
    #: client key's name
    client: str | None = None
    #: when the session signed in (``auth_time``, else ``iat``): a revocation refuses every
    #: session that signed in at or before it, its refreshed access tokens too. None for a
    #: client key, which never signs in: any revocation of its identity refuses it.
    signed_in_at: int | None = None

    def acting_as(self, identity: str) -> Caller:
        """This client caller, acting for ``identity`` (policy still decides if it may)."""
        return replace(self, identity=Identity(identity))

    @property
    def client_subject(self) -> str | None:
        """The caller's app, in its own namespace: ``app:ID`` (an OAuth client of the
        identity provider) or ``key:NAME`` (a client key); never the one for the other."""
        if self.client is None:
            return None
        return f"key:{self.client}" if self.kind == "client" else f"app:{self.client}"

    @property
    def revocation_subjects(self) -> tuple[str, ...]:
        """What a revocation of this caller may name: its identity, and its app."""
        identity = f"identity:{self.identity}"
        if self.kind == "app_user" and self.client is not None:
            return identity, f"app:{self.client}"
        return (identity,)


def _sign_in(claims: Mapping[str, Any], issued_at: int) -> int:
    """``auth_time`` when the provider says when the user signed in, else ``iat``."""
    auth_time = claims.get("auth_time")
    if isinstance(auth_time, int | float) and not isinstance(auth_time, bool):
        return int(auth_time)
    return issued_at


def credential_fingerprint(credential: str) -> str:
    """A one-way reference to a bearer credential, for audit records and the cache."""
    return hashlib.sha256(credential.encode("utf-8")).hexdigest()


def bearer_credential(authorization: str | None) -> str:
    """The credential of an ``Authorization: Bearer`` header; raise if there is none."""
    if not authorization:
        raise AuthenticationFailed("no Authorization header")
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise AuthenticationFailed("Authorization is not a Bearer credential")
    return credential.strip()


class Authenticator:
    """Authenticates app users against the configured issuers."""

    def __init__(
        self,
        verifiers: list[IssuerVerifier],
        *,
        identity_claim: str,
        clock: Clock,
        client_keys: ClientKeyFile | None = None,
    ) -> None:
        self._verifiers = {verifier.issuer: verifier for verifier in verifiers}
        self._client_keys = client_keys
        self._identity_claim = identity_claim
        self._clock = clock
        self._cache: OrderedDict[str, Caller] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Authenticator(issuers={sorted(self._verifiers)!r})"

    def cached(self, authorization: str | None) -> Caller | None:
        """The caller of a credential verified before and not yet expired, else None."""
        try:
            credential = bearer_credential(authorization)
        except AuthenticationFailed:
            return None
        with self._lock:
            found = self._cache.get(credential_fingerprint(credential))
        if found is not None and epoch_seconds(self._clock()) < found.expires_at:
            return found
        return None

    def authenticate(self, authorization: str | None) -> Caller:
        """Verify the bearer credential; raise ``AuthenticationFailed`` on any failure."""
        cached = self.cached(authorization)
        if cached is not None:
            return cached
        credential = bearer_credential(authorization)
        digest = credential_fingerprint(credential)
        if looks_like_client_key(credential):
            return self._client(credential, digest)

        issuer = unverified_issuer(credential)
        verifier = self._verifiers.get(issuer) if issuer is not None else None
        if verifier is None:
            raise AuthenticationFailed("unknown issuer")
        verified = verifier.verify(credential)
        identity = verified.claims.get(self._identity_claim)
        if not isinstance(identity, str) or not identity:
            raise AuthenticationFailed(f"identity claim {self._identity_claim!r} missing")
        client = verified.claims.get("azp", verified.claims.get("client_id"))
        caller = Caller(
            identity=Identity(identity),
            claims=verified.claims,
            kind="app_user",
            issuer=verifier.issuer,
            issued_at=verified.issued_at,
            expires_at=verified.expires_at,
            credential_fingerprint=digest[:16],
            client=client if isinstance(client, str) and client else None,
            signed_in_at=_sign_in(verified.claims, verified.issued_at),
        )
        with self._lock:
            self._cache[digest] = caller
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return caller

    def _client(self, credential: str, digest: str) -> Caller:
        """A server-to-server caller; its identity is the one its request names."""
        if self._client_keys is None:
            raise AuthenticationFailed("client keys are not configured")
        key = self._client_keys.verify(credential)
        return Caller(
            identity=Identity(""),
            claims={},
            kind="client",
            issuer=CLIENT_KEY_ISSUER,
            issued_at=int(key.created),
            expires_at=_NEVER,
            credential_fingerprint=digest[:16],
            client=key.client,
        )
