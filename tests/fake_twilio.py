"""A local emulator of Twilio's REST API: 2010-04-01 Keys, Usage Records and Usage
Triggers, Voice Dialing Permissions (v1), Monitor Events (v1), TaskRouter Workers (v1)
and Video Rooms (v1: create, fetch by SID or unique name; 53113 for a room that exists).

It speaks the wire format twilio-python expects (twilio-oai's shapes: list keys, paging
by ``PageSize`` with ``meta.next_page_url`` or ``next_page_uri``, error bodies with
Twilio's codes), and answers as told with faults: a 401, a 429 with ``Retry-After``, a
5xx, a slow answer. The broker's REST client is tested through the real twilio library:
the one thing here that cannot run for real.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from werkzeug.test import TestResponse

from tests import support

ADMIN_SID = support.ACCOUNT_SID
ADMIN_TOKEN = "f" * 32
#: A restricted API key that may only read Monitor events.
MONITOR_KEY_SID = "SK" + "d" * 32
MONITOR_KEY_SECRET = "m" * 32


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


#: An answer given instead of a request's own: status, body, headers, seconds of delay.
Fault = tuple[int, dict[str, Any] | None, dict[str, str], float]
NOT_FOUND = {"code": 20404, "message": "The requested resource was not found", "status": 404}
#: Twilio failing, as the broker's own REST calls meet it, and the Retry-After its 503 says.
FAILURES: dict[str, tuple[Fault, str]] = {
    "throttled": (
        (
            429,
            {"code": 20429, "message": "Too Many Requests", "status": 429},
            {"Retry-After": "17"},
            0.0,
        ),
        "17",
    ),
    "failing": (
        (503, {"code": 20500, "message": "Service Unavailable", "status": 503}, {}, 0.0),
        "5",
    ),
    "refusing": ((401, {"code": 20003, "message": "Authenticate", "status": 401}, {}, 0.0), "5"),
    # slow: the token request's deadline (3 s) ends it
    "slow": ((200, {}, {}, 6.0), "5"),
}


def failed_within_deadline(
    twilio: FakeTwilio, failure: str, ask: Callable[[], TestResponse]
) -> TestResponse:
    """Twilio fails as ``failure`` says while ``ask()`` runs: the answer is 503
    ``unavailable`` with the Retry-After that failure calls for, within the request's
    3-second deadline (and a margin), and Twilio was asked once."""
    fault, retry_after = FAILURES[failure]
    twilio.faults.append(fault)
    started = time.monotonic()
    answer = ask()
    assert time.monotonic() - started < 5
    support.assert_problem(answer, 503, "unavailable")
    assert answer.headers["Retry-After"] == retry_after
    assert len(twilio.requests) == 1  # never retried: no storm
    return answer


@dataclass
class FakeTwilio:
    """The 2010-04-01 Keys endpoints of one account, in memory."""

    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    url: str = ""
    requests: list[str] = field(default_factory=list)
    triggers: list[dict[str, str]] = field(default_factory=list)
    #: Voice dialing permissions, one dict a country (the wire format's fields)
    countries: list[dict[str, Any]] = field(default_factory=list)
    #: Monitor events, the wire format's fields (``event_date`` as ISO 8601)
    events: list[dict[str, Any]] = field(default_factory=list)
    #: answers given instead of the next requests'
    faults: list[Fault] = field(default_factory=list)
    #: TaskRouter Workers of every workspace (``sid``, ``friendly_name``, ``workspace_sid``)
    workers: list[dict[str, Any]] = field(default_factory=list)
    #: Video rooms by unique name, the wire format's fields
    rooms: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: how long a Worker lookup or a room's creation takes (seconds): room for
    #: concurrent requests to meet
    work_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, request: str) -> int:
        """How many requests started with ``request`` (``"POST /v1/Rooms"``)."""
        return sum(1 for line in self.requests if line.startswith(request))

    spend: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            "Today": {"calls": "60.00", "sms": "1.00"},
            "ThisMonth": {"calls": "400.00", "sms": "12.00"},
        }
    )


@contextmanager
def serve_fake_twilio() -> Iterator[FakeTwilio]:
    """Twilio's REST API for one account on loopback: its wire format, in memory."""
    state = FakeTwilio()
    state.keys[support.API_KEY_SID] = {
        "sid": support.API_KEY_SID,
        "friendly_name": "broker 1",
        "created": datetime.now(UTC),
    }
    base = f"/2010-04-01/Accounts/{ADMIN_SID}/Keys"

    class Handler(BaseHTTPRequestHandler):
        def _authorized(self) -> bool:
            presented = self.headers.get("Authorization")
            if presented == _basic(ADMIN_SID, ADMIN_TOKEN):
                return True
            if presented == _basic(support.API_KEY_SID, support.API_KEY_SECRET):
                path = self.path.split("?")[0]
                if path.startswith(("/v1/Workspaces/", "/v1/Rooms")):
                    return True  # the broker's own Standard key: TaskRouter and Video
                self._json(403, {"code": 20403, "message": "Forbidden", "status": 403})
                return False
            if presented == _basic(MONITOR_KEY_SID, MONITOR_KEY_SECRET):
                if self.path.split("?")[0] == "/v1/Events" and self.command == "GET":
                    return True  # a restricted key: it may read events, nothing else
                self._json(403, {"code": 20403, "message": "Forbidden", "status": 403})
                return False
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
            created = format_datetime(key.get("created") or datetime.now(UTC), usegmt=True)
            fields = {name: value for name, value in key.items() if name != "created"}
            return {**fields, "date_created": created, "date_updated": created}

        def _faulted(self) -> bool:
            """Answer as a fault told to, instead of the request's own answer."""
            if not state.faults:
                return False
            status, body, headers, delay = state.faults.pop(0)
            # Not a wait in a test: the emulated server is slow on purpose, so that the
            # client's request deadline is what ends the request.
            time.sleep(delay)
            payload = json.dumps(body).encode() if body is not None else b""
            # A slow answer's client may have given up meanwhile: nobody to answer.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            return True

        def _v1_page(self, key: str, items: list[dict[str, Any]]) -> None:
            """A v1 list page: ``PageSize`` items at ``Page``, ``meta.next_page_url``."""
            parts = urlsplit(self.path)
            query = {name: values[0] for name, values in parse_qs(parts.query).items()}
            size, page = int(query.get("PageSize", "50")), int(query.get("Page", "0"))
            chunk = items[page * size : (page + 1) * size]
            more = (page + 1) * size < len(items)
            link = f"{state.url}{parts.path}?PageSize={size}&Page={{}}&PageToken=PT{{}}"
            self._json(
                200,
                {
                    key: chunk,
                    "meta": {
                        "page": page,
                        "page_size": size,
                        "first_page_url": link.format(0, 0),
                        "previous_page_url": link.format(page - 1, page - 1) if page else None,
                        "url": link.format(page, page),
                        "next_page_url": link.format(page + 1, page + 1) if more else None,
                        "key": key,
                    },
                },
            )

        def _events(self) -> list[dict[str, Any]]:
            query = parse_qs(urlsplit(self.path).query)
            since = datetime.fromisoformat(query["StartDate"][0]) if "StartDate" in query else None
            return [
                {"account_sid": ADMIN_SID, "url": f"{state.url}/v1/Events/{event['sid']}", **event}
                for event in state.events
                if since is None or datetime.fromisoformat(event["event_date"]) >= since
            ]

        def _workers(self, workspace: str) -> list[dict[str, Any]]:
            query = parse_qs(urlsplit(self.path).query)
            name = query.get("FriendlyName", [None])[0]
            return [
                {"account_sid": ADMIN_SID, "available": True, "attributes": "{}", **worker}
                for worker in state.workers
                if worker["workspace_sid"] == workspace
                and (name is None or worker["friendly_name"] == name)
            ]

        def _room_created(self, form: dict[str, list[str]]) -> None:
            value = {key: values[0] for key, values in form.items()}
            name = value["UniqueName"]
            # Not a wait in a test: creating a room takes Twilio a while, and concurrent
            # requests must meet in that while.
            time.sleep(state.work_seconds)
            with state.lock:
                if name in state.rooms and state.rooms[name]["status"] == "in-progress":
                    self._json(400, {"code": 53113, "message": "Room exists", "status": 400})
                    return
                sid = "RM" + os.urandom(16).hex()
                state.rooms[name] = {
                    "sid": sid,
                    "account_sid": ADMIN_SID,
                    "unique_name": name,
                    "status": "in-progress",
                    "type": value.get("Type", "group"),
                    "max_participants": int(value.get("MaxParticipants", "50")),
                    "max_participant_duration": int(value.get("MaxParticipantDuration", "14400")),
                    "empty_room_timeout": int(value.get("EmptyRoomTimeout", "5")),
                    "unused_room_timeout": int(value.get("UnusedRoomTimeout", "5")),
                    "record_participants_on_connect": value.get("RecordParticipantsOnConnect")
                    == "true",
                    "url": f"{state.url}/v1/Rooms/{sid}",
                }
            self._json(201, state.rooms[name])

        def _room(self, key: str) -> None:
            found = [
                room
                for room in state.rooms.values()
                if room["status"] == "in-progress" and key in (room["sid"], room["unique_name"])
            ]
            if not found:
                self._json(404, NOT_FOUND)
                return
            self._json(200, found[0])

        def do_GET(self) -> None:  # the name http.server dispatches to
            state.requests.append(f"GET {self.path}")
            if self._faulted() or not self._authorized():
                return
            path = self.path.split("?")[0]
            if path.startswith("/v1/Workspaces/") and path.endswith("/Workers"):
                # Not a wait in a test either: the emulated lookup is slow on purpose, so
                # that concurrent token requests of one identity meet while it runs.
                time.sleep(state.work_seconds)
                self._v1_page("workers", self._workers(path.split("/")[3]))
                return
            if path.startswith("/v1/Rooms/"):
                self._room(path.removeprefix("/v1/Rooms/"))
                return
            if path == "/v1/DialingPermissions/Countries":
                self._v1_page("content", state.countries)
                return
            if path == "/v1/Events":
                self._v1_page("events", self._events())
                return
            if path == f"/2010-04-01/Accounts/{ADMIN_SID}/Usage/Triggers.json":
                self._json(
                    200,
                    {
                        "usage_triggers": state.triggers,
                        "next_page_uri": None,
                        "page": 0,
                        "page_size": 50,
                        "start": 0,
                        "end": max(0, len(state.triggers) - 1),
                    },
                )
                return
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
            if self._faulted() or not self._authorized():
                return
            form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            if self.path == "/v1/Rooms":
                self._room_created(form)
                return
            if self.path.endswith("/Usage/Triggers.json"):
                trigger = {key: values[0] for key, values in form.items()}
                trigger["callback_url"] = trigger.get("CallbackUrl", "")
                trigger["usage_category"] = trigger.get("UsageCategory", "")
                state.triggers.append(trigger)
                self._json(
                    201,
                    {"sid": "UT" + os.urandom(16).hex(), "callback_url": trigger["CallbackUrl"]},
                )
                return
            sid = "SK" + os.urandom(16).hex()
            state.keys[sid] = {
                "sid": sid,
                "friendly_name": form.get("FriendlyName", [""])[0],
                "created": datetime.now(UTC),
            }
            self._json(201, {**self._key(state.keys[sid]), "secret": "S" * 32})

        def do_DELETE(self) -> None:  # the name http.server dispatches to
            state.requests.append(f"DELETE {self.path}")
            if self._faulted() or not self._authorized():
                return
            sid = self.path.rsplit("/", 1)[-1].removesuffix(".json")
            if state.keys.pop(sid, None) is None:
                self._json(404, NOT_FOUND)
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
