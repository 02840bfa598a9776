"""Policy: deny by default, rule union, room templates, TTL caps, strict file format."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import ConfigurationError
from service.policy_file import Policy
from service.tokens.policy import Allowed, Denied
from service.tokens.request import ChatRequest, TokenRequest, VideoRequest, VoiceRequest
from tests import support

POLICY = Policy.from_toml(support.POLICY).tokens


def decide(request: TokenRequest, identity: str = "alice", **claims: object) -> Allowed | Denied:
    return POLICY.decide(identity, {"sub": identity, **claims}, request)


def test_the_design_example_is_accepted() -> None:
    shipped = Policy.load(Path(__file__).parent.parent / "policy.toml")
    assert [rule.name for rule in shipped.tokens.rules] == ["members", "agents"]
    assert shipped.budgets.budgets["per_identity"] == "10/minute;200/day"


def test_an_empty_rule_set_denies_everything() -> None:
    empty = Policy.from_toml("").tokens
    for request in (
        TokenRequest(video=VideoRequest("lobby")),
        TokenRequest(chat=ChatRequest()),
        TokenRequest(sync=True),
        TokenRequest(voice=VoiceRequest()),
    ):
        assert isinstance(empty.decide("alice", {}, request), Denied)


def test_member_gets_video_chat_sync_with_default_ttl() -> None:
    decision = decide(TokenRequest(video=VideoRequest("lobby"), chat=ChatRequest(), sync=True))
    assert isinstance(decision, Allowed)
    assert decision.plan.grant_names == ("video", "chat", "sync")
    assert decision.plan.ttl == 600


@pytest.mark.parametrize(
    ("room", "allowed"),
    [
        ("lobby", True),
        ("alice-", True),
        ("alice-standup", True),
        ("alice", False),
        ("lobby2", False),
        ("bob-standup", False),
        ("xalice-1", False),
    ],
)
def test_room_patterns(room: str, allowed: bool) -> None:
    decision = decide(TokenRequest(video=VideoRequest(room)))
    assert isinstance(decision, Allowed) is allowed
    if not allowed:
        assert isinstance(decision, Denied)
        assert decision.code == "room_not_allowed"


def test_claim_template_needs_the_claim() -> None:
    request = TokenRequest(video=VideoRequest("team-blue-x"))
    assert isinstance(decide(request, team="blue"), Allowed)
    assert isinstance(decide(request), Denied)
    assert isinstance(decide(request, team=["blue"]), Denied)  # only a plain string fills in


def test_a_wildcard_in_a_claim_is_literal() -> None:
    request = TokenRequest(video=VideoRequest("team-blue-x"))
    assert isinstance(decide(request, team="*"), Denied)
    assert isinstance(decide(TokenRequest(video=VideoRequest("team-*-x")), team="*"), Allowed)


def test_wildcards_in_the_middle() -> None:
    policy = Policy.from_toml('[[rules]]\nname="r"\nvideo={rooms=["a*b*c"]}\n').tokens
    for room, allowed in (
        ("abc", True),
        ("a1b2c", True),
        ("ac", False),
        ("abcb", False),
        ("a-c", False),
    ):
        assert (
            isinstance(policy.decide("u", {}, TokenRequest(video=VideoRequest(room))), Allowed)
            is allowed
        )


def test_voice_only_for_agents_and_capped_by_their_rule() -> None:
    assert isinstance(decide(TokenRequest(voice=VoiceRequest())), Denied)
    for roles in ("agent", ["member", "agent"]):
        decision = decide(TokenRequest(voice=VoiceRequest(), ttl=900), roles=roles)
        assert isinstance(decision, Allowed)
        assert decision.plan.voice is not None
        assert decision.plan.voice.incoming
        assert decision.plan.voice.outgoing
    over = decide(TokenRequest(voice=VoiceRequest(), ttl=901), roles="agent")
    assert isinstance(over, Denied)
    assert over.code == "invalid_ttl"


def test_token_capped_by_the_tightest_rule_it_draws_from() -> None:
    mixed = decide(
        TokenRequest(video=VideoRequest("lobby"), voice=VoiceRequest(), ttl=1800), roles="agent"
    )
    assert isinstance(mixed, Denied)
    video_only = decide(TokenRequest(video=VideoRequest("lobby"), ttl=1800), roles="agent")
    assert isinstance(video_only, Allowed)


def test_claim_matching_is_type_exact() -> None:
    policy = Policy.from_toml(
        '[[rules]]\nname="r"\nmatch={claims={verified=true}}\nsync=true\n'
    ).tokens
    assert isinstance(policy.decide("u", {"verified": True}, TokenRequest(sync=True)), Allowed)
    assert isinstance(policy.decide("u", {"verified": 1}, TokenRequest(sync=True)), Denied)
    assert isinstance(policy.decide("u", {"verified": "true"}, TokenRequest(sync=True)), Denied)


def test_explicit_voice_direction_not_given_is_refused() -> None:
    policy = Policy.from_toml('[[rules]]\nname="r"\nvoice={incoming=true}\n').tokens
    assert isinstance(
        policy.decide("u", {}, TokenRequest(voice=VoiceRequest(outgoing=True))), Denied
    )
    decision = policy.decide("u", {}, TokenRequest(voice=VoiceRequest()))
    assert isinstance(decision, Allowed)
    assert decision.plan.voice is not None
    assert not decision.plan.voice.outgoing


@pytest.mark.parametrize("identity", ["", "a" * 129, "bad\u202eidentity", "tab\there"])
def test_unusable_identities_are_denied(identity: str) -> None:
    assert isinstance(decide(TokenRequest(sync=True), identity=identity), Denied)


def test_voice_identity_must_match_twilio_client_names() -> None:
    decision = decide(
        TokenRequest(voice=VoiceRequest()), identity="alice@example.com", roles="agent"
    )
    assert isinstance(decision, Denied)
    assert decision.code == "grant_not_allowed"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("surprise = 1", "unknown key 'surprise'"),
        ("[tokens]\nmax = 1", "unknown key 'max'"),
        ("[tokens]\nmax_ttl = 86401", "max_ttl"),
        ("[tokens]\nmax_ttl = 30", "max_ttl"),
        ("[tokens]\ndefault_ttl = 900\nmax_ttl = 600", "default_ttl"),
        ("[tokens]\nmax_ttl = true", "max_ttl"),
        ("[identity]\nclaim = ''", "claim"),
        ('[[rules]]\nname="r"\nvideo={rooms=["{identity"]}', "unbalanced"),
        ('[[rules]]\nname="r"\nvideo={rooms=["{user}-*"]}', "unknown placeholder"),
        ('[[rules]]\nname="r"\nvideo={rooms=[]}', "non-empty list"),
        ('[[rules]]\nname="r"\nvideo={rooms=["a\\u0000b"]}', "control"),
        ('[[rules]]\nname="r"\nvoice={}', "incoming, outgoing or both"),
        ('[[rules]]\nname="r"\nvoice={incoming="yes"}', "true or false"),
        ('[[rules]]\nname="r"\nchat="yes"', "true or false"),
        ('[[rules]]\nname="r"\nmax_ttl=7200', "only tightens"),
        ('[[rules]]\nname="r"\nmatch={claims={roles=["a"]}}', "match.claims.roles"),
        ('[[rules]]\nname="r"\nmatch={ip="1.2.3.4"}', "unknown key 'ip'"),
        ('[[rules]]\nname="r"\n[[rules]]\nname="r"', "used twice"),
        ("[[rules]]\nsync=true", "name"),
        ('[limits]\nper_identity = "lots"', "per_identity"),
        ('[limits]\nper_moon = "1/day"', "unknown key 'per_moon'"),
        ("rules = 3", "array of tables"),
        ("not toml at all [", "not valid TOML"),
    ],
)
def test_malformed_policy_is_a_startup_error(text: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Policy.from_toml(text)
    assert expected in "\n".join(raised.value.problems)


def test_unreadable_policy_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read"):
        Policy.load(tmp_path / "absent.toml")
