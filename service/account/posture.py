"""The account's posture, as Twilio advises keeping it: pure checks over what the REST
API returned (``twilio_rest.TwilioPosture``), each finding named by its check.

The check names are a contract (``account check --json``, alerting): ``api_key_age``,
``voice_high_risk``, ``voice_beyond_dial_policy``, ``usage_trigger_missing``,
``account_events``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from service.account.twilio_rest import AccountEvent, ApiKey, DialingCountry, UsageTrigger

CHECKS = (
    "api_key_age",
    "voice_high_risk",
    "voice_beyond_dial_policy",
    "usage_trigger_missing",
    "account_events",
)
Severity = Literal["critical", "warning"]
USAGE_ALERT_PATH = "/v1/twilio/usage-alert"
#: How far back ``account_events`` looks.
EVENT_DAYS = 7
#: Monitor event types a stolen credential leaves: new keys, Auth Token changes, dialing
#: opened, usage triggers (the broker's circuit breaker) removed or changed.
SECURITY_EVENTS = (
    "account-api-keys.",
    "account-auth-token.",
    "account-secondary-auth-token.",
    "voice-geographic-permissions.",
    "usage-trigger.",
    "usage-triggers.",
)


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    subject: str
    detail: str
    #: what to do about it, for people (not in ``--json``'s contract fields)
    remedy: str


@dataclass(frozen=True)
class Account:
    """What the REST API said of the account."""

    keys: Sequence[ApiKey]
    countries: Sequence[DialingCountry]
    triggers: Sequence[UsageTrigger]
    events: Sequence[AccountEvent]


@dataclass(frozen=True)
class Expected:
    """What this broker expects of the account."""

    now: datetime
    key_max_age_days: int
    signing_key_sid: str | None
    #: the ``[dial]`` policy's allowed prefixes; None when the policy places no calls
    allowed_prefixes: tuple[str, ...] | None
    public_url: str | None


def check(account: Account, expected: Expected) -> list[Finding]:
    """Every finding, check by check, in the contract's order."""
    return [
        *old_keys(account.keys, expected),
        *high_risk_dialing(account.countries),
        *dialing_beyond_policy(account.countries, expected.allowed_prefixes),
        *missing_trigger(account.triggers, expected.public_url),
        *security_events(account.events),
    ]


def old_keys(keys: Sequence[ApiKey], expected: Expected) -> list[Finding]:
    limit = timedelta(days=expected.key_max_age_days)
    found = []
    for key in keys:
        if key.created is None or expected.now - key.created <= limit:
            continue
        days = (expected.now - key.created).days
        signs = key.sid == expected.signing_key_sid
        found.append(
            Finding(
                "api_key_age",
                "warning",
                key.sid,
                f"created {days} days ago"
                + (" (this broker signs tokens with it)" if signs else ""),
                "token-broker keys rotate" if signs else f"token-broker keys delete {key.sid}",
            )
        )
    return found


def high_risk_dialing(countries: Sequence[DialingCountry]) -> list[Finding]:
    found = []
    for country in countries:
        opened = [
            kind
            for kind, enabled in (
                ("high-risk special numbers", country.high_risk_special),
                ("high-risk toll-fraud numbers", country.high_risk_tollfraud),
            )
            if enabled
        ]
        if opened:
            found.append(
                Finding(
                    "voice_high_risk",
                    "critical",
                    country.iso_code,
                    f"{country.name}: {' and '.join(opened)} enabled",
                    "turn them off in the console (Voice > Settings > Geo permissions)",
                )
            )
    return found


def dialing_beyond_policy(
    countries: Sequence[DialingCountry], allowed_prefixes: tuple[str, ...] | None
) -> list[Finding]:
    """Countries open for calls that the ``[dial]`` policy never places."""
    allowed = allowed_prefixes or ()
    found = []
    for country in countries:
        if not country.low_risk:
            continue
        if any(_overlap(code, prefix) for code in country.country_codes for prefix in allowed):
            continue
        found.append(
            Finding(
                "voice_beyond_dial_policy",
                "warning",
                country.iso_code,
                f"{country.name} ({', '.join(country.country_codes)}) is open for calls "
                "that the [dial] policy never places",
                "turn it off in the console (Voice > Settings > Geo permissions)",
            )
        )
    return found


def _overlap(country_code: str, prefix: str) -> bool:
    """Whether a number could start with both (``+1`` and ``+1415``, ``+44`` and ``+4``)."""
    return country_code.startswith(prefix) or prefix.startswith(country_code)


def missing_trigger(triggers: Sequence[UsageTrigger], public_url: str | None) -> list[Finding]:
    wanted = public_url.rstrip("/") + USAGE_ALERT_PATH if public_url else None
    if wanted is not None and any(trigger.callback_url == wanted for trigger in triggers):
        return []
    detail = (
        f"no usage trigger calls {wanted}"
        if wanted
        else "BROKER_PUBLIC_URL is not set: no usage trigger can call this broker"
    )
    return [
        Finding(
            "usage_trigger_missing",
            "warning",
            wanted or "BROKER_PUBLIC_URL",
            detail,
            "token-broker usage-trigger create (with BROKER_PUBLIC_URL set)",
        )
    ]


def security_events(events: Sequence[AccountEvent]) -> list[Finding]:
    return [
        Finding(
            "account_events",
            "critical" if event.event_type.startswith("account-api-keys.created") else "warning",
            event.sid,
            f"{event.event_type} at {event.event_date.isoformat() if event.event_date else '?'}"
            f" from {event.source_ip_address or '?'} by {event.actor_sid or '?'}",
            "if no one of yours did this: rotate the Auth Token and keys, pause issuance",
        )
        for event in events
        if event.event_type.startswith(SECURITY_EVENTS)
    ]
