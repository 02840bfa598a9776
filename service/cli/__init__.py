"""The ``token-broker`` command: one module per audience.

``serve`` runs and develops the broker, ``operators`` holds the kill switch, revocations,
the audit trail and spend, ``client_keys`` the keys of server-to-server callers and
``twilio_keys`` the account's API keys, ``account`` the account's posture; ``loading``
is what they all share.
"""

from __future__ import annotations

import click

from service.cli import account, client_keys, operators, serve, twilio_keys
from service.serving import probe


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Token Broker: short-lived, scoped Twilio Access Tokens for authenticated callers."""


for _command in (
    serve.serve,
    serve.check_config,
    probe.healthcheck,
    serve.dev_session,
    serve.inspect,
    operators.pause,
    operators.resume,
    operators.revoke,
    operators.unrevoke,
    operators.audit,
    operators.usage,
    operators.usage_trigger,
    client_keys.client_key,
    twilio_keys.keys,
    account.account,
):
    main.add_command(_command)

__all__ = ["main"]
