"""Wildcard matching: literal segments joined by ``*``."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.base.patterns import glob_match


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("lobby", "lobby", True),
        ("lobby", "lobby2", False),
        ("a*", "a", True),
        ("a*", "abc", True),
        ("*c", "abc", True),
        ("a*b*c", "a-b-c", True),
        ("a*b*c", "a-c", False),
        ("ab*ba", "aba", False),  # the ends may not overlap
        ("*", "", True),
    ],
)
def test_glob(pattern: str, text: str, matches: bool) -> None:
    assert glob_match(pattern.split("*"), text) is matches


@given(st.text(alphabet="ab*", max_size=8), st.text(alphabet="ab", max_size=10))
def test_the_same_answer_as_fnmatch(pattern: str, text: str) -> None:
    assert glob_match(pattern.split("*"), text) == fnmatch.fnmatchcase(text, pattern)
