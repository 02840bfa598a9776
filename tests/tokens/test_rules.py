"""Rules: who matches, which rooms a rule gives, and a strict table format."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service.base.errors import ConfigurationError
from service.serving.policy_file import Policy
from service.tokens.policy import Allowed, Denied
from service.tokens.request import TokenRequest, VideoRequest


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
def test_room_patterns(room: str, allowed: bool, decide: Callable[..., Allowed | Denied]) -> None:
    decision = decide(TokenRequest(video=VideoRequest(room)))
    assert isinstance(decision, Allowed) is allowed
    if not allowed:
        assert isinstance(decision, Denied)
        assert decision.code == "room_not_allowed"


def test_claim_template_needs_the_claim(decide: Callable[..., Allowed | Denied]) -> None:
    request = TokenRequest(video=VideoRequest("team-blue-x"))
    assert isinstance(decide(request, team="blue"), Allowed)
    assert isinstance(decide(request), Denied)
    assert isinstance(decide(request, team=["blue"]), Denied)  # only a plain string fills in


def test_a_wildcard_in_a_claim_is_literal(decide: Callable[..., Allowed | Denied]) -> None:
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


def test_claim_matching_is_type_exact() -> None:
    policy = Policy.from_toml(
        '[[rules]]\nname="r"\nmatch={claims={verified=true}}\nsync=true\n'
    ).tokens
    assert isinstance(policy.decide("u", {"verified": True}, TokenRequest(sync=True)), Allowed)
    assert isinstance(policy.decide("u", {"verified": 1}, TokenRequest(sync=True)), Denied)
    assert isinstance(policy.decide("u", {"verified": "true"}, TokenRequest(sync=True)), Denied)


def _matches(match: str, claims: dict[str, object]) -> bool:
    policy = Policy.from_toml(f'[[rules]]\nname="r"\nmatch={match}\nsync=true\n').tokens
    return isinstance(policy.decide("u", claims, TokenRequest(sync=True)), Allowed)


@pytest.mark.parametrize(
    ("match", "claims", "matched"),
    [
        # a dotted path into nested claims, written either way in TOML
        ("{claims={realm_access.roles='agent'}}", {"realm_access": {"roles": ["agent"]}}, True),
        ("{claims={realm_access={roles='agent'}}}", {"realm_access": {"roles": ["agent"]}}, True),
        ("{claims={realm_access.roles='agent'}}", {"realm_access": {"roles": ["user"]}}, False),
        ("{claims={realm_access.roles='agent'}}", {"realm_access": ["agent"]}, False),
        # an exact top-level name (with dots of its own) wins over a path
        ("{claims={'https://x.io/roles'='agent'}}", {"https://x.io/roles": ["agent"]}, True),
        ("{claims={'a.b'='top'}}", {"a.b": "top", "a": {"b": "nested"}}, True),
        ("{claims={'a.b'='nested'}}", {"a.b": "top", "a": {"b": "nested"}}, False),
        # a list of values: any one will do
        ("{claims={role=['agent','admin']}}", {"role": "admin"}, True),
        ("{claims={role=['agent','admin']}}", {"role": ["user", "agent"]}, True),
        ("{claims={role=['agent','admin']}}", {"role": "user"}, False),
        # booleans are booleans
        ("{claims={is_anonymous=false}}", {"is_anonymous": False}, True),
        ("{claims={is_anonymous=false}}", {}, False),
        # scopes: every one named, from the scope string or the scp list
        ("{scopes=['twilio:voice']}", {"scope": "openid twilio:voice"}, True),
        ("{scopes=['twilio:voice']}", {"scp": ["openid", "twilio:voice"]}, True),
        ("{scopes=['twilio:voice','b']}", {"scope": "twilio:voice"}, False),
        ("{scopes=['twilio:voice']}", {"scope": "twilio:voice-admin"}, False),
        ("{scopes=['twilio:voice']}", {"scopes": "twilio:voice"}, False),
    ],
)
def test_claims_and_scopes_match_as_documented(
    match: str, claims: dict[str, object], matched: bool
) -> None:
    assert _matches(match, claims) is matched


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
        ('[[rules]]\nname="r"\nmatch={claims={roles=[]}}', "match.claims.roles"),
        ('[[rules]]\nname="r"\nmatch={claims={realm_access={}}}', "match.claims.realm_access"),
        ('[[rules]]\nname="r"\nmatch={claims={a=[{b=1}]}}', "match.claims.a"),
        ('[[rules]]\nname="r"\nmatch={scopes="twilio:voice"}', "match.scopes"),
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


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ('{ clients = ["backend"] }', "go together"),
        ('{ identities = ["*"] }', "go together"),
        ('{ clients = [], identities = ["*"] }', "go together"),
        (
            '{ clients = ["backend"], identities = ["*"], claims = { a = "b" } }',
            "cannot match claims",
        ),
    ],
)
def test_client_rules_are_checked(match: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Policy.from_toml(f'[[rules]]\nname = "r"\nmatch = {match}\nsync = true\n')
    assert expected in "\n".join(raised.value.problems)
