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

from service.base.clock import Clock, epoch_seconds
from service.base.errors import AuthenticationFailed
from service.callers.claims import claim_value
from service.callers.client_keys import ClientKeyFile, looks_like_client_key
from service.callers.verifier import IssuerVerifier, client_of, unverified_issuer

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
    #: the identity claim's value as the provider gave it (the identity is made from it)
    subject: str | None = None
    #: the provider's identity prefix (with several providers)
    identity_prefix: str = ""
    #: the session its access tokens are refreshed in (``sid``, ``session_id``,
    #: ``origin_jti``), where the token says no ``auth_time``: its first sight stands in
    #: for the sign-in, so a revocation outlasts refreshes (a new ``iat`` each time)
    session: str | None = None

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


#: Claims that name a session across refreshes: OpenID's ``sid`` (Keycloak, Clerk, Entra
#: ID and Auth0 where enabled), Supabase's ``session_id``, Cognito's ``origin_jti``.
SESSION_CLAIMS = ("sid", "session_id", "origin_jti")


def _session(issuer: str, claims: Mapping[str, Any]) -> str | None:
    """A stable name for the session of a token without ``auth_time``, or None."""
    if "auth_time" in claims:
        return None
    for claim in SESSION_CLAIMS:
        value = claims.get(claim)
        if isinstance(value, str) and value:
            return hashlib.sha256(f"{issuer}\0{claim}\0{value}".encode()).hexdigest()[:32]
    return None


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


@dataclass(frozen=True)
class Provider:
    """One issuer's verifier, and how its tokens name a caller."""

    verifier: IssuerVerifier
    #: the claim (a name or a dotted path) that becomes the identity; None: the default
    identity_claim: str | None = None
    identity_prefix: str = ""


class Authenticator:
    """Authenticates app users against the configured issuers."""

    def __init__(
        self,
        providers: list[Provider],
        *,
        identity_claim: str,
        clock: Clock,
        client_keys: ClientKeyFile | None = None,
    ) -> None:
        self._providers = {provider.verifier.issuer: provider for provider in providers}
        self._client_keys = client_keys
        self._identity_claim = identity_claim
        self._clock = clock
        self._cache: OrderedDict[str, Caller] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Authenticator(issuers={sorted(self._providers)!r})"

    @property
    def verifiers(self) -> list[IssuerVerifier]:
        return [provider.verifier for provider in self._providers.values()]

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
        provider = self._providers.get(issuer) if issuer is not None else None
        if provider is None:
            raise AuthenticationFailed("unknown issuer")
        verified = provider.verifier.verify(credential)
        claim = provider.identity_claim or self._identity_claim
        subject = claim_value(verified.claims, claim)
        if not isinstance(subject, str) or not subject:
            raise AuthenticationFailed(f"identity claim {claim!r} missing")
        caller = Caller(
            identity=Identity(provider.identity_prefix + subject),
            claims=verified.claims,
            kind="app_user",
            issuer=provider.verifier.issuer,
            issued_at=verified.issued_at,
            expires_at=verified.expires_at,
            credential_fingerprint=digest[:16],
            client=client_of(verified.claims),
            signed_in_at=_sign_in(verified.claims, verified.issued_at),
            subject=subject,
            identity_prefix=provider.identity_prefix,
            session=_session(provider.verifier.issuer, verified.claims),
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
