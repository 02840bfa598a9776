"""Twilio's webhooks: only signed requests get an answer, and the answer is TwiML."""

from __future__ import annotations

from flask import Blueprint, Request, Response, current_app, g, request

from service.config.settings import Settings
from service.http import Broker, broker
from service.voice.calls import CallRequest

blueprint = Blueprint("webhooks", __name__)


def signed_url(settings: Settings, incoming: Request) -> str:
    """The URL Twilio signed: ``BROKER_PUBLIC_URL`` and the path (required in production);
    the request's own URL only in development."""
    if not settings.public_url:
        return incoming.url
    query = incoming.query_string.decode("latin-1")
    return settings.public_url.rstrip("/") + incoming.path + (f"?{query}" if query else "")


def _require_signature(found: Broker) -> None:
    """Twilio's, for the URL Twilio called, and the first time: or refused (403)."""
    found.webhooks.admit(
        signed_url(found.settings, request),
        request.form,
        request.headers.get("X-Twilio-Signature"),
        request.headers.get("I-Twilio-Idempotency-Token"),
    )


@blueprint.post("/v1/twilio/voice")
def voice() -> Response:
    found = broker(current_app)
    _require_signature(found)
    twiml = found.calls.answer(_call_request())
    return Response(twiml, mimetype="application/xml")


@blueprint.post("/v1/twilio/voice/incoming")
def voice_incoming() -> Response:
    found = broker(current_app)
    _require_signature(found)
    twiml = found.calls.route_incoming(_call_request())
    return Response(twiml, mimetype="application/xml")


def _call_request() -> CallRequest:
    form = request.form
    return CallRequest(
        from_field=form.get("From", ""),
        to_field=form.get("To", ""),
        request_id=g.request_id,
        client_ip=request.remote_addr or "",
    )


@blueprint.post("/v1/twilio/usage-alert")
def usage_alert() -> Response:
    found = broker(current_app)
    _require_signature(found)
    found.usage_alerts.handle(
        request.form, request_id=g.request_id, client_ip=request.remote_addr or ""
    )
    return Response(status=204)
