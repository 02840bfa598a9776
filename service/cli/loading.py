"""What every command needs: the one configuration loader, the state store, failure exits.

``load(strict=True)`` is for commands that act as the server would (serve, check-config,
the operator's commands): any problem ends the command with the full list. With
``strict=False`` a command that can do without the configuration (``inspect``,
``keys list``) gets None instead, and says what it could not do.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Literal, NoReturn, TypeVar, overload

import click
from click.core import ParameterSource

from service.base.errors import ConfigurationError, TwilioApiError, Unavailable
from service.config.settings import Settings
from service.serving.configuration import Configuration, load_configuration
from service.state import AuditTrail, StateStore, open_store, open_trail

T = TypeVar("T")
#: exit codes: 1 the answer is "no" (over a threshold, not valid), 2 unusable
#: configuration or arguments, 3 a dependency cannot be reached
EXIT_NO, EXIT_CONFIGURATION, EXIT_UNREACHABLE = 1, 2, 3


def fail(problems: Sequence[str], exit_code: int = EXIT_CONFIGURATION) -> NoReturn:
    click.echo("token-broker: the configuration has problems:", err=True)
    for problem in problems:
        click.echo(f"  - {problem}", err=True)
    sys.exit(exit_code)


@overload
def load(*, strict: Literal[True] = True) -> Configuration: ...


@overload
def load(*, strict: Literal[False]) -> Configuration | None: ...


def load(*, strict: bool = True) -> Configuration | None:
    """The configuration from the process environment (and ``.env`` in development)."""
    try:
        return load_configuration(os.environ)
    except ConfigurationError as error:
        if strict:
            fail(error.problems)
        return None


def store_for(settings: Settings, *, create: bool = False) -> StateStore:
    """The state store the server uses, answering; else exit with why. Only the server
    (``create``) makes a new one: a command run elsewhere must not act on a store of its
    own while the server goes on with another."""
    try:
        store = open_store(settings.state_url, retention=settings.retention, create=create)
        store.ping()
    except ConfigurationError as error:
        fail(error.problems)
    except Unavailable:
        fail(["the state store (BROKER_STATE_URL) cannot be reached"], exit_code=EXIT_UNREACHABLE)
    return store


def trail_for(settings: Settings, store: StateStore) -> AuditTrail:
    """The durable audit trail: ``store``, or the database ``BROKER_AUDIT_URL`` names,
    answering; else exit with why."""
    trail = open_trail(settings.audit_url, store, retention=settings.retention)
    if trail is not store:
        try:
            trail.ping()
        except Unavailable:
            fail(
                ["the audit trail (BROKER_AUDIT_URL) cannot be reached"],
                exit_code=EXIT_UNREACHABLE,
            )
    return trail


STATE_STORE = "the state store (BROKER_STATE_URL)"
AUDIT_TRAIL = "the audit trail (BROKER_AUDIT_URL, else the state store)"


def guarded(action: Callable[[], T], place: str = STATE_STORE) -> T:
    """Run an action on the state store (or ``place``); exit with why when it cannot be
    reached."""
    try:
        return action()
    except Unavailable:
        fail([f"{place} cannot be reached"], exit_code=EXIT_UNREACHABLE)


def twilio_call(action: Callable[[], T]) -> T:
    """Run a call to Twilio's REST API; exit with Twilio's own message when it fails."""
    try:
        return action()
    except TwilioApiError as error:
        fail([f"Twilio's REST API: {error}"], exit_code=EXIT_UNREACHABLE)


def _not_from_arguments(context: click.Context, parameter: click.Parameter, value: str) -> str:
    if context.get_parameter_source(parameter.name or "") == ParameterSource.COMMANDLINE:
        raise click.UsageError(
            "give the Auth Token in TWILIO_ADMIN_AUTH_TOKEN or at the prompt, never as an "
            "argument: every user of the machine can read those"
        )
    return value


def admin_options(command: Callable[..., None]) -> Callable[..., None]:
    """Credentials for Twilio's REST API, given to this command only (never the server).

    The Auth Token comes from ``TWILIO_ADMIN_AUTH_TOKEN``, or is asked for without echo:
    never an argument, which every user of the machine can read in the process list.
    """
    command = click.option(
        "--api-base-url", envvar="TWILIO_API_BASE_URL", hidden=True, help="A local emulator."
    )(command)
    command = click.option(
        "--auth-token",
        envvar="TWILIO_ADMIN_AUTH_TOKEN",
        prompt="The account's Auth Token",
        hide_input=True,
        hidden=True,
        callback=_not_from_arguments,
    )(command)
    return click.option(
        "--account-sid",
        envvar="TWILIO_ADMIN_ACCOUNT_SID",
        required=True,
        help="The account (or TWILIO_ADMIN_ACCOUNT_SID).",
    )(command)


def iso(moment: int) -> str:
    """Epoch seconds as an ISO 8601 UTC time."""
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")
