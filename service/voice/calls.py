"""May this Voice client call there? The use case behind the TwiML app's Voice URL.

A signed request from Twilio says who calls (``From=client:IDENTITY``) and where to
(``To``). The caller must be a Voice identity that is not revoked; the destination must
pass the dial policy; the identity's call budget must allow one more. Every decision is
audited and counted; the answer is TwiML: a ``<Dial>``, or a short refusal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service.audit import AuditRecord, Recorder
from service.errors import RateLimited
from service.limits import RateLimiter
from service.state import CachedControls
from service.voice.dialing import CallAllowed, DialPolicy, caller_identity, decide_call
from service.voice.twiml import dial_twiml, refusal_twiml

REFUSAL_MESSAGE = "This call cannot be placed."


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
        controls: CachedControls,
        limiter: RateLimiter,
        recorder: Recorder,
    ) -> None:
        self._dial_policy = dial_policy
        self._incoming = incoming
        self._caller_id = caller_id
        self._controls = controls
        self._limiter = limiter
        self._recorder = recorder

    def __repr__(self) -> str:
        return "VoiceCalls()"

    def answer(self, call: CallRequest) -> str:
        """The TwiML for this call: dial, or refuse; audited either way."""
        identity = caller_identity(call.from_field)
        reason = None
        decision = None
        controls = self._controls.current()
        if identity is None:
            reason = "caller is not a Voice client identity"
        elif controls.pause is not None or controls.voice_outgoing_pause is not None:
            reason = "outgoing calls are paused"
        elif controls.revoked_at(identity, None) is not None:
            reason = "caller identity is revoked"
        else:
            decision = decide_call(self._dial_policy, call.to_field)
            if not isinstance(decision, CallAllowed):
                reason = decision.reason
            else:
                try:
                    self._limiter.spend_call(identity)
                except RateLimited:
                    reason = "call budget exhausted"
        self._decided(call, reason, identity)
        if reason is not None or not isinstance(decision, CallAllowed):
            return refusal_twiml(REFUSAL_MESSAGE)
        clients = (decision.client,) if decision.client else ()
        return dial_twiml(number=decision.number, clients=clients, caller_id=self._caller_id)

    def route_incoming(self, call: CallRequest) -> str:
        """Ring the identities configured for the number called; never "whoever is online"."""
        controls = self._controls.current()
        targets = [
            identity
            for identity in self._incoming.get(call.to_field, ())
            if controls.revoked_at(identity, None) is None
        ]
        reason = None if targets else "no identity is routed for this number"
        self._decided(call, reason, ",".join(targets) or None)
        return dial_twiml(clients=targets) if targets else refusal_twiml(REFUSAL_MESSAGE)

    def _decided(self, call: CallRequest, reason: str | None, identity: str | None) -> None:
        """Record one call decision (refused when there is a reason)."""
        self._recorder.record(
            AuditRecord(
                event="call",
                decision="call_refused" if reason else "call_allowed",
                request_id=call.request_id,
                client_ip=call.client_ip,
                at=self._recorder.now(),
                reason=reason,
                identity=identity,
                destination=call.to_field[:64] or None,
            )
        )
