"""Who matches which rule: the policy's ``[[rules]]`` (room patterns: ``rooms``).

A rule matches app users by their verified claims (``match = { claims = {...} }``, or
``{}`` for everyone), or server-to-server callers by client name and the identities they
may act for (``match = { clients = [...], identities = [...] }``); never both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from service.base.patterns import glob_match
from service.base.tables import TableReader, is_string_list
from service.callers.claims import claim_value
from service.tokens.format import MIN_TTL, TWILIO_MAX_TTL
from service.tokens.provision import Provision, parse_provision
from service.tokens.rooms import RoomPattern, parse_rooms
from service.tokens.workers import TaskRouterRule, parse_task_router

Claims = Mapping[str, object]
#: What a rule asks of the app for the grants it gives: nothing, a valid Firebase App
#: Check token, or one used only once. Listed from the least to the most strict.
Attestation = Literal["none", "required", "limited_use"]
ATTESTATIONS: tuple[Attestation, ...] = ("none", "required", "limited_use")
ClaimValue = str | int | bool
#: what a rule expects of a claim: a value, or any of several
Expected = ClaimValue | tuple[ClaimValue, ...]


@dataclass(frozen=True)
class Rule:
    name: str
    match_claims: Mapping[str, Expected]
    rooms: tuple[RoomPattern, ...] | None
    voice_incoming: bool
    voice_outgoing: bool
    chat: bool
    sync: bool
    max_ttl: int

    #: server-to-server clients (client-key names) this rule is for; empty: app users only
    match_clients: tuple[str, ...] = ()
    #: the identities those clients may act for (``*`` wildcards)
    match_identities: tuple[str, ...] = ()
    #: OAuth scopes the caller's token must all carry (``scope`` or ``scp``)
    match_scopes: tuple[str, ...] = ()
    #: what the grants of this rule need of the app (Firebase App Check)
    attestation: Attestation = "none"
    #: the TaskRouter workspace and how the caller's Worker is found
    task_router: TaskRouterRule | None = None
    #: the settings its rooms are created with before a token is issued
    provision: Provision | None = None

    def applies_to(self, claims: Claims, identity: str, client_key: str | None) -> bool:
        """App users are matched by claims and scopes; a client-key caller by its name and
        the identity it acts for."""
        if client_key is not None or self.match_clients:
            return client_key in self.match_clients and any(
                glob_match(pattern.split("*"), identity) for pattern in self.match_identities
            )
        if self.match_scopes and not set(self.match_scopes) <= scopes_of(claims):
            return False
        return all(
            _claim_matches(claim_value(claims, path), expected)
            for path, expected in self.match_claims.items()
        )


def scopes_of(claims: Claims) -> set[str]:
    """The scopes a token carries: the space-separated ``scope`` and the ``scp`` list."""
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(item for item in value if isinstance(item, str))
    return found


def _claim_matches(actual: object, expected: Expected) -> bool:
    wanted = expected if isinstance(expected, tuple) else (expected,)
    found = actual if isinstance(actual, list) else [actual]
    return any(_same_value(item, one) for item in found for one in wanted)


def _same_value(actual: object, expected: ClaimValue) -> bool:
    # bool is an int in Python; keep true and 1 apart.
    return type(actual) is type(expected) and actual == expected


def parse_rules(reader: TableReader, value: object, max_ttl: int) -> tuple[Rule, ...]:
    """The ``[[rules]]`` array; each rule's ``max_ttl`` only tightens ``max_ttl``."""
    if not isinstance(value, list):
        reader.problem("rules must be an array of tables ([[rules]])")
        return ()
    rules = tuple(_rule(reader, raw, index, max_ttl) for index, raw in enumerate(value))
    names = [rule.name for rule in rules]
    for name in sorted({n for n in names if names.count(n) > 1}):
        reader.problem(f"rule name {name!r} is used twice")
    return rules


