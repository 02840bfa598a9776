"""Rate limits: exact budgets, nothing spent on refusal, rolling windows never exceeded."""

from __future__ import annotations

import time

import pytest

from service.errors import RateLimited, Unavailable
from service.limits import RateLimiter
from service.state import StateStore, open_store
from tests import support


def spend(
    limiter: RateLimiter, identity: str = "alice", ip: str = "192.0.2.1", cost: int = 1
) -> bool:
    try:
        limiter.spend(identity=identity, client=None, client_ip=ip, cost=cost)
    except RateLimited:
        return False
    return True


def test_budget_admits_exactly_n_then_429_with_retry_after(store: StateStore) -> None:
    limiter = RateLimiter(store.limits_storage(), {"per_identity": "3/minute;100/day"})
    assert [spend(limiter) for _ in range(5)] == [True, True, True, False, False]
    assert spend(limiter, identity="bob")  # budgets are per identity
    with pytest.raises(RateLimited) as refused:
        limiter.spend(identity="alice", client=None, client_ip="x", cost=1)
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60


def test_a_refused_request_moves_no_counter(store: StateStore) -> None:
    limiter = RateLimiter(
        store.limits_storage(), {"per_identity": "2/minute", "per_ip": "3/minute"}
    )
    assert spend(limiter, "alice")
    assert spend(limiter, "alice")
    for _ in range(10):
        assert not spend(limiter, "alice")  # refused by per_identity: per_ip is untouched
    assert spend(limiter, "bob")  # so the address still has one of its three


def test_cost_spends_several_units(store: StateStore) -> None:
    limiter = RateLimiter(store.limits_storage(), {"per_identity": "10/minute"})
    assert spend(limiter, cost=5)
    assert spend(limiter, cost=5)
    assert not spend(limiter, cost=1)


def test_per_client_and_global_budgets(store: StateStore) -> None:
    limiter = RateLimiter(store.limits_storage(), {"per_client": "1/minute", "global": "3/minute"})
    limiter.spend(identity="a", client="web", client_ip="1", cost=1)
    with pytest.raises(RateLimited):
        limiter.spend(identity="b", client="web", client_ip="2", cost=1)
    limiter.spend(identity="c", client=None, client_ip="3", cost=1)  # no client: no client budget
    limiter.spend(identity="d", client="ios", client_ip="4", cost=1)
    with pytest.raises(RateLimited):
        limiter.spend(identity="e", client="android", client_ip="5", cost=1)


def test_failed_authentications_have_their_own_budget(store: StateStore) -> None:
    limiter = RateLimiter(store.limits_storage(), {"auth_failures_per_ip": "2/minute"})
    limiter.check_authentication_budget("192.0.2.9")
    limiter.record_authentication_failure("192.0.2.9")
    limiter.record_authentication_failure("192.0.2.9")
    with pytest.raises(RateLimited):
        limiter.check_authentication_budget("192.0.2.9")
    limiter.check_authentication_budget("192.0.2.10")


def test_no_budgets_means_no_limits(store: StateStore) -> None:
    limiter = RateLimiter(store.limits_storage(), {})
    assert all(spend(limiter) for _ in range(50))
    limiter.record_authentication_failure("x")
    limiter.check_authentication_budget("x")


def test_no_rolling_window_admits_more_than_the_budget(store: StateStore) -> None:
    """Hammer a 5-per-second budget across several window boundaries; check every window."""
    budget, window = 5, 1.0
    limiter = RateLimiter(store.limits_storage(), {"per_identity": f"{budget}/second"})
    admitted: list[float] = []
    deadline = time.monotonic() + 2.6  # crosses at least two fixed-window boundaries
    while time.monotonic() < deadline:
        before = time.monotonic()
        if spend(limiter):
            admitted.append(before)
    assert len(admitted) >= 2 * budget  # the budget refills as the window moves
    for index, start in enumerate(admitted):
        # every admission within one window length after this one (minus clock slack)
        inside = [moment for moment in admitted[index:] if moment < start + window - 0.02]
        assert len(inside) <= budget


def test_redis_down_is_unavailable_not_unlimited(
    redis_server: support.RedisServer, redis_url: str
) -> None:
    store = open_store(redis_url, audit_retention_days=1)
    limiter = RateLimiter(
        store.limits_storage(), {"per_identity": "5/minute", "auth_failures_per_ip": "5/minute"}
    )
    assert spend(limiter)
    redis_server.stop()
    try:
        with pytest.raises(Unavailable):
            spend(limiter)
        with pytest.raises(Unavailable):
            limiter.check_authentication_budget("x")
    finally:
        redis_server.start()
    assert spend(limiter)
