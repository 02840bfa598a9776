"""The ``token-broker`` command."""

from __future__ import annotations

import json
import os
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from service.callers.dev_issuer import DevIssuer
from service.clock import system_clock
from service.configuration import Configuration, load_configuration
from service.errors import ConfigurationError
from service.inspection import inspect_token
from service.minting import SigningKey

FAKE_CREDENTIALS_NOTICE = (
    "Twilio credentials: FAKE (generated for a first run). Tokens are well-formed, "
    "Twilio will reject them until real credentials are in .env"
)
DEFAULT_BIND = "127.0.0.1:8000"
DEMO_REQUEST = {"grants": {"video": {"room": "lobby"}}}


def _fail(problems: tuple[str, ...] | list[str], exit_code: int = 2) -> NoReturn:
    click.echo("token-broker: the configuration has problems:", err=True)
    for problem in problems:
        click.echo(f"  - {problem}", err=True)
    sys.exit(exit_code)


def _configuration() -> Configuration:
    try:
        return load_configuration(os.environ)
    except ConfigurationError as error:
        _fail(error.problems)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Token Broker: short-lived, scoped Twilio Access Tokens for authenticated callers."""


@main.command("check-config")
def check_config() -> None:
    """Validate settings and policy; list every problem and exit non-zero if any."""
    configuration = _configuration()
    settings = configuration.settings
    click.echo(f"ok: profile {settings.profile}, {len(configuration.policy.rules)} policy rules")
    if configuration.fake_credentials:
        click.echo(FAKE_CREDENTIALS_NOTICE)


@main.command("serve")
@click.option("--bind", default=DEFAULT_BIND, show_default=True, help="HOST:PORT to listen on.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--threads",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Threads per worker; above 1 uses gunicorn's gthread worker instead of sync.",
)
def serve(bind: str, workers: int, threads: int) -> None:
    """Run the broker under gunicorn (never Flask's development server)."""
    from service.server import run  # gunicorn is imported only by the command that needs it

    configuration = _configuration()
    if configuration.settings.profile == "dev":
        click.echo(_dev_banner(configuration, bind), err=True)
    run(bind=bind, workers=workers, threads=threads)


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
        "Check the token it returns (signature, expiry, what Twilio would say):",
        "",
        f"  BROKER_PROFILE=dev {shlex.quote(broker)} inspect TOKEN",
        "",
    ]
    return "\n".join(lines)


@main.command("dev-session")
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
    settings = _configuration().settings
    if not settings.dev_issuer_enabled:
        _fail(["dev-session needs BROKER_PROFILE=dev; production has no development issuer"])
    extra: dict[str, Any] = {}
    for item in claims:
        key, separator, value = item.partition("=")
        if not separator or not key or key in ("iss", "aud", "sub", "iat", "exp", "nbf"):
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


@main.command("inspect")
@click.argument("token")
@click.option("--json", "as_json", is_flag=True, help="Print the inspection as JSON.")
def inspect(token: str, as_json: bool) -> None:
    """Decode a Twilio Access Token, verify it, and explain what Twilio would refuse.

    Pass - to read the token from standard input. Exits 1 when the token is not valid.
    """
    if token == "-":
        token = sys.stdin.read().strip()
    key = _signing_key_if_configured()
    report = inspect_token(token, key, system_clock())
    if as_json:
        click.echo(
            json.dumps(
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
        )
    else:
        click.echo(f"identity:  {report.identity}")
        grants = report.claims.get("grants")
        for grant, value in grants.items() if isinstance(grants, dict) else ():
            if grant != "identity":
                click.echo(f"grant:     {grant} {json.dumps(value)}")
        for claim in ("nbf", "exp"):
            if isinstance(report.claims.get(claim), int):
                moment = report.claims[claim]
                click.echo(f"{claim}:       {moment} ({_iso(moment)})")
        click.echo(f"signature: {report.signature}")
        for note in report.notes:
            click.echo(f"note:      {note}")
        for finding in report.findings:
            click.echo(f"twilio would refuse it: {finding}")
        click.echo("verdict:   valid" if report.valid else "verdict:   NOT valid")
    sys.exit(0 if report.valid else 1)


def _iso(moment: int) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def _signing_key_if_configured() -> SigningKey | None:
    try:
        settings = load_configuration(os.environ).settings
    except ConfigurationError:
        click.echo(
            "note:      the settings do not load here, so the signature cannot be checked "
            "(for tokens from `make run`, set BROKER_PROFILE=dev)",
            err=True,
        )
        return None
    return SigningKey.from_settings(settings)
