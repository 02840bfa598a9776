"""May this Voice client call there? The use case behind the TwiML app's Voice URL.

A signed request from Twilio says who calls (``From=client:IDENTITY``) and where to
(``To``). The caller must be a Voice identity that is not revoked; the destination must
pass the dial policy; the identity's call budget must allow one more. Every decision is
audited and counted; the answer is TwiML: a ``<Dial>``, or a short refusal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service.bookkeeping.audit import AuditRecord, Recorder
from service.bookkeeping.limits import Budgets
from service.state import Admission, RefusalKind, Refused, StateStore
from service.tokens import base_identity
from service.voice.dialing import CallAllowed, DialPolicy, caller_identity, decide_call
from service.voice.twiml import dial_twiml, refusal_twiml

REFUSAL_MESSAGE = "This call cannot be placed."
_REASONS: dict[RefusalKind, str] = {
    "paused": "outgoing calls are paused",
    "revoked": "caller identity is revoked",
    "rate_limited": "call budget exhausted",
}


@dataclass(frozen=True)
class CallRequest:
    from_field: str
    to_field: str
    request_id: str
    client_ip: str


class VoiceCalls:
    """Decides calls: outgoing ones by the dial policy, inbound ones by ``[incoming]``.

    Fails closed (raises ``Unavailable``) when its state cannot be read.
    """

    def __init__(
        self,
        *,
        dial_policy: DialPolicy | None,
        incoming: Mapping[str, tuple[str, ...]],
        caller_id: str | None,
        budgets: Budgets,
        store: StateStore,
        recorder: Recorder,
        identity_prefixes: tuple[str, ...] = (),
    ) -> None:
        self._dial_policy = dial_policy
        self._incoming = incoming
        self._caller_id = caller_id
        self._budgets = budgets
        self._store = store
        self._recorder = recorder
        self._prefixes = identity_prefixes

    def __repr__(self) -> str:
        return "VoiceCalls()"

    def answer(self, call: CallRequest) -> str:
        """The TwiML for this call: dial, or refuse; audited either way."""
        identity = caller_identity(call.from_field)
        if identity is None:
            return self._refused(call, "caller is not a Voice client identity", None)
        decision = decide_call(self._dial_policy, call.to_field)
        if not isinstance(decision, CallAllowed):
            return self._refused(call, decision.reason, identity)
        record = self._record(call, None, identity)
        line = record.to_json()
        outcome = self._store.admit(
            Admission(
                at=record.at,
                pauses=("all", "voice_outgoing"),
                revocations=self._subjects(identity),
                # revoked unless the identity signed in again since: its latest Voice token's
                sign_in_of=self._subjects(identity)[-1],
                spends=self._budgets.call_spends(identity),
                record=line if self._recorder.in_admission else None,
            )
        )
        if isinstance(outcome, Refused):
            return self._refused(call, _REASONS[outcome.kind], identity)
        self._recorder.stored(record, line)
        clients = (decision.client,) if decision.client else ()
        return dial_twiml(number=decision.number, clients=clients, caller_id=self._caller_id)

    def route_incoming(self, call: CallRequest) -> str:
        """Ring the identities configured for the number called; never "whoever is online"."""
        targets = [
            identity
            for identity in self._incoming.get(call.to_field, ())
            if not self._revoked(identity)
        ]
        if not targets:
            return self._refused(call, "no identity is routed for this number", None)
        self._recorder.record(self._record(call, None, ",".join(targets)))
        return dial_twiml(clients=targets)

    def _revoked(self, identity: str) -> bool:
        subject = f"identity:{identity}"
        admission = Admission(at=self._recorder.now(), revocations=(subject,), sign_in_of=subject)
        return isinstance(self._store.admit(admission), Refused)

    def _subjects(self, identity: str) -> tuple[str, ...]:
        """The revocation subjects of a Voice identity: itself, and the identity of the
        subject it was made from (what an operator revokes); the latter last."""
        base = base_identity(identity, self._prefixes)
        return (
            (f"identity:{identity}",)
            if base == identity
            else (
                f"identity:{identity}",
                f"identity:{base}",
            )
        )

    def _refused(self, call: CallRequest, reason: str, identity: str | None) -> str:
        self._recorder.record(self._record(call, reason, identity))
        return refusal_twiml(REFUSAL_MESSAGE)

    def _record(self, call: CallRequest, reason: str | None, identity: str | None) -> AuditRecord:
        """One call decision (refused when there is a reason)."""
        return AuditRecord(
            event="call",
            decision="call_refused" if reason else "call_allowed",
            request_id=call.request_id,
            client_ip=call.client_ip,
            at=self._recorder.now(),
            reason=reason,
            identity=identity,
            destination=call.to_field[:64] or None,
        )
