"""May they? Deny-by-default authorization, read from a TOML policy file.

A caller gets the union of every rule it matches. ``decide`` is pure: it returns
``Allowed(plan)`` or ``Denied(code, reason)`` and never raises for a refusal. An empty
rule set denies everything.

TTL: each requested capability (video, voice incoming, voice outgoing, chat, sync) is
capped by the most generous ``max_ttl`` among the matched rules that give it; the
token is capped by the tightest of those caps, and never above ``[tokens].max_ttl``.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal, TypeGuard

from service.dialing import DialPolicy, parse_dial, parse_incoming
from service.errors import ConfigurationError
from service.limits import valid_budget
from service.patterns import glob_match
from service.state import PauseScope
from service.token_request import TokenRequest
from service.twilio_rules import MIN_TTL, TWILIO_MAX_TTL, identity_problem

Claims = Mapping[str, object]
DenialCode = Literal["grant_not_allowed", "room_not_allowed", "invalid_ttl"]

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_CLAIM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
_LIMIT_KEYS = ("per_identity", "per_client", "per_ip", "global", "auth_failures_per_ip")


@dataclass(frozen=True)
class VideoPlan:
    room: str


@dataclass(frozen=True)
class VoicePlan:
    incoming: bool
    outgoing: bool
    push: str | None


@dataclass(frozen=True)
class ChatPlan:
    push: str | None


@dataclass(frozen=True)
class Plan:
    """What may be minted: already checked against policy."""

    identity: str
    ttl: int
    video: VideoPlan | None = None
    voice: VoicePlan | None = None
    chat: ChatPlan | None = None
    sync: bool = False

    @property
    def grant_names(self) -> tuple[str, ...]:
        present = (
            ("video", self.video is not None),
            ("voice", self.voice is not None),
            ("chat", self.chat is not None),
            ("sync", self.sync),
        )
        return tuple(name for name, given in present if given)


@dataclass(frozen=True)
class Allowed:
    plan: Plan


@dataclass(frozen=True)
class Denied:
    code: DenialCode
    reason: str


Decision = Allowed | Denied


@dataclass(frozen=True)
class RoomPattern:
    """A room pattern: literal text, ``*`` wildcards and ``{identity}``/``{claims.X}``.

    The source is split once, at load time, into literal runs (already cut at ``*``) and
    placeholder names; matching a room only fills in the placeholders.
    """

    source: str
    _pieces: tuple[tuple[str, ...] | str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pieces: list[tuple[str, ...] | str] = []
        position = 0
        for found in _PLACEHOLDER.finditer(self.source):
            pieces.append(tuple(self.source[position : found.start()].split("*")))
            pieces.append(found.group(1))
            position = found.end()
        pieces.append(tuple(self.source[position:].split("*")))
        object.__setattr__(self, "_pieces", tuple(pieces))

    def matches(self, room: str, identity: str, claims: Claims) -> bool:
        segments = [""]
        for piece in self._pieces:
            if isinstance(piece, tuple):  # literal text, cut at each "*"
                segments[-1] += piece[0]
                segments.extend(piece[1:])
                continue
            value = identity if piece == "identity" else claims.get(piece[len("claims.") :])
            if not isinstance(value, str) or not value:
                return False
            # A filled-in value is literal text: a "*" in a claim never becomes a wildcard.
            segments[-1] += value
        return glob_match(segments, room)


@dataclass(frozen=True)
class Rule:
    name: str
    match_claims: Mapping[str, str | int | bool]
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

    def applies_to(self, claims: Claims, identity: str, client_key: str | None) -> bool:
        """App users are matched by claims; a client-key caller by its name and identity."""
        if client_key is not None or self.match_clients:
            return client_key in self.match_clients and any(
                glob_match(pattern.split("*"), identity) for pattern in self.match_identities
            )
        return all(_claim_matches(claims.get(k), v) for k, v in self.match_claims.items())


@dataclass(frozen=True)
class Limits:
    """Rate-limit budgets as ``limits`` strings; enforced by the limits module.

    ``voice_outgoing_cost`` is what one token with outgoing Voice spends of each budget
    (it can place calls, the costly kind of token); every other token spends 1.
    """

    budgets: Mapping[str, str]
    voice_outgoing_cost: int = 1


@dataclass(frozen=True)
class Policy:
    default_ttl: int
    max_ttl: int
    identity_claim: str
    rules: tuple[Rule, ...]
    limits: Limits
    #: where Voice clients may call; None: nowhere (outgoing calls are refused)
    dial: DialPolicy | None = None
    #: what a Twilio usage trigger's callback pauses: all issuance, or outgoing Voice only
    usage_alert_pauses: PauseScope = "all"
    #: our numbers -> the identities an inbound call on each rings
    incoming: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: spend thresholds for `token-broker usage`: period -> usage category -> price
    usage_thresholds: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)

    @property
    def gives_voice_outgoing(self) -> bool:
        return any(rule.voice_outgoing for rule in self.rules)

    @property
    def gives_chat(self) -> bool:
        return any(rule.chat for rule in self.rules)

    @classmethod
    def load(cls, path: Path) -> Policy:
        """Read and validate a policy file; raise ``ConfigurationError`` with every problem."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise ConfigurationError([f"policy file {str(path)!r} cannot be read"]) from None
        return cls.from_toml(text, source=str(path))

    @classmethod
    def from_toml(cls, text: str, *, source: str = "policy") -> Policy:
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigurationError([f"{source}: not valid TOML ({error})"]) from None
        parser = _PolicyParser(source)
        policy = parser.parse(document)
        if parser.problems:
            raise ConfigurationError(parser.problems)
        return policy

    def decide(
        self,
        identity: str,
        claims: Claims,
        request: TokenRequest,
        *,
        client_key: str | None = None,
    ) -> Decision:
        """Decide what ``request`` may get for a verified caller; deny by default.

        ``client_key`` names a server-to-server caller: only rules with ``clients`` that
        name it, and an identity pattern that fits, apply to it; those rules never apply
        to app users.
        """
        problem = identity_problem(identity, voice=request.voice is not None)
        if problem:
            return Denied("grant_not_allowed", problem)
        matched = [rule for rule in self.rules if rule.applies_to(claims, identity, client_key)]
        caps: list[int] = []

        video = None
        if request.video is not None:
            givers = [rule for rule in matched if rule.rooms is not None]
            if not givers:
                return Denied("grant_not_allowed", "no rule gives video")
            room = request.video.room
            fitting = [
                rule
                for rule in givers
                if any(p.matches(room, identity, claims) for p in rule.rooms or ())
            ]
            if not fitting:
                return Denied("room_not_allowed", "room matches no allowed pattern")
            caps.append(max(rule.max_ttl for rule in fitting))
            video = VideoPlan(room=room)

        voice = None
        if request.voice is not None:
            incoming_rules = [rule for rule in matched if rule.voice_incoming]
            outgoing_rules = [rule for rule in matched if rule.voice_outgoing]
            if not incoming_rules and not outgoing_rules:
                return Denied("grant_not_allowed", "no rule gives voice")
            incoming = request.voice.incoming
            outgoing = request.voice.outgoing
            incoming = bool(incoming_rules) if incoming is None else incoming
            outgoing = bool(outgoing_rules) if outgoing is None else outgoing
            if incoming and not incoming_rules:
                return Denied("grant_not_allowed", "no rule gives voice incoming")
            if outgoing and not outgoing_rules:
                return Denied("grant_not_allowed", "no rule gives voice outgoing")
            if not incoming and not outgoing:
                return Denied("grant_not_allowed", "voice grant would allow nothing")
            if incoming:
                caps.append(max(rule.max_ttl for rule in incoming_rules))
            if outgoing:
                caps.append(max(rule.max_ttl for rule in outgoing_rules))
            voice = VoicePlan(incoming=incoming, outgoing=outgoing, push=request.voice.push)

        chat = None
        if request.chat is not None:
            givers = [rule for rule in matched if rule.chat]
            if not givers:
                return Denied("grant_not_allowed", "no rule gives chat")
            caps.append(max(rule.max_ttl for rule in givers))
            chat = ChatPlan(push=request.chat.push)

        if request.sync:
            givers = [rule for rule in matched if rule.sync]
            if not givers:
                return Denied("grant_not_allowed", "no rule gives sync")
            caps.append(max(rule.max_ttl for rule in givers))

        cap = min([self.max_ttl, *caps])
        if request.ttl is None:
            ttl = min(self.default_ttl, cap)
        elif request.ttl > cap:
            return Denied("invalid_ttl", f"ttl above the maximum of {cap} s for these grants")
        else:
            ttl = request.ttl
        plan = Plan(identity, ttl, video=video, voice=voice, chat=chat, sync=request.sync)
        return Allowed(plan)


