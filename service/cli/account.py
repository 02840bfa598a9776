"""``token-broker account``: the Twilio account's posture, as Twilio advises keeping it."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import partial

import click

from service.account.posture import (
    CHECKS,
    EVENT_DAYS,
    SECURITY_EVENTS,
    Account,
    Expected,
    Finding,
    check,
)
from service.account.twilio_rest import AccountEvent, TwilioPosture
from service.base.clock import system_clock
from service.cli.loading import EXIT_NO, admin_options, fail, guarded, load, store_for, twilio_call
from service.cli.operators import operator_record, record_action
from service.config.declared import Variable
from service.config.reading import VariableReader
from service.config.settings import Settings
from service.state import ACCOUNT_EVENTS, StateStore

#: How far back each look of ``account watch`` goes, and (a day more) how long the fleet
#: remembers what it reported: a watch stopped for less than this misses nothing.
WATCH_DAYS = 7


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


@account.command("watch")
@click.option("--once", is_flag=True, help="Look once and exit (from cron).")
@click.option("--interval", type=click.IntRange(5, 3600), default=60, show_default=True)
@click.option(
    "--account-sid",
    envvar="TWILIO_ADMIN_ACCOUNT_SID",
    help="The account to watch [default: the broker's TWILIO_ACCOUNT_SID]",
)
@click.option("--api-base-url", envvar="TWILIO_API_BASE_URL", hidden=True)
def watch(once: bool, interval: int, account_sid: str | None, api_base_url: str | None) -> None:
    """Report the account's new security events (Monitor Events), one JSON line each,
    once for the whole fleet; pause issuance for the types [account_guard] pause_on lists.

    Reads with TWILIO_MONITOR_API_KEY_SID and _SECRET (a key that may only read events;
    each may be given as NAME_FILE), else TWILIO_ADMIN_AUTH_TOKEN."""
    configuration = load()
    settings = configuration.settings
    store = store_for(settings)
    reader = _events_reader(account_sid or settings.account_sid, api_base_url)
    pause_on = configuration.policy.usage.pause_on
    while True:
        since = system_clock() - timedelta(days=WATCH_DAYS)
        events = twilio_call(partial(reader.events, since))
        _report(settings, store, events, pause_on)
        if once:
            return
        time.sleep(interval)  # between looks at Twilio: the command's own rhythm


def _events_reader(account_sid: str, api_base_url: str | None) -> TwilioPosture:
    read = VariableReader(os.environ)
    key_sid = read.text(Variable("TWILIO_MONITOR_API_KEY_SID", str, "", from_file=True))
    key_secret = read.text(Variable("TWILIO_MONITOR_API_KEY_SECRET", str, "", secret=True))
    if read.problems:
        fail(read.problems)
    if key_sid and key_secret:
        return TwilioPosture(account_sid, key_secret, key_sid=key_sid, api_base_url=api_base_url)
    token = os.environ.get("TWILIO_ADMIN_AUTH_TOKEN", "").strip()
    if not token:
        fail(["set TWILIO_MONITOR_API_KEY_SID and _SECRET (or TWILIO_ADMIN_AUTH_TOKEN)"])
    return TwilioPosture(account_sid, token, api_base_url=api_base_url)


def _report(
    settings: Settings,
    store: StateStore,
    events: Sequence[AccountEvent],
    pause_on: tuple[str, ...],
) -> None:
    """Each security event not reported before, by any watcher: a line, a count, and for
    the types that pause, a pause of all issuance naming the event and where it came from."""
    now = system_clock()
    remember = (WATCH_DAYS + 1) * 86400
    for event in sorted(events, key=lambda found: (found.event_date or now, found.sid)):
        wanted = event.event_type.startswith(SECURITY_EVENTS) or event.event_type in pause_on
        mark = [f"account-event:{event.sid}"]
        if not wanted or not guarded(partial(store.first_time, mark, now, remember)):
            continue
        click.echo(json.dumps(_event_fields(event)))
        guarded(partial(store.tally_up, ACCOUNT_EVENTS, event.event_type))
        if event.event_type in pause_on:
            reason = (
                f"account event {event.event_type} ({event.sid}) "
                f"from {event.source_ip_address or 'an unknown address'}"
            )
            guarded(partial(store.pause, reason, now))
            record_action(settings, store, operator_record("paused", now, reason=reason))
            click.echo(f"issuance paused: {reason}", err=True)


def _event_fields(event: AccountEvent) -> dict[str, str | None]:
    return {
        "sid": event.sid,
        "event_type": event.event_type,
        "event_date": event.event_date.isoformat() if event.event_date else None,
        "source_ip_address": event.source_ip_address or None,
        "actor_sid": event.actor_sid or None,
        "resource_sid": event.resource_sid or None,
    }
