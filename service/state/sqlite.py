"""Embedded state in one SQLite file: WAL journal, one connection per thread.

Commits survive a crash of the process (``kill -9``); rate limits live in this process,
so the server runs a single worker process.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from limits.storage import MovingWindowSupport

from service.errors import ConfigurationError, Unavailable
from service.state import Controls, Pause, PauseScope
from service.state.local_windows import LocalWindows

_SCHEMA = """
CREATE TABLE IF NOT EXISTS controls (
    name TEXT PRIMARY KEY, reason TEXT NOT NULL, since REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS revocations (subject TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, at REAL NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
"""
PRUNE_EVERY = 1000
CHECKPOINT_SECONDS = 1.0


def sqlite_path(url: str) -> Path:
    """``sqlite:///var/x.db`` is relative to the working directory; ``sqlite:////x.db`` absolute."""
    path = urlsplit(url).path
    if not path or path == "/":
        raise ConfigurationError(["BROKER_STATE_URL names no SQLite file"])
    return Path(path[1:])


class SqliteStore:
    in_process_limits = True

    def __init__(self, path: Path, *, audit_retention_days: int) -> None:
        self.path = path
        self._retention = timedelta(days=audit_retention_days)
        self._local = threading.local()
        self._checkpointer_lock = threading.Lock()
        self._checkpointer_pid: int | None = None
        self._appends = 0
        self._limits = LocalWindows()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(path) as connection:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.executescript(_SCHEMA)
            connection.close()
        except (OSError, sqlite3.Error) as error:
            raise ConfigurationError(
                [f"the SQLite state file cannot be opened ({error})"]
            ) from None
        self._prune()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    @classmethod
    def from_url(cls, url: str, *, audit_retention_days: int) -> SqliteStore:
        return cls(sqlite_path(url), audit_retention_days=audit_retention_days)

    def _connection(self) -> sqlite3.Connection:
        # One connection per thread, and never one inherited across a fork (gunicorn).
        if getattr(self._local, "pid", None) != os.getpid():
            opened = sqlite3.connect(self.path, timeout=5, isolation_level=None)
            opened.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across a crash
            # Checkpoints (which fsync) run in a background thread, not in a request.
            opened.execute("PRAGMA wal_autocheckpoint=0")
            self._local.connection = opened
            self._local.pid = os.getpid()
            self._start_checkpointer()
        connection: sqlite3.Connection = self._local.connection
        return connection

    def _execute(self, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        try:
            return self._connection().execute(sql, parameters).fetchall()
        except sqlite3.Error:
            raise Unavailable("the SQLite state file cannot be used") from None

    def read_controls(self) -> Controls:
        pauses = {
            str(name): Pause(str(reason), datetime.fromtimestamp(float(str(since)), UTC))
            for name, reason, since in self._execute("SELECT name, reason, since FROM controls")
        }
        revocations = {
            str(subject): float(str(at))
            for subject, at in self._execute("SELECT subject, at FROM revocations")
        }
        return Controls(
            pause=pauses.get("all"),
            revocations=revocations,
            voice_outgoing_pause=pauses.get("voice_outgoing"),
        )

    def pause(self, reason: str, at: datetime, *, scope: PauseScope = "all") -> None:
        self._execute(
            "INSERT OR REPLACE INTO controls (name, reason, since) VALUES (?, ?, ?)",
            (scope, reason, at.timestamp()),
        )

    def resume(self) -> None:
        self._execute("DELETE FROM controls")

    def revoke(self, subject: str, at: datetime) -> None:
        self._execute(
            "INSERT OR REPLACE INTO revocations (subject, at) VALUES (?, ?)",
            (subject, at.timestamp()),
        )

    def unrevoke(self, subject: str) -> bool:
        found = self._execute("SELECT 1 FROM revocations WHERE subject = ?", (subject,))
        self._execute("DELETE FROM revocations WHERE subject = ?", (subject,))
        return bool(found)

    def append_audit(self, at: datetime, line: str) -> None:
        self._execute("INSERT INTO audit (at, record) VALUES (?, ?)", (at.timestamp(), line))
        self._appends += 1
        if self._appends % PRUNE_EVERY == 0:
            self._prune()

    def audit_lines(self, since: datetime | None, limit: int) -> list[str]:
        floor = since.timestamp() if since else 0.0
        rows = self._execute(
            "SELECT record FROM"
            " (SELECT id, record FROM audit WHERE at >= ? ORDER BY id DESC LIMIT ?)"
            " ORDER BY id",
            (floor, limit),
        )
        return [str(row[0]) for row in rows]

    def ping(self) -> None:
        self._execute("SELECT 1")

    def limits_storage(self) -> MovingWindowSupport:
        return self._limits

    def _start_checkpointer(self) -> None:
        with self._checkpointer_lock:
            if self._checkpointer_pid == os.getpid():
                return
            self._checkpointer_pid = os.getpid()
        threading.Thread(
            target=self._checkpoint_forever, name="sqlite-checkpoint", daemon=True
        ).start()

    def _checkpoint_forever(self) -> None:
        connection = sqlite3.connect(self.path, timeout=5, isolation_level=None)
        while True:
            time.sleep(CHECKPOINT_SECONDS)  # a background cadence, not a wait in a request
            with contextlib.suppress(sqlite3.Error):  # busy now: the next round catches up
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _prune(self) -> None:
        cutoff = datetime.now(UTC) - self._retention
        self._execute("DELETE FROM audit WHERE at < ?", (cutoff.timestamp(),))
