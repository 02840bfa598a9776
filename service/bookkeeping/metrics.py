"""How is it going? Prometheus metrics, correct across gunicorn worker processes.

Under ``token-broker serve`` every worker writes its values to files in the directory
named by ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, which reads
that variable when it is imported) and ``/metrics`` adds them up; an app built in a
single process (tests) keeps its own registry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

MULTIPROCESS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"
#: Where a token request's 503 came from (``dependency`` label): bounded, named in code.
DEPENDENCIES = ("state", "audit_trail", "identity_provider", "signing_key", "client_keys", "twilio")
TOKEN_ENDPOINT = "/v1/tokens"


@dataclass(frozen=True)
class KnownLabels:
    """Every label value the broker can count, so that each series exists from the start
    (at zero): an empty panel or a silent alert then means a broken query, never a quiet
    day. Nothing per caller: no identity, room or address is ever a label."""

    grants: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()
    budgets: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()
    endpoints: tuple[str, ...] = (TOKEN_ENDPOINT,)


class Metrics:
    """The broker's metrics, registered in a registry of its own."""

    def __init__(
        self, multiprocess_directory: str | None = None, known: KnownLabels | None = None
    ) -> None:
        self._multiprocess_directory = multiprocess_directory
        self._known = known or KnownLabels()
        self._account_events: dict[str, int] = {}
        self.registry = CollectorRegistry()
        counter = self._counter
        self._tokens = counter(
            "token_broker_tokens_issued",
            "Tokens issued, by grant (a token with two grants counts once under each).",
            "grant",
        )
        self._tokens_total = counter("token_broker_tokens", "Tokens issued.")
        self._refusals = counter(
            "token_broker_refusals", "Refused token requests, by problem code.", "code"
        )
        self._rate_limited = counter(
            "token_broker_rate_limit_hits", "Requests refused by a rate-limit budget.", "budget"
        )
        self._authentication_failures = counter(
            "token_broker_authentication_failures", "Failed caller authentications."
        )
        self._define_health()

    def _define_health(self) -> None:
        """Latency, answers by status class, dependencies and the fleet's gauges."""
        counter = self._counter
        self._latency = Histogram(
            "token_broker_request_seconds",
            "Request latency, by endpoint.",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self._calls = counter(
            "token_broker_calls", "Outgoing Voice calls decided, by outcome.", "outcome"
        )
        self._usage_alerts = counter(
            "token_broker_usage_alerts", "Usage-trigger callbacks that paused issuance."
        )
        self._responses = counter(
            "token_broker_responses",
            "Answers, by endpoint and status class (2xx, 4xx, 5xx): the availability SLI.",
            "endpoint",
            "class",
        )
        self._dependency_errors = counter(
            "token_broker_dependency_errors",
            "Token requests answered 503 because a dependency failed, by dependency.",
            "dependency",
        )
        self._dependency_up = self._gauge(
            "token_broker_dependency_up",
            "1 while this instance can use the dependency (as /readyz checks it), else 0.",
            # Each is what the latest look found, whichever worker looked: a worker that
            # saw a failure once and has not looked since must not hold the gauge.
            "livemostrecent",
            "dependency",
        )
        self._paused = self._gauge(
            "token_broker_paused", "1 while issuance is paused by the operator.", "livemostrecent"
        )
        self._key_age = self._gauge(
            "token_broker_signing_key_age_seconds",
            "How long the fleet has signed with this instance's API key (since it first saw it).",
            "livemostrecent",  # after a rotation, the new key's age
        )

    def _counter(self, name: str, description: str, *labels: str) -> Counter:
        return Counter(name, description, labels, registry=self.registry)

    def _gauge(self, name: str, description: str, mode: Any, *labels: str) -> Gauge:
        return Gauge(name, description, labels, multiprocess_mode=mode, registry=self.registry)

    def start(self) -> None:
        """Create every known series at zero (a worker calls this once it serves)."""
        known = self._known
        for grant in known.grants:
            self._tokens.labels(grant)
        for code in known.codes:
            self._refusals.labels(code)
        for budget in known.budgets:
            self._rate_limited.labels(budget)
        for outcome in ("allowed", "refused"):
            self._calls.labels(outcome)
        for endpoint in known.endpoints:
            self._latency.labels(endpoint)
            for status_class in ("2xx", "4xx", "5xx"):
                self._responses.labels(endpoint, status_class)
        for dependency in DEPENDENCIES:
            self._dependency_errors.labels(dependency)
        self._paused.set(0)
        self._key_age.set(0)

    def issued(self, grants: tuple[str, ...]) -> None:
        self._tokens_total.inc()
        for grant in grants:
            self._tokens.labels(grant).inc()

    def refused(self, code: str, reason: str) -> None:
        self._refusals.labels(code).inc()
        if code == "invalid_token":
            self._authentication_failures.inc()
        elif code == "rate_limited":
            self._rate_limited.labels(reason.removesuffix(" spent")).inc()

    def call(self, *, allowed: bool) -> None:
        self._calls.labels("allowed" if allowed else "refused").inc()

    def usage_alert(self) -> None:
        self._usage_alerts.inc()

    def observe(self, endpoint: str, seconds: float, status: int) -> None:
        self._latency.labels(endpoint).observe(seconds)
        self._responses.labels(endpoint, f"{min(max(status // 100, 1), 5)}xx").inc()

    def dependency_failed(self, dependency: str) -> None:
        self._dependency_errors.labels(dependency).inc()

    def set_dependencies(self, results: Mapping[str, bool]) -> None:
        """What a readiness look found, by dependency (1 usable, 0 not)."""
        for dependency, usable in results.items():
            self._dependency_up.labels(dependency).set(1 if usable else 0)

    def set_paused(self, paused: bool) -> None:
        self._paused.set(1 if paused else 0)

    def set_signing_key_age(self, seconds: float) -> None:
        self._key_age.set(seconds)

    def set_account_events(self, counts: Mapping[str, int]) -> None:
        """The fleet's count of account security events by type (``account watch``
        keeps it in the state store; this instance shows it)."""
        self._account_events = dict(counts)

    def exposition(self) -> bytes:
        """The Prometheus text format: all workers' values in multiprocess mode."""
        fleet = CollectorRegistry()
        known = dict.fromkeys(self._known.event_types, 0)
        fleet.register(_Tally({**known, **self._account_events}))
        if self._multiprocess_directory:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self._multiprocess_directory)  # type: ignore[no-untyped-call]  # untyped in prometheus_client
            return generate_latest(registry) + generate_latest(fleet)
        return generate_latest(self.registry) + generate_latest(fleet)


class _Tally(Collector):
    """A count the fleet keeps in the state store, shown as a counter as it was read."""

    def __init__(self, counts: Mapping[str, int]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "token_broker_account_events",
            "Security events of the Twilio account seen by `account watch`, by type.",
            labels=["event_type"],
        )
        for event_type, count in sorted(self._counts.items()):
            family.add_metric([event_type], count)
        yield family


def mark_worker_dead(pid: int, multiprocess_directory: str) -> None:
    """Drop a dead worker's live gauges (gunicorn's ``child_exit`` hook)."""
    multiprocess.mark_process_dead(pid, path=multiprocess_directory)  # type: ignore[no-untyped-call]  # untyped in prometheus_client
