"""The durable audit trail in PostgreSQL (``BROKER_AUDIT_URL``), for fleets.

A long trail does not belong in Redis's memory: at 10 tokens a second, 30 days are about
26 million records. Here they go to one table partitioned by day, so retention drops a
day's partition whole instead of deleting rows; indexes serve ``token-broker audit``'s
questions (by time, identity, decision). The broker creates what it needs itself (the
table, today's and tomorrow's partitions, under an advisory lock so that every worker
of every instance may try at once); there is no migration step.

Each record is one ``INSERT`` in autocommit, one round trip, before the token is
returned; the commit is asynchronous unless the URL asks for ``synchronous_commit``
(see ``_options``); every session runs in UTC, and partition bounds say their offset, so
the server's timezone changes nothing. The pool (psycopg 3's, cooperative under gevent)
waits at most a second for a connection: with the database unreachable, at start or
mid-traffic, issuance fails closed (``Unavailable``, 503) and ``/readyz`` says so (it
writes a record and rolls it back); the pool reconnects by itself when the database
returns.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from service.base.clock import Clock, system_clock
from service.base.errors import Unavailable
from service.state.store import RefusalCounts, Retention, newest, refusal_line

T = TypeVar("T")
TABLE = "token_broker_audit"
REFUSALS = "token_broker_refusals"
#: How long a request may wait for a connection, and a statement may run (seconds).
WAIT_SECONDS = 1.0
STATEMENT_MILLISECONDS = 2000
#: How long the pool keeps trying one reconnection before starting afresh: with the
#: backoff's doublings, a database that returns is found again within about 20 s.
RECONNECT_SECONDS = 20.0
POOL_SIZE = 4
_LOCK = 8_417_330_001  # pg_advisory_xact_lock: one creator of partitions at a time
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigserial NOT NULL,
    at timestamptz NOT NULL,
    event text NOT NULL,
    decision text NOT NULL,
    identity text,
    record text NOT NULL
) PARTITION BY RANGE (at);
CREATE INDEX IF NOT EXISTS {TABLE}_at ON {TABLE} (at);
CREATE INDEX IF NOT EXISTS {TABLE}_identity ON {TABLE} (identity, at);
CREATE INDEX IF NOT EXISTS {TABLE}_decision ON {TABLE} (decision, at);
CREATE TABLE IF NOT EXISTS {REFUSALS} (
    minute timestamptz NOT NULL,
    address text NOT NULL,
    decision text NOT NULL,
    code text NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (minute, address, decision, code)
);
"""
_ERRORS = (psycopg.Error, PoolTimeout, OSError)


def partition_name(day: date) -> str:
    return f"{TABLE}_{day:%Y%m%d}"


