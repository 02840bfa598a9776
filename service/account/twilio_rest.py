"""Twilio's REST API for operators: API keys, usage records and usage triggers.

Only the ``token-broker keys``, ``usage`` and ``usage-trigger`` commands use it, with
credentials given to those commands; the server never holds them. ``api_base_url``
points the twilio client at another host (a local emulator in tests) and keeps the
request paths as Twilio's. twilio's REST client is imported by those commands only:
it weighs some 16 MB, which no serving process should carry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

from twilio.base.exceptions import TwilioException, TwilioRestException

from service.base.errors import TwilioApiError

T = TypeVar("T")


@dataclass(frozen=True)
class ApiKey:
    sid: str
    friendly_name: str
    created: datetime | None


@dataclass(frozen=True)
class NewApiKey:
    """A key just created: its secret is shown by Twilio this once."""

    sid: str
    friendly_name: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class UsageRecord:
    category: str
    price: Decimal
    price_unit: str
    usage: str
    usage_unit: str


#: How long one request to Twilio may take (seconds).
REQUEST_SECONDS = 10.0
#: A 429 is tried again after its Retry-After, at most this often, if it asks at most
#: ``MAX_RETRY_AFTER`` seconds: a command waits for Twilio, it never storms it.
MAX_TRIES = 3
MAX_RETRY_AFTER = 30


def _client(
    account_sid: str, secret: str, api_base_url: str | None, *, key_sid: str | None = None
) -> Any:
    """A twilio client: the account's SID and Auth Token, or an API key's SID and secret."""
    from twilio.http.http_client import TwilioHttpClient  # heavy: see the module's note
    from twilio.rest import Client

    class Patient(TwilioHttpClient):  # type: ignore[misc]  # twilio ships no type hints
        """Sends twilio's requests (to ``api_base_url`` with Twilio's own paths, where
        given), and honours a 429's Retry-After a bounded number of times."""

        def request(self, method: str, url: str, *arguments: Any, **options: Any) -> Any:
            url = rebased(url, api_base_url)
            for _ in range(MAX_TRIES - 1):
                response = super().request(method, url, *arguments, **options)
                wait = _retry_after(response)
                if wait is None:
                    return response
                time.sleep(wait)  # what Twilio asked for, bounded above
            return super().request(method, url, *arguments, **options)

    return Client(
        key_sid or account_sid,
        secret,
        account_sid=account_sid,
        http_client=Patient(timeout=REQUEST_SECONDS),
    )


def rebased(url: str, api_base_url: str | None) -> str:
    """``url`` sent to ``api_base_url`` (an emulator) instead, Twilio's path and query
    kept; unchanged without one."""
    if not api_base_url:
        return url
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{api_base_url.rstrip('/')}{parts.path}{query}"


def retry_after_seconds(response: Any) -> int | None:
    """The seconds a response's ``Retry-After`` says, when it says a number; else None."""
    text = str((response.headers or {}).get("Retry-After", "")).strip()
    return int(text) if text.isdigit() else None


def _retry_after(response: Any) -> int | None:
    """The seconds a 429 asks to wait, when it is worth waiting that long; else None."""
    if response.status_code != 429:
        return None
    wait = retry_after_seconds(response)
    return wait if wait is not None and wait <= MAX_RETRY_AFTER else None


def _account(account_sid: str, auth_token: str, api_base_url: str | None) -> Any:
    return _client(account_sid, auth_token, api_base_url).api.v2010.accounts(account_sid)


def _calling(action: Callable[[], T]) -> T:
    """Run a request to Twilio; its failure as one line: Twilio's status, code, message."""
    from requests import RequestException

    try:
        return action()
    except TwilioRestException as error:
        message = " ".join(str(error.msg or "").split())
        raise TwilioApiError(
            f"HTTP {error.status} (Twilio error {error.code}): {message}"
        ) from None
    except TwilioException as error:
        raise TwilioApiError(" ".join(str(error).split())) from None
    except RequestException as error:
        raise TwilioApiError(f"cannot be reached ({type(error).__name__})") from None


