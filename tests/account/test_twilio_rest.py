"""Twilio's REST API through twilio's own client, against the local fake of it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from service.account.twilio_rest import TwilioKeys, TwilioUsage
from service.base.errors import TwilioApiError
from tests import support
from tests.fake_twilio import ADMIN_SID, ADMIN_TOKEN, FakeTwilio


def test_keys_list_create_delete(twilio: FakeTwilio) -> None:
    keys = TwilioKeys(ADMIN_SID, ADMIN_TOKEN, api_base_url=twilio.url)
    [existing] = keys.list()
    assert existing.sid == support.API_KEY_SID
    assert existing.created is not None
    created = keys.create("broker 2")
    assert created.secret == "S" * 32
    assert created.secret not in repr(created)
    keys.delete(created.sid)
    assert [key.sid for key in keys.list()] == [support.API_KEY_SID]
    with pytest.raises(TwilioApiError):
        keys.delete(created.sid)  # gone: Twilio's 404, as an error of ours


def test_usage_records_and_triggers(twilio: FakeTwilio) -> None:
    usage = TwilioUsage(ADMIN_SID, ADMIN_TOKEN, api_base_url=twilio.url)
    today = {record.category: record.price for record in usage.records("today")}
    assert today == {"calls": Decimal("60.00"), "sms": Decimal("1.00")}
    sid = usage.create_trigger("calls", "100", "https://broker.test/v1/twilio/usage-alert")
    assert sid.startswith("UT")
    assert twilio.triggers[0]["Recurring"] == "daily"


def test_wrong_credentials_are_an_error_not_a_crash(twilio: FakeTwilio) -> None:
    with pytest.raises(TwilioApiError):
        TwilioKeys(ADMIN_SID, "0" * 32, api_base_url=twilio.url).list()
    with pytest.raises(TwilioApiError):
        TwilioUsage(ADMIN_SID, "0" * 32, api_base_url=twilio.url).records("this_month")
