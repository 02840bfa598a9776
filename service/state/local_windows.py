"""In-process moving windows for the ``limits`` library, for the embedded (SQLite) profile.

``limits``' own memory storage keeps each window as a list that grows at the front and
expires it from a timer thread started anew every 10 ms: fine for small budgets, costly
for a hot key (a fleet-wide budget at hundreds of requests a second). Here a window is
a deque of hit times, expired from the left on use: O(1) amortised per hit, no thread.
It plugs into ``limits``' moving-window strategy, which still decides.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from limits.storage import MovingWindowSupport, Storage

SWEEP_EVERY = 4096


class _NeverRaised(Exception):
    """This storage raises nothing of its own for ``limits`` to wrap."""


class LocalWindows(Storage, MovingWindowSupport):
    """Moving windows in this process, shared by its threads.

    Only the moving-window strategy can use it: the counter methods of ``Storage``,
    which the fixed-window strategies need, refuse with ``TypeError``.
    """

    STORAGE_SCHEME = None  # not reachable by URL: the SQLite store builds it
    sweep_every = SWEEP_EVERY

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._clock = clock
        self._windows: dict[str, tuple[deque[float], int]] = {}
        self._lock = threading.Lock()
        self._acquisitions = 0

    @property
    def base_exceptions(self) -> type[Exception]:
        return _NeverRaised

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise TypeError("LocalWindows keeps moving windows only")

    def get(self, key: str) -> int:
        raise TypeError("LocalWindows keeps moving windows only")

    def get_expiry(self, key: str) -> float:
        raise TypeError("LocalWindows keeps moving windows only")

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self._lock:
            count = len(self._windows)
            self._windows.clear()
        return count

    def clear(self, key: str) -> None:
        with self._lock:
            self._windows.pop(key, None)

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Record ``amount`` hits now if the window holds room for them."""
        if amount > limit:
            return False
        now = self._clock()
        with self._lock:
            window, _ = self._windows.setdefault(key, (deque(), expiry))
            _expire(window, now - expiry)
            if len(window) + amount > limit:
                return False
            window.extend([now] * amount)
            self._acquisitions += 1
            if self._acquisitions % self.sweep_every == 0:
                self._sweep(now)
            return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """The oldest hit in the window (or now) and the number of hits in it."""
        now = self._clock()
        with self._lock:
            found = self._windows.get(key)
            if found is None:
                return now, 0
            window = found[0]
            _expire(window, now - expiry)
            return (window[0], len(window)) if window else (now, 0)

    def _sweep(self, now: float) -> None:
        # Forget keys whose windows emptied: identities and addresses come and go.
        for key, (window, expiry) in list(self._windows.items()):
            _expire(window, now - expiry)
            if not window:
                del self._windows[key]


def _expire(window: deque[float], horizon: float) -> None:
    while window and window[0] < horizon:
        window.popleft()
