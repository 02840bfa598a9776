"""The application factory: wiring only."""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import TextIO

from flask import Flask, Response, g, request

from service.account.alerts import UsageAlerts
from service.account.policy import WATCHED_EVENTS
from service.base.clock import Clock, system_clock
from service.base.errors import error_codes, register_error_handlers
from service.bookkeeping.audit import AuditLog, Recorder
from service.bookkeeping.limits import CALLS, LIMIT_KEYS
from service.bookkeeping.metrics import MULTIPROCESS_DIRECTORY, KnownLabels, Metrics
from service.callers import Authenticator, Provider
from service.callers.attestation import AppCheck
from service.callers.client_keys import ClientKeyFile
from service.callers.dev_issuer import DevIssuer
from service.callers.oidc import provider_of
from service.config.settings import Settings
from service.http import EXTENSION_KEY, Broker, ops, tokens, transport, webhooks
from service.http.proxies import TrustedProxies
from service.serving.configuration import Configuration, load_configuration
from service.state import AuditTrail, StateStore, open_store, open_trail
from service.tokens.issuance import TokenIssuance
from service.tokens.minting import Minter, Services
from service.tokens.provision import RoomKeeper
from service.tokens.request import GRANT_NAMES, MAX_BODY_BYTES
from service.tokens.resources import PlanResources
from service.tokens.signing_keys import CHECK_SECONDS, KeyHeartbeat, SigningKeySource
from service.tokens.workers import WorkerResolver
from service.voice.calls import VoiceCalls
from service.voice.signatures import SignatureChecker, WebhookGuard


def create_app(
    configuration: Configuration | None = None,
    *,
    clock: Clock = system_clock,
    key_check_seconds: float = CHECK_SECONDS,
    audit_stream: TextIO | None = None,
) -> Flask:
    """Build the broker. Without a configuration, read it from the process environment.

    ``clock`` is the one source of time (tests pass a fake one: windows, caches, key
    checks and the stores' retention all follow it); ``key_check_seconds`` is how often
    rotated key files are looked at; audit lines go to ``audit_stream`` (else stderr)."""
    if configuration is None:
        configuration = load_configuration(os.environ)
    settings, policy = configuration.settings, configuration.policy
    app = Flask("service")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    if settings.trusted_proxies:
        app.wsgi_app = TrustedProxies(app.wsgi_app, settings.trusted_proxies)  # type: ignore[method-assign]  # Flask's documented way to wrap the WSGI app

    store = open_store(settings.state_url, retention=settings.retention, clock=clock)
    trail = open_trail(settings.audit_url, store, retention=settings.retention, clock=clock)
    metrics = Metrics(os.environ.get(MULTIPROCESS_DIRECTORY), _known_labels(configuration))
    metrics.start()
    audit = AuditLog(
        trail, audit_stream, ipv6_prefix=settings.ipv6_prefix, in_admission=trail is store
    )
    parts = _Parts(configuration, store, trail, Recorder(audit, metrics, clock), clock)
    keys = SigningKeySource(settings, clock=clock, check_seconds=key_check_seconds)
    app.extensions[EXTENSION_KEY] = Broker(
        settings=settings,
        issuance=_issuance(parts, keys),
        metrics=metrics,
        calls=_calls(parts),
        webhooks=_webhooks(settings, store, clock),
        usage_alerts=UsageAlerts(
            store=store, scope=policy.usage.alert_pauses, recorder=parts.recorder
        ),
        resources=(store,) if trail is store else (store, trail),
        heartbeat=KeyHeartbeat(keys.current, store, clock, f"{socket.gethostname()}:{os.getpid()}"),
    )
    _attach_request_hooks(app, metrics)
    transport.init_app(app, settings)
    register_error_handlers(app)
    for blueprint in (tokens.blueprint, ops.blueprint, webhooks.blueprint):
        app.register_blueprint(blueprint)
    return app


@dataclass(frozen=True)
class _Parts:
    """What the use cases are built from: the configuration, where state and the trail are
    kept, the one recorder of decisions and the one clock."""

    configuration: Configuration
    store: StateStore
    trail: AuditTrail
    recorder: Recorder
    clock: Clock


