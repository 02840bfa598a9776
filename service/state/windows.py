"""Moving windows in this process, for the embedded (SQLite) profile.

A window is a deque of hit times, expired from the left on use: O(1) amortised per hit,
no timer thread. The semantics are those of the ``limits`` library's moving window: no
rolling window of a budget's length ever admits more than its amount. ``admit_all``
tests every window of a request before it spends any: all or nothing.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence

from service.state.store import Spend

SWEEP_EVERY = 4096


class LocalWindows:
    """Every budget window of this process, shared by its threads or greenlets."""

    sweep_every = SWEEP_EVERY

    def __init__(self) -> None:
        self._windows: dict[str, tuple[deque[float], int]] = {}
        self._lock = threading.Lock()
        self._admissions = 0

    def __repr__(self) -> str:
        return f"LocalWindows(keys={len(self._windows)})"

    def refusal(self, spends: Sequence[Spend], cost: int, now: float) -> tuple[int, int] | None:
        """(index of the refusing spend, seconds until room), or None when all have room."""
        with self._lock:
            for index, spend in enumerate(spends):
                for window in spend.windows:
                    if cost > window.amount:
                        return index, window.seconds
                    hits = self._hits(
                        _key(spend, window.amount, window.seconds), window.seconds, now
                    )
                    if len(hits) + cost > window.amount:
                        oldest = hits[len(hits) + cost - window.amount - 1]
                        return index, max(1, math.ceil(oldest + window.seconds - now))
        return None

    def spend(self, spends: Sequence[Spend], cost: int, now: float) -> None:
        """Record ``cost`` hits now in every window of ``spends``."""
        with self._lock:
            for spend in spends:
                for window in spend.windows:
                    key = _key(spend, window.amount, window.seconds)
                    self._hits(key, window.seconds, now).extend([now] * cost)
            self._admissions += 1
            if self._admissions % self.sweep_every == 0:
                self._sweep(now)

    def _hits(self, key: str, seconds: int, now: float) -> deque[float]:
        hits, _ = self._windows.setdefault(key, (deque(), seconds))
        _expire(hits, now - seconds)
        return hits

    def _sweep(self, now: float) -> None:
        # Forget keys whose windows emptied: identities and addresses come and go.
        for key, (hits, seconds) in list(self._windows.items()):
            _expire(hits, now - seconds)
            if not hits:
                del self._windows[key]


def _key(spend: Spend, amount: int, seconds: int) -> str:
    return f"{spend.key}|{spend.budget}|{amount}/{seconds}"


def _expire(hits: deque[float], horizon: float) -> None:
    # A window is (now - seconds, now]: a hit exactly its length ago has left it.
    while hits and hits[0] <= horizon:
        hits.popleft()
