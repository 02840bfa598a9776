"""The use case: one token request, from raw body and bearer credential to a token.

parse -> authenticate -> state (paused? revoked?) -> policy -> limits -> mint -> audit.
Every outcome, issued or refused, is recorded exactly once (audited and counted); a
refusal is raised as a ``RequestRefused`` for the HTTP layer. A token is returned only
after its audit record is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service.audit import AuditRecord, Decision, Recorder
from service.callers import Authenticator, Caller
from service.errors import (
    AuthenticationFailed,
    GrantNotAllowed,
    InvalidRequest,
    InvalidTtl,
    IssuancePaused,
    RequestRefused,
    Revoked,
    RoomNotAllowed,
    Unavailable,
    UnknownField,
)
from service.limits import RateLimiter
from service.state import CachedControls, Controls, Pause
from service.tokens.minting import IssuedToken, Minter, token_fingerprint
from service.tokens.policy import Allowed, DenialCode, Plan, TokenPolicy
from service.tokens.request import TokenRequest, parse_token_request

_DENIALS: Mapping[DenialCode, type[RequestRefused]] = {
    "grant_not_allowed": GrantNotAllowed,
    "room_not_allowed": RoomNotAllowed,
    "invalid_ttl": InvalidTtl,
}


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    client_ip: str


class TokenIssuance:
    """Composes callers, policy, limits, minting and audit into one decision per request."""

    def __init__(
        self,
        *,
        authenticator: Authenticator,
        policy: TokenPolicy,
        voice_outgoing_cost: int,
        minter: Minter,
        push_names: frozenset[str],
        controls: CachedControls,
        limiter: RateLimiter,
        recorder: Recorder,
    ) -> None:
        self._authenticator = authenticator
        self._policy = policy
        self._voice_outgoing_cost = voice_outgoing_cost
        self._minter = minter
        self._push_names = push_names
        self._controls = controls
        self._limiter = limiter
        self._recorder = recorder

    def __repr__(self) -> str:
        return "TokenIssuance()"

    def issue(self, authorization: str | None, body: bytes, context: RequestContext) -> IssuedToken:
        """Decide on one request; return the token or raise the refusal (recorded either way)."""
        request: TokenRequest | None = None
        caller: Caller | None = None
        try:
            request = parse_token_request(body)
            caller = self._authenticate(authorization, context.client_ip)
            caller = self._resolve_identity(caller, request)
            token = self._decide_and_mint(caller, request, context)
        except RequestRefused as refusal:
            self._recorder.record(self._refusal_record(context, refusal, request, caller))
            raise
        self._recorder.record(
            AuditRecord(
                event="token",
                decision="issued",
                request_id=context.request_id,
                client_ip=context.client_ip,
                at=token.issued_at,
                identity=token.identity,
                client=caller.client,
                issuer=caller.issuer,
                credential=caller.credential_fingerprint,
                grants=token.grants,
                room=request.video.room if request.video else None,
                ttl=token.ttl,
                token=token_fingerprint(token.jwt),
            )
        )
        return token

    def _decide_and_mint(
        self, caller: Caller, request: TokenRequest, context: RequestContext
    ) -> IssuedToken:
        controls = self._check_controls(caller)
        self._check_push_names(request)
        decision = self._policy.decide(
            caller.identity,
            caller.claims,
            request,
            client_key=caller.client if caller.kind == "client" else None,
        )
        if not isinstance(decision, Allowed):
            raise _DENIALS[decision.code](decision.reason)
        plan = decision.plan
        outgoing = _places_calls(plan)
        if outgoing and controls.voice_outgoing_pause is not None:
            raise IssuancePaused(f"voice outgoing paused: {controls.voice_outgoing_pause.reason}")
        self._limiter.spend(
            identity=plan.identity,
            client=caller.client,
            client_ip=context.client_ip,
            cost=self._voice_outgoing_cost if outgoing else 1,
        )
        return self._minter.mint(plan, self._recorder.now())

    def readiness(self) -> dict[str, bool]:
        """Named checks for /readyz: can this instance issue tokens right now?"""
        try:
            self._controls.current()
            state = True
        except Unavailable:
            state = False
        return {"signing_key": self._minter.can_sign(), "state": state}

    def pause(self) -> Pause | None:
        """The operator's pause, if any (for /readyz and the metrics); None if unknown."""
        try:
            return self._controls.current().pause
        except Unavailable:
            return None

    def _authenticate(self, authorization: str | None, client_ip: str) -> Caller:
        cached = self._authenticator.cached(authorization)
        if cached is not None:
            return cached  # verified before: the failure budget guards only new credentials
        self._limiter.check_authentication_budget(client_ip)
        try:
            return self._authenticator.authenticate(authorization)
        except AuthenticationFailed:
            self._limiter.record_authentication_failure(client_ip)
            raise

    def _check_controls(self, caller: Caller) -> Controls:
        controls = self._controls.current()
        if controls.pause is not None:
            raise IssuancePaused(f"paused: {controls.pause.reason}")
        revoked_at = controls.revoked_at(caller.identity, caller.client)
        if revoked_at is not None and caller.issued_at <= revoked_at:
            raise Revoked("session issued before its revocation")
        return controls

    @staticmethod
    def _resolve_identity(caller: Caller, request: TokenRequest) -> Caller:
        """App users never name an identity; a client-key caller always does."""
        if caller.kind == "client":
            if request.identity is None:
                raise InvalidRequest("a client-key caller must name the identity it acts for")
            return caller.acting_as(request.identity)
        if request.identity is not None:
            raise UnknownField("identity named by an app user")
        return caller

    def _check_push_names(self, request: TokenRequest) -> None:
        for name in request.push_names:
            if name not in self._push_names:
                raise InvalidRequest("push names no configured push credential")

    def _refusal_record(
        self,
        context: RequestContext,
        refusal: RequestRefused,
        request: TokenRequest | None,
        caller: Caller | None,
    ) -> AuditRecord:
        return AuditRecord(
            event="token",
            decision=_decision_of(refusal),
            request_id=context.request_id,
            client_ip=context.client_ip,
            at=self._recorder.now(),
            code=refusal.code,
            reason=refusal.reason,
            identity=caller.identity if caller else None,
            client=caller.client if caller else None,
            issuer=caller.issuer if caller else None,
            credential=caller.credential_fingerprint if caller else None,
            grants=request.grant_names if request else (),
            room=request.video.room if request and request.video else None,
            ttl=request.ttl if request else None,
        )


def _places_calls(plan: Plan) -> bool:
    return plan.voice is not None and plan.voice.outgoing


def _decision_of(refusal: RequestRefused) -> Decision:
    if isinstance(refusal, AuthenticationFailed):
        return "authentication_failed"
    if isinstance(refusal, Unavailable):
        return "unavailable"
    if isinstance(refusal, InvalidRequest):
        return "invalid_request"
    return "denied"