def _issuance(parts: _Parts, keys: SigningKeySource) -> TokenIssuance:
    """The token use case, with its callers, policy, budgets and signing key."""
    configuration, clock = parts.configuration, parts.clock
    settings, policy = configuration.settings, configuration.policy
    return TokenIssuance(
        authenticator=_authenticator(configuration, clock),
        policy=policy.tokens,
        budgets=policy.all_budgets(),
        minter=Minter(keys.current, Services.from_settings(settings)),
        push_names=frozenset(settings.push_credentials),
        store=parts.store,
        trail=None if parts.trail is parts.store else parts.trail,
        app_check=AppCheck(settings.appcheck, clock=clock) if settings.appcheck else None,
        recorder=parts.recorder,
        ipv6_prefix=settings.ipv6_prefix,
        # As far as the identity provider's clock may be off from ours: its leeway.
        revocation_margin=max(
            (provider.leeway_seconds for provider in configuration.providers), default=30
        ),
        resources=_resources(parts, keys),
    )


def _resources(parts: _Parts, keys: SigningKeySource) -> PlanResources:
    """Twilio's part of a plan: Workers looked up by friendly name, provisioned rooms.
    twilio's REST client is loaded only when the policy asks for either."""
    rules = parts.configuration.policy.tokens.rules
    by_name = any(rule.task_router and rule.task_router.by_friendly_name for rule in rules)
    provisions = any(rule.provision for rule in rules)
    if not by_name and not provisions:
        return PlanResources(WorkerResolver(None, parts.clock))
    from service.account.broker_rest import BoundedTwilio, TwilioRooms, TwilioWorkers

    rest = BoundedTwilio(keys.current, parts.configuration.settings.api_base_url)
    return PlanResources(
        WorkerResolver(TwilioWorkers(rest) if by_name else None, parts.clock),
        RoomKeeper(TwilioRooms(rest), parts.store, parts.clock) if provisions else None,
    )


def _webhooks(settings: Settings, store: StateStore, clock: Clock) -> WebhookGuard:
    """Twilio's signed webhooks: the primary Auth Token, and the secondary while rotating."""
    auth_tokens = [token for token in (settings.auth_token, settings.auth_token_secondary) if token]
    return WebhookGuard(SignatureChecker(auth_tokens), store, clock)


def _calls(parts: _Parts) -> VoiceCalls:
    """The Voice call use case: the dial policy, budgets, the caller id."""
    configuration = parts.configuration
    policy = configuration.policy
    return VoiceCalls(
        dial_policy=policy.dial,
        incoming=policy.incoming,
        caller_id=configuration.settings.caller_id,
        budgets=policy.all_budgets(),
        store=parts.store,
        recorder=parts.recorder,
        identity_prefixes=tuple(provider.identity_prefix for provider in configuration.providers),
    )


def _known_labels(configuration: Configuration) -> KnownLabels:
    """Every label value the metrics can take, created at zero."""
    return KnownLabels(
        grants=GRANT_NAMES,
        codes=tuple(sorted({code for codes in error_codes().values() for code in codes})),
        budgets=(*LIMIT_KEYS, CALLS),
        event_types=tuple(dict.fromkeys((*WATCHED_EVENTS, *configuration.policy.usage.pause_on))),
    )


def _authenticator(configuration: Configuration, clock: Clock) -> Authenticator:
    """Who may call: the identity provider, the development issuer, client keys."""
    settings = configuration.settings
    providers = [provider_of(provider, clock=clock) for provider in configuration.providers]
    if settings.dev_issuer_enabled:
        providers.append(Provider(DevIssuer.load_or_create(settings.dev_dir).verifier()))
    return Authenticator(
        providers,
        identity_claim=configuration.policy.tokens.identity_claim,
        clock=clock,
        client_keys=ClientKeyFile(settings.client_keys_file) if settings.client_keys_file else None,
    )


def _attach_request_hooks(app: Flask, metrics: Metrics) -> None:
    """A request id on every response, and the latency of every request."""

    @app.before_request
    def assign_request_id() -> None:
        g.request_id = secrets.token_hex(16)
        g.started = time.perf_counter()

    @app.after_request
    def add_request_id(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        metrics.observe(endpoint, elapsed, response.status_code)
        return response
