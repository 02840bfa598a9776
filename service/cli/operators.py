"""Commands for operators: the kill switch, revocations, the audit trail and spend."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import click

from service.account.twilio_rest import TwilioUsage
from service.base.clock import system_clock
from service.bookkeeping.audit import AuditRecord, Decision
from service.cli.loading import (
    AUDIT_TRAIL,
    EXIT_NO,
    admin_options,
    fail,
    guarded,
    iso,
    load,
    store_for,
    trail_for,
    twilio_call,
)
from service.config.settings import Settings
from service.state import StateStore

AUDIT_FIELDS = (
    "identity",
    "client",
    "code",
    "reason",
    "room",
    "ttl",
    "request_id",
    "client_ip",
    "count",
)


def record_action(settings: Settings, store: StateStore, record: AuditRecord) -> None:
    """Store an operator's action in the durable audit trail."""
    trail = trail_for(settings, store)
    guarded(lambda: trail.append_audit(record.at, record.to_json()), AUDIT_TRAIL)


def operator_record(
    decision: Decision,
    at: datetime,
    *,
    reason: str | None = None,
    identity: str | None = None,
    client: str | None = None,
) -> AuditRecord:
    return AuditRecord(
        event="operator",
        decision=decision,
        request_id="cli",
        client_ip="",
        at=at,
        reason=reason,
        identity=identity,
        client=client,
    )


def _subject(identity: str | None, client: str | None) -> str:
    if (identity is None) == (client is None):
        raise click.UsageError("name exactly one of --identity or --client")
    return f"identity:{identity}" if identity is not None else f"app:{client}"


@click.command("pause")
@click.option("--reason", required=True, help="Why; shown in /readyz, the audit trail and logs.")
def pause(reason: str) -> None:
    """Refuse all issuance (503 issuance_paused) on every worker and instance."""
    settings = load().settings
    store = store_for(settings)
    now = system_clock()
    guarded(lambda: store.pause(reason, now))
    record_action(settings, store, operator_record("paused", now, reason=reason))
    click.echo(f"issuance paused: {reason}")


@click.command("resume")
def resume() -> None:
    """End a pause."""
    settings = load().settings
    store = store_for(settings)
    guarded(store.resume)
    record_action(settings, store, operator_record("resumed", system_clock()))
    click.echo("issuance resumed")


@click.command("revoke")
@click.option("--identity", help="A Twilio identity (the verified claim of a caller).")
@click.option(
    "--client",
    help="An app: the OAuth client (azp/client_id) of its users' tokens. Client keys are "
    "revoked with `token-broker client-key revoke`.",
)
def revoke(identity: str | None, client: str | None) -> None:
    """Refuse tokens and calls to every session signed in before now (403 revoked)."""
    subject = _subject(identity, client)
    settings = load().settings
    store = store_for(settings)
    now = system_clock()
    guarded(lambda: store.revoke(subject, now))
    record_action(
        settings, store, operator_record("revoked", now, identity=identity, client=client)
    )
    click.echo(f"revoked {subject} for sessions issued before {iso(int(now.timestamp()))}")


@click.command("unrevoke")
@click.option("--identity")
@click.option("--client")
def unrevoke(identity: str | None, client: str | None) -> None:
    """Lift a revocation."""
    subject = _subject(identity, client)
    settings = load().settings
    store = store_for(settings)
    found = guarded(lambda: store.unrevoke(subject))
    record_action(
        settings,
        store,
        operator_record("unrevoked", system_clock(), identity=identity, client=client),
    )
    click.echo(f"unrevoked {subject}" if found else f"{subject} was not revoked")


@click.command("audit")
@click.option("--identity", help="Only records for this identity.")
@click.option("--decision", help="Only this decision: issued, denied, authentication_failed...")
@click.option("--since", "since_text", help="Only the last 30m, 1h, 7d...")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON record a line.")
def audit(
    identity: str | None, decision: str | None, since_text: str | None, limit: int, as_json: bool
) -> None:
    """Show the durable audit trail, oldest first."""
    since = system_clock() - _duration(since_text) if since_text else None
    settings = load().settings
    trail = trail_for(settings, store_for(settings))
    lines = guarded(
        lambda: trail.audit_lines(since, limit, identity=identity, decision=decision),
        AUDIT_TRAIL,
    )
    records = [json.loads(line) for line in lines]
    for record in records:
        click.echo(json.dumps(record) if as_json else _audit_line(record))


def _audit_line(record: dict[str, Any]) -> str:
    """One record as text, each value escaped: a stored value never forges a line, nor
    reaches the operator's terminal as a control sequence."""
    parts = [record.get("at", "?"), record.get("decision", "?")]
    for name in AUDIT_FIELDS:
        if name in record:
            parts.append(f"{name}={record[name]}")
    if record.get("grants"):
        parts.append("grants=" + ",".join(map(str, record["grants"])))
    return " ".join(escaped(str(part)) for part in parts)


def escaped(text: str) -> str:
    """``text`` with every control or invisible character written as an escape (``\\x1b``)."""
    if text.isprintable():
        return text
    return "".join(
        character if character.isprintable() else character.encode("unicode_escape").decode()
        for character in text
    )


def _duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit():
        raise click.BadParameter(
            "use a number and s, m, h or d, such as 30m or 7d", param_hint="--since"
        )
    return timedelta(seconds=int(number) * units[unit])


@click.command("usage")
@admin_options
def usage(account_sid: str, auth_token: str, api_base_url: str | None) -> None:
    """Today's and this month's spend by category against the policy's [usage] thresholds.

    Exits 1 when a threshold is exceeded (for cron), 0 otherwise.
    """
    thresholds = load().policy.usage.thresholds
    client = TwilioUsage(account_sid, auth_token, api_base_url=api_base_url)
    exceeded = []
    for period in ("today", "this_month"):
        for record in twilio_call(partial(client.records, period)):
            limit = thresholds.get(period, {}).get(record.category)
            over = limit is not None and record.price > limit
            if over:
                exceeded.append(f"{period} {record.category}")
            mark = (
                f"  OVER {limit}" if over else (f"  (limit {limit})" if limit is not None else "")
            )
            click.echo(
                f"{period:<11}{record.category:<28}{record.price:>12} {record.price_unit}"
                f"  {record.usage} {record.usage_unit}{mark}"
            )
    if exceeded:
        click.echo("over threshold: " + ", ".join(exceeded), err=True)
        sys.exit(EXIT_NO)


@click.group("usage-trigger")
def usage_trigger() -> None:
    """Twilio Usage Triggers that pause issuance here when spend runs away."""


@usage_trigger.command("create")
@click.option(
    "--category", required=True, help="A Twilio usage category, e.g. calls or totalprice."
)
@click.option("--value", required=True, help="The price at which it fires, e.g. 100.")
@admin_options
def usage_trigger_create(
    category: str, value: str, account_sid: str, auth_token: str, api_base_url: str | None
) -> None:
    """Create a daily Usage Trigger whose callback pauses issuance here."""
    public_url = load().settings.public_url
    if not public_url:
        fail(["set BROKER_PUBLIC_URL: Twilio calls the trigger back there"])
    callback = public_url.rstrip("/") + "/v1/twilio/usage-alert"
    client = TwilioUsage(account_sid, auth_token, api_base_url=api_base_url)
    sid = twilio_call(lambda: client.create_trigger(category, value, callback))
    click.echo(f"{sid} calls {callback} when {category} reaches {value}")
