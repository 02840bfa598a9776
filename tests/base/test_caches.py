"""The bounded expiring cache: entries hold until their own moment, a None value is a
value, and when full the entry stored longest ago goes first."""

from __future__ import annotations

from datetime import timedelta

from service.base.caches import ExpiringCache
from tests import support

NOW = support.NOW


def test_entries_hold_until_their_moment_and_none_is_a_value() -> None:
    cache: ExpiringCache[str, str | None] = ExpiringCache(10)
    cache.put("miss", None, NOW + timedelta(seconds=30))
    cache.put("found", "WK1", NOW + timedelta(seconds=300))
    assert cache.get("miss", NOW) == (None,)
    assert cache.get("unknown", NOW) is None
    assert cache.get("miss", NOW + timedelta(seconds=30)) is None  # lapsed, and dropped
    assert len(cache) == 1
    assert cache.get("found", NOW + timedelta(seconds=299)) == ("WK1",)


def test_a_full_cache_drops_what_was_stored_longest_ago() -> None:
    cache: ExpiringCache[int, int] = ExpiringCache(3)
    later = NOW + timedelta(hours=1)
    for key in range(3):
        cache.put(key, key, later)
    cache.put(0, 0, later)  # stored again: now the newest
    cache.put(3, 3, later)
    assert [cache.get(key, NOW) for key in range(4)] == [(0,), None, (2,), (3,)]
