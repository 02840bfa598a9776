"""Token policy: deny by default, the union of rules, TTL caps."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service.serving.policy_file import Policy
from service.tokens.policy import Allowed, Denied
from service.tokens.request import ChatRequest, TokenRequest, VideoRequest, VoiceRequest


def test_an_empty_rule_set_denies_everything() -> None:
    empty = Policy.from_toml("").tokens
    for request in (
        TokenRequest(video=VideoRequest("lobby")),
        TokenRequest(chat=ChatRequest()),
        TokenRequest(sync=True),
        TokenRequest(voice=VoiceRequest()),
    ):
        assert isinstance(empty.decide("alice", {}, request), Denied)


def test_member_gets_video_chat_sync_with_default_ttl(
    decide: Callable[..., Allowed | Denied],
) -> None:
    decision = decide(TokenRequest(video=VideoRequest("lobby"), chat=ChatRequest(), sync=True))
    assert isinstance(decision, Allowed)
    assert decision.plan.grant_names == ("video", "chat", "sync")
    assert decision.plan.ttl == 600


def test_voice_only_for_agents_and_capped_by_their_rule(
    decide: Callable[..., Allowed | Denied],
) -> None:
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


def test_token_capped_by_the_tightest_rule_it_draws_from(
    decide: Callable[..., Allowed | Denied],
) -> None:
    mixed = decide(
        TokenRequest(video=VideoRequest("lobby"), voice=VoiceRequest(), ttl=1800), roles="agent"
    )
    assert isinstance(mixed, Denied)
    video_only = decide(TokenRequest(video=VideoRequest("lobby"), ttl=1800), roles="agent")
    assert isinstance(video_only, Allowed)


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
def test_unusable_identities_are_denied(
    identity: str, decide: Callable[..., Allowed | Denied]
) -> None:
    assert isinstance(decide(TokenRequest(sync=True), identity=identity), Denied)


def test_voice_identity_must_match_twilio_client_names(
    decide: Callable[..., Allowed | Denied],
) -> None:
    decision = decide(
        TokenRequest(voice=VoiceRequest()), identity="alice@example.com", roles="agent"
    )
    assert isinstance(decision, Denied)
    assert decision.code == "grant_not_allowed"
