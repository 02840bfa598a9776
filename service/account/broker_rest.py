"""Twilio's REST API for the serving broker itself: TaskRouter Workers (who is this
caller's Worker?) and Video rooms (create one with the policy's limits), called with the
broker's own signing key (a Standard key may read TaskRouter and create rooms).

One bounded client per process (``BoundedTwilio``): connections reused, at most
``MAX_CONCURRENT`` requests in flight, every request within the token request's overall
deadline. Twilio's 429 becomes 503 ``unavailable`` with Twilio's ``Retry-After`` (never a
retry: a request storm is what a 429 asks us to stop); a 5xx, a timeout or a refused
connection is 503 too. twilio's REST client is imported only when the policy needs it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from service.account.twilio_rest import rebased, retry_after_seconds
from service.base.errors import Unavailable
from service.tokens.minting import SigningKey
from service.tokens.provision import Provision, Room

T = TypeVar("T")
MAX_CONCURRENT = 8
#: What a 429 without a usable Retry-After asks of our callers, and the most we pass on.
DEFAULT_RETRY_AFTER = 5
MAX_RETRY_AFTER = 60
ROOM_EXISTS = 53113
log = logging.getLogger("token_broker")


class TwilioRefused(Unavailable):
    """Twilio answered 4xx: ``status`` and Twilio's ``twilio_code`` (53113, 20404, ...)."""

    def __init__(self, status: int, twilio_code: int | None, message: str) -> None:
        super().__init__(f"Twilio: HTTP {status} ({twilio_code}): {message}", dependency="twilio")
        self.http_status = status
        self.twilio_code = twilio_code


class BoundedTwilio:
    """The process's one REST client for the broker's own calls (see the module's note)."""

    def __init__(
        self,
        key: Callable[[], SigningKey],
        api_base_url: str | None,
        *,
        max_concurrent: int = MAX_CONCURRENT,
    ) -> None:
        self._key = key
        self._api_base_url = api_base_url
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._deadlines = threading.local()

    def __repr__(self) -> str:
        return "BoundedTwilio()"

    def call(self, action: Callable[[Any], T], deadline: float) -> T:
        """``action(client)`` within ``deadline`` (``time.monotonic()``); 503 if not."""
        from requests import RequestException
        from twilio.base.exceptions import TwilioException, TwilioRestException

        if not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise Unavailable("too many requests to Twilio at once", dependency="twilio")
        self._deadlines.at = deadline
        try:
            return action(self._client())
        except TwilioRestException as error:
            message = " ".join(str(error.msg or "").split())[:200]
            raise TwilioRefused(int(error.status), error.code, message) from None
        except TwilioException:  # a list page refused: its status is in the message only
            raise Unavailable("Twilio refused a list request", dependency="twilio") from None
        except RequestException as error:
            raise Unavailable(
                f"Twilio cannot be reached ({type(error).__name__})", dependency="twilio"
            ) from None
        finally:
            self._slots.release()

    def _client(self) -> Any:
        key = self._key()
        with self._lock:
            client = self._clients.get(key.api_key_sid)
            if client is None:  # a rotated key gets a client of its own
                self._clients = {key.api_key_sid: self._new_client(key)}
                client = self._clients[key.api_key_sid]
        return client

    def _new_client(self, key: SigningKey) -> Any:
        from twilio.http.http_client import TwilioHttpClient  # heavy: only when needed
        from twilio.rest import Client

        base_url, deadlines = self._api_base_url, self._deadlines

        class Bounded(TwilioHttpClient):  # type: ignore[misc]  # twilio ships no type hints
            """Sends to ``base_url`` (Twilio's paths kept) within the call's deadline."""

            def request(self, method: str, url: str, *arguments: Any, **options: Any) -> Any:
                url = rebased(url, base_url)
                remaining = getattr(deadlines, "at", 0.0) - time.monotonic()
                if remaining <= 0:
                    raise Unavailable("Twilio did not answer in time", dependency="twilio")
                options["timeout"] = remaining
                response = super().request(method, url, *arguments, **options)
                _refuse_throttling_and_failures(response)
                return response

        return Client(
            key.api_key_sid,
            key.secret,
            account_sid=key.account_sid,
            http_client=Bounded(timeout=1.0),
        )


def _refuse_throttling_and_failures(response: Any) -> None:
    """A 429 or 5xx from Twilio is 503 for our caller; a 429 with Twilio's Retry-After."""
    status = int(response.status_code)
    if status == 429:
        said = retry_after_seconds(response)
        wait = DEFAULT_RETRY_AFTER if said is None else said
        raise Unavailable(
            "Twilio answered 429 (too many requests)",
            dependency="twilio",
            headers={"Retry-After": str(min(max(wait, 1), MAX_RETRY_AFTER))},
        )
    if status >= 500:
        raise Unavailable(f"Twilio answered {status}", dependency="twilio")


class TwilioWorkers:
    """TaskRouter: the Worker whose friendly name is the caller's identity."""

    def __init__(self, rest: BoundedTwilio) -> None:
        self._rest = rest

    def __repr__(self) -> str:
        return "TwilioWorkers()"

    def find_worker(self, workspace_sid: str, friendly_name: str, deadline: float) -> str | None:
        found = self._rest.call(
            lambda client: client.taskrouter.v1.workspaces(workspace_sid).workers.list(
                friendly_name=friendly_name, limit=2, page_size=2
            ),
            deadline,
        )
        matching = [worker.sid for worker in found if worker.friendly_name == friendly_name]
        if len(matching) > 1:
            log.warning("two TaskRouter Workers share a friendly name: neither is given")
        return matching[0] if len(matching) == 1 else None


class TwilioRooms:
    """Video: group rooms created with the policy's limits, and found by unique name."""

    def __init__(self, rest: BoundedTwilio) -> None:
        self._rest = rest

    def __repr__(self) -> str:
        return "TwilioRooms()"

    def create_room(self, name: str, provision: Provision, deadline: float) -> Room | None:
        try:
            created = self._rest.call(
                lambda client: client.video.v1.rooms.create(
                    unique_name=name,
                    type="group",
                    max_participants=provision.max_participants,
                    max_participant_duration=provision.max_participant_duration,
                    empty_room_timeout=provision.empty_room_timeout,
                    unused_room_timeout=provision.unused_room_timeout,
                    record_participants_on_connect=provision.record,
                ),
                deadline,
            )
        except TwilioRefused as refused:
            if refused.twilio_code == ROOM_EXISTS:
                return None  # made by someone else meanwhile: found, then compared
            raise
        return _room(created)

    def find_room(self, name: str, deadline: float) -> Room | None:
        try:
            found = self._rest.call(lambda client: client.video.v1.rooms(name).fetch(), deadline)
        except TwilioRefused as refused:
            if refused.http_status == 404:
                return None
            raise
        return _room(found) if found.status == "in-progress" else None


def _room(room: Any) -> Room:
    """A room as Twilio says it is, its settings in ``Provision.settings``' form."""
    if room.type != "group":
        return Room(room.sid, f"{room.type}/")
    settings = Provision(
        int(room.max_participants),
        int(room.max_participant_duration),
        int(room.empty_room_timeout),
        int(room.unused_room_timeout),
        bool(room.record_participants_on_connect),
    ).settings
    return Room(room.sid, settings)
