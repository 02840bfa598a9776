"""Budgets: what a request spends and of whose budget; moving windows never exceeded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.bookkeeping.limits import Budgets, windows_of
from service.state import Admission, Admitted, Refused, StateStore, Window
from service.state.windows import LocalWindows
from tests import support

NOW = support.NOW


def test_windows_come_from_limits_strings() -> None:
    assert windows_of("10/minute;200/day") == (Window(10, 60), Window(200, 86400))
    assert windows_of("5/second") == (Window(5, 1),)


def test_a_token_spends_its_identity_app_network_and_the_fleet() -> None:
    budgets = Budgets(
        {
            "per_identity": "3/minute",
            "per_client": "9/minute",
            "per_ip": "6/minute",
            "global": "99/minute",
        }
    )
    spends = budgets.token_spends(identity="alice", client="key:web", address="192.0.2.1")
    assert [(s.budget, s.key) for s in spends] == [
        ("per_identity", "identity:alice"),
        ("per_client", "client:key:web"),
        ("per_ip", "ip:192.0.2.1"),
        ("global", "fleet"),
    ]
    without_app = budgets.token_spends(identity="alice", client=None, address="192.0.2.1")
    assert "per_client" not in [s.budget for s in without_app]


def test_failures_and_calls_have_budgets_of_their_own() -> None:
    budgets = Budgets({"per_ip": "6/minute", "auth_failures_per_ip": "6/minute"}).with_budget(
        "calls_per_identity", "3/hour"
    )
    [failures] = budgets.failure_spends("192.0.2.1")
    [per_ip] = budgets.token_spends(identity="a", client=None, address="192.0.2.1")
    assert (failures.budget, per_ip.budget) == ("auth_failures_per_ip", "per_ip")
    # Same owner, other budget: failed guesses never spend the valid callers' per_ip.
    assert failures.key == per_ip.key
    [calls] = budgets.call_spends("alice")
    assert calls.windows == (Window(3, 3600),)
    assert Budgets({}).failure_spends("x") == ()
    assert Budgets({}).with_budget("calls_per_identity", None).call_spends("a") == ()


def test_no_budgets_means_no_limits(store: StateStore) -> None:
    spends = Budgets({}).token_spends(identity="alice", client=None, address="x")
    assert spends == ()
    assert all(store.admit(Admission(at=NOW, spends=spends)) == Admitted() for _ in range(50))


def test_a_budget_admits_exactly_n_then_says_when(store: StateStore) -> None:
    spends = Budgets({"per_identity": "3/minute;100/day"}).token_spends(
        identity="alice", client=None, address="x"
    )
    outcomes = [store.admit(Admission(at=NOW, spends=spends)) for _ in range(5)]
    assert outcomes[:3] == [Admitted()] * 3
    refused = outcomes[4]
    assert isinstance(refused, Refused)
    assert (refused.detail, refused.retry_after) == ("per_identity", 60)


@pytest.mark.parametrize("offsets", [[0.0, 0.2, 0.4, 0.99, 1.0, 1.01, 1.5, 1.99, 2.0, 2.5]])
def test_no_rolling_window_admits_more_on_any_store(
    store: StateStore, offsets: list[float]
) -> None:
    spends = Budgets({"per_identity": "3/second"}).token_spends(
        identity="alice", client=None, address="x"
    )
    admitted = [
        offset
        for offset in offsets
        if store.admit(Admission(at=NOW + timedelta(seconds=offset), spends=spends)) == Admitted()
    ]
    for start in admitted:
        assert len([t for t in admitted if start <= t < start + 1.0]) <= 3


@given(st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), max_size=300))
def test_no_rolling_window_ever_admits_more_than_the_budget(moments: list[float]) -> None:
    windows = LocalWindows()
    spends = Budgets({"per_identity": "4/second"}).token_spends(
        identity="alice", client=None, address="x"
    )
    admitted = []
    for moment in sorted(moments):
        if windows.refusal(spends, 1, moment) is None:
            windows.spend(spends, 1, moment)
            admitted.append(moment)
    for start in admitted:
        assert len([t for t in admitted if start <= t < start + 1.0]) <= 4
