"""Embedded state in one SQLite file: WAL journal, one connection per process.

Commits survive a crash of the process (``kill -9``); budgets live in this process, so
the server runs a single worker process. SQLite checkpoints its journal into the file
every thousand pages, in the commit that fills them (a few milliseconds, a few times a
second at full load): the journal stays within about 4 MB.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from service.base.clock import Clock, system_clock
from service.base.errors import ConfigurationError, Unavailable
from service.base.files import private_file
from service.state.sqlite_fleet import FleetRecords
from service.state.sqlite_schema import SCHEMA
from service.state.store import (
    Admission,
    Admitted,
    FilteringTrail,
    Outcome,
    Pause,
    PauseScope,
    RefusalCounts,
    Refused,
    Retention,
    newest,
    refusal_line,
)
from service.state.windows import LocalWindows

PRUNE_EVERY = 1000
#: After a checkpoint, the journal file is cut back to this size.
JOURNAL_BYTES = 4 * 1024 * 1024
_DAY = 86400.0


def sqlite_path(url: str) -> Path:
    """``sqlite:///var/x.db`` is relative to the working directory; ``sqlite:////x.db`` absolute."""
    path = urlsplit(url).path
    if not path or path == "/":
        raise ConfigurationError(["BROKER_STATE_URL names no SQLite file"])
    return Path(path[1:])