def _claim_matches(actual: object, expected: str | int | bool) -> bool:
    if isinstance(actual, list):
        return any(_same_value(item, expected) for item in actual)
    return _same_value(actual, expected)


def _same_value(actual: object, expected: str | int | bool) -> bool:
    # bool is an int in Python; keep true and 1 apart.
    return type(actual) is type(expected) and actual == expected


class _PolicyParser:
    """Turns a parsed TOML document into a ``Policy``, collecting every problem."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def problem(self, message: str) -> None:
        self.problems.append(f"{self.source}: {message}")

    def unknown_keys(self, table: Mapping[str, object], allowed: set[str], where: str) -> None:
        for key in sorted(set(table) - allowed):
            self.problem(f"unknown key {key!r} in {where}")

    def table(self, value: object, where: str) -> Mapping[str, object]:
        if isinstance(value, dict):
            return value
        self.problem(f"{where} must be a table")
        return {}

    def ttl(self, value: object, where: str, default: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(f"{where} must be an integer number of seconds")
            return default
        if not MIN_TTL <= value <= TWILIO_MAX_TTL:
            self.problem(f"{where} must be from {MIN_TTL} to {TWILIO_MAX_TTL} seconds")
            return default
        return value

    def flag(self, value: object, where: str) -> bool:
        if not isinstance(value, bool):
            self.problem(f"{where} must be true or false")
            return False
        return value

    def parse(self, document: Mapping[str, object]) -> Policy:
        self.unknown_keys(
            document,
            {"tokens", "identity", "rules", "limits", "dial", "usage_alert", "incoming", "usage"},
            "the top level",
        )
        tokens = self.table(document.get("tokens", {}), "[tokens]")
        self.unknown_keys(tokens, {"default_ttl", "max_ttl"}, "[tokens]")
        max_ttl = self.ttl(tokens.get("max_ttl", 3600), "[tokens].max_ttl", 3600)
        default_ttl = self.ttl(tokens.get("default_ttl", 600), "[tokens].default_ttl", 600)
        if default_ttl > max_ttl:
            self.problem("[tokens].default_ttl must not exceed max_ttl")

        identity = self.table(document.get("identity", {}), "[identity]")
        self.unknown_keys(identity, {"claim"}, "[identity]")
        claim = identity.get("claim", "sub")
        if not isinstance(claim, str) or not _CLAIM_NAME.fullmatch(claim):
            self.problem("[identity].claim must be a claim name such as 'sub'")
            claim = "sub"

        raw_rules = document.get("rules", [])
        if not isinstance(raw_rules, list):
            self.problem("rules must be an array of tables ([[rules]])")
            raw_rules = []
        rules = tuple(self.rule(raw, index, max_ttl) for index, raw in enumerate(raw_rules))
        names = [rule.name for rule in rules]
        for name in sorted({n for n in names if names.count(n) > 1}):
            self.problem(f"rule name {name!r} is used twice")

        return Policy(
            default_ttl=default_ttl,
            max_ttl=max_ttl,
            identity_claim=claim,
            rules=rules,
            limits=self.limits(document.get("limits", {})),
            dial=self.dial(document.get("dial")),
            usage_alert_pauses=self.usage_alert(document.get("usage_alert", {})),
            incoming=self.incoming(document.get("incoming", {})),
            usage_thresholds=self.usage(document.get("usage", {})),
        )

    def rule(self, raw: object, index: int, max_ttl: int) -> Rule:
        where = f"rules[{index}]"
        table = self.table(raw, where)
        allowed = {"name", "match", "video", "voice", "chat", "sync", "max_ttl"}
        self.unknown_keys(table, allowed, where)
        name = table.get("name")
        if not isinstance(name, str) or not name.strip():
            self.problem(f"{where}.name must be a non-empty string")
            name = f"#{index}"
        where = f"rule {name!r}"

        match = self.table(table.get("match", {}), f"{where}.match")
        self.unknown_keys(match, {"claims", "clients", "identities"}, f"{where}.match")
        clients, identities = self.clients(match, where)
        match_claims: dict[str, str | int | bool] = {}
        for claim, expected in self.table(match.get("claims", {}), f"{where}.match.claims").items():
            if isinstance(expected, str | int | bool):
                match_claims[claim] = expected
            else:
                self.problem(f"{where}.match.claims.{claim} must be a string, integer or boolean")

        rooms = None
        if "video" in table:
            video = self.table(table["video"], f"{where}.video")
            self.unknown_keys(video, {"rooms"}, f"{where}.video")
            rooms = self.rooms(video.get("rooms"), f"{where}.video.rooms")

        incoming = outgoing = False
        if "voice" in table:
            voice = self.table(table["voice"], f"{where}.voice")
            self.unknown_keys(voice, {"incoming", "outgoing"}, f"{where}.voice")
            incoming = self.flag(voice.get("incoming", False), f"{where}.voice.incoming")
            outgoing = self.flag(voice.get("outgoing", False), f"{where}.voice.outgoing")
            if not incoming and not outgoing:
                self.problem(f"{where}.voice must allow incoming, outgoing or both")

        rule_max_ttl = max_ttl
        if "max_ttl" in table:
            rule_max_ttl = self.ttl(table["max_ttl"], f"{where}.max_ttl", max_ttl)
            if rule_max_ttl > max_ttl:
                self.problem(f"{where}.max_ttl only tightens: it must not exceed [tokens].max_ttl")
                rule_max_ttl = max_ttl
        return Rule(
            name=name,
            match_claims=match_claims,
            match_clients=clients,
            match_identities=identities,
            rooms=rooms,
            voice_incoming=incoming,
            voice_outgoing=outgoing,
            chat=self.flag(table.get("chat", False), f"{where}.chat"),
            sync=self.flag(table.get("sync", False), f"{where}.sync"),
            max_ttl=rule_max_ttl,
        )

    def clients(
        self, match: Mapping[str, object], where: str
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``clients`` and the ``identities`` they may act for; both or neither."""
        if "clients" not in match and "identities" not in match:
            return (), ()
        clients, identities = match.get("clients"), match.get("identities")
        if not _strings(clients) or not _strings(identities):
            self.problem(
                f"{where}.match: clients and identities go together, each a non-empty list "
                "of strings (identities may use * wildcards)"
            )
            return (), ()
        if "claims" in match:
            self.problem(f"{where}.match: a rule for clients cannot match claims too")
        return tuple(clients), tuple(identities)

    def rooms(self, value: object, where: str) -> tuple[RoomPattern, ...]:
        if not isinstance(value, list) or not value:
            self.problem(f"{where} must be a non-empty list of room patterns")
            return ()
        patterns = []
        for pattern in value:
            problem = _pattern_problem(pattern)
            if problem:
                self.problem(f"{where}: {pattern!r} {problem}")
            else:
                patterns.append(RoomPattern(str(pattern)))
        return tuple(patterns)

    def dial(self, value: object) -> DialPolicy | None:
        if value is None:
            return None
        policy, problems = parse_dial(self.table(value, "[dial]"))
        for problem in problems:
            self.problem(problem)
        return policy

    def incoming(self, value: object) -> dict[str, tuple[str, ...]]:
        routes, problems = parse_incoming(self.table(value, "[incoming]"))
        for problem in problems:
            self.problem(problem)
        return routes

    def usage(self, value: object) -> dict[str, dict[str, Decimal]]:
        """``[usage] today = { calls = 50.0 }``, ``this_month = { totalprice = 500 }``."""
        table = self.table(value, "[usage]")
        self.unknown_keys(table, {"today", "this_month"}, "[usage]")
        thresholds: dict[str, dict[str, Decimal]] = {}
        for period in ("today", "this_month"):
            for category, limit in self.table(table.get(period, {}), f"[usage].{period}").items():
                if isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0:
                    self.problem(f"[usage].{period}.{category} must be a price, such as 50.0")
                    continue
                thresholds.setdefault(period, {})[category] = Decimal(str(limit))
        return thresholds

    def usage_alert(self, value: object) -> PauseScope:
        table = self.table(value, "[usage_alert]")
        self.unknown_keys(table, {"pauses"}, "[usage_alert]")
        pauses = table.get("pauses", "all")
        if pauses == "voice_outgoing":
            return "voice_outgoing"
        if pauses != "all":
            self.problem("[usage_alert].pauses must be 'all' or 'voice_outgoing'")
        return "all"

    def limits(self, value: object) -> Limits:
        table = self.table(value, "[limits]")
        self.unknown_keys(table, {*_LIMIT_KEYS, "voice_outgoing_cost"}, "[limits]")
        cost = table.get("voice_outgoing_cost", 1)
        if isinstance(cost, bool) or not isinstance(cost, int) or not 1 <= cost <= 1000:
            self.problem("[limits].voice_outgoing_cost must be an integer from 1 to 1000")
            cost = 1
        budgets: dict[str, str] = {}
        for key in _LIMIT_KEYS:
            if key not in table:
                continue
            budget = table[key]
            if not isinstance(budget, str) or not valid_budget(budget):
                self.problem(f"[limits].{key} must look like '10/minute;200/day'")
                continue
            budgets[key] = budget
        return Limits(budgets=budgets, voice_outgoing_cost=cost)


def _strings(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)


def _pattern_problem(pattern: object) -> str | None:
    """Why a room pattern is malformed, or None when it is usable."""
    if not isinstance(pattern, str) or not pattern:
        return "must be a non-empty string"
    if len(pattern) > 256:
        return "is too long"
    depth_free = _PLACEHOLDER.sub("", pattern)
    if "{" in depth_free or "}" in depth_free:
        return "has an unbalanced or nested brace"
    for found in _PLACEHOLDER.finditer(pattern):
        name = found.group(1)
        if name != "identity" and not (
            name.startswith("claims.") and _CLAIM_NAME.fullmatch(name.removeprefix("claims."))
        ):
            return f"uses unknown placeholder {{{name}}} (use {{identity}} or {{claims.NAME}})"
    if any(unicodedata.category(c).startswith("C") for c in pattern):
        return "contains control or invisible characters"
    return None
