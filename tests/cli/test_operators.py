"""The operator's commands: pause, resume, revoke, audit, usage; obeyed by a running app."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from click.testing import CliRunner, Result
from flask.testing import FlaskClient

from service.cli import main
from tests import support
from tests.conftest import LeakWatch

VIDEO = {"grants": {"video": {"room": "lobby"}}}


def cli(environment: dict[str, str], *args: str) -> Result:
    result = CliRunner().invoke(main, list(args), env=environment)
    assert result.exit_code == 0, result.output
    return result


def ask(client: FlaskClient, bearer: str, leaks: LeakWatch, body: Any = None) -> Any:
    response = client.post(
        "/v1/tokens", json=body or VIDEO, headers={"Authorization": f"Bearer {bearer}"}
    )
    leaks.check_response(response)
    return response


def wait_for_status(send: Callable[[], Any], status: int, within: float = 1.0) -> Any:
    """Poll until a request answers ``status``; the promise is 'within one second'."""
    deadline = time.monotonic() + within
    while True:
        response = send()
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.02)  # the polling interval, bounded by the deadline


ADMIN_SID = support.ACCOUNT_SID


ADMIN_TOKEN = "f" * 32


RFC2822 = "Sat, 28 Nov 2026 18:00:00 +0000"


@dataclass
class FakeTwilio:
    """The 2010-04-01 Keys endpoints of one account, in memory."""

    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    url: str = ""
    requests: list[str] = field(default_factory=list)
    triggers: list[dict[str, str]] = field(default_factory=list)
    spend: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            "Today": {"calls": "60.00", "sms": "1.00"},
            "ThisMonth": {"calls": "400.00", "sms": "12.00"},
        }
    )


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    state = FakeTwilio()
    state.keys[support.API_KEY_SID] = {"sid": support.API_KEY_SID, "friendly_name": "broker 1"}
    base = f"/2010-04-01/Accounts/{ADMIN_SID}/Keys"

    class Handler(BaseHTTPRequestHandler):
        def _authorized(self) -> bool:
            expected = base64.b64encode(f"{ADMIN_SID}:{ADMIN_TOKEN}".encode()).decode()
            if self.headers.get("Authorization") == f"Basic {expected}":
                return True
            self._json(401, {"code": 20003, "message": "Authenticate", "status": 401})
            return False

        def _json(self, status: int, body: dict[str, Any] | None) -> None:
            payload = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _key(self, key: dict[str, Any]) -> dict[str, Any]:
            return {**key, "date_created": RFC2822, "date_updated": RFC2822}

        def do_GET(self) -> None:  # the name http.server dispatches to
            state.requests.append(f"GET {self.path}")
            if not self._authorized():
                return
            path = self.path.split("?")[0]
            usage = f"/2010-04-01/Accounts/{ADMIN_SID}/Usage/Records/"
            if path.startswith(usage):
                period = path.removeprefix(usage).removesuffix(".json")
                records = [
                    {
                        "account_sid": ADMIN_SID,
                        "category": category,
                        "price": price,
                        "price_unit": "usd",
                        "usage": "100",
                        "usage_unit": "minutes",
                        "count": "10",
                        "count_unit": "calls",
                        "description": category,
                        "start_date": "2026-11-01",
                        "end_date": "2026-11-28",
                    }
                    for category, price in state.spend[period].items()
                ]
                self._json(
                    200,
                    {"usage_records": records, "next_page_uri": None, "page": 0, "page_size": 50},
                )
                return
            if path != f"{base}.json":
                self._json(404, {"code": 20404, "message": "Not found", "status": 404})
                return
            page = [self._key(k) for k in state.keys.values()]
            self._json(
                200,
                {
                    "keys": page,
                    "first_page_uri": f"{base}.json?PageSize=50&Page=0",
                    "end": len(page) - 1,
                    "previous_page_uri": None,
                    "uri": f"{base}.json?PageSize=50&Page=0",
                    "page_size": 50,
                    "start": 0,
                    "next_page_uri": None,
                    "page": 0,
                },
            )

        def do_POST(self) -> None:  # the name http.server dispatches to
            state.requests.append(f"POST {self.path}")
            if not self._authorized():
                return
            form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            if self.path.endswith("/Usage/Triggers.json"):
                trigger = {key: values[0] for key, values in form.items()}
                state.triggers.append(trigger)
                self._json(
                    201,
                    {"sid": "UT" + os.urandom(16).hex(), "callback_url": trigger["CallbackUrl"]},
                )
                return
            sid = "SK" + os.urandom(16).hex()
            state.keys[sid] = {"sid": sid, "friendly_name": form.get("FriendlyName", [""])[0]}
            self._json(201, {**self._key(state.keys[sid]), "secret": "S" * 32})

        def do_DELETE(self) -> None:  # the name http.server dispatches to
            state.requests.append(f"DELETE {self.path}")
            if not self._authorized():
                return
            sid = self.path.rsplit("/", 1)[-1].removesuffix(".json")
            if state.keys.pop(sid, None) is None:
                self._json(
                    404,
                    {
                        "code": 20404,
                        "message": "The requested resource was not found",
                        "status": 404,
                    },
                )
                return
            self._json(204, None)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def keys(
    environ: dict[str, str], twilio: FakeTwilio, *arguments: str, token: str = ADMIN_TOKEN
) -> Result:
    return admin(environ, twilio, "keys", *arguments, token=token)


def admin(
    environ: dict[str, str], twilio: FakeTwilio, *arguments: str, token: str = ADMIN_TOKEN
) -> Result:
    """Run a command that talks to Twilio's REST API, pointed at the fake."""
    return CliRunner().invoke(
        main,
        list(arguments),
        env={
            **environ,
            "TWILIO_ADMIN_ACCOUNT_SID": ADMIN_SID,
            "TWILIO_ADMIN_AUTH_TOKEN": token,
            "TWILIO_API_BASE_URL": twilio.url,
        },
    )


