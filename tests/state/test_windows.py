"""In-process moving windows: all or nothing, exact, forgetting idle keys."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from service.state import Spend, Window
from service.state.windows import LocalWindows


def test_a_refusal_by_any_window_spends_nothing() -> None:
    windows = LocalWindows()
    spends = (
        Spend("per_identity", "alice", (Window(5, 60),)),
        Spend("global", "fleet", (Window(1, 60),)),
    )
    assert windows.refusal(spends, 1, 0.0) is None
    windows.spend(spends, 1, 0.0)
    assert windows.refusal(spends, 1, 1.0) == (1, 59)
    alone = (Spend("per_identity", "alice", (Window(5, 60),)),)
    for moment in range(4):  # alice's own window holds four more: the refusal spent none
        assert windows.refusal(alone, 1, float(moment)) is None
        windows.spend(alone, 1, float(moment))
    assert windows.refusal(alone, 1, 5.0) == (0, 55)


def test_every_window_of_a_budget_counts() -> None:
    windows = LocalWindows()
    budget = (Spend("per_identity", "alice", (Window(2, 1), Window(3, 60))),)
    for moment in (0.0, 0.5):
        assert windows.refusal(budget, 1, moment) is None
        windows.spend(budget, 1, moment)
    assert windows.refusal(budget, 1, 0.9) == (0, 1)  # two in the last second
    windows.spend(budget, 1, 1.6)
    assert windows.refusal(budget, 1, 3.5) == (0, 57)  # three in the last minute


def test_idle_keys_are_forgotten() -> None:
    windows = LocalWindows()
    windows.sweep_every = 2
    first = (Spend("per_ip", "192.0.2.1", (Window(5, 10),)),)
    second = (Spend("per_ip", "192.0.2.2", (Window(5, 10),)),)
    windows.spend(first, 1, 0.0)
    windows.spend(second, 1, 100.0)  # sweeps: the first key's window is empty by now
    assert repr(windows) == "LocalWindows(owners=1)"


class Reference:
    """Every window its own list of hit times: simple, and exact by definition."""

    def __init__(self) -> None:
        self.hits: dict[tuple[str, int, int], list[float]] = {}

    def refusal(self, spends: tuple[Spend, ...], cost: int, now: float) -> tuple[int, int] | None:
        for index, spend in enumerate(spends):
            for window in spend.windows:
                if cost > window.amount:
                    return index, window.seconds
                key = (spend.key, window.amount, window.seconds)
                inside = [t for t in self.hits.get(key, []) if t > now - window.seconds]
                if len(inside) + cost > window.amount:
                    oldest = sorted(inside)[len(inside) + cost - window.amount - 1]
                    return index, max(1, math.ceil(oldest + window.seconds - now))
        return None

    def spend(self, spends: tuple[Spend, ...], cost: int, now: float) -> None:
        for spend in spends:
            for window in spend.windows:
                key = (spend.key, window.amount, window.seconds)
                self.hits.setdefault(key, []).extend([now] * cost)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["alice", "bob"]),
            st.integers(min_value=1, max_value=3),
            # whole seconds too, so that hits land exactly on a window's edge
            st.integers(min_value=0, max_value=40).map(float)
            | st.floats(min_value=0, max_value=40, allow_nan=False),
        ),
        max_size=60,
    )
)
def test_the_compact_windows_decide_as_a_list_per_window_would(
    steps: list[tuple[str, int, float]],
) -> None:
    windows, reference = LocalWindows(), Reference()
    windows.sweep_every = 7  # sweeps along the way change nothing
    budget = (Window(3, 10), Window(5, 60), Window(8, 300))
    now = 0.0
    for owner, cost, elapsed in steps:
        now += elapsed
        spends = (Spend("per_identity", owner, budget), Spend("global", "fleet", (Window(9, 30),)))
        expected = reference.refusal(spends, cost, now)
        assert windows.refusal(spends, cost, now) == expected
        if expected is None:
            windows.spend(spends, cost, now)
            reference.spend(spends, cost, now)
