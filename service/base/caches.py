"""A bounded cache whose entries each hold until a moment of their own (the injected
clock's): a Worker found or missed, a room known. Thread-safe; when full, the entry
stored longest ago goes first."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from datetime import datetime
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[K, tuple[V, datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ExpiringCache({len(self)} of {self._size})"

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, now: datetime) -> tuple[V] | None:
        """``(value,)`` while ``key``'s entry holds at ``now`` (a value may be None);
        None when there is none, or it has lapsed (and is dropped)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            value, until = entry
            if now >= until:
                del self._entries[key]
                return None
            return (value,)

    def put(self, key: K, value: V, until: datetime) -> None:
        with self._lock:
            self._entries[key] = (value, until)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
