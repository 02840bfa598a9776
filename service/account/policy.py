"""How much spend is too much, and which account events pause issuance? The policy
file's ``[usage]``, ``[usage_alert]`` and ``[account_guard]`` tables."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from service.base.tables import TableReader
from service.state import PauseScope

TABLES = frozenset({"usage", "usage_alert", "account_guard"})
#: What a Monitor event type looks like (``account-api-keys.created``).
_EVENT_TYPE = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)+")
PERIODS = ("today", "this_month")
#: Security events counted from the start (at zero) by ``token_broker_account_events_total``,
#: beside any that ``pause_on`` names.
WATCHED_EVENTS = (
    "account-api-keys.created",
    "account-api-keys.deleted",
    "account-auth-token.promoted",
    "usage-trigger.deleted",
    "voice-geographic-permissions.updated",
)


@dataclass(frozen=True)
class UsagePolicy:
    #: what a Twilio usage trigger's callback pauses: all issuance, or outgoing Voice only
    alert_pauses: PauseScope = "all"
    #: spend thresholds for `token-broker usage`: period -> usage category -> price
    thresholds: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)
    #: Monitor event types that pause all issuance when ``account watch`` sees one
    pause_on: tuple[str, ...] = ()


def parse_usage_policy(reader: TableReader, document: Mapping[str, object]) -> UsagePolicy:
    return UsagePolicy(
        alert_pauses=_alert_pauses(reader, document.get("usage_alert", {})),
        thresholds=_thresholds(reader, document.get("usage", {})),
        pause_on=_pause_on(reader, document.get("account_guard", {})),
    )


def _pause_on(reader: TableReader, value: object) -> tuple[str, ...]:
    """``[account_guard] pause_on = ["account-api-keys.created", ...]``."""
    table = reader.table(value, "[account_guard]")
    reader.known_keys(table, {"pause_on"}, "[account_guard]")
    found = table.get("pause_on", [])
    if not isinstance(found, list) or not all(
        isinstance(kind, str) and _EVENT_TYPE.fullmatch(kind) for kind in found
    ):
        reader.problem(
            "[account_guard].pause_on must list Monitor event types, "
            "such as 'account-api-keys.created'"
        )
        return ()
    return tuple(found)


def _thresholds(reader: TableReader, value: object) -> dict[str, dict[str, Decimal]]:
    """``[usage] today = { calls = 50.0 }``, ``this_month = { totalprice = 500 }``."""
    table = reader.table(value, "[usage]")
    reader.known_keys(table, set(PERIODS), "[usage]")
    thresholds: dict[str, dict[str, Decimal]] = {}
    for period in PERIODS:
        for category, limit in reader.table(table.get(period, {}), f"[usage].{period}").items():
            if isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0:
                reader.problem(f"[usage].{period}.{category} must be a price, such as 50.0")
                continue
            thresholds.setdefault(period, {})[category] = Decimal(str(limit))
    return thresholds


def _alert_pauses(reader: TableReader, value: object) -> PauseScope:
    table = reader.table(value, "[usage_alert]")
    reader.known_keys(table, {"pauses"}, "[usage_alert]")
    pauses = table.get("pauses", "all")
    if pauses == "voice_outgoing":
        return "voice_outgoing"
    if pauses != "all":
        reader.problem("[usage_alert].pauses must be 'all' or 'voice_outgoing'")
    return "all"
