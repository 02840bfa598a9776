"""Commands for running and developing: serve, check-config, dev-session, inspect (and
healthcheck, in ``service.serving.probe``)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from service.base.clock import system_clock
from service.base.errors import ConfigurationError, Unavailable
from service.callers.dev_issuer import DevIssuer
from service.callers.discovery import discovery_url
from service.callers.jwks import JwksKeys
from service.callers.oidc import oidc_verifier
from service.cli.loading import EXIT_NO, fail, iso, load, store_for
from service.config.declared import BIND
from service.config.settings import IdentityProvider, Settings
from service.serving.configuration import Configuration
from service.state import StateStore, open_store
from service.tokens.inspection import Inspection, inspect_token
from service.tokens.minting import SigningKey

FAKE_CREDENTIALS_NOTICE = (
    "Twilio credentials: FAKE (generated for a first run). Tokens are well-formed, "
    "Twilio will reject them until real credentials are in .env"
)
DEMO_REQUEST = {"grants": {"video": {"room": "lobby"}}}
#: prometheus_client's own variable; service.bookkeeping.metrics names it too, but importing that
#: module would import prometheus_client before serve sets it.
PROMETHEUS_MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_RESERVED_CLAIMS = ("iss", "aud", "sub", "iat", "exp", "nbf")


@click.command("check-config")
@click.option(
    "--online",
    is_flag=True,
    help="Also fetch each identity provider's discovery document and keys.",
)
def check_config(online: bool) -> None:
    """Validate settings and policy; list every problem and exit non-zero if any."""
    configuration = load()
    settings = configuration.settings
    rules = len(configuration.policy.tokens.rules)
    click.echo(f"ok: profile {settings.profile}, {rules} policy rules")
    if configuration.fake_credentials:
        click.echo(FAKE_CREDENTIALS_NOTICE)
    try:
        store = open_store(settings.state_url, retention=settings.retention, create=False)
    except ConfigurationError:
        store = None  # no store yet (a first run): no key has an age
    if store is not None:
        warning = key_age_warning(settings, store)
        if warning:
            click.echo(warning, err=True)
        store.close()
    if online:
        problems = [problem for p in configuration.providers if (problem := _check_online(p))]
        if problems:
            fail(problems)


def key_age_warning(settings: Settings, store: StateStore) -> str | None:
    """A warning when the signing key is older than ``BROKER_KEY_MAX_AGE_DAYS`` (from when
    the fleet first saw it); an old key is a warning, never a refusal to start."""
    now = system_clock()
    try:
        first = store.first_seen(f"signing-key:{settings.api_key_sid}", now)
    except Unavailable:
        return None
    days = (now - first).days
    if days <= settings.key_max_age_days:
        return None
    return (
        f"warning: the signing key {settings.api_key_sid} has signed tokens for {days} days, "
        f"more than BROKER_KEY_MAX_AGE_DAYS ({settings.key_max_age_days}): token-broker keys "
        "rotate (README: Rotating the signing key)"
    )


def _check_online(provider: IdentityProvider) -> str | None:
    """What is wrong with a provider's discovery and keys, or None (and say what was found)."""
    keys = oidc_verifier(provider).keys
    assert isinstance(keys, JwksKeys)  # noqa: S101  # oidc_verifier builds JwksKeys
    count, problem = keys.check()
    if problem is not None:
        return f"identity provider {provider.issuer}: {problem}"
    source = provider.jwks_url or f"discovery ({discovery_url(provider.issuer)})"
    click.echo(f"ok: identity provider {provider.issuer}: {count} keys, found by {source}")
    return None


@click.command("serve")
@click.option(
    "--bind",
    default=BIND.default,
    show_default=True,
    envvar=BIND.name,
    help=f"HOST:PORT to listen on (or {BIND.name}).",
)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--connections",
    default=1000,
    show_default=True,
    type=click.IntRange(8, 100_000),
    help="Connections one worker holds at once (each a greenlet; a slow one costs memory).",
)
@click.option(
    "--certfile",
    type=click.Path(exists=True, dir_okay=False),
    help="Serve HTTPS with this certificate (PEM); needs --keyfile.",
)
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False), help="Its private key.")
def serve(
    bind: str, workers: int, connections: int, certfile: str | None, keyfile: str | None
) -> None:
    """Run the broker under gunicorn (never Flask's development server)."""
    if (certfile is None) != (keyfile is None):
        raise click.UsageError("--certfile and --keyfile go together")
    configuration = load()
    store = store_for(configuration.settings, create=True)
    if store.in_process_limits and workers > 1:
        fail(
            [
                "with SQLite state the rate limits live in one process: run one worker "
                "(it holds --connections at once) or set BROKER_STATE_URL=redis://..."
            ]
        )
    if configuration.settings.profile == "dev":
        click.echo(_dev_banner(configuration, bind), err=True)
    warning = key_age_warning(configuration.settings, store)
    if warning:
        click.echo(warning, err=True)
    if configuration.settings.api_base_url and configuration.settings.profile == "production":
        click.echo(
            f"warning: TWILIO_API_BASE_URL is set: the broker's REST calls go to "
            f"{configuration.settings.api_base_url}, not to Twilio (for tests only)",
            err=True,
        )
    # prometheus_client reads this variable when first imported: set it before the import.
    try:
        metrics_directory = tempfile.mkdtemp(prefix="token-broker-metrics-")
    except OSError:
        fail(
            [
                "no writable temporary directory (metrics and worker heartbeats live there): "
                "with docker run --read-only, add --tmpfs /tmp"
            ]
        )
    os.environ[PROMETHEUS_MULTIPROCESS_VARIABLE] = metrics_directory
    from service.serving.server import run  # imports the app, gunicorn and prometheus_client

    try:
        run(
            bind=bind,
            workers=workers,
            connections=connections,
            metrics_directory=metrics_directory,
            tls=(certfile, keyfile) if certfile and keyfile else None,
        )
    finally:
        shutil.rmtree(metrics_directory, ignore_errors=True)


