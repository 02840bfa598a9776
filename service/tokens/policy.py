"""May they? Deny-by-default authorization of token requests: ``[tokens]``, ``[identity]``
and ``[[rules]]`` of the policy file.

A caller gets the union of every rule it matches. ``decide`` is pure: it returns
``Allowed(plan)`` or ``Denied(code, reason)`` and never raises for a refusal. An empty
rule set denies everything.

TTL: each requested capability (video, voice incoming, voice outgoing, chat, sync) is
capped by the most generous ``max_ttl`` among the matched rules that give it; the
token is capped by the tightest of those caps, and never above ``[tokens].max_ttl``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from service.base.tables import TableReader
from service.callers.claims import CLAIM_NAME
from service.tokens.format import identity_problem
from service.tokens.provision import Provision
from service.tokens.request import TokenRequest
from service.tokens.rules import (
    ATTESTATIONS,
    Attestation,
    Claims,
    Rule,
    parse_rules,
    parse_ttl,
)
from service.tokens.workers import TaskRouterRule

DenialCode = Literal["grant_not_allowed", "room_not_allowed", "invalid_ttl"]
TABLES = frozenset({"tokens", "identity", "rules"})


@dataclass(frozen=True)
class VideoPlan:
    room: str
    #: the settings the room is made with before the token (None: Twilio's ad-hoc room)
    provision: Provision | None = None


@dataclass(frozen=True)
class VoicePlan:
    incoming: bool
    outgoing: bool
    push: str | None


@dataclass(frozen=True)
class ChatPlan:
    push: str | None


@dataclass(frozen=True)
class TaskRouterPlan:
    """The workspace, and the caller's Worker (found after the decision: ``worker_sid``)."""

    rule: TaskRouterRule
    worker_sid: str | None = None


