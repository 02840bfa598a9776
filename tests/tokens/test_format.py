"""What Twilio accepts in an Access Token: identities and room names."""

from __future__ import annotations

import pytest

from service.tokens.format import MAX_IDENTITY_LENGTH, identity_problem, room_is_acceptable


@pytest.mark.parametrize(
    ("identity", "voice", "problem"),
    [
        ("alice", True, None),
        ("alice_1", True, None),
        ("alice smith", False, None),
        ("alice-smith", True, "not valid for Voice"),
        ("auth0|123", True, "not valid for Voice"),
        ("auth0|123", False, None),
        ("", False, "empty"),
        ("a" * (MAX_IDENTITY_LENGTH + 1), False, "longer than 128"),
        (" alice", False, "invisible or control"),
        ("ali\u202ece", False, "invisible or control"),
        ("a" * 122, True, "not valid for Voice"),
    ],
)
def test_identities(identity: str, voice: bool, problem: str | None) -> None:
    found = identity_problem(identity, voice=voice)
    assert (found is None) if problem is None else (found is not None and problem in found)


@pytest.mark.parametrize(
    ("room", "acceptable"),
    [("lobby", True), ("équipe 1", True), ("", False), (" lobby", False), ("a\nb", False)],
)
def test_rooms(room: str, acceptable: bool) -> None:
    assert room_is_acceptable(room) is acceptable