def _dev_banner(configuration: Configuration, bind: str) -> str:
    settings = configuration.settings
    session = DevIssuer.load_or_create(settings.dev_dir).session_token("alice", {}, system_clock())
    curl = " ".join(
        [
            "curl -sS -X POST",
            shlex.quote(f"http://{bind}/v1/tokens"),
            "-H",
            shlex.quote(f"Authorization: Bearer {session}"),
            "-H 'Content-Type: application/json'",
            "-d",
            shlex.quote(json.dumps(DEMO_REQUEST)),
        ]
    )
    lines = [
        "",
        f"Token Broker, development profile, on http://{bind}",
        "Caller tokens come from the built-in development issuer (token-broker dev-session NAME).",
    ]
    if configuration.fake_credentials:
        lines.append(FAKE_CREDENTIALS_NOTICE)
    broker = os.path.relpath(Path(sys.executable).parent / "token-broker")
    lines += [
        "",
        "Get a token for the development user 'alice':",
        "",
        f"  {curl}",
        "",
        "Check the token it returns (signature, expiry, what Twilio would say): paste it into",
        "",
        f"  BROKER_PROFILE=dev {shlex.quote(broker)} inspect",
        "",
    ]
    return "\n".join(lines)


@click.command("dev-session")
@click.argument("name")
@click.option(
    "--claim",
    "claims",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra claim; repeat a key for a list.",
)
def dev_session(name: str, claims: tuple[str, ...]) -> None:
    """Print a caller token for NAME from the development issuer (dev profile only)."""
    settings = load().settings
    if not settings.dev_issuer_enabled:
        fail(["dev-session needs BROKER_PROFILE=dev; production has no development issuer"])
    extra: dict[str, Any] = {}
    for item in claims:
        key, separator, value = item.partition("=")
        if not separator or not key or key in _RESERVED_CLAIMS:
            raise click.BadParameter(
                f"{item!r} is not KEY=VALUE with a custom key", param_hint="--claim"
            )
        if key in extra:
            previous = extra[key]
            extra[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            extra[key] = value
    issuer = DevIssuer.load_or_create(settings.dev_dir)
    click.echo(issuer.session_token(name, extra, system_clock()))


@click.command("inspect")
@click.argument("token", default="-")
@click.option("--json", "as_json", is_flag=True, help="Print the inspection as JSON.")
def inspect(token: str, as_json: bool) -> None:
    """Decode a Twilio Access Token, verify it, and explain what Twilio would refuse.

    The token is read from standard input (or -), so that it never shows in the process
    list; TOKEN as an argument works too. Exits 1 when the token is not valid.
    """
    if token == "-":
        token = sys.stdin.read().strip()
    configuration = load(strict=False)
    if configuration is None:
        click.echo(
            "note:      the settings do not load here, so the signature cannot be checked "
            "(for tokens from `make run`, set BROKER_PROFILE=dev)",
            err=True,
        )
    key = SigningKey.from_settings(configuration.settings) if configuration else None
    report = inspect_token(token, key, system_clock())
    click.echo(_inspection_json(report) if as_json else _inspection_text(report))
    sys.exit(0 if report.valid else EXIT_NO)


def _inspection_json(report: Inspection) -> str:
    return json.dumps(
        {
            "valid": report.valid,
            "header": report.header,
            "claims": report.claims,
            "signature": report.signature,
            "findings": [{"code": f.code, "message": str(f)} for f in report.findings],
            "notes": list(report.notes),
        },
        indent=2,
    )


def _inspection_text(report: Inspection) -> str:
    lines = [f"identity:  {report.identity}"]
    grants = report.claims.get("grants")
    for grant, value in grants.items() if isinstance(grants, dict) else ():
        if grant != "identity":
            lines.append(f"grant:     {grant} {json.dumps(value)}")
    for claim in ("nbf", "exp"):
        moment = report.claims.get(claim)
        if isinstance(moment, int):
            lines.append(f"{claim}:       {moment} ({iso(moment)})")
    lines.append(f"signature: {report.signature}")
    lines += [f"note:      {note}" for note in report.notes]
    lines += [f"twilio would refuse it: {finding}" for finding in report.findings]
    lines.append("verdict:   valid" if report.valid else "verdict:   NOT valid")
    return "\n".join(lines)
