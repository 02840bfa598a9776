"""In-process moving windows for the embedded profile."""

from __future__ import annotations

import pytest
from limits import parse
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from service.state.local_windows import LocalWindows


def test_moving_window_through_limits() -> None:
    windows = LocalWindows()
    limiter = MovingWindowRateLimiter(windows)
    item = parse("3/minute")
    assert [limiter.hit(item, "alice") for _ in range(4)] == [True, True, True, False]
    assert limiter.hit(item, "bob")
    assert not limiter.test(item, "alice")
    stats = limiter.get_window_stats(item, "alice")
    assert stats.remaining == 0
    assert not limiter.hit(parse("2/minute"), "carol", cost=3)  # more than the whole budget


def test_expired_hits_leave_the_window_and_idle_keys_are_forgotten() -> None:
    now = [1000.0]
    windows = LocalWindows(clock=lambda: now[0])
    windows.sweep_every = 2
    assert windows.acquire_entry("a", 1, 60)
    assert not windows.acquire_entry("a", 1, 60)
    now[0] += 61
    assert windows.get_moving_window("a", 1, 60) == (now[0], 0)
    assert windows.acquire_entry("b", 1, 60)  # the second acquisition sweeps: "a" is empty
    assert "a" not in windows._windows
    assert windows.get_moving_window("missing", 1, 60) == (now[0], 0)


def test_clear_reset_check_and_no_counters() -> None:
    windows = LocalWindows()
    windows.acquire_entry("a", 1, 60)
    windows.clear("a")
    assert windows.acquire_entry("a", 1, 60)
    assert windows.reset() == 1
    assert windows.check()
    with pytest.raises(TypeError):
        FixedWindowRateLimiter(windows).hit(parse("1/minute"), "a")
    with pytest.raises(TypeError):
        windows.get("a")
    with pytest.raises(TypeError):
        windows.get_expiry("a")
