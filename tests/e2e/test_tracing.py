"""Tracing enabled on a real gunicorn broker on Redis, spans to the console exporter: a
request's W3C traceparent is continued, its audit line carries the trace id, its Redis
calls are child spans, and no span holds a credential, a token or a claim."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests import support
from tests.conftest import LeakWatch

SUBJECT = "tracing-subject-7f3a"


def spans_in(output: str) -> list[dict[str, Any]]:
    """The console exporter's spans: pretty-printed JSON objects among the log lines."""
    decoder = json.JSONDecoder()
    spans = []
    position = output.find("\n{\n")
    while position != -1:
        found, end = decoder.raw_decode(output, position + 1)
        if isinstance(found, dict) and "context" in found:
            spans.append(found)
        position = output.find("\n{\n", end)
    return spans


def traced_token(url: str, bearer: str, trace_id: str, parent_id: str, leaks: LeakWatch) -> str:
    """A token asked for within the caller's trace (W3C ``traceparent``)."""
    answer = requests.post(
        f"{url}/v1/tokens",
        json={"grants": {"sync": {}}},
        headers={
            "Authorization": f"Bearer {bearer}",
            "traceparent": f"00-{trace_id}-{parent_id}-01",
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["token"]
    leaks.issued.add(token)
    return token


@pytest.fixture
def traced_broker(
    environ: dict[str, str], redis_url: str, tmp_path: Path
) -> Iterator[support.BrokerProcess]:
    server = support.start_broker(
        {
            **environ,
            "BROKER_STATE_URL": redis_url,
            "OTEL_TRACES_EXPORTER": "console",
            "OTEL_SERVICE_NAME": "token-broker-test",
        },
        tmp_path,
        "--workers",
        "2",
    )
    yield server
    support.stop_broker(server)


def test_a_traceparent_is_continued_into_the_audit_line_and_the_spans(
    traced_broker: support.BrokerProcess, caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    bearer = caller_token(sub=SUBJECT)
    token = traced_token(traced_broker.url, bearer, trace_id, parent_id, leaks)

    def exported() -> list[dict[str, Any]]:
        return [
            span
            for span in spans_in(traced_broker.output())
            if span["context"]["trace_id"] == f"0x{trace_id}"
        ]

    assert support.eventually(lambda: any(s["kind"] == "SpanKind.SERVER" for s in exported()))
    spans = exported()
    (server,) = [span for span in spans if span["kind"] == "SpanKind.SERVER"]
    assert server["parent_id"] == f"0x{parent_id}"  # the caller's span, continued
    assert server["attributes"]["http.route"] == "/v1/tokens"
    assert server["resource"]["attributes"]["service.name"] == "token-broker-test"
    children = [span for span in spans if span["parent_id"] == server["context"]["span_id"]]
    assert any(span["attributes"].get("db.system") == "redis" for span in children)
    audit = [
        json.loads(line)
        for line in traced_broker.output().splitlines()
        if line.startswith('{"event"')
    ]
    (issued,) = [record for record in audit if record.get("trace_id") == trace_id]
    assert issued["decision"] == "issued"
    text = json.dumps(spans)
    for secret in (bearer, token, SUBJECT, support.API_KEY_SECRET):
        assert secret not in text


def test_the_probes_are_not_traced(traced_broker: support.BrokerProcess) -> None:
    trace_id = secrets.token_hex(16)
    for path in ("/healthz", "/readyz", "/metrics"):
        headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
        assert requests.get(f"{traced_broker.url}{path}", headers=headers, timeout=10).ok
    requests.get(f"{traced_broker.url}/openapi.json", timeout=10)  # traced: a marker
    assert support.eventually(
        lambda: any(
            s["attributes"].get("http.route") == "/openapi.json"
            for s in spans_in(traced_broker.output())
        )
    )
    assert trace_id not in traced_broker.output()


def test_spans_go_to_an_otlp_collector(
    environ: dict[str, str], tmp_path: Path, caller_token: Callable[..., str], leaks: LeakWatch
) -> None:
    """OTEL_TRACES_EXPORTER=otlp: spans are posted (OTLP over HTTP, protobuf) to the
    collector OTEL_EXPORTER_OTLP_ENDPOINT names, the caller's trace among them."""
    received: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the name http.server dispatches to
            received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    collector = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, args=(0.05,), daemon=True).start()
    server = support.start_broker(
        {
            **environ,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within a tenth of a second
        },
        tmp_path,
    )
    try:
        trace_id = secrets.token_hex(16)
        traced_token(server.url, caller_token(), trace_id, secrets.token_hex(8), leaks)
        assert support.eventually(
            lambda: any(bytes.fromhex(trace_id) in body for _, body in received)
        )
        assert {path for path, _ in received} == {"/v1/traces"}
    finally:
        support.stop_broker(server)
        collector.shutdown()
        collector.server_close()
