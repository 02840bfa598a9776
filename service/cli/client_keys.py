"""Commands for client keys: the credentials of server-to-server callers (your backend)."""

from __future__ import annotations

import click

from service.base.clock import system_clock
from service.base.errors import ConfigurationError
from service.callers.client_keys import ClientKeyFile
from service.cli.loading import EXIT_NO, fail, iso, load


@click.group("client-key")
def client_key() -> None:
    """Keys for server-to-server callers (your backend), never for mobile or web apps."""


def _client_key_file() -> ClientKeyFile:
    path = load().settings.client_keys_file
    if path is None:
        fail(["set BROKER_CLIENT_KEYS_FILE to the file that keeps client keys"])
    try:
        return ClientKeyFile(path)
    except ConfigurationError as error:
        fail(error.problems)


@client_key.command("create")
@click.argument("name")
def create(name: str) -> None:
    """Create a key for client NAME and print it: the only time it is shown."""
    keys = _client_key_file()
    try:
        key = keys.create(name, system_clock())
    except ConfigurationError as error:
        fail(error.problems)
    click.echo(key)
    click.echo(
        f"stored only as a digest in {keys.path}; give it to the {name!r} backend now", err=True
    )


@client_key.command("list")
def list_keys() -> None:
    """List the keys: id, client, when created, revoked or not (never the key)."""
    for key in _client_key_file().entries():
        state = "revoked" if key.revoked else "active"
        click.echo(f"{key.id}  {key.client}  {iso(int(key.created))}  {state}")


@client_key.command("revoke")
@click.argument("id_or_client")
def revoke(id_or_client: str) -> None:
    """Revoke one key by id, or every key of a client by its name."""
    count = _client_key_file().revoke(id_or_client)
    if not count:
        fail([f"no active key has the id or client {id_or_client!r}"], exit_code=EXIT_NO)
    click.echo(f"revoked {count} key(s)")
