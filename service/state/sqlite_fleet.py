"""What the fleet remembers in the SQLite store beside switches, budgets and the trail:
marks first seen (a signing key's age), memos (the rooms it made), tallies (account
events), and which key each live instance signs with (``keys rotate`` waits for them all)."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime


class FleetRecords(ABC):
    """The fleet's small records, on the store's one connection."""

    _lock: threading.RLock

    @abstractmethod
    def _execute(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Run one statement; ``Unavailable`` when the file cannot be used."""

    def first_seen(self, mark: str, at: datetime) -> datetime:
        with self._lock:
            self._execute(
                "INSERT OR IGNORE INTO marks (mark, first_seen) VALUES (?, ?)",
                (mark, at.timestamp()),
            )
            [(first,)] = self._execute("SELECT first_seen FROM marks WHERE mark = ?", (mark,))
        return datetime.fromtimestamp(float(str(first)), UTC)

    def tally_up(self, tally: str, key: str) -> None:
        self._execute(
            "INSERT INTO tallies (tally, key, count) VALUES (?, ?, 1)"
            " ON CONFLICT (tally, key) DO UPDATE SET count = count + 1",
            (tally, key),
        )

    def tally(self, tally: str) -> dict[str, int]:
        rows = self._execute("SELECT key, count FROM tallies WHERE tally = ?", (tally,))
        return {str(key): int(str(count)) for key, count in rows}

    def report_signing_key(self, instance: str, key_sid: str, at: datetime, seconds: int) -> None:
        self._execute(
            "INSERT OR REPLACE INTO instances (instance, key_sid, until) VALUES (?, ?, ?)",
            (instance, key_sid, at.timestamp() + seconds),
        )

    def remember(self, key: str, value: str, at: datetime, seconds: int) -> None:
        self._execute(
            "INSERT OR REPLACE INTO memos (key, value, until) VALUES (?, ?, ?)",
            (key, value, at.timestamp() + seconds),
        )

    def recall(self, key: str, at: datetime) -> str | None:
        rows = self._execute(
            "SELECT value FROM memos WHERE key = ? AND until > ?", (key, at.timestamp())
        )
        return str(rows[0][0]) if rows else None

    def signing_keys(self, at: datetime) -> dict[str, str]:
        now = at.timestamp()
        self._execute("DELETE FROM instances WHERE until < ?", (now,))
        rows = self._execute("SELECT instance, key_sid FROM instances")
        return {str(instance): str(key_sid) for instance, key_sid in rows}
