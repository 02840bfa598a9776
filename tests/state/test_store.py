"""Every state store: one admission tests pause, revocations and budgets, all or nothing."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from service.base.errors import ConfigurationError
from service.state import (
    Admission,
    Admitted,
    Refused,
    Retention,
    Spend,
    StateStore,
    Window,
    open_store,
)
from service.state.sqlite import sqlite_path
from tests import support

NOW = support.NOW
MINUTE = Window(amount=3, seconds=60)


def spend(owner: str, budget: str = "per_identity", window: Window = MINUTE) -> Spend:
    return Spend(budget, owner, (window,))


def test_pause_and_resume(store: StateStore) -> None:
    assert store.pauses() == {}
    store.pause("incident 42", NOW)
    assert store.admit(Admission(at=NOW, pauses=("all",))) == Refused(
        "paused", "incident 42", scope="all"
    )
    assert store.admit(Admission(at=NOW, pauses=("voice_outgoing",))) == Admitted()
    store.pause("spend", NOW, scope="voice_outgoing")
    pauses = store.pauses()
    assert pauses["all"].reason == "incident 42"
    assert pauses["all"].since == NOW
    assert pauses["voice_outgoing"].reason == "spend"
    store.resume()
    assert store.pauses() == {}
    assert store.admit(Admission(at=NOW, pauses=("all", "voice_outgoing"))) == Admitted()


def test_a_revocation_refuses_sign_ins_at_or_before_it(store: StateStore) -> None:
    store.revoke("identity:alice", NOW)
    revoked = Admission(at=NOW, revocations=("identity:alice",), signed_in_at=NOW.timestamp())
    assert store.admit(revoked) == Refused("revoked", "identity:alice")
    later = NOW.timestamp() + 1
    assert store.admit(Admission(at=NOW, revocations=("identity:alice",), signed_in_at=later)) == (
        Admitted()
    )
    assert store.admit(Admission(at=NOW, revocations=("identity:alice",))) == Refused(
        "revoked", "identity:alice"
    )  # no sign-in time: any revocation refuses (calls)
    assert store.admit(Admission(at=NOW, revocations=("identity:bob",))) == Admitted()
    assert store.unrevoke("identity:alice") is True
    assert store.unrevoke("identity:alice") is False
    assert store.admit(revoked) == Admitted()


def test_a_session_is_judged_by_its_first_sight(store: StateStore) -> None:
    """A session's sign-in is when the store first saw it: a revocation after that
    refuses the session whatever sign-in its later requests say; a new session is new."""
    start = NOW.timestamp()

    def asked(session: str, signed_in: float, **more: object) -> Admission:
        return Admission(
            at=NOW,
            revocations=("identity:alice",),
            signed_in_at=signed_in,
            session=session,
            **more,  # type: ignore[arg-type]  # the test names Admission's own fields
        )

    assert store.admit(asked("s1", start)) == Admitted()
    store.revoke("identity:alice", NOW + timedelta(seconds=10))
    refreshed = asked("s1", start + 60, remember_sign_in="identity:alice")
    assert store.admit(refreshed) == Refused("revoked", "identity:alice")
    assert store.admit(asked("s2", start + 60)) == Admitted()
    assert store.admit(asked("s1", start + 120)) == Refused("revoked", "identity:alice")
    assert store.unrevoke("identity:alice") is True
    assert store.admit(asked("s1", start + 120, remember_sign_in="identity:alice")) == Admitted()
    # a call then judged by the remembered sign-in: the session's first sight
    store.revoke("identity:alice", NOW + timedelta(seconds=10))
    call = Admission(at=NOW, revocations=("identity:alice",), sign_in_of="identity:alice")
    assert store.admit(call) == Refused("revoked", "identity:alice")


def test_budgets_are_all_or_nothing(store: StateStore) -> None:
    global_budget = spend("fleet", "global", Window(2, 60))
    for identity in ("a", "b"):
        assert store.admit(Admission(at=NOW, spends=(spend(identity), global_budget))) == (
            Admitted()
        )
    # The fleet's budget is spent: the victim's own budget must not move.
    for _ in range(5):
        refused = store.admit(Admission(at=NOW, spends=(spend("victim"), global_budget)))
        assert isinstance(refused, Refused)
        assert refused.detail == "global"
        assert 1 <= refused.retry_after <= 60
    later = NOW + timedelta(seconds=61)
    for _ in range(3):  # the victim still has all three of its own
        assert store.admit(Admission(at=later, spends=(spend("victim"),))) == Admitted()
    assert isinstance(store.admit(Admission(at=later, spends=(spend("victim"),))), Refused)


def test_cost_and_moving_windows(store: StateStore) -> None:
    budget = (spend("alice", window=Window(10, 60)),)
    assert store.admit(Admission(at=NOW, spends=budget, cost=5)) == Admitted()
    assert store.admit(Admission(at=NOW + timedelta(seconds=30), spends=budget, cost=5)) == (
        Admitted()
    )
    refused = store.admit(Admission(at=NOW + timedelta(seconds=40), spends=budget))
    assert isinstance(refused, Refused)
    assert refused.retry_after == 20  # the first five leave the window at 60 s
    assert store.admit(Admission(at=NOW + timedelta(seconds=60), spends=budget, cost=5)) == (
        Admitted()
    )
    assert isinstance(store.admit(Admission(at=NOW, spends=budget, cost=11)), Refused)


def test_concurrent_admissions_never_exceed_a_budget(store: StateStore) -> None:
    budget = (spend("shared", window=Window(20, 60)),)
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(
            pool.map(lambda _: store.admit(Admission(at=NOW, spends=budget)), range(60))
        )
    assert outcomes.count(Admitted()) == 20


def test_a_record_is_stored_only_with_its_admission(store: StateStore) -> None:
    budget = (spend("alice", window=Window(1, 60)),)
    assert store.admit(Admission(at=NOW, spends=budget, record='{"n": 1}')) == Admitted()
    assert isinstance(store.admit(Admission(at=NOW, spends=budget, record='{"n": 2}')), Refused)
    assert [json.loads(line)["n"] for line in store.audit_lines(None, 10)] == [1]


def test_ping(store: StateStore) -> None:
    store.ping()


def test_bad_state_urls() -> None:
    with pytest.raises(ConfigurationError):
        sqlite_path("sqlite://")
    with pytest.raises(ConfigurationError):
        open_store("postgres://db/x", retention=Retention())


def test_a_mark_is_first_seen_once_for_the_fleet(store: StateStore) -> None:
    assert store.first_seen("signing-key:SK1", NOW) == NOW
    later = NOW + timedelta(days=3)
    assert store.first_seen("signing-key:SK1", later) == NOW  # however often asked
    assert store.first_seen("signing-key:SK2", later) == later
