"""token-broker account check: the account's posture, read through twilio-python from a
local emulator of Twilio's REST API (paging, error bodies, 401, 429, 5xx, slow answers)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask.testing import FlaskClient

from service.account import twilio_rest
from service.account.posture import CHECKS
from tests import support
from tests.fake_twilio import (
    ADMIN_SID,
    ADMIN_TOKEN,
    MONITOR_KEY_SECRET,
    MONITOR_KEY_SID,
    FakeTwilio,
    Fault,
)

PUBLIC_URL = "https://broker.example.test"
OUR_TRIGGER = {
    "sid": "UT" + "1" * 32,
    "callback_url": PUBLIC_URL + "/v1/twilio/usage-alert",
    "usage_category": "totalprice",
}


def country(iso: str, codes: list[str], *, low: bool = False, **high: bool) -> dict[str, Any]:
    return {
        "iso_code": iso,
        "name": f"Country {iso}",
        "continent": "EUROPE",
        "country_codes": codes,
        "low_risk_numbers_enabled": low,
        "high_risk_special_numbers_enabled": high.get("special", False),
        "high_risk_tollfraud_numbers_enabled": high.get("tollfraud", False),
        "url": f"https://voice.twilio.com/v1/DialingPermissions/Countries/{iso}",
        "links": {},
    }


def event(sid: str, event_type: str, days_ago: float) -> dict[str, Any]:
    moment = (datetime.now(UTC) - timedelta(days=days_ago)).replace(microsecond=0)
    return {
        "sid": sid,
        "event_type": event_type,
        "event_date": moment.isoformat().replace("+00:00", "Z"),
        "source_ip_address": "203.0.113.66",
        "actor_sid": "US" + "a" * 32,
        "actor_type": "account",
        "resource_sid": "SK" + "e" * 32,
        "resource_type": "api-keys",
        "source": "api",
        "description": None,
        "event_data": {},
        "links": {},
    }


@pytest.fixture
def dialing_environ(environ: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The test broker with a [dial] policy for +1 and +44, and its public URL."""
    policy = tmp_path / "dialing.toml"
    policy.write_text(Path(environ["BROKER_POLICY_FILE"]).read_text() + support.DIAL)
    return {
        **environ,
        "BROKER_POLICY_FILE": str(policy),
        "BROKER_PUBLIC_URL": PUBLIC_URL,
        "TWILIO_CALLER_ID": support.CALLER_ID,
    }


def clean(twilio: FakeTwilio) -> None:
    """An account as Twilio advises: a fresh key, dialing only where the policy dials,
    our usage trigger, no security event."""
    twilio.countries[:] = [
        country("US", ["+1"], low=True),
        country("GB", ["+44"], low=True),
        country("DE", ["+49"]),
    ]
    twilio.triggers[:] = [OUR_TRIGGER]
    twilio.events[:] = [event("AE" + "0" * 32, "phone-numbers.created", 1)]


def check(admin_cli: Callable[..., Result], environment: dict[str, str], *args: str) -> Result:
    return admin_cli(environment, "account", "check", *args)