@dataclass(frozen=True)
class Plan:
    """What may be minted: already checked against policy."""

    identity: str
    ttl: int
    video: VideoPlan | None = None
    voice: VoicePlan | None = None
    chat: ChatPlan | None = None
    sync: bool = False
    #: what the app must show for these grants: the strictest of the rules that give them
    attestation: Attestation = "none"
    task_router: TaskRouterPlan | None = None

    @property
    def grant_names(self) -> tuple[str, ...]:
        present = (
            ("video", self.video is not None),
            ("voice", self.voice is not None),
            ("chat", self.chat is not None),
            ("sync", self.sync),
            ("task_router", self.task_router is not None),
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


class _Refusal(Exception):
    """Carries a ``Denied`` out of the helpers of one decision; never leaves ``decide``."""

    def __init__(self, code: DenialCode, reason: str) -> None:
        super().__init__(reason)
        self.denied = Denied(code, reason)


@dataclass(frozen=True)
class TokenPolicy:
    default_ttl: int
    max_ttl: int
    identity_claim: str
    rules: tuple[Rule, ...]

    @property
    def gives_voice_outgoing(self) -> bool:
        return any(rule.voice_outgoing for rule in self.rules)

    @property
    def gives_chat(self) -> bool:
        return any(rule.chat for rule in self.rules)

    def decide(
        self,
        identity: str,
        claims: Claims,
        request: TokenRequest,
        *,
        client_key: str | None = None,
        token_identity: str | None = None,
    ) -> Decision:
        """Decide what ``request`` may get for a verified caller; deny by default.

        ``client_key`` names a server-to-server caller: only rules with ``clients`` that
        name it, and an identity pattern that fits, apply to it; those rules never apply
        to app users. ``token_identity`` is what the token will name, when that is not
        ``identity`` (a Voice identity made from a subject); rules and room templates see
        ``identity``.
        """
        named = token_identity or identity
        problem = identity_problem(named, voice=request.voice is not None)
        if problem:
            return Denied("grant_not_allowed", problem)
        matched = [rule for rule in self.rules if rule.applies_to(claims, identity, client_key)]
        needs = _Needs()
        try:
            video = _video(request, matched, identity, claims, needs)
            voice = _voice(request, matched, needs)
            chat = _chat(request, matched, needs)
            _sync(request, matched, needs)
            task_router = _task_router(request, matched, needs)
            ttl = self._ttl(request, needs.caps)
        except _Refusal as refusal:
            return refusal.denied
        plan = Plan(
            named,
            ttl,
            video=video,
            voice=voice,
            chat=chat,
            sync=request.sync,
            attestation=needs.attestation,
            task_router=task_router,
        )
        return Allowed(plan)

    def _ttl(self, request: TokenRequest, caps: Sequence[int]) -> int:
        cap = min([self.max_ttl, *caps])
        if request.ttl is None:
            return min(self.default_ttl, cap)
        if request.ttl > cap:
            raise _Refusal("invalid_ttl", f"ttl above the maximum of {cap} s for these grants")
        return request.ttl


class _Needs:
    """What the rules that give each requested grant ask: the TTL cap of each grant (the
    most generous giver's), and the attestation (the strictest giver's)."""

    def __init__(self) -> None:
        self.caps: list[int] = []
        self.attestation: Attestation = "none"

    def add(self, rules: Sequence[Rule]) -> None:
        self.caps.append(max(rule.max_ttl for rule in rules))
        strictest = max(ATTESTATIONS.index(rule.attestation) for rule in rules)
        if strictest > ATTESTATIONS.index(self.attestation):
            self.attestation = ATTESTATIONS[strictest]


def _video(
    request: TokenRequest, matched: Sequence[Rule], identity: str, claims: Claims, needs: _Needs
) -> VideoPlan | None:
    if request.video is None:
        return None
    givers = [rule for rule in matched if rule.rooms is not None]
    if not givers:
        raise _Refusal("grant_not_allowed", "no rule gives video")
    room = request.video.room
    fitting = [
        rule for rule in givers if any(p.matches(room, identity, claims) for p in rule.rooms or ())
    ]
    if not fitting:
        raise _Refusal("room_not_allowed", "room matches no allowed pattern")
    needs.add(fitting)
    # The first fitting rule that provisions its rooms decides how (rule order).
    provision = next((rule.provision for rule in fitting if rule.provision), None)
    return VideoPlan(room=room, provision=provision)


def _voice(request: TokenRequest, matched: Sequence[Rule], needs: _Needs) -> VoicePlan | None:
    if request.voice is None:
        return None
    incoming_rules = [rule for rule in matched if rule.voice_incoming]
    outgoing_rules = [rule for rule in matched if rule.voice_outgoing]
    if not incoming_rules and not outgoing_rules:
        raise _Refusal("grant_not_allowed", "no rule gives voice")
    incoming = request.voice.incoming
    outgoing = request.voice.outgoing
    incoming = bool(incoming_rules) if incoming is None else incoming
    outgoing = bool(outgoing_rules) if outgoing is None else outgoing
    if incoming and not incoming_rules:
        raise _Refusal("grant_not_allowed", "no rule gives voice incoming")
    if outgoing and not outgoing_rules:
        raise _Refusal("grant_not_allowed", "no rule gives voice outgoing")
    if not incoming and not outgoing:
        raise _Refusal("grant_not_allowed", "voice grant would allow nothing")
    if incoming:
        needs.add(incoming_rules)
    if outgoing:
        needs.add(outgoing_rules)
    return VoicePlan(incoming=incoming, outgoing=outgoing, push=request.voice.push)


def _chat(request: TokenRequest, matched: Sequence[Rule], needs: _Needs) -> ChatPlan | None:
    if request.chat is None:
        return None
    givers = [rule for rule in matched if rule.chat]
    if not givers:
        raise _Refusal("grant_not_allowed", "no rule gives chat")
    needs.add(givers)
    return ChatPlan(push=request.chat.push)


def _sync(request: TokenRequest, matched: Sequence[Rule], needs: _Needs) -> None:
    if not request.sync:
        return
    givers = [rule for rule in matched if rule.sync]
    if not givers:
        raise _Refusal("grant_not_allowed", "no rule gives sync")
    needs.add(givers)


def _task_router(
    request: TokenRequest, matched: Sequence[Rule], needs: _Needs
) -> TaskRouterPlan | None:
    if not request.task_router:
        return None
    givers = [rule for rule in matched if rule.task_router is not None]
    given = [rule.task_router for rule in givers if rule.task_router is not None]
    if not given:
        raise _Refusal("grant_not_allowed", "no rule gives task_router")
    needs.add(givers)
    return TaskRouterPlan(given[0])  # the first rule that gives it, in rule order


def parse_token_policy(reader: TableReader, document: Mapping[str, object]) -> TokenPolicy:
    """``[tokens]``, ``[identity]`` and ``[[rules]]`` of a parsed policy file."""
    tokens = reader.table(document.get("tokens", {}), "[tokens]")
    reader.known_keys(tokens, {"default_ttl", "max_ttl"}, "[tokens]")
    max_ttl = parse_ttl(reader, tokens.get("max_ttl", 3600), "[tokens].max_ttl", 3600)
    default_ttl = parse_ttl(reader, tokens.get("default_ttl", 600), "[tokens].default_ttl", 600)
    if default_ttl > max_ttl:
        reader.problem("[tokens].default_ttl must not exceed max_ttl")

    identity = reader.table(document.get("identity", {}), "[identity]")
    reader.known_keys(identity, {"claim"}, "[identity]")
    claim = identity.get("claim", "sub")
    if not isinstance(claim, str) or not CLAIM_NAME.fullmatch(claim):
        reader.problem("[identity].claim must be a claim name such as 'sub'")
        claim = "sub"
    return TokenPolicy(
        default_ttl=default_ttl,
        max_ttl=max_ttl,
        identity_claim=claim,
        rules=parse_rules(reader, document.get("rules", []), max_ttl),
    )
