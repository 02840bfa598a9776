"""The posture checks as pure functions: what counts as old, open, beyond the policy."""

from __future__ import annotations

from datetime import timedelta

from service.account.posture import (
    Expected,
    dialing_beyond_policy,
    missing_trigger,
    old_keys,
    security_events,
)
from service.account.twilio_rest import AccountEvent, ApiKey, DialingCountry, UsageTrigger
from tests import support

NOW = support.NOW


def expected(**overrides: object) -> Expected:
    fields: dict[str, object] = {
        "now": NOW,
        "key_max_age_days": 90,
        "signing_key_sid": "SKsigning",
        "allowed_prefixes": ("+1",),
        "public_url": "https://broker.example.test/",
    }
    return Expected(**{**fields, **overrides})  # type: ignore[arg-type]  # Expected's own fields


def test_a_key_is_old_past_the_limit_and_the_signing_key_says_rotate() -> None:
    keys = [
        ApiKey("SKsigning", "", NOW - timedelta(days=91)),
        ApiKey("SKother", "", NOW - timedelta(days=100)),
        ApiKey("SKfresh", "", NOW - timedelta(days=90)),
        ApiKey("SKunknown", "", None),
    ]
    found = old_keys(keys, expected())
    assert [(f.subject, f.remedy) for f in found] == [
        ("SKsigning", "token-broker keys rotate"),
        ("SKother", "token-broker keys delete SKother"),
    ]
    assert old_keys(keys, expected(key_max_age_days=120)) == []


def test_a_country_is_within_the_policy_where_a_prefix_overlaps_its_codes() -> None:
    def open_country(*codes: str) -> DialingCountry:
        return DialingCountry("XX", "X", codes, True, False, False)

    assert dialing_beyond_policy([open_country("+1")], ("+1415",)) == []  # a part of +1
    assert dialing_beyond_policy([open_country("+1242")], ("+1",)) == []  # within +1
    assert len(dialing_beyond_policy([open_country("+44")], ("+1",))) == 1
    assert len(dialing_beyond_policy([open_country("+44")], None)) == 1  # no [dial] at all
    closed = DialingCountry("XX", "X", ("+44",), False, False, False)
    assert dialing_beyond_policy([closed], None) == []


def test_the_trigger_is_ours_only_at_our_public_url() -> None:
    ours = UsageTrigger("UT1", "https://broker.example.test/v1/twilio/usage-alert", "totalprice")
    assert missing_trigger([ours], "https://broker.example.test/") == []
    assert len(missing_trigger([ours], "https://other.example.test")) == 1
    [unset] = missing_trigger([ours], None)
    assert unset.subject == "BROKER_PUBLIC_URL"


def test_only_security_events_are_findings() -> None:
    def happened(event_type: str) -> AccountEvent:
        return AccountEvent("AE1", event_type, NOW, "203.0.113.1", "US1", "SK1", "")

    kinds = [
        "account-api-keys.created",
        "account-auth-token.promoted",
        "usage-trigger.deleted",
        "phone-numbers.created",
        "voice-geographic-permissions.updated",
    ]
    found = security_events([happened(kind) for kind in kinds])
    assert [f.severity for f in found] == ["critical", "warning", "warning", "warning"]
