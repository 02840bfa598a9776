"""Commands for the account's Standard API keys, through Twilio's REST API (rotation)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from service.account.twilio_rest import TwilioKeys
from service.base.clock import system_clock
from service.cli import rotation
from service.cli.loading import EXIT_NO, admin_options, fail, load, store_for, twilio_call
from service.serving.configuration import Configuration


@click.group("keys")
def keys() -> None:
    """The account's Standard API keys, through Twilio's REST API (for rotation)."""


@keys.command("list")
@admin_options
def list_keys(account_sid: str, auth_token: str, api_base_url: str | None) -> None:
    """List the account's API keys; mark the one this broker signs with."""
    configuration = load(strict=False)
    active = configuration.settings.api_key_sid if configuration else None
    client = TwilioKeys(account_sid, auth_token, api_base_url=api_base_url)
    for key in twilio_call(client.list):
        created = key.created.isoformat() if key.created else "?"
        marker = "  (signs tokens here)" if key.sid == active else ""
        click.echo(f"{key.sid}  {created}  {key.friendly_name}{marker}")


@keys.command("create")
@click.argument("friendly_name")
@admin_options
def create(friendly_name: str, account_sid: str, auth_token: str, api_base_url: str | None) -> None:
    """Create a Standard API key; print its SID and secret (shown this once)."""
    client = TwilioKeys(account_sid, auth_token, api_base_url=api_base_url)
    key = twilio_call(lambda: client.create(friendly_name))
    click.echo(key.sid)
    click.echo(key.secret)
    click.echo(
        "Write both into TWILIO_API_KEY_SID_FILE and TWILIO_API_KEY_SECRET_FILE (or send the "
        "server HUP after changing them); then delete the old key once its tokens expired.",
        err=True,
    )


@keys.command("rotate")
@click.option("--finish", is_flag=True, help="Delete the previous key, once its tokens expired.")
@click.option(
    "--timeout",
    type=click.FloatRange(1, 3600),
    default=60,
    show_default=True,
    help="How long to wait for every running instance to sign with the new key.",
)
@admin_options
def rotate(
    finish: bool, timeout: float, account_sid: str, auth_token: str, api_base_url: str | None
) -> None:
    """Make a new Standard key, write it to the key files, and return once every running
    instance signs with it; with --finish, delete the previous one. Run it again after
    an interruption: it goes on from where it stopped."""
    configuration = load()
    client = TwilioKeys(account_sid, auth_token, api_base_url=api_base_url)
    if finish:
        rotation.finish(configuration, client)
        return
    rotation.key_files(configuration)  # before anything else: without them, nothing to do
    rotation.rotate(configuration, client, store_for(configuration.settings), timeout)


@keys.command("delete")
@click.argument("sid")
@click.option("--force", is_flag=True, help="Delete although tokens signed with it may be alive.")
@admin_options
def delete(
    sid: str, force: bool, account_sid: str, auth_token: str, api_base_url: str | None
) -> None:
    """Delete an API key that no longer signs tokens."""
    configuration = load()
    if sid == configuration.settings.api_key_sid:
        fail([f"{sid} is the key this broker signs with: rotate to a new key first"])
    alive_until = _old_tokens_alive_until(configuration)
    if alive_until is not None and not force:
        fail(
            [
                f"tokens signed with the previous key may be alive until {alive_until.isoformat()} "
                "(the maximum TTL after the switch); wait, or pass --force"
            ],
            exit_code=EXIT_NO,
        )
    client = TwilioKeys(account_sid, auth_token, api_base_url=api_base_url)
    twilio_call(lambda: client.delete(sid))
    click.echo(f"deleted {sid}")


def _old_tokens_alive_until(configuration: Configuration) -> datetime | None:
    """When the last token of the previous key expires, if that is still ahead.

    The switch is when the key files last changed; without key files it is unknown, and
    the command cannot tell: it says nothing.
    """
    files = configuration.settings.signing_key_files
    if files is None:
        return None
    switched = max(path.stat().st_mtime for path in files)
    max_ttl = configuration.policy.tokens.max_ttl
    until = datetime.fromtimestamp(switched, UTC) + timedelta(seconds=max_ttl)
    return until if until > system_clock() else None
