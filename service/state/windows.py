"""Moving windows in this process, for the embedded (SQLite) profile.

The semantics are those of the ``limits`` library's moving window: no rolling window of
a budget's length ever admits more than its amount. ``refusal`` tests every window of a
request before ``spend`` spends any: all or nothing.

Memory is bytes per owner, not kilobytes, whatever the number of identities: all windows
of one budget share one record of an owner's hit times (a window's count is the hits
within its length, found by bisection), kept only as long as the longest window and
only as many as its largest amount. An owner is known by the hash of its key (a 64-bit
number, never a string kept per window), and a record of one hit is one float. A
hundred thousand identities seen once cost about 11 MB (``make bench``).
"""

from __future__ import annotations

import bisect
import math
import threading
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from service.state.store import Spend, Window

SWEEP_EVERY = 4096
#: An owner's hit times: one float for a single hit (most owners), else an array.
Hits: TypeAlias = "float | array[float]"


@dataclass
class _Budget:
    """Every owner's hits of one budget (its windows fixed)."""

    longest: int
    most: int
    owners: dict[int, Hits] = field(default_factory=dict)


class LocalWindows:
    """Every budget window of this process, shared by its threads or greenlets."""

    sweep_every = SWEEP_EVERY

    def __init__(self) -> None:
        self._budgets: dict[tuple[str, tuple[Window, ...]], _Budget] = {}
        self._lock = threading.Lock()
        self._admissions = 0

    def __repr__(self) -> str:
        owners = sum(len(budget.owners) for budget in self._budgets.values())
        return f"LocalWindows(owners={owners})"

    def refusal(self, spends: Sequence[Spend], cost: int, now: float) -> tuple[int, int] | None:
        """(index of the refusing spend, seconds until room), or None when all have room."""
        with self._lock:
            for index, spend in enumerate(spends):
                budget = self._budgets.get((spend.budget, spend.windows))
                times = _times(budget.owners.get(hash(spend.key)) if budget else None)
                for window in spend.windows:
                    if cost > window.amount:
                        return index, window.seconds
                    # A window is (now - seconds, now]: a hit exactly its length ago has left.
                    start = bisect.bisect_right(times, now - window.seconds)
                    over = len(times) - start + cost - window.amount
                    if over > 0:
                        oldest = times[start + over - 1]
                        return index, max(1, math.ceil(oldest + window.seconds - now))
        return None

    def spend(self, spends: Sequence[Spend], cost: int, now: float) -> None:
        """Record ``cost`` hits now in every window of ``spends``."""
        with self._lock:
            for spend in spends:
                budget = self._budget(spend)
                owner = hash(spend.key)
                times = array("d", _times(budget.owners.get(owner)))
                del times[: bisect.bisect_right(times, now - budget.longest)]
                for _ in range(cost):
                    bisect.insort(times, now)  # at the end, unless the clock went back
                del times[: max(0, len(times) - budget.most)]
                budget.owners[owner] = times[0] if len(times) == 1 else times
            self._admissions += 1
            if self._admissions % self.sweep_every == 0:
                self._sweep(now)

    def _budget(self, spend: Spend) -> _Budget:
        key = (spend.budget, spend.windows)
        found = self._budgets.get(key)
        if found is None:
            longest = max(window.seconds for window in spend.windows)
            most = max(window.amount for window in spend.windows)
            found = self._budgets[key] = _Budget(longest, most)
        return found

    def _sweep(self, now: float) -> None:
        # Forget owners whose every hit has left the longest window.
        for budget in self._budgets.values():
            horizon = now - budget.longest
            for owner, hits in list(budget.owners.items()):
                if _times(hits)[-1] <= horizon:
                    del budget.owners[owner]


def _times(hits: Hits | None) -> Sequence[float]:
    if hits is None:
        return ()
    if isinstance(hits, float):
        return (hits,)
    return hits
