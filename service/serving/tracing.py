"""Optional tracing with OpenTelemetry, off by default.

Set ``OTEL_TRACES_EXPORTER`` to ``otlp`` (``OTEL_EXPORTER_OTLP_*`` say where) or
``console`` (spans as JSON on standard output, for trying it) and each request becomes a
span, with its Redis and PostgreSQL calls as children; an incoming W3C ``traceparent``
is continued, and the request's audit line carries its ``trace_id``. Unset (or
``none``, or ``OTEL_SDK_DISABLED=true``), nothing of OpenTelemetry's SDK is imported.

Each gunicorn worker starts its own provider after the fork (``server.load``): a batch
exporter's thread never crosses a fork. Nothing secret or personal goes into a span:
request and response headers are never captured (the ``OTEL_INSTRUMENTATION_HTTP_
CAPTURE_HEADERS_*`` variables are refused), Redis commands are recorded without their
arguments (keys name identities), SQL without its values; the operations endpoints are
not traced.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask

from service.base.errors import ConfigurationError
from service.bookkeeping.audit import trace_ids_from

EXPORTERS = frozenset({"otlp", "console"})
#: Not traced: probes and scrapes, every few seconds, say nothing about a request.
UNTRACED = "healthz,readyz,metrics"
_HEADER_CAPTURE = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_"


def tracing_exporters(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names; empty when tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    names = [
        name.strip().lower()
        for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",")
        if name.strip()
    ]
    if names in ([], ["none"]):
        return ()
    unknown = sorted(set(names) - EXPORTERS)
    if unknown:
        raise ConfigurationError(
            [f"OTEL_TRACES_EXPORTER names {', '.join(unknown)}: use otlp, console or none"]
        )
    captured = sorted(name for name in environ if name.startswith(_HEADER_CAPTURE))
    if captured:
        raise ConfigurationError(
            [f"{captured[0]} is set: headers carry bearer credentials, and are never traced"]
        )
    return tuple(dict.fromkeys(names))


def start_tracing(app: Flask, environ: Mapping[str, str]) -> bool:
    """Trace ``app``'s requests as ``OTEL_*`` say (in a serving worker, after the fork).
    True when tracing is on."""
    exporters = tracing_exporters(environ)
    if not exporters:
        return False
    # Imported here: with tracing off, none of this is loaded.
    from opentelemetry import trace
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME", "token-broker")})
    provider = TracerProvider(resource=resource)
    if "console" in exporters:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    if "otlp" in exporters:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider, excluded_urls=UNTRACED)  # type: ignore[no-untyped-call]  # untyped in opentelemetry-instrumentation-flask
    RedisInstrumentor().instrument(tracer_provider=provider)
    PsycopgInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)

    def current_trace_id() -> str | None:
        context = trace.get_current_span().get_span_context()
        return format(context.trace_id, "032x") if context.is_valid else None

    trace_ids_from(current_trace_id)
    return True
