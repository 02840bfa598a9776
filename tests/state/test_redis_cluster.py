"""The state store on a real Redis Cluster: callers' state spread over the masters, the
fleet's in one slot, and a master lost: refused (503) while it fails over, never a wrong
answer, then served again by its promoted replica."""

from __future__ import annotations

import pytest
import redis

from service.base.errors import Unavailable
from service.state import Admission, Admitted, Refused, Retention, Spend, Window, open_store
from service.state.redis import pause_key, revocation_key, window_key
from service.state.redis_cluster import ClusterRedisStore
from tests import support

NOW = support.NOW
LIMIT = Window(amount=100, seconds=60)


def request_of(n: int) -> Admission:
    return Admission(
        at=NOW,
        pauses=("all",),
        revocations=(f"identity:user{n}",),
        spends=(
            Spend("per_identity", f"identity:user{n}", (LIMIT,)),
            Spend("per_ip", f"ip:198.51.100.{n % 250}", (LIMIT,)),
            Spend("global", "fleet", (Window(10_000, 60),)),
        ),
    )


def slot(cluster: support.RedisCluster, key: str) -> int:
    return int(cluster.command(cluster.nodes[0], "cluster", "keyslot", key).strip())


def test_callers_state_spreads_over_the_masters_and_the_fleet_shares_one_slot(
    cluster_url: str, redis_cluster: support.RedisCluster
) -> None:
    store = open_store(cluster_url, retention=Retention())
    try:
        assert isinstance(store, ClusterRedisStore)
        for n in range(60):
            assert store.admit(request_of(n)) == Admitted()
        assert all(count > 0 for count in redis_cluster.keys_by_master().values())
        fleet = {
            slot(redis_cluster, key)
            for key in (
                pause_key("all"),
                pause_key("voice_outgoing"),
                window_key("fleet", "global", 10_000, 60),
            )
        }
        assert len(fleet) == 1
        identities = {slot(redis_cluster, revocation_key(f"identity:user{n}")) for n in range(60)}
        assert len(identities) > 30  # one slot each, nearly: spread, not one hot slot
    finally:
        store.close()


def test_a_refusal_on_one_slot_gives_back_what_others_spent(cluster_url: str) -> None:
    store = open_store(cluster_url, retention=Retention())
    identity = Spend("per_identity", "identity:alice", (Window(2, 60),))
    try:
        both = Admission(
            at=NOW, spends=(identity, Spend("per_ip", "ip:198.51.100.7", (Window(1, 60),)))
        )
        assert store.admit(both) == Admitted()  # the identity's first of two
        outcome = store.admit(both)  # the address is spent: the identity is given back
        assert isinstance(outcome, Refused)
        assert outcome.detail == "per_ip"
        alone = Admission(at=NOW, spends=(identity,))
        assert store.admit(alone) == Admitted()  # its second: the refund held
        assert isinstance(store.admit(alone), Refused)
    finally:
        store.close()


def test_a_master_lost_is_refused_then_served_by_its_replica(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A cluster of its own: this test kills one of its masters."""
    cluster = support.RedisCluster(tmp_path_factory.mktemp("failover"))
    cluster.start()
    try:
        store = open_store(cluster.url, retention=Retention())
        for n in range(30):
            assert store.admit(request_of(n)) == Admitted()
        victim = cluster.masters()[0]
        cluster.kill(victim)
        outcomes: list[str] = []

        def served_again() -> bool:
            try:
                results = [store.admit(request_of(n)) for n in range(30)]
            except Unavailable:
                outcomes.append("unavailable")
                return False
            outcomes.append("served")
            return all(result == Admitted() for result in results)

        assert support.eventually(served_again, within=30.0), outcomes[-3:]
        assert "unavailable" in outcomes  # while it failed over: refused, never guessed
        assert cluster.healthy()
        store.close()
    except redis.RedisError as error:  # pragma: no cover - the failure's own message
        pytest.fail(f"a Redis error escaped the store: {error!r}")
    finally:
        cluster.stop()
