"""Within budget? Rate limits per identity, client, client address and fleet-wide.

Built on the ``limits`` library with its moving-window strategy: no rolling window of
a budget's length ever admits more than the budget (a fixed window would let twice
through across a boundary). Each spend is one atomic test-and-spend of one budget (one
round trip with Redis), so concurrent requests never get past a budget together.
Budgets are spent narrowest first (identity, client, address, global): a request
refused by the first budget moves no counter; one refused by a wider budget has already
spent the narrower ones, a deliberate trade of one round trip per budget for a test
before each spend. A failed authentication spends the separate
``auth_failures_per_ip`` budget, checked before verifying credentials not seen before.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

import limits
from limits.errors import StorageError
from limits.storage import MovingWindowSupport, StorageTypes
from limits.strategies import MovingWindowRateLimiter

from service.errors import RateLimited, Unavailable
from service.tables import TableReader

AUTH_FAILURES = "auth_failures_per_ip"
CALLS = "calls_per_identity"
SPENDING_BUDGETS = ("per_identity", "per_client", "per_ip", "global")
LIMIT_KEYS = (*SPENDING_BUDGETS, AUTH_FAILURES)
MAX_VOICE_OUTGOING_COST = 1000


def valid_budget(budget: str) -> bool:
    """True for a ``limits`` budget such as ``"10/minute;200/day"``."""
    try:
        return bool(limits.parse_many(budget))
    except ValueError:
        return False


@dataclass(frozen=True)
class Budgets:
    """The policy's ``[limits]``: budgets as ``limits`` strings, by name.

    ``voice_outgoing_cost`` is what one token with outgoing Voice spends of each budget
    (it can place calls, the costly kind of token); every other token spends 1.
    """

    budgets: Mapping[str, str]
    voice_outgoing_cost: int = 1

    def smallest_amount(self, name: str) -> int | None:
        """The fewest units any window of budget ``name`` admits, or None if unset."""
        text = self.budgets.get(name)
        return min(item.amount for item in limits.parse_many(text)) if text else None


def parse_budgets(reader: TableReader, value: object) -> Budgets:
    """The ``[limits]`` table: ``"N/unit"`` budgets joined by ``;``, and the outgoing cost."""
    table = reader.table(value, "[limits]")
    reader.known_keys(table, {*LIMIT_KEYS, "voice_outgoing_cost"}, "[limits]")
    cost = reader.integer(
        table.get("voice_outgoing_cost", 1),
        "[limits].voice_outgoing_cost",
        low=1,
        high=MAX_VOICE_OUTGOING_COST,
        default=1,
    )
    budgets: dict[str, str] = {}
    for key in LIMIT_KEYS:
        if key not in table:
            continue
        budget = table[key]
        if not isinstance(budget, str) or not valid_budget(budget):
            reader.problem(f"[limits].{key} must look like '10/minute;200/day'")
            continue
        budgets[key] = budget
    return Budgets(budgets=budgets, voice_outgoing_cost=cost)


@dataclass(frozen=True)
class _Budget:
    name: str
    items: tuple[limits.RateLimitItem, ...]


class RateLimiter:
    """Spends budgets read from the policy's ``[limits]``; a missing budget is unlimited."""

    def __init__(self, storage: MovingWindowSupport, budgets: Mapping[str, str]) -> None:
        # limits types its strategies by storage class; the moving window needs only this.
        self._limiter = MovingWindowRateLimiter(cast(StorageTypes, storage))
        self._budgets = {
            name: _Budget(name, tuple(limits.parse_many(text))) for name, text in budgets.items()
        }

    def __repr__(self) -> str:
        return f"RateLimiter(budgets={sorted(self._budgets)!r})"

    def check_authentication_budget(self, client_ip: str) -> None:
        """Refuse an address whose failed authentications spent their budget."""
        budget = self._budgets.get(AUTH_FAILURES)
        key = ("ip", client_ip)
        for item in budget.items if budget else ():
            if not self._guard(self._limiter.test, item, key, 1):
                raise RateLimited(
                    f"{AUTH_FAILURES} spent", retry_after=self._retry_after(item, key)
                )

    def record_authentication_failure(self, client_ip: str) -> None:
        budget = self._budgets.get(AUTH_FAILURES)
        if budget is not None:
            self._hit(budget, ("ip", client_ip), cost=1)

    def spend_call(self, identity: str) -> None:
        """Spend one of ``calls_per_identity`` (the dial policy's budget), if configured."""
        budget = self._budgets.get(CALLS)
        if budget is not None:
            self._hit(budget, ("call", identity), cost=1)

    def spend(self, *, identity: str, client: str | None, client_ip: str, cost: int) -> None:
        """Spend ``cost`` of every budget this request falls under, or raise ``RateLimited``."""
        keys = {
            "per_identity": ("identity", identity),
            "per_client": ("client", client) if client else None,
            "per_ip": ("ip", client_ip),
            "global": ("global", "all"),
        }
        spending = [
            (self._budgets.get(name), key)
            for name in SPENDING_BUDGETS
            if (key := keys[name]) is not None
        ]
        for budget, key in spending:
            if budget is not None:
                self._hit(budget, key, cost=cost)

    def _hit(self, budget: _Budget, key: tuple[str, str], cost: int) -> None:
        for item in budget.items:
            if not self._guard(self._limiter.hit, item, key, cost):
                raise RateLimited(f"{budget.name} spent", retry_after=self._retry_after(item, key))

    @staticmethod
    def _guard(
        operation: Callable[..., bool], item: limits.RateLimitItem, key: tuple[str, str], cost: int
    ) -> bool:
        try:
            return operation(item, *key, cost=cost)
        except StorageError:
            raise Unavailable("rate-limit storage cannot be reached") from None

    def _retry_after(self, item: limits.RateLimitItem, key: tuple[str, str]) -> int:
        try:
            stats = self._limiter.get_window_stats(item, *key)
        except StorageError:
            raise Unavailable("rate-limit storage cannot be reached") from None
        return max(1, math.ceil(stats.reset_time - time.time()))
