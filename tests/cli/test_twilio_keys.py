"""token-broker keys: list, create and delete API keys through Twilio's REST API (a local fake)."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from click.testing import CliRunner, Result

from service.cli import main
from tests import support

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


def _rotated(environ: dict[str, str], tmp_path: Path, age_seconds: float) -> dict[str, str]:
    sid_file, secret_file = tmp_path / "sid", tmp_path / "secret"
    sid_file.write_text("SK" + "2" * 32)
    secret_file.write_text("n" * 40)
    switched = time.time() - age_seconds
    for path in (sid_file, secret_file):
        os.utime(path, (switched, switched))
    rotated = {
        k: v for k, v in environ.items() if k not in ("TWILIO_API_KEY_SID", "TWILIO_API_KEY_SECRET")
    }
    return {
        **rotated,
        "TWILIO_API_KEY_SID_FILE": str(sid_file),
        "TWILIO_API_KEY_SECRET_FILE": str(secret_file),
    }


def test_list_marks_the_key_that_signs(environ: dict[str, str], twilio: FakeTwilio) -> None:
    result = keys(environ, twilio, "list")
    assert result.exit_code == 0, result.output
    assert (
        f"{support.API_KEY_SID}  2026-11-28T18:00:00+00:00  broker 1  (signs tokens here)"
        in result.output
    )
    assert twilio.requests == [f"GET /2010-04-01/Accounts/{ADMIN_SID}/Keys.json"]


def test_create_prints_the_secret_once(environ: dict[str, str], twilio: FakeTwilio) -> None:
    result = keys(environ, twilio, "create", "broker 2")
    assert result.exit_code == 0, result.output
    sid, secret = result.stdout.split()[:2]
    assert sid.startswith("SK")
    assert secret == "S" * 32
    assert twilio.keys[sid]["friendly_name"] == "broker 2"


def test_delete_refuses_the_active_key(environ: dict[str, str], twilio: FakeTwilio) -> None:
    result = keys(environ, twilio, "delete", support.API_KEY_SID)
    assert result.exit_code == 2
    assert "signs with" in result.output
    assert support.API_KEY_SID in twilio.keys
    assert not any(r.startswith("DELETE") for r in twilio.requests)


def test_delete_waits_while_old_tokens_may_be_alive(
    environ: dict[str, str], twilio: FakeTwilio, tmp_path: Path
) -> None:
    fresh = _rotated(environ, tmp_path, age_seconds=60)  # the policy's max TTL is 3600 s
    refused = keys(fresh, twilio, "delete", support.API_KEY_SID)
    assert refused.exit_code == 1
    assert "may be alive until" in refused.output
    assert support.API_KEY_SID in twilio.keys
    forced = keys(fresh, twilio, "delete", support.API_KEY_SID, "--force")
    assert forced.exit_code == 0, forced.output
    assert support.API_KEY_SID not in twilio.keys


def test_delete_after_the_old_tokens_expired(
    environ: dict[str, str], twilio: FakeTwilio, tmp_path: Path
) -> None:
    settled = _rotated(environ, tmp_path, age_seconds=2 * 3600)
    result = keys(settled, twilio, "delete", support.API_KEY_SID)
    assert result.exit_code == 0, result.output
    assert (
        twilio.requests[-1]
        == f"DELETE /2010-04-01/Accounts/{ADMIN_SID}/Keys/{support.API_KEY_SID}.json"
    )


def test_twilio_errors_are_reported_not_raised(environ: dict[str, str], twilio: FakeTwilio) -> None:
    wrong = keys(environ, twilio, "list", token="0" * 32)
    assert wrong.exit_code == 3
    assert "Twilio's REST API" in wrong.output
    assert "0" * 32 not in wrong.output
    missing = keys(environ, twilio, "delete", "SK" + "9" * 32)
    assert missing.exit_code == 3
