"""The application factory: wiring only."""

from __future__ import annotations

import os
import secrets
import time
from typing import TextIO

from flask import Flask, Response, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from service.audit import AuditLog
from service.callers import Authenticator, IssuerVerifier
from service.callers.client_keys import ClientKeyFile
from service.callers.dev_issuer import DevIssuer
from service.callers.oidc import oidc_verifier
from service.calls import VoiceCalls
from service.clock import Clock, system_clock
from service.configuration import Configuration, load_configuration
from service.errors import register_error_handlers
from service.http import EXTENSION_KEY, Broker, ops, tokens, transport, webhooks
from service.issuer import TokenIssuer
from service.limits import CALLS, RateLimiter
from service.metrics import MULTIPROCESS_DIRECTORY, Metrics
from service.minting import Minter, Services
from service.signing_keys import SigningKeySource
from service.state import CachedControls, open_store
from service.token_request import MAX_BODY_BYTES
from service.twilio_voice import SignatureChecker
from service.usage_alerts import UsageAlerts


def create_app(
    configuration: Configuration | None = None,
    *,
    clock: Clock = system_clock,
    audit_stream: TextIO | None = None,
) -> Flask:
    """Build the broker. Without a configuration, read it from the process environment.

    Audit records go to ``audit_stream``, standard error by default.
    """
    if configuration is None:
        configuration = load_configuration(os.environ)
    settings = configuration.settings
    app = Flask("service")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    if settings.trusted_proxies:
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]  # Flask's documented way to wrap the WSGI app

    verifiers: list[IssuerVerifier] = []
    if settings.oidc is not None:
        verifiers.append(oidc_verifier(settings.oidc))
    if settings.dev_issuer_enabled:
        verifiers.append(DevIssuer.load_or_create(settings.dev_dir).verifier())
    minter = Minter(SigningKeySource(settings).current, Services.from_settings(settings))
    store = open_store(settings.state_url, audit_retention_days=settings.audit_retention_days)
    metrics = Metrics(os.environ.get(MULTIPROCESS_DIRECTORY))
    policy = configuration.policy
    budgets = dict(policy.limits.budgets)
    if policy.dial is not None and policy.dial.calls_per_identity:
        budgets[CALLS] = policy.dial.calls_per_identity
    controls = CachedControls(store)
    limiter = RateLimiter(store.limits_storage(), budgets)
    audit = AuditLog(store, audit_stream)
    issuer = TokenIssuer(
        authenticator=Authenticator(
            verifiers,
            identity_claim=configuration.policy.identity_claim,
            clock=clock,
            client_keys=ClientKeyFile(settings.client_keys_file)
            if settings.client_keys_file
            else None,
        ),
        policy=configuration.policy,
        minter=minter,
        push_names=frozenset(settings.push_credentials),
        controls=controls,
        limiter=limiter,
        audit=audit,
        metrics=metrics,
        clock=clock,
    )
    calls = VoiceCalls(
        dial_policy=policy.dial,
        incoming=policy.incoming,
        caller_id=settings.caller_id,
        controls=controls,
        limiter=limiter,
        audit=audit,
        metrics=metrics,
        clock=clock,
    )
    signatures = SignatureChecker(
        [token for token in (settings.auth_token, settings.auth_token_secondary) if token]
    )
    usage_alerts = UsageAlerts(
        store=store, scope=policy.usage_alert_pauses, audit=audit, metrics=metrics, clock=clock
    )
    app.extensions[EXTENSION_KEY] = Broker(
        settings=settings,
        issuer=issuer,
        metrics=metrics,
        calls=calls,
        signatures=signatures,
        usage_alerts=usage_alerts,
    )

    @app.before_request
    def assign_request_id() -> None:
        g.request_id = secrets.token_hex(16)
        g.started = time.perf_counter()

    @app.after_request
    def add_request_id(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.observe(endpoint, time.perf_counter() - g.get("started", time.perf_counter()))
        return response

    transport.init_app(app, settings)
    register_error_handlers(app)
    app.register_blueprint(tokens.blueprint)
    app.register_blueprint(ops.blueprint)
    app.register_blueprint(webhooks.blueprint)
    return app
