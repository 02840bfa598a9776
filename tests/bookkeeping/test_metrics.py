"""Metrics: what each decision counts, in one process and summed over worker processes."""

from __future__ import annotations

from pathlib import Path

from service.bookkeeping.metrics import KnownLabels, Metrics, mark_worker_dead


def test_counters_by_grant_code_budget_and_outcome() -> None:
    metrics = Metrics()
    metrics.issued(("video", "voice"))
    metrics.refused("invalid_token", "unknown issuer")
    metrics.refused("rate_limited", "per_ip spent")
    metrics.call(allowed=False)
    metrics.usage_alert()
    metrics.set_paused(True)
    metrics.observe("/v1/tokens", 0.002, 200)
    metrics.observe("/v1/tokens", 0.002, 503)
    metrics.dependency_failed("state")
    metrics.set_dependencies({"state": False, "signing_key": True})
    text = metrics.exposition().decode()
    assert "token_broker_tokens_total 1.0" in text
    assert 'token_broker_tokens_issued_total{grant="voice"} 1.0' in text
    assert 'token_broker_refusals_total{code="invalid_token"} 1.0' in text
    assert "token_broker_authentication_failures_total 1.0" in text
    assert 'token_broker_rate_limit_hits_total{budget="per_ip"} 1.0' in text
    assert 'token_broker_calls_total{outcome="refused"} 1.0' in text
    assert "token_broker_usage_alerts_total 1.0" in text
    assert "token_broker_paused 1.0" in text
    assert 'token_broker_request_seconds_count{endpoint="/v1/tokens"} 2.0' in text
    assert 'token_broker_responses_total{class="2xx",endpoint="/v1/tokens"} 1.0' in text
    assert 'token_broker_responses_total{class="5xx",endpoint="/v1/tokens"} 1.0' in text
    assert 'token_broker_dependency_errors_total{dependency="state"} 1.0' in text
    assert 'token_broker_dependency_up{dependency="state"} 0.0' in text
    assert 'token_broker_dependency_up{dependency="signing_key"} 1.0' in text


def test_every_known_series_exists_at_zero_from_the_start() -> None:
    known = KnownLabels(
        grants=("video",),
        codes=("invalid_token",),
        budgets=("per_ip",),
        event_types=("account-api-keys.created",),
    )
    metrics = Metrics(known=known)
    before = metrics.exposition().decode()
    assert 'token_broker_tokens_issued_total{grant="video"}' not in before
    metrics.start()
    text = metrics.exposition().decode()
    for series in (
        'token_broker_tokens_issued_total{grant="video"} 0.0',
        'token_broker_refusals_total{code="invalid_token"} 0.0',
        'token_broker_rate_limit_hits_total{budget="per_ip"} 0.0',
        'token_broker_calls_total{outcome="allowed"} 0.0',
        'token_broker_responses_total{class="5xx",endpoint="/v1/tokens"} 0.0',
        'token_broker_request_seconds_count{endpoint="/v1/tokens"} 0.0',
        'token_broker_dependency_errors_total{dependency="identity_provider"} 0.0',
        'token_broker_account_events_total{event_type="account-api-keys.created"} 0.0',
        "token_broker_paused 0.0",
        "token_broker_signing_key_age_seconds 0.0",
    ):
        assert series in text


def test_a_multiprocess_directory_is_summed_and_dead_workers_dropped(tmp_path: Path) -> None:
    metrics = Metrics(str(tmp_path))
    # In one test process prometheus_client writes no files unless it was imported in
    # multiprocess mode; what is read back is the directory's (empty) sum.
    assert b"token_broker_tokens_total" not in metrics.exposition()
    mark_worker_dead(12345, str(tmp_path))  # no files of that worker: nothing to drop