class PostgresTrail:
    """The audit trail in PostgreSQL; the state store keeps only budgets and switches."""

    def __init__(
        self,
        url: str,
        *,
        retention: Retention,
        pool_size: int = POOL_SIZE,
        clock: Clock = system_clock,
    ) -> None:
        self._retention = retention
        self._clock = clock
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            timeout=WAIT_SECONDS,
            reconnect_timeout=RECONNECT_SECONDS,
            kwargs={
                "autocommit": True,
                "connect_timeout": 2,
                "application_name": "token-broker",
                "options": _options(url),
            },
            open=False,
            name="token-broker-audit",
        )
        self._pool.open(wait=False)  # an unreachable database is found out per request
        self._days: set[date] = set()
        self._schema_lock = threading.Lock()

    def __repr__(self) -> str:
        return "PostgresTrail()"

    def close(self) -> None:
        self._pool.close()

    def _run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        try:
            with self._pool.connection() as connection:
                return work(connection)
        except _ERRORS:
            raise Unavailable(
                "the audit database cannot be reached", dependency="audit_trail"
            ) from None

    def _ensure_days(self, connection: psycopg.Connection[Any], at: datetime) -> None:
        """The table, and the partitions of ``at``'s day and the next: made once a day per
        process; old partitions are dropped then too."""
        day = at.astimezone(UTC).date()
        if day in self._days:
            return
        with self._schema_lock, connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            connection.execute(_SCHEMA)
            for new in (day, day + timedelta(days=1)):
                connection.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})"
                    ).format(
                        sql.Identifier(partition_name(new)),
                        sql.Identifier(TABLE),
                        sql.Literal(_midnight(new)),
                        sql.Literal(_midnight(new + timedelta(days=1))),
                    )
                )
            self._drop_before(connection, day - timedelta(days=self._retention.audit_days))
            self._days.add(day)

    def _drop_before(self, connection: psycopg.Connection[Any], oldest: date) -> None:
        partitions = connection.execute(
            "SELECT child.relname FROM pg_inherits"
            " JOIN pg_class parent ON parent.oid = pg_inherits.inhparent"
            " JOIN pg_class child ON child.oid = pg_inherits.inhrelid"
            " WHERE parent.relname = %s",
            (TABLE,),
        ).fetchall()
        for (name,) in partitions:
            if str(name) < partition_name(oldest):
                connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
        cutoff = datetime(oldest.year, oldest.month, oldest.day, tzinfo=UTC)
        connection.execute(f"DELETE FROM {REFUSALS} WHERE minute < %s", (cutoff,))  # noqa: S608  # a constant table name

    def append_audit(self, at: datetime, line: str) -> None:
        fields = _indexed(line)

        def insert(connection: psycopg.Connection[Any]) -> None:
            self._ensure_days(connection, at)
            connection.execute(
                f"INSERT INTO {TABLE} (at, event, decision, identity, record)"  # noqa: S608  # a constant table name
                " VALUES (%s, %s, %s, %s, %s)",
                (at, *fields, line),
            )

        self._run(insert)

    def count_refusals(self, counts: RefusalCounts) -> None:
        rows = [
            (datetime.fromtimestamp(minute, UTC), address, decision, code, count)
            for (minute, address, decision, code), count in counts.items()
        ]

        def upsert(connection: psycopg.Connection[Any]) -> None:
            self._ensure_days(connection, self._clock())
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO {REFUSALS} (minute, address, decision, code, count)"  # noqa: S608  # a constant table name
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (minute, address, decision, code)"
                    f" DO UPDATE SET count = {REFUSALS}.count + EXCLUDED.count",
                    rows,
                )

        self._run(upsert)

    def audit_lines(
        self,
        since: datetime | None,
        limit: int,
        *,
        identity: str | None = None,
        decision: str | None = None,
    ) -> list[str]:
        floor = since or datetime(1970, 1, 1, tzinfo=UTC)
        where = ["at >= %s"]
        parameters: list[object] = [floor]
        if identity is not None:
            where.append("identity = %s")
            parameters.append(identity)
        if decision is not None:
            where.append("decision = %s")
            parameters.append(decision)

        def read(connection: psycopg.Connection[Any]) -> list[tuple[float, str]]:
            self._ensure_days(connection, self._clock())
            found = connection.execute(
                f"SELECT extract(epoch FROM at)::float8, record FROM {TABLE}"  # noqa: S608  # constant names and placeholders only
                f" WHERE {' AND '.join(where)} ORDER BY at DESC, id DESC LIMIT %s",
                (*parameters, limit),
            ).fetchall()
            records = [(float(at), str(record)) for at, record in reversed(found)]
            if identity is None:
                records += self._aggregates(connection, floor, limit, decision)
            return records

        return newest(self._run(read), limit)

    def _aggregates(
        self,
        connection: psycopg.Connection[Any],
        floor: datetime,
        limit: int,
        decision: str | None,
    ) -> list[tuple[float, str]]:
        minute = datetime.fromtimestamp(int(floor.timestamp()) // 60 * 60, UTC)
        found = connection.execute(
            "SELECT extract(epoch FROM minute)::bigint, address, decision, code, count"  # noqa: S608  # a constant table name
            f" FROM {REFUSALS} WHERE minute >= %s AND (%s::text IS NULL OR decision = %s)"
            " ORDER BY minute DESC LIMIT %s",
            (minute, decision, decision, limit),
        ).fetchall()
        return [(float(row[0]), refusal_line(int(row[0]), *map(str, row[1:]))) for row in found]

    def ping(self) -> None:
        """Whether a record can be written now: one is, in a transaction rolled back (a
        database that answers but refuses writes, a full disk, a missing partition or
        privilege, all fail here as they would fail a token)."""

        def probe(connection: psycopg.Connection[Any]) -> None:
            now = self._clock()
            self._ensure_days(connection, now)
            with connection.transaction(force_rollback=True):
                connection.execute(
                    f"INSERT INTO {TABLE} (at, event, decision, identity, record)"  # noqa: S608  # a constant table name
                    " VALUES (%s, 'readiness', 'probe', NULL, '{}')",
                    (now,),
                )

        self._run(probe)


def _options(url: str) -> str:
    """The session's settings: a statement timeout, and asynchronous commit unless the URL
    asks otherwise (``?options=-c%20synchronous_commit%3Don``): a record is committed,
    and visible, before the token is returned; only a crash of the database server itself
    may lose the last fraction of a second of them (about 0.25 ms a token saved)."""
    given = parse_qs(urlsplit(url).query).get("options", [""])[-1]
    # UTC whatever the server's timezone: days, partitions and bounds are UTC's.
    ours = f"-c statement_timeout={STATEMENT_MILLISECONDS} -c timezone=UTC"
    if "synchronous_commit" not in given:
        ours += " -c synchronous_commit=off"
    return f"{given} {ours}".strip()


def _midnight(day: date) -> str:
    """A partition bound: the start of ``day`` in UTC, with its offset written out (a
    bare date would be read in the session's timezone)."""
    return f"{day.isoformat()} 00:00:00+00"


def _indexed(line: str) -> Sequence[str | None]:
    """The columns a query may ask for, taken from the record's JSON line."""
    record = json.loads(line)
    identity = record.get("identity")
    return (
        str(record.get("event", "")),
        str(record.get("decision", "")),
        identity if isinstance(identity, str) else None,
    )
