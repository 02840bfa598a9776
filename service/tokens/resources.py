"""What a plan needs of Twilio before its token is minted: the caller's TaskRouter
Worker, and a provisioned room in progress. Both within one overall deadline
(``DEADLINE_SECONDS``): Twilio unreachable, slow or refusing is 503 ``unavailable``, and
no token. A plan with neither costs nothing here."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from service.base.errors import Unavailable
from service.callers import Caller
from service.tokens.policy import Plan, TaskRouterPlan
from service.tokens.provision import RoomKeeper
from service.tokens.workers import WorkerResolver

#: How long one token request may wait for Twilio, all its REST calls together.
DEADLINE_SECONDS = 3.0


class PlanResources:
    """Completes a plan with what Twilio holds (a Worker SID) or must hold (a room)."""

    def __init__(
        self,
        workers: WorkerResolver,
        rooms: RoomKeeper | None = None,
        *,
        deadline_seconds: float = DEADLINE_SECONDS,
    ) -> None:
        self._workers = workers
        self._rooms = rooms
        self._seconds = deadline_seconds

    def __repr__(self) -> str:
        return f"PlanResources({self._workers!r}, {self._rooms!r})"

    def complete(
        self, plan: Plan, caller: Caller, before_call: Callable[[], None] = lambda: None
    ) -> tuple[Plan, str | None]:
        """``plan`` with its Worker, and the SID of its provisioned room (or None).
        ``before_call`` runs before each request to Twilio (the caller's budget for them)."""
        provision = plan.video.provision if plan.video is not None else None
        if plan.task_router is None and provision is None:
            return plan, None
        deadline = time.monotonic() + self._seconds
        if plan.task_router is not None:
            sid = self._workers.worker_sid(
                plan.task_router.rule, caller.identity, caller.claims, deadline, before_call
            )
            plan = replace(plan, task_router=TaskRouterPlan(plan.task_router.rule, sid))
        if plan.video is None or provision is None:
            return plan, None
        if self._rooms is None:  # the configuration provides one; never reached
            raise Unavailable("no Video client", dependency="twilio")
        return plan, self._rooms.ensure(plan.video.room, provision, deadline, before_call)
