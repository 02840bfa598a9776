"""Within budget? The policy's ``[limits]``: what each request spends, and of whose budget.

Budgets are ``limits`` strings (``"10/minute;200/day"``), parsed by that library, each
window a moving window: no rolling window of its length ever admits more than its
amount. A request spends ``per_identity``, ``per_client``, ``per_ip`` (its client
network, see ``addresses``) and ``global``; the state store tests all of them and spends
all or none. ``auth_failures_per_ip`` is spent only by credentials that fail to verify,
and refuses only further guesses: a credential that verifies never meets it.
``denials_per_identity`` is spent by each 403 of a verified caller: past it, further
refusals are 429 (a refusal spends nothing else, so without it probing would be free).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import limits

from service.base.tables import TableReader
from service.state import Spend, Window

AUTH_FAILURES = "auth_failures_per_ip"
DENIALS = "denials_per_identity"
#: Refusals a caller may collect (403: grant or room not allowed, revoked, attestation)
#: before further ones are 429: probing what the policy allows is not free.
DEFAULT_DENIALS = "20/minute;200/day"
CALLS = "calls_per_identity"
#: Requests of one identity that make the broker call Twilio's REST API (a Worker looked
#: up, a room created): spent only when a call is made, never for a known Worker or room.
TWILIO_CALLS = "twilio_calls_per_identity"
DEFAULT_TWILIO_CALLS = "10/minute;200/day"
SPENDING_BUDGETS = ("per_identity", "per_client", "per_ip", "global")
LIMIT_KEYS = (*SPENDING_BUDGETS, AUTH_FAILURES, DENIALS, TWILIO_CALLS)
MAX_VOICE_OUTGOING_COST = 1000


def valid_budget(budget: str) -> bool:
    """True for a ``limits`` budget such as ``"10/minute;200/day"``."""
    try:
        return bool(limits.parse_many(budget))
    except ValueError:
        return False


def windows_of(budget: str) -> tuple[Window, ...]:
    """The moving windows of a ``limits`` budget string."""
    return tuple(Window(item.amount, item.get_expiry()) for item in limits.parse_many(budget))


@dataclass(frozen=True)
class Budgets:
    """The budgets by name, and what one token that can place calls costs.

    ``voice_outgoing_cost`` is what one token with outgoing Voice spends of each budget
    (it can place calls, the costly kind of token); every other token spends 1.
    """

    budgets: Mapping[str, str]
    voice_outgoing_cost: int = 1
    _windows: Mapping[str, tuple[Window, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        windows = {name: windows_of(text) for name, text in self.budgets.items()}
        object.__setattr__(self, "_windows", windows)

    def smallest_amount(self, name: str) -> int | None:
        """The fewest units any window of budget ``name`` admits, or None if unset."""
        windows = self._windows.get(name)
        return min(window.amount for window in windows) if windows else None

    def with_budget(self, name: str, budget: str | None) -> Budgets:
        """These budgets and one more (the dial policy's ``calls_per_identity``)."""
        if budget is None:
            return self
        return Budgets({**self.budgets, name: budget}, self.voice_outgoing_cost)

    def token_spends(self, *, identity: str, client: str | None, address: str) -> tuple[Spend, ...]:
        """What a token request spends: its identity, its app, its network, the fleet."""
        owners = {
            "per_identity": f"identity:{identity}",
            "per_client": f"client:{client}" if client else None,
            "per_ip": f"ip:{address}",
            "global": "fleet",
        }
        return tuple(
            Spend(name, owner, self._windows[name])
            for name, owner in owners.items()
            if owner is not None and name in self._windows
        )

    def failure_spends(self, address: str) -> tuple[Spend, ...]:
        """What a credential that failed to verify spends: its network's guesses."""
        return self._one(AUTH_FAILURES, f"ip:{address}")

    def denial_spends(self, identity: str) -> tuple[Spend, ...]:
        """What a refusal of a verified caller (a 403) spends: its identity's denials."""
        return self._one(DENIALS, f"identity:{identity}")

    def twilio_call_spends(self, identity: str) -> tuple[Spend, ...]:
        """What a request that makes the broker call Twilio's REST API spends."""
        return self._one(TWILIO_CALLS, f"identity:{identity}")

    def call_spends(self, identity: str) -> tuple[Spend, ...]:
        """What a call placed by ``identity`` spends."""
        return self._one(CALLS, f"identity:{identity}")

    def _one(self, name: str, owner: str) -> tuple[Spend, ...]:
        windows = self._windows.get(name)
        return (Spend(name, owner, windows),) if windows else ()


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
    budgets: dict[str, str] = {DENIALS: DEFAULT_DENIALS, TWILIO_CALLS: DEFAULT_TWILIO_CALLS}
    for key in LIMIT_KEYS:
        if key not in table:
            continue
        budget = table[key]
        if not isinstance(budget, str) or not valid_budget(budget):
            reader.problem(f"[limits].{key} must look like '10/minute;200/day'")
            continue
        budgets[key] = budget
    return Budgets(budgets=budgets, voice_outgoing_cost=cost)
