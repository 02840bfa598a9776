"""The client examples, run against a real broker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import support
from tests.conftest import LeakWatch

ROOT = support.ROOT
sys.path.insert(0, str(ROOT / "examples" / "python"))

from token_client import BrokerError, TokenClient  # noqa: E402  # the example, as an app imports it


@pytest.fixture
def broker(environ: dict[str, str], tmp_path: Path) -> Iterator[support.BrokerProcess]:
    server = support.start_broker(environ, tmp_path)
    yield server
    support.stop_broker(server)


def test_javascript_client_refreshes_before_expiry(
    broker: support.BrokerProcess, caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is not installed; CI must install it")
        pytest.skip("node is not installed")  # only outside CI: CI fails above
    result = subprocess.run(
        [node, str(ROOT / "examples" / "web" / "refresh-demo.mjs")],
        env={
            **os.environ,
            "BROKER_URL": broker.url,
            "SESSION_TOKEN": caller_token(),
            "REFRESHES": "2",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"refreshes": 2, "beforeExpiry": True, "distinct": True}
    leaks.check_text(result.stdout + result.stderr)


def test_python_client_caches_then_reports_refusals(
    broker: support.BrokerProcess, caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    session = caller_token()
    client = TokenClient(broker.url, session_token=lambda: session)
    first = client.token({"sync": {}})
    leaks.issued.add(first)
    assert client.token({"sync": {}}) == first  # cached: far from expiry
    eager = TokenClient(broker.url, session_token=lambda: session, refresh_margin_seconds=3600)
    leaks.issued.add(eager.token({"sync": {}}, ttl=60))
    with pytest.raises(BrokerError) as refused:
        client.token({"voice": {}})
    assert refused.value.status == 403
    assert refused.value.code == "grant_not_allowed"
