"""The use case: one token request, from raw body and bearer credential to a token.

parse -> authenticate -> policy -> mint -> admit (pause, revocation, every budget and
the audit record, all or nothing, in the state store) -> the token. Every outcome is
recorded exactly once (logged, stored, counted); a refusal is raised as a
``RequestRefused`` for the HTTP layer. A token is returned only after its audit record
is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

from service.base.addresses import address_key
from service.base.errors import (
    AttestationReplayed,
    AttestationRequired,
    AuthenticationFailed,
    GrantNotAllowed,
    InvalidRequest,
    InvalidTtl,
    IssuancePaused,
    RateLimited,
    RequestRefused,
    Revoked,
    RoomNotAllowed,
    Unavailable,
    UnknownField,
)
from service.bookkeeping.audit import AuditRecord, Decision, Recorder
from service.bookkeeping.limits import Budgets
from service.callers import Authenticator, Caller
from service.callers.attestation import LEEWAY_SECONDS, AppCheck
from service.state import Admission, AuditTrail, PauseScope, Refused, StateStore
from service.tokens.health import HealthViews
from service.tokens.identities import for_tokens
from service.tokens.minting import IssuedToken, Minter, token_fingerprint
from service.tokens.policy import Allowed, DenialCode, Plan, TokenPolicy
from service.tokens.request import TokenRequest, parse_token_request
from service.tokens.resources import PlanResources
from service.tokens.workers import WorkerResolver

#: A sign-in this close after a revocation is taken to be before it (the provider's clock).
REVOCATION_MARGIN_SECONDS = 30
_DENIALS: Mapping[DenialCode, type[RequestRefused]] = {
    "grant_not_allowed": GrantNotAllowed,
    "room_not_allowed": RoomNotAllowed,
    "invalid_ttl": InvalidTtl,
}


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    client_ip: str
    #: the ``X-Firebase-AppCheck`` header, if any (grants whose rule requires attestation)
    app_check: str | None = None


class TokenIssuance(HealthViews):
    """Composes callers, policy, minting, budgets and audit into one decision per request."""

    def __init__(
        self,
        *,
        authenticator: Authenticator,
        policy: TokenPolicy,
        budgets: Budgets,
        minter: Minter,
        push_names: frozenset[str],
        store: StateStore,
        recorder: Recorder,
        trail: AuditTrail | None = None,
        app_check: AppCheck | None = None,
        ipv6_prefix: int = 64,
        revocation_margin: int = REVOCATION_MARGIN_SECONDS,
        resources: PlanResources | None = None,
    ) -> None:
        self._authenticator = authenticator
        self._policy = policy
        self._budgets = budgets
        self._minter = minter
        self._push_names = push_names
        self._store = store
        #: the audit trail, when a database of its own (a readiness check of its own)
        self._trail = trail
        self._app_check = app_check
        self._recorder = recorder
        self._ipv6_prefix = ipv6_prefix
        self._revocation_margin = revocation_margin
        #: Twilio's part of a plan: a TaskRouter Worker, a provisioned room
        self._resources = resources or PlanResources(WorkerResolver(None, recorder.now))

    def __repr__(self) -> str:
        return "TokenIssuance()"

    def issue(self, authorization: str | None, body: bytes, context: RequestContext) -> IssuedToken:
        """Decide on one request; return the token or raise the refusal (recorded either way)."""
        request: TokenRequest | None = None
        caller: Caller | None = None
        try:
            request = parse_token_request(body)
            caller = self._authenticate(authorization, context)
            caller = self._resolve_identity(caller, request)
            return self._decide_and_mint(caller, request, context)
        except RequestRefused as refusal:
            final = self._denial_cost(caller, refusal)
            if isinstance(final, Unavailable):
                self._recorder.dependency_failed(final.dependency)
            self._recorder.record(self._refusal_record(context, final, request, caller))
            if final is refusal:
                raise
            raise final from None

    def _denial_cost(self, caller: Caller | None, refusal: RequestRefused) -> RequestRefused:
        """A verified caller's 403 spends its denial budget; once that is spent, the
        refusal is a 429 instead. With the store down, the 403 stands."""
        spends = self._budgets.denial_spends(caller.identity) if caller is not None else ()
        if refusal.status != 403 or not spends:
            return refusal
        try:
            outcome = self._store.admit(Admission(at=self._recorder.now(), spends=spends))
        except Unavailable:
            return refusal
        return _refusal_of(outcome) if isinstance(outcome, Refused) else refusal

    def _decide_and_mint(
        self, caller: Caller, request: TokenRequest, context: RequestContext
    ) -> IssuedToken:
        self._check_push_names(request)
        named = for_tokens(caller)  # one identity in every grant of every token
        decision = self._policy.decide(
            caller.identity,
            caller.claims,
            request,
            client_key=caller.client if caller.kind == "client" else None,
            token_identity=named.identity,
        )
        if not isinstance(decision, Allowed):
            raise _DENIALS[decision.code](decision.reason)
        self._attest(decision.plan, context)
        plan, room_sid = self._resources.complete(
            decision.plan, caller, partial(self._before_twilio_call, caller)
        )
        token = self._minter.mint(plan, self._recorder.now())
        record = self._issued_record(caller, request, token, context, plan, room_sid)
        line = record.to_json()
        outcome = self._store.admit(self._admission(caller, plan, context, token, line))
        self._recorder.paused(isinstance(outcome, Refused) and outcome.scope == "all")
        if isinstance(outcome, Refused):
            raise _refusal_of(outcome)
        self._recorder.stored(record, line)
        return token

    def _before_twilio_call(self, caller: Caller) -> None:
        """Before the broker asks Twilio for this request (a Worker, a room): issuance is
        not paused, and the caller's ``twilio_calls_per_identity`` budget admits it."""
        spends = self._budgets.twilio_call_spends(caller.identity)
        outcome = self._store.admit(
            Admission(at=self._recorder.now(), pauses=("all",), spends=spends)
        )
        if isinstance(outcome, Refused):
            raise _refusal_of(outcome)

    def _attest(self, plan: Plan, context: RequestContext) -> None:
        """What the grants' rules ask of the app (the strictest of them): a valid App
        Check token, and for limited use one never presented before. Checked before any
        budget is spent: a replay spends nothing."""
        if plan.attestation == "none":
            return
        if self._app_check is None:  # the configuration requires it; never reached
            raise AttestationRequired("App Check is not configured")
        attestation = self._app_check.verify(context.app_check)
        if plan.attestation != "limited_use":
            return
        if attestation.jti is None:
            raise AttestationRequired("a limited-use App Check token must carry a jti")
        now = self._recorder.now()
        # Remembered until the token expires (and the verifier's leeway after): then a
        # replay is refused as expired anyway.
        seconds = max(1, attestation.expires_at - int(now.timestamp()) + LEEWAY_SECONDS)
        if not self._store.first_time([f"appcheck:{attestation.jti}"], now, seconds):
            raise AttestationReplayed("limited-use App Check token presented again")

    def _admission(
        self, caller: Caller, plan: Plan, context: RequestContext, token: IssuedToken, line: str
    ) -> Admission:
        outgoing = plan.voice is not None and plan.voice.outgoing
        pauses: tuple[PauseScope, ...] = ("all", "voice_outgoing") if outgoing else ("all",)
        spends = self._budgets.token_spends(
            identity=caller.identity,
            client=caller.client_subject,
            address=address_key(context.client_ip, self._ipv6_prefix),
        )
        # A sign-in within the margin of a revocation counts as before it: the identity
        # provider's clock may run a little ahead of ours.
        signed_in = caller.signed_in_at
        return Admission(
            at=token.issued_at,
            pauses=pauses,
            revocations=_revocation_subjects(caller, token.identity),
            session=caller.session,
            signed_in_at=None if signed_in is None else signed_in - self._revocation_margin,
            # Calls cannot say which token they come from: a Voice token remembers its
            # session's sign-in, so that a call is refused until the user signs in again.
            remember_sign_in=f"identity:{caller.identity}" if plan.voice is not None else None,
            spends=spends,
            cost=self._budgets.voice_outgoing_cost if outgoing else 1,
            record=line if self._recorder.in_admission else None,
        )

    def _authenticate(self, authorization: str | None, context: RequestContext) -> Caller:
        """Verify first: a credential that verifies never meets the failure budget."""
        try:
            return self._authenticator.authenticate(authorization)
        except AuthenticationFailed:
            spends = self._budgets.failure_spends(address_key(context.client_ip, self._ipv6_prefix))
            try:
                outcome = (
                    self._store.admit(Admission(at=self._recorder.now(), spends=spends))
                    if spends
                    else None
                )
            except Unavailable:
                outcome = None  # the guess cannot be counted: it is still refused, as a 401
            if isinstance(outcome, Refused):
                raise _refusal_of(outcome) from None
            raise

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

    @staticmethod
    def _issued_record(
        caller: Caller,
        request: TokenRequest,
        token: IssuedToken,
        context: RequestContext,
        plan: Plan,
        room_sid: str | None,
    ) -> AuditRecord:
        return AuditRecord(
            event="token",
            decision="issued",
            request_id=context.request_id,
            client_ip=context.client_ip,
            at=token.issued_at,
            identity=token.identity,
            subject=caller.subject if caller.subject != token.identity else None,
            client=caller.client,
            issuer=caller.issuer,
            credential=caller.credential_fingerprint,
            grants=token.grants,
            room=request.video.room if request.video else None,
            room_sid=room_sid,
            worker_sid=plan.task_router.worker_sid if plan.task_router else None,
            ttl=token.ttl,
            token=token_fingerprint(token.jwt),
        )

    def _refusal_record(
        self,
        context: RequestContext,
        refusal: RequestRefused,
        request: TokenRequest | None,
        caller: Caller | None,
    ) -> AuditRecord:
        named = for_tokens(caller) if caller else None  # as its records of issued tokens say
        return AuditRecord(
            event="token",
            decision=_decision_of(refusal),
            request_id=context.request_id,
            client_ip=context.client_ip,
            at=self._recorder.now(),
            code=refusal.code,
            reason=refusal.reason,
            identity=named.identity if named else None,
            subject=caller.subject
            if caller and named and caller.subject != named.identity
            else None,
            client=caller.client if caller else None,
            issuer=caller.issuer if caller else None,
            credential=caller.credential_fingerprint if caller else None,
            grants=request.grant_names if request else (),
            room=request.video.room if request and request.video else None,
            ttl=request.ttl if request else None,
        )


def _revocation_subjects(caller: Caller, token_identity: str) -> tuple[str, ...]:
    """What a revocation of this caller may name: its identity as verified, its app, and
    the identity its tokens carry (what the audit trail and Twilio show), where other."""
    named = f"identity:{token_identity}"
    subjects = caller.revocation_subjects
    return subjects if named in subjects else (*subjects, named)


def _refusal_of(outcome: Refused) -> RequestRefused:
    if outcome.kind == "paused":
        scope = "paused" if outcome.scope == "all" else "voice outgoing paused"
        return IssuancePaused(f"{scope}: {outcome.detail}")
    if outcome.kind == "revoked":
        return Revoked(f"session signed in before the revocation of {outcome.detail}")
    return RateLimited(f"{outcome.detail} spent", retry_after=outcome.retry_after)


def _decision_of(refusal: RequestRefused) -> Decision:
    if isinstance(refusal, AuthenticationFailed):
        return "authentication_failed"
    if isinstance(refusal, Unavailable):
        return "unavailable"
    if isinstance(refusal, InvalidRequest):
        return "invalid_request"
    return "denied"