def test_a_clean_account_has_no_finding(
    dialing_environ: dict[str, str], twilio: FakeTwilio, admin_cli: Callable[..., Result]
) -> None:
    clean(twilio)
    result = check(admin_cli, dialing_environ)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: nothing found")
    as_json = check(admin_cli, dialing_environ, "--json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.output) == {"findings": [], "checked": list(CHECKS)}


def test_every_seeded_problem_is_reported_by_its_check(
    dialing_environ: dict[str, str], twilio: FakeTwilio, admin_cli: Callable[..., Result]
) -> None:
    clean(twilio)
    now = datetime.now(UTC)
    twilio.keys[support.API_KEY_SID]["created"] = now - timedelta(days=120)
    stranger = "SK" + "5" * 32
    twilio.keys[stranger] = {"sid": stranger, "friendly_name": "x", "created": now}
    # 120 countries: Twilio pages them; the problems are on later pages
    twilio.countries[:] = [country(f"Z{n:03d}", [f"+9{n:03d}"]) for n in range(117)]
    twilio.countries += [
        country("US", ["+1"], low=True),
        country("CU", ["+53"], tollfraud=True),
        country("FR", ["+33"], low=True, special=True),
    ]
    twilio.triggers[:] = [{**OUR_TRIGGER, "callback_url": "https://elsewhere.test/alert"}]
    twilio.events[:] = [
        event("AE" + "1" * 32, "account-api-keys.created", 2),
        event("AE" + "2" * 32, "voice-geographic-permissions.updated", 3),
        event("AE" + "3" * 32, "phone-numbers.created", 1),  # harmless
        event("AE" + "4" * 32, "account-api-keys.created", 30),  # older than the window
    ]
    result = check(admin_cli, dialing_environ, "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["checked"] == list(CHECKS)
    assert [(f["check"], f["severity"], f["subject"]) for f in report["findings"]] == [
        ("api_key_age", "warning", support.API_KEY_SID),
        ("voice_high_risk", "critical", "CU"),
        ("voice_high_risk", "critical", "FR"),
        ("voice_beyond_dial_policy", "warning", "FR"),
        ("usage_trigger_missing", "warning", PUBLIC_URL + "/v1/twilio/usage-alert"),
        ("account_events", "critical", "AE" + "1" * 32),
        ("account_events", "warning", "AE" + "2" * 32),
    ]
    assert "this broker signs tokens with it" in report["findings"][0]["detail"]
    assert "203.0.113.66" in report["findings"][5]["detail"]
    assert sum("DialingPermissions/Countries" in r for r in twilio.requests) == 3  # 3 pages
    table = check(admin_cli, dialing_environ)
    assert table.exit_code == 1
    assert "-> token-broker keys rotate" in table.output
    assert "-> token-broker usage-trigger create" in table.output


def test_without_a_dial_policy_every_open_country_is_beyond_it(
    environ: dict[str, str], twilio: FakeTwilio, admin_cli: Callable[..., Result]
) -> None:
    clean(twilio)
    result = check(admin_cli, {**environ, "BROKER_PUBLIC_URL": PUBLIC_URL}, "--json")
    findings = json.loads(result.output)["findings"]
    assert [(f["check"], f["subject"]) for f in findings] == [
        ("voice_beyond_dial_policy", "US"),
        ("voice_beyond_dial_policy", "GB"),
    ]


def test_a_429_is_waited_for_as_twilio_asks(
    dialing_environ: dict[str, str], twilio: FakeTwilio, admin_cli: Callable[..., Result]
) -> None:
    clean(twilio)
    busy = {"code": 20429, "message": "Too Many Requests", "status": 429}
    twilio.faults[:] = [(429, busy, {"Retry-After": "1"}, 0.0)]
    result = check(admin_cli, dialing_environ)
    assert result.exit_code == 0, result.output
    assert twilio.requests[0] == twilio.requests[1]  # the same request, once more


FAILURES: dict[str, list[Fault]] = {
    "refused": [],  # a wrong Auth Token: Twilio's 401
    "server_error": [
        (500, {"code": 20500, "message": "Internal Server Error", "status": 500}, {}, 0.0)
    ],
    "busy_for_long": [
        (
            429,
            {"code": 20429, "message": "Too Many Requests", "status": 429},
            {"Retry-After": "1"},
            0.0,
        )
    ]
    * 3,
    "asks_too_long_a_wait": [
        (
            429,
            {"code": 20429, "message": "Too Many Requests", "status": 429},
            {"Retry-After": "3600"},
            0.0,
        )
    ],
    "slow": [(200, {}, {}, 2.0)],
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_twilio_failing_is_the_unreachable_code_and_one_line(
    failure: str,
    dialing_environ: dict[str, str],
    twilio: FakeTwilio,
    admin_cli: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clean(twilio)
    monkeypatch.setattr(twilio_rest, "REQUEST_SECONDS", 0.5)  # the slow answer takes 2 s
    twilio.faults[:] = FAILURES[failure]
    token = ADMIN_TOKEN if failure != "refused" else "0" * 32
    result = admin_cli(dialing_environ, "account", "check", token=token)
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    problems = [line for line in result.output.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1
    assert problems[0].startswith("  - Twilio's REST API: ")
    assert "0" * 32 not in result.output
    assert ADMIN_TOKEN not in result.output
    if failure == "busy_for_long":
        assert len(twilio.requests) == 3  # tried three times, then it says so


GUARD = '\n[account_guard]\npause_on = ["account-api-keys.created"]\n'


@pytest.fixture
def guarded_environ(environ: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The test broker whose policy pauses on a new API key, read with a monitor key that
    may read events only (the admin token given is wrong: it must not be needed)."""
    policy = tmp_path / "guarded.toml"
    policy.write_text(Path(environ["BROKER_POLICY_FILE"]).read_text() + GUARD)
    return {
        **environ,
        "BROKER_POLICY_FILE": str(policy),
        "TWILIO_MONITOR_API_KEY_SID": MONITOR_KEY_SID,
        "TWILIO_MONITOR_API_KEY_SECRET": MONITOR_KEY_SECRET,
    }


def watch(admin_cli: Callable[..., Result], environment: dict[str, str]) -> list[dict[str, Any]]:
    result = admin_cli(environment, "account", "watch", "--once", token="0" * 32)
    assert result.exit_code == 0, result.output
    assert MONITOR_KEY_SECRET not in result.output
    return [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]


def test_watch_reports_each_event_once_and_pauses_on_the_policys_types(
    guarded_environ: dict[str, str],
    twilio: FakeTwilio,
    admin_cli: Callable[..., Result],
    make_client: Callable[..., FlaskClient],
    caller_token: support.Token,
    post: support.Post,
) -> None:
    client = make_client(guarded_environ)  # a running broker on the same state store
    assert post(support.VIDEO, caller_token(), to=client).status_code == 200
    twilio.events[:] = [
        event("AE" + "1" * 32, "account-api-keys.created", 2),
        event("AE" + "2" * 32, "voice-geographic-permissions.updated", 1),
        event("AE" + "3" * 32, "phone-numbers.created", 1),  # harmless: not reported
    ]
    first = watch(admin_cli, guarded_environ)
    assert [(line["sid"], line["event_type"]) for line in first] == [
        ("AE" + "1" * 32, "account-api-keys.created"),
        ("AE" + "2" * 32, "voice-geographic-permissions.updated"),
    ]
    assert first[0]["source_ip_address"] == "203.0.113.66"
    paused = post(support.VIDEO, caller_token(), to=client)  # at once: no cache of pauses
    support.assert_problem(paused, 503, "issuance_paused")
    assert watch(admin_cli, guarded_environ) == []  # the second look: nothing new
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'token_broker_account_events_total{event_type="account-api-keys.created"} 1.0' in metrics
    assert all(request.startswith("GET /v1/Events") for request in twilio.requests)


def test_a_harmless_event_pauses_nothing(
    guarded_environ: dict[str, str],
    twilio: FakeTwilio,
    admin_cli: Callable[..., Result],
    make_client: Callable[..., FlaskClient],
    caller_token: support.Token,
    post: support.Post,
) -> None:
    client = make_client(guarded_environ)
    twilio.events[:] = [event("AE" + "4" * 32, "voice-geographic-permissions.updated", 1)]
    assert len(watch(admin_cli, guarded_environ)) == 1  # reported, not in pause_on
    assert post(support.VIDEO, caller_token(), to=client).status_code == 200


def test_two_watchers_on_one_store_report_each_event_once(
    guarded_environ: dict[str, str],
    twilio: FakeTwilio,
    make_client: Callable[..., FlaskClient],
) -> None:
    make_client(guarded_environ)  # the server made the store
    twilio.events[:] = [event(f"AE{n:032d}", "account-api-keys.deleted", 1) for n in range(40)]
    environment = {
        **guarded_environ,
        "TWILIO_ADMIN_ACCOUNT_SID": ADMIN_SID,
        "TWILIO_API_BASE_URL": twilio.url,
        "PATH": os.environ.get("PATH", ""),
    }
    watchers = [
        subprocess.Popen(
            [support.BROKER, "account", "watch", "--once"],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    reported: list[str] = []
    for watcher in watchers:
        out, err = watcher.communicate(timeout=60)
        assert watcher.returncode == 0, err
        reported += [json.loads(line)["sid"] for line in out.decode().splitlines()]
    assert sorted(reported) == [f"AE{n:032d}" for n in range(40)]


def test_watch_reads_the_monitor_key_from_files_and_the_brokers_own_account(
    guarded_environ: dict[str, str],
    twilio: FakeTwilio,
    cli: Callable[..., Result],
    make_client: Callable[..., FlaskClient],
    tmp_path: Path,
) -> None:
    """As the Kubernetes CronJob runs it: the monitor key mounted as files, no admin
    credentials at all, the account the broker's own TWILIO_ACCOUNT_SID."""
    make_client(guarded_environ)  # a running broker on the same state store
    twilio.events[:] = [event("AE" + "5" * 32, "account-api-keys.created", 1)]
    sid_file, secret_file = tmp_path / "monitor-sid", tmp_path / "monitor-secret"
    sid_file.write_text(MONITOR_KEY_SID + "\n")
    secret_file.write_text(MONITOR_KEY_SECRET + "\n")
    environment = {
        key: value for key, value in guarded_environ.items() if not key.startswith("TWILIO_MONITOR")
    }
    result = cli(
        "account",
        "watch",
        "--once",
        env={
            **environment,
            "TWILIO_ADMIN_ACCOUNT_SID": None,
            "TWILIO_ADMIN_AUTH_TOKEN": None,
            "TWILIO_MONITOR_API_KEY_SID_FILE": str(sid_file),
            "TWILIO_MONITOR_API_KEY_SECRET_FILE": str(secret_file),
            "TWILIO_API_BASE_URL": twilio.url,
        },
    )
    assert result.exit_code == 0, result.output
    assert MONITOR_KEY_SECRET not in result.output
    events = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [event["event_type"] for event in events] == ["account-api-keys.created"]
