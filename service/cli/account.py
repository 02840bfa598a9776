"""``token-broker account``: the Twilio account's posture, as Twilio advises keeping it."""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import click

from service.account.posture import CHECKS, EVENT_DAYS, Account, Expected, Finding, check
from service.account.twilio_rest import TwilioPosture
from service.base.clock import system_clock
from service.cli.loading import EXIT_NO, admin_options, load, twilio_call


@click.group("account")
def account() -> None:
    """The Twilio account the broker guards (Twilio's REST API, admin credentials)."""


@account.command("check")
@click.option("--json", "as_json", is_flag=True, help="One JSON document (for tools).")
@admin_options
def check_account(
    as_json: bool, account_sid: str, auth_token: str, api_base_url: str | None
) -> None:
    """Old API keys, high-risk or unneeded dialing, a missing usage trigger, and the
    security events of the last days. Exit 0 clean, 1 with findings, 3 when Twilio
    cannot be asked."""
    configuration = load()
    settings, dial = configuration.settings, configuration.policy.dial
    now = system_clock()
    posture = TwilioPosture(account_sid, auth_token, api_base_url=api_base_url)
    found = twilio_call(
        lambda: Account(
            keys=posture.keys(),
            countries=posture.dialing_countries(),
            triggers=posture.usage_triggers(),
            events=posture.events(now - timedelta(days=EVENT_DAYS)),
        )
    )
    expected = Expected(
        now=now,
        key_max_age_days=settings.key_max_age_days,
        signing_key_sid=settings.api_key_sid,
        allowed_prefixes=dial.allowed_prefixes if dial is not None else None,
        public_url=settings.public_url,
    )
    findings = check(found, expected)
    if as_json:
        click.echo(json.dumps({"findings": [_fields(f) for f in findings], "checked": CHECKS}))
    else:
        _table(findings)
    sys.exit(EXIT_NO if findings else 0)


def _fields(finding: Finding) -> dict[str, str]:
    return {
        "check": finding.check,
        "severity": finding.severity,
        "subject": finding.subject,
        "detail": finding.detail,
    }


def _table(findings: list[Finding]) -> None:
    if not findings:
        click.echo(f"ok: nothing found ({', '.join(CHECKS)})")
        return
    width = max(len(finding.check) for finding in findings)
    for finding in findings:
        click.echo(
            f"{finding.severity:<8}  {finding.check:<{width}}  {finding.subject}: {finding.detail}"
        )
        click.echo(f"{'':<8}  {'':<{width}}  -> {finding.remedy}")
