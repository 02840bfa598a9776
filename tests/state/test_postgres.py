"""The audit trail in PostgreSQL: partitioned by day, old days dropped whole, made by
the broker itself from any number of workers at once, and failing closed (then
recovering by itself) when the database is cut off."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from flask.testing import FlaskClient

from service.base.errors import Unavailable
from service.http import broker
from service.state import Retention, open_store
from service.state.postgres import TABLE, PostgresTrail, partition_name
from service.tokens.minting import token_fingerprint
from tests import support

NOW = support.NOW


def partitions(url: str) -> list[str]:
    with psycopg.connect(url) as connection:
        found = connection.execute(
            "SELECT child.relname FROM pg_inherits"
            " JOIN pg_class parent ON parent.oid = pg_inherits.inhparent"
            " JOIN pg_class child ON child.oid = pg_inherits.inhrelid"
            " WHERE parent.relname = %s ORDER BY 1",
            (TABLE,),
        ).fetchall()
    return [str(name) for (name,) in found]


def through(proxy: support.TcpProxy, url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.hostname}:{proxy.port}"))


def test_records_go_to_a_partition_a_day_and_old_days_are_dropped(
    postgres_url: str, retention_clock: support.FakeClock
) -> None:
    trail = PostgresTrail(postgres_url, retention=Retention(audit_days=2), clock=retention_clock)
    now = retention_clock()
    try:
        retention_clock.advance(-10 * 86400)
        trail.append_audit(retention_clock(), json.dumps({"n": "old"}))
        assert partitions(postgres_url) == [
            partition_name((now - timedelta(days=10)).date()),
            partition_name((now - timedelta(days=9)).date()),
        ]
        retention_clock.advance(10 * 86400)
        trail.append_audit(now, json.dumps({"n": "new", "identity": "alice"}))
        assert partitions(postgres_url) == [
            partition_name(now.date()),
            partition_name((now + timedelta(days=1)).date()),
        ]
        assert [json.loads(line)["n"] for line in trail.audit_lines(None, 10)] == ["new"]
        retention_clock.advance(3 * 86400)  # a new day's first use drops what is past
        assert trail.audit_lines(None, 10) == []
    finally:
        trail.close()


def test_many_workers_make_the_schema_at_once(postgres_url: str) -> None:
    trails = [PostgresTrail(postgres_url, retention=Retention(), pool_size=1) for _ in range(8)]
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(
                pool.map(lambda n: trails[n % 8].append_audit(NOW, json.dumps({"n": n})), range(40))
            )
        assert len(trails[0].audit_lines(None, 100)) == 40
    finally:
        for trail in trails:
            trail.close()


def test_cut_off_it_fails_closed_quickly_and_recovers_by_itself(postgres_url: str) -> None:
    port = urlsplit(postgres_url).port or 5432
    with support.TcpProxy(port) as proxy:
        trail = PostgresTrail(through(proxy, postgres_url), retention=Retention())
        try:
            trail.append_audit(NOW, json.dumps({"n": 1}))
            proxy.cut()
            for n in range(3):  # each request is refused within a bounded time
                started = time.monotonic()
                with pytest.raises(Unavailable):
                    trail.append_audit(NOW, json.dumps({"n": 2 + n}))
                assert time.monotonic() - started < 5
            with pytest.raises(Unavailable):
                trail.ping()
            proxy.restore()

            def recovered() -> bool:
                try:
                    trail.append_audit(NOW, json.dumps({"n": "back"}))
                except Unavailable:
                    return False
                return True

            assert support.eventually(recovered, within=60.0)
            stored = [json.loads(line)["n"] for line in trail.audit_lines(None, 100)]
            assert stored[0] == 1
            assert stored[-1] == "back"
            assert not {2, 3, 4} & set(stored)  # a refused record was never half-stored
        finally:
            trail.close()


@pytest.fixture
def audited(
    make_client: Callable[..., FlaskClient], environ: dict[str, str], postgres_url: str
) -> Iterator[Callable[[str], FlaskClient]]:
    """A client of the app with its audit trail in PostgreSQL at the URL given."""
    made: list[FlaskClient] = []

    def make(url: str) -> FlaskClient:
        client = make_client({**environ, "BROKER_AUDIT_URL": url})
        made.append(client)
        return client

    yield make
    for client in made:
        broker(client.application).close()


def test_an_issued_token_is_recorded_in_the_database_not_the_store(
    audited: Callable[[str], FlaskClient],
    postgres_url: str,
    post: support.Post,
    caller_token: support.Token,
    environ: dict[str, str],
) -> None:
    client = audited(postgres_url)
    response = post(support.VIDEO, caller_token(), to=client)
    assert response.status_code == 200
    trail = PostgresTrail(postgres_url, retention=Retention())
    try:
        [line] = trail.audit_lines(None, 10, decision="issued")
    finally:
        trail.close()
    assert json.loads(line)["token"] == token_fingerprint(response.get_json()["token"])
    store = open_store(environ["BROKER_STATE_URL"], retention=Retention())
    assert store.audit_lines(None, 10) == []  # the state store keeps budgets, not the trail
    store.close()
    ready = client.get("/readyz").get_json()
    assert ready["checks"]["audit_trail"] == "ok"


def test_issuance_fails_closed_while_the_database_is_cut_off_and_recovers(
    audited: Callable[[str], FlaskClient],
    postgres_url: str,
    post: support.Post,
    caller_token: support.Token,
    audit_stream: io.StringIO,
) -> None:
    port = urlsplit(postgres_url).port or 5432
    with support.TcpProxy(port) as proxy:
        proxy.cut()  # down from the start
        client = audited(through(proxy, postgres_url))
        support.assert_problem(post(support.VIDEO, caller_token(), to=client), 503, "unavailable")
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.get_json()["checks"]["audit_trail"] == "failed"
        proxy.restore()
        assert support.eventually(
            lambda: post(support.VIDEO, caller_token(), to=client).status_code == 200, within=60.0
        )
        assert client.get("/readyz").status_code == 200
    issued = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    refused = [record for record in issued if record["decision"] == "unavailable"]
    assert refused
    assert all("token" not in record for record in refused)  # nothing issued without its record


@pytest.mark.parametrize(
    ("query", "expected"), [("", "off"), ("?options=-c%20synchronous_commit%3Don", "on")]
)
def test_commits_are_asynchronous_unless_the_url_asks(
    postgres_url: str, query: str, expected: str
) -> None:
    trail = PostgresTrail(postgres_url + query, retention=Retention())
    try:
        found = trail._run(lambda c: c.execute("SHOW synchronous_commit").fetchone())
    finally:
        trail.close()
    assert found == (expected,)


@pytest.fixture
def database_west_of_utc(postgres_server: str) -> Iterator[str]:
    """A database of its own whose timezone is America/Los_Angeles: at 03:00 UTC its date
    is still yesterday's."""
    name = urlsplit(postgres_server).path.lstrip("/") + "_west"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
        admin.execute(f"ALTER DATABASE \"{name}\" SET timezone TO 'America/Los_Angeles'")
    try:
        yield urlunsplit(urlsplit(postgres_server)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_server_west_of_utc_changes_nothing_and_readiness_sees_an_unwritable_trail(
    database_west_of_utc: str,
    make_client: Callable[..., FlaskClient],
    environ: dict[str, str],
    clock: support.FakeClock,
    post: support.Post,
    caller_token: support.Token,
) -> None:
    with psycopg.connect(database_west_of_utc) as connection:
        found = connection.execute("SHOW timezone").fetchone()
    assert found == ("America/Los_Angeles",)  # the server's, for every other session
    clock.now = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)  # 2026-11-27 19:00 in Los Angeles
    client = make_client({**environ, "BROKER_AUDIT_URL": database_west_of_utc})
    try:
        for _ in range(3):
            assert post(support.VIDEO, caller_token(), to=client).status_code == 200
            clock.advance(3 * 3600)  # across both midnights, UTC's and Los Angeles's
        assert client.get("/readyz").status_code == 200
        with psycopg.connect(database_west_of_utc, autocommit=True) as connection:
            connection.execute(REFUSE_WRITES)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.get_json()["checks"]["audit_trail"] == "failed"
        refused = post(support.VIDEO, caller_token(), to=client)
        support.assert_problem(refused, 503, "unavailable")
    finally:
        broker(client.application).close()
    trail = PostgresTrail(database_west_of_utc, retention=Retention(), clock=clock)
    try:
        records = [json.loads(line) for line in trail.audit_lines(None, 10)]
    finally:
        trail.close()
    assert [record["decision"] for record in records] == ["issued"] * 3


#: A database that answers but takes no record: a trigger refuses every insert.
REFUSE_WRITES = f"""
CREATE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'read only'; END $$;
CREATE TRIGGER refuse_writes BEFORE INSERT ON {TABLE}
FOR EACH ROW EXECUTE FUNCTION refuse_writes();
"""
