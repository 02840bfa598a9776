"""In-process moving windows: all or nothing, exact, forgetting idle keys."""

from __future__ import annotations

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
    assert "192.0.2.1" not in repr(windows._windows)
    assert len(windows._windows) == 1