def _with_thresholds(environ: dict[str, str], tmp_path: Path, table: str) -> dict[str, str]:
    policy = tmp_path / "usage-policy.toml"
    policy.write_text(Path(environ["BROKER_POLICY_FILE"]).read_text() + table)
    return {**environ, "BROKER_POLICY_FILE": str(policy)}


def test_pause_is_obeyed_within_a_second_and_resume_restores(
    client: FlaskClient, environ: dict[str, str], caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    bearer = caller_token()
    assert ask(client, bearer, leaks).status_code == 200
    cli(environ, "pause", "--reason", "incident 42")
    paused = wait_for_status(lambda: ask(client, bearer, leaks), 503)
    assert paused.status_code == 503
    assert paused.get_json()["code"] == "issuance_paused"
    ready = client.get("/readyz").get_json()
    assert ready["paused"]["reason"] == "incident 42"
    assert "token_broker_paused 1.0" in client.get("/metrics").get_data(as_text=True)
    cli(environ, "resume")
    assert wait_for_status(lambda: ask(client, bearer, leaks), 200).status_code == 200
    assert "token_broker_paused 0.0" in client.get("/metrics").get_data(as_text=True)


def test_revoked_identity_needs_a_new_session(
    client: FlaskClient, environ: dict[str, str], caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    old_session = caller_token()
    assert ask(client, old_session, leaks).status_code == 200
    output = cli(environ, "revoke", "--identity", "alice").output
    assert "revoked identity:alice" in output
    refused = wait_for_status(lambda: ask(client, old_session, leaks), 403)
    assert refused.get_json()["code"] == "revoked"
    assert ask(client, caller_token(sub="bob"), leaks).status_code == 200  # others unaffected
    new_session = caller_token(iat=int(time.time()) + 1)  # signed in again, after the revocation
    assert ask(client, new_session, leaks).status_code == 200
    cli(environ, "unrevoke", "--identity", "alice")
    assert wait_for_status(lambda: ask(client, old_session, leaks), 200).status_code == 200


def test_revoked_client_app(
    client: FlaskClient, environ: dict[str, str], caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    web, ios = caller_token(azp="web-app"), caller_token(sub="carol", client_id="ios-app")
    cli(environ, "revoke", "--client", "web-app")
    assert wait_for_status(lambda: ask(client, web, leaks), 403).get_json()["code"] == "revoked"
    assert ask(client, ios, leaks).status_code == 200


def test_revoke_needs_exactly_one_subject(environ: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["revoke"], env=environ)
    assert result.exit_code != 0
    result = CliRunner().invoke(main, ["revoke", "--identity", "a", "--client", "b"], env=environ)
    assert result.exit_code != 0


def test_audit_command_reads_the_durable_trail(
    client: FlaskClient, environ: dict[str, str], caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    ask(client, caller_token(), leaks)
    ask(client, caller_token(sub="bob"), leaks, {"grants": {"voice": {}}})
    cli(environ, "pause", "--reason", "drill")
    cli(environ, "resume")
    every = [json.loads(line) for line in cli(environ, "audit", "--json").output.splitlines()]
    assert [r["decision"] for r in every] == ["issued", "denied", "paused", "resumed"]
    denied = cli(environ, "audit", "--decision", "denied", "--since", "1h").output
    assert "bob" in denied
    assert "alice" not in denied
    assert cli(environ, "audit", "--identity", "alice").output.count("issued") == 1
    bad = CliRunner().invoke(main, ["audit", "--since", "yesterday"], env=environ)
    assert bad.exit_code != 0


def test_usage_under_thresholds_exits_zero(
    environ: dict[str, str], twilio: FakeTwilio, tmp_path: Path
) -> None:
    calm = _with_thresholds(
        environ, tmp_path, "\n[usage]\ntoday = { calls = 100.0 }\nthis_month = { calls = 1000 }\n"
    )
    result = admin(calm, twilio, "usage")
    assert result.exit_code == 0, result.output
    assert "today      calls" in result.output
    assert "60.00 usd" in result.output
    assert f"GET /2010-04-01/Accounts/{ADMIN_SID}/Usage/Records/Today.json" in twilio.requests
    assert f"GET /2010-04-01/Accounts/{ADMIN_SID}/Usage/Records/ThisMonth.json" in twilio.requests


def test_usage_over_a_threshold_exits_non_zero(
    environ: dict[str, str], twilio: FakeTwilio, tmp_path: Path
) -> None:
    tight = _with_thresholds(environ, tmp_path, "\n[usage]\nthis_month = { calls = 300.0 }\n")
    result = admin(tight, twilio, "usage")
    assert result.exit_code == 1
    assert "OVER 300" in result.output
    assert "this_month calls" in result.output


def test_usage_trigger_calls_back_the_usage_alert_endpoint(
    environ: dict[str, str], twilio: FakeTwilio
) -> None:
    public = {**environ, "BROKER_PUBLIC_URL": "https://broker.example.test"}
    result = admin(
        public, twilio, "usage-trigger", "create", "--category", "calls", "--value", "100"
    )
    assert result.exit_code == 0, result.output
    [trigger] = twilio.triggers
    assert trigger["CallbackUrl"] == "https://broker.example.test/v1/twilio/usage-alert"
    assert trigger["UsageCategory"] == "calls"
    assert trigger["TriggerValue"] == "100"
    assert trigger["CallbackMethod"] == "POST"
    missing = admin(
        environ, twilio, "usage-trigger", "create", "--category", "calls", "--value", "100"
    )
    assert missing.exit_code == 2
    assert "BROKER_PUBLIC_URL" in missing.output
