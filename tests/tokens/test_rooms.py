"""Room patterns: a filled-in value ends where the pattern says, wildcards stay in their
place, and placeholders need a separator."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.base.errors import ConfigurationError
from service.serving.policy_file import Policy
from service.tokens.rooms import RoomPattern


@pytest.mark.parametrize(
    ("room", "identity", "allowed"),
    [
        ("alice-1on1", "alice", True),
        ("alice-smith-1on1", "alice", False),  # the room of alice-smith, not alice's
        ("alice-smith-1on1", "alice-smith", True),
        ("alice-smith", "alice", True),  # alice's room "smith"; never alice-smith's (no "-")
        ("alice-smith", "alice-smith", False),
    ],
)
def test_a_room_template_cannot_be_borrowed(room: str, identity: str, allowed: bool) -> None:
    pattern = RoomPattern("{identity}-*")
    assert pattern.matches(room, identity, {}) is allowed


@pytest.mark.parametrize(
    ("room", "team", "allowed"),
    [
        ("team-acme-standup", "acme", True),
        ("team-acme-corp-standup", "acme", False),  # team acme-corp's room
        ("team-acme-corp-standup", "acme-corp", True),
    ],
)
def test_a_claim_template_cannot_be_borrowed(room: str, team: str, allowed: bool) -> None:
    assert RoomPattern("team-{claims.team}-*").matches(room, "x", {"team": team}) is allowed


def test_wildcards_before_a_placeholder_and_between_two() -> None:
    before = RoomPattern("*.{identity}")
    assert before.matches("standup.alice", "alice", {})
    assert not before.matches("x.standup.alice", "alice", {})  # standup.alice's room "x"
    assert before.matches("x.standup.alice", "standup.alice", {})
    between = RoomPattern("{claims.team}/*/{identity}")
    assert between.matches("acme/daily/alice", "alice", {"team": "acme"})
    assert not between.matches("acme/a/b/alice", "alice", {"team": "acme"})
    assert RoomPattern("lobby-*").matches("lobby-a-b", "alice", {})  # no placeholder: free


@pytest.mark.parametrize("pattern", ["{identity}*", "*{identity}", "{identity}{claims.team}"])
def test_placeholders_need_a_separator(pattern: str) -> None:
    with pytest.raises(ConfigurationError, match="separate them"):
        Policy.from_toml(f'[[rules]]\nname = "r"\nvideo = {{ rooms = ["{pattern}"] }}\n')


def oracle(pattern: str, room: str, identity: str) -> bool:
    """The same pieces as a regular expression: right, but it may backtrack."""
    parts = []
    for kind, text in RoomPattern(pattern)._pieces:  # the oracle reads the split
        if kind == "literal":
            parts.append(re.escape(text))
        elif kind == "wildcard":
            parts.append(f"[^{re.escape(text)}]*" if text else ".*")
        else:
            parts.append(re.escape(identity))
    return re.fullmatch("".join(parts), room, re.DOTALL) is not None


@settings(max_examples=400, deadline=None)
@given(
    pattern=st.lists(
        st.sampled_from(["a", "b", "-", "*", "{identity}-", "-{identity}", "ab"]), max_size=8
    ).map("".join),
    room=st.text(alphabet="ab-x", max_size=16),
    identity=st.text(alphabet="ab-", min_size=1, max_size=4),
)
def test_patterns_match_as_a_regular_expression_would(
    pattern: str, room: str, identity: str
) -> None:
    if not pattern or "*{" in pattern or "}*" in pattern or "}{" in pattern:
        return  # refused at load time (see test_placeholders_need_a_separator)
    found = RoomPattern(pattern).matches(room, identity, {})
    assert found == oracle(pattern, room, identity)


def test_a_pattern_that_would_backtrack_takes_no_time() -> None:
    """``*-*-*-*-*-end`` against 127 dashes and an x took 1.6 s as a regular expression:
    the matcher runs in time linear in the room (CPU time, with a hundredfold margin)."""
    pattern = RoomPattern("*-*-*-*-*-end")
    started = time.process_time()
    assert not pattern.matches("-" * 127 + "x", "alice", {})
    assert time.process_time() - started < 0.010
    assert pattern.matches("-" * 127 + "end", "alice", {})
