"""Thin HTTP blueprints over the use cases, and the typed accessor for per-app objects."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from service.account.alerts import UsageAlerts
from service.bookkeeping.metrics import Metrics
from service.config.settings import Settings
from service.state import AuditTrail
from service.tokens.issuance import TokenIssuance
from service.tokens.signing_keys import KeyHeartbeat
from service.voice.calls import VoiceCalls
from service.voice.signatures import WebhookGuard

EXTENSION_KEY = "token_broker"


@dataclass(frozen=True)
class Broker:
    """The per-app objects the blueprints use."""

    settings: Settings
    issuance: TokenIssuance
    metrics: Metrics
    calls: VoiceCalls
    webhooks: WebhookGuard
    usage_alerts: UsageAlerts
    #: what holds connections: the state store, and the audit trail when it is apart
    resources: tuple[AuditTrail, ...] = ()
    #: tells the fleet which key this instance signs with (a serving worker beats it)
    heartbeat: KeyHeartbeat | None = None

    def close(self) -> None:
        """Let go of every connection (the app is done)."""
        for resource in self.resources:
            resource.close()


def broker(app: Flask) -> Broker:
    """The ``Broker`` attached to ``app`` by ``create_app``."""
    found = app.extensions[EXTENSION_KEY]
    if not isinstance(found, Broker):
        raise TypeError("create_app did not attach a Broker")
    return found
