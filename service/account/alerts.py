"""When spend runs away: a Twilio Usage Trigger's callback pauses issuance by itself.

Depending on the policy's ``[usage_alert] pauses``, every token (``all``) or only Voice
tokens that can place calls, and the calls themselves (``voice_outgoing``), are refused
until an operator runs ``token-broker resume``. The pause is shared state: every worker
of every instance obeys it.
"""

from __future__ import annotations

from collections.abc import Mapping

from service.bookkeeping.audit import AuditRecord, Recorder
from service.state import PauseScope, StateStore

MAX_REASON_FIELD = 40


class UsageAlerts:
    def __init__(
        self,
        *,
        store: StateStore,
        scope: PauseScope,
        recorder: Recorder,
    ) -> None:
        self._store = store
        self._scope = scope
        self._recorder = recorder

    def __repr__(self) -> str:
        return f"UsageAlerts(scope={self._scope!r})"

    def handle(self, params: Mapping[str, str], *, request_id: str, client_ip: str) -> None:
        """Pause (all issuance or outgoing Voice); audited; raises ``Unavailable`` if no store."""
        now = self._recorder.now()
        reason = "usage trigger {}: {} reached {}".format(
            *(_field(params, name) for name in ("UsageTriggerSid", "UsageCategory", "CurrentValue"))
        )
        self._store.pause(reason, now, scope=self._scope)
        self._recorder.record(
            AuditRecord(
                event="usage_alert",
                decision="paused",
                request_id=request_id,
                client_ip=client_ip,
                at=now,
                reason=f"{reason} (pauses {self._scope})",
            )
        )


def _field(params: Mapping[str, str], name: str) -> str:
    """A callback field for a log line: bounded, printable, '?' when absent."""
    value = params.get(name, "")[:MAX_REASON_FIELD]
    return value if value and value.isprintable() else "?"
