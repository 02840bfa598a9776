"""Wildcard matching shared by room patterns, identity patterns and dial targets."""

from __future__ import annotations

from collections.abc import Sequence


def glob_match(segments: Sequence[str], text: str) -> bool:
    """Match ``text`` against literal segments joined by wildcards (``*``)."""
    if len(segments) == 1:
        return text == segments[0]
    first, *middle, last = segments
    if not text.startswith(first) or not text.endswith(last):
        return False
    if len(first) + len(last) > len(text):
        return False
    position = len(first)
    end = len(text) - len(last)
    for segment in middle:
        found = text.find(segment, position, end)
        if found < 0:
            return False
        position = found + len(segment)
    return True
