"""How much spend is too much? The policy file's ``[usage]`` and ``[usage_alert]`` tables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from service.base.tables import TableReader
from service.state import PauseScope

TABLES = frozenset({"usage", "usage_alert"})
PERIODS = ("today", "this_month")


@dataclass(frozen=True)
class UsagePolicy:
    #: what a Twilio usage trigger's callback pauses: all issuance, or outgoing Voice only
    alert_pauses: PauseScope = "all"
    #: spend thresholds for `token-broker usage`: period -> usage category -> price
    thresholds: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)


def parse_usage_policy(reader: TableReader, document: Mapping[str, object]) -> UsagePolicy:
    return UsagePolicy(
        alert_pauses=_alert_pauses(reader, document.get("usage_alert", {})),
        thresholds=_thresholds(reader, document.get("usage", {})),
    )


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
