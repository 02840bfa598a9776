"""The embedded SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service.errors import ConfigurationError
from service.state.sqlite import SqliteStore, sqlite_path


def test_sqlite_prunes_records_past_retention(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db", audit_retention_days=1)
    store.append_audit(datetime.now(UTC) - timedelta(days=2), '{"old": true}')
    store.append_audit(datetime.now(UTC), '{"old": false}')
    reopened = SqliteStore(tmp_path / "state.db", audit_retention_days=1)  # prunes on open
    assert reopened.audit_lines(None, 10) == ['{"old": false}']


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
        SqliteStore(blocker / "state.db", audit_retention_days=1)
