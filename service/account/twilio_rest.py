"""Twilio's REST API for operators: API keys, usage records and usage triggers.

Only the ``token-broker keys``, ``usage`` and ``usage-trigger`` commands use it, with
credentials given to those commands; the server never holds them. ``api_base_url``
points the twilio client at another host (a local emulator in tests) and keeps the
request paths as Twilio's. twilio's REST client is imported by those commands only:
it weighs some 16 MB, which no serving process should carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from twilio.base.exceptions import TwilioException

from service.base.errors import TwilioApiError


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


def _account(account_sid: str, auth_token: str, api_base_url: str | None) -> Any:
    from twilio.http.http_client import TwilioHttpClient  # heavy: see the module's note
    from twilio.rest import Client

    class ToBaseUrl(TwilioHttpClient):  # type: ignore[misc]  # twilio ships no type hints
        """Sends twilio's requests to ``base_url`` with Twilio's own paths."""

        def request(self, method: str, url: str, *arguments: Any, **options: Any) -> Any:
            parts = urlsplit(url)
            query = f"?{parts.query}" if parts.query else ""
            target = f"{str(api_base_url).rstrip('/')}{parts.path}{query}"
            return super().request(method, target, *arguments, **options)

    http_client = ToBaseUrl(timeout=10) if api_base_url else TwilioHttpClient(timeout=10)
    return Client(account_sid, auth_token, http_client=http_client).api.v2010.accounts(account_sid)


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
        try:
            found = getattr(self._account.usage.records, period).list()
        except TwilioException as error:
            raise TwilioApiError(str(error)) from None
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
        try:
            trigger = self._account.usage.triggers.create(
                callback_url=callback_url,
                trigger_value=value,
                usage_category=category,
                callback_method="POST",
                trigger_by="price",
                recurring="daily",
                friendly_name=f"token-broker: {category} over {value}",
            )
        except TwilioException as error:
            raise TwilioApiError(str(error)) from None
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
        try:
            keys = self._account.keys.list()
        except TwilioException as error:
            raise TwilioApiError(str(error)) from None
        return [ApiKey(key.sid, key.friendly_name or "", key.date_created) for key in keys]

    def create(self, friendly_name: str) -> NewApiKey:
        try:
            key = self._account.new_keys.create(friendly_name=friendly_name)
        except TwilioException as error:
            raise TwilioApiError(str(error)) from None
        return NewApiKey(key.sid, key.friendly_name or "", key.secret)

    def delete(self, sid: str) -> None:
        try:
            self._account.keys(sid).delete()
        except TwilioException as error:
            raise TwilioApiError(str(error)) from None