class SqliteStore(FilteringTrail, FleetRecords):
    in_process_limits = True

    def __init__(
        self,
        path: Path,
        *,
        retention: Retention,
        create: bool = True,
        clock: Clock = system_clock,
    ) -> None:
        """Open the store at ``path``; only ``create`` (the server) makes a new file, owner-only."""
        self.path = path
        self._retention = retention
        self._clock = clock
        self._lapse_seconds = retention.revocation_days * _DAY
        self._lock = threading.RLock()
        self._connection: sqlite3.Connection | None = None
        self._pid = 0
        self._writes = 0
        self._windows = LocalWindows()
        if not create and not path.exists():
            raise ConfigurationError(
                [
                    f"no state file at {path.resolve()}: run this where the server runs, "
                    "with its BROKER_STATE_URL (a command never creates one)"
                ]
            )
        try:
            private_file(path)
            with contextlib.closing(sqlite3.connect(path)) as connection:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise ConfigurationError(
                [f"the SQLite state file cannot be opened ({error})"]
            ) from None
        self._prune()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    @classmethod
    def from_url(
        cls, url: str, *, retention: Retention, create: bool = True, clock: Clock = system_clock
    ) -> SqliteStore:
        return cls(sqlite_path(url), retention=retention, create=create, clock=clock)

    def _execute(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple[object, ...]]:
        try:
            with self._lock:
                return self._opened().execute(sql, tuple(parameters)).fetchall()
        except sqlite3.Error:
            raise Unavailable("the SQLite state file cannot be used") from None

    def _opened(self) -> sqlite3.Connection:
        # One connection per process, never one inherited across a fork (gunicorn).
        if self._connection is None or self._pid != os.getpid():
            opened = sqlite3.connect(
                self.path, timeout=5, isolation_level=None, check_same_thread=False
            )
            opened.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across a crash
            opened.execute(f"PRAGMA journal_size_limit={JOURNAL_BYTES}")
            self._connection, self._pid = opened, os.getpid()
        return self._connection

    def admit(self, admission: Admission) -> Outcome:
        now = admission.at.timestamp()
        with self._lock:
            signed_in = self._session_sign_in(admission)
            refused = self._refusal(admission, now, signed_in)
            if refused is not None:
                return refused
            if admission.record is not None:
                self.append_audit(admission.at, admission.record)  # before any budget is spent
            self._windows.spend(admission.spends, admission.cost, now)
            if admission.remember_sign_in is not None and signed_in is not None:
                self._execute(
                    "INSERT INTO sign_ins (subject, at) VALUES (?, ?) ON CONFLICT (subject)"
                    " DO UPDATE SET at = max(at, excluded.at)",
                    (admission.remember_sign_in, signed_in),
                )
        return Admitted()

    def _session_sign_in(self, admission: Admission) -> float | None:
        """The sign-in to judge: the session's first sight where it has one (remembered
        now if this is it), else what the admission says."""
        if admission.session is None or admission.signed_in_at is None:
            return admission.signed_in_at
        self._execute(
            "INSERT OR IGNORE INTO sessions (session, first_seen) VALUES (?, ?)",
            (admission.session, admission.signed_in_at),
        )
        [(first_seen,)] = self._execute(
            "SELECT first_seen FROM sessions WHERE session = ?", (admission.session,)
        )
        return min(float(str(first_seen)), admission.signed_in_at)

    def _refusal(
        self, admission: Admission, now: float, session_sign_in: float | None
    ) -> Refused | None:
        pauses, revoked, remembered = self._controls_of(admission, now)
        for scope in admission.pauses:
            if scope in pauses:
                return Refused("paused", pauses[scope], scope=scope)
        signed_in = remembered if admission.sign_in_of is not None else session_sign_in
        if revoked is not None:
            subject, at = revoked
            if signed_in is None or signed_in <= at:
                return Refused("revoked", subject)
        refusal = self._windows.refusal(admission.spends, admission.cost, now)
        if refusal is not None:
            index, retry_after = refusal
            return Refused("rate_limited", admission.spends[index].budget, retry_after=retry_after)
        return None

    def _controls_of(
        self, admission: Admission, now: float
    ) -> tuple[dict[str, str], tuple[str, float] | None, float | None]:
        """The pauses, the latest revocation and the remembered sign-in that concern
        ``admission``, in one query."""
        if not admission.pauses and not admission.revocations:
            return {}, None, None
        pause_marks = ",".join("?" * len(admission.pauses)) or "NULL"
        subject_marks = ",".join("?" * len(admission.revocations)) or "NULL"
        rows = self._execute(
            f"SELECT 0, name, reason, 0 FROM controls WHERE name IN ({pause_marks})"  # noqa: S608  # only placeholders are formatted in
            f" UNION ALL SELECT 1, subject, '', at FROM revocations"
            f" WHERE subject IN ({subject_marks}) AND at >= ?"
            " UNION ALL SELECT 2, subject, '', at FROM sign_ins WHERE subject = ?",
            [
                *admission.pauses,
                *admission.revocations,
                now - self._lapse_seconds,
                admission.sign_in_of,
            ],
        )
        pauses = {str(name): str(reason) for kind, name, reason, _ in rows if kind == 0}
        revocations = [(str(name), float(str(at))) for kind, name, _, at in rows if kind == 1]
        signed_in = [float(str(at)) for kind, _, _, at in rows if kind == 2]
        latest = max(revocations, key=lambda found: found[1], default=None)
        return pauses, latest, (signed_in[0] if signed_in else None)

    def pauses(self) -> dict[PauseScope, Pause]:
        found: dict[PauseScope, Pause] = {}
        for name, reason, since in self._execute("SELECT name, reason, since FROM controls"):
            scope: PauseScope = "voice_outgoing" if name == "voice_outgoing" else "all"
            found[scope] = Pause(str(reason), datetime.fromtimestamp(float(str(since)), UTC))
        return found

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
        with self._lock:
            found = self._execute("SELECT 1 FROM revocations WHERE subject = ?", (subject,))
            self._execute("DELETE FROM revocations WHERE subject = ?", (subject,))
        return bool(found)

    def append_audit(self, at: datetime, line: str) -> None:
        self._execute("INSERT INTO audit (at, record) VALUES (?, ?)", (at.timestamp(), line))
        self._wrote()

    def count_refusals(self, counts: RefusalCounts) -> None:
        rows = [(*key, count) for key, count in counts.items()]
        try:
            with self._lock:
                self._opened().executemany(
                    "INSERT INTO refusals (minute, address, decision, code, count)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (minute, address, decision, code)"
                    " DO UPDATE SET count = count + excluded.count",
                    rows,
                )
        except sqlite3.Error:
            raise Unavailable("the SQLite state file cannot be used") from None
        self._wrote()

    def _audit_lines(self, since: datetime | None, limit: int) -> list[str]:
        floor = since.timestamp() if since else 0.0
        newest_first = self._execute(
            "SELECT at, record FROM audit WHERE at >= ? ORDER BY id DESC LIMIT ?", (floor, limit)
        )
        records = [(float(str(at)), str(record)) for at, record in reversed(newest_first)]
        aggregates = [
            (float(str(minute)), refusal_line(int(str(minute)), *map(str, rest)))
            for minute, *rest in self._execute(
                "SELECT minute, address, decision, code, count FROM refusals"
                " WHERE minute >= ? ORDER BY minute DESC LIMIT ?",
                (int(floor) // 60 * 60, limit),
            )
        ]
        return newest(records + aggregates, limit)

    def first_time(self, keys: Sequence[str], at: datetime, seconds: int) -> bool:
        now = at.timestamp()
        marks = ",".join("?" * len(keys))
        try:
            with self._lock:
                connection = self._opened()
                connection.execute("BEGIN IMMEDIATE")  # one at a time, across processes too
                try:
                    found = connection.execute(
                        f"SELECT 1 FROM seen WHERE key IN ({marks}) AND until > ?",  # noqa: S608  # only placeholders are formatted in
                        [*keys, now],
                    ).fetchall()
                    if not found:
                        connection.executemany(
                            "INSERT OR REPLACE INTO seen (key, until) VALUES (?, ?)",
                            [(key, now + seconds) for key in keys],
                        )
                finally:
                    connection.execute("COMMIT")
        except sqlite3.Error:
            raise Unavailable("the SQLite state file cannot be used") from None
        return not found

    def ping(self) -> None:
        self._execute("SELECT 1")

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _wrote(self) -> None:
        self._writes += 1
        if self._writes % PRUNE_EVERY == 0:
            self._prune()

    def _prune(self) -> None:
        """Keep the trail within its age and its size, and let revocations lapse."""
        now = self._clock().timestamp()
        oldest = now - self._retention.audit_days * _DAY
        most = self._retention.audit_max_records
        with self._lock:
            self._execute("DELETE FROM audit WHERE at < ?", (oldest,))
            self._execute(
                "DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC"
                " LIMIT 1 OFFSET ?)",
                (most,),
            )
            self._execute("DELETE FROM refusals WHERE minute < ?", (oldest,))
            self._execute(
                "DELETE FROM refusals WHERE rowid IN (SELECT rowid FROM refusals"
                " ORDER BY minute DESC LIMIT -1 OFFSET ?)",
                (most,),
            )
            self._execute(
                "DELETE FROM revocations WHERE at < ?",
                (now - self._retention.revocation_days * _DAY,),
            )
            self._execute("DELETE FROM seen WHERE until < ?", (now,))
            self._execute("DELETE FROM memos WHERE until < ?", (now,))
            self._execute(
                "DELETE FROM sign_ins WHERE at < ?",
                (now - self._retention.revocation_days * _DAY,),
            )
            self._execute(
                "DELETE FROM sessions WHERE first_seen < ?",
                (now - self._retention.revocation_days * _DAY,),
            )
