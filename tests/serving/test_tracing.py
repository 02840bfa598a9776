"""Tracing is off unless OTEL_TRACES_EXPORTER asks for it; a wrong setting is a
configuration problem at start, and header capture (bearer credentials) is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.base.errors import ConfigurationError
from service.serving.configuration import load_configuration
from service.serving.tracing import tracing_exporters


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_EXPORTER": " "},
        {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"},
    ],
)
def test_tracing_is_off_unless_an_exporter_is_named(environ: dict[str, str]) -> None:
    assert tracing_exporters(environ) == ()


def test_the_named_exporters_are_used_once_each() -> None:
    environ = {"OTEL_TRACES_EXPORTER": "otlp, Console,otlp"}
    assert tracing_exporters(environ) == ("otlp", "console")


def test_an_unknown_exporter_or_header_capture_is_a_problem_at_start(
    environ: dict[str, str],
) -> None:
    with pytest.raises(ConfigurationError) as unknown:
        load_configuration({**environ, "OTEL_TRACES_EXPORTER": "zipkin"})
    assert unknown.value.problems == (
        "OTEL_TRACES_EXPORTER names zipkin: use otlp, console or none",
    )
    capture = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST"
    with pytest.raises(ConfigurationError) as headers:
        load_configuration({**environ, "OTEL_TRACES_EXPORTER": "console", capture: "authorization"})
    assert headers.value.problems == (
        f"{capture} is set: headers carry bearer credentials, and are never traced",
    )


def test_with_tracing_off_no_part_of_the_sdk_is_loaded(
    environ: dict[str, str], tmp_path: Path
) -> None:
    """Off costs nothing: a worker's app, built and serving a token request, never
    imports OpenTelemetry's SDK or its instrumentations."""
    program = (
        "import sys\n"
        "from service.serving.app import create_app\n"
        "from service.serving.tracing import start_tracing\n"
        "import os\n"
        "app = create_app()\n"
        "assert start_tracing(app, os.environ) is False\n"
        "app.test_client().get('/healthz')\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", program],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert found.stdout.strip() == "[]"
