"""Browser clients, in a real browser: Debian's Chromium, headless, driven by playwright-core.

A browser shows a page only what CORS lets it see, which an HTTP client in a test never
notices. Pages are served from two loopback origins; the broker runs in the production
profile with ``BROKER_CORS_ORIGINS`` naming only the first. Each test opens one page
(``tests/e2e/pages``) with ``tests/e2e/node/browser.mjs`` and reads its report.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests import support
from tests.conftest import LeakWatch
from tests.e2e.test_serve import token_request

PAGES = Path(__file__).parent / "pages"
NODE_DIR = Path(__file__).parent / "node"
DRIVER = NODE_DIR / "browser.mjs"
EXAMPLE = support.ROOT / "examples" / "web" / "token-client.mjs"
DEADLINE_MS = 30_000
#: Two tokens a minute per caller: enough for a refresh, and quickly spent.
POLICY = support.POLICY.replace("1000/minute;20000/day", "2/minute")
CHAT: dict[str, Any] = {"grants": {"chat": {}}}


@dataclass
class Origin:
    """A static web server on loopback: one browser origin."""

    url: str
    server: ThreadingHTTPServer


def serve_pages() -> Origin:
    """The test pages, and the web example at /token-client.mjs, as a browser loads them."""
    files = {f"/{page.name}": (page, "text/html") for page in PAGES.glob("*.html")}
    files["/token-client.mjs"] = (EXAMPLE, "text/javascript")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server dispatches to
            found = files.get(self.path.split("?")[0])
            body = found[0].read_bytes() if found else b"not found"
            self.send_response(200 if found else 404)
            kind = found[1] if found else "text/plain"
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return Origin(f"http://127.0.0.1:{server.server_address[1]}", server)


@dataclass
class Site:
    broker: support.BrokerProcess
    allowed: Origin
    other: Origin

    def audit(self, identity: str) -> list[dict[str, Any]]:
        """The broker's audit records about ``identity``, from its output."""
        records = []
        for line in self.broker.output().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("identity") == identity:
                records.append(record)
        return records


