"""May this client call there? The dial policy of the policy file's ``[dial]`` table.

Deny by default: without ``[dial]`` no call leaves. A destination is an E.164 number
under an allowed prefix and under no blocked prefix (blocked wins), and not in the
built-in high-risk ranges unless an allowed prefix names that range itself; or
``client:IDENTITY`` for an identity the patterns allow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from service.base.patterns import glob_match
from service.base.tables import TableReader
from service.bookkeeping.limits import valid_budget
from service.tokens import VOICE_IDENTITY

E164 = re.compile(r"\+[1-9][0-9]{6,14}")
CLIENT_PREFIX = "client:"
#: Destinations refused unless ``allowed_prefixes`` names them (or a longer prefix in
#: them) explicitly, whatever shorter prefix allows their country: premium and shared-
#: cost ranges, personal numbers, satellite and international networks, and the
#: Caribbean NANP area codes most used for toll fraud (they dial like +1, cost like
#: international premium lines).
HIGH_RISK_PREFIXES = (
    # North America: premium rate
    "+1900",
    "+1976",
    # Caribbean NANP area codes
    "+1242",  # Bahamas
    "+1246",  # Barbados
    "+1264",  # Anguilla
    "+1268",  # Antigua and Barbuda
    "+1284",  # British Virgin Islands
    "+1345",  # Cayman Islands
    "+1441",  # Bermuda
    "+1473",  # Grenada
    "+1649",  # Turks and Caicos
    "+1658",  # Jamaica
    "+1664",  # Montserrat
    "+1721",  # Sint Maarten
    "+1758",  # Saint Lucia
    "+1767",  # Dominica
    "+1784",  # Saint Vincent and the Grenadines
    "+1809",  # Dominican Republic
    "+1829",  # Dominican Republic
    "+1849",  # Dominican Republic
    "+1868",  # Trinidad and Tobago
    "+1869",  # Saint Kitts and Nevis
    "+1876",  # Jamaica
    # United Kingdom: personal numbers, premium and higher-cost non-geographic
    "+4470",
    "+449",
    "+4487",
    # satellite and international networks, international premium rate
    "+870",
    "+881",
    "+882",
    "+883",
    "+979",
)


@dataclass(frozen=True)
class DialPolicy:
    allowed_prefixes: tuple[str, ...] = ()
    blocked_prefixes: tuple[str, ...] = ()
    client_identities: tuple[str, ...] = ()
    calls_per_identity: str | None = None


@dataclass(frozen=True)
class CallAllowed:
    number: str | None = None
    client: str | None = None


@dataclass(frozen=True)
class CallRefused:
    reason: str


CallDecision = CallAllowed | CallRefused


def caller_identity(from_field: str) -> str | None:
    """The identity of a ``client:IDENTITY`` caller, or None for anything else."""
    if not from_field.startswith(CLIENT_PREFIX):
        return None
    identity = from_field[len(CLIENT_PREFIX) :]
    return identity if VOICE_IDENTITY.fullmatch(identity) else None


def decide_call(policy: DialPolicy | None, destination: str) -> CallDecision:
    """Where the call may go, or why not (the budget is checked by the caller)."""
    if policy is None:
        return CallRefused("no dial policy: outgoing calls are off")
    if destination.startswith(CLIENT_PREFIX):
        target = destination[len(CLIENT_PREFIX) :]
        if not VOICE_IDENTITY.fullmatch(target):
            return CallRefused("malformed client identity")
        if not any(glob_match(pattern.split("*"), target) for pattern in policy.client_identities):
            return CallRefused("client-to-client call to an identity no rule allows")
        return CallAllowed(client=target)
    if not E164.fullmatch(destination):
        return CallRefused("malformed number")
    if any(destination.startswith(prefix) for prefix in policy.blocked_prefixes):
        return CallRefused("blocked prefix (premium or high-risk)")
    allowed = [prefix for prefix in policy.allowed_prefixes if destination.startswith(prefix)]
    if not allowed:
        return CallRefused("country not allowed")
    risky = [prefix for prefix in HIGH_RISK_PREFIXES if destination.startswith(prefix)]
    if risky and max(map(len, allowed)) < max(map(len, risky)):
        return CallRefused("high-risk destination (premium, personal or toll-fraud range)")
    return CallAllowed(number=destination)


def parse_dial(reader: TableReader, value: object) -> DialPolicy | None:
    """The ``[dial]`` table; None (no call leaves) when there is none."""
    if value is None:
        return None
    table = reader.table(value, "[dial]")
    known = {"allowed_prefixes", "blocked_prefixes", "client_identities", "calls_per_identity"}
    reader.known_keys(table, known, "[dial]")
    prefixes: dict[str, tuple[str, ...]] = {}
    for key in ("allowed_prefixes", "blocked_prefixes"):
        raw = table.get(key, [])
        if not isinstance(raw, list) or not all(
            isinstance(p, str) and re.fullmatch(r"\+[0-9]{1,15}", p) for p in raw
        ):
            reader.problem(f"[dial].{key} must be a list of prefixes such as '+1' or '+1900'")
            raw = []
        prefixes[key] = tuple(raw)
    identities = table.get("client_identities", [])
    if not isinstance(identities, list) or not all(
        isinstance(p, str) and re.fullmatch(r"[A-Za-z0-9_*]{1,121}", p) for p in identities
    ):
        reader.problem("[dial].client_identities must be identity patterns such as 'agent_*'")
        identities = []
    budget = table.get("calls_per_identity")
    if budget is not None and not (isinstance(budget, str) and valid_budget(budget)):
        reader.problem("[dial].calls_per_identity must look like '20/hour'")
        budget = None
    return DialPolicy(
        allowed_prefixes=prefixes["allowed_prefixes"],
        blocked_prefixes=prefixes["blocked_prefixes"],
        client_identities=tuple(identities),
        calls_per_identity=budget,
    )


def parse_incoming(reader: TableReader, value: object) -> dict[str, tuple[str, ...]]:
    """``[incoming]``: which identities an inbound call on each of our numbers rings."""
    table = reader.table(value, "[incoming]")
    reader.known_keys(table, {"numbers"}, "[incoming]")
    numbers = table.get("numbers", {})
    routes: dict[str, tuple[str, ...]] = {}
    if not isinstance(numbers, dict):
        reader.problem("[incoming].numbers must be a table of number = [identities]")
        return routes
    for number, identities in numbers.items():
        if (
            not E164.fullmatch(number)
            or not isinstance(identities, list)
            or not identities
            or not all(
                isinstance(identity, str) and VOICE_IDENTITY.fullmatch(identity)
                for identity in identities
            )
        ):
            reader.problem(f"[incoming].numbers: {number!r} must map an E.164 number to identities")
            continue
        routes[number] = tuple(identities)
    return routes
