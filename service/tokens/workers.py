"""Which Worker? The ``task_router`` grant gives the policy's workspace and the caller's
own TaskRouter Worker, never one the request names (it cannot: no field says so).

A rule says ``task_router = { workspace = "WS...", worker = "claim:NAME" }`` (the
verified claim ``NAME`` holds the Worker SID) or ``worker = "friendly_name"`` (the Worker
whose friendly name is the caller's verified identity, looked up through TaskRouter's
REST API). Lookups are cached per process: a Worker found for ``FOUND_SECONDS``, a miss
for ``MISSING_SECONDS``, at most ``MAX_CACHED`` identities; concurrent requests of one
identity wait for one lookup, so Twilio sees at most one per identity per period.
"""

from __future__ import annotations

import re
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from service.base.caches import ExpiringCache
from service.base.clock import Clock
from service.base.errors import Unavailable, WorkerNotFound
from service.base.tables import TableReader
from service.callers.claims import CLAIM_NAME, claim_value

WORKSPACE_SID = re.compile(r"WS[0-9a-f]{32}")
WORKER_SID = re.compile(r"WK[0-9a-f]{32}")
FOUND_SECONDS = 300
MISSING_SECONDS = 30
MAX_CACHED = 10_000
#: Lookups of different identities run side by side; those of one identity, one at a time.
_STRIPES = 256


@dataclass(frozen=True)
class TaskRouterRule:
    """A rule's ``task_router``: the workspace, and where the caller's Worker comes from."""

    workspace_sid: str
    #: the claim that holds the Worker SID; None: the Worker named as the caller's identity
    worker_claim: str | None

    @property
    def by_friendly_name(self) -> bool:
        return self.worker_claim is None


def parse_task_router(
    reader: TableReader, table: Mapping[str, object], where: str
) -> TaskRouterRule | None:
    if "task_router" not in table:
        return None
    found = reader.table(table["task_router"], f"{where}.task_router")
    reader.known_keys(found, {"workspace", "worker"}, f"{where}.task_router")
    workspace, worker = found.get("workspace"), found.get("worker")
    if not isinstance(workspace, str) or not WORKSPACE_SID.fullmatch(workspace):
        reader.problem(f"{where}.task_router.workspace must be a Workspace SID (WS...)")
        workspace = ""
    if worker == "friendly_name":
        return TaskRouterRule(workspace, None)
    if isinstance(worker, str) and worker.startswith("claim:"):
        claim = worker.removeprefix("claim:")
        if CLAIM_NAME.fullmatch(claim):
            return TaskRouterRule(workspace, claim)
    reader.problem(f'{where}.task_router.worker must be "claim:NAME" or "friendly_name"')
    return TaskRouterRule(workspace, None)


class WorkerDirectory(Protocol):
    def find_worker(self, workspace_sid: str, friendly_name: str, deadline: float) -> str | None:
        """The SID of the Worker of that friendly name, or None; ``Unavailable`` when
        Twilio cannot say by ``deadline`` (``time.monotonic()``)."""
        ...


class WorkerResolver:
    """The caller's Worker SID: from its claim, or looked up (and cached) by identity."""

    def __init__(
        self,
        directory: WorkerDirectory | None,
        clock: Clock,
        *,
        found_seconds: int = FOUND_SECONDS,
        missing_seconds: int = MISSING_SECONDS,
        max_cached: int = MAX_CACHED,
    ) -> None:
        self._directory = directory
        self._clock = clock
        self._found = timedelta(seconds=found_seconds)
        self._missing = timedelta(seconds=missing_seconds)
        self._cache: ExpiringCache[tuple[str, str], str | None] = ExpiringCache(max_cached)
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]

    def __repr__(self) -> str:
        return f"WorkerResolver({self._cache!r})"

    def worker_sid(
        self,
        rule: TaskRouterRule,
        identity: str,
        claims: Mapping[str, object],
        deadline: float,
        before_call: Callable[[], None] = lambda: None,
    ) -> str:
        """The Worker this caller acts as; ``WorkerNotFound`` when it has none.
        ``before_call`` runs just before Twilio is asked (it may refuse: a budget)."""
        if rule.worker_claim is not None:
            value = claim_value(claims, rule.worker_claim)
            if isinstance(value, str) and WORKER_SID.fullmatch(value):
                return value
            raise WorkerNotFound(f"claim {rule.worker_claim} holds no Worker SID")
        key = (rule.workspace_sid, identity)
        found = self._cached(key)
        if found is None:
            found = self._looked_up(key, deadline, before_call)
        sid = found[0]
        if sid is None:
            raise WorkerNotFound("no Worker has the caller's identity as its friendly name")
        return sid

    def _looked_up(
        self, key: tuple[str, str], deadline: float, before_call: Callable[[], None]
    ) -> tuple[str | None]:
        if self._directory is None:  # the configuration provides one; never reached
            raise Unavailable("no TaskRouter client", dependency="twilio")
        stripe = self._stripes[zlib.crc32("\0".join(key).encode()) % _STRIPES]
        if not stripe.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise Unavailable("a lookup of this Worker took too long", dependency="twilio")
        try:
            found = self._cached(key)  # another request may have looked it up meanwhile
            if found is not None:
                return found
            before_call()
            sid = self._directory.find_worker(key[0], key[1], deadline)
            self._keep(key, sid)
            return (sid,)
        finally:
            stripe.release()

    def _cached(self, key: tuple[str, str]) -> tuple[str | None] | None:
        return self._cache.get(key, self._clock())

    def _keep(self, key: tuple[str, str], sid: str | None) -> None:
        until = self._clock() + (self._found if sid is not None else self._missing)
        self._cache.put(key, sid, until)
