"""The embedded SQLite store: bounded by age and by size, revocations that lapse."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from service.base.errors import ConfigurationError
from service.state import Admission, Admitted, Refused, Retention
from service.state import sqlite as sqlite_module
from service.state.sqlite import SqliteStore, sqlite_path
from tests import support


def test_records_past_retention_are_pruned(
    tmp_path: Path, retention_clock: support.FakeClock
) -> None:
    retention = Retention(audit_days=1)
    store = SqliteStore(tmp_path / "state.db", retention=retention, clock=retention_clock)
    now = retention_clock()
    store.append_audit(now - timedelta(days=2), '{"old": true}')
    store.append_audit(now, '{"old": false}')
    minute = int(now.timestamp()) // 60 * 60
    store.count_refusals({(minute - 2 * 86400, "192.0.2.1", "denied", "old"): 1})
    store.count_refusals({(minute, "192.0.2.1", "denied", "new"): 1})
    reopened = SqliteStore(tmp_path / "state.db", retention=retention, clock=retention_clock)
    lines = [json.loads(line) for line in reopened.audit_lines(None, 10)]  # pruned on open
    assert [line for line in lines if "old" in line] == [{"old": False}]
    assert [line["code"] for line in lines if "code" in line] == ["new"]
    retention_clock.advance(2 * 86400)
    later = SqliteStore(tmp_path / "state.db", retention=retention, clock=retention_clock)
    assert later.audit_lines(None, 10) == []


def test_the_trail_keeps_at_most_its_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_module, "PRUNE_EVERY", 10)
    clock = support.FakeClock(support.NOW)
    store = SqliteStore(
        tmp_path / "state.db", retention=Retention(audit_max_records=25), clock=clock
    )
    now = clock()
    for number in range(100):
        store.append_audit(now, json.dumps({"n": number}))
    for number in range(40):
        store.count_refusals({(int(now.timestamp()), f"192.0.2.{number}", "denied", "x"): 1})
    lines = [json.loads(line) for line in store.audit_lines(None, 1000)]
    records = [line["n"] for line in lines if "n" in line]
    assert len(records) <= 25
    assert records[-1] == 99  # the newest are kept
    assert len([line for line in lines if "count" in line]) <= 25


def test_revocations_lapse(tmp_path: Path, retention_clock: support.FakeClock) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path, retention=Retention(revocation_days=90), clock=retention_clock)
    now = retention_clock()
    store.revoke("identity:old", now - timedelta(days=91))
    store.revoke("identity:new", now - timedelta(days=89))
    old = Admission(at=now, revocations=("identity:old",))
    assert store.admit(old) == Admitted()
    assert isinstance(store.admit(Admission(at=now, revocations=("identity:new",))), Refused)
    retention_clock.advance(2 * 86400)
    SqliteStore(path, retention=Retention(revocation_days=90), clock=retention_clock)  # prunes
    assert store.admit(Admission(at=retention_clock(), revocations=("identity:new",))) == Admitted()


@pytest.mark.parametrize(
    ("url", "path"),
    [("sqlite:///var/broker.sqlite3", "var/broker.sqlite3"), ("sqlite:////srv/b.db", "/srv/b.db")],
)
def test_sqlite_urls(url: str, path: str) -> None:
    assert sqlite_path(url) == Path(path)


def test_unwritable_sqlite_file_is_a_startup_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigurationError):
        SqliteStore(blocker / "state.db", retention=Retention())
