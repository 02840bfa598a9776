"""Rooms with limits: a rule's ``video.provision`` makes sure the room exists, in
progress with the policy's settings, before a token for it is issued.

``video = { rooms = [...], provision = { max_participants = 4, max_participant_duration =
3600, empty_room_timeout = 5, unused_room_timeout = 5, record = false } }`` (Twilio's
limits: at most 50 participants, 600 to 86400 s per participant, timeouts of 1 to 60
minutes). The first request for a room takes a lease in the state store and creates it
(type ``group``); Twilio's "room exists" (53113) means the room was there already: it is
fetched and compared. Every instance then finds it in the state store for
``REMEMBER_SECONDS`` (and in its own memory for ``LOCAL_SECONDS``): a token for a live
room costs no REST call. Concurrent first requests wait for the one that holds the
lease, so the room is created once. A room in progress with other settings: 409
``room_conflict``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from service.base.caches import ExpiringCache
from service.base.clock import Clock
from service.base.errors import RoomConflict, Unavailable
from service.base.tables import TableReader
from service.state import StateStore

#: Twilio's limits on a group room's settings, by policy key.
LIMITS: Mapping[str, tuple[int, int]] = {
    "max_participants": (1, 50),
    "max_participant_duration": (600, 86_400),
    "empty_room_timeout": (1, 60),
    "unused_room_timeout": (1, 60),
}
#: How long the fleet trusts that a room it made or found is still in progress.
REMEMBER_SECONDS = 30
LOCAL_SECONDS = 5
#: The creator's lease: longer than one request's deadline.
LEASE_SECONDS = 10
WAIT_SECONDS = 0.05
MAX_LOCAL = 10_000


@dataclass(frozen=True)
class Provision:
    """What a provisioned room is created with (and must be in progress with)."""

    max_participants: int
    max_participant_duration: int
    empty_room_timeout: int
    unused_room_timeout: int
    record: bool = False

    @property
    def settings(self) -> str:
        """These settings in one comparable string (a group room's)."""
        return (
            f"group/{self.max_participants}/{self.max_participant_duration}/"
            f"{self.empty_room_timeout}/{self.unused_room_timeout}/{str(self.record).lower()}"
        )


def parse_provision(
    reader: TableReader, video: Mapping[str, object], where: str
) -> Provision | None:
    """``video.provision``, within Twilio's limits; every limit is required."""
    if "provision" not in video:
        return None
    where = f"{where}.video.provision"
    table = reader.table(video["provision"], where)
    reader.known_keys(table, {*LIMITS, "record"}, where)
    values: dict[str, int] = {}
    for key, (low, high) in LIMITS.items():
        value = table.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            reader.problem(f"{where}.{key} must be a whole number from {low} to {high}")
            value = low
        values[key] = value
    record = reader.flag(table.get("record", False), f"{where}.record")
    return Provision(**values, record=record)


@dataclass(frozen=True)
class Room:
    sid: str
    #: the settings it is in progress with (``Provision.settings``' form)
    settings: str


class RoomDirectory(Protocol):
    def create_room(self, name: str, provision: Provision, deadline: float) -> Room | None:
        """Create the in-progress group room ``name``; None when one exists (53113).
        ``Unavailable`` when Twilio cannot say by ``deadline`` (``time.monotonic()``)."""
        ...

    def find_room(self, name: str, deadline: float) -> Room | None:
        """The in-progress room ``name``, or None."""
        ...


class RoomKeeper:
    """Makes sure a provisioned room is in progress with its settings; its SID."""

    def __init__(self, directory: RoomDirectory, store: StateStore, clock: Clock) -> None:
        self._directory = directory
        self._store = store
        self._clock = clock
        self._local: ExpiringCache[str, Room] = ExpiringCache(MAX_LOCAL)

    def __repr__(self) -> str:
        return f"RoomKeeper({self._local!r})"

    def ensure(
        self,
        name: str,
        provision: Provision,
        deadline: float,
        before_call: Callable[[], None] = lambda: None,
    ) -> str:
        """The SID of room ``name`` in progress with ``provision``; ``RoomConflict`` when it
        is in progress with other settings, ``Unavailable`` when Twilio cannot say.
        ``before_call`` runs just before Twilio is asked (it may refuse: a budget)."""
        room = self._known(name) or self._made_or_found(name, provision, deadline, before_call)
        if room.settings != provision.settings:
            raise RoomConflict(f"room in progress as {room.settings}, not {provision.settings}")
        return room.sid

    def _known(self, name: str) -> Room | None:
        now = self._clock()
        known_here = self._local.get(name, now)
        if known_here is not None:
            return known_here[0]
        remembered = self._store.recall(f"room:{name}", now)
        if remembered is None:
            return None
        sid, _, settings = remembered.partition(" ")
        room = Room(sid, settings)
        self._local.put(name, room, now + timedelta(seconds=LOCAL_SECONDS))
        return room

    def _made_or_found(
        self, name: str, provision: Provision, deadline: float, before_call: Callable[[], None]
    ) -> Room:
        now = self._clock()
        if not self._store.first_time([f"room-lease:{name}"], now, LEASE_SECONDS):
            return self._awaited(name, deadline)  # another request makes it
        before_call()
        room = self._directory.create_room(name, provision, deadline)
        if room is None:  # 53113: it exists (made elsewhere): as it is
            room = self._directory.find_room(name, deadline)
        if room is None:
            raise Unavailable("the room neither could be created nor found", dependency="twilio")
        self._store.remember(f"room:{name}", f"{room.sid} {room.settings}", now, REMEMBER_SECONDS)
        self._local.put(name, room, now + timedelta(seconds=LOCAL_SECONDS))
        return room

    def _awaited(self, name: str, deadline: float) -> Room:
        while time.monotonic() + WAIT_SECONDS < deadline:
            time.sleep(WAIT_SECONDS)  # the lease holder's REST call, under way
            room = self._known(name)
            if room is not None:
                return room
        raise Unavailable("the room is still being created elsewhere", dependency="twilio")