@pytest.fixture(scope="module")
def site(keys: support.Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    directory = tmp_path_factory.mktemp("browser")
    policy = directory / "policy.toml"
    policy.write_text(POLICY)
    allowed, other = serve_pages(), serve_pages()
    try:
        with support.serve_jwks(keys.jwks()) as jwks:
            environ = {
                **support.base_environ(jwks.url, str(policy)),
                "BROKER_CORS_ORIGINS": allowed.url,
            }
            server = support.start_broker(environ, directory)
            try:
                yield Site(server, allowed, other)
            finally:
                support.stop_broker(server)
    finally:
        for origin in (allowed, other):
            origin.server.shutdown()
            origin.server.server_close()


@pytest.fixture(scope="module")
def browser() -> Callable[..., dict[str, Any]]:
    """Open a page in Chromium; under CI a missing browser or driver fails, never skips."""
    node, chromium = shutil.which("node"), shutil.which("chromium")
    driver_installed = (NODE_DIR / "node_modules" / "playwright-core").is_dir()
    if node is None or chromium is None or not driver_installed:
        missing = "node, chromium and tests/e2e/node/node_modules (make test installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser tests need {missing}; CI must install them")
        pytest.skip(f"the browser tests need {missing}")  # only outside CI: CI fails above

    def open_page(url: str, config: dict[str, Any], directory: Path) -> dict[str, Any]:
        plan = directory / "plan.json"
        plan.write_text(
            json.dumps(
                {"chromium": chromium, "url": url, "config": config, "deadline_ms": DEADLINE_MS}
            )
        )
        driver = subprocess.Popen(
            [str(node), str(DRIVER), str(plan)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=NODE_DIR,
            start_new_session=True,  # node and the Chromium it starts: one group, ended below
        )
        try:
            out, err = driver.communicate(timeout=DEADLINE_MS / 1000 + 30)
        except subprocess.TimeoutExpired:
            out, err = "", "the browser did not finish in time"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        assert driver.returncode == 0, out + err
        report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return report

    return open_page


def session(caller_token: Callable[..., str], identity: str, **claims: Any) -> str:
    return caller_token(sub=identity, **claims)


def issued_tokens(answers: list[dict[str, Any]], leaks: LeakWatch) -> list[str]:
    tokens = [answer["body"]["token"] for answer in answers if answer.get("status") == 200]
    leaks.issued.update(tokens)
    return tokens


def assert_kept_nothing(report: dict[str, Any], secrets: list[str]) -> None:
    """No token in the page's URL, any URL it requested, its storage or any cookie."""
    places = ("url", "requested", "localStorage", "sessionStorage", "documentCookie", "cookies")
    kept = json.dumps([report[place] for place in places])
    assert secrets
    for secret in secrets:
        assert secret not in kept


def test_allowed_origin_gets_a_token_and_reads_every_answer(
    site: Site,
    browser: Callable[..., dict[str, Any]],
    caller_token: Callable[..., str],
    tmp_path: Path,
    leaks: LeakWatch,
) -> None:
    member, limited = session(caller_token, "web-member"), session(caller_token, "web-limited")
    calls = [
        {"session": member, "body": CHAT},
        {"session": member, "body": {"grants": {"voice": {"outgoing": True}}}},  # agents only
        {"session": limited, "body": CHAT},
        {"session": limited, "body": CHAT},
        {"session": limited, "body": CHAT},  # the third in a minute: over the budget
    ]
    report = browser(
        f"{site.allowed.url}/tokens.html", {"brokerUrl": site.broker.url, "calls": calls}, tmp_path
    )
    answers = report["result"]["answers"]
    assert [answer.get("status") for answer in answers] == [200, 403, 200, 200, 429]
    tokens = issued_tokens(answers, leaks)
    assert answers[0]["body"]["identity"] == "web_x2d_member"  # every token: one encoding
    assert answers[1]["body"]["code"] == "grant_not_allowed"  # the problem body, readable
    assert answers[4]["body"]["code"] == "rate_limited"
    assert 0 < int(answers[4]["retryAfter"]) <= 60  # readable: the client knows when to retry
    assert all(answer["retryAfter"] is None for answer in answers[:4])
    request_ids = [answer["requestId"] for answer in answers]
    assert all(request_ids)  # quotable to support
    assert len(set(request_ids)) == len(answers)
    # The ids the page read are the ones the audit trail holds, in order.
    recorded = site.audit("web_x2d_member") + site.audit("web_x2d_limited")
    assert [record["request_id"] for record in recorded] == request_ids
    decisions = ["issued", "denied", "issued", "issued", "denied"]
    assert [record["decision"] for record in recorded] == decisions
    assert report["exceptions"] == []
    assert_kept_nothing(report, [*tokens, member, limited])
    leaks.check_text(site.broker.output())


@pytest.mark.parametrize(
    ("page", "identity"),
    [
        ("other", "web-elsewhere"),  # a page of another origin
        ("sandboxed", "web-sandboxed"),  # an iframe sandboxed by the allowed origin: "null"
    ],
)
def test_other_origins_are_blocked_and_nothing_is_issued(
    page: str,
    identity: str,
    site: Site,
    browser: Callable[..., dict[str, Any]],
    caller_token: Callable[..., str],
    tmp_path: Path,
) -> None:
    url = f"{site.other.url}/tokens.html"
    if page == "sandboxed":
        url = f"{site.allowed.url}/sandboxed.html"
    calls = [{"session": session(caller_token, identity), "body": CHAT}]
    report = browser(url, {"brokerUrl": site.broker.url, "calls": calls}, tmp_path)
    result = report["result"]
    if page == "sandboxed":
        assert result["origin"] == result["from"] == "null"  # opaque, though served by it
    else:
        assert result["origin"] == site.other.url
    [answer] = result["answers"]
    assert "Failed to fetch" in answer["blocked"]
    assert any("blocked by CORS policy" in error for error in report["consoleErrors"])
    assert report["exceptions"] == []
    assert site.audit(identity) == []  # the preflight failed: the POST never left the browser


def test_web_example_refreshes_before_expiry_and_honours_retry_after(
    site: Site,
    browser: Callable[..., dict[str, Any]],
    caller_token: Callable[..., str],
    tmp_path: Path,
    leaks: LeakWatch,
) -> None:
    fresh, spent = session(caller_token, "web-example"), session(caller_token, "web-spent")
    for _ in range(2):
        assert token_request(site.broker.url, CHAT, spent, leaks).status_code == 200
    report = browser(
        f"{site.allowed.url}/example.html",
        {"brokerUrl": site.broker.url, "session": fresh, "spentSession": spent},
        tmp_path,
    )
    result = report["result"]
    first, second = result["received"]
    leaks.issued.update({first["token"], second["token"]})
    assert first["token"] != second["token"]
    assert datetime.fromisoformat(second["at"]) < datetime.fromisoformat(first["expiresAt"])
    assert 1 <= result["scheduled"][0] <= 2  # 58 seconds before a 60-second token expires
    assert len(result["scheduled"]) == 2  # one refresh, then stopped
    # Refused: the example waits what Retry-After says, read from the answer, not its 5 s.
    assert result["refusal"] == "token broker said 429 rate_limited"
    refused = result["seen"][-1]
    assert refused["status"] == 429
    assert result["limitedScheduled"] == [int(refused["retryAfter"])]
    assert int(refused["retryAfter"]) > 5
    assert all(seen["requestId"] for seen in result["seen"])
    assert report["exceptions"] == []
    assert_kept_nothing(report, [first["token"], second["token"], fresh, spent])
    leaks.check_text(site.broker.output())
