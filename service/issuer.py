"""The use case: one token request, from raw body and bearer credential to a token.

parse -> authenticate -> policy -> mint -> audit. Every outcome, issued or refused, is
audited exactly once; a refusal is raised as a ``RequestRefused`` for the HTTP layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service.audit import AuditLog, AuditRecord, Decision
from service.callers import Authenticator, Caller
from service.clock import Clock
from service.errors import (
    AuthenticationFailed,
    GrantNotAllowed,
    InvalidRequest,
    InvalidTtl,
    RequestRefused,
    RoomNotAllowed,
    Unavailable,
    UnknownField,
)
from service.minting import IssuedToken, Minter, token_fingerprint
from service.policy import Allowed, DenialCode, Policy
from service.token_request import TokenRequest, parse_token_request

_DENIALS: Mapping[DenialCode, type[RequestRefused]] = {
    "grant_not_allowed": GrantNotAllowed,
    "room_not_allowed": RoomNotAllowed,
    "invalid_ttl": InvalidTtl,
}


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    client_ip: str


class TokenIssuer:
    """Composes callers, policy, minting and audit into one decision per request."""

    def __init__(
        self,
        *,
        authenticator: Authenticator,
        policy: Policy,
        minter: Minter,
        push_names: frozenset[str],
        audit: AuditLog,
        clock: Clock,
    ) -> None:
        self._authenticator = authenticator
        self._policy = policy
        self._minter = minter
        self._push_names = push_names
        self._audit = audit
        self._clock = clock

    def issue(self, authorization: str | None, body: bytes, context: RequestContext) -> IssuedToken:
        """Decide on one request; return the token or raise the refusal (audited either way)."""
        request: TokenRequest | None = None
        caller: Caller | None = None
        try:
            request = parse_token_request(body)
            caller = self._authenticator.authenticate(authorization)
            self._check_request_for(caller, request)
            decision = self._policy.decide(caller.identity, caller.claims, request)
            if not isinstance(decision, Allowed):
                raise _DENIALS[decision.code](decision.reason)
            token = self._minter.mint(decision.plan, self._clock())
        except RequestRefused as refusal:
            self._audit.record(
                self._record(context, _decision_of(refusal), refusal, request, caller)
            )
            raise
        self._audit.record(
            AuditRecord(
                decision="issued",
                request_id=context.request_id,
                client_ip=context.client_ip,
                at=token.issued_at,
                identity=token.identity,
                issuer=caller.issuer,
                credential=caller.credential_fingerprint,
                grants=token.grants,
                room=request.video.room if request.video else None,
                ttl=token.ttl,
                token=token_fingerprint(token.jwt),
            )
        )
        return token

    def readiness(self) -> dict[str, bool]:
        """Named checks for /readyz: can this instance issue tokens right now?"""
        return {"signing_key": self._minter.can_sign()}

    def _check_request_for(self, caller: Caller, request: TokenRequest) -> None:
        if request.identity is not None:
            # Only server-to-server callers may name an identity; app users never may.
            raise UnknownField(f"identity named by a {caller.kind} caller")
        for name in request.push_names:
            if name not in self._push_names:
                raise InvalidRequest("push names no configured push credential")

    def _record(
        self,
        context: RequestContext,
        decision: Decision,
        refusal: RequestRefused,
        request: TokenRequest | None,
        caller: Caller | None,
    ) -> AuditRecord:
        return AuditRecord(
            decision=decision,
            request_id=context.request_id,
            client_ip=context.client_ip,
            at=self._clock(),
            code=refusal.code,
            reason=refusal.reason,
            identity=caller.identity if caller else None,
            issuer=caller.issuer if caller else None,
            credential=caller.credential_fingerprint if caller else None,
            grants=request.grant_names if request else (),
            room=request.video.room if request and request.video else None,
            ttl=request.ttl if request else None,
        )


def _decision_of(refusal: RequestRefused) -> Decision:
    if isinstance(refusal, AuthenticationFailed):
        return "authentication_failed"
    if isinstance(refusal, Unavailable):
        return "unavailable"
    if isinstance(refusal, InvalidRequest):
        return "invalid_request"
    return "denied"
