"""The controls cache: read at most once per max age, on the injected clock."""

from __future__ import annotations

from service.state import CachedControls, Controls


def test_cached_controls_read_at_most_once_per_max_age() -> None:
    class CountingStore:
        reads = 0

        def read_controls(self) -> Controls:
            self.reads += 1
            return Controls(pause=None, revocations={})

    counting = CountingStore()
    cached = CachedControls(counting, max_age=60)  # type: ignore[arg-type]  # a partial store
    for _ in range(100):
        cached.current()
    assert counting.reads == 1
    fresh = CachedControls(counting, max_age=0)  # type: ignore[arg-type]  # a partial store
    fresh.current()
    fresh.current()
    assert counting.reads == 3