class TwilioUsage:
    """Today's and this month's usage records; usage triggers that call us back."""

    def __init__(
        self, account_sid: str, auth_token: str, *, api_base_url: str | None = None
    ) -> None:
        self._account = _account(account_sid, auth_token, api_base_url)

    def __repr__(self) -> str:
        return "TwilioUsage()"

    def records(self, period: str) -> list[UsageRecord]:
        """``period`` is ``today`` or ``this_month``."""
        found = _calling(lambda: getattr(self._account.usage.records, period).list())
        return [
            UsageRecord(
                category=record.category or "",
                price=Decimal(str(record.price or 0)),
                price_unit=record.price_unit or "",
                usage=record.usage or "",
                usage_unit=record.usage_unit or "",
            )
            for record in found
        ]

    def create_trigger(self, category: str, value: str, callback_url: str) -> str:
        """A daily trigger on ``category`` at ``value`` (a price) that calls us back."""
        trigger = _calling(
            lambda: self._account.usage.triggers.create(
                callback_url=callback_url,
                trigger_value=value,
                usage_category=category,
                callback_method="POST",
                trigger_by="price",
                recurring="daily",
                friendly_name=f"token-broker: {category} over {value}",
            )
        )
        return str(trigger.sid)


class TwilioKeys:
    """List, create and delete the account's Standard API keys."""

    def __init__(
        self, account_sid: str, auth_token: str, *, api_base_url: str | None = None
    ) -> None:
        self._account = _account(account_sid, auth_token, api_base_url)

    def __repr__(self) -> str:
        return "TwilioKeys()"

    def list(self) -> list[ApiKey]:
        return _api_keys(self._account)

    def create(self, friendly_name: str) -> NewApiKey:
        key = _calling(lambda: self._account.new_keys.create(friendly_name=friendly_name))
        return NewApiKey(key.sid, key.friendly_name or "", key.secret)

    def delete(self, sid: str) -> None:
        _calling(self._account.keys(sid).delete)


@dataclass(frozen=True)
class DialingCountry:
    """One country's Voice dialing permissions (Voice Dialing Permissions API)."""

    iso_code: str
    name: str
    country_codes: tuple[str, ...]
    low_risk: bool
    high_risk_special: bool
    high_risk_tollfraud: bool


@dataclass(frozen=True)
class UsageTrigger:
    sid: str
    callback_url: str
    usage_category: str


@dataclass(frozen=True)
class AccountEvent:
    """One Monitor event: what was done to the account, by whom, from where."""

    sid: str
    event_type: str
    event_date: datetime | None
    source_ip_address: str
    actor_sid: str
    resource_sid: str
    description: str


class TwilioPosture:
    """What ``account check`` and ``account watch`` read: keys, dialing permissions, usage
    triggers, events. ``key_sid`` names an API key whose secret is ``secret`` (a key that
    may only read events serves ``events``); else ``secret`` is the Auth Token."""

    def __init__(
        self,
        account_sid: str,
        secret: str,
        *,
        key_sid: str | None = None,
        api_base_url: str | None = None,
    ) -> None:
        self._client = _client(account_sid, secret, api_base_url, key_sid=key_sid)
        self._account = self._client.api.v2010.accounts(account_sid)

    def __repr__(self) -> str:
        return "TwilioPosture()"

    def keys(self) -> list[ApiKey]:
        return _api_keys(self._account)

    def dialing_countries(self) -> list[DialingCountry]:
        found = _calling(self._client.voice.v1.dialing_permissions.countries.list)
        return [
            DialingCountry(
                iso_code=country.iso_code or "",
                name=country.name or "",
                country_codes=tuple(country.country_codes or ()),
                low_risk=bool(country.low_risk_numbers_enabled),
                high_risk_special=bool(country.high_risk_special_numbers_enabled),
                high_risk_tollfraud=bool(country.high_risk_tollfraud_numbers_enabled),
            )
            for country in found
        ]

    def usage_triggers(self) -> list[UsageTrigger]:
        found = _calling(self._account.usage.triggers.list)
        return [
            UsageTrigger(
                trigger.sid or "", trigger.callback_url or "", trigger.usage_category or ""
            )
            for trigger in found
        ]

    def events(self, since: datetime) -> list[AccountEvent]:
        found = _calling(lambda: self._client.monitor.v1.events.list(start_date=since))
        return [
            AccountEvent(
                sid=event.sid or "",
                event_type=event.event_type or "",
                # twilio leaves a date it cannot read as text: unknown, then
                event_date=event.event_date if isinstance(event.event_date, datetime) else None,
                source_ip_address=event.source_ip_address or "",
                actor_sid=event.actor_sid or "",
                resource_sid=event.resource_sid or "",
                description=event.description or "",
            )
            for event in found
        ]


def _api_keys(account: Any) -> list[ApiKey]:
    """The account's API keys, every page of them."""
    found = _calling(account.keys.list)
    return [ApiKey(key.sid, key.friendly_name or "", _date(key.date_created)) for key in found]


def _date(value: object) -> datetime | None:
    """A date twilio read; None for one it could not (it leaves those as text)."""
    return value if isinstance(value, datetime) else None