def _rule(reader: TableReader, raw: object, index: int, max_ttl: int) -> Rule:
    where = f"rules[{index}]"
    table = reader.table(raw, where)
    allowed = {"name", "match", "video", "voice", "chat", "sync", "task_router"}
    allowed |= {"max_ttl", "attestation"}
    reader.known_keys(table, allowed, where)
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        reader.problem(f"{where}.name must be a non-empty string")
        name = f"#{index}"
    where = f"rule {name!r}"
    match = reader.table(table.get("match", {}), f"{where}.match")
    reader.known_keys(match, {"claims", "scopes", "clients", "identities"}, f"{where}.match")
    clients, identities = _clients(reader, match, where)
    incoming, outgoing = _voice(reader, table, where)
    video = table.get("video")
    return Rule(
        name=name,
        match_claims=_match_claims(reader, match, where),
        match_scopes=(
            reader.strings(match["scopes"], f"{where}.match.scopes", what="scopes")
            if "scopes" in match
            else ()
        ),
        match_clients=clients,
        match_identities=identities,
        rooms=parse_rooms(reader, table, where),
        voice_incoming=incoming,
        voice_outgoing=outgoing,
        chat=reader.flag(table.get("chat", False), f"{where}.chat"),
        sync=reader.flag(table.get("sync", False), f"{where}.sync"),
        max_ttl=_rule_max_ttl(reader, table, where, max_ttl),
        attestation=_attestation(reader, table, where),
        task_router=parse_task_router(reader, table, where),
        provision=parse_provision(reader, video, where) if isinstance(video, dict) else None,
    )


def _attestation(reader: TableReader, table: Mapping[str, object], where: str) -> Attestation:
    value = table.get("attestation", "none")
    for known in ATTESTATIONS:
        if value == known:
            return known
    reader.problem(f'{where}.attestation must be "required" or "limited_use"')
    return "none"


def _match_claims(
    reader: TableReader, match: Mapping[str, object], where: str
) -> dict[str, Expected]:
    """Claim paths and what they must hold; ``a.b = 1`` (a nested table in TOML) is the
    path ``a.b``, a quoted ``"https://x.io/roles"`` the top-level name."""
    claims: dict[str, Expected] = {}
    table = reader.table(match.get("claims", {}), f"{where}.match.claims")
    for path, expected in _flattened(table):
        if isinstance(expected, str | int | bool):
            claims[path] = expected
        elif (
            isinstance(expected, list)
            and expected
            and all(isinstance(item, str | int | bool) for item in expected)
        ):
            claims[path] = tuple(expected)
        else:
            reader.problem(
                f"{where}.match.claims.{path} must be a string, integer, boolean or a "
                "list of them (any of)"
            )
    return claims


def _flattened(table: Mapping[str, object], above: str = "") -> list[tuple[str, object]]:
    found: list[tuple[str, object]] = []
    for key, value in table.items():
        path = f"{above}.{key}" if above else key
        if isinstance(value, dict) and value:  # an empty table is a mistake: reported
            found += _flattened(value, path)
        else:
            found.append((path, value))
    return found


def _clients(
    reader: TableReader, match: Mapping[str, object], where: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``clients`` and the ``identities`` they may act for; both or neither."""
    if "clients" not in match and "identities" not in match:
        return (), ()
    clients, identities = match.get("clients"), match.get("identities")
    if not is_string_list(clients) or not is_string_list(identities):
        reader.problem(
            f"{where}.match: clients and identities go together, each a non-empty list "
            "of strings (identities may use * wildcards)"
        )
        return (), ()
    if "claims" in match or "scopes" in match:
        reader.problem(f"{where}.match: a rule for clients cannot match claims or scopes too")
    return tuple(clients), tuple(identities)


def _voice(reader: TableReader, table: Mapping[str, object], where: str) -> tuple[bool, bool]:
    if "voice" not in table:
        return False, False
    voice = reader.table(table["voice"], f"{where}.voice")
    reader.known_keys(voice, {"incoming", "outgoing"}, f"{where}.voice")
    incoming = reader.flag(voice.get("incoming", False), f"{where}.voice.incoming")
    outgoing = reader.flag(voice.get("outgoing", False), f"{where}.voice.outgoing")
    if not incoming and not outgoing:
        reader.problem(f"{where}.voice must allow incoming, outgoing or both")
    return incoming, outgoing


def _rule_max_ttl(
    reader: TableReader, table: Mapping[str, object], where: str, max_ttl: int
) -> int:
    if "max_ttl" not in table:
        return max_ttl
    rule_max_ttl = parse_ttl(reader, table["max_ttl"], f"{where}.max_ttl", max_ttl)
    if rule_max_ttl > max_ttl:
        reader.problem(f"{where}.max_ttl only tightens: it must not exceed [tokens].max_ttl")
        return max_ttl
    return rule_max_ttl


def parse_ttl(reader: TableReader, value: object, where: str, default: int) -> int:
    """A TTL in whole seconds within Twilio's limits."""
    if isinstance(value, bool) or not isinstance(value, int):
        reader.problem(f"{where} must be an integer number of seconds")
        return default
    if not MIN_TTL <= value <= TWILIO_MAX_TTL:
        reader.problem(f"{where} must be from {MIN_TTL} to {TWILIO_MAX_TTL} seconds")
        return default
    return value
