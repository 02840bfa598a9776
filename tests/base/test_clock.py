"""The one clock: timezone-aware, and epoch seconds as JWT claims carry them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.base.clock import epoch_seconds, system_clock


def test_the_system_clock_is_aware_and_utc() -> None:
    now = system_clock()
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)


def test_epoch_seconds_are_whole() -> None:
    assert epoch_seconds(datetime(2026, 11, 28, 18, 0, 0, 999_999, tzinfo=UTC)) == 1795888800
